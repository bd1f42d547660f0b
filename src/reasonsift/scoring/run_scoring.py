"""The scoring stage: ``reasonsift score DATA --model M --run RUN``.

Top to bottom:
1. stream the input, render and tokenize each example once into token shards (bad rows are
   quarantined or stop the run);
2. load θ₀ (and θ_f), check the packed fast path against the plain forward on real examples;
3. for each checkpoint — θ₀, the nested Gaussian ones, the directional ones — write its weights
   from the kept base ("perturb once"), then score every shard of this rank ("score everything");
   each (stage, checkpoint, shard) unit is written atomically with a done-marker and skipped on a
   rerun, so an interrupted run resumes to identical outputs;
4. merge the unit files into ``scores.parquet`` and write ``report.json``.

Several processes (``torchrun --nproc-per-node 8 -m reasonsift.cli score ...``, or a Slurm array
with RANK/WORLD_SIZE set) split the shards; no process group is needed, and whichever rank
finishes last merges.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from reasonsift.config import ConfigError, config_to_dict
from reasonsift.data.load import check_source, input_schema, iter_examples, parse_field_overrides, warn_coercions
from reasonsift.data.records import DataError
from reasonsift.data.render import Tokenized, context_overflow, template_notice, tokenize_example
from reasonsift.models import (check_model_files, load_model, load_tokenizer, max_positions, resolve_device,
                               resolve_dtype)
from reasonsift.runfolder import (RunPaths, check_resume, done_marker, exclusive_lock, flat_settings, input_fingerprint,
                                  is_done, lock_key, mark_done, rank_world, read_json, run_lock, save_config, wait_for,
                                  write_atomic, write_json_atomic)
from reasonsift.scoring.plan import check_score_config, checkpoint_plan, resolve_direction
from reasonsift.scoring.perturb import Perturber, directional_lambdas, isotropic_steps
from reasonsift.scoring.scorer import score_items, self_check
from reasonsift.scoring.unknown_tokens import real_unk_id, unknown_example, unknown_token_summary

logger = logging.getLogger(__name__)

# Knobs that change speed, not results (fp32), so a resume may change them.
PERFORMANCE_KEYS = ("batch_tokens", "max_batch_examples", "lm_head_chunk")


def _scored_units(paths: RunPaths) -> list[Path]:
    """Finished score units (tokenization shards are not results and do not count)."""
    return [p for p in paths.score_dir.glob("*/ckpt*/shard*.parquet.done") if p.parts[-3] != "tokens"]


def check_manifest(paths: RunPaths, data: str, configs: dict[str, Any], device: torch.device,
                   dtype: torch.dtype) -> None:
    """Refuse to resume a run folder whose finished units came from another input or config.

    The manifest holds the input's fingerprint, the resolved config (speed-only keys left out), and
    the resolved device type and dtype: noise is drawn on the device (CPU and CUDA generators give
    different streams) and weights are rounded to the dtype, so units from a CPU/fp32 run must not
    be mixed with units from a GPU/bf16 one. A folder where nothing was scored yet (a first run that
    stopped on bad input, a mistyped model, a missing option) starts over instead of refusing.
    """
    manifest = {"input": input_fingerprint(data), "device": device.type, "dtype": str(dtype).removeprefix("torch."),
                "settings": flat_settings(configs, [f"score.{k}" for k in PERFORMANCE_KEYS])}
    if check_resume(paths.manifest, manifest, bool(_scored_units(paths)), f"{paths.root} holds scores",
                    "use a new --run folder or delete its score/ folder to start over", write=False):
        logger.info("%s: nothing was scored yet under the old settings; starting over", paths.root)
        for stale in (paths.score_dir, paths.direction_dir):
            shutil.rmtree(stale, ignore_errors=True)
    write_json_atomic(paths.manifest, manifest)


TOKEN_SHARD_SCHEMA = pa.schema([
    ("id", pa.string()), ("row_index", pa.int64()), ("source", pa.string()), ("domain", pa.string()),
    ("prompt_ids", pa.list_(pa.int32())), ("response_ids", pa.list_(pa.int32())),
    ("n_prompt_tokens", pa.int64()), ("n_response_tokens", pa.int64()), ("response_chars", pa.int64()),
    ("boundary_ok", pa.bool_()),
])


def prepare_shards(data: str, configs: dict[str, Any], tokenizer: Any, paths: RunPaths,
                   rank: int, world: int, model_positions: int | None = None,
                   coerced: dict[str, Any] | None = None) -> int:
    """Tokenize the pool once into token shards (this rank's shards); returns the shard count.

    A row whose prompt plus scored window exceeds ``model_positions`` is a bad row (see
    ``context_overflow``): quarantined under ``--skip-bad-rows``, else the run stops naming it.
    """
    dc, sc = configs["data"], configs["score"]
    window = max(sc.long_tokens, sc.short_tokens, sc.max_full_tokens if sc.full_loss else 0)
    fields = parse_field_overrides(dc.fields)
    n_rows, buffer, rejected = 0, [], []

    unk_id = real_unk_id(tokenizer)

    def flush(shard: int) -> None:
        path = paths.token_shard(shard)
        if shard % world != rank or is_done(path):
            return
        rows: dict[str, list] = {k: [] for k in TOKEN_SHARD_SCHEMA.names}
        kept = 0
        unk = {"unknown_tokens": 0, "response_tokens": 0, "unknown_example": None}
        for raw, ex in buffer:
            tk = tokenize_example(tokenizer, ex, dc.system_prompt, window)
            reason = context_overflow(len(tk.prompt_ids), len(tk.response_ids[:sc.long_tokens]), model_positions)
            if reason:
                if not dc.skip_bad_rows:
                    raise DataError(f"{raw.where}: {reason} (use --skip-bad-rows to quarantine bad rows)")
                rejected.append({"where": raw.where, "row_index": raw.index, "reason": reason, "raw": raw.raw})
                continue
            kept += 1
            if unk_id is not None:
                n_unk = sum(1 for t in tk.response_ids if t == unk_id)
                unk["unknown_tokens"] += n_unk
                unk["response_tokens"] += len(tk.response_ids)
                if n_unk and unk["unknown_example"] is None:
                    unk["unknown_example"] = unknown_example(tokenizer, ex.id, ex.response)
            for key, value in (("id", ex.id), ("row_index", ex.row_index), ("source", ex.source),
                               ("domain", ex.domain), ("prompt_ids", tk.prompt_ids),
                               ("response_ids", tk.response_ids), ("n_prompt_tokens", len(tk.prompt_ids)),
                               ("n_response_tokens", tk.n_response_tokens),
                               ("response_chars", len(ex.response)), ("boundary_ok", tk.boundary_ok)):
                rows[key].append(value)
        table = pa.table(rows, schema=TOKEN_SHARD_SCHEMA)
        write_atomic(path, lambda p: pq.write_table(table, p))
        mark_done(path, {"examples": kept, "rejected": sorted(rejected, key=lambda r: r["row_index"]),
                         **(unk if unk_id is not None else {})})

    shard = 0
    for raw, ex, reason in iter_examples(data, fields, dc.split, dc.skip_bad_rows, dc.limit, coerced):
        if raw.index // sc.shard_size != shard:
            flush(shard)
            shard, buffer, rejected = raw.index // sc.shard_size, [], []
        n_rows += 1
        if ex is None:
            rejected.append({"where": raw.where, "row_index": raw.index, "reason": reason, "raw": raw.raw})
        else:
            buffer.append((raw, ex))
    if n_rows == 0:
        raise DataError(f"{data}: no rows")
    flush(shard)
    return shard + 1


def _score_unit(model: Any, shard: pa.Table, window: int, sc: Any, progress: bool) -> pa.Table:
    prompt_ids = shard.column("prompt_ids").to_pylist()
    response_ids = shard.column("response_ids").to_pylist()
    items = [Tokenized(p, r).window(window) for p, r in zip(prompt_ids, response_ids)]
    nll = score_items(model, items, sc.batch_tokens, sc.max_batch_examples, sc.lm_head_chunk, progress)
    cols = {
        "id": shard.column("id"),
        "n_scored": pa.array([len(x) for x in nll], pa.int32()),
        "n_tokens": pa.array([it.length for it in items], pa.int64()),
        "loss_short": pa.array([float(x[: sc.short_tokens].mean()) for x in nll], pa.float64()),
        "loss_long": pa.array([float(x[: sc.long_tokens].mean()) for x in nll], pa.float64()),
        "loss_all": pa.array([float(x.mean()) for x in nll], pa.float64()),
    }
    if sc.save_token_losses:
        cols["token_nll"] = pa.array([x.tolist() for x in nll], pa.list_(pa.float32()))
    return pa.table(cols)


def _load_direction(configs: dict[str, Any], perturber: Perturber, model: Any, paths: RunPaths,
                    n_shards: int) -> dict[str, Any]:
    """Set θ_f on the perturber from a model, a short fine-tune, or nothing (isotropic mode)."""
    sc, mc = configs["score"], configs["model"]
    direction = resolve_direction(sc)
    if direction == "isotropic":
        if sc.direction == "auto":
            logger.warning("no --direction-model (θ_f): the loss vectors come from the Gaussian checkpoints "
                           "(score.direction=isotropic). For TEMP's directional vectors pass --direction-model, "
                           "or score.direction=finetune for a short SFT on a sample of the pool.")
        return {"source": "isotropic", "note": "no θ_f: loss vectors come from the nested Gaussian checkpoints"}
    if direction == "model":
        target = load_model(sc.direction_model, mc, next(model.parameters()).device)
        perturber.set_target(dict(target.named_parameters()))
        del target
        return {"source": f"model:{sc.direction_model}", "norm": perturber.direction_norm}
    saved = paths.theta_f
    rank, _ = rank_world()
    if rank != 0:  # one process trains θ_f; the others must use that same direction
        wait_for([saved], "the direction fine-tune on rank 0")
    if not is_done(saved):
        from safetensors.torch import save_file

        items = []
        for s in range(n_shards):
            t = pq.read_table(paths.token_shard(s), columns=["prompt_ids", "response_ids"])
            items += [Tokenized(p, r).window(sc.long_tokens) for p, r in zip(t.column(0).to_pylist(), t.column(1).to_pylist())]
        rng = np.random.default_rng(sc.seed)
        sample = [items[i] for i in sorted(rng.choice(len(items), min(sc.finetune_examples, len(items)), replace=False))]
        from reasonsift.scoring.direction import finetune_direction

        logger.info("no θ_f given: fine-tuning %d steps on %d examples for a direction", sc.finetune_steps, len(sample))
        target = finetune_direction(model, sample, sc.finetune_steps, sc.finetune_lr, sc.seed,
                                    pad_id=getattr(model.config, "pad_token_id", None) or 0)
        write_atomic(saved, lambda p: save_file({k: v.contiguous() for k, v in target.items()}, str(p)))
        mark_done(saved)
    from safetensors.torch import load_file

    perturber.set_target(load_file(str(saved), device=str(next(model.parameters()).device)))
    return {"source": "finetune", "steps": sc.finetune_steps, "examples": sc.finetune_examples,
            "lr": sc.finetune_lr, "norm": perturber.direction_norm}


def _noise_schedule(sc: Any, perturber: Perturber, paths: RunPaths, shard_files: list[Path], n_examples: list[int],
                    progress: bool) -> dict[str, Any]:
    """Set the Gaussian step stds on the perturber: the fixed schedule, or one calibrated to the model.

    The calibration runs once, on rank 0, before any Gaussian checkpoint is scored, and is kept in
    ``score/calibration.json`` (done-marked): a rerun reuses it instead of searching again, so resumed
    units and new ones share one schedule. Its inputs (seed, sample size, band, schedule shape) are in the
    config hash of the manifest.
    """
    from reasonsift.scoring.calibrate import calibrate_noise, calibration_sample, fixed_schedule

    if sc.noise == "fixed" or sc.num_isotropic == 0:
        record = fixed_schedule(sc)
    else:
        saved = paths.calibration
        if rank_world()[0] != 0:
            wait_for([saved], "the noise calibration on rank 0")
        if not is_done(saved):
            offsets = np.cumsum([0] + n_examples)  # global example index where each shard starts
            chosen = np.array(calibration_sample(int(offsets[-1]), sc.calibration_examples, sc.seed), dtype=np.int64)
            items = []
            for s in range(len(shard_files)):
                local = chosen[(chosen >= offsets[s]) & (chosen < offsets[s + 1])] - offsets[s]
                if len(local):
                    t = pq.read_table(shard_files[s], columns=["prompt_ids", "response_ids"]).take(local)
                    items += [Tokenized(p, r).window(sc.short_tokens)
                              for p, r in zip(t.column(0).to_pylist(), t.column(1).to_pylist())]
            logger.info("calibrating the Gaussian noise on %d examples (score.noise=calibrate)", len(items))
            write_json_atomic(saved, calibrate_noise(perturber, items, sc, progress))
            mark_done(saved)
        record = read_json(saved)
    perturber.iso_steps = list(record["steps"])
    return record


def run_scoring(data: str, configs: dict[str, Any], run: str | Path, command: str = "",
                progress: bool = True) -> dict[str, Any] | None:
    """Score a pool into ``RUN/scores.parquet``; returns the report (None on a rank that did not merge).

    The inputs (config, data file, model folders) are checked before RUN is created, and RUN is owned
    (``run_lock``) for the whole run: a second command with another config is refused; the ranks of
    one multi-process run share it. Every warning logged on the way is also in the report's ``notes``.
    """
    sc, mc = configs["score"], configs["model"]
    if not mc.model:
        raise ConfigError("no model given: pass --model PATH_OR_HUB_ID")
    check_score_config(sc)
    check_source(data, configs["data"].split)
    check_model_files(mc.model, mc)
    if resolve_direction(sc) == "model":
        check_model_files(sc.direction_model, mc, tokenizer=False)
    where = str(Path(data).resolve()) if Path(data).exists() else str(data)
    from reasonsift.run_notes import collect_warnings

    with run_lock(Path(run), lock_key("score", where, config_to_dict(configs)), "score", command):
        with collect_warnings() as notes:
            return _score(data, configs, run, command, progress, notes)


def _score(data: str, configs: dict[str, Any], run: str | Path, command: str, progress: bool,
           notes: list[str]) -> dict[str, Any] | None:
    start = time.time()
    paths = RunPaths(Path(run))
    sc, mc = configs["score"], configs["model"]
    rank, world = rank_world()
    device = resolve_device(mc.device)
    check_manifest(paths, data, configs, device, resolve_dtype(mc.dtype, device))
    if rank == 0:
        save_config(paths.config, config_to_dict(configs), command)
    tokenizer = load_tokenizer(mc.model, mc.trust_remote_code)
    template = template_notice(tokenizer, mc.model)
    coerced: dict[str, Any] = {"rows": 0, "fields": {}}  # every rank reads every row: each has the full tally
    n_shards = prepare_shards(data, configs, tokenizer, paths, rank, world,
                              max_positions(mc.model, mc.trust_remote_code), coerced)
    warn_coercions(coerced, data)
    shard_files = [paths.token_shard(s) for s in range(n_shards)]
    wait_for(shard_files, "tokenization")
    markers = [read_json(done_marker(f)) for f in shard_files]
    n_examples = [m.get("examples", 0) for m in markers]
    unknown = unknown_token_summary(markers, tokenizer, warn=rank == 0)
    if not any(n_examples):
        from reasonsift.scoring.merge import write_rejected

        write_rejected(paths, [r for f in shard_files for r in read_json(done_marker(f)).get("rejected", [])])
        raise DataError(f"{data}: every row was rejected; see {paths.rejected}")
    if world == 1:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    model = load_model(mc.model, mc, device)
    # The fast path is checked on real examples: the first non-empty shard (a shard can be all rejected).
    first = pq.read_table(shard_files[next(i for i, n in enumerate(n_examples) if n)],
                          columns=["prompt_ids", "response_ids"])
    check_items = [Tokenized(p, r).window(sc.long_tokens) for p, r in
                   zip(first.column(0).to_pylist()[:4], first.column(1).to_pylist()[:4])]
    check_err = self_check(model, check_items)
    perturber = Perturber(model, sc.seed, isotropic_steps(sc.isotropic_std_start, sc.isotropic_std_end, sc.num_isotropic),
                          directional_lambdas(sc.min_radius, sc.final_radius, sc.num_directional),
                          sc.directional_embeddings)
    direction = _load_direction(configs, perturber, model, paths, n_shards)
    noise = _noise_schedule(sc, perturber, paths, shard_files, n_examples, progress)
    my_shards = [s for s in range(n_shards) if s % world == rank]
    checkpoints = checkpoint_plan(sc)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(checkpoints) * len(my_shards), desc="score units", unit="unit", disable=not progress)
    for stage, k, window in checkpoints:
        todo = [s for s in my_shards if not is_done(paths.unit(stage, k, s))]
        bar.update(len(my_shards) - len(todo))
        if not todo:
            continue
        stats = perturber.apply(stage, k)
        write_json_atomic(paths.perturbation(stage, k), stats)
        for s in todo:
            bar.set_postfix_str(f"{stage} {k}, shard {s}")
            table = _score_unit(model, pq.read_table(paths.token_shard(s)), window, sc, progress=progress)
            write_atomic(paths.unit(stage, k, s), lambda p, t=table: pq.write_table(t, p))
            mark_done(paths.unit(stage, k, s))
            bar.update(1)
    bar.close()
    perturber.restore()
    all_units = [paths.unit(st, k, s) for st, k, _ in checkpoints for s in range(n_shards)]
    if not all(is_done(u) for u in all_units):
        logger.info("rank %d finished its units; the last rank to finish merges", rank)
        return None
    from reasonsift.scoring.merge import merge_scores

    with exclusive_lock(paths.merge_lock(paths.score_dir)) as locked:
        if not locked:  # two ranks finished at once; the other one is merging
            logger.info("rank %d: another process is merging", rank)
            return None
        report = merge_scores(paths, configs, n_shards, checkpoints)
    from reasonsift.scoring.signals import compute_signals

    table = pq.read_table(paths.scores, columns=["source", "n_prompt_tokens", "n_response_tokens", "difficulty"])
    report["signals"] = compute_signals(table.to_pandas(), report.get("theta_rnd"))
    for warning in report["signals"]["warnings"]:
        logger.warning("signal check: %s", warning)
    # An absolute path, so that ``select`` finds the rows from any working directory.
    where = str(Path(data).resolve()) if Path(data).exists() else str(data)
    dc = configs["data"]
    report.update({"command": command, "input": where, "model": mc.model, "direction": direction, "noise": noise,
                   "fields": input_schema(data, parse_field_overrides(dc.fields), dc.split),
                   "device": str(next(model.parameters()).device), "dtype": str(next(model.parameters()).dtype),
                   "self_check_max_abs_err": check_err, "world_size": world,
                   "coerced": coerced, "template": template,
                   "wall_time_s": round(time.time() - start, 3)})
    if unknown is not None:
        report["unknown_tokens"] = unknown
    # the merging rank's warnings, and the data warning whichever rank printed it
    report["notes"] = list(notes) + [w for w in [(unknown or {}).get("warning")] if w and w not in notes]
    write_json_atomic(paths.report, report)
    return report
