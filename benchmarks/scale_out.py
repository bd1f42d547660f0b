"""Wall time of one scoring job launched three ways: one process, torchrun (2 processes), Ray (2 workers).

Command (from the repository root; a few minutes on the 2-core VM):

    .venv/bin/python benchmarks/scale_out.py [--rows 256] [--hidden 256] [--layers 6]

Model: a random-init tiny Llama (``--hidden``/``--layers``, 512-token BPE tokenizer trained on GSM8K
text) and, as θ_f, a seeded small change of it. Data: the first ``--rows`` GSM8K train rows. Plan:
θ₀ + 3 Gaussian + 3 directional checkpoints, windows 16/64, ``score.shard_size=32``. Each launch is
a fresh ``reasonsift score`` command in a new run folder, timed from start to exit, so Python and
library start-up, Ray's local cluster start (``--backend ray`` with no address starts one) and
torchrun's rendezvous are included. The three ``scores.parquet`` must be byte-identical before any
time is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
PLAN = ["score.num_isotropic=3", "score.num_directional=3", "score.short_tokens=16", "score.long_tokens=64",
        "score.shard_size=32", "score.isotropic_std_start=0.02", "score.isotropic_std_end=0.2"]


def build_models(out: Path, hidden: int, layers: int) -> tuple[Path, Path]:
    """θ₀ and θ_f folders (θ_f = θ₀ + 0.01·N(0, 1) per weight, seeded)."""
    from reasonsift.models import build_tiny_llama, train_bpe_tokenizer

    rows = [json.loads(line) for line in GSM8K.read_text(encoding="utf-8").splitlines()[:400]]
    tok = train_bpe_tokenizer([r["question"] + "\n" + r["answer"] for r in rows], vocab_size=512)
    model = build_tiny_llama(len(tok), hidden_size=hidden, num_layers=layers, num_heads=4, seed=0)
    model.save_pretrained(out / "theta0")
    tok.save_pretrained(out / "theta0")
    gen = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=gen))
    model.save_pretrained(out / "theta_f")
    tok.save_pretrained(out / "theta_f")
    return out / "theta0", out / "theta_f"


def timed(cmd: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    start = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return time.time() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=256)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=6)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        theta0, theta_f = build_models(tmp, args.hidden, args.layers)
        data = tmp / "pool.jsonl"
        data.write_text("".join(GSM8K.read_text(encoding="utf-8").splitlines(keepends=True)[:args.rows]))

        def score(run: str, *extra: str) -> list[str]:
            return ["score", str(data), "--model", str(theta0), "--direction-model", str(theta_f),
                    "--run-dir", str(tmp / run), "--quiet", *PLAN, *extra]

        cli = [sys.executable, "-m", "reasonsift.cli"]
        launches = {
            "one process": cli + score("single"),
            "torchrun, 2 processes": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                      "--nproc-per-node", "2", "-m", "reasonsift.cli", *score("torchrun")],
            "Ray, 2 CPU workers (local Ray started by the command)": cli + score("ray", "--backend", "ray",
                                                                                   "--workers", "2"),
        }
        walls = {name: timed(cmd) for name, cmd in launches.items()}
        runs = ["single", "torchrun", "ray"]
        reference = (tmp / "single" / "scores.parquet").read_bytes()
        assert all((tmp / r / "scores.parquet").read_bytes() == reference for r in runs), "outputs differ"
        report = json.loads((tmp / "single" / "report.json").read_text())
        units = report["tokens"]["checkpoints"] * -(-args.rows // 32)
        print(f"{args.rows} rows, {units} units, {report['tokens']['scored']:,} tokens scored; "
              f"model hidden {args.hidden} x {args.layers} layers; scores.parquet byte-identical in all three")
        print("| launch | wall s | vs one process |")
        print("|---|---|---|")
        for name, wall in walls.items():
            print(f"| {name} | {wall:.1f} | {walls['one process'] / wall:.2f}x |")


if __name__ == "__main__":
    main()
