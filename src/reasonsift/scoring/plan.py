"""What a scoring run will do, decided from its config alone: the direction source and the checkpoints.

Checked and planned before any data or model is read, so a config mistake fails in a second, and
benchmarks can count a run's tokens without running it.
"""

from __future__ import annotations

from reasonsift.config import ConfigError, ScoreConfig


def resolve_direction(sc: ScoreConfig) -> str:
    """Where θ_f − θ₀ comes from: ``auto`` is ``model`` with --direction-model, else ``isotropic``."""
    if sc.direction == "auto":
        return "model" if sc.direction_model else "isotropic"
    return sc.direction


def check_score_config(sc: ScoreConfig) -> None:
    """Config errors that need no data or model, raised before any work starts."""
    if sc.short_tokens > sc.long_tokens:
        raise ConfigError("score.short_tokens must not exceed score.long_tokens")
    if sc.direction == "model" and not sc.direction_model:
        raise ConfigError("score.direction=model needs --direction-model PATH (θ_f); or set "
                          "score.direction=finetune (short SFT on a sample) or score.direction=isotropic")
    if sc.direction in ("finetune", "isotropic") and sc.direction_model:
        raise ConfigError(f"--direction-model is given but score.direction={sc.direction} would ignore it; "
                          "drop one of them")


def checkpoint_plan(sc: ScoreConfig) -> list[tuple[str, int, int]]:
    """(stage, checkpoint, response window) in loop order."""
    direction = resolve_direction(sc)
    iso_window = sc.long_tokens if direction == "isotropic" else sc.short_tokens
    units = [("base", 0, sc.long_tokens)]
    units += [("isotropic", k, iso_window) for k in range(1, sc.num_isotropic + 1)]
    if direction != "isotropic":
        units += [("directional", j, sc.long_tokens) for j in range(1, sc.num_directional + 1)]
    if sc.full_loss:
        units.append(("full", 0, sc.max_full_tokens))
    return units
