"""Fit the Gaussian noise to the model: find the scale at which θ_rnd's loss ratio lands in [2, 3].

The paper's schedule (per-coordinate std 2e-3 → 8e-3, temp-method.md §1.2) was set for 7B models,
and θ_rnd must be the checkpoint whose dataset-mean 100-token loss is 2–3x θ₀'s. On other models the
fixed schedule can miss that band entirely: on SmolLM2-135M its 8 ratios were 1.005 … 1.059 and on the
synthetic θ₀ 0.995 … 0.999, so "difficulty" was just θ₀'s loss again.

Calibration keeps the schedule's shape and scales it: every step std s_i becomes c·s_i, so checkpoint
k is exactly θ₀ + c·(the fixed schedule's perturbation k) — the same seeded noise, stretched. A search
over c (doubling or halving to bracket, then bisection in log space) on a seeded sample of the pool
makes the *target checkpoint* (the middle one) hit the middle of the band on that sample; its
neighbours then bracket it on the full pool, where ``choose_theta_rnd`` picks as before.

Every trial applies the real checkpoint through ``Perturber`` with the same step list the run will use,
so the chosen scale reproduces bit-identical weights; the search and its result are recorded.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch

from reasonsift.scoring.perturb import Perturber, isotropic_steps
from reasonsift.data.render import Tokenized
from reasonsift.scoring.scorer import score_items

logger = logging.getLogger(__name__)

GROWTH = 4.0  # bracketing factor per trial; the ratio spans ~1 → ≫3 over two or three of these


def scaled_steps(scale: float, std_start: float, std_end: float, n: int) -> list[float]:
    """The fixed schedule's step stds, each multiplied by ``scale`` (variances still add)."""
    return isotropic_steps(scale * std_start, scale * std_end, n)


def cumulative_stds(steps: list[float]) -> list[float]:
    """Per-coordinate std of each nested checkpoint: sqrt of the running sum of step variances."""
    return [math.sqrt(sum(s * s for s in steps[: k + 1])) for k in range(len(steps))]


def target_checkpoint(n: int) -> int:
    """The checkpoint calibrated to the band: the middle one, so checkpoints lie on both sides of it."""
    return max(1, (n + 1) // 2)


def calibration_sample(n_examples: int, size: int, seed: int) -> list[int]:
    """Seeded, sorted indices of the calibration sample (the whole pool when it is smaller)."""
    if n_examples <= size:
        return list(range(n_examples))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n_examples, size, replace=False))


def _mean_loss(model: torch.nn.Module, items: list[Tokenized], sc: Any) -> float:
    """Dataset-mean of the per-example mean NLL (what ``choose_theta_rnd`` compares)."""
    nll = score_items(model, items, sc.batch_tokens, sc.max_batch_examples, sc.lm_head_chunk)
    return float(np.mean([x.mean() for x in nll]))


def calibrate_noise(perturber: Perturber, items: list[Tokenized], sc: Any, progress: bool = False) -> dict[str, Any]:
    """Search the scale c of the Gaussian schedule so the target checkpoint's ratio is near the band's middle.

    ``items``: the calibration sample, cut to the short window. ``sc``: the ScoreConfig (seed, schedule
    shape, band, search budget). Leaves θ₀ in the model. Returns the record written to report.json:
    ``scale``, ``steps``, ``stds`` (cumulative, per checkpoint), ``target_checkpoint``, ``ratio`` on the
    sample, ``in_range``, and ``search`` (every trial's scale, std and ratio, in order).
    """
    low, high, n = sc.target_ratio_low, sc.target_ratio_high, sc.num_isotropic
    target = (low + high) / 2
    tight = (target - (high - low) / 4, target + (high - low) / 4)  # stop early only near the middle
    k = target_checkpoint(n)
    model = perturber.model
    perturber.restore()
    base = _mean_loss(model, items, sc)
    if not base > 0:
        raise ValueError("calibration sample has zero loss at θ₀; cannot calibrate the noise")
    search: list[dict[str, float]] = []

    def ratio_at(scale: float) -> float:
        perturber.iso_steps = scaled_steps(scale, sc.isotropic_std_start, sc.isotropic_std_end, n)
        perturber.apply("isotropic", k)
        r = _mean_loss(model, items, sc) / base
        r = r if math.isfinite(r) else float("inf")  # an exploded loss is simply "too much noise"
        search.append({"scale": scale, "std": cumulative_stds(perturber.iso_steps)[k - 1], "ratio": r})
        if progress:
            logger.info("calibration: scale %.4g (std %.3g) -> ratio %.3f", scale, search[-1]["std"], r)
        return r

    lo_scale, hi_scale = 0.0, math.inf  # ratio(lo) < target <= ratio(hi)
    scale = 1.0
    for _ in range(sc.calibration_trials):
        r = ratio_at(scale)
        if tight[0] <= r <= tight[1]:
            break
        if r < target:
            lo_scale = scale
        else:
            hi_scale = scale
        if math.isinf(hi_scale):
            scale = scale * GROWTH
        elif lo_scale == 0.0:
            scale = scale / GROWTH
        else:
            scale = math.sqrt(lo_scale * hi_scale)  # bisection in log space
    perturber.restore()
    inside = [t for t in search if low <= t["ratio"] <= high]
    best = min(inside or search, key=lambda t: (abs(t["ratio"] - target), t["scale"]))
    steps = scaled_steps(best["scale"], sc.isotropic_std_start, sc.isotropic_std_end, n)
    perturber.iso_steps = steps
    if not inside:
        logger.warning("noise calibration found no scale with a loss ratio in [%g, %g] in %d trials "
                       "(closest %.3g at std %.3g); raise score.calibration_trials or set the schedule by hand "
                       "(score.noise=fixed)", low, high, len(search), best["ratio"], best["std"])
    return {"mode": "calibrate", "scale": best["scale"], "steps": steps, "stds": cumulative_stds(steps),
            "target_checkpoint": k, "ratio": best["ratio"], "in_range": bool(inside),
            "target_range": [low, high], "sample_examples": len(items), "sample_base_loss": base,
            "search": search}


def fixed_schedule(sc: Any) -> dict[str, Any]:
    """The record for the paper's fixed schedule (``score.noise=fixed``): scale 1, no search."""
    steps = isotropic_steps(sc.isotropic_std_start, sc.isotropic_std_end, sc.num_isotropic)
    return {"mode": "fixed", "scale": 1.0, "steps": steps, "stds": cumulative_stds(steps)}
