"""The scoring stage: ``reasonsift score DATA --model M --run RUN``.

Top to bottom:
1. stream the input, render and tokenize each example once into token shards (bad rows are
   quarantined or stop the run);
2. list the (stage, checkpoint, shard) units not done yet, checkpoint-major, and hand them to a
   ``ScoreWorker`` (scoring/worker.py): it loads θ₀ (and θ_f) once, checks the packed fast path,
   sets the noise schedule, builds each checkpoint from the kept base ("perturb once") and scores
   every shard given to it at that checkpoint ("score everything"); each unit is written atomically
   with a done-marker and skipped on a rerun, so an interrupted run resumes to identical outputs;
3. merge the unit files into ``scores.parquet`` and write ``report.json``.

Where the workers run (docs/scaling.md): here; in every rank of ``torchrun`` on one or many nodes
(``torchrun --nnodes 2 --nproc-per-node 8 -m reasonsift.cli score ... --run-dir RUN``, or Slurm
``srun`` with RANK/WORLD_SIZE set), which split the shards with no process group and meet only through
the run folder's done-markers (a rank out of work takes the units of a dead one, ``run_units``), the
rank that finishes the last unit merging; or, with ``scale.backend=ray``, in a
pool of Ray actors this process feeds (``reasonsift.scaling.ray_pool``), then merges.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from reasonsift.config import ConfigError, ScaleConfig, config_to_dict
from reasonsift.data.formats import check_source, source_id
from reasonsift.data.load import input_schema, iter_examples, parse_field_overrides, warn_coercions
from reasonsift.data.records import DataError
from reasonsift.data.render import context_overflow, template_notice, tokenize_example
from reasonsift.models import check_model_files, load_tokenizer, max_positions, resolve_device, resolve_dtype
from reasonsift.runfolder import (RunPaths, check_resume, done_marker, flat_settings, input_fingerprint, is_done,
                                  mark_done, rank_world, read_json, save_config, wait_for, write_atomic, write_json_atomic)
from reasonsift.runlock import exclusive_lock, lock_key, run_lock, run_units
from reasonsift.scaling.ray_pool import missing_units_error, require_ray
from reasonsift.scoring.plan import check_score_config, checkpoint_plan, resolve_direction
from reasonsift.scoring.unknown_tokens import real_unk_id, unknown_example, unknown_token_summary
from reasonsift.scoring.worker import ScoreWorker, Unit, unit_name

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
                "settings": flat_settings({s: c for s, c in configs.items() if s != "scale"},  # where, not what
                                          [f"score.{k}" for k in PERFORMANCE_KEYS])}
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


def run_scoring(data: str, configs: dict[str, Any], run: str | Path, command: str = "",
                progress: bool = True) -> dict[str, Any] | None:
    """Score a pool into ``RUN/scores.parquet``; returns the report (None on a rank that did not merge).

    The inputs (config, data file, model folders) are checked before RUN is created, and RUN is owned
    (``run_lock``) for the whole run: a second command with another config is refused; the ranks of
    one multi-process run share it. Every warning logged on the way is also in the report's ``notes``.
    ``configs["scale"]`` (optional) picks where the units run: this process and its ``torchrun`` peers
    (``local``), or a pool of Ray actors fed by this process (``ray``).
    """
    sc, mc = configs["score"], configs["model"]
    if not mc.model:
        raise ConfigError("no model given: pass --model PATH_OR_HUB_ID")
    check_score_config(sc)
    if configs.get("scale", ScaleConfig()).backend == "ray":
        require_ray()  # before any work: a missing extra is a one-line error naming the pip command
    check_source(data, configs["data"].split)
    check_model_files(mc.model, mc)
    if resolve_direction(sc) == "model":
        check_model_files(sc.direction_model, mc, tokenizer=False)
    where = source_id(data)
    from reasonsift.run_notes import collect_warnings

    with run_lock(Path(run), lock_key("score", where, config_to_dict(configs)), "score", command):
        with collect_warnings() as notes:
            return _score(data, configs, run, command, progress, notes)


def _score(data: str, configs: dict[str, Any], run: str | Path, command: str, progress: bool,
           notes: list[str]) -> dict[str, Any] | None:
    start = time.time()
    paths = RunPaths(Path(run))
    sc, mc = configs["score"], configs["model"]
    scale = configs.get("scale", ScaleConfig())
    on_ray = scale.backend == "ray"
    rank, world = (0, 1) if on_ray else rank_world()  # the Ray driver does all of the tokenization
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
    checkpoints = checkpoint_plan(sc)
    # Checkpoint-major: a worker builds each checkpoint once and scores every shard it is given at it.
    all_units = [(stage, k, s) for stage, k, _ in checkpoints for s in range(n_shards)]
    todo = [u for u in all_units if not is_done(paths.unit(*u))]
    worker_args = (configs, str(paths.root), n_examples)
    if on_ray:
        from reasonsift.scaling.ray_pool import run_pool

        # θ_f and the noise calibration are made by one worker, then read by the others
        first_alone = ((resolve_direction(sc) == "finetune" and not is_done(paths.theta_f))
                       or (sc.noise != "fixed" and sc.num_isotropic > 0 and not is_done(paths.calibration)))
        pool = run_pool(ScoreWorker, worker_args, todo, unit_name, group=lambda u: u[:2],
                        address=scale.ray_address, workers=scale.workers, device=mc.device, progress=progress,
                        total=len(todo), first_alone=first_alone)
        info = _worker_summary(pool.worker_info) if pool.worker_info else None
        scale_report = pool.as_report()
    else:
        info, last = _score_here(todo, worker_args, paths, rank, world, progress)
        scale_report = {"backend": "local"}
        if not last:
            logger.info("rank %d: every unit is done; the rank that finished the last one merges", rank)
            return None
    # Whatever the workers said, a unit counts only with its done-marker (a Ray pool can lose one).
    missing = [u for u in all_units if not is_done(paths.unit(*u))]
    if missing:  # only a Ray pool can end with units missing; ``run_units`` waits until all are done
        raise missing_units_error([unit_name(u) for u in missing], len(all_units), pool.errors)
    from reasonsift.scoring.merge import merge_scores

    with exclusive_lock(paths.merge_lock(paths.score_dir)) as locked:
        if not locked:  # two ranks finished at once; the other one is merging
            logger.info("rank %d: another process is merging", rank)
            return None
        report = merge_scores(paths, configs, n_shards, checkpoints)
    if info is None:  # every unit was done before this run started (a rerun after a failed merge)
        info = ScoreWorker(*worker_args).info()
    from reasonsift.scoring.signals import compute_signals

    table = pq.read_table(paths.scores, columns=["source", "n_prompt_tokens", "n_response_tokens", "difficulty"])
    report["signals"] = compute_signals(table.to_pandas(), report.get("theta_rnd"))
    for warning in report["signals"]["warnings"]:
        logger.warning("signal check: %s", warning)
    # An absolute path, so that ``select`` finds the rows from any working directory.
    where = source_id(data)
    dc = configs["data"]
    report.update({"command": command, "input": where, "model": mc.model, "direction": info["direction"],
                   "noise": info["noise"], "fields": input_schema(data, parse_field_overrides(dc.fields), dc.split),
                   "device": info["device"], "dtype": info["dtype"],
                   "self_check_max_abs_err": info["self_check_max_abs_err"], "world_size": world, "scale": scale_report,
                   "coerced": coerced, "template": template, "wall_time_s": round(time.time() - start, 3)})
    if unknown is not None:
        report["unknown_tokens"] = unknown
    # the merging rank's warnings, and the data warning whichever rank printed it
    report["notes"] = list(notes) + [w for w in [(unknown or {}).get("warning")] if w and w not in notes]
    write_json_atomic(paths.report, report)
    return report


def _score_here(todo: list[Unit], worker_args: tuple[Any, ...], paths: RunPaths, rank: int, world: int,
                progress: bool) -> tuple[dict[str, Any], bool]:
    """Score ``todo`` in this process: this rank's share (every WORLD_SIZE-th shard), then the units of
    ranks that died or fell behind (``run_units``); the worker's info, and whether this rank merges."""
    if world == 1:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    worker = ScoreWorker(*worker_args, progress=progress)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="score units", unit="unit", disable=not progress)

    def run(unit: Unit) -> None:
        bar.set_postfix_str(f"{unit[0]} {unit[1]}, shard {unit[2]}")
        worker.run(unit)
        bar.update()

    last = run_units([u for u in todo if u[2] % world == rank], [u for u in todo if u[2] % world != rank],
                     lambda u: paths.unit(*u), run)
    bar.close()
    worker.close()
    return worker.info(), last


def _worker_summary(infos: list[dict[str, Any]]) -> dict[str, Any]:
    """One report entry from every Ray worker's info: the worst fast-path check among them."""
    return {**infos[0], "self_check_max_abs_err": max(i["self_check_max_abs_err"] for i in infos)}
