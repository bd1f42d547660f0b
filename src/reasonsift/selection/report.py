"""``report.html``: one self-contained page that shows what was selected and why.

Sections: summary and notes, difficulty histograms per source with TEMP's filter threshold, the
loss-vector clusters in 2-D (PCA of ``loss_1000``, one colour per cluster, selected points marked),
the subset's composition against the pool by source and by cluster, tokens scored against
full-trace scoring, and signal health (``reasonsift.scoring.signals``).
The charts are inline SVG written here, so the page needs no plotting library, no network and no
JavaScript, and the same inputs give a byte-identical file.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reasonsift.runfolder import write_text_atomic
from reasonsift.scoring.signals import signals_html
from reasonsift.selection.common import Selection

PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974",
           "#64b5cd"]
CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse}td,th{padding:3px 10px;text-align:right;border-bottom:1px solid #eee}
th:first-child,td:first-child{text-align:left}.bar{height:9px;display:inline-block}
.figs{display:flex;flex-wrap:wrap;gap:12px}.muted{color:#777}svg text{font-size:11px;fill:#444}"""


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def svg_histogram(pool: np.ndarray, chosen: np.ndarray, threshold: float | None, title: str,
                  width: int = 340, height: int = 170, bins: int = 30) -> str:
    """Histogram of ``pool`` (grey) with ``chosen`` (blue) on top and a red line at ``threshold``."""
    lo, hi = float(pool.min()), float(pool.max())
    hi = hi if hi > lo else lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    h_pool, _ = np.histogram(pool, edges)
    h_sel, _ = np.histogram(chosen, edges)
    top, pad, ph = max(int(h_pool.max()), 1), 20, height - 40
    bw = (width - 2 * pad) / bins
    parts = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="{pad}" y="12">{_esc(title)}</text>']
    for i in range(bins):
        for count, color in ((h_pool[i], "#c8c8c8"), (h_sel[i], "#4c72b0")):
            if count == 0:
                continue
            bh = ph * count / top
            parts.append(f'<rect x="{pad + i * bw:.1f}" y="{20 + ph - bh:.1f}" width="{bw - 1:.1f}" '
                         f'height="{bh:.1f}" fill="{color}"/>')
    if threshold is not None:
        tx = pad + (threshold - lo) / (hi - lo) * (width - 2 * pad)
        parts.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="18" y2="{20 + ph}" stroke="#c44e52" '
                     f'stroke-dasharray="4,2" stroke-width="2">'
                     f'<title>filter threshold {_fmt(threshold)}</title></line>')
    parts.append(f'<text x="{pad}" y="{height - 5}">{_fmt(lo)}</text>'
                 f'<text x="{width - pad}" y="{height - 5}" text-anchor="end">{_fmt(hi)}</text></svg>')
    return "".join(parts)


def pca_2d(x: np.ndarray) -> np.ndarray:
    """Project (n, m) onto its top two principal components with numpy's SVD -> (n, 2)."""
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)  # vt: (min(n, m), m)
    out = np.zeros((len(x), 2))
    k = min(2, vt.shape[0])
    out[:, :k] = centred @ vt[:k].T
    return out


UNCLUSTERED = "#bbbbbb"


def cluster_colors(n: int) -> list[str]:
    """``n`` distinguishable colours: the palette first, then golden-angle hues (TEMP has ~B/4 clusters)."""
    out = PALETTE[:n]
    for i in range(len(out), n):
        hue = (i * 137.508) % 360  # golden angle: consecutive clusters get far-apart hues
        out.append(f"hsl({hue:.0f},{55 + 20 * (i % 2)}%,{42 + 12 * (i % 3)}%)")
    return out


def svg_scatter(xy: np.ndarray, groups: np.ndarray, selected: np.ndarray, names: list[str],
                width: int = 640, height: int = 440, max_points: int = 4000,
                colors: list[str] | None = None, titles: list[str] | None = None) -> str:
    """Scatter of ``xy`` (n, 2) coloured by group; selected points larger with a dark outline.

    groups: (n,) index into ``colors`` (default: the palette, cycled); -1 draws a point grey.
    names: legend entries for the first groups (at most as many as the palette has colours).
    titles: optional hover text per group. At most ``max_points`` unselected points are drawn
    (every k-th) so the page stays small.
    """
    colors = colors or PALETTE
    pad = 20
    lo, hi = xy.min(0), xy.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    pix = pad + (xy - lo) / span * [width - 2 * pad, height - 2 * pad - 20]
    pix[:, 1] = height - pad - pix[:, 1]
    rest = np.flatnonzero(~selected)
    rest = rest[:: max(1, int(np.ceil(len(rest) / max_points)))]

    def point(i: int, extra: str) -> str:
        g = int(groups[i])
        fill = UNCLUSTERED if g < 0 else colors[g % len(colors)]
        tip = f"<title>{_esc(titles[g])}</title>" if titles is not None and g >= 0 else ""
        return (f'<circle cx="{pix[i, 0]:.1f}" cy="{pix[i, 1]:.1f}" fill="{fill}" {extra}>{tip}</circle>'
                if tip else f'<circle cx="{pix[i, 0]:.1f}" cy="{pix[i, 1]:.1f}" fill="{fill}" {extra}/>')

    parts = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    parts += [point(i, 'r="2" fill-opacity="0.35"') for i in rest]
    parts += [point(i, 'r="3.5" stroke="#111" stroke-width="1"') for i in np.flatnonzero(selected)]
    for j, name in enumerate(names[:len(PALETTE)]):
        parts.append(f'<rect x="{pad + j * 100}" y="4" width="10" height="10" fill="{colors[j % len(colors)]}"/>'
                     f'<text x="{pad + j * 100 + 14}" y="13">{_esc(name[:14])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _bar(frac: float, color: str) -> str:
    return f'<span class="bar" style="width:{max(0.0, min(1.0, frac)) * 160:.1f}px;background:{color}"></span>'


def _composition(per_source: dict[str, dict[str, Any]], n_pool: int, n_sel: int) -> str:
    rows = ["<table><tr><th>source</th><th>pool</th><th>hard</th><th>budget</th><th>selected</th>"
            "<th>share of pool / of subset</th></tr>"]
    for src, r in per_source.items():
        pool_share, sel_share = r["pool"] / max(n_pool, 1), r["selected"] / max(n_sel, 1)
        cells = [r["pool"], "" if r.get("hard") is None else r["hard"],
                 "" if r.get("budget") is None else r["budget"], r["selected"]]
        rows.append(f"<tr><td>{_esc(src)}</td>" + "".join(f"<td>{_esc(c)}</td>" for c in cells)
                    + f'<td>{_bar(pool_share, "#c8c8c8")} {pool_share:.1%}<br>{_bar(sel_share, "#4c72b0")} '
                      f"{sel_share:.1%}</td></tr>")
    return "".join(rows) + "</table>"


def _tokens(tokens: dict[str, Any] | None) -> str:
    if not tokens or not tokens.get("scored"):
        return '<p class="muted">No token accounting in the report (it comes from the scoring stage).</p>'
    rows, top = [], max(float(tokens.get(k) or 0) for k in ("scored", "full_trace_once", "full_trace_all_checkpoints"))
    for key, label in (("scored", "tokens scored (TEMP windows, all checkpoints)"),
                       ("full_trace_once", "full traces, scored once"),
                       ("full_trace_all_checkpoints", "full traces at every checkpoint")):
        if key not in tokens:
            continue
        value = int(tokens[key])
        saving = "" if key == "scored" or not value else f" (TEMP scores {1 - tokens['scored'] / value:.0%} fewer)"
        rows.append(f"<tr><td>{label}</td><td>{value:,}</td><td>{_bar(value / top, '#4c72b0')}{saving}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _difficulty_section(scores: pd.DataFrame, selected: np.ndarray, per_source: dict[str, dict[str, Any]]) -> str:
    if "difficulty" not in scores.columns:
        return '<p class="muted">No difficulty column.</p>'
    sources = scores["source"].astype(str).to_numpy()
    d = np.nan_to_num(scores["difficulty"].to_numpy(dtype=np.float64))
    figs = []
    for src in list(per_source)[:24]:
        m = sources == src
        if not m.any():
            continue
        figs.append(svg_histogram(d[m], d[m & selected], per_source[src].get("difficulty_threshold"),
                                  f"{src} (n={int(m.sum())})"))
    more = f'<p class="muted">First 24 of {len(per_source)} sources.</p>' if len(per_source) > 24 else ""
    return ('<p>Grey: pool; blue: selected; red dashed line: the difficulty filter\'s threshold (lowest '
            'difficulty kept; none when a source was small enough to be taken whole).</p>'
            f'<div class="figs">{"".join(figs)}</div>{more}')


def cluster_keys(scores: pd.DataFrame, selection: Selection) -> list[str]:
    """Per row, the report's cluster key ("source/c", or "all/c" for pool-wide clusters); "" when unclustered.

    Matches ``report["per_cluster"]``: keys there are scoped by source unless every key shares one
    non-source scope (the embedding baseline clusters the whole pool).
    """
    sources = scores["source"].astype(str).to_numpy()
    per_cluster = selection.report.get("per_cluster", {})
    scopes = {k.rsplit("/", 1)[0] for k in per_cluster}
    scope = next(iter(scopes)) if len(scopes) == 1 and not scopes <= set(sources) else None
    return [("" if c < 0 else f"{scope if scope is not None else sources[i]}/{int(c)}")
            for i, c in enumerate(selection.cluster.tolist())]


def _cluster_section(scores: pd.DataFrame, selection: Selection) -> str:
    if "loss_1000" not in scores.columns:
        return '<p class="muted">No loss_1000 column.</p>'
    x = np.nan_to_num(np.stack([np.asarray(v, dtype=np.float64) for v in scores["loss_1000"]]))
    keys = cluster_keys(scores, selection)
    names = sorted(set(keys) - {""})
    index = {k: i for i, k in enumerate(names)}
    groups = np.array([index.get(k, -1) for k in keys])
    unclustered = int((groups < 0).sum())
    if not names:  # the method did not cluster (a ranking baseline): colour by source instead
        srcs = sorted(set(scores["source"].astype(str)))
        groups = np.array([srcs.index(s) for s in scores["source"].astype(str)])
        return (f"<p>PCA of the {x.shape[1]}-dim loss vectors; {_esc(selection.report['method'])} does not "
                "cluster, so colour = source; outlined = selected.</p>"
                + svg_scatter(pca_2d(x), groups, selection.selected, srcs))
    grey = (f", grey = not clustered ({unclustered} examples: filtered out, or in a source taken whole)"
            if unclustered else "")
    return (f"<p>PCA of the {x.shape[1]}-dim loss vectors; colour = the example's cluster ({len(names)} "
            f"clusters), outlined = selected{grey}. Hover a point for its cluster.</p>"
            + svg_scatter(pca_2d(x), groups, selection.selected, [], colors=cluster_colors(len(names)),
                          titles=names))


def _cluster_composition(per_cluster: dict[str, dict[str, int]], n_pool: int, n_sel: int,
                         max_rows: int = 200) -> str:
    """Per cluster: size, selected, and its share of the pool against its share of the subset."""
    if not per_cluster:
        return '<p class="muted">The method did not cluster.</p>'
    order = sorted(per_cluster, key=lambda k: (-per_cluster[k]["size"], k))
    rows = ["<table><tr><th>cluster</th><th>size</th><th>selected</th><th>% of cluster</th>"
            "<th>share of pool / of subset</th></tr>"]
    for key in order[:max_rows]:
        r = per_cluster[key]
        pool_share, sel_share = r["size"] / max(n_pool, 1), r["selected"] / max(n_sel, 1)
        rows.append(f"<tr><td>{_esc(key)}</td><td>{r['size']}</td><td>{r['selected']}</td>"
                    f"<td>{r['selected'] / max(r['size'], 1):.0%}</td>"
                    f'<td>{_bar(pool_share, "#c8c8c8")} {pool_share:.1%}<br>{_bar(sel_share, "#4c72b0")} '
                    f"{sel_share:.1%}</td></tr>")
    more = (f'<p class="muted">The {max_rows} largest of {len(order)} clusters; every cluster is in '
            "report.json.</p>" if len(order) > max_rows else "")
    return "".join(rows) + "</table>" + more


def write_report_html(scores: pd.DataFrame, selection: Selection, report: dict[str, Any], path: Path) -> None:
    """Write the self-contained report page to ``path`` (atomically).

    report: the run's report; its ``tokens`` entry (``scored``, ``full_trace_once``,
    ``full_trace_all_checkpoints``, from scoring) feeds the token section when present. Everything
    else comes from ``selection.report``.
    """
    r = selection.report
    budget = f"{r['budget']} examples" if r.get("budget") is not None else f"{r.get('budget_tokens')} tokens"
    notes = "".join(f"<li>{_esc(n)}</li>" for n in r.get("notes", [])) or "<li>none</li>"
    tokens = report.get("tokens") or r.get("tokens")
    body = [
        f"<h1>reasonsift selection: {_esc(r['method'])}</h1>",
        f"<p>Budget {_esc(budget)}; selected <b>{r['n_selected']}</b> of {r['n_pool']} examples, "
        f"{r['selected_tokens']:,} of {r['pool_tokens']:,} response tokens; seed {r.get('seed')}.</p>",
        f"<h3>Notes</h3><ul>{notes}</ul>",
        "<h2>Difficulty distribution</h2>", _difficulty_section(scores, selection.selected, r["per_source"]),
        "<h2>Loss-vector clusters</h2>", _cluster_section(scores, selection),
        "<h2>Composition by source</h2>", _composition(r["per_source"], r["n_pool"], r["n_selected"]),
        "<h2>Composition by cluster</h2>",
        _cluster_composition(r.get("per_cluster", {}), r["n_pool"], r["n_selected"]),
        "<h2>Tokens scored vs full-trace scoring</h2>", _tokens(tokens),
        "<h2>Signal health</h2>", signals_html(report.get("signals")),
    ]
    page = (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>reasonsift selection</title>'
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")
    write_text_atomic(Path(path), page)
