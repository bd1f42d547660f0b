"""report.html: written, self-contained, with every section (and no plotting library needed)."""

from __future__ import annotations

import re

import numpy as np

from reasonsift.config import SelectConfig
from reasonsift.selection.report import UNCLUSTERED, cluster_colors, pca_2d, write_report_html
from reasonsift.selection.select import select

from .conftest import make_scores

SECTIONS = ["Difficulty distribution", "Loss-vector clusters", "Composition by source", "Composition by cluster",
            "Tokens scored vs full-trace scoring", "Notes"]


def test_report_has_every_section(tmp_path):
    df = make_scores({"alpha": 40, "<b>beta</b>": 120})
    sel = select(df, SelectConfig(method="temp", budget=30))
    tokens = {"scored": 123_456, "full_trace_once": 400_000, "full_trace_all_checkpoints": 6_400_000}
    path = tmp_path / "report.html"
    write_report_html(df, sel, {"tokens": tokens}, path)
    page = path.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert section in page
    assert page.count("<svg") == 3  # two difficulty histograms + the cluster scatter
    assert "filter threshold" in page  # the threshold line is drawn for clustered sources
    assert "123,456" in page and "6,400,000" in page and "98% fewer" in page
    assert "&lt;b&gt;beta&lt;/b&gt;" in page and "<b>beta</b>" not in page  # names are escaped
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched


def test_report_without_token_accounting(tmp_path):
    df = make_scores({"a": 50})
    sel = select(df, SelectConfig(method="random", budget=10))
    write_report_html(df, sel, {}, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "No token accounting" in page and "filter threshold" not in page


def test_pca_2d_finds_the_main_axis():
    t = np.linspace(-1, 1, 50)
    x = np.stack([t, 2 * t, np.zeros(50)], 1) + 3.0  # a line in 3-D
    xy = pca_2d(x)
    assert np.allclose(np.abs(xy[:, 0]), np.abs(t) * np.sqrt(5)) and np.allclose(xy[:, 1], 0, atol=1e-9)


def test_scatter_is_coloured_by_cluster_and_marks_the_selection(tmp_path):
    df = make_scores({"a": 60, "b": 90})
    sel = select(df, SelectConfig(method="temp", budget=24, seed=0))
    path = tmp_path / "report.html"
    write_report_html(df, sel, {}, path)
    page = path.read_text(encoding="utf-8")
    scatter = page[page.index("<h2>Loss-vector clusters"):page.index("<h2>Composition by source")]
    circles = re.findall(r'<circle [^>]*fill="([^"]+)" r="([\d.]+)"[^>]*?(?:/>|><title>([^<]*)</title>)', scatter)
    assert len(circles) == len(df)
    keys = sorted(sel.report["per_cluster"])
    colour_of = {}
    for fill, _, title in circles:
        if title:
            assert colour_of.setdefault(title, fill) == fill  # one colour per cluster
        else:
            assert fill == UNCLUSTERED  # rows the filter dropped (or sources taken whole) are grey
    assert sorted(colour_of) == keys and len(set(colour_of.values())) == len(keys)
    assert set(colour_of.values()) == set(cluster_colors(len(keys)))
    assert sum(r == "3.5" for _, r, _ in circles) == int(sel.selected.sum())  # selected: larger, outlined
    # composition by cluster: one row per cluster with its size and selected count, against the pool
    comp = page[page.index("<h2>Composition by cluster"):page.index("<h2>Tokens scored")]
    for key, v in sel.report["per_cluster"].items():
        assert f"<tr><td>{key}</td><td>{v['size']}</td><td>{v['selected']}</td>" in comp
    assert f"{sel.report['per_cluster'][keys[0]]['size'] / len(df):.1%}" in comp


def test_many_clusters_get_distinct_colours():
    colours = cluster_colors(250)  # TEMP on M23K: ~B/4 = 250 clusters
    assert colours[:3] == ["#4c72b0", "#dd8452", "#55a868"] and len(set(colours)) > 240
