"""The demo's sizes and fine-tuning recipe: one frozen ``DemoSize`` per preset (world v2's demo and
validation, the quick test size, world v1's), and ``sft_recipe``, the ``TrainConfig`` every arm of the
demo and of ``benchmarks/synthetic_validation.py`` trains with. Kept apart from ``demo.py`` so the
numbers a benchmark is run with read in one place.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from reasonsift.config import World
from reasonsift.synth.world import BaseRecipe, BaseRecipeV2


@dataclasses.dataclass(frozen=True)
class DemoSize:
    """Everything the demo's run time depends on (defaults: world v2's demo, docs/synth-world-v2.md)."""

    world: World = "v2"
    pool: int = 1000
    eval_per_cell: int = 2  # held-out problems per (family, steps) cell
    budget_fraction: float = 0.1
    base: BaseRecipe | BaseRecipeV2 = BaseRecipeV2()  # the shipped θ₀: no pretraining in the demo
    theta_f_epochs: float = 6.0  # θ_f = θ₀ fine-tuned on the whole pool (the "full" arm) ... (change 7: 3 → 6)
    subset_epochs: float = 6.0  # ... and every subset: the same epochs, as the paper trains them
    learning_rate: float = 1e-3
    batch_size: int = 16
    group_by_length: bool = True  # SFT batches of similar lengths (v2 traces run 30-1,400 tokens: padding waste)
    max_length: int = 1600  # prompt + response tokens in SFT (the longest v2 traces are ~1,400)
    num_checkpoints: int = 8
    max_new_tokens: int = 1400  # evaluation: the longest clean v2 trace is about 1,400 tokens with its checks
    short_tokens: int = 100  # the difficulty window, in the world's tokens
    long_tokens: int = 1000  # the loss-vector window
    noise: Literal["calibrate", "fixed"] = "calibrate"
    isotropic_std: tuple[float, float] = (2e-3, 8e-3)  # the schedule (fixed), or where calibration starts
    relative_radii: tuple[float, float] | None = (0.25, 2.5)  # radii as multiples of ‖θ_f − θ₀‖ (None: absolute)
    radii: tuple[float, float] = (1.0, 10.0)  # absolute min_radius / final_radius when relative_radii is None
    max_full_tokens: int = 1600  # the full-loss baseline's window (v2: whole traces)
    eval_batch_size: int = 160  # prompts per generate() call: the whole held-out set (128 problems) at once
    critical_alternatives: int = 2  # cft arm: substitutes per position (CFT's 2nd and 3rd token)
    critical_max_tokens: int = 512  # cft arm: longer traces are not tested (the cost grows as length²)


FULL = DemoSize()  # reasonsift demo --world v2
VALIDATION = FULL  # benchmarks/synthetic_validation.py: the demo's recipe, more seeds and methods
QUICK = DemoSize(pool=120, eval_per_cell=1, base=BaseRecipeV2(steps=30, corpus_items=2_000, seq_len=256, copy_steps=10),
                 theta_f_epochs=1.0, subset_epochs=1.0, num_checkpoints=3, max_new_tokens=120, max_length=512,
                 long_tokens=400, critical_alternatives=1, critical_max_tokens=60)
# World v1 (character tokens; issue 5's table in BENCHMARKS.md was measured with these), `--world v1`.
V1_FULL = DemoSize(world="v1", eval_per_cell=5, base=BaseRecipe(), theta_f_epochs=4.0, subset_epochs=40.0,
                   learning_rate=2e-3, max_length=768, max_new_tokens=448, short_tokens=32, long_tokens=512,
                   noise="fixed", isotropic_std=(0.015, 0.12), relative_radii=None, eval_batch_size=64,
                   max_full_tokens=512, group_by_length=False)
V1_VALIDATION = dataclasses.replace(V1_FULL, theta_f_epochs=6.0, subset_epochs=60.0, learning_rate=3e-3, batch_size=32)
V1_QUICK = dataclasses.replace(V1_FULL, pool=200, eval_per_cell=1, base=BaseRecipe(steps=60, corpus_lines=5_000, seq_len=128),
                               theta_f_epochs=1.0, subset_epochs=3.0, learning_rate=3e-3, batch_size=32,
                               num_checkpoints=3, max_new_tokens=100, critical_alternatives=1, critical_max_tokens=60)
PRESETS = {("v2", False): FULL, ("v2", True): QUICK, ("v1", False): V1_FULL, ("v1", True): V1_QUICK}


def sft_recipe(size: DemoSize, epochs: float, seed: int, objective: str = "sft") -> Any:
    """The demo's fine-tuning recipe as a ``TrainConfig`` (every arm, θ_f included, trains with it)."""
    from reasonsift.config import TrainConfig

    return TrainConfig(objective=objective, learning_rate=size.learning_rate, num_train_epochs=epochs,
                       per_device_train_batch_size=size.batch_size, gradient_accumulation_steps=1,
                       max_length=size.max_length, seed=seed, warmup_ratio=0.05, weight_decay=0.0,
                       save_steps=100_000, logging_steps=10, group_by_length=size.group_by_length)
