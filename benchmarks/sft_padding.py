"""SFT on a mixed-length pool, random batches vs ``train.group_by_length``, side by side in one run.

World v2's traces run from ~30 to ~1,400 tokens, so a random batch of 16 is padded to its longest
member and most of SFT's compute goes to padding (issue 14: θ_f took 47 minutes). This trains the
shipped θ₀ v2 for the same number of epochs on the same rows with the v2 demo's recipe
(``synth.demo_presets.sft_recipe``: batch 16, lr 1e-3), once with random batches and once length-grouped, and prints for each: wall time, the share of
padded positions over every forward, the final training loss, and the time ratio.

    .venv/bin/python benchmarks/sft_padding.py [--rows 160] [--epochs 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from reasonsift.config import DataConfig, ModelConfig
from reasonsift.synth.demo_presets import FULL, sft_recipe
from reasonsift.synth.generate import write_jsonl
from reasonsift.synth.v2.generate import generate_pool
from reasonsift.synth.world import SHIPPED_V2
from reasonsift.training.run_training import run_training


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=160)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--world-seed", type=int, default=0)
    args = p.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = write_jsonl(generate_pool(args.rows, args.world_seed), Path(tmp) / "pool.jsonl")
        for group in (False, True):
            seen: list[tuple[int, int]] = []  # (real tokens, rows x padded width) per forward
            # Count padding at the model's forward: the Trainer builds the batches, we only watch them.
            original = torch.nn.Module.__call__

            def watch(module, *a, **kw):
                if type(module).__name__ == "LlamaForCausalLM" and "attention_mask" in kw:
                    mask = kw["attention_mask"]
                    seen.append((int(mask.sum()), mask.numel()))
                return original(module, *a, **kw)

            train = sft_recipe(dataclasses.replace(FULL, group_by_length=group), args.epochs, seed=0)
            torch.nn.Module.__call__ = watch
            try:
                start = time.perf_counter()
                report = run_training(str(data), {"data": DataConfig(), "model": ModelConfig(model=str(SHIPPED_V2)),
                                                  "train": train}, Path(tmp) / f"out-{group}", progress=False,
                                      log_lines=False)
                wall = time.perf_counter() - start
            finally:
                torch.nn.Module.__call__ = original
            real, total = sum(r for r, _ in seen), sum(t for _, t in seen)
            results[group] = {"wall_s": wall, "padding_share": 1 - real / total, "forwards": len(seen),
                              "real_tokens": real, "final_loss": report.get("final_loss")}
    print(f"rows {args.rows}, epochs {args.epochs}, world seed {args.world_seed}, batch {FULL.batch_size}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'batches':<16}{'wall s':>9}{'forwards':>10}{'real tokens':>13}{'padding':>9}{'final loss':>12}")
    for group, r in results.items():
        name = "length-grouped" if group else "random"
        loss = "" if r["final_loss"] is None else f"{r['final_loss']:.4f}"
        print(f"{name:<16}{r['wall_s']:>9.1f}{r['forwards']:>10}{r['real_tokens']:>13,}{r['padding_share']:>9.3f}{loss:>12}")
    print(f"time ratio random / grouped: {results[False]['wall_s'] / results[True]['wall_s']:.2f}x")
    print(json.dumps({str(k): v for k, v in results.items()}))


if __name__ == "__main__":
    main()
