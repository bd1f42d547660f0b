"""The evaluation stage: ``reasonsift evaluate --model DIR --benchmark FILE [--samples k]``.

Top to bottom: load the benchmark (question + gold answer per item), render each question with the
same chat template as scoring and training, generate in batches (greedy, or ``samples`` sampled
completions per item), extract the final answer, check it against the gold with the equivalence
checker, and write per-item results plus accuracy and pass@k.

Per-item results are appended to ``results.jsonl`` batch by batch, so an interrupted evaluation
resumes where it stopped (items already in the file are skipped).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from reasonsift.config import EvalConfig, config_to_dict
from reasonsift.data.render import prompt_text
from reasonsift.evaluation.answers import extract_answer, is_equivalent
from reasonsift.evaluation.benchmarks import load_benchmark
from reasonsift.evaluation.metrics import summarize
from reasonsift.runfolder import save_config, write_json_atomic

logger = logging.getLogger(__name__)




def _done_items(path: Path) -> dict[str, dict[str, Any]]:
    """Items already evaluated (a truncated last line from a crash is ignored)."""
    done = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[row["id"]] = row
    return done


@torch.inference_mode()
def generate(model: Any, tokenizer: Any, prompts: list[str], cfg: EvalConfig) -> list[list[str]]:
    """``cfg.samples`` completions per rendered prompt (left-padded batch, stops at eos)."""
    device = next(model.parameters()).device
    tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    sampling = cfg.temperature > 0
    out = model.generate(
        **enc, max_new_tokens=cfg.max_new_tokens, do_sample=sampling,
        temperature=cfg.temperature if sampling else None, top_p=cfg.top_p if sampling else None,
        top_k=None, num_return_sequences=cfg.samples, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )  # (len(prompts) * samples, prompt_len + new)
    texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return [texts[i * cfg.samples:(i + 1) * cfg.samples] for i in range(len(prompts))]


def run_evaluation(model_path: str, benchmark: str, configs: dict[str, Any], out: str | Path | None = None,
                   command: str = "", progress: bool = True) -> dict[str, Any]:
    """Evaluate a model folder on a benchmark file; returns the metrics (also written to disk)."""
    from reasonsift.models import load_model, load_tokenizer

    cfg, mc = configs["evaluate"], configs["model"]
    if cfg.samples < 1:
        raise ValueError("evaluate.samples must be ≥ 1")
    if cfg.samples > 1 and cfg.temperature <= 0:
        raise ValueError("several samples per item need evaluate.temperature > 0 (greedy decoding repeats itself)")
    items = load_benchmark(benchmark, cfg.limit)
    out = Path(out) if out else Path(model_path) / "eval" / Path(benchmark).name.split(".")[0]
    out.mkdir(parents=True, exist_ok=True)
    save_config(out / "config.yaml", config_to_dict(configs), command)
    results_path = out / "results.jsonl"
    done = _done_items(results_path)
    todo = [it for it in items if it["id"] not in done]
    model = load_model(model_path, mc)  # first: a folder without weights is the likelier mistake
    tokenizer = load_tokenizer(model_path, mc.trust_remote_code)
    torch.manual_seed(cfg.seed)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(items), initial=len(items) - len(todo), desc="evaluate", unit="item", disable=not progress)
    with open(results_path, "a", encoding="utf-8") as f:
        for start in range(0, len(todo), cfg.batch_size):
            batch = todo[start:start + cfg.batch_size]
            prompts = [prompt_text(tokenizer, it["question"], cfg.system_prompt) for it in batch]
            for it, gens in zip(batch, generate(model, tokenizer, prompts, cfg)):
                kind = it["kind"] if cfg.answer_kind == "auto" else cfg.answer_kind
                preds = [extract_answer(g, kind) for g in gens]
                row = {"id": it["id"], "question": it["question"], "gold": it["gold"], "kind": kind,
                       "generations": gens, "predictions": preds,
                       "correct": [is_equivalent(p, it["gold"], kind) for p in preds]}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                done[it["id"]] = row
            f.flush()
            bar.update(len(batch))
    bar.close()
    per_item = [done[it["id"]] for it in items]
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= cfg.samples]
    metrics = summarize(per_item, ks)
    metrics["empty_generations"] = sum(1 for r in per_item for g in r["generations"] if not g.strip())
    metrics["no_answer_extracted"] = sum(1 for r in per_item for p in r["predictions"] if p is None)
    metrics.update({"model": str(model_path), "benchmark": str(benchmark), "samples": cfg.samples,
                    "temperature": cfg.temperature})
    if metrics["empty_generations"]:
        logger.warning("%d generations were empty (counted as wrong)", metrics["empty_generations"])
    write_json_atomic(out / "metrics.json", metrics)
    return metrics
