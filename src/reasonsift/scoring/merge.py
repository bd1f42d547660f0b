"""Merge scoring unit files into ``scores.parquet``; choose θ_rnd; account for tokens.

``scores.parquet`` has one row per example, in input order:
    id, row_index, source, domain, n_prompt_tokens, n_response_tokens, response_chars,
    base_loss_100, base_loss_1000     mean NLL of the first ≤100 / ≤1000 response tokens at θ₀
    difficulty                        the 100-token loss at θ_rnd
    isotropic_loss_100                list, one value per Gaussian checkpoint
    loss_100, loss_1000               lists, one value per directional checkpoint (Gaussian ones
                                      when no direction is available)
    brittleness                       loss_1000[-1] − loss_1000[0]
    full_loss                         mean NLL of the whole response at θ₀ (null unless scored)
(the column names say 100 and 1000 for the default windows ``score.short_tokens`` and
``score.long_tokens``; ``report.json`` records the windows actually used).

The merge streams shard by shard, so memory does not grow with the pool.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from reasonsift.data.records import DataError
from reasonsift.runfolder import RunPaths, done_marker, read_json, write_atomic, write_text_atomic

logger = logging.getLogger(__name__)


def choose_theta_rnd(ratios: list[float], low: float, high: float) -> dict[str, Any]:
    """Pick the Gaussian checkpoint whose mean-loss ratio to θ₀ lies in [low, high], nearest the middle.

    When none does, the nearest one is still used (the run goes on) and ``in_range`` is False; the
    caller warns, since the difficulty signal is then off the paper's operating point.
    """
    target = (low + high) / 2
    inside = [i for i, r in enumerate(ratios) if low <= r <= high]
    pool = inside or list(range(len(ratios)))
    best = min(pool, key=lambda i: (abs(ratios[i] - target), i))
    return {"checkpoint": best + 1, "ratio": ratios[best], "in_range": bool(inside), "ratios": ratios,
            "target_range": [low, high]}


def _unit(paths: RunPaths, stage: str, k: int, shard: int, columns: list[str]) -> pa.Table:
    return pq.read_table(paths.unit(stage, k, shard), columns=columns)


def _theta_rnd(paths: RunPaths, sc: Any, n_shards: int, n_iso: int) -> dict[str, Any] | None:
    """θ_rnd from dataset-mean losses over the whole pool (needed before any row can be written)."""
    sums = np.zeros(n_iso + 1)
    count = 0
    for s in range(n_shards):
        base = _unit(paths, "base", 0, s, ["loss_short"]).column(0).to_numpy()
        sums[0] += base.sum()
        count += len(base)
        for k in range(1, n_iso + 1):
            sums[k] += _unit(paths, "isotropic", k, s, ["loss_short"]).column(0).to_numpy().sum()
    if count == 0:  # run_scoring stops before this; kept for callers of merge_scores alone
        raise DataError("no examples were scored (every row was rejected)")
    if not n_iso:
        return None
    ratios = [float(sums[k] / sums[0]) if sums[0] > 0 else float("nan") for k in range(1, n_iso + 1)]
    theta_rnd = choose_theta_rnd(ratios, sc.target_ratio_low, sc.target_ratio_high)
    if not theta_rnd["in_range"]:
        logger.warning("no Gaussian checkpoint has a mean-loss ratio to θ₀ in [%g, %g] (ratios %s); using "
                       "checkpoint %d (ratio %.4g). Adjust score.isotropic_std_start/end for this model.",
                       sc.target_ratio_low, sc.target_ratio_high, ", ".join(f"{r:.4g}" for r in ratios),
                       theta_rnd["checkpoint"], theta_rnd["ratio"])
    return theta_rnd


def _losses(paths: RunPaths, stage: str, n: int, shard: int, column: str, rows: int) -> np.ndarray:
    """(rows, n) losses of checkpoints 1..n of ``stage`` for one shard."""
    if not n:
        return np.zeros((rows, 0))
    return np.stack([_unit(paths, stage, k, shard, [column]).column(0).to_numpy() for k in range(1, n + 1)], axis=1)


def _shard_scores(paths: RunPaths, s: int, meta: pa.Table, checkpoints: list[tuple[str, int, int]],
                  theta_rnd: dict[str, Any] | None, vec_stage: str, n_iso: int, n_vec: int) -> pa.Table:
    """The ``scores.parquet`` rows of one shard (columns in the module docstring)."""
    rows = meta.num_rows
    base = _unit(paths, "base", 0, s, ["loss_short", "loss_long"])
    iso = _losses(paths, "isotropic", n_iso, s, "loss_short", rows)
    vec_short = _losses(paths, vec_stage, n_vec, s, "loss_short", rows)
    vec_long = _losses(paths, vec_stage, n_vec, s, "loss_long", rows)
    # Null (not NaN) when the full-response pass was not run: "not scored" is not a number.
    full = (_unit(paths, "full", 0, s, ["loss_all"]).column(0)
            if any(st == "full" for st, _, _ in checkpoints) else pa.nulls(rows, pa.float64()))
    difficulty = iso[:, theta_rnd["checkpoint"] - 1] if theta_rnd else np.full(rows, np.nan)
    brittleness = vec_long[:, -1] - vec_long[:, 0] if n_vec else np.full(rows, np.nan)
    return meta.drop(["boundary_ok"]).append_column("base_loss_100", base.column("loss_short")) \
        .append_column("base_loss_1000", base.column("loss_long")) \
        .append_column("difficulty", pa.array(difficulty, pa.float64())) \
        .append_column("isotropic_loss_100", pa.array(list(iso), pa.list_(pa.float64()))) \
        .append_column("loss_100", pa.array(list(vec_short), pa.list_(pa.float64()))) \
        .append_column("loss_1000", pa.array(list(vec_long), pa.list_(pa.float64()))) \
        .append_column("brittleness", pa.array(brittleness, pa.float64())) \
        .append_column("full_loss", full)


def merge_scores(paths: RunPaths, configs: dict[str, Any], n_shards: int,
                 checkpoints: list[tuple[str, int, int]]) -> dict[str, Any]:
    """Write scores.parquet and rejected.jsonl; return the report's counts and token accounting."""
    sc = configs["score"]
    n_iso = sum(1 for st, _, _ in checkpoints if st == "isotropic")
    n_dir = sum(1 for st, _, _ in checkpoints if st == "directional")
    vec_stage, n_vec = ("directional", n_dir) if n_dir else ("isotropic", n_iso)
    theta_rnd = _theta_rnd(paths, sc, n_shards, n_iso)

    # "scored" is TEMP's own cost (θ₀ and every perturbed checkpoint); the full-response pass of the
    # full-loss baseline is counted apart, so that it neither inflates nor hides TEMP's savings.
    tokens = {"scored": 0, "scored_response": 0, "full_trace_once": 0, "full_loss_pass": 0}
    by_stage: dict[str, int] = {}
    counts = {"examples": 0, "rejected": 0, "boundary_mismatch": 0}
    rejected: list[dict[str, Any]] = []

    def write(tmp: Path) -> None:  # streams shard by shard into one parquet file
        writer: pq.ParquetWriter | None = None
        for s in range(n_shards):
            tok_path = paths.token_shard(s)
            meta = pq.read_table(tok_path, columns=["id", "row_index", "source", "domain", "n_prompt_tokens",
                                                    "n_response_tokens", "response_chars", "boundary_ok"])
            rejected.extend(read_json(done_marker(tok_path)).get("rejected", []))
            counts["examples"] += meta.num_rows
            counts["boundary_mismatch"] += int((~meta.column("boundary_ok").to_numpy(zero_copy_only=False)).sum())
            tokens["full_trace_once"] += int((meta.column("n_prompt_tokens").to_numpy()
                                              + meta.column("n_response_tokens").to_numpy()).sum())
            for st, k, _ in checkpoints:
                u = _unit(paths, st, k, s, ["n_tokens", "n_scored"])
                n_tokens = int(u.column("n_tokens").to_numpy().sum())
                by_stage[st] = by_stage.get(st, 0) + n_tokens
                if st == "full":
                    tokens["full_loss_pass"] += n_tokens
                    continue
                tokens["scored"] += n_tokens
                tokens["scored_response"] += int(u.column("n_scored").to_numpy().sum())
            table = _shard_scores(paths, s, meta, checkpoints, theta_rnd, vec_stage, n_iso, n_vec)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
        if writer is not None:
            writer.close()

    write_atomic(paths.scores, write)
    counts["rejected"] = len(rejected)
    counts["rows"] = counts["examples"] + counts["rejected"]
    write_rejected(paths, rejected)
    tokens["by_stage"] = by_stage
    n_ckpts = len([c for c in checkpoints if c[0] != "full"])
    tokens["checkpoints"] = n_ckpts
    tokens["full_trace_all_checkpoints"] = tokens["full_trace_once"] * n_ckpts
    for key in ("full_trace_all_checkpoints", "full_trace_once"):
        tokens[f"savings_vs_{key}"] = round(1 - tokens["scored"] / tokens[key], 4) if tokens[key] else 0.0
    perturbation = {}
    for st, k, _ in checkpoints:
        p = paths.perturbation(st, k)
        if st in ("isotropic", "directional") and p.exists():
            perturbation.setdefault(st, []).append({"checkpoint": k, **read_json(p)})
    return {"counts": counts, "tokens": tokens, "theta_rnd": theta_rnd, "perturbation": perturbation,
            "windows": {"short_tokens": sc.short_tokens, "long_tokens": sc.long_tokens},
            "loss_vectors_from": vec_stage}


def write_rejected(paths: RunPaths, rejected: list[dict[str, Any]]) -> None:
    """Write ``RUN/rejected.jsonl`` (one quarantined row per line, with its reason), or remove a stale one."""
    if not rejected:
        if paths.rejected.exists():
            paths.rejected.unlink()
        return
    write_text_atomic(paths.rejected, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejected))
