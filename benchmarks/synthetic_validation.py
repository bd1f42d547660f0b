"""The TEMP paper's table in miniature, on the synthetic world, with ground truth.

World v2 (default; docs/synth-world-v2.md fixes the design, sizes and protocol): one pool (world seed
0), θ_f = θ₀ fine-tuned on it, TEMP scores computed once, in ``OUT/shared``; then for each seed every
method selects 10%, θ₀ is fine-tuned on the subset with the same recipe (the seed sets the selection's
random draws, k-means initialisation and the SFT data order) and evaluated on held-out problems
(128: 2 per family × steps 1..16). Printed, in this order:

1. the world's properties, measured before any comparison: trace lengths in tokens, the early
   window's share of the median trace, the share of traces beyond the 1,000-token window, θ₀'s
   accuracy, full-pool and 10%-random accuracy with their seed-to-seed spread;
2. the signals (the scores are shared by all seeds): Spearman of θ_rnd's 100-token loss with the
   true number of steps beside θ₀'s 100-token and full-trace loss; NMI of loss-vector clusters with
   the families; θ_rnd's checkpoint and ratio; ‖θ_f − θ₀‖ and the radii;
3. per method: seeds, subset size, low-quality share (and per kind), mean true steps, accuracy with a
   95% interval (mean ± t·s/√n over seeds), and the difference to random with its interval.

    .venv/bin/python benchmarks/synthetic_validation.py --seeds 0 1 2 3 4 --methods temp random full
    .venv/bin/python benchmarks/synthetic_validation.py --seeds 0 1 2 --methods longest middle-perplexity ...
    .venv/bin/python benchmarks/synthetic_validation.py --quick --seeds 0      # smoke run
    .venv/bin/python benchmarks/synthetic_validation.py --world v1 --seeds 0 1 2 --out runs/sv1   # issue 5's table
    .venv/bin/python benchmarks/synthetic_validation.py --pool 4000 --seeds 0 --methods random full --out runs/sv2e

Each seed's folder is a demo folder; a rerun reuses finished models, subsets and scores, and a seed
whose ``demo_results.json`` already holds the requested methods is read back as it is, so runs with
different ``--methods`` and seeds are summarised together (the table says how many seeds each
method has).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
from scipy import stats

from reasonsift.config import WORLDS
from reasonsift.synth.demo import run_demo
from reasonsift.synth.demo_presets import PRESETS, V1_VALIDATION, VALIDATION

METHODS = ("temp", "random", "full", "longest", "middle-perplexity", "difficulty", "full-loss", "s2l", "embedding",
           "cft-numbers")


def ci(values: list[float]) -> str:
    """``mean ± half-width`` of the 95% t interval over seeds (``mean`` alone for one seed)."""
    arr = np.asarray(values, dtype=float)
    if len(arr) < 2:
        return f"{arr.mean():.3f} (1 seed)"
    half = stats.t.ppf(0.975, len(arr) - 1) * arr.std(ddof=1) / np.sqrt(len(arr))
    return f"{arr.mean():.3f} ± {half:.3f}"


def summarize(per_seed: list[dict]) -> str:
    """Markdown tables: properties, signals, methods."""
    first = per_seed[0]
    p = first.get("properties", {})
    lines = [f"seeds: {[r['seed'] for r in per_seed]}; world seed {first.get('world_seed', first['seed'])}", ""]
    if p:
        rnd = [r["methods"]["random"]["accuracy"] for r in per_seed if "random" in r["methods"]]
        full = [r["methods"]["full"]["accuracy"] for r in per_seed if "full" in r["methods"]]
        lines += ["| property | value |", "|---|---|",
                  f"| median / mean / max trace (tokens) | {p['median_trace_tokens']:.0f} / {p['mean_trace_tokens']:.0f} "
                  f"/ {p['max_trace_tokens']} |",
                  f"| early window share ({first['size']['short_tokens']} / median trace) | {p['window_share']:.3f} |",
                  f"| traces longer than the {first['size']['long_tokens']:,}-token window | "
                  f"{p['share_beyond_long_window']:.3f} |",
                  f"| low-quality share of the pool | {p['low_quality_share']:.3f} |",
                  f"| θ₀ accuracy (no SFT) | {first['base_accuracy']:.3f} |"]
        if full:
            lines.append(f"| full-pool SFT accuracy ({len(full)} seeds) | {ci(full)} (sd {np.std(full, ddof=1) if len(full) > 1 else 0:.3f}) |")
        if rnd:
            lines.append(f"| 10% random SFT accuracy ({len(rnd)} seeds) | {ci(rnd)} (sd {np.std(rnd, ddof=1) if len(rnd) > 1 else 0:.3f}) |")
        if full and rnd:
            full_gain = np.mean(full) - first["base_accuracy"]
            # A share of no gain is meaningless (the first v2 run printed 7812500.00 for 0.008 / 1e-9).
            share = f"{(np.mean(rnd) - first['base_accuracy']) / full_gain:.2f}" if full_gain > 0 else "n/a (no full-pool gain)"
            lines.append(f"| share of the full-pool gain that 10% random gets | {share} |")
        lines.append("")
    v = first["validation"]
    rnd_info = first.get("theta_rnd") or {}
    lines += ["| signal (scores shared by all seeds) | value |", "|---|---|",
              f"| Spearman(θ_rnd 100-token loss, true steps) | {v['spearman_difficulty_early_window']:.3f} |",
              f"| Spearman(θ₀ 100-token loss, true steps) | {v['spearman_base_loss_early_window']:.3f} |",
              f"| Spearman(θ₀ full-trace loss, true steps) | {v['spearman_full_trace_loss']:.3f} |",
              f"| NMI(loss-vector k-means clusters, families) | {v['nmi_loss_vector_clusters_vs_families']:.3f} |"]
    if rnd_info:
        lines.append(f"| θ_rnd | {json.dumps(rnd_info)[:160]} |")
    if "theta_f_distance" in first:
        lines.append(f"| ‖θ_f − θ₀‖, radii | {first['theta_f_distance']:.2f}, {first['radii'][0]:.2f} → {first['radii'][1]:.2f} |")
    lines += ["", "| method | seeds | subset | low-quality share (kinds) | mean true steps | accuracy (95% CI) | "
              "minus random, paired (95% CI) |", "|---|---|---|---|---|---|---|"]
    methods = list(dict.fromkeys(m for r in per_seed for m in r["methods"]))
    for m in methods:
        rows = [r for r in per_seed if m in r["methods"]]
        res = [r["methods"][m] for r in rows]
        kinds = sorted({k for x in res for k in x.get("low_quality_kinds", {})})
        kind_text = ", ".join(f"{k} {np.mean([x.get('low_quality_kinds', {}).get(k, 0.0) for x in res]):.2f}"
                              for k in kinds)
        paired = [r["methods"][m]["accuracy"] - r["methods"]["random"]["accuracy"] for r in rows
                  if "random" in r["methods"]]
        sizes = sorted({x["n"] for x in res})
        lines.append(f"| {m} | {len(res)} | {', '.join(map(str, sizes))} | "
                     f"{np.mean([x['low_quality_share'] for x in res]):.3f} ({kind_text or '-'}) | "
                     f"{np.mean([x['mean_true_difficulty'] for x in res]):.2f} | {ci([x['accuracy'] for x in res])} | "
                     f"{ci(paired) if paired and m != 'random' else '–'} |")
    lines.append(f"| θ₀ (no SFT) | – | – | – | – | {first['base_accuracy']:.3f} | |")
    t = first["tokens"]
    lines += ["", f"tokens scored by TEMP (all {t['checkpoints']} checkpoints): {t['scored']:,}; full-trace scoring "
              f"at the same checkpoints: {t['full_trace_all_checkpoints']:,}; every full trace once: "
              f"{t['full_trace_once']:,}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/synthetic_validation")
    parser.add_argument("--world", choices=WORLDS, default="v2")
    parser.add_argument("--quick", action="store_true", help="the demo's reduced size")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--pool", type=int, default=None,
                        help="pool size (default: the preset's, 1,000 for v2); the budget stays 10%% of it")
    args = parser.parse_args()
    if args.pool is not None and args.pool < 10:
        parser.error("--pool must be at least 10 (the budget is 10% of it)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    size = PRESETS[(args.world, True)] if args.quick else VALIDATION if args.world == "v2" else V1_VALIDATION
    if args.pool is not None:  # docs/synth-world-v2.md, change 11: a larger pool, the same 10%
        size = dataclasses.replace(size, pool=args.pool)
    out = Path(args.out)
    per_seed = []
    for seed in args.seeds:
        folder = out / f"seed{seed}"
        done = folder / "demo_results.json"
        previous = json.loads(done.read_text()) if done.exists() else None
        if previous and set(previous["methods"]) >= set(args.methods):
            per_seed.append(previous)  # finished earlier (maybe with more methods)
            continue
        # v2: one world, θ_f and scoring run shared by the seeds (the paper's seeds share M23K); v1 as recorded
        shared = dict(shared=out / "shared", world_seed=0) if args.world == "v2" else {}
        result = run_demo(folder, seed=seed, progress=False, methods=tuple(args.methods), size=size,
                          world=args.world, **shared)
        if previous:  # keep the methods an earlier run of this seed had
            result["methods"] = {**previous["methods"], **result["methods"]}
            done.write_text(json.dumps(result, indent=2))
        per_seed.append(result)
    table = summarize(per_seed)
    (out / "summary.md").write_text(table + "\n")
    (out / "per_seed.json").write_text(json.dumps(per_seed, indent=2))
    print(table)


if __name__ == "__main__":
    main()
