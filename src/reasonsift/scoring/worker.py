"""One scoring worker: θ₀ loaded once, any (stage, checkpoint, shard) unit scored into the run folder.

The same class does the work in a single process, in every ``torchrun`` rank and in every Ray
actor (``reasonsift.scaling.ray_pool``), so a unit's file and done-marker are written by the same
code whichever way the run is launched. The worker keeps the pristine θ₀ (inside its
``Perturber``) and builds each checkpoint from it, never by subtracting the last one; it rebuilds
only when a unit of another checkpoint arrives, so units ordered checkpoint-major cost one
perturbation per checkpoint ("perturb once, score everything").
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from reasonsift.data.render import Tokenized
from reasonsift.models import load_model, resolve_device
from reasonsift.runfolder import (RunPaths, is_done, mark_done, rank_world, read_json, wait_for, write_atomic,
                                  write_json_atomic)
from reasonsift.scoring.perturb import Perturber, directional_lambdas, isotropic_steps
from reasonsift.scoring.plan import checkpoint_plan, resolve_direction
from reasonsift.scoring.scorer import score_items, self_check

logger = logging.getLogger(__name__)

Unit = tuple[str, int, int]  # (stage, checkpoint, shard)


def unit_name(unit: Unit) -> str:
    """How errors and logs name a unit: ``isotropic/ckpt3/shard00012``."""
    stage, k, shard = unit
    return f"{stage}/ckpt{k}/shard{shard:05d}"


def score_unit(model: Any, shard: pa.Table, window: int, sc: Any, progress: bool = False) -> pa.Table:
    """Losses of one token shard at the model's current weights (one row per example)."""
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


def load_direction(configs: dict[str, Any], perturber: Perturber, model: Any, paths: RunPaths,
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


def noise_schedule(sc: Any, perturber: Perturber, paths: RunPaths, shard_files: list[Path], n_examples: list[int],
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


class ScoreWorker:
    """Loads θ₀ (and θ_f), checks the packed fast path, sets the noise schedule, then scores units on request.

    ``n_examples``: examples per token shard (the first non-empty one is where the fast path is
    checked; the noise calibration samples across all of them).
    """

    def __init__(self, configs: dict[str, Any], run: str | Path, n_examples: list[int], progress: bool = False) -> None:
        sc, mc = configs["score"], configs["model"]
        self.sc, self.paths, self.progress = sc, RunPaths(Path(run)), progress
        self.windows = {(stage, k): window for stage, k, window in checkpoint_plan(sc)}
        self.model = load_model(mc.model, mc, resolve_device(mc.device))
        shard_files = [self.paths.token_shard(s) for s in range(len(n_examples))]
        first = pq.read_table(shard_files[next(i for i, n in enumerate(n_examples) if n)],
                              columns=["prompt_ids", "response_ids"])
        items = [Tokenized(p, r).window(sc.long_tokens) for p, r in
                 zip(first.column(0).to_pylist()[:4], first.column(1).to_pylist()[:4])]
        self.check_err = self_check(self.model, items)
        self.perturber = Perturber(self.model, sc.seed,
                                   isotropic_steps(sc.isotropic_std_start, sc.isotropic_std_end, sc.num_isotropic),
                                   directional_lambdas(sc.min_radius, sc.final_radius, sc.num_directional),
                                   sc.directional_embeddings)
        self.direction = load_direction(configs, self.perturber, self.model, self.paths, len(n_examples))
        self.noise = noise_schedule(sc, self.perturber, self.paths, shard_files, n_examples, progress)
        self.applied: tuple[str, int] | None = None  # the checkpoint now in the model's weights

    def info(self) -> dict[str, Any]:
        """Device, dtype, direction and fast-path check: what the stage report records."""
        p = next(self.model.parameters())
        return {"device": str(p.device), "dtype": str(p.dtype), "direction": self.direction, "noise": self.noise,
                "self_check_max_abs_err": self.check_err}

    def run(self, unit: Unit) -> None:
        """Score one unit and write it atomically, then its done-marker."""
        stage, k, shard = unit
        if self.applied != (stage, k):
            self.applied = None  # until the new weights are all in place
            stats = self.perturber.apply(stage, k)  # from the kept θ₀, never from the last checkpoint
            write_json_atomic(self.paths.perturbation(stage, k), stats)
            self.applied = (stage, k)
        table = score_unit(self.model, pq.read_table(self.paths.token_shard(shard)), self.windows[(stage, k)], self.sc,
                           self.progress)
        path = self.paths.unit(stage, k, shard)
        write_atomic(path, lambda p: pq.write_table(table, p))
        mark_done(path)

    def close(self) -> None:
        """Put θ₀ back into the model (bit-exactly, from the kept copy)."""
        self.perturber.restore()
        self.applied = None
