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
.figs{display:flex;flex-wrap:wrap;gap:12px}.muted{color:#777}svg text{font-size:12px;fill:#444}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;max-width:900px;font-size:13px;margin:4px 0 8px}
.key{white-space:nowrap}.sw{display:inline-block;width:11px;height:11px;margin-right:4px;vertical-align:-1px}
.header td,.header th{text-align:left;border:none;padding:2px 12px 2px 0}.header th{white-space:nowrap}"""


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (1, 2, 2.5, 5 x 10^k steps)."""
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** np.floor(np.log10(raw))
    # the round step whose number of intervals is nearest n - 1 (ties: the larger step)
    step = min((m * mag for m in (10, 5, 2.5, 2, 1)), key=lambda st: abs((hi - lo) / st - (n - 1)))
    first = np.ceil(lo / step) * step
    return [round(float(t), 12) for t in np.arange(first, hi + step * 1e-9, step)]


def svg_histogram(pool: np.ndarray, chosen: np.ndarray, threshold: float | None, title: str,
                  width: int = 360, height: int = 200, bins: int = 30, x_label: str = "difficulty") -> str:
    """Histogram of ``pool`` (grey) with ``chosen`` (blue) on top and a red line at ``threshold``.

    Both axes are drawn with round tick labels: x in the values' unit, y in examples per bin.
    """
    lo, hi = float(pool.min()), float(pool.max())
    hi = hi if hi > lo else lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    h_pool, _ = np.histogram(pool, edges)
    h_sel, _ = np.histogram(chosen, edges)
    y_ticks = nice_ticks(0, max(int(h_pool.max()), 1), 4)
    top = max(y_ticks[-1], float(h_pool.max()), 1.0)
    left, right, y0, ph = 40, 10, 22, height - 62  # plot area: x in [left, width-right], y in [y0, y0+ph]
    pw = width - left - right
    bw = pw / bins
    x_of = lambda v: left + (v - lo) / (hi - lo) * pw  # noqa: E731
    parts = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="{left}" y="13">{_esc(title)}</text>']
    for t in y_ticks:
        y = y0 + ph - ph * t / top
        parts.append(f'<line x1="{left - 4}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{t:g}</text>')
    for i in range(bins):
        for count, color in ((h_pool[i], "#c8c8c8"), (h_sel[i], "#4c72b0")):
            if count == 0:
                continue
            bh = ph * count / top
            parts.append(f'<rect x="{left + i * bw:.1f}" y="{y0 + ph - bh:.1f}" width="{max(bw - 1, 0.5):.1f}" '
                         f'height="{bh:.1f}" fill="{color}"/>')
    parts.append(f'<line x1="{left}" x2="{left}" y1="{y0}" y2="{y0 + ph}" stroke="#888"/>'
                 f'<line x1="{left}" x2="{width - right}" y1="{y0 + ph}" y2="{y0 + ph}" stroke="#888"/>')
    for t in nice_ticks(lo, hi, 5):
        x = x_of(t)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y0 + ph}" y2="{y0 + ph + 4}" stroke="#888"/>'
                     f'<text x="{x:.1f}" y="{y0 + ph + 16}" text-anchor="middle">{t:g}</text>')
    parts.append(f'<text x="{left + pw / 2:.0f}" y="{height - 6}" text-anchor="middle">{_esc(x_label)}</text>'
                 f'<text x="12" y="{y0 + ph / 2:.0f}" text-anchor="middle" '
                 f'transform="rotate(-90 12 {y0 + ph / 2:.0f})">examples</text>')
    if threshold is not None:
        tx = x_of(threshold)
        parts.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{y0 - 2}" y2="{y0 + ph}" stroke="#c44e52" '
                     f'stroke-dasharray="4,2" stroke-width="2">'
                     f'<title>filter threshold {_fmt(threshold)}</title></line>')
    parts.append("</svg>")
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


def robust_limits(v: np.ndarray, q: float = 1.0, margin: float = 0.1) -> tuple[float, float]:
    """Axis limits from the ``q``-th and (100-q)-th percentiles, widened by ``margin`` of their span.

    A few outliers would otherwise set the axis range and squeeze every other point into a strip.
    """
    lo, hi = (float(x) for x in np.percentile(v, [q, 100 - q]))
    if hi <= lo:
        lo, hi = float(v.min()), float(v.max())
    span = hi - lo if hi > lo else 1.0
    return lo - margin * span, hi + margin * span


def svg_scatter(xy: np.ndarray, groups: np.ndarray, selected: np.ndarray, names: list[str] | None = None,
                width: int = 660, height: int = 460, max_points: int = 4000,
                colors: list[str] | None = None, titles: list[str] | None = None,
                axis_labels: tuple[str, str] = ("PC 1", "PC 2")) -> str:
    """Scatter of ``xy`` (n, 2) coloured by group, with axes; selected points larger with a dark outline.

    groups: (n,) index into ``colors`` (default: the palette, cycled); -1 draws a point grey.
    names: unused here (legends are HTML, see ``legend_html``); kept for callers that pass it.
    titles: optional hover text per group. The axes span the 1st-99th percentiles (+10%, see
    ``robust_limits``); points beyond them are pinned to the edge and counted in a line under the
    plot. At most ``max_points`` unselected points are drawn (every k-th) so the page stays small.
    """
    colors = colors or PALETTE
    left, right, top_, bottom = 50, 12, 10, 42
    pw, ph = width - left - right, height - top_ - bottom
    (x0, x1), (y0, y1) = robust_limits(xy[:, 0]), robust_limits(xy[:, 1])
    outside = (xy[:, 0] < x0) | (xy[:, 0] > x1) | (xy[:, 1] < y0) | (xy[:, 1] > y1)
    fx = (np.clip(xy[:, 0], x0, x1) - x0) / (x1 - x0)
    fy = (np.clip(xy[:, 1], y0, y1) - y0) / (y1 - y0)
    pix = np.stack([left + fx * pw, top_ + ph - fy * ph], 1)
    rest = np.flatnonzero(~selected)
    rest = rest[:: max(1, int(np.ceil(len(rest) / max_points)))]

    def point(i: int, extra: str) -> str:
        g = int(groups[i])
        fill = UNCLUSTERED if g < 0 else colors[g % len(colors)]
        if g < 0:  # unclustered: lighter and smaller, so faded cluster colours stay distinct from them
            extra = extra.replace('r="2.2" fill-opacity="0.6"', 'r="1.8" fill-opacity="0.35"')
        tip = f"<title>{_esc(titles[g])}</title>" if titles is not None and g >= 0 else ""
        return (f'<circle cx="{pix[i, 0]:.1f}" cy="{pix[i, 1]:.1f}" fill="{fill}" {extra}>{tip}</circle>'
                if tip else f'<circle cx="{pix[i, 0]:.1f}" cy="{pix[i, 1]:.1f}" fill="{fill}" {extra}/>')

    parts = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f'<rect x="{left}" y="{top_}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>']
    for t in nice_ticks(x0, x1, 6):
        x = left + (t - x0) / (x1 - x0) * pw
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top_ + ph}" y2="{top_ + ph + 4}" stroke="#888"/>'
                     f'<text x="{x:.1f}" y="{top_ + ph + 16}" text-anchor="middle">{t:g}</text>')
    for t in nice_ticks(y0, y1, 6):
        y = top_ + ph - (t - y0) / (y1 - y0) * ph
        parts.append(f'<line x1="{left - 4}" x2="{left}" y1="{y:.1f}" y2="{y:.1f}" stroke="#888"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{t:g}</text>')
    parts.append(f'<text x="{left + pw / 2:.0f}" y="{height - 8}" text-anchor="middle">{_esc(axis_labels[0])}</text>'
                 f'<text x="13" y="{top_ + ph / 2:.0f}" text-anchor="middle" '
                 f'transform="rotate(-90 13 {top_ + ph / 2:.0f})">{_esc(axis_labels[1])}</text>')
    parts += [point(i, 'r="2.2" fill-opacity="0.6"') for i in rest]
    parts += [point(i, 'r="3.5" stroke="#111" stroke-width="1"') for i in np.flatnonzero(selected)]
    parts.append("</svg>")
    n_out = int(outside.sum())
    clip = (f'<p class="muted">Axes span the 1st–99th percentile of each component (+10%); {n_out} point(s) '
            "beyond them are drawn on the frame's edge.</p>" if n_out else
            '<p class="muted">Axes span the 1st–99th percentile of each component (+10%); no point lies beyond.</p>')
    return "".join(parts) + clip


def legend_html(names: list[str], colors: list[str], max_items: int = 40, what: str = "cluster",
                grey: str = "") -> str:
    """Colour swatches with their names (the first ``max_items``; hover the plot for the rest).

    grey: the label of a grey swatch for points outside every group ("" for none).
    """
    items = "".join(f'<span class="key"><span class="sw" style="background:{colors[i % len(colors)]}"></span>'
                    f"{_esc(n)}</span>" for i, n in enumerate(names[:max_items]))
    more = (f'<span class="muted"> … and {len(names) - max_items} more {what}s (hover a point for its {what})</span>'
            if len(names) > max_items else "")
    if grey:
        more += f'<span class="key"><span class="sw" style="background:{UNCLUSTERED}"></span>{_esc(grey)}</span>'
    return f'<div class="legend">{items}{more}</div>'


def share_bar(frac: float, color: str) -> str:
    """An inline bar ``frac`` of 160 px wide (shares in the report tables)."""
    return f'<span class="bar" style="width:{max(0.0, min(1.0, frac)) * 160:.1f}px;background:{color}"></span>'


def _composition(per_source: dict[str, dict[str, Any]], n_pool: int, n_sel: int) -> str:
    rows = ["<table><tr><th>source</th><th>pool</th><th>hard</th><th>budget</th><th>selected</th>"
            "<th>share of pool / of subset</th></tr>"]
    for src, r in per_source.items():
        pool_share, sel_share = r["pool"] / max(n_pool, 1), r["selected"] / max(n_sel, 1)
        cells = [r["pool"], "" if r.get("hard") is None else r["hard"],
                 "" if r.get("budget") is None else r["budget"], r["selected"]]
        rows.append(f"<tr><td>{_esc(src)}</td>" + "".join(f"<td>{_esc(c)}</td>" for c in cells)
                    + f'<td>{share_bar(pool_share, "#c8c8c8")} {pool_share:.1%}<br>{share_bar(sel_share, "#4c72b0")} '
                      f"{sel_share:.1%}</td></tr>")
    return "".join(rows) + "</table>"


def _tokens(tokens: dict[str, Any] | None) -> str:
    """Tokens scored against full-trace scoring at the same checkpoints and against one full pass."""
    from reasonsift.scoring.cost import versus

    if not tokens or not tokens.get("scored"):
        return '<p class="muted">No token accounting in the report (it comes from the scoring stage).</p>'
    scored = int(tokens["scored"])
    n = tokens.get("checkpoints")
    refs = (("full_trace_all_checkpoints", f"full traces at the same {n} checkpoints" if n else
             "full traces at the same checkpoints"),
            ("full_trace_once", "one full pass over the pool at θ₀"))
    top = max([scored] + [int(tokens.get(k) or 0) for k, _ in refs])
    rows = [f"<tr><td>tokens scored (TEMP windows, all checkpoints)</td><td>{scored:,}</td>"
            f"<td>{share_bar(scored / top, '#4c72b0')}</td></tr>"]
    summary = []
    for key, label in refs:
        if not tokens.get(key):
            continue
        value = int(tokens[key])
        rows.append(f"<tr><td>{label}</td><td>{value:,}</td><td>{share_bar(value / top, '#c8c8c8')}</td></tr>")
        summary.append(versus(scored, value, label))
    text = f"TEMP scored {scored:,} tokens: " + "; ".join(summary) if summary else ""
    return (f"<p>{_esc(text)}.</p>" if text else "") + "<table>" + "".join(rows) + "</table>"


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
                                  f"{src} (n={int(m.sum())})", x_label="difficulty (θ_rnd early-window loss)"))
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


def why_not_clustered(report: dict[str, Any]) -> str:
    """Why this selection has no clusters, from its own report (TEMP clusters only when it must choose)."""
    method = report.get("method")
    if method not in ("temp", "s2l", "embedding"):
        return f"The {method} method ranks or samples examples; it does not cluster loss vectors."
    if method != "temp":
        return f"The {method} method found no clusters to report."
    per_source = report.get("per_source", {})
    hard = sum(int(v.get("hard") or 0) for v in per_source.values())
    chosen = sum(int(v.get("selected") or 0) for v in per_source.values())
    if chosen >= hard:
        return (f"TEMP clusters loss vectors only to choose among a source's difficult examples when its budget "
                f"cannot take them all. Here the difficulty filter kept {hard} examples and the budget took every "
                "one of them, so nothing had to be clustered (a smaller budget, or a larger pool, would cluster).")
    return ("TEMP clusters loss vectors within a source whose difficult examples exceed its budget; no source "
            "needed it in this selection.")


def _cluster_section(scores: pd.DataFrame, selection: Selection) -> str:
    if "loss_1000" not in scores.columns:
        return '<p class="muted">No loss_1000 column.</p>'
    x = np.nan_to_num(np.stack([np.asarray(v, dtype=np.float64) for v in scores["loss_1000"]]))
    keys = cluster_keys(scores, selection)
    names = sorted(set(keys) - {""})
    index = {k: i for i, k in enumerate(names)}
    groups = np.array([index.get(k, -1) for k in keys])
    unclustered = int((groups < 0).sum())
    if not names:  # the method did not cluster: colour by source instead, and say why
        srcs = sorted(set(scores["source"].astype(str)))
        groups = np.array([srcs.index(s) for s in scores["source"].astype(str)])
        return (f"<p>PCA of the {x.shape[1]}-dim loss vectors. {_esc(why_not_clustered(selection.report))} "
                "Colour = source; outlined = selected.</p>"
                + legend_html(srcs, PALETTE, what="source") + svg_scatter(pca_2d(x), groups, selection.selected))
    grey = (f", grey = not clustered ({unclustered} examples: filtered out, or in a source taken whole)"
            if unclustered else "")
    colors = cluster_colors(len(names))
    return (f"<p>PCA of the {x.shape[1]}-dim loss vectors; colour = the example's cluster ({len(names)} "
            f"clusters), outlined = selected{grey}. Hover a point for its cluster.</p>"
            + legend_html(names, colors, grey="not clustered" if unclustered else "")
            + svg_scatter(pca_2d(x), groups, selection.selected, colors=colors, titles=names))


def _cluster_composition(per_cluster: dict[str, dict[str, int]], n_pool: int, n_sel: int,
                         max_rows: int = 200, why: str = "") -> str:
    """Per cluster: size, selected, and its share of the pool against its share of the subset."""
    if not per_cluster:
        return f'<p class="muted">No clusters. {_esc(why)}</p>'
    order = sorted(per_cluster, key=lambda k: (-per_cluster[k]["size"], k))
    rows = ["<table><tr><th>cluster</th><th>size</th><th>selected</th><th>% of cluster</th>"
            "<th>share of pool / of subset</th></tr>"]
    for key in order[:max_rows]:
        r = per_cluster[key]
        pool_share, sel_share = r["size"] / max(n_pool, 1), r["selected"] / max(n_sel, 1)
        rows.append(f"<tr><td>{_esc(key)}</td><td>{r['size']}</td><td>{r['selected']}</td>"
                    f"<td>{r['selected'] / max(r['size'], 1):.0%}</td>"
                    f'<td>{share_bar(pool_share, "#c8c8c8")} {pool_share:.1%}<br>{share_bar(sel_share, "#4c72b0")} '
                    f"{sel_share:.1%}</td></tr>")
    more = (f'<p class="muted">The {max_rows} largest of {len(order)} clusters; every cluster is in '
            "report.json.</p>" if len(order) > max_rows else "")
    return "".join(rows) + "</table>" + more


def theta_rnd_text(theta: dict[str, Any] | None) -> str:
    """Which Gaussian checkpoint is θ_rnd, and whether its loss ratio is in the target range."""
    if not theta:
        return "none (no Gaussian checkpoint was scored; difficulty is empty)"
    low, high = theta.get("target_range", [2, 3])
    ratios = [r for r in theta.get("ratios", []) if r == r]
    span = f"{min(ratios):.4g}–{max(ratios):.4g}" if ratios else "n/a"
    of = len(theta.get("ratios", []))
    if theta.get("in_range"):
        return (f"Gaussian checkpoint {theta['checkpoint']} of {of} (mean-loss ratio to θ₀ {theta['ratio']:.4g}, "
                f"inside the target [{low:g}, {high:g}])")
    return (f"Gaussian checkpoint {theta['checkpoint']} of {of}, the nearest to the target: no checkpoint had a "
            f"mean-loss ratio to θ₀ in [{low:g}, {high:g}] (ratios {span}), so the difficulty signal is off the "
            "paper's operating point")


def direction_text(direction: dict[str, Any] | None, vectors_from: str | None) -> str:
    """Where θ_f − θ₀ came from, and so which checkpoints the loss vectors come from."""
    source = (direction or {}).get("source")
    if source is None:
        return "not recorded"
    if source == "isotropic":
        return ("none: no θ_f was given, so the loss vectors come from the nested Gaussian checkpoints "
                "(pass --direction-model, or score.direction=finetune, for TEMP's directional vectors)")
    what = ("a short fine-tune of θ₀ on a sample of the pool" if source == "finetune"
            else source.replace("model:", "θ_f = ", 1))
    return f"{what}; loss vectors from the {vectors_from or 'directional'} checkpoints"


def header_html(report: dict[str, Any]) -> str:
    """The facts a reader needs before the plots: scorer, input, θ_rnd, direction, unknown tokens."""
    rows = [("scorer (θ₀)", report.get("model")), ("input", report.get("input")),
            ("θ_rnd (difficulty)", theta_rnd_text(report.get("theta_rnd")) if "theta_rnd" in report else None),
            ("direction", direction_text(report.get("direction"), report.get("loss_vectors_from"))
             if "direction" in report else None)]
    unk = report.get("unknown_tokens")
    if unk and unk.get("count"):
        rows.append(("unknown tokens", f"{100 * unk['share']:.1f}% of response tokens map to {unk['token']}"))
    cells = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows if v is not None)
    return f'<table class="header">{cells}</table>' if cells else ""


def write_report_html(scores: pd.DataFrame, selection: Selection, report: dict[str, Any], path: Path) -> None:
    """Write the self-contained report page to ``path`` (atomically).

    report: the run's ``report.json`` (the scoring report: ``tokens``, ``theta_rnd``, ``direction``,
    ``notes`` ..., each used when present). The selection itself comes from ``selection.report``;
    its notes follow the scoring notes, so every warning the run printed is on the page.
    """
    r = selection.report
    budget = f"{r['budget']} examples" if r.get("budget") is not None else f"{r.get('budget_tokens')} tokens"
    notes: list[str] = []
    scoring_notes, selection_notes = report.get("notes") or [], (report.get("selection") or {}).get("notes") or []
    for n in [*scoring_notes, *r.get("notes", []), *selection_notes]:
        if n not in notes:
            notes.append(n)
    notes_html = "".join(f"<li>{_esc(n)}</li>" for n in notes) or "<li>none</li>"
    tokens = report.get("tokens") or r.get("tokens")
    why = "" if r.get("per_cluster") else why_not_clustered(r)
    # (title, html) in page order: a new section is one more entry here
    sections = [
        ("Notes", f"<ul>{notes_html}</ul>"),
        ("Difficulty distribution", _difficulty_section(scores, selection.selected, r["per_source"])),
        ("Loss-vector clusters", _cluster_section(scores, selection)),
        ("Composition by source", _composition(r["per_source"], r["n_pool"], r["n_selected"])),
        ("Composition by cluster", _cluster_composition(r.get("per_cluster", {}), r["n_pool"], r["n_selected"],
                                                        why=why)),
        ("Tokens scored vs full-trace scoring", _tokens(tokens)),
        ("Signal health", signals_html(report.get("signals"))),
    ]
    body = [
        f"<h1>reasonsift selection: {_esc(r['method'])}</h1>",
        f"<p>Budget {_esc(budget)}; selected <b>{r['n_selected']}</b> of {r['n_pool']} examples, "
        f"{r['selected_tokens']:,} of {r['pool_tokens']:,} response tokens; seed {r.get('seed')}.</p>",
        header_html(report),
        *(f"<h2>{_esc(title)}</h2>{part}" for title, part in sections),
    ]
    page = (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>reasonsift selection</title>'
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")
    write_text_atomic(Path(path), page)
