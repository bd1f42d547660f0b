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


def test_histograms_have_labelled_axes(tmp_path):
    from reasonsift.selection.report import svg_histogram

    pool = np.linspace(1.0, 3.0, 101)
    svg = svg_histogram(pool, pool[50:], 2.0, "src (n=101)")
    labels = re.findall(r'text-anchor="middle">([^<]+)</text>', svg)
    assert {"1", "1.5", "2", "2.5", "3"} <= set(labels)  # x ticks between min and max, not just the two ends
    assert "examples</text>" in svg  # the y axis is named ...
    assert re.search(r'text-anchor="end">0</text>', svg)  # ... and has ticks from 0
    assert "filter threshold 2" in svg


def test_scatter_uses_robust_limits_and_says_so():
    from reasonsift.selection.report import robust_limits, svg_scatter

    rng = np.random.default_rng(0)
    xy = rng.normal(size=(300, 2))
    xy[0] = [1e4, -1e4]  # one far outlier must not squeeze the cloud into a corner
    lo, hi = robust_limits(xy[:, 0])
    assert -5 < lo < -1 and 1 < hi < 5
    svg = svg_scatter(xy, np.zeros(300, int), np.zeros(300, bool))
    assert "1st–99th percentile" in svg and re.search(r"(\d+) point\(s\) beyond them", svg)
    assert "PC 1</text>" in svg and "PC 2</text>" in svg
    xs = [float(x) for x in re.findall(r'<circle cx="([\d.]+)"', svg)]
    assert max(xs) - min(xs) < 660 and np.median(xs) > 200  # the cloud fills the frame


def test_cluster_colours_have_a_legend(tmp_path):
    df = make_scores({"a": 60, "b": 90})
    sel = select(df, SelectConfig(method="temp", budget=24, seed=0))
    write_report_html(df, sel, {}, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    legend = page[page.index('<div class="legend">'):]
    for key, colour in zip(sorted(sel.report["per_cluster"]), cluster_colors(len(sel.report["per_cluster"]))):
        assert f'background:{colour}"></span>{key}</span>' in legend


def test_no_clusters_are_explained(tmp_path):
    df = make_scores({"a": 40})
    sel = select(df, SelectConfig(method="random", budget=10))
    write_report_html(df, sel, {}, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "The random method ranks or samples examples; it does not cluster loss vectors." in page
    # TEMP with a budget that takes every difficult example: no clustering, and the page says why
    sel = select(df, SelectConfig(method="temp", budget=40))
    assert not sel.report["per_cluster"]
    write_report_html(df, sel, {}, tmp_path / "t.html")
    page = (tmp_path / "t.html").read_text(encoding="utf-8")
    assert "the budget took every one of them, so nothing had to be clustered" in page


def test_header_names_theta_rnd_and_direction(tmp_path):
    df = make_scores({"a": 40})
    sel = select(df, SelectConfig(method="temp", budget=10))
    run_report = {"theta_rnd": {"checkpoint": 8, "ratio": 0.999, "in_range": False, "ratios": [0.995, 0.999],
                                "target_range": [2.0, 3.0]},
                  "direction": {"source": "isotropic"}, "notes": ["a warning the console printed"],
                  "tokens": {"scored": 318, "full_trace_once": 100, "full_trace_all_checkpoints": 1700,
                             "checkpoints": 17}}
    write_report_html(df, sel, run_report, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "no checkpoint had a mean-loss ratio to θ₀ in [2, 3] (ratios 0.995–0.999)" in page
    assert "no θ_f was given, so the loss vectors come from the nested Gaussian checkpoints" in page
    assert "<li>a warning the console printed</li>" in page
    assert "81% fewer than full traces at the same 17 checkpoints (1,700)" in page
    assert "3.2x as many as one full pass over the pool at θ₀ (100)" in page and "-218%" not in page
