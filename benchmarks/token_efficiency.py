"""Token efficiency: tokens TEMP's scoring processes vs full-trace loss scoring, on the real datasets.

Commands (from the repository root):

    .venv/bin/python benchmarks/token_efficiency.py          # 2,000 rows per dataset
    .venv/bin/python benchmarks/token_efficiency.py --quick  # 200 rows, smaller tokenizer

Datasets (../shared/data): GSM8K train, MATH train, Sky-T1 long chain-of-thought traces on MATH500
(the response is the first — and only — element of ``code``, read with ``--field response=code``)
and the Marco-o1 CoT demo set. A seeded random sample of ``--rows`` rows per dataset (all rows when
the dataset is smaller).

Tokenization is the real path: rows are read by ``reasonsift.data.load.iter_examples`` and
tokenized by ``reasonsift.data.render.tokenize_example`` (chat template, prompt + response + eos)
with a byte-level BPE trained here by ``reasonsift.models.train_bpe_tokenizer`` on the sampled
rows (32,000 tokens; 8,000 with --quick). Qwen's 152k tokenizer splits text differently (and its
chat template and system prompt are longer), so absolute counts with Qwen would differ; the
ratios depend mostly on the response-length distribution.

Accounting is report.json's (``reasonsift.scoring.merge.merge_scores``), over the checkpoints
``reasonsift score`` runs with the default ScoreConfig (θ₀ at N=1,000, 8 Gaussian at N=100,
8 directional at N=1,000; list from ``scoring.plan.checkpoint_plan``):
    scored              Σ_checkpoints Σ_examples (prompt + min(N_ckpt, response))  (prompt in every forward)
    full_trace_once     Σ_examples (prompt + response)      (response includes eos)
    full_trace_all_checkpoints = full_trace_once × 17
    savings_vs_X        1 − scored / X
The script first runs the real ``run_scoring`` on a few rows of every dataset and checks that its
report.json ``tokens`` block equals this script's numbers for the same rows (skip with --no-check).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from transformers.utils import logging as hf_logging

from reasonsift.config import ScoreConfig, load_config
from reasonsift.data.load import iter_examples, parse_field_overrides
from reasonsift.data.records import Example
from reasonsift.data.render import tokenize_example
from reasonsift.models import build_tiny_llama, train_bpe_tokenizer
from reasonsift.scoring.plan import checkpoint_plan
from reasonsift.scoring.run_scoring import run_scoring

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DATASETS = {  # name: (path, --field overrides)
    "gsm8k": (SHARED / "gsm8k" / "train.jsonl", ()),
    "math": (SHARED / "math" / "train.jsonl", ()),
    "sky_t1_long_cot": (SHARED / "sky_t1_long_cot" / "Sky-T1-math-correct-5K-27B.math500.jsonl.gz", ("response=code",)),
    "marco_o1_cot": (SHARED / "marco_o1_cot" / "CoT_demo.json", ()),
}


def sample_examples(path: Path, fields: tuple[str, ...], rows: int, seed: int) -> tuple[list[Example], int]:
    """A seeded random sample of ``rows`` examples (in file order) and the dataset's row count."""
    examples = [ex for _, ex, _ in iter_examples(path, parse_field_overrides(fields))]
    rng = np.random.default_rng(seed)
    keep = sorted(rng.choice(len(examples), min(rows, len(examples)), replace=False))
    return [examples[i] for i in keep], len(examples)


def token_counts(tokenizer: Any, examples: list[Example], system_prompt: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(prompt tokens, full response tokens incl. eos) per example, as ``reasonsift score`` counts them."""
    n_prompt, n_response = [], []
    for ex in examples:
        tk = tokenize_example(tokenizer, ex, system_prompt)
        n_prompt.append(len(tk.prompt_ids))
        n_response.append(tk.n_response_tokens)
    return np.array(n_prompt, dtype=np.int64), np.array(n_response, dtype=np.int64)


def accounting(n_prompt: np.ndarray, n_response: np.ndarray, checkpoints: list[tuple[str, int, int]]) -> dict[str, Any]:
    """report.json's ``tokens`` block (merge.py) from per-example counts; per-stage totals added."""
    scored, scored_response, by_stage = 0, 0, {}
    for stage, _, window in checkpoints:
        seen = np.minimum(n_response, window)  # the scorer keeps response_ids[:window]
        tokens = int((n_prompt + seen).sum())
        scored += tokens
        scored_response += int(seen.sum())
        by_stage[stage] = by_stage.get(stage, 0) + tokens
    tokens = {"scored": scored, "scored_response": scored_response,
              "full_trace_once": int((n_prompt + n_response).sum())}
    n_ckpts = len([c for c in checkpoints if c[0] != "full"])
    tokens["checkpoints"] = n_ckpts
    tokens["full_trace_all_checkpoints"] = tokens["full_trace_once"] * n_ckpts
    for key in ("full_trace_all_checkpoints", "full_trace_once"):
        tokens[f"savings_vs_{key}"] = round(1 - tokens["scored"] / tokens[key], 4) if tokens[key] else 0.0
    return {"tokens": tokens, "by_stage": by_stage}


def cross_check(tokenizer: Any, samples: dict[str, list[Example]], per_dataset: int) -> None:
    """Run the real scoring stage on a few rows and require report.json's tokens == ``accounting``."""
    rows = [ex for exs in samples.values() for ex in exs[:per_dataset]]
    logging.getLogger("reasonsift").setLevel(logging.ERROR)  # θ_rnd range warnings are noise for a random tiny model
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, pool = Path(tmp) / "model", Path(tmp) / "pool.jsonl"
        build_tiny_llama(len(tokenizer), hidden_size=32, num_layers=1, num_heads=2).save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        pool.write_text("".join(json.dumps({"prompt": ex.prompt, "response": ex.response}) + "\n" for ex in rows))
        configs = load_config(["data", "model", "score"], None, [
            f"model.model={model_dir}", "score.direction=finetune", "score.finetune_steps=1",
            "score.finetune_examples=2", "score.batch_tokens=4096"])
        report = run_scoring(str(pool), configs, Path(tmp) / "run", "token_efficiency cross-check", progress=False)
    n_prompt, n_response = token_counts(tokenizer, rows, None)
    mine = accounting(n_prompt, n_response, checkpoint_plan(configs["score"]))["tokens"]
    theirs = {k: report["tokens"][k] for k in mine}
    if mine != theirs:
        raise SystemExit(f"accounting differs from report.json:\n  here:   {mine}\n  report: {theirs}")
    print(f"cross-check: report.json tokens of a real `reasonsift score` run on {len(rows)} rows "
          f"== this script's accounting ({mine['scored']:,} scored, {mine['full_trace_once']:,} full once)")


def print_dataset(name: str, total_rows: int, n_prompt: np.ndarray, n_response: np.ndarray,
                  acc: dict[str, Any], checkpoints: list[tuple[str, int, int]]) -> None:
    """One table: length profile, then TEMP vs the two full-trace baselines (totals and per example)."""
    t, n = acc["tokens"], len(n_prompt)
    q = np.percentile(n_response, [50, 90])
    print(f"\n== {name}: {n:,} of {total_rows:,} rows; prompt {n_prompt.mean():.0f} tokens/example; response "
          f"mean {n_response.mean():,.0f}, p50 {q[0]:,.0f}, p90 {q[1]:,.0f}, max {n_response.max():,}; "
          f"> 100 tokens: {(n_response > 100).mean():.0%}, > 1,000: {(n_response > 1000).mean():.0%}")
    windows = {st: w for st, _, w in checkpoints}
    counts = {st: sum(1 for s, _, _ in checkpoints if s == st) for st in windows}
    parts = ", ".join(f"{st} {counts[st]}×N={windows[st]}: {acc['by_stage'][st]:,}" for st in windows)
    print(f"{'':<34}{'tokens':>14}{'per example':>13}{'TEMP saves':>12}")
    print(f"{'TEMP scoring (' + str(t['checkpoints']) + ' checkpoints)':<34}{t['scored']:>14,}{t['scored'] / n:>13,.0f}"
          f"{'':>12}   [{parts}]")
    print(f"{'  of which response tokens':<34}{t['scored_response']:>14,}{t['scored_response'] / n:>13,.0f}")
    print(f"{'full traces at all checkpoints':<34}{t['full_trace_all_checkpoints']:>14,}"
          f"{t['full_trace_all_checkpoints'] / n:>13,.0f}{t['savings_vs_full_trace_all_checkpoints']:>12.1%}")
    print(f"{'full traces once':<34}{t['full_trace_once']:>14,}{t['full_trace_once'] / n:>13,.0f}"
          f"{t['savings_vs_full_trace_once']:>12.1%}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, help="sampled rows per dataset (default 2000; --quick 200)")
    p.add_argument("--vocab", type=int, help="BPE vocabulary size (default 32000; --quick 8000)")
    p.add_argument("--system-prompt", default=None, help="as `reasonsift score --system-prompt` (default none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-check", action="store_true", help="skip the run_scoring cross-check")
    p.add_argument("--quick", action="store_true", help="smoke run")
    args = p.parse_args()
    rows = args.rows or (200 if args.quick else 2000)
    vocab = args.vocab or (8000 if args.quick else 32000)
    start = time.time()
    hf_logging.disable_progress_bar()
    samples, totals = {}, {}
    for name, (path, fields) in DATASETS.items():
        samples[name], totals[name] = sample_examples(path, fields, rows, args.seed)
    texts = [ex.prompt + "\n" + ex.response for exs in samples.values() for ex in exs]
    tokenizer = train_bpe_tokenizer(texts, vocab_size=vocab)
    print(f"tokenizer: byte-level BPE, {len(tokenizer):,} tokens, trained on the {len(texts):,} sampled rows "
          f"({sum(map(len, texts)) / 1e6:.1f}M chars); template: reasonsift's local chat template; "
          f"system prompt: {args.system_prompt!r}. Counts with Qwen2.5's tokenizer would differ.")
    if not args.no_check:
        cross_check(tokenizer, samples, 2 if args.quick else 3)
    checkpoints = checkpoint_plan(ScoreConfig(direction="model"))  # what `reasonsift score --direction-model F` runs
    summary = []
    for name, examples in samples.items():
        n_prompt, n_response = token_counts(tokenizer, examples, args.system_prompt)
        acc = accounting(n_prompt, n_response, checkpoints)
        print_dataset(name, totals[name], n_prompt, n_response, acc, checkpoints)
        summary.append((name, len(examples), statistics.mean(n_response.tolist()), acc["tokens"]))
    print(f"\n{'dataset':<17}{'rows':>6}{'resp. mean':>11}{'TEMP/ex':>9}{'full×17/ex':>11}{'full×1/ex':>10}"
          f"{'saves vs ×17':>13}{'saves vs ×1':>13}")
    for name, n, mean_resp, t in summary:
        print(f"{name:<17}{n:>6,}{mean_resp:>11,.0f}{t['scored'] / n:>9,.0f}{t['full_trace_all_checkpoints'] / n:>11,.0f}"
              f"{t['full_trace_once'] / n:>10,.0f}{t['savings_vs_full_trace_all_checkpoints']:>13.1%}"
              f"{t['savings_vs_full_trace_once']:>13.1%}")
    print("(negative savings: TEMP processes more tokens than that baseline; "
          f"{time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
