"""The ``reasonsift`` command line: one subcommand per pipeline stage.

    reasonsift score DATA --model M --run RUN [--direction-model F] [--seed S] [key=value ...]
                     [--backend ray [--ray-address auto|HOST:PORT] [--workers N]]   (docs/scaling.md)
    reasonsift select RUN --budget B [--method temp] [--seed S]
    reasonsift curate DATA --model M --budget B --run RUN          (score + select)
    reasonsift critical DATA --model M --run RUN [--responses greedy|dataset]   (CFT masks)
    reasonsift train DATA --model M --out DIR --objective sft|cft|dft|prefix
    reasonsift evaluate --model DIR --benchmark FILE [--samples k]
    reasonsift demo [--quick] [--methods temp random cft ...]        (the synthetic world, end to end)

Every subcommand takes ``--config FILE.yaml`` and trailing ``section.key=value`` overrides; the
resolved config is written next to the outputs. Errors are one line on stderr and exit code 2;
Ctrl-C exits 130 and the same command resumes.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

from reasonsift.config import BACKENDS, OBJECTIVES, RESPONSES, SELECT_METHODS, ConfigError, load_config

logger = logging.getLogger("reasonsift")


def _split_overrides(values: list[str]) -> tuple[list[str], list[str]]:
    """Separate ``key=value`` overrides from plain positional arguments."""
    plain, overrides = [], []
    for v in values:
        is_override = "=" in v and not Path(v).exists() and not v.startswith(("/", "."))
        (overrides if is_override else plain).append(v)
    return plain, overrides


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file with data:/model:/score:/select:/train:/evaluate: sections")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    p.add_argument("args", nargs="*", help="positional arguments, then section.key=value overrides")


def _data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--field", action="append", default=[], metavar="NAME=COL",
                   help="map a column: prompt=question, response=output, source=type, ...")
    p.add_argument("--system-prompt", help="system message before every prompt")
    p.add_argument("--skip-bad-rows", action="store_true", help="quarantine bad rows to RUN/rejected.jsonl")
    p.add_argument("--limit", type=int, help="read only the first N rows")


def _score_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="θ₀: HF hub id or local folder")
    # --run-dir: the same flag under a name torchrun's own parser does not take for its --run-path
    p.add_argument("--run", "--run-dir", dest="run", required=True, help="run folder (created; a rerun resumes)")
    p.add_argument("--direction-model", help="θ_f: the fine-tuned model that defines the direction")
    p.add_argument("--seed", type=int, help="perturbation seed (score.seed)")


def _scale_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=BACKENDS,
                   help="where the work units run: local (this process / torchrun ranks; default) or ray")
    p.add_argument("--ray-address", help="Ray cluster to join: auto (the running one) or HOST:PORT "
                   "(default: RAY_ADDRESS, else a new local Ray)")
    p.add_argument("--workers", type=int, help="Ray workers (default: one per GPU of the cluster)")


def _scale_overrides(args: argparse.Namespace) -> list[str]:
    out = [f"scale.backend={args.backend}"] if args.backend else []
    out += [f"scale.ray_address={args.ray_address}"] if args.ray_address else []
    out += [f"scale.workers={args.workers}"] if args.workers is not None else []
    return out


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of all subcommands."""
    parser = argparse.ArgumentParser(prog="reasonsift", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("score", help="early-token losses under seeded weight perturbations")
    _score_flags(p)
    _data_flags(p)
    _scale_flags(p)
    _common(p)
    p = sub.add_parser("select", help="choose a subset from RUN/scores.parquet")
    p.add_argument("--budget", type=int, help="number of examples")
    p.add_argument("--budget-tokens", type=int, help="total response tokens")
    p.add_argument("--method", choices=SELECT_METHODS, help="selection method (default temp)")
    p.add_argument("--seed", type=int, help="selection seed (select.seed)")
    _common(p)
    p = sub.add_parser("curate", help="score + select in one command")
    _score_flags(p)
    _data_flags(p)
    _scale_flags(p)
    p.add_argument("--budget", type=int, help="number of examples")
    p.add_argument("--budget-tokens", type=int, help="total response tokens")
    p.add_argument("--method", choices=SELECT_METHODS, help="selection method (default temp)")
    _common(p)
    p = sub.add_parser("critical", help="critical tokens by counterfactual substitution (CFT masks)")
    p.add_argument("--model", help="the model to be fine-tuned: HF hub id or local folder")
    p.add_argument("--run", "--run-dir", dest="run", required=True,
                   help="run folder (writes RUN/critical.jsonl; a rerun resumes)")
    p.add_argument("--responses", choices=RESPONSES,
                   help="greedy (default): the model's own verified-correct solutions; dataset: the rows' own")
    _data_flags(p)
    _scale_flags(p)
    _common(p)
    p = sub.add_parser("train", help="fine-tune on DATA with a token-level objective (sft, cft, dft, prefix)")
    p.add_argument("--model", help="base model: HF hub id or local folder")
    p.add_argument("--out", required=True, help="output folder (a rerun resumes from its checkpoints)")
    p.add_argument("--objective", choices=OBJECTIVES, help="training objective (train.objective)")
    p.add_argument("--lora", action="store_true", help="train a LoRA adapter and save the merged model")
    _data_flags(p)
    _common(p)
    p = sub.add_parser("evaluate", help="accuracy and pass@k of a model on a benchmark file")
    p.add_argument("--model", required=True, help="model folder or hub id")
    p.add_argument("--benchmark", required=True, help=".jsonl/.json/.parquet/.tsv with a question and a gold answer")
    p.add_argument("--samples", type=int, help="completions per item (needs evaluate.temperature > 0 when > 1)")
    p.add_argument("--out", help="output folder (default MODEL/eval/<folder>-<file stem> of the benchmark)")
    p.add_argument("--limit", type=int, help="evaluate only the first N items")
    _common(p)
    p = sub.add_parser("demo", help="the whole pipeline on the embedded synthetic reasoning world")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--quick", action="store_true", help="a reduced size (about a minute or two; used by CI)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", nargs="+", default=["temp", "random"], metavar="M",
                   help="what to compare: selection methods (temp random s2l ...), full (the whole pool), "
                        "cft (the random subset trained on its critical tokens); default: temp random")
    _common(p)
    return parser


def _data_overrides(args: argparse.Namespace) -> list[str]:
    out = []
    if args.field:
        out.append("data.fields=" + ",".join(args.field))
    if args.system_prompt is not None:
        out.append(f"data.system_prompt={args.system_prompt}")  # text fields keep the characters typed
    if args.skip_bad_rows:
        out.append("data.skip_bad_rows=true")
    if args.limit is not None:
        out.append(f"data.limit={args.limit}")
    return out


def _score_overrides(args: argparse.Namespace) -> list[str]:
    out = []
    if args.model:
        out.append(f"model.model={args.model}")
    if args.direction_model:
        out.append(f"score.direction_model={args.direction_model}")
    if args.seed is not None:
        out.append(f"score.seed={args.seed}")
    return out


def _select_overrides(args: argparse.Namespace) -> list[str]:
    from reasonsift.api import select_flags

    out = select_flags(getattr(args, "budget", None), getattr(args, "budget_tokens", None),
                       getattr(args, "method", None))
    if getattr(args, "seed", None) is not None and args.command == "select":
        out.append(f"select.seed={args.seed}")
    return out


def _one(plain: list[str], what: str) -> str:
    if len(plain) != 1:
        raise ConfigError(f"expected exactly one {what}, got {len(plain)}: {' '.join(plain) or '(none)'}")
    return plain[0]


def cmd_score(args: argparse.Namespace, plain: list[str], overrides: list[str]) -> int:
    from reasonsift.scoring.run_scoring import run_scoring

    data = _one(plain, "DATA path or hub id")
    configs = load_config(["data", "model", "score", "scale"], args.config,
                          _data_overrides(args) + _score_overrides(args) + _scale_overrides(args) + overrides)
    report = run_scoring(data, configs, args.run, args.command_line, progress=not args.quiet)
    if report:
        t = report["tokens"]
        print(f"scored {report['counts']['examples']} examples ({report['counts']['rejected']} rejected) "
              f"-> {Path(args.run) / 'scores.parquet'}; {t['scored']:,} tokens scored vs "
              f"{t['full_trace_all_checkpoints']:,} for full traces "
              f"({100 * t['savings_vs_full_trace_all_checkpoints']:.1f}% saved)")
    return 0


def cmd_select(args: argparse.Namespace, plain: list[str], overrides: list[str]) -> int:
    from reasonsift.selection.run_selection import run_selection

    run = _one(plain, "RUN folder")
    configs = load_config(["select"], args.config, _select_overrides(args) + overrides)
    report = run_selection(run, configs, args.command_line, progress=not args.quiet)
    print(f"selected {report['n_selected']} examples ({report['selected_tokens']:,} response tokens) "
          f"with {report['method']} -> {Path(run) / 'selected.jsonl'}")
    return 0


def cmd_curate(args: argparse.Namespace, plain: list[str], overrides: list[str]) -> int:
    from reasonsift.scoring.run_scoring import run_scoring
    from reasonsift.selection.run_selection import run_selection

    data = _one(plain, "DATA path or hub id")
    configs = load_config(["data", "model", "score", "select", "scale"], args.config,
                          _data_overrides(args) + _score_overrides(args) + _select_overrides(args)
                          + _scale_overrides(args) + overrides)
    report = run_scoring(data, configs, args.run, args.command_line, progress=not args.quiet)
    if report is None:
        return 0  # another rank merges and selects
    sel = run_selection(args.run, configs, args.command_line, progress=not args.quiet, data=data)
    print(f"selected {sel['n_selected']} of {report['counts']['examples']} examples "
          f"({sel['selected_tokens']:,} response tokens) -> {Path(args.run) / 'selected.jsonl'}")
    return 0


def cmd_critical(args: argparse.Namespace, plain: list[str], overrides: list[str]) -> int:
    from reasonsift.critical.run_critical import run_critical

    data = _one(plain, "DATA path or hub id")
    flags = [f"model.model={args.model}"] if args.model else []
    flags += [f"critical.responses={args.responses}"] if args.responses else []
    configs = load_config(["data", "model", "critical", "scale"], args.config,
                          _data_overrides(args) + flags + _scale_overrides(args) + overrides)
    r = run_critical(data, configs, args.run, args.command_line, progress=not args.quiet)
    if r is None:
        return 0  # another rank merges
    print(f"kept {r['counts']['kept']} of {r['counts']['rows']} rows; {r['critical_tokens']:,} of "
          f"{r['positions_tested']:,} tokens critical ({100 * r['critical_share']:.1f}%) after {r['rollouts']:,} "
          f"rollouts -> {r['output']}")
    return 0


def cmd_evaluate(args: argparse.Namespace, plain: list[str], overrides: list[str]) -> int:
    from reasonsift.evaluation.run_evaluation import run_evaluation

    if plain:
        raise ConfigError(f"unexpected arguments: {' '.join(plain)}")
    flags = [f"model.model={args.model}"]
    flags += [f"evaluate.samples={args.samples}"] if args.samples is not None else []
    flags += [f"evaluate.limit={args.limit}"] if args.limit is not None else []
    configs = load_config(["model", "evaluate"], args.config, flags + overrides)
    m = run_evaluation(args.model, args.benchmark, configs, args.out, args.command_line, progress=not args.quiet)
    ks = " ".join(f"{k} {v:.3f}" for k, v in m.items() if k.startswith("pass@"))
    print(f"{m['benchmark']}: accuracy {m['accuracy']:.3f} over {m['n_items']} items; {ks}")
    return 0


def cmd_demo(args: argparse.Namespace, plain: list[str], overrides: list[str]) -> int:
    from reasonsift.synth.demo import run_demo

    if plain or overrides:
        raise ConfigError("demo takes no positional arguments or overrides (use --quick, --seed, --out)")
    run_demo(args.out, quick=args.quick, seed=args.seed, progress=not args.quiet, methods=tuple(args.methods))
    return 0


def cmd_train(args: argparse.Namespace, plain: list[str], overrides: list[str]) -> int:
    from reasonsift.training.run_training import run_training

    data = _one(plain, "DATA path or hub id")
    flags = [f"model.model={args.model}"] if args.model else []
    flags += [f"train.objective={args.objective}"] if args.objective else []
    flags += ["train.lora=true"] if args.lora else []
    configs = load_config(["data", "model", "train"], args.config, _data_overrides(args) + flags + overrides)
    report = run_training(data, configs, args.out, args.command_line, progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under accelerate/torchrun only the first process reports
    final = report["final_loss"]
    print(f"trained {report['objective']} for {report['steps']} steps on {report['dataset']['examples']} examples "
          f"({100 * report['dataset']['loss_token_fraction']:.1f}% of response tokens carry loss); final loss "
          f"{'n/a' if final is None else f'{final:.4f}'} -> {args.out}")
    return 0


COMMANDS = {"score": cmd_score, "select": cmd_select, "curate": cmd_curate, "critical": cmd_critical,
            "train": cmd_train, "evaluate": cmd_evaluate, "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``reasonsift`` console script."""
    parser = build_parser()
    # Positional arguments may come after options (score DATA --model M key=value): collect the
    # leftovers argparse did not place, but still reject unknown --options.
    args, extra = parser.parse_known_args(argv)
    unknown = [e for e in extra if e.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.args = list(args.args) + extra
    # what the run folders record as the command: the argv actually parsed (main() may be called from Python)
    args.command_line = shlex.join(["reasonsift", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    plain, overrides = _split_overrides(args.args)
    from reasonsift.data.records import DataError
    from reasonsift.models import ModelLoadError

    if getattr(args, "quiet", False):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    handler = COMMANDS[args.command]
    try:
        return handler(args, plain, overrides)
    except (ConfigError, DataError, ModelLoadError, FileNotFoundError, ValueError, ImportError) as e:
        print(f"reasonsift {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nreasonsift {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - anything else (OSError, RuntimeError, CUDA OOM ...): one line
        if args.debug:
            raise
        kind = type(e).__name__
        print(f"reasonsift {args.command}: error: {kind}: {e} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
