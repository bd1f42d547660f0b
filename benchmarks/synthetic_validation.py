"""The TEMP paper's table in miniature, on the synthetic world, with ground truth.

For each seed: generate a pool, score it with TEMP (θ₀ pretrained on the world's facts, θ_f = θ₀
fine-tuned on the pool), select 10% with TEMP and each baseline, fine-tune θ₀ on each subset with
the same recipe, and evaluate on held-out problems of every family and difficulty. Prints mean ± std
over seeds of:

- Spearman(θ_rnd early-window loss, true steps) and Spearman(full-trace loss, true steps);
- NMI between k-means clusters of the loss vectors and the task families;
- per method: low-quality share of the subset, mean true steps, accuracy after SFT;
- tokens processed by TEMP's scoring vs full-trace scoring at the same checkpoints.

    .venv/bin/python benchmarks/synthetic_validation.py --seeds 0 1 2 --out runs/synthetic_validation
    .venv/bin/python benchmarks/synthetic_validation.py --quick --seeds 0      # smoke run, a few minutes

Size: ``demo.VALIDATION`` (θ_f 6 epochs on the 1,000-trace pool, each 10% subset 60 epochs, batch
32, lr 3e-3: about 30 minutes a seed with all seven methods on 2 cores), more SFT than the README's
demo (``demo.FULL``, 4 / 40 epochs) whose 10-minute limit it would break.

Each seed's folder is a normal demo folder; a rerun reuses finished models and scores, and a seed
whose ``demo_results.json`` already holds the requested methods is read back as it is (so seeds can
be run with different ``--methods`` and summarised together; the table says how many seeds each
method has).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from reasonsift.synth.demo import VALIDATION, run_demo

METHODS = ("temp", "random", "longest", "full-loss", "s2l", "difficulty", "full")


def mean_std(values: list[float]) -> str:
    """``mean ± std`` over seeds (std with ddof=1 when there are several seeds)."""
    arr = np.asarray(values, dtype=float)
    std = arr.std(ddof=1) if len(arr) > 1 else 0.0
    return f"{arr.mean():.3f} ± {std:.3f}"


def summarize(per_seed: list[dict]) -> str:
    """Markdown tables of the aggregated results."""
    v = [r["validation"] for r in per_seed]
    lines = [f"seeds: {len(per_seed)}", "", "| signal | mean ± std |", "|---|---|"]
    for key, label in (("spearman_difficulty_early_window", "Spearman(θ_rnd loss of the early window, true steps)"),
                       ("spearman_base_loss_early_window", "Spearman(θ₀ loss of the early window, true steps)"),
                       ("spearman_full_trace_loss", "Spearman(θ₀ full-trace loss, true steps)"),
                       ("nmi_loss_vector_clusters_vs_families", "NMI(loss-vector k-means clusters, families)")):
        lines.append(f"| {label} | {mean_std([x[key] for x in v])} |")
    lines += ["", "| method | seeds | subset size | low-quality share | mean true steps | accuracy after SFT |",
              "|---|---|---|---|---|---|"]
    methods = list(dict.fromkeys(m for r in per_seed for m in r["methods"]))
    for m in methods:  # a method run on fewer seeds (--methods differed between runs) says so
        rows = [r["methods"][m] for r in per_seed if m in r["methods"]]
        lines.append(f"| {m} | {len(rows)} | {rows[0]['n']} | {mean_std([x['low_quality_share'] for x in rows])} | "
                     f"{mean_std([x['mean_true_difficulty'] for x in rows])} | "
                     f"{mean_std([x['accuracy'] for x in rows])} |")
    lines.append(f"| θ₀ (no SFT) | – | – | – | {mean_std([r['base_accuracy'] for r in per_seed])} |")
    t = per_seed[0]["tokens"]
    lines += ["", f"tokens scored by TEMP (seed {per_seed[0]['seed']}, all {t['checkpoints']} checkpoints): "
              f"{t['scored']:,}; full-trace scoring at the same checkpoints: {t['full_trace_all_checkpoints']:,}; "
              f"every full trace once: {t['full_trace_once']:,} (the full-loss baseline's own pass: "
              f"{t.get('full_loss_pass', 0):,})"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/synthetic_validation")
    parser.add_argument("--quick", action="store_true", help="the demo's reduced size")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    per_seed = []
    for seed in args.seeds:
        folder = Path(args.out) / f"seed{seed}"
        done = folder / "demo_results.json"
        if done.exists() and set(json.loads(done.read_text())["methods"]) >= set(args.methods):
            per_seed.append(json.loads(done.read_text()))  # finished earlier (maybe with more methods)
            continue
        per_seed.append(run_demo(folder, quick=args.quick, seed=seed, progress=False, methods=tuple(args.methods),
                                 size=None if args.quick else VALIDATION))
    table = summarize(per_seed)
    (Path(args.out) / "summary.md").write_text(table + "\n")
    (Path(args.out) / "per_seed.json").write_text(json.dumps(per_seed, indent=2))
    print(table)


if __name__ == "__main__":
    main()
