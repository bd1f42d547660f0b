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


def _words(overrides: Iterable[str] | Mapping[str, Any] | None) -> list[str]:
    """``{"score.seed": 1}`` or ``["score.seed=1"]`` -> ``["score.seed=1"]``."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [f"{k}={'none' if v is None else str(v).lower() if isinstance(v, bool) else v}"
                for k, v in overrides.items()]
    return list(overrides)


def select_flags(budget: int | None, budget_tokens: int | None, method: str | None) -> list[str]:
    """The ``select.*`` overrides of ``--budget``/``--budget-tokens``/``--method`` (shared by the CLI and the API)."""
    return [f"select.{k}={v}" for k, v in (("budget", budget), ("budget_tokens", budget_tokens),
                                           ("method", method)) if v is not None]


def _command(name: str, *args: Any, **kwargs: Any) -> str:
    """What the run folder records as the command of an API call."""
    shown = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items() if v is not None]
    return f"reasonsift.{name}({', '.join(shown)})"


def score(data: str | Path, model: str, run: str | Path, direction_model: str | None = None,
          config: str | Path | None = None, overrides: Iterable[str] | Mapping[str, Any] | None = None,
          progress: bool = True) -> dict[str, Any] | None:
    """``reasonsift score``: write ``RUN/scores.parquet``; returns ``report.json`` (None off rank 0)."""
    from reasonsift.scoring.run_scoring import run_scoring

    flags = [f"model.model={model}"] + ([f"score.direction_model={direction_model}"] if direction_model else [])
    configs = load_config(["data", "model", "score"], config, flags + _words(overrides))
    return run_scoring(str(data), configs, run, _command("score", str(data), model=model, run=str(run),
                                                         direction_model=direction_model), progress)


def select(run: str | Path, budget: int | None = None, budget_tokens: int | None = None, method: str | None = None,
           config: str | Path | None = None, overrides: Iterable[str] | Mapping[str, Any] | None = None,
           progress: bool = True) -> dict[str, Any]:
    """``reasonsift select``: write ``RUN/selected.jsonl`` and its card; returns the selection report."""
    from reasonsift.selection.run_selection import run_selection

    configs = load_config(["select"], config, select_flags(budget, budget_tokens, method) + _words(overrides))
    return run_selection(run, configs, _command("select", str(run), budget=budget, budget_tokens=budget_tokens,
                                                method=method), progress)


def curate(data: str | Path, model: str, run: str | Path, direction_model: str | None = None,
           budget: int | None = None, budget_tokens: int | None = None, method: str | None = None,
           config: str | Path | None = None, overrides: Iterable[str] | Mapping[str, Any] | None = None,
           progress: bool = True) -> dict[str, Any] | None:
    """``reasonsift curate``: score then select; returns the selection report (None off rank 0)."""
    from reasonsift.scoring.run_scoring import run_scoring
    from reasonsift.selection.run_selection import run_selection

    flags = [f"model.model={model}"] + ([f"score.direction_model={direction_model}"] if direction_model else [])
    flags += select_flags(budget, budget_tokens, method)
    configs = load_config(["data", "model", "score", "select"], config, flags + _words(overrides))
    command = _command("curate", str(data), model=model, run=str(run), direction_model=direction_model,
                       budget=budget, budget_tokens=budget_tokens, method=method)
    if run_scoring(str(data), configs, run, command, progress) is None:
        return None
    return run_selection(run, configs, command, progress, data=str(data))


def critical(data: str | Path, model: str, run: str | Path, responses: str | None = None,
             config: str | Path | None = None, overrides: Iterable[str] | Mapping[str, Any] | None = None,
             progress: bool = True) -> dict[str, Any] | None:
    """``reasonsift critical``: write ``RUN/critical.jsonl`` (rows + ``critical_mask``); returns its report
    (None off the merging rank)."""
    from reasonsift.critical.run_critical import run_critical

    flags = [f"model.model={model}"] + ([f"critical.responses={responses}"] if responses else [])
    configs = load_config(["data", "model", "critical"], config, flags + _words(overrides))
    return run_critical(str(data), configs, run, _command("critical", str(data), model=model, run=str(run),
                                                          responses=responses), progress)


def train(data: str | Path, model: str, out: str | Path, objective: str | None = None,
          config: str | Path | None = None, overrides: Iterable[str] | Mapping[str, Any] | None = None,
          progress: bool = True) -> dict[str, Any]:
    """``reasonsift train``: fine-tune MODEL on DATA into OUT; returns the train report."""
    from reasonsift.training.run_training import run_training

    flags = [f"model.model={model}"] + ([f"train.objective={objective}"] if objective else [])
    configs = load_config(["data", "model", "train"], config, flags + _words(overrides))
    return run_training(str(data), configs, out, _command("train", str(data), model=model, out=str(out),
                                                          objective=objective), progress)


def evaluate(model: str, benchmark: str | Path, out: str | Path | None = None, config: str | Path | None = None,
             overrides: Iterable[str] | Mapping[str, Any] | None = None, progress: bool = True) -> dict[str, Any]:
    """``reasonsift evaluate``: accuracy and pass@k of MODEL on BENCHMARK; returns the metrics."""
    from reasonsift.evaluation.run_evaluation import run_evaluation

    configs = load_config(["model", "evaluate"], config, [f"model.model={model}"] + _words(overrides))
    return run_evaluation(model, str(benchmark), configs, out,
                          _command("evaluate", model, benchmark=str(benchmark), out=out), progress)


def demo(out: str | Path = "runs/demo", quick: bool = False, seed: int = 0, progress: bool = True,
         methods: Iterable[str] = ("temp", "random")) -> dict[str, Any]:
    """``reasonsift demo``: the whole pipeline on the synthetic world; returns its results."""
    from reasonsift.synth.demo import run_demo

    return run_demo(out, quick=quick, seed=seed, progress=progress, methods=tuple(methods))


def check_gradients(run: str | Path, pairs: int = 32, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """``reasonsift check-gradients``: Theorem 3.1 on a scored run; returns ``RUN/gradient_check.json``."""
    from reasonsift.scoring.gradients import check_gradients as run_check

    return run_check(run, pairs=pairs, seed=seed, progress=progress)
