"""The Python API: one function per CLI subcommand, same arguments, same run-folder outputs.

Each function resolves configs exactly as the CLI does (``config`` is the ``--config`` YAML,
``overrides`` the ``section.key=value`` words, or a mapping of them) and returns the report the CLI
summarises. Import from the package top level::

    import reasonsift
    report = reasonsift.score("pool.jsonl", model="Qwen/Qwen2.5-7B", run="runs/a",
                              direction_model="ckpt/theta_f", overrides={"score.seed": 1})
    sel = reasonsift.select("runs/a", budget=1000)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from reasonsift.config import load_config

Overrides = Iterable[str] | Mapping[str, Any] | None


def _value(value: Any) -> str:
    """A Python value as an override's text: ``True`` -> true, ``None`` -> none, a list joined by commas."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def _words(overrides: Overrides) -> list[str]:
    """``{"score.seed": 1}`` or ``["score.seed=1"]`` -> ``["score.seed=1"]``."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [f"{k}={_value(v)}" for k, v in overrides.items()]
    return list(overrides)


def resolve_configs(sections: list[str], config: str | Path | None, flags: Mapping[str, Any],
             overrides: Overrides) -> dict[str, Any]:
    """Resolve a command's configs: defaults < YAML < its keyword arguments (``flags``, unset ones left
    out) < ``overrides``. The one place where arguments become ``section.key=value`` words."""
    given = {k: v for k, v in flags.items() if v is not None and v is not False and v != ()}
    return load_config(sections, config, _words(given) + _words(overrides))


def _data(fields: Iterable[str], system_prompt: str | None, skip_bad_rows: bool, limit: int | None) -> dict[str, Any]:
    """The ``data.*`` keys of the reading flags every DATA-taking command has."""
    return {"data.fields": tuple(fields), "data.system_prompt": system_prompt, "data.skip_bad_rows": skip_bad_rows,
            "data.limit": limit}


def _scale(backend: str | None, ray_address: str | None, workers: int | None) -> dict[str, Any]:
    """The ``scale.*`` keys: where a stage's work units run (docs/scaling.md)."""
    return {"scale.backend": backend, "scale.ray_address": ray_address, "scale.workers": workers}


def _command(name: str, *args: Any, **kwargs: Any) -> str:
    """What the run folder records as the command of an API call."""
    shown = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items() if v not in (None, False, ())]
    return f"reasonsift.{name}({', '.join(shown)})"


def score(data: str | Path, model: str | None = None, run: str | Path = "", direction_model: str | None = None,
          seed: int | None = None, fields: Iterable[str] = (), system_prompt: str | None = None,
          skip_bad_rows: bool = False, limit: int | None = None, backend: str | None = None,
          ray_address: str | None = None, workers: int | None = None, config: str | Path | None = None,
          overrides: Overrides = None, progress: bool = True, command: str | None = None) -> dict[str, Any] | None:
    """``reasonsift score``: write ``RUN/scores.parquet``; returns ``report.json`` (None off the merging rank).

    ``backend="ray"`` runs the units on a Ray pool (``ray_address``, ``workers``; docs/scaling.md)."""
    from reasonsift.scoring.run_scoring import run_scoring

    configs = resolve_configs(["data", "model", "score", "scale"], config,
                       {"model.model": model, "score.direction_model": direction_model, "score.seed": seed,
                        **_data(fields, system_prompt, skip_bad_rows, limit),
                        **_scale(backend, ray_address, workers)}, overrides)
    return run_scoring(str(data), configs, run, command or _command(
        "score", str(data), model=model, run=str(run), direction_model=direction_model, seed=seed), progress)


def select(run: str | Path, budget: int | None = None, budget_tokens: int | None = None, method: str | None = None,
           seed: int | None = None, config: str | Path | None = None, overrides: Overrides = None,
           progress: bool = True, command: str | None = None) -> dict[str, Any]:
    """``reasonsift select``: write ``RUN/selected.jsonl`` and its card; returns the selection report."""
    from reasonsift.selection.run_selection import run_selection

    configs = resolve_configs(["select"], config, {"select.budget": budget, "select.budget_tokens": budget_tokens,
                                            "select.method": method, "select.seed": seed}, overrides)
    return run_selection(run, configs, command or _command("select", str(run), budget=budget, budget_tokens=budget_tokens,
                                                           method=method, seed=seed), progress)


def curate(data: str | Path, model: str | None = None, run: str | Path = "", direction_model: str | None = None,
           budget: int | None = None, budget_tokens: int | None = None, method: str | None = None,
           seed: int | None = None, fields: Iterable[str] = (), system_prompt: str | None = None,
           skip_bad_rows: bool = False, limit: int | None = None, backend: str | None = None,
           ray_address: str | None = None, workers: int | None = None, config: str | Path | None = None,
           overrides: Overrides = None, progress: bool = True, command: str | None = None) -> dict[str, Any] | None:
    """``reasonsift curate``: score (``seed`` is the scoring seed) then select; returns the selection report with
    the scoring report under ``"scoring"`` (None off the merging rank)."""
    from reasonsift.scoring.run_scoring import run_scoring
    from reasonsift.selection.run_selection import run_selection

    configs = resolve_configs(["data", "model", "score", "select", "scale"], config,
                       {"model.model": model, "score.direction_model": direction_model, "score.seed": seed,
                        "select.budget": budget, "select.budget_tokens": budget_tokens, "select.method": method,
                        **_data(fields, system_prompt, skip_bad_rows, limit),
                        **_scale(backend, ray_address, workers)}, overrides)
    command = command or _command("curate", str(data), model=model, run=str(run), direction_model=direction_model,
                                  budget=budget, budget_tokens=budget_tokens, method=method, seed=seed)
    scoring = run_scoring(str(data), configs, run, command, progress)
    if scoring is None:
        return None
    return {**run_selection(run, configs, command, progress, data=str(data)), "scoring": scoring}


def critical(data: str | Path, model: str | None = None, run: str | Path = "", responses: str | None = None,
             method: str | None = None, engine: str | None = None, fields: Iterable[str] = (),
             system_prompt: str | None = None, skip_bad_rows: bool = False,
             limit: int | None = None, backend: str | None = None, ray_address: str | None = None,
             workers: int | None = None, config: str | Path | None = None, overrides: Overrides = None,
             progress: bool = True, command: str | None = None) -> dict[str, Any] | None:
    """``reasonsift critical``: write ``RUN/critical.jsonl`` (rows + ``critical_mask``); returns its report
    (None off the merging rank)."""
    from reasonsift.critical.run_critical import run_critical

    configs = resolve_configs(["data", "model", "critical", "scale"], config,
                       {"model.model": model, "critical.responses": responses, "critical.method": method,
                        "critical.engine": engine, **_data(fields, system_prompt, skip_bad_rows, limit),
                        **_scale(backend, ray_address, workers)}, overrides)
    return run_critical(str(data), configs, run, command or _command(
        "critical", str(data), model=model, run=str(run), responses=responses, method=method, engine=engine),
        progress)


def show_critical(run: str | Path, n: int, color: bool = False) -> Path:
    """``reasonsift critical --show N``: print N examples of ``RUN/critical.jsonl`` with their critical tokens
    highlighted; returns ``RUN/critical/show.html`` (the same view)."""
    from reasonsift.critical.show import show_critical as show

    return show(run, n, color)


def train(data: str | Path, model: str | None = None, out: str | Path = "", objective: str | None = None,
          lora: bool = False, fields: Iterable[str] = (), system_prompt: str | None = None,
          skip_bad_rows: bool = False, limit: int | None = None, config: str | Path | None = None,
          overrides: Overrides = None, progress: bool = True, command: str | None = None) -> dict[str, Any]:
    """``reasonsift train``: fine-tune MODEL on DATA into OUT; returns the train report."""
    from reasonsift.training.run_training import run_training

    configs = resolve_configs(["data", "model", "train"], config,
                       {"model.model": model, "train.objective": objective, "train.lora": lora,
                        **_data(fields, system_prompt, skip_bad_rows, limit)}, overrides)
    return run_training(str(data), configs, out, command or _command(
        "train", str(data), model=model, out=str(out), objective=objective, lora=lora), progress)


def evaluate(model: str, benchmark: str | Path, out: str | Path | None = None, samples: int | None = None,
             limit: int | None = None, engine: str | None = None, config: str | Path | None = None, overrides: Overrides = None,
             progress: bool = True, command: str | None = None) -> dict[str, Any]:
    """``reasonsift evaluate``: accuracy and pass@k of MODEL on BENCHMARK; returns the metrics."""
    from reasonsift.evaluation.run_evaluation import run_evaluation

    configs = resolve_configs(["model", "evaluate"], config,
                       {"model.model": model, "evaluate.samples": samples, "evaluate.limit": limit,
                        "evaluate.engine": engine}, overrides)
    return run_evaluation(model, str(benchmark), configs, out, command or _command(
        "evaluate", model, benchmark=str(benchmark), out=out, samples=samples, limit=limit, engine=engine), progress)


def demo(out: str | Path = "runs/demo", quick: bool = False, seed: int = 0, progress: bool = True,
         methods: Iterable[str] = ("temp", "random"), world: str = "v1") -> dict[str, Any]:
    """``reasonsift demo``: the whole pipeline on the synthetic world (``world`` v2 or v1); returns its results."""
    from reasonsift.synth.demo import run_demo

    return run_demo(out, quick=quick, seed=seed, progress=progress, methods=tuple(methods), world=world)


def check_gradients(run: str | Path, pairs: int = 32, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """``reasonsift check-gradients``: Theorem 3.1 on a scored run; returns ``RUN/gradient_check.json``."""
    from reasonsift.scoring.gradients import check_gradients as run_check

    return run_check(run, pairs=pairs, seed=seed, progress=progress)
