"""``demo_report.html``: the synthetic world's ground truth against what TEMP measured.

Sections: accuracy by method (overall and per difficulty), the θ_rnd early-window loss against the
true number of steps, loss-vector clusters against task families, and the subsets' composition
(true difficulty, low-quality share). Inline SVG, no plotting library.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reasonsift.runfolder import write_text_atomic
from reasonsift.selection.report import CSS, PALETTE, legend_html, nice_ticks, pca_2d, svg_scatter


def svg_accuracy_bars(labels: list[str], values: list[float], colors: list[str], width: int = 640) -> str:
    """Horizontal bars, one per method, on a labelled 0..max accuracy axis (values printed at the bar ends).

    The axis ends at the next tenth above the best value (at least 0.1), so differences between low
    accuracies are visible rather than a few pixels wide on a 0..1 axis.
    """
    left, right, row, top = 120, 50, 28, 8
    hi = max(0.1, float(np.ceil(max(values + [0.0]) * 10) / 10))
    pw = width - left - right
    height = top + row * len(labels) + 34
    parts = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for t in nice_ticks(0.0, hi, 6):
        x = left + t / hi * pw
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + row * len(labels)}" stroke="#eee"/>'
                     f'<text x="{x:.1f}" y="{top + row * len(labels) + 14}" text-anchor="middle">{t:g}</text>')
    for i, (label, v, color) in enumerate(zip(labels, values, colors)):
        y = top + i * row
        w = max(0.0, v) / hi * pw
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{html.escape(label)}</text>'
                     f'<rect x="{left}" y="{y + 4}" width="{w:.1f}" height="{row - 8}" fill="{color}"/>'
                     f'<text x="{left + w + 5:.1f}" y="{y + 15}">{v:.3f}</text>')
    parts.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + row * len(labels)}" stroke="#888"/>'
                 f'<text x="{left + pw / 2:.0f}" y="{height - 4}" text-anchor="middle">accuracy on held-out '
                 "problems</text></svg>")
    return "".join(parts)


def _accuracy_table(results: dict[str, Any]) -> str:
    steps = sorted({s for r in results["methods"].values() for s in r["by_difficulty"]}, key=int)
    head = "".join(f"<th>{s} steps</th>" for s in steps)
    rows = [f"<table><tr><th>method</th><th>subset</th><th>accuracy</th>{head}"
            "<th>low-quality share</th><th>mean true steps</th></tr>"]
    for m, r in results["methods"].items():
        cells = "".join(f"<td>{r['by_difficulty'].get(s, float('nan')):.2f}</td>" for s in steps)
        rows.append(f"<tr><td>{html.escape(m)}</td><td>{r['n']}</td><td>{r['accuracy']:.3f}</td>{cells}"
                    f"<td>{r['low_quality_share']:.2f}</td><td>{r['mean_true_difficulty']:.2f}</td></tr>")
    rows.append(f"<tr><td>θ₀ (no SFT)</td><td></td><td>{results['base_accuracy']:.3f}</td></tr></table>")
    labels = [*results["methods"], "θ₀ (no SFT)"]
    values = [float(r["accuracy"]) for r in results["methods"].values()] + [float(results["base_accuracy"])]
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(results["methods"]))] + ["#8c8c8c"]
    empty = ('<p class="muted">No model solved a held-out problem, so every bar is empty (the --quick size trains '
             "too little for that; the full demo does).</p>" if max(values) == 0 else "")
    return svg_accuracy_bars(labels, values, colors) + empty + "".join(rows)


def _composition(results: dict[str, Any]) -> str:
    """What each subset is made of: low-quality kinds and sources (ground truth the selector never read)."""
    kinds = sorted({k for r in results["methods"].values() for k in r.get("low_quality_kinds", {})})
    sources = sorted({k for r in results["methods"].values() for k in r.get("sources", {})})
    if not kinds and not sources:
        return ""
    head = "".join(f"<th>{html.escape(k)}</th>" for k in kinds) + "".join(f"<th>from {html.escape(s)}</th>"
                                                                         for s in sources)
    rows = [f"<table><tr><th>method</th><th>subset</th>{head}</tr>"]
    for m, r in results["methods"].items():
        cells = "".join(f"<td>{r.get('low_quality_kinds', {}).get(k, 0.0):.0%}</td>" for k in kinds)
        cells += "".join(f"<td>{r.get('sources', {}).get(s, 0)}</td>" for s in sources)
        rows.append(f"<tr><td>{html.escape(m)}</td><td>{r['n']}</td>{cells}</tr>")
    return "<h2>What each subset is made of</h2><p>Share of each low-quality kind, and rows per source.</p>" + \
        "".join(rows) + "</table>"


def _difficulty_by_steps(scores: pd.DataFrame, truth: dict[str, dict[str, Any]]) -> str:
    """Mean ± std of the difficulty score per true step count, per family."""
    df = pd.DataFrame({"difficulty": scores["difficulty"].to_numpy(),
                       "steps": [truth[i]["true_difficulty"] for i in scores["id"]],
                       "family": [truth[i].get("family", truth[i]["source"]) for i in scores["id"]]})
    steps = sorted(df["steps"].unique())
    rows = ["<table><tr><th>family</th>" + "".join(f"<th>{s} steps</th>" for s in steps) + "</tr>"]
    for fam, g in df.groupby("family"):
        cells = "".join(f"<td>{g.loc[g.steps == s, 'difficulty'].mean():.2f} ± "
                        f"{g.loc[g.steps == s, 'difficulty'].std():.2f}</td>" for s in steps)
        rows.append(f"<tr><td>{html.escape(str(fam))}</td>{cells}</tr>")
    return "".join(rows) + "</table>"


def _clusters_vs_families(scores: pd.DataFrame, truth: dict[str, dict[str, Any]]) -> str:
    family = {i: t.get("family", t["source"]) for i, t in truth.items()}
    families = sorted(set(family.values()))
    fam = np.array([families.index(family[i]) for i in scores["id"]])
    xy = pca_2d(np.stack(scores["loss_1000"].to_numpy()))
    chosen = scores["selected"].to_numpy() if "selected" in scores else np.zeros(len(scores), bool)
    return legend_html(families, PALETTE, what="family") + svg_scatter(xy, fam, chosen)


def _world_line(results: dict[str, Any], pool_rows: list[dict[str, Any]]) -> str:
    """One sentence on the world the demo ran on."""
    if results["size"].get("world", "v1") == "v1":
        return (f"World v1: {len(pool_rows)} character-level traces in five task families with 1–6 reasoning "
                "steps; some are low quality (a wrong step, or cut short).")
    p = results.get("properties", {})
    sources = ", ".join(sorted({r["source"] for r in pool_rows}))
    return (f"World v2: {len(pool_rows)} long chain-of-thought traces (median {p.get('median_trace_tokens', 0):.0f} "
            f"tokens) in four task families with 1–16 steps, from four sources ({html.escape(sources)}); "
            f"{p.get('low_quality_share', 0):.0%} are low quality (a wrong step, cut short, or a degenerate loop). "
            f"Directional radii {results['radii'][0]:.2f} → {results['radii'][1]:.2f} "
            f"(‖θ_f − θ₀‖ = {results['theta_f_distance']:.2f}).")


def write_demo_report(results: dict[str, Any], scores: pd.DataFrame, pool_rows: list[dict[str, Any]],
                      path: Path) -> None:
    """Write the demo's HTML report."""
    truth = {r["id"]: r for r in pool_rows}
    v = results["validation"]
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>reasonsift demo</title>
<style>{CSS}</style></head><body>
<h1>reasonsift demo: the synthetic reasoning world</h1>
<p>{_world_line(results, pool_rows)} Scoring and selection never see the ground truth; this page
compares against it. Wall time {results['wall_time_s']:.0f} s.</p>
<h2>Accuracy after fine-tuning θ₀ on each subset (held-out problems)</h2>{_accuracy_table(results)}
{_composition(results)}
<h2>Does the early window carry the difficulty signal?</h2>
<p>Spearman correlation with the true number of steps: θ_rnd loss of the first
{results['size']['short_tokens']} response tokens <b>{v['spearman_difficulty_early_window']:.3f}</b>;
θ₀ loss of the same window {v['spearman_base_loss_early_window']:.3f};
θ₀ loss of the whole trace {v['spearman_full_trace_loss']:.3f}.</p>
<p>Difficulty score (θ_rnd early-window loss) by family and true steps:</p>{_difficulty_by_steps(scores, truth)}
<h2>Do loss vectors cluster by task family?</h2>
<p>NMI between k-means clusters of the loss vectors (k = number of families) and the families:
<b>{v['nmi_loss_vector_clusters_vs_families']:.3f}</b>. PCA of the loss vectors, coloured by true family;
large outlined dots are TEMP's selection.</p>{_clusters_vs_families(scores, truth)}
</body></html>"""
    write_text_atomic(path, body)
