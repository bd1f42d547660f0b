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
from reasonsift.selection.report import CSS, PALETTE, share_bar, pca_2d, svg_scatter


def _accuracy_table(results: dict[str, Any]) -> str:
    steps = sorted({s for r in results["methods"].values() for s in r["by_difficulty"]}, key=int)
    head = "".join(f"<th>{s} steps</th>" for s in steps)
    rows = [f"<table><tr><th>method</th><th>subset</th><th>accuracy</th><th></th>{head}"
            "<th>low-quality share</th><th>mean true steps</th></tr>"]
    for i, (m, r) in enumerate(results["methods"].items()):
        cells = "".join(f"<td>{r['by_difficulty'].get(s, float('nan')):.2f}</td>" for s in steps)
        rows.append(f"<tr><td>{html.escape(m)}</td><td>{r['n']}</td><td>{r['accuracy']:.3f}</td>"
                    f"<td>{share_bar(r['accuracy'], PALETTE[i % len(PALETTE)])}</td>{cells}"
                    f"<td>{r['low_quality_share']:.2f}</td><td>{r['mean_true_difficulty']:.2f}</td></tr>")
    rows.append(f"<tr><td>θ₀ (no SFT)</td><td></td><td>{results['base_accuracy']:.3f}</td>"
                f"<td>{share_bar(results['base_accuracy'], '#8c8c8c')}</td></tr></table>")
    return "".join(rows)


def _difficulty_by_steps(scores: pd.DataFrame, truth: dict[str, dict[str, Any]]) -> str:
    """Mean ± std of the difficulty score per true step count, per family."""
    df = pd.DataFrame({"difficulty": scores["difficulty"].to_numpy(),
                       "steps": [truth[i]["true_difficulty"] for i in scores["id"]],
                       "family": [truth[i]["source"] for i in scores["id"]]})
    steps = sorted(df["steps"].unique())
    rows = ["<table><tr><th>family</th>" + "".join(f"<th>{s} steps</th>" for s in steps) + "</tr>"]
    for fam, g in df.groupby("family"):
        cells = "".join(f"<td>{g.loc[g.steps == s, 'difficulty'].mean():.2f} ± "
                        f"{g.loc[g.steps == s, 'difficulty'].std():.2f}</td>" for s in steps)
        rows.append(f"<tr><td>{html.escape(str(fam))}</td>{cells}</tr>")
    return "".join(rows) + "</table>"


def _clusters_vs_families(scores: pd.DataFrame, truth: dict[str, dict[str, Any]]) -> str:
    families = sorted({t["source"] for t in truth.values()})
    fam = np.array([families.index(truth[i]["source"]) for i in scores["id"]])
    xy = pca_2d(np.stack(scores["loss_1000"].to_numpy()))
    chosen = scores["selected"].to_numpy() if "selected" in scores else np.zeros(len(scores), bool)
    return svg_scatter(xy, fam, chosen, families)


def write_demo_report(results: dict[str, Any], scores: pd.DataFrame, pool_rows: list[dict[str, Any]],
                      path: Path) -> None:
    """Write the demo's HTML report."""
    truth = {r["id"]: r for r in pool_rows}
    v = results["validation"]
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>reasonsift demo</title>
<style>{CSS}</style></head><body>
<h1>reasonsift demo: the synthetic reasoning world</h1>
<p>{len(pool_rows)} traces in five task families with 1–6 reasoning steps; some traces are low quality
(a wrong step, or cut short). Scoring and selection never see the ground truth; this page compares
against it. Wall time {results['wall_time_s']:.0f} s.</p>
<h2>Accuracy after fine-tuning θ₀ on each subset (held-out problems)</h2>{_accuracy_table(results)}
<h2>Does the early window carry the difficulty signal?</h2>
<p>Spearman correlation with the true number of steps: θ_rnd loss of the first
{results['size']['short_tokens']} response tokens <b>{v['spearman_difficulty_early_window']:.3f}</b>;
θ₀ loss of the same window {v['spearman_base_loss_early_window']:.3f};
θ₀ loss of the whole trace {v['spearman_full_trace_loss']:.3f}.</p>
<p>Difficulty score (θ_rnd early-window loss) by family and true steps:</p>{_difficulty_by_steps(scores, truth)}
<h2>Do loss vectors cluster by task family?</h2>
<p>NMI between k-means clusters of the loss vectors (k = number of families) and the families:
<b>{v['nmi_loss_vector_clusters_vs_families']:.3f}</b>. PCA of the loss vectors, coloured by true family;
large dots are TEMP's selection.</p>{_clusters_vs_families(scores, truth)}
</body></html>"""
    write_text_atomic(path, body)
