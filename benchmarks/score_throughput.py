"""Scoring throughput: a naive HF loop vs TEMP-style padded batches vs reasonsift's scorer.

Commands (from the repository root):

    # CPU, the issue-6 settings: a ~7M-parameter Llama at a 2,048 and at a 152,064 vocabulary
    .venv/bin/python benchmarks/score_throughput.py
    # smoke run (fewer examples, one repetition; same code paths)
    .venv/bin/python benchmarks/score_throughput.py --quick
    # GPU: a Qwen2.5-7B-shaped model (random bf16 weights), vocab 152,064; on the workplace's
    # device machine, in one call, through benchmarks/gpu_throughput.sh (it says how)
    PYTHONPATH=src python benchmarks/score_throughput.py --device cuda --model-config qwen7b
    # where reasonsift's time goes (torch.profiler, one pass)
    .venv/bin/python benchmarks/score_throughput.py --vocab 152064 --profile

Same model, same token ids, one process, variants interleaved repetition by repetition:
  (a) naive   — per example ``model(input_ids, labels=labels).loss`` (what a user writes);
  (b) padded8 — like TEMP's ``_get-tokenwise-loss_ckpt.py``: batches of 8 in input order, right
                padding + attention_mask, full-vocab logits, then per-token cross-entropy;
  (c) reasonsift — ``reasonsift.scoring.scorer.score_items`` with ScoreConfig's defaults.
All three must agree on every per-example mean loss (max |Δ| printed; fp32 must be < 1e-4) before
any speed is reported. Tokens = prompt + scored response tokens (report.json's ``tokens.scored``).

Data: GSM8K train prompts + the first 100 response tokens, tokenized by ``tokenize_example`` with a
2,048-token byte-level BPE trained locally on GSM8K (``train_bpe_tokenizer``). The 152,064-vocab
model gets the same ids (throughput does not depend on which ids).

Models (random init; ``tiny7m`` is a Llama: hidden 256, 6 layers, 4 heads of 64, FFN 1,024, untied
embeddings; 7.34M parameters at vocab 2,048, 84.2M at 152,064). ``qwen7b`` is Qwen2.5-7B's config.

MFU: FLOPs per scoring-performance.md §3 (2 × matmul params × tokens + causal attention 4·L·d·T(T+1)/2
per sequence) over the machine's measured matmul rate (a 2048² fp32 ``torch.mm`` on the same threads;
8192² bf16 on GPU). "MFU(needed)" counts the LM head only at scored rows, the work scoring requires.
Peak memory: CPU — each variant in its own subprocess, peak RSS (VmHWM after a reset) minus RSS
before the pass; GPU — ``torch.cuda.max_memory_allocated`` minus the allocation before the pass.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from reasonsift.config import ScoreConfig
from reasonsift.data.load import iter_examples
from reasonsift.data.render import IGNORE_INDEX, Tokenized, tokenize_example
from reasonsift.models import train_bpe_tokenizer
from reasonsift.scoring.scorer import score_items

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "train.jsonl"
MODEL_CONFIGS = {
    "tiny7m": dict(model_type="llama", hidden_size=256, num_hidden_layers=6, num_attention_heads=4,
                   num_key_value_heads=4, intermediate_size=1024, max_position_embeddings=2048,
                   tie_word_embeddings=False, pad_token_id=0),
    # Qwen2.5-7B(-Instruct) config.json (scoring-performance.md §3, [S16]).
    "qwen7b": dict(model_type="qwen2", hidden_size=3584, num_hidden_layers=28, num_attention_heads=28,
                   num_key_value_heads=4, intermediate_size=18944, max_position_embeddings=32768,
                   rope_theta=1000000.0, rms_norm_eps=1e-6, hidden_act="silu", tie_word_embeddings=False,
                   vocab_size=152064, pad_token_id=0),
    # Qwen2 architecture (GQA, qkv biases) at tiny7m's size: runs the qwen7b code path on a CPU.
    "qwen-mini": dict(model_type="qwen2", hidden_size=256, num_hidden_layers=6, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=1024, max_position_embeddings=2048,
                      rope_theta=1000000.0, rms_norm_eps=1e-6, hidden_act="silu", tie_word_embeddings=False,
                      pad_token_id=0),
}
VARIANTS = ("naive", "padded8", "reasonsift")


def build_model(name: str, vocab: int, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Random-init causal LM from a config dict, built directly on ``device`` (a 7B init on CPU takes minutes)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = dict(MODEL_CONFIGS[name])
    cfg["vocab_size"] = vocab
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model.eval()


def load_items(n: int, response_tokens: int, data: Path = GSM8K) -> list[Tokenized]:
    """GSM8K prompt + first ``response_tokens`` response tokens via the real rendering path."""
    if not data.exists():
        raise SystemExit(f"{data} not found (on a device machine: bash benchmarks/gpu_throughput.sh prepare)")
    texts = [ex.prompt + "\n" + ex.response for _, ex, _ in iter_examples(data, limit=2000)]
    tok = train_bpe_tokenizer(texts, vocab_size=2048)
    items = []
    for _, ex, _ in iter_examples(data, limit=n):
        tk = tokenize_example(tok, ex, None, response_tokens)
        items.append(Tokenized(tk.prompt_ids, tk.response_ids))
    return items


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def naive_loop(model: torch.nn.Module, items: list[Tokenized], batch_tokens: int) -> list[float]:
    """(a) One forward per example with HF's own loss (mean NLL over labelled tokens)."""
    device, out = next(model.parameters()).device, []
    for it in items:
        ids = torch.tensor([it.prompt_ids + it.response_ids], device=device)  # (1, T)
        labels = ids.clone()
        labels[:, : len(it.prompt_ids)] = IGNORE_INDEX
        out.append(model(input_ids=ids, labels=labels).loss.item())
    return out


@torch.inference_mode()
def padded_loop(model: torch.nn.Module, items: list[Tokenized], batch_tokens: int, batch_size: int = 8) -> list[float]:
    """(b) TEMP's script shape: right-padded batches of 8, full logits, per-token CE, masked mean."""
    device, pad, out = next(model.parameters()).device, model.config.pad_token_id or 0, []
    for b in range(0, len(items), batch_size):
        group = items[b:b + batch_size]
        width = max(it.length for it in group)
        ids = torch.full((len(group), width), pad, dtype=torch.long)  # (B, T)
        mask = torch.zeros((len(group), width), dtype=torch.long)  # (B, T)
        labels = torch.full((len(group), width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
        for r, it in enumerate(group):
            ids[r, : it.length] = torch.tensor(it.prompt_ids + it.response_ids)
            mask[r, : it.length] = 1
            labels[r, len(it.prompt_ids): it.length] = torch.tensor(it.response_ids)
        ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits  # (B, T, V), full vocab
        nll = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                              ignore_index=IGNORE_INDEX, reduction="none").view(len(group), width - 1)
        valid = labels[:, 1:] != IGNORE_INDEX  # (B, T-1)
        out += ((nll * valid).sum(1) / valid.sum(1)).tolist()
    return out


def reasonsift_loop(model: torch.nn.Module, items: list[Tokenized], batch_tokens: int) -> list[float]:
    """(c) The library's packed scorer with ScoreConfig's defaults."""
    sc = ScoreConfig()
    nll = score_items(model, items, batch_tokens, sc.max_batch_examples, sc.lm_head_chunk)
    return [float(x.mean()) for x in nll]


def scorer_layout(model: torch.nn.Module, batch_tokens: int) -> str:
    """How the scorer lays out bins for this model (packed rows need a varlen attention kernel)."""
    from reasonsift.scoring.scorer import default_batch_tokens, uses_packing

    impl = model.config._attn_implementation
    budget = batch_tokens or default_batch_tokens(next(model.parameters()).device)
    kind = "packed bins" if uses_packing(model) else "length-sorted padded batches"
    return f"{impl}, {kind} of <= {budget:,} tokens"


RUNNERS: dict[str, Callable[[torch.nn.Module, list[Tokenized], int], list[float]]] = {
    "naive": naive_loop, "padded8": padded_loop, "reasonsift": reasonsift_loop}


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int, reps: int = 5, inner: int = 1) -> float:
    """Measured FLOP/s of a large square ``torch.mm`` (median of ``reps`` timings of ``inner`` calls)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    times = []
    for _ in range(reps):
        _sync(device)
        t = time.perf_counter()
        for _ in range(inner):
            torch.mm(a, b)
        _sync(device)
        times.append((time.perf_counter() - t) / inner)
    return 2 * n**3 / statistics.median(times)


def model_flops(model: torch.nn.Module, items: list[Tokenized]) -> tuple[float, float]:
    """(§3 FLOPs with the LM head on every token, FLOPs with the LM head on scored rows only)."""
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    head = model.get_output_embeddings().weight.numel()
    cfg = model.config
    d_attn = cfg.num_attention_heads * (getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
    tokens = sum(it.length for it in items)
    scored = sum(len(it.response_ids) for it in items)
    attn = sum(4 * cfg.num_hidden_layers * d_attn * it.length * (it.length + 1) / 2 for it in items)
    return 2 * linear * tokens + attn, 2 * (linear - head) * tokens + 2 * head * scored + attn


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory_mib(run: Callable[[], object], device: torch.device) -> float:
    """Extra peak memory of ``run()`` over what was allocated before it (see module docstring)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    try:  # Linux: reset the RSS high-water mark so model building does not hide the pass's peak
        Path("/proc/self/clear_refs").write_text("5")
        before = _rss_kib("VmRSS")
        run()
        return (_rss_kib("VmHWM") - before) / 1024
    except OSError:
        import resource

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        run()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


def memory_child(args: argparse.Namespace) -> None:
    """Subprocess entry: build the model, run one variant once, print its peak memory as JSON."""
    torch.set_num_threads(args.threads)
    raw = json.loads(Path(args._items).read_text())
    items = [Tokenized(p, r) for p, r in raw]
    model = build_model(args.model_config, args.vocab, torch.device("cpu"), torch.float32)
    RUNNERS[args._memory](model, items[:2], args.batch_tokens)  # warm-up: first-call allocations
    mib = peak_memory_mib(lambda: RUNNERS[args._memory](model, items, args.batch_tokens), torch.device("cpu"))
    print(json.dumps({"peak_mib": mib}))


def cpu_memory(args: argparse.Namespace, vocab: int, items: list[Tokenized]) -> dict[str, float]:
    """Per-variant peak RSS, each in a fresh process (RSS high-water marks never go down)."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "items.json"
        path.write_text(json.dumps([[it.prompt_ids, it.response_ids] for it in items]))
        for v in VARIANTS:
            cmd = [sys.executable, __file__, "--_memory", v, "--_items", str(path), "--vocab", str(vocab),
                   "--model-config", args.model_config, "--threads", str(args.threads),
                   "--batch-tokens", str(args.batch_tokens)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            out[v] = json.loads(res.stdout.strip().splitlines()[-1])["peak_mib"]
    return out


def run_setting(args: argparse.Namespace, vocab: int, items: list[Tokenized], device: torch.device,
                dtype: torch.dtype, mm_rate: float) -> None:
    """Time the three variants interleaved on one model; check equal losses; print one table."""
    model = build_model(args.model_config, vocab, device, dtype)
    n_params = sum(p.numel() for p in model.parameters())
    flops_s3, flops_needed = model_flops(model, items)
    losses = {v: RUNNERS[v](model, items, args.batch_tokens) for v in VARIANTS}  # also the warm-up
    diffs = {v: float(np.max(np.abs(np.array(losses[v]) - np.array(losses["naive"])))) for v in VARIANTS[1:]}
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(args.reps):
        for v in VARIANTS:
            _sync(device)
            t = time.perf_counter()
            RUNNERS[v](model, items, args.batch_tokens)
            _sync(device)
            times[v].append(time.perf_counter() - t)
    layout = scorer_layout(model, args.batch_tokens)
    if device.type == "cuda":
        mem = {v: peak_memory_mib(lambda v=v: RUNNERS[v](model, items, args.batch_tokens), device) for v in VARIANTS}
    else:
        del model
        mem = cpu_memory(args, vocab, items)
    tokens = sum(it.length for it in items)
    scored = sum(len(it.response_ids) for it in items)
    print(f"\n== {args.model_config}, vocab {vocab:,}, {n_params / 1e6:.2f}M params, {str(dtype)[6:]}, "
          f"{device.type}, {args.threads} threads; {len(items)} examples, {tokens:,} tokens "
          f"({scored:,} scored), {args.reps} reps; reasonsift: {layout}")
    print(f"{'variant':<11}{'tok/s':>10}{'median s':>10}{'min s':>8}{'peak MiB':>10}{'GFLOP/s':>9}"
          f"{'MFU(§3)':>9}{'MFU(needed)':>12}")
    rate = {}
    for v in VARIANTS:
        med = statistics.median(times[v])
        rate[v] = tokens / med
        print(f"{v:<11}{rate[v]:>10,.0f}{med:>10.3f}{min(times[v]):>8.3f}{mem[v]:>10.1f}{flops_s3 / med / 1e9:>9.1f}"
              f"{flops_s3 / med / mm_rate:>9.1%}{flops_needed / med / mm_rate:>12.1%}")
    print(f"reasonsift / naive = {rate['reasonsift'] / rate['naive']:.2f}x; reasonsift / padded8 = "
          f"{rate['reasonsift'] / rate['padded8']:.2f}x; padded8 / naive = {rate['padded8'] / rate['naive']:.2f}x")
    print("max |Δ per-example mean loss| vs naive: " + ", ".join(f"{v} {d:.2e}" for v, d in diffs.items()))
    if dtype == torch.float32 and max(diffs.values()) >= 1e-4:
        raise SystemExit("variants disagree by >= 1e-4 nats in fp32: the speed comparison is void")


def profile_reasonsift(args: argparse.Namespace, vocab: int, items: list[Tokenized], device: torch.device,
                       dtype: torch.dtype) -> None:
    """One profiled pass of score_items: the top operators by self time."""
    from torch.profiler import ProfilerActivity, profile

    model = build_model(args.model_config, vocab, device, dtype)
    reasonsift_loop(model, items[:8], args.batch_tokens)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        reasonsift_loop(model, items, args.batch_tokens)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"\n== profile of score_items, vocab {vocab:,}")
    print(prof.key_averages().table(sort_by=key, row_limit=18))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--model-config", default="tiny7m", choices=sorted(MODEL_CONFIGS))
    p.add_argument("--vocab", type=int, action="append", help="vocab size(s); default 2048 and 152064 "
                   "(qwen7b: 152064)")
    p.add_argument("--examples", type=int, help="GSM8K rows (default 256 on CPU, 1024 on GPU; --quick 24)")
    p.add_argument("--response-tokens", type=int, default=100)
    p.add_argument("--data", type=Path, default=GSM8K, help="GSM8K-format .jsonl (default ../shared/data's train)")
    p.add_argument("--reps", type=int, help="timed repetitions per variant (default 3; --quick 1)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--batch-tokens", type=int, default=ScoreConfig().batch_tokens, help="0: the scorer's auto")
    p.add_argument("--profile", action="store_true", help="profile reasonsift instead of comparing")
    p.add_argument("--quick", action="store_true", help="smoke run: 24 examples, 1 repetition")
    p.add_argument("--_memory", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--_items", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._memory:
        args.vocab = args.vocab[0]
        return memory_child(args)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    vocabs = args.vocab or ([152064] if args.model_config == "qwen7b" else [2048, 152064])
    if args.model_config == "qwen7b" and device.type != "cuda":
        raise SystemExit("--model-config qwen7b needs --device cuda (30 GB of fp32 weights on a CPU)")
    n = args.examples or (24 if args.quick else 1024 if device.type == "cuda" else 256)
    args.reps = args.reps or (1 if args.quick else 3)
    items = load_items(n, args.response_tokens, args.data)
    mm_n = 8192 if device.type == "cuda" else 2048
    mm_rate = matmul_rate(device, dtype, mm_n, inner=20 if device.type == "cuda" else 1)
    print(f"measured matmul rate: {mm_rate / 1e9:,.1f} GFLOP/s (torch.mm {mm_n}x{mm_n}, {str(dtype)[6:]}, "
          f"{device}, {args.threads} threads); torch {torch.__version__}")
    for vocab in vocabs:
        if args.profile:
            profile_reasonsift(args, vocab, items, device, dtype)
        else:
            run_setting(args, vocab, items, device, dtype, mm_rate)


if __name__ == "__main__":
    main()
