"""Scoring memory does not grow with the pool: ``reasonsift score`` on a 1× and a 10× pool.

Commands (from the repository root):

    .venv/bin/python benchmarks/score_memory.py          # 480 vs 4,800 GSM8K rows
    .venv/bin/python benchmarks/score_memory.py --quick  # 48 vs 480 rows

Each run is a fresh ``python -m reasonsift.cli score`` subprocess (tokenize → score every shard at
every checkpoint → merge), so its peak RSS covers the whole stage. Peak RSS comes from
``/usr/bin/time -v`` ("Maximum resident set size") when present, else from
``resource.getrusage(RUSAGE_CHILDREN)`` in a one-child wrapper process. An import-only process
(torch, transformers, pyarrow, reasonsift's scoring stage) gives the floor every run pays, so the
table also shows what scoring adds above it.

Setup (stated so numbers can be compared): the base pool is the first 480 rows of GSM8K train
(the test fixture has 48; --quick uses 48), the large pool the first 4,800; a 2-layer, hidden-64
Llama with a 512-token BPE trained on GSM8K (the test fixture's model); ``score.direction=isotropic``,
``score.num_isotropic=1`` (2 checkpoints), ``short_tokens=16``, ``long_tokens=32``,
``shard_size=240`` (so both pools are whole shards), ``batch_tokens=1024``. The small token budget
only keeps the run short (packed bins of 16,384 tokens cost O(tokens²) attention on CPU; see
score_throughput.py); it changes speed, not results.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "train.jsonl"
SCORE_FLAGS = ["score.direction=isotropic", "score.num_isotropic=1", "score.short_tokens=16",
               "score.long_tokens=32", "score.shard_size=240", "score.batch_tokens=1024"]
IMPORTS = "import torch, transformers, pyarrow.parquet, reasonsift.cli, reasonsift.scoring.run_scoring"
WRAPPER = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
           "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
           "sys.exit(rc)")


def build_model(out: Path) -> None:
    """The test fixture's model: 512-token BPE on 400 GSM8K rows, 2-layer hidden-64 Llama, saved."""
    from reasonsift.models import build_tiny_llama, train_bpe_tokenizer

    with open(GSM8K, encoding="utf-8") as f:
        rows = [json.loads(next(f)) for _ in range(400)]
    tok = train_bpe_tokenizer([r["question"] + "\n" + r["answer"] for r in rows], vocab_size=512)
    build_tiny_llama(len(tok), hidden_size=64, num_layers=2, num_heads=4, seed=0).save_pretrained(out)
    tok.save_pretrained(out)


def measure(cmd: list[str]) -> tuple[float, float, str]:
    """(peak RSS MiB, wall seconds, stdout) of one command run as a child process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    timer = ["/usr/bin/time", "-v"] if Path("/usr/bin/time").exists() else [sys.executable, "-c", WRAPPER]
    start = time.perf_counter()
    res = subprocess.run(timer + cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr[-3000:]}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr) or re.search(r"PEAK_KIB (\d+)", res.stderr)
    if m is None:
        raise SystemExit(f"no peak RSS in the output of {timer[0]}")
    return int(m.group(1)) / 1024, wall, res.stdout


def score_run(pool: Path, model: Path, run: Path) -> dict[str, float]:
    """One ``reasonsift score`` subprocess; its peak RSS, wall time and report.json token count."""
    cmd = [sys.executable, "-m", "reasonsift.cli", "score", str(pool), "--model", str(model), "--run", str(run),
           "--quiet", *SCORE_FLAGS]
    rss, wall, _ = measure(cmd)
    report = json.loads((run / "report.json").read_text())
    return {"rows": report["counts"]["examples"], "tokens": report["tokens"]["scored"], "rss": rss, "wall": wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=int, help="rows of the 1× pool (default 480; --quick 48)")
    p.add_argument("--factor", type=int, default=10, help="size of the large pool in base pools")
    p.add_argument("--quick", action="store_true", help="smoke run: 48 vs 480 rows")
    args = p.parse_args()
    base = args.base or (48 if args.quick else 480)
    tmp = Path(tempfile.mkdtemp(prefix="score_memory_"))
    try:
        build_model(tmp / "model")
        with open(GSM8K, encoding="utf-8") as f:
            lines = [next(f) for _ in range(base * args.factor)]
        floor, floor_wall, _ = measure([sys.executable, "-c", IMPORTS])
        print(f"import-only floor ({IMPORTS.split(', ', 1)[0][7:]}, ...): {floor:.0f} MiB peak RSS, {floor_wall:.1f} s")
        print(f"flags: {' '.join(SCORE_FLAGS)}; timer: "
              f"{'/usr/bin/time -v' if Path('/usr/bin/time').exists() else 'getrusage(RUSAGE_CHILDREN)'}")
        results = []
        for n in (base, base * args.factor):
            pool = tmp / f"pool{n}.jsonl"
            pool.write_text("".join(lines[:n]), encoding="utf-8")
            results.append(score_run(pool, tmp / "model", tmp / f"run{n}"))
        print(f"{'pool rows':>10}{'tokens scored':>15}{'wall s':>9}{'tok/s':>9}{'peak RSS MiB':>14}{'above floor':>13}")
        for r in results:
            print(f"{r['rows']:>10,}{r['tokens']:>15,}{r['wall']:>9.1f}{r['tokens'] / r['wall']:>9,.0f}"
                  f"{r['rss']:>14.0f}{r['rss'] - floor:>13.0f}")
        small, large = results
        above = (large["rss"] - floor) / max(small["rss"] - floor, 1e-9)
        print(f"{args.factor}× the rows: wall {large['wall'] / small['wall']:.2f}×, peak RSS "
              f"{large['rss'] / small['rss']:.2f}× ({above:.2f}× above the import floor)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
