"""θ_rnd's loss ratio under the paper's fixed Gaussian schedule and under ``score.noise=calibrate``.

Scores the same pool twice (difficulty only: ``score.direction=isotropic``, one window) and prints the
8 checkpoint ratios of each, the chosen θ_rnd, the calibration's search and its cost. Default model:
SmolLM2-135M-Instruct from the registry (``scripts/real_model.py``); default pool: MATH train.

    .venv/bin/python benchmarks/noise_calibration.py --n 48
    .venv/bin/python benchmarks/noise_calibration.py --model PATH --data POOL.jsonl --n 200
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # scripts.real_model

from reasonsift.config import load_config  # noqa: E402
from reasonsift.scoring.run_scoring import run_scoring  # noqa: E402

MATH = ROOT.parent / "shared" / "data" / "math" / "train.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="θ₀ folder (default: the registry's SmolLM2-135M-Instruct)")
    ap.add_argument("--data", default=str(MATH))
    ap.add_argument("--n", type=int, default=48, help="pool size (the first N rows)")
    ap.add_argument("--window", type=int, default=100, help="response tokens scored (the difficulty window)")
    ap.add_argument("--calibration-examples", type=int, default=24)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.model is None:
        from scripts.real_model import real_model_dir

        args.model = str(real_model_dir())
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for noise in ("fixed", "calibrate"):
            configs = load_config(["data", "model", "score"], None, [
                f"model.model={args.model}", f"data.limit={args.n}", f"score.noise={noise}",
                "score.direction=isotropic", f"score.short_tokens={args.window}", f"score.long_tokens={args.window}",
                f"score.calibration_examples={args.calibration_examples}"])
            t0 = time.time()
            report = run_scoring(args.data, configs, Path(tmp) / noise, "benchmark", progress=False)
            results[noise] = {"wall_s": round(time.time() - t0, 1), "theta_rnd": report["theta_rnd"],
                              "noise": report["noise"], "signals": report["signals"]}
    print(f"model {args.model}\ndata {args.data} (first {args.n} rows), window {args.window} tokens")
    for noise, r in results.items():
        t = r["theta_rnd"]
        print(f"\n{noise}: stds {', '.join(f'{s:.3g}' for s in r['noise']['stds'])}")
        print(f"  ratios {', '.join(f'{x:.3f}' for x in t['ratios'])}")
        print(f"  θ_rnd = checkpoint {t['checkpoint']}, ratio {t['ratio']:.3f}, in [2, 3]: {t['in_range']}; "
              f"score wall time {r['wall_s']} s")
        if noise == "calibrate":
            n = r["noise"]
            print(f"  calibration: scale {n['scale']:.4g} on {n['sample_examples']} examples, {len(n['search'])} trials: "
                  + "; ".join(f"x{s['scale']:.3g} -> {s['ratio']:.3f}" for s in n["search"]))
        for w in r["signals"]["warnings"]:
            print(f"  signal warning: {w}")
    print(json.dumps(results, default=float))


if __name__ == "__main__":
    main()
