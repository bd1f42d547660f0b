"""The short-response trap and ``select.min_response_tokens``, in the synthetic world (ground truth known).

TEMP's difficulty filter keeps the high-loss side of a k = 2 split of the θ_rnd 100-token loss. A
response of a handful of tokens (a truncated trace) has a high mean loss and can win that split. This
script scores a synthetic pool once per noise setting (the paper's fixed schedule, and the calibrated
default), then selects 10% with TEMP with the guard off (the paper's algorithm) and on, the threshold
being the one the run's own signal check suggests, and prints side by side, per seed:

- the subset's low-quality share (wrong step or truncated trace), truncated share, mean true steps;
- Spearman(difficulty, true steps) over the pool and over the subset;
- θ_rnd's ratio, and the signal warnings the run's report.json carries.

    .venv/bin/python benchmarks/short_response_guard.py --seeds 0 1 2 --pool 1000

θ_f is not trained here (``score.direction=isotropic``: loss vectors from the Gaussian checkpoints), so
the figures are about the difficulty filter, not the full TEMP pipeline of the demo.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from reasonsift.config import load_config
from reasonsift.scoring.run_scoring import run_scoring
from reasonsift.scoring.signals import SHORT_FRACTION_OF_MEDIAN, spearman
from reasonsift.selection.run_selection import run_selection
from reasonsift.synth.generate import generate_pool, write_jsonl
from reasonsift.synth.world import build_base_model


def subset_figures(run: Path, rows: dict[str, dict]) -> dict[str, float]:
    """Ground truth of the selected subset and the pool (the selector never saw these columns)."""
    scores = pq.read_table(run / "scores.parquet").to_pandas()
    truth = scores["id"].map(lambda i: rows[i]["true_difficulty"]).to_numpy(dtype=float)
    kind = scores["id"].map(lambda i: rows[i]["low_quality_kind"])
    sel = scores["selected"].to_numpy()
    d = scores["difficulty"].to_numpy(dtype=float)
    return {"n": int(sel.sum()), "low_quality": float((kind[sel] != "").mean()),
            "truncated": float((kind[sel] == "truncated").mean()), "mean_steps": float(truth[sel].mean()),
            "rho_subset": spearman(d[sel], truth[sel]) or float("nan"),
            "rho_pool": spearman(d, truth) or float("nan"),
            "pool_low_quality": float((kind != "").mean()), "pool_mean_steps": float(truth.mean())}


def one_seed(seed: int, pool_size: int, root: Path, base: Path) -> list[dict]:
    pool_rows = generate_pool(pool_size, seed=seed)
    rows = {r["id"]: r for r in pool_rows}
    pool = write_jsonl(pool_rows, root / f"pool{seed}.jsonl")
    out = []
    for noise in ("fixed", "calibrate"):
        run = root / f"seed{seed}-{noise}"
        common = [f"model.model={base}", f"score.noise={noise}", "score.direction=isotropic", "score.seed=42",
                  "score.short_tokens=32", "score.long_tokens=512", f"select.budget={pool_size // 10}",
                  f"select.seed={seed}"]
        t0 = time.time()
        report = run_scoring(str(pool), load_config(["data", "model", "score", "select"], None, common), run,
                             "benchmark", progress=False)
        score_s = time.time() - t0
        median = float(np.median(pq.read_table(run / "scores.parquet", columns=["n_response_tokens"])
                                 .column(0).to_numpy()))
        guard = int(math.ceil(SHORT_FRACTION_OF_MEDIAN * median))
        for label, extra in (("off", []), (f"{guard}", [f"select.min_response_tokens={guard}"])):
            configs = load_config(["data", "model", "score", "select"], None, common + extra)
            run_selection(run, configs, "benchmark", progress=False)
            saved = json.loads((run / "report.json").read_text())
            out.append({"seed": seed, "noise": noise, "guard": label, "ratio": report["theta_rnd"]["ratio"],
                        "score_s": score_s, "warnings": saved["signals"]["warnings"],
                        **subset_figures(run, rows)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--pool", type=int, default=1000)
    ap.add_argument("--out", default=None, help="keep the run folders here (default: a temporary folder)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    base = build_base_model(progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        root.mkdir(parents=True, exist_ok=True)
        results = [r for s in args.seeds for r in one_seed(s, args.pool, root, base)]
    df = pd.DataFrame(results)
    print(f"pool {args.pool}, budget {args.pool // 10}, seeds {args.seeds}; pool low-quality share "
          f"{df['pool_low_quality'].mean():.3f}, pool mean true steps {df['pool_mean_steps'].mean():.2f}")
    print("| noise | θ_rnd ratio | min_response_tokens | low-quality share | truncated share | mean true steps "
          "| ρ(difficulty, steps) pool | ρ subset |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['noise']} (seed {r['seed']}) | {r['ratio']:.3f} | {r['guard']} | {r['low_quality']:.3f} | "
              f"{r['truncated']:.3f} | {r['mean_steps']:.2f} | {r['rho_pool']:+.3f} | {r['rho_subset']:+.3f} |")
    print("\nsignal warnings per run (noise, seed, guard):")
    for r in results:
        for w in r["warnings"]:
            print(f"- {r['noise']} s{r['seed']} guard={r['guard']}: {w}")
    print(json.dumps(results, default=float))


if __name__ == "__main__":
    main()
