"""Check TEMP's Theorem 3.1 on a scored run: do close loss vectors mean close gradients along e?

The theorem (temp-method.md §2) says: if two examples' losses differ by at most δ at every
directional checkpoint, the difference of their gradients projected on the fine-tuning direction
e = (θ_f − θ₀)/‖θ_f − θ₀‖ is bounded by a term growing with δ. That is why k-means on loss vectors
is meant to group examples with similar gradients along e. Nothing in the selection tests it; this
module measures it on the user's own pool:

1. draw ``pairs`` disjoint random pairs of scored examples (seeded);
2. for each of those 2·pairs examples, one backward pass at θ₀ of the same loss the loss vectors
   hold (mean NLL of the first ``score.long_tokens`` response tokens) and the projection
   p_i = ⟨∇L_i(θ₀), e⟩, with e over the same parameters the directional perturbation moves;
3. rank-correlate, across pairs, |p_a − p_b| with the loss-vector distance (L∞, the theorem's δ,
   and L2, what k-means uses), beside the θ₀-loss difference |L_a(θ₀) − L_b(θ₀)| as the baseline
   a loss vector has to beat; bootstrap 95% intervals over pairs.

A positive correlation clearly above the θ₀-loss baseline is the theorem's prediction holding on
this pool. Cost: one forward + backward per example (2·pairs of them) at the loss-vector window.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
import yaml

from reasonsift.config import ConfigError, ModelConfig, ScoreConfig, make_config
from reasonsift.data.render import Tokenized, build_labels
from reasonsift.loss import masked_token_nll
from reasonsift.models import load_model, resolve_device
from reasonsift.runfolder import RunPaths, read_json, write_json_atomic
from reasonsift.scoring.perturb import Perturber
from reasonsift.scoring.plan import resolve_direction

logger = logging.getLogger(__name__)


def projected_gradient(model: torch.nn.Module, item: Tokenized, direction: dict[str, torch.Tensor]) -> tuple[float, float]:
    """(⟨∇L(θ), e⟩, L(θ)) for one example at the model's current weights.

    L is the mean NLL over ``item.response_ids`` (the prompt is masked), the loss ``score`` records.
    ``direction``: the unit direction e per parameter name (parameters not in it count as 0).
    """
    device = next(model.parameters()).device
    ids = torch.tensor([item.prompt_ids + item.response_ids], device=device)  # (1, T)
    labels = build_labels(ids[0], len(item.prompt_ids))[None]  # (1, T)
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        logits = model(input_ids=ids, use_cache=False).logits  # (1, T, V)
        nll, mask = masked_token_nll(logits, labels)
        loss = nll.sum() / mask.sum().clamp(min=1)
        loss.backward()
    dot = 0.0
    for name, p in model.named_parameters():
        if p.grad is not None and name in direction:
            dot += float((p.grad.double() * direction[name].double()).sum())
    model.zero_grad(set_to_none=True)
    return dot, float(loss.detach())


def unit_direction(perturber: Perturber) -> dict[str, torch.Tensor]:
    """e = (θ_f − θ₀)/‖θ_f − θ₀‖ per tensor, over exactly the tensors the directional checkpoints move."""
    if perturber.target is None:
        raise ValueError("no θ_f set on the perturber")
    return {n: (perturber.target[n].float() - b.float()) / perturber.direction_norm
            for n, b in perturber.base.items() if perturber.directional_embeddings or "embed" not in n}


def spearman_ci(x: np.ndarray, y: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Spearman's ρ of x and y with a percentile bootstrap 95% interval (resampling the rows)."""
    import warnings

    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rho = float(spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    boots = []
    with warnings.catch_warnings():  # a resample of few rows can be constant: that draw is skipped
        warnings.simplefilter("ignore")
        for _ in range(n_boot):
            i = rng.integers(0, len(x), len(x))
            r = spearmanr(x[i], y[i]).statistic
            if np.isfinite(r):
                boots.append(r)
    lo, hi = (np.percentile(boots, [2.5, 97.5]) if boots else (np.nan, np.nan))
    return {"rho": rho, "ci95": [float(lo), float(hi)], "n": int(len(x))}


def _load_run(paths: RunPaths) -> tuple[dict[str, Any], ScoreConfig, ModelConfig]:
    if not paths.scores.exists() or not paths.report.exists():
        raise ConfigError(f"{paths.root}: no scores.parquet/report.json; run `reasonsift score` first")
    report = read_json(paths.report)
    saved = (yaml.safe_load(paths.config.read_text()) if paths.config.exists() else None) or {}
    if "score" not in saved or "model" not in saved:
        raise ConfigError(f"{paths.config}: no score/model sections; run `reasonsift score` again")
    return report, make_config(ScoreConfig, saved["score"], "score"), make_config(ModelConfig, saved["model"], "model")


def _theta_f(paths: RunPaths, sc: ScoreConfig, mc: ModelConfig, device: torch.device) -> dict[str, torch.Tensor]:
    """θ_f as the scoring run used it: the --direction-model, or the saved short fine-tune."""
    direction = resolve_direction(sc)
    if direction == "isotropic":
        raise ConfigError("this run's loss vectors come from Gaussian checkpoints (score.direction=isotropic): "
                          "Theorem 3.1 is about a fine-tuning direction; score with --direction-model or "
                          "score.direction=finetune")
    if direction == "model":
        target = load_model(sc.direction_model, mc, device)
        return {n: p.detach() for n, p in target.named_parameters()}
    saved = paths.theta_f
    if not saved.exists():
        raise ConfigError(f"{saved} is missing; the scoring run did not finish its direction fine-tune")
    from safetensors.torch import load_file

    return load_file(str(saved), device=str(device))


def _rows(paths: RunPaths) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Tokenized]]:
    """(row_index, loss vectors (n, m), θ₀ window loss (n,), items) of every scored example."""
    scores = pq.read_table(paths.scores, columns=["row_index", "loss_1000", "base_loss_1000"]).to_pandas()
    tokens = {}
    for shard in sorted(paths.token_dir.glob("shard*.parquet")):
        t = pq.read_table(shard, columns=["row_index", "prompt_ids", "response_ids"])
        for r, p, resp in zip(t.column(0).to_pylist(), t.column(1).to_pylist(), t.column(2).to_pylist()):
            tokens[r] = (p, resp)
    missing = [r for r in scores["row_index"] if r not in tokens]
    if missing:
        raise ConfigError(f"{paths.token_dir} lacks row {missing[0]}; the run folder is incomplete")
    vectors = np.stack([np.asarray(v, dtype=float) for v in scores["loss_1000"]])  # (n, m)
    items = [Tokenized(*tokens[r]) for r in scores["row_index"]]
    return scores["row_index"].to_numpy(), vectors, scores["base_loss_1000"].to_numpy(dtype=float), items


def check_gradients(run: str | Path, pairs: int = 32, seed: int = 0, n_boot: int = 1000,
                    progress: bool = True, device: str | None = None) -> dict[str, Any]:
    """Measure Theorem 3.1 on a scored run folder; writes and returns ``RUN/gradient_check.json``.

    Args:
        run: a folder written by ``reasonsift score`` with directional loss vectors.
        pairs: disjoint example pairs to test (2·pairs backward passes).
        seed: draws the pairs and the bootstrap.
        device: where to run the backward passes (default: the scoring run's model.device).
    Returns:
        the report: ``spearman`` of |p_a − p_b| with each distance (ρ, 95% CI, n),
        ``first_step_vs_projection`` (per example), the per-example projections and ‖θ_f − θ₀‖.
    """
    start = time.time()
    paths = RunPaths(Path(run))
    report, sc, mc = _load_run(paths)
    if report.get("loss_vectors_from") != "directional":
        raise ConfigError(f"{paths.root}: loss vectors come from {report.get('loss_vectors_from')!r} checkpoints, "
                          "not directional ones; Theorem 3.1 needs a fine-tuning direction (score with "
                          "--direction-model or score.direction=finetune)")
    if pairs < 3:
        raise ConfigError("check-gradients needs at least 3 pairs for a rank correlation")
    row_index, vectors, base, items = _rows(paths)
    n_pairs = min(pairs, len(items) // 2)
    if n_pairs < 3:
        raise ConfigError(f"{paths.root} has {len(items)} scored examples; at least 6 are needed")
    if n_pairs < pairs:
        logger.warning("only %d examples: testing %d pairs instead of %d", len(items), n_pairs, pairs)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(items), 2 * n_pairs, replace=False)  # (2·pairs,), pair k = chosen[2k], chosen[2k+1]

    dev = resolve_device(device or mc.device)
    model = load_model(mc.model, mc, dev)
    perturber = Perturber(model, sc.seed, [], [], sc.directional_embeddings)
    perturber.set_target(_theta_f(paths, sc, mc, dev))
    e, theta_f_distance = unit_direction(perturber), perturber.direction_norm
    del perturber  # keeps copies of θ₀ and θ_f; only e is needed from here on
    from tqdm.auto import tqdm

    proj, loss0 = np.zeros(len(chosen)), np.zeros(len(chosen))
    for k, i in enumerate(tqdm(chosen, desc="per-example gradients", unit="ex", disable=not progress)):
        it = items[i]
        proj[k], loss0[k] = projected_gradient(model, Tokenized(it.prompt_ids, it.response_ids[: sc.long_tokens]), e)
    a, b = np.arange(0, len(chosen), 2), np.arange(1, len(chosen), 2)
    ia, ib = chosen[a], chosen[b]
    grad_diff = np.abs(proj[a] - proj[b])  # (pairs,) |⟨∇L_a − ∇L_b, e⟩|
    dist = {
        "loss_vector_linf": np.abs(vectors[ia] - vectors[ib]).max(1),
        "loss_vector_l2": np.linalg.norm(vectors[ia] - vectors[ib], axis=1),
        "base_loss_diff": np.abs(base[ia] - base[ib]),  # the baseline: θ₀'s loss alone
    }
    out = {
        "run": str(paths.root), "pairs": int(n_pairs), "seed": seed, "window_tokens": sc.long_tokens,
        "checkpoints": int(vectors.shape[1]), "theta_f_distance": theta_f_distance,
        "spearman": {name: spearman_ci(d, grad_diff, n_boot, seed) for name, d in dist.items()},
        # Per example: does the loss change at the first directional checkpoint track p_i? To first
        # order L(θ_1) − L(θ₀) = λ_1⟨∇L, (1+ξ)⊙e⟩, so this is the loss vectors carrying p at all.
        "first_step_vs_projection": spearman_ci(vectors[chosen, 0] - base[chosen], proj, n_boot, seed),
        # The backward's own loss must equal the scored θ₀ loss: a check that p is the gradient of
        # exactly the quantity the loss vectors hold (same tokens, same window).
        "max_abs_loss_mismatch": float(np.abs(loss0 - base[chosen]).max()),
        "examples": [{"row_index": int(row_index[i]), "projection": float(p)} for i, p in zip(chosen, proj)],
        "wall_time_s": round(time.time() - start, 2),
    }
    write_json_atomic(paths.gradient_check, out)
    return out
