"""The evaluation stage: ``reasonsift evaluate --model DIR --benchmark FILE [--samples k]``.

Top to bottom: load the benchmark (question + gold answer per item), render each question with the
same chat template as scoring and training, generate in batches (greedy, or ``samples`` sampled
completions per item), extract the final answer, check it against the gold with the equivalence
checker, and write per-item results plus accuracy and pass@k.

Output folder (default ``MODEL/eval/<benchmark folder>-<benchmark file stem>``, e.g. ``gsm8k-test``,
so GSM8K's and MATH's ``test.jsonl`` do not share one)::

    OUT/eval_manifest.json   model files, benchmark content hash, result-affecting settings
    OUT/config.yaml          resolved config + command
    OUT/results.jsonl        one row per item: generations, predictions, correct, truncated
    OUT/metrics.json         accuracy, pass@k, counts of empty / truncated generations

Per-item results are appended to ``results.jsonl`` batch by batch, so an interrupted evaluation
resumes where it stopped (items already in the file are skipped). A resume is refused when the
manifest differs: results of another model, benchmark or setting must never be mixed in.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from reasonsift.config import ConfigError, config_to_dict
from reasonsift.data.render import prompt_text
from reasonsift.evaluation.answers import extract_answer, is_equivalent
from reasonsift.evaluation.benchmarks import load_benchmark
from reasonsift.evaluation.generate import generate, load_generator, warn_position_cap
from reasonsift.evaluation.metrics import summarize
from reasonsift.models import check_model_files, is_adapter_folder, model_fingerprint, resolve_device, resolve_dtype
from reasonsift.runfolder import check_resume, file_sha256, flat_settings, save_config, write_json_atomic
from reasonsift.runlock import lock_key, run_lock

logger = logging.getLogger(__name__)

MANIFEST = "eval_manifest.json"
# Bump when a change makes old results.jsonl rows mean something else (2: stop on the generation
# config's EOS ids and the plain template's next user turn; per-sample ``truncated``).
RESULTS_FORMAT = 2
# evaluate.* keys that change only speed or which items run, never an item's result.
PERFORMANCE_ONLY = {"batch_size", "limit"}
# evaluate.* keys that only matter when sampling (a greedy run ignores them).
SAMPLING_ONLY = {"top_p", "seed"}


def default_out_dir(model_path: str, benchmark: str | Path) -> Path:
    """``MODEL/eval/<benchmark folder>-<file stem>``: ``gsm8k/test.jsonl`` -> ``eval/gsm8k-test``."""
    bench = Path(benchmark).resolve()
    stem = bench.name.split(".")[0]
    parent = bench.parent.name
    return Path(model_path) / "eval" / (f"{parent}-{stem}" if parent else stem)


def eval_manifest(model_path: str, benchmark: str | Path, configs: dict[str, Any]) -> dict[str, Any]:
    """What decides an evaluation's per-item results; a resume must match it (see ``check_manifest``).

    Paths are recorded for people; the comparison uses the model fingerprint and the benchmark's
    content hash, so a moved folder still resumes while an edited file does not.
    """
    cfg, mc = configs["evaluate"], configs["model"]
    # Every evaluate.* key counts unless known to be harmless, so a new setting is safe by default.
    leave_out = [f"evaluate.{k}" for k in PERFORMANCE_ONLY | (set() if cfg.temperature > 0 else SAMPLING_ONLY)]
    settings = flat_settings({"evaluate": cfg}, leave_out)
    # The resolved dtype, not "auto": auto means fp32 on CPU and bf16 on GPU, and greedy text differs.
    settings["model.dtype"] = str(resolve_dtype(mc.dtype, resolve_device(mc.device))).removeprefix("torch.")
    local = Path(model_path).is_dir()
    bench = Path(benchmark)
    return {"results_format": RESULTS_FORMAT,
            "model": str(Path(model_path).resolve()) if local else model_path,
            "model_fingerprint": model_fingerprint(model_path),
            "benchmark": str(bench.resolve()), "benchmark_sha256": file_sha256(bench),
            "settings": settings}


def check_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Refuse (one line) to resume results written by another model, benchmark or setting."""
    results = out / "results.jsonl"
    if not (out / MANIFEST).exists():
        raise ConfigError(f"{out} holds {results.name} but no {MANIFEST} (an older reasonsift wrote it), so what "
                          f"produced those results is unknown; use another --out, or delete {results} to start over")
    check_resume(out / MANIFEST, manifest, True, f"{out} holds results of another evaluation",
                 f"use another --out, or delete {results} to start over", ignore=("model", "benchmark"), write=False)


def _done_items(path: Path) -> dict[str, dict[str, Any]]:
    """Items already evaluated; a half-written last line from a crash is cut off the file.

    Cutting it matters: the next append would otherwise be glued onto it and lost as bad JSON.
    """
    done: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return done
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        os.truncate(path, keep)
        data = data[:keep]
    for line in data.decode("utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        done[row["id"]] = row
    return done


def pass_at_k_values(samples: int) -> list[int]:
    """k reported for ``samples`` completions per item: powers of two up to it, and ``samples`` itself."""
    return sorted({k for k in (1, 2, 4, 8, 16, 32, 64) if k <= samples} | {samples})


def run_evaluation(model_path: str, benchmark: str, configs: dict[str, Any], out: str | Path | None = None,
                   command: str = "", progress: bool = True) -> dict[str, Any]:
    """Evaluate a model folder on a benchmark file; returns the metrics (also written to disk).

    The benchmark and model folder are checked before OUT is created, and OUT is owned
    (``run_lock``) from before its results are read until the metrics are written.
    """
    load_benchmark(benchmark, configs["evaluate"].limit)
    if not is_adapter_folder(model_path):
        check_model_files(model_path, configs["model"])
    out = Path(out) if out else default_out_dir(model_path, benchmark)
    key = lock_key("evaluate", eval_manifest(model_path, benchmark, configs))
    with run_lock(out, key, "evaluate", command):
        return _run_evaluation(model_path, benchmark, configs, out, command, progress)


def _run_evaluation(model_path: str, benchmark: str, configs: dict[str, Any], out: str | Path | None = None,
                    command: str = "", progress: bool = True) -> dict[str, Any]:
    """``run_evaluation`` once OUT is owned."""
    cfg, mc = configs["evaluate"], configs["model"]
    if cfg.samples < 1:
        raise ValueError("evaluate.samples must be ≥ 1")
    if cfg.samples > 1 and cfg.temperature <= 0:
        raise ValueError("several samples per item need evaluate.temperature > 0 (greedy decoding repeats itself)")
    items = load_benchmark(benchmark, cfg.limit)
    out = Path(out) if out else default_out_dir(model_path, benchmark)
    manifest = eval_manifest(model_path, benchmark, configs)
    results_path = out / "results.jsonl"
    done = _done_items(results_path)
    if done:
        check_manifest(out, manifest)  # before loading: a refused resume should fail fast
    model, tokenizer = load_generator(model_path, mc, cfg.engine)
    from reasonsift.data.render import template_notice

    template = template_notice(tokenizer, model_path)
    # Only now, with the model loaded, does OUT come into being: a failed load leaves nothing behind.
    out.mkdir(parents=True, exist_ok=True)
    save_config(out / "config.yaml", config_to_dict(configs), command)
    write_json_atomic(out / MANIFEST, manifest)
    todo = [it for it in items if it["id"] not in done]
    warn_position_cap(model, tokenizer, [prompt_text(tokenizer, it["question"], cfg.system_prompt) for it in todo],
                       cfg.max_new_tokens, model_path)
    torch.manual_seed(cfg.seed)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(items), initial=len(items) - len(todo), desc="evaluate", unit="item", disable=not progress)
    with open(results_path, "a", encoding="utf-8") as f:
        for start in range(0, len(todo), cfg.batch_size):
            batch = todo[start:start + cfg.batch_size]
            prompts = [prompt_text(tokenizer, it["question"], cfg.system_prompt) for it in batch]
            for it, gens in zip(batch, generate(model, tokenizer, prompts, cfg)):
                kind = it["kind"] if cfg.answer_kind == "auto" else cfg.answer_kind
                preds = [extract_answer(g.text, kind) for g in gens]
                row = {"id": it["id"], "question": it["question"], "gold": it["gold"], "kind": kind,
                       "generations": [g.text for g in gens], "predictions": preds,
                       "correct": [is_equivalent(p, it["gold"], kind) for p in preds],
                       "truncated": [g.truncated for g in gens]}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                done[it["id"]] = row
            f.flush()
            bar.update(len(batch))
    bar.close()
    per_item = [done[it["id"]] for it in items]
    metrics = summarize(per_item, pass_at_k_values(cfg.samples))
    metrics["empty_generations"] = sum(1 for r in per_item for g in r["generations"] if not g.strip())
    metrics["truncated_generations"] = sum(1 for r in per_item for t in r["truncated"] if t)
    metrics["no_answer_extracted"] = sum(1 for r in per_item for p in r["predictions"] if p is None)
    metrics.update({"model": str(model_path), "benchmark": str(benchmark), "engine": cfg.engine, "samples": cfg.samples,
                    "temperature": cfg.temperature, "max_new_tokens": cfg.max_new_tokens, "template": template})
    if metrics["empty_generations"]:
        logger.warning("%d generations were empty (counted as wrong)", metrics["empty_generations"])
    if metrics["truncated_generations"]:
        logger.warning("%d generations hit evaluate.max_new_tokens=%d before ending (their answers may be cut off)",
                       metrics["truncated_generations"], cfg.max_new_tokens)
    write_json_atomic(out / "metrics.json", metrics)
    return metrics
