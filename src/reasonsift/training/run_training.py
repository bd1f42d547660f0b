"""``reasonsift train``: fine-tune a causal LM on DATA with a token-level objective, via TRL.

The data is tokenized here (``training.dataset``) and handed to TRL's ``SFTTrainer`` as a
pre-tokenized dataset with ``labels`` (``skip_prepare_dataset``, so TRL neither re-templates nor
re-truncates it). The loss is ours: ``training.trainer.ObjectiveTrainer``, an ``SFTTrainer`` that
overrides only ``compute_loss`` to apply ``training.objectives`` to the logits of the loss positions
(built on the same per-token NLL that scoring uses).

Output folder OUT::

    OUT/config.json, model*.safetensors, tokenizer files   the trained (LoRA: merged) model
    OUT/adapter/                                           LoRA only: the unmerged adapter
    OUT/checkpoint-<step>/                                 Trainer checkpoints (resume points)
    OUT/config.yaml                                        resolved config + command (usable as --config)
    OUT/train_manifest.json                                data path + config; a resume must match it
    OUT/README.md                                          model card
    OUT/train_report.json                                  steps, loss curve, token accounting
    OUT/rejected.jsonl                                     rows skipped under --skip-bad-rows, with reasons

Multi-GPU: ``accelerate launch -m reasonsift.cli train ...`` works unchanged; the Trainer places the
model (loaded on CPU here), shards the data and syncs gradients, and ``num_items_in_batch`` counts
loss tokens over all ranks. Only the main process writes OUT's files. On CPU training runs in fp32.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from reasonsift.config import ConfigError, TrainConfig, config_to_dict
from reasonsift.data.formats import check_source, source_id
from reasonsift.data.load import input_schema, parse_field_overrides
from reasonsift.models import check_model_files, load_model, load_tokenizer, max_positions
from reasonsift.runfolder import (check_resume, flat_settings, read_json, save_config, write_json_atomic,
                                  write_rejected_rows, write_text_atomic)
from reasonsift.runlock import lock_key, run_lock
from reasonsift.training.dataset import build_train_dataset

logger = logging.getLogger(__name__)

MANIFEST = "train_manifest.json"  # data path + resolved config of the run that wrote the checkpoints
# train.* keys that may change between an interrupted run and its resume (they do not change what is trained).
RESUMABLE_CHANGES = {"resume", "save_steps", "save_total_limit", "logging_steps", "max_steps", "num_train_epochs"}


def _use_bf16(cfg: TrainConfig) -> bool:
    """``bf16`` config value -> whether to train in bf16 mixed precision."""
    value = str(cfg.bf16).lower()
    if value not in ("auto", "true", "false"):
        raise ConfigError(f"train.bf16: {cfg.bf16!r} is not one of auto, true, false")
    if value == "auto":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return value == "true"


def _check_config(cfg: TrainConfig) -> None:
    """Reject values the Trainer would accept but that cannot be what the user meant."""
    if cfg.objective == "prefix" and not (0.0 <= cfg.prefix_fraction <= 1.0 and cfg.prefix_tokens >= 1):
        raise ConfigError("train.prefix_fraction must be in [0, 1] and train.prefix_tokens >= 1")
    if not 0.0 <= cfg.warmup_ratio < 1.0:
        raise ConfigError(f"train.warmup_ratio: {cfg.warmup_ratio} is not in [0, 1)")
    if cfg.max_length < 2 or cfg.per_device_train_batch_size < 1 or cfg.gradient_accumulation_steps < 1:
        raise ConfigError("train.max_length must be >= 2 and batch size / accumulation steps >= 1")
    if cfg.mask_file and cfg.objective != "cft":
        logger.warning("train.mask_file is set but objective is %s: the mask is not used", cfg.objective)
    if torch.cuda.device_count() > 1 and "WORLD_SIZE" not in os.environ:
        # The HF Trainer would wrap the model in torch.nn.DataParallel, which scatters the batch but
        # not the loss-position index our trainer passes as logits_to_keep: refuse instead of failing
        # deep inside a replica. One process per GPU (DDP) is also much faster.
        raise ConfigError(f"{torch.cuda.device_count()} GPUs are visible but this is a single process: launch "
                          "with `accelerate launch -m reasonsift.cli train ...` or `torchrun --nproc_per_node "
                          "N -m reasonsift.cli train ...`, or pick one GPU with CUDA_VISIBLE_DEVICES=0")


def _checkpoints(out: Path) -> list[Path]:
    """OUT/checkpoint-<step> folders, oldest first."""
    found = [p for p in out.glob("checkpoint-*") if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def check_manifest(out: Path, manifest: dict[str, Any], cfg: TrainConfig) -> Path | None:
    """The checkpoint to resume from, or None; refuse to mix two different runs in one OUT."""
    ckpts = _checkpoints(out)
    if not ckpts:
        return None
    if not cfg.resume:
        raise ConfigError(f"{out} already holds checkpoints ({ckpts[-1].name}); pass train.resume=true to "
                          "continue that run, or choose another --out")
    if (out / MANIFEST).exists():
        check_resume(out / MANIFEST, manifest, True, f"{out} holds checkpoints of a run",
                     "use another --out, or restore those values to resume",
                     ignore=[f"train.{k}" for k in RESUMABLE_CHANGES], write=False)
        old = read_json(out / MANIFEST).get("settings") or {}
        longer = [k for k in ("train.max_steps", "train.num_train_epochs") if old.get(k) != manifest["settings"].get(k)]
        if longer:
            # allowed, to extend a run; but the LR schedule is rebuilt for the new length, so the
            # weights will not equal those of an uninterrupted run of that length
            logger.warning("resuming with changed %s: the learning-rate schedule is recomputed for the new "
                           "length, so the result differs from an uninterrupted run", " and ".join(longer))
    # The Trainer writes trainer_state.json last: a folder without it was cut off mid-save.
    complete = [p for p in ckpts if (p / "trainer_state.json").exists()]
    if len(complete) < len(ckpts):
        logger.warning("ignoring incomplete checkpoint(s): %s", ", ".join(p.name for p in ckpts if p not in complete))
    return complete[-1] if complete else None


def _load(model_name: str, model_cfg: Any, cfg: TrainConfig, bf16: bool) -> Any:
    """Load the model on CPU (the Trainer places it); fp32 master weights unless LoRA on a bf16 GPU."""
    dtype = model_cfg.dtype
    if dtype == "auto":
        # Full fine-tuning keeps fp32 weights (bf16 autocast on GPU): a 1e-5 AdamW step is below bf16's
        # resolution for most weights. A LoRA base is frozen, so bf16 loses nothing there.
        dtype = "bfloat16" if cfg.lora and bf16 else "float32"
    return load_model(model_name, replace(model_cfg, dtype=dtype), device=torch.device("cpu"))


def sft_config(cfg: TrainConfig, out: Path, bf16: bool, progress: bool) -> Any:
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(out), learning_rate=cfg.learning_rate, num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps, per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, warmup_steps=cfg.warmup_ratio,
        lr_scheduler_type=cfg.lr_scheduler_type, weight_decay=cfg.weight_decay, adam_beta1=0.9,
        adam_beta2=cfg.adam_beta2, max_grad_norm=1.0, seed=cfg.seed, bf16=bf16, fp16=False,
        save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, logging_steps=cfg.logging_steps, logging_first_step=True,
        report_to="none", disable_tqdm=not progress, max_length=cfg.max_length,
        dataset_kwargs={"skip_prepare_dataset": True},  # our input_ids/labels are used as they are
        packing=False, padding_free=False, dataloader_pin_memory=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),  # without it a CPU-only torchrun/accelerate launch does not use DDP
        # TRL defaults it to True: set it explicitly (transformers >= 5.23 calls it activation_checkpointing).
        activation_checkpointing=cfg.gradient_checkpointing,
        # transformers' LengthGroupedSampler: shuffled, cut into mega-batches of up to 50 optimizer steps' rows
        # (fewer on small data), each sorted by length; deterministic under the seed
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
    )


def _peft_config(cfg: TrainConfig) -> Any:
    from peft import LoraConfig

    targets = cfg.lora_target_modules
    targets = targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")


def _save_model(trainer: Any, tokenizer: Any, out: Path, lora: bool) -> None:
    """Write a plain HF folder to OUT; LoRA: the adapter to OUT/adapter, the merged model to OUT."""
    if not lora:
        trainer.save_model(str(out))  # main process only; handles DDP/FSDP unwrapping
        return
    if not trainer.is_world_process_zero():
        return
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.save_pretrained(str(out / "adapter"))
    merged = model.merge_and_unload()  # plain transformers model with the LoRA deltas folded in
    merged.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))


def _subset_note(data: str) -> str:
    """If DATA is a reasonsift ``selected.jsonl``, say which run and selection produced it."""
    path = Path(data)
    report = path.parent / "report.json"
    if path.name != "selected.jsonl" or not report.exists():
        return ""
    sel = read_json(report).get("selection") or {}
    return (f"- **Subset**: reasonsift selection from run `{path.parent}`: {sel.get('n_selected', '?')} examples "
            f"chosen with `{sel.get('method', '?')}` from `{read_json(report).get('input', '?')}`\n")


def _loss_share(stats: dict[str, Any]) -> str:
    """One line on how many tokens carry loss (prefix: also how many examples were cut)."""
    line = (f"{stats['tokens']['loss']:,} loss tokens per epoch, {100 * stats['loss_token_fraction']:.1f}% of the "
            f"response tokens in the inputs ({100 * stats['loss_token_fraction_of_full_responses']:.1f}% of the full "
            "responses)")
    n_prefix = stats["prefix_examples"]
    return line + (f"; {n_prefix} examples trained on their prefix" if n_prefix else "")


def model_card(report: dict[str, Any], configs: dict[str, Any]) -> str:
    """The OUT/README.md model card."""
    cfg: TrainConfig = configs["train"]
    hp = "\n".join(f"| {k} | {v} |" for k, v in config_to_dict({"train": cfg})["train"].items())
    final = report.get("final_loss")
    ds = report["dataset"]
    adaptation = (f"LoRA (r={cfg.lora_r}, alpha={cfg.lora_alpha}), merged into these weights; adapter in `adapter/`"
                  if cfg.lora else "full fine-tuning")
    return f"""---
library_name: transformers
tags: [reasonsift, {cfg.objective}{', lora' if cfg.lora else ''}]
base_model: {report['base_model']}
---
# {Path(report['out']).name}: `{report['base_model']}` fine-tuned with reasonsift ({cfg.objective})

- **Base model**: `{report['base_model']}`
- **Data**: `{report['data']}` ({ds['examples']} examples trained, {ds['tokens']['input']:,} tokens per epoch)
{_subset_note(report['data'])}- **Objective**: `{cfg.objective}`; {_loss_share(ds)}
- **Adaptation**: {adaptation}
- **Steps**: {report['steps']} optimizer steps, {report['epochs']:.2f} epochs
- **Final train loss** (mean of the last {report.get('final_loss_steps', 1)} steps): {'n/a' if final is None else f'{final:.4f}'}
- **Command**: `{report.get('command', '')}`

| hyperparameter | value |
|---|---|
{hp}

The loss is the mean per-token loss over loss tokens of each accumulated batch (see
`reasonsift/training/objectives.py`); the full resolved config is in `config.yaml`, the loss curve in
`train_report.json`.
"""


def _log_every_step(trainer: Any, every: int, log_lines: bool = True) -> None:
    """Log every step's loss (``losslog``); the console prints once per ``every`` steps, or never."""
    from transformers import PrinterCallback, ProgressCallback

    from reasonsift.training.losslog import EveryStepLog, print_windows

    trainer.add_callback(EveryStepLog())
    for cls in (ProgressCallback, PrinterCallback):
        if any(type(cb) is cls for cb in trainer.callback_handler.callbacks):
            trainer.remove_callback(cls)
            trainer.add_callback(print_windows(cls, every if log_lines else 0))


def _report(trainer: Any, stats: dict, data: str, out: Path, configs: dict, resumed: Path | None,
            command: str, wall: float) -> dict[str, Any]:
    """train_report.json: steps, loss figures from every step's loss (``losslog``: a resumed run reports
    what an uninterrupted one does), dataset accounting; tokens_trained = per-epoch counts x epochs."""
    from reasonsift.training.losslog import loss_summary

    state = trainer.state
    epochs = float(state.epoch or 0.0)
    return {
        "base_model": configs["model"].model, "data": data, "out": str(out), "objective": configs["train"].objective,
        "fields": input_schema(data, parse_field_overrides(configs["data"].fields), configs["data"].split),
        "lora": configs["train"].lora, "steps": state.global_step, "epochs": epochs,
        **loss_summary(state.log_history, configs["train"].logging_steps),
        "dataset": stats, "tokens_trained": {k: int(v * epochs) for k, v in stats["tokens"].items()},
        "resumed_from": str(resumed) if resumed else None, "wall_time_s": round(wall, 2), "command": command,
    }


def run_training(data: str, configs: dict[str, Any], out: str | Path, command: str = "",
                 progress: bool = True, log_lines: bool = True) -> dict[str, Any]:
    """Fine-tune ``configs['model'].model`` on DATA; returns the train report (also in OUT).

    ``log_lines=False`` keeps the progress bar but prints no loss lines (the demo: the curve is in
    ``train_report.json``). The config, data and model folder are checked before OUT is created, and OUT is owned
    (``run_lock``) for the whole run; the processes of one ``accelerate``/``torchrun`` launch share it.
    """
    cfg: TrainConfig = configs["train"]
    if not configs["model"].model:
        raise ConfigError("no model to train: pass --model (model.model)")
    _check_config(cfg)
    check_source(data, configs["data"].split)
    check_model_files(configs["model"].model, configs["model"])
    data_id = source_id(data)
    with run_lock(Path(out), lock_key("train", data_id, config_to_dict(configs)), "train", command):
        return _run_training(data, configs, out, command, progress, log_lines)


def _run_training(data: str, configs: dict[str, Any], out: str | Path, command: str = "",
                  progress: bool = True, log_lines: bool = True) -> dict[str, Any]:
    """``run_training`` once OUT is owned."""
    from reasonsift.training.trainer import ObjectiveTrainer  # imports trl: only when training

    cfg: TrainConfig = configs["train"]
    model_cfg = configs["model"]
    out = Path(out)
    data_id = source_id(data)
    manifest = {"data": data_id, "settings": flat_settings(configs)}
    resumed = check_manifest(out, manifest, cfg)
    start = time.time()
    bf16 = _use_bf16(cfg)
    tokenizer = load_tokenizer(model_cfg.model, model_cfg.trust_remote_code)
    from reasonsift.data.render import template_notice

    template = template_notice(tokenizer, model_cfg.model)
    positions = max_positions(model_cfg.model, model_cfg.trust_remote_code)
    if positions and cfg.max_length > positions:
        logger.warning("train.max_length=%d is more than the %d positions %s supports: sequences are cut at %d",
                       cfg.max_length, positions, model_cfg.model, positions)
        cfg = replace(cfg, max_length=positions)
    rejected_rows: list[dict[str, Any]] = []
    dataset, stats = build_train_dataset(data, tokenizer, configs["data"], cfg, positions,
                                         rejected_rows)  # data errors before the model
    stats["max_length"] = cfg.max_length
    logger.info("training %s on %d examples (%d loss tokens, %.1f%% of response tokens) with %s",
                model_cfg.model, stats["examples"], stats["tokens"]["loss"], 100 * stats["loss_token_fraction"],
                cfg.objective)
    model = _load(model_cfg.model, model_cfg, cfg, bf16)
    trainer = ObjectiveTrainer(model=model, args=sft_config(cfg, out, bf16, progress), train_dataset=dataset,
                               processing_class=tokenizer, peft_config=_peft_config(cfg) if cfg.lora else None)
    trainer.objective = cfg.objective
    _log_every_step(trainer, cfg.logging_steps, log_lines)
    if trainer.is_world_process_zero():  # before the first checkpoint, so a resume can check against it
        save_config(out / "config.yaml", config_to_dict(configs), command)
        write_json_atomic(out / MANIFEST, manifest)
        write_rejected_rows(out / "rejected.jsonl", rejected_rows)
    if not progress:
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # --quiet: no per-step log lines either
    if resumed:
        logger.info("resuming from %s", resumed)
    trainer.train(resume_from_checkpoint=str(resumed) if resumed else None)
    _save_model(trainer, tokenizer, out, cfg.lora)
    report = _report(trainer, stats, str(data), out, configs, resumed, command, time.time() - start)
    report["template"] = template
    if trainer.is_world_process_zero():
        write_json_atomic(out / "train_report.json", report)
        write_text_atomic(out / "README.md", model_card(report, configs))
    return report
