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

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch

from reasonsift.config import ConfigError, EvalConfig, config_hash, config_to_dict
from reasonsift.data.render import PLAIN_TEMPLATE, prompt_text
from reasonsift.evaluation.answers import extract_answer, is_equivalent
from reasonsift.evaluation.benchmarks import load_benchmark
from reasonsift.evaluation.metrics import summarize
from reasonsift.runfolder import lock_key, run_lock, save_config, write_json_atomic

logger = logging.getLogger(__name__)

MANIFEST = "eval_manifest.json"
# Bump when a change makes old results.jsonl rows mean something else (2: stop on the generation
# config's EOS ids and the plain template's next user turn; per-sample ``truncated``).
RESULTS_FORMAT = 2
# evaluate.* keys that change only speed or which items run, never an item's result.
PERFORMANCE_ONLY = {"batch_size", "limit"}
# evaluate.* keys that only matter when sampling (a greedy run ignores them).
SAMPLING_ONLY = {"top_p", "seed"}
# Files whose change means another model: weights, configs, tokenizer, chat template.
_MODEL_FILE_SUFFIXES = {".json", ".safetensors", ".bin", ".pt", ".model", ".jinja", ".txt", ".tiktoken"}
# The plain fallback template's next user turn ("\nUser:"): a base model without a chat template
# keeps writing the dialogue after its answer, and nothing else would stop it before max_new_tokens.
PLAIN_STOP = "\n" + PLAIN_TEMPLATE.split("{prompt}")[0].rstrip()


class Generation(NamedTuple):
    """One completion: its text (cut at a stop string) and whether it hit ``max_new_tokens``."""

    text: str
    truncated: bool


def default_out_dir(model_path: str, benchmark: str | Path) -> Path:
    """``MODEL/eval/<benchmark folder>-<file stem>``: ``gsm8k/test.jsonl`` -> ``eval/gsm8k-test``."""
    bench = Path(benchmark).resolve()
    stem = bench.name.split(".")[0]
    parent = bench.parent.name
    return Path(model_path) / "eval" / (f"{parent}-{stem}" if parent else stem)


def _file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks (benchmarks can be large parquet files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _adapter_base(path: Path) -> str:
    """The base model a LoRA adapter folder names in ``adapter_config.json``."""
    from reasonsift.models import ModelLoadError

    base = json.loads((path / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise ModelLoadError(f"{path}: adapter_config.json names no base_model_name_or_path")
    return str(base)


def _is_adapter_folder(model_path: str) -> bool:
    """A LoRA adapter alone (a Trainer ``checkpoint-N`` of a ``--lora`` run): no full model config."""
    path = Path(model_path)
    return path.is_dir() and (path / "adapter_config.json").exists() and not (path / "config.json").exists()


def model_fingerprint(model_path: str) -> str:
    """A short hash of what the model is: file names, sizes and mtimes of a local folder (a retrain
    into the same folder changes it), the base model's fingerprint too for an adapter, or the hub id."""
    path = Path(model_path)
    if not path.is_dir():
        return f"hub:{model_path}"
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _MODEL_FILE_SUFFIXES)
    stats: list[Any] = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    if _is_adapter_folder(model_path):
        stats.append(["base", model_fingerprint(_adapter_base(path))])
    return config_hash(stats)


def eval_manifest(model_path: str, benchmark: str | Path, configs: dict[str, Any]) -> dict[str, Any]:
    """What decides an evaluation's per-item results; a resume must match it (see ``_check_manifest``).

    Paths are recorded for people; the comparison uses the model fingerprint and the benchmark's
    content hash, so a moved folder still resumes while an edited file does not.
    """
    from reasonsift.models import resolve_device, resolve_dtype

    cfg, mc = configs["evaluate"], configs["model"]
    # Every evaluate.* key counts unless known to be harmless, so a new setting is safe by default.
    settings = {f"evaluate.{k}": v for k, v in config_to_dict({"e": cfg})["e"].items()
                if k not in PERFORMANCE_ONLY and (cfg.temperature > 0 or k not in SAMPLING_ONLY)}
    # The resolved dtype, not "auto": auto means fp32 on CPU and bf16 on GPU, and greedy text differs.
    settings["model.dtype"] = str(resolve_dtype(mc.dtype, resolve_device(mc.device))).removeprefix("torch.")
    local = Path(model_path).is_dir()
    bench = Path(benchmark)
    return {"results_format": RESULTS_FORMAT,
            "model": str(Path(model_path).resolve()) if local else model_path,
            "model_fingerprint": model_fingerprint(model_path),
            "benchmark": str(bench.resolve()), "benchmark_sha256": _file_sha256(bench),
            "settings": settings}


def _check_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Refuse (one line) to resume results written by another model, benchmark or setting."""
    results = out / "results.jsonl"
    if not (out / MANIFEST).exists():
        raise ConfigError(f"{out} holds {results.name} but no {MANIFEST} (an older reasonsift wrote it), so what "
                          f"produced those results is unknown; use another --out, or delete {results} to start over")
    saved = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    changed = []
    if saved.get("results_format") != manifest["results_format"]:
        changed.append(f"results format {saved.get('results_format')} -> {manifest['results_format']}")
    if saved.get("model_fingerprint") != manifest["model_fingerprint"]:
        changed.append(f"model {saved.get('model')} -> {manifest['model']} (its files differ)")
    if saved.get("benchmark_sha256") != manifest["benchmark_sha256"]:
        changed.append(f"benchmark {saved.get('benchmark')} -> {manifest['benchmark']} (its content differs)")
    old, new = saved.get("settings") or {}, manifest["settings"]
    changed += [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if changed:
        raise ConfigError(f"{out} holds results of another evaluation (changed: {'; '.join(changed)}); use another "
                          f"--out, or delete {results} to start over")


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


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The generation config's EOS ids (Qwen / Llama-3 list their end-of-turn tokens there) plus the
    tokenizer's EOS: passing only the tokenizer's would override the model's own list."""
    ids: list[int] = []
    gen_cfg = getattr(model, "generation_config", None)
    for value in (getattr(gen_cfg, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        for token_id in value if isinstance(value, (list, tuple)) else [value]:
            if token_id is not None and int(token_id) not in ids:
                ids.append(int(token_id))
    return ids


def stop_strings(tokenizer: Any) -> list[str]:
    """Strings that end a completion: the next ``User:`` turn of the plain template, none otherwise."""
    return [] if getattr(tokenizer, "chat_template", None) else [PLAIN_STOP]


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """``text`` up to the earliest stop string, and whether one was found."""
    cut = min((text.find(s) for s in stops if s in text), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _finish(ids: list[int], text: str, eos: set[int], stops: list[str], max_new_tokens: int) -> Generation:
    """Cut ``text`` at the first stop string; truncated = no EOS, no stop string and the full length."""
    text, stopped = cut_at_stop(text, stops)
    ended = stopped or any(t in eos for t in ids)
    return Generation(text, truncated=not ended and len(ids) >= max_new_tokens)


@torch.inference_mode()
def generate(model: Any, tokenizer: Any, prompts: list[str], cfg: EvalConfig,
             stops: list[str] | None = None) -> list[list[Generation]]:
    """``cfg.samples`` completions per rendered prompt (left-padded batch).

    Stops at any of ``stop_token_ids`` and at ``stops`` (default ``stop_strings(tokenizer)``).
    """
    from reasonsift.models import config_positions

    device = next(model.parameters()).device
    tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    sampling = cfg.temperature > 0
    eos = stop_token_ids(model, tokenizer)
    stops = stop_strings(tokenizer) if stops is None else stops
    # Never past the model's positions (left padding: the longest prompt of the batch sets the width).
    limit = config_positions(getattr(model, "config", None))
    max_new = cfg.max_new_tokens if not limit else min(cfg.max_new_tokens, limit - enc["input_ids"].shape[1])
    if max_new < 1:  # a prompt that fills the model's context leaves no room for an answer
        return [[Generation("", truncated=True)] * cfg.samples for _ in prompts]
    out = model.generate(
        **enc, max_new_tokens=max_new, do_sample=sampling,
        temperature=cfg.temperature if sampling else None, top_p=cfg.top_p if sampling else None,
        top_k=None, num_return_sequences=cfg.samples, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=eos or None, **({"stop_strings": stops, "tokenizer": tokenizer} if stops else {}),
    )  # (len(prompts) * samples, prompt_len + new)
    new = out[:, enc["input_ids"].shape[1]:]
    texts = tokenizer.batch_decode(new, skip_special_tokens=True)
    gens = [_finish(ids, text, set(eos), stops, max_new) for ids, text in zip(new.tolist(), texts)]
    return [gens[i * cfg.samples:(i + 1) * cfg.samples] for i in range(len(prompts))]


def load_model_and_tokenizer(model_path: str, mc: Any) -> tuple[Any, Any]:
    """Model and tokenizer for evaluation; a LoRA adapter folder is loaded onto its base and merged.

    Trainer ``checkpoint-N`` folders of a ``--lora`` run hold only an adapter, which the plain
    loader rejects ("no config.json"). Without peft, the error names the merged model folder.
    """
    from reasonsift.models import ModelLoadError, load_model, load_tokenizer

    if not _is_adapter_folder(model_path):
        model = load_model(model_path, mc)  # first: a folder without weights is the likelier mistake
        return model, load_tokenizer(model_path, mc.trust_remote_code)
    path = Path(model_path)
    base = _adapter_base(path)
    try:
        from peft import PeftModel
    except ImportError:
        merged = path.parent if (path.parent / "config.json").exists() else None
        hint = (f"evaluate the merged model in {merged}" if merged else
                "evaluate the merged model that reasonsift train --lora writes to its OUT folder")
        raise ModelLoadError(f"{path} holds only a LoRA adapter (base {base}); install peft to evaluate it on "
                             f"its base, or {hint}") from None
    base_model = load_model(base, dataclasses.replace(mc, model=base))
    device = next(base_model.parameters()).device
    try:
        # Merged: plain weights generate as fast as the base, and nothing else needs peft afterwards.
        model = PeftModel.from_pretrained(base_model, str(path)).merge_and_unload()
    except Exception as e:  # noqa: BLE001 - peft/IO errors vary; report them in one line
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"{path}: could not apply the LoRA adapter to {base} ({msg})") from None
    has_tokenizer = any((path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json"))
    tokenizer = load_tokenizer(str(path) if has_tokenizer else base, mc.trust_remote_code)
    return model.to(device).eval(), tokenizer


def _warn_position_cap(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int, name: str) -> None:
    """Say once when prompt + ``max_new_tokens`` can pass the model's positions (``generate`` cuts there)."""
    from reasonsift.models import config_positions

    limit = config_positions(getattr(model, "config", None))
    if not limit or not prompts:
        return
    longest = max(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts)
    if longest + max_new_tokens > limit:
        logger.warning("evaluate.max_new_tokens=%d plus prompts of up to %d tokens exceed the %d positions of %s: "
                       "generation stops at the model's limit (prompt + new tokens <= %d)", max_new_tokens, longest,
                       limit, name, limit)


def pass_at_k_values(samples: int) -> list[int]:
    """k reported for ``samples`` completions per item: powers of two up to it, and ``samples`` itself."""
    return sorted({k for k in (1, 2, 4, 8, 16, 32, 64) if k <= samples} | {samples})


def run_evaluation(model_path: str, benchmark: str, configs: dict[str, Any], out: str | Path | None = None,
                   command: str = "", progress: bool = True) -> dict[str, Any]:
    """Evaluate a model folder on a benchmark file; returns the metrics (also written to disk).

    The benchmark and model folder are checked before OUT is created, and OUT is owned
    (``run_lock``) from before its results are read until the metrics are written.
    """
    from reasonsift.models import check_model_files

    load_benchmark(benchmark, configs["evaluate"].limit)
    if not _is_adapter_folder(model_path):
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
        _check_manifest(out, manifest)  # before loading: a refused resume should fail fast
    model, tokenizer = load_model_and_tokenizer(model_path, mc)
    from reasonsift.data.render import template_notice

    template = template_notice(tokenizer, model_path)
    # Only now, with the model loaded, does OUT come into being: a failed load leaves nothing behind.
    out.mkdir(parents=True, exist_ok=True)
    save_config(out / "config.yaml", config_to_dict(configs), command)
    write_json_atomic(out / MANIFEST, manifest)
    todo = [it for it in items if it["id"] not in done]
    _warn_position_cap(model, tokenizer, [prompt_text(tokenizer, it["question"], cfg.system_prompt) for it in todo],
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
    metrics.update({"model": str(model_path), "benchmark": str(benchmark), "samples": cfg.samples,
                    "temperature": cfg.temperature, "max_new_tokens": cfg.max_new_tokens, "template": template})
    if metrics["empty_generations"]:
        logger.warning("%d generations were empty (counted as wrong)", metrics["empty_generations"])
    if metrics["truncated_generations"]:
        logger.warning("%d generations hit evaluate.max_new_tokens=%d before ending (their answers may be cut off)",
                       metrics["truncated_generations"], cfg.max_new_tokens)
    write_json_atomic(out / "metrics.json", metrics)
    return metrics
