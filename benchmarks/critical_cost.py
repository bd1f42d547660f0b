"""What finding critical tokens costs, and what batching the rollouts buys.

Command (from the repository root; about 4 minutes on the 2-core VM):

    .venv/bin/python benchmarks/critical_cost.py

Model: the synthetic world's shipped θ₀ (0.45M parameters, character tokenizer), which solves part
of the world's one-step problems greedily. Data: ``--rows`` clean one-step problems.
The same ``reasonsift critical`` run (greedy responses) is done twice in one process, with
``critical.batch_size`` = 1 and = ``--batch-size``; the masks must be identical before any speed is
printed. Printed: rows kept, critical share, rollouts per tested position (2.0 would be "every
substitute of every position"; the rounds skip a second substitute where the first one already
reached the right answer), decoded tokens, wall time, and the batched / one-at-a-time speed ratio.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from reasonsift.config import load_config
from reasonsift.critical.run_critical import run_critical
from reasonsift.synth.generate import generate_pool, write_jsonl
from reasonsift.synth.world import build_base_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = build_base_model(progress=False)
    rows = [r for r in generate_pool(20 * args.rows, seed=11, low_quality_fraction=0.0)
            if r["true_difficulty"] == 1][:args.rows]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = write_jsonl(rows, Path(tmp) / "pool.jsonl")
        for batch in (1, args.batch_size):
            configs = load_config(["data", "model", "critical"], None, [
                f"model.model={model}", "critical.answer_kind=text", "critical.max_new_tokens=40",
                "critical.rollout_extra_tokens=8", f"critical.batch_size={batch}", "model.device=cpu"])
            run = Path(tmp) / f"run-b{batch}"
            start = time.perf_counter()
            report = run_critical(str(data), configs, run, "benchmark", progress=False)
            results[batch] = (time.perf_counter() - start, report, (run / "critical.jsonl").read_text())
    (t1, _, m1), (tb, rb, mb) = results[1], results[args.batch_size]
    if m1 != mb:
        raise SystemExit("batched and one-at-a-time runs gave different masks: the speed comparison is void")
    c = rb["counts"]
    print(f"θ₀ {model.name}, {args.rows} one-step rows, {args.threads} threads, torch {torch.__version__}")
    print(f"kept {c['kept']} of {c['rows']} (wrong {c['wrong']}); {rb['positions_tested']:,} positions tested, "
          f"{rb['critical_tokens']:,} critical ({100 * rb['critical_share']:.1f}%)")
    print(f"rollouts {rb['rollouts']:,} = {rb['rollouts_per_position']:.2f} per position "
          f"(all substitutes every time: 2.00); decoded tokens {rb['decoded_tokens']:,}")
    print(f"wall: batch 1 {t1:.1f} s, batch {args.batch_size} {tb:.1f} s -> {t1 / tb:.2f}x; "
          f"{rb['rollouts'] / tb:,.0f} rollouts/s batched")
    print(json.dumps({k: rb[k] for k in ("counts", "critical_share", "rollouts_per_position", "decoded_tokens")}))


if __name__ == "__main__":
    main()
