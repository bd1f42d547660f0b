"""The ``reasonsift`` command line: one subcommand per pipeline stage.

    reasonsift score DATA --model M --run RUN [--direction-model F] [--seed S] [key=value ...]
                     [--backend ray [--ray-address auto|HOST:PORT] [--workers N]]   (docs/scaling.md)
    reasonsift select RUN --budget B [--method temp] [--seed S]
    reasonsift curate DATA --model M --budget B --run RUN          (score + select)
    reasonsift critical DATA --model M --run RUN [--responses greedy|dataset] [--engine hf|vllm]   (CFT masks)
    reasonsift critical --run RUN --show N                        (traces with their critical tokens)
    reasonsift train DATA --model M --out DIR --objective sft|cft|dft|prefix
    reasonsift evaluate --model DIR --benchmark FILE [--samples k] [--engine hf|vllm]
    reasonsift demo [--quick] [--methods temp random cft ...]        (the synthetic world, end to end)
    reasonsift config [SECTION]          (every section.key=value option with its default and meaning)
    reasonsift check-gradients RUN [--pairs N]   (Theorem 3.1 on a scored run: loss vectors vs gradients)

Every subcommand takes ``--config FILE.yaml`` and trailing ``section.key=value`` overrides; the
resolved config is written next to the outputs. Errors are one line on stderr and exit code 2;
Ctrl-C exits 130 and the same command resumes.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from reasonsift import api
from reasonsift.config import (BACKENDS, CONFIG_SECTIONS, CRITICAL_METHODS, ENGINES, OBJECTIVES, RESPONSES,
                               SELECT_METHODS, WORLDS, ConfigError)

logger = logging.getLogger("reasonsift")


# An override is ``section.key=value`` (or a plain ``key=value`` alias, see reasonsift.config); a word
# whose part before "=" is anything else ("data/a=b.jsonl", "./x=1") is a positional path.
_OVERRIDE_RE = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?=.*", re.DOTALL)


def split_overrides(values: list[str]) -> tuple[list[str], list[str]]:
    """Separate ``key=value`` overrides from plain positional arguments, by their form alone."""
    plain, overrides = [], []
    for v in values:
        (overrides if _OVERRIDE_RE.fullmatch(v) else plain).append(v)
    return plain, overrides


# What each subcommand's usage line shows (argparse would print "[args ...]" and hide what is required).
USAGE = {
    "score": "reasonsift score DATA --model MODEL --run RUN [options] [section.key=value ...]",
    "select": "reasonsift select RUN (--budget N | --budget-tokens T) [--method M] [options] [section.key=value ...]",
    "curate": "reasonsift curate DATA --model MODEL --run RUN (--budget N | --budget-tokens T) [options] "
              "[section.key=value ...]",
    "critical": "reasonsift critical DATA --model MODEL --run RUN [options] [section.key=value ...]",
    "train": "reasonsift train DATA --model MODEL --out DIR [--objective sft|cft|dft|prefix] [options] "
             "[section.key=value ...]",
    "evaluate": "reasonsift evaluate --model MODEL --benchmark FILE [options] [section.key=value ...]",
    "demo": "reasonsift demo [--quick] [--world v1|v2] [--out DIR] [--methods M ...]",
}
POSITIONAL = {"score": "DATA", "select": "RUN", "curate": "DATA", "critical": "DATA", "train": "DATA"}
DATA_HELP = "the pool: .jsonl(.gz), .json, .parquet, a save_to_disk folder, or a hub dataset id"
OVERRIDES_HELP = "then section.key=value overrides; `reasonsift config` lists every key"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file with data:/model:/score:/select:/train:/evaluate: sections")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    name = p.prog.split()[-1]
    what = POSITIONAL.get(name)
    if what == "RUN":
        help_ = f"RUN: the run folder `reasonsift score` wrote; {OVERRIDES_HELP}"
    elif what == "DATA":
        help_ = f"DATA: {DATA_HELP}; {OVERRIDES_HELP}"
    else:
        help_ = "section.key=value overrides; `reasonsift config` lists every key"
    p.add_argument("args", nargs="*", metavar=f"{what} [key=value]" if what else "key=value", help=help_)


def _data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--field", action="append", default=[], metavar="NAME=COL",
                   help="map a column: prompt=question, response=output, source=type, ...")
    p.add_argument("--system-prompt", help="system message before every prompt")
    p.add_argument("--skip-bad-rows", action="store_true", help="quarantine bad rows to RUN/rejected.jsonl")
    p.add_argument("--limit", type=int, help="read only the first N rows")


def _score_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="required: θ₀, a local model folder or HF hub id (or model.model in --config)")
    # --run-dir: the same flag under a name torchrun's own parser does not take for its --run-path
    p.add_argument("--run", "--run-dir", dest="run", required=True, help="run folder (created; a rerun resumes)")
    p.add_argument("--direction-model", help="θ_f: the fine-tuned model that defines the direction")
    p.add_argument("--seed", type=int, help="perturbation seed (score.seed)")


def _select_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget", type=int, help="number of examples")
    p.add_argument("--budget-tokens", type=int, help="total response tokens")
    p.add_argument("--method", choices=SELECT_METHODS, help="selection method (default temp)")


def _scale_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=BACKENDS,
                   help="where the work units run: local (this process / torchrun ranks; default) or ray")
    p.add_argument("--ray-address", help="Ray cluster to join: auto (the running one) or HOST:PORT "
                   "(default: RAY_ADDRESS, else a new local Ray)")
    p.add_argument("--workers", type=int, help="Ray workers (default: one per GPU of the cluster)")


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of all subcommands."""
    parser = argparse.ArgumentParser(
        prog="reasonsift", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="TEMP data curation and token-level objectives for reasoning SFT.\n\n"
                    + "\n".join("  " + u for u in USAGE.values())
                    + "\n  reasonsift config [SECTION]   (every section.key=value option, its default and meaning)",
        epilog="Every subcommand takes --config FILE.yaml and trailing section.key=value overrides; the resolved "
               "config is written next to the outputs. `reasonsift SUBCOMMAND --help` for its options.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    p = sub.add_parser("score", usage=USAGE["score"], help="early-token losses under seeded weight perturbations")
    _score_flags(p)
    _data_flags(p)
    _scale_flags(p)
    _common(p)
    p = sub.add_parser("select", usage=USAGE["select"], help="choose a subset from RUN/scores.parquet")
    _select_flags(p)
    p.add_argument("--seed", type=int, help="selection seed (select.seed)")
    _common(p)
    p = sub.add_parser("curate", usage=USAGE["curate"], help="score + select in one command")
    _score_flags(p)
    _data_flags(p)
    _scale_flags(p)
    _select_flags(p)
    _common(p)
    p = sub.add_parser("critical", usage=USAGE["critical"],
                       help="critical tokens by counterfactual substitution (CFT masks)")
    p.add_argument("--model", help="required: the model to be fine-tuned, a local folder or HF hub id "
                                   "(or model.model in --config)")
    p.add_argument("--run", "--run-dir", dest="run", required=True,
                   help="run folder (writes RUN/critical.jsonl; a rerun resumes)")
    p.add_argument("--responses", choices=RESPONSES,
                   help="greedy (default): the model's own verified-correct solutions; dataset: the rows' own")
    p.add_argument("--method", choices=CRITICAL_METHODS,
                   help="counterfactual (default): CFT's rollouts; numbers: digit tokens, a near-free approximation")
    p.add_argument("--engine", choices=ENGINES, help="what generates: hf (default) or vllm (pip install "
                                                     "'reasonsift[vllm]')")
    p.add_argument("--show", type=int, metavar="N", help="print N examples of RUN/critical.jsonl with their critical "
                   "tokens highlighted and write RUN/critical/show.html (DATA optional: without it, nothing is run)")
    _data_flags(p)
    _scale_flags(p)
    _common(p)
    p = sub.add_parser("train", usage=USAGE["train"],
                       help="fine-tune on DATA with a token-level objective (sft, cft, dft, prefix)")
    p.add_argument("--model", help="required: the base model, a local folder or HF hub id (or model.model in --config)")
    p.add_argument("--out", required=True, help="output folder (a rerun resumes from its checkpoints)")
    p.add_argument("--objective", choices=OBJECTIVES, help="training objective (train.objective)")
    p.add_argument("--lora", action="store_true", help="train a LoRA adapter and save the merged model")
    _data_flags(p)
    _common(p)
    p = sub.add_parser("evaluate", usage=USAGE["evaluate"], help="accuracy and pass@k of a model on a benchmark file")
    p.add_argument("--model", required=True, help="required: model folder or HF hub id")
    p.add_argument("--benchmark", required=True, help=".jsonl/.json/.parquet/.tsv with a question and a gold answer")
    p.add_argument("--samples", type=int, help="completions per item (needs evaluate.temperature > 0 when > 1)")
    p.add_argument("--out", help="output folder (default MODEL/eval/<folder>-<file stem> of the benchmark)")
    p.add_argument("--limit", type=int, help="evaluate only the first N items")
    p.add_argument("--engine", choices=ENGINES, help="what generates: hf (default) or vllm (pip install "
                                                     "'reasonsift[vllm]')")
    _common(p)
    p = sub.add_parser("config", usage="reasonsift config [SECTION]",
                       help="list every section.key=value option with its default and meaning")
    p.add_argument("section", nargs="?", metavar="SECTION", help="one of: " + ", ".join(CONFIG_SECTIONS))
    p = sub.add_parser("demo", usage=USAGE["demo"],
                       help="the whole pipeline on the embedded synthetic reasoning world")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--quick", action="store_true", help="a reduced size (about a minute or two; used by CI)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--world", choices=WORLDS, default="v1",
                   help="v1 (default): the character-level world; v2: long word-token traces, four sources, "
                        "latent capability in θ₀ (docs/synth-world-v2.md; not yet validated, slower)")
    p.add_argument("--methods", nargs="+", default=["temp", "random"], metavar="M",
                   help="what to compare: selection methods (temp random s2l ...), full (the whole pool), "
                        "cft (the random subset trained on its critical tokens), cft-numbers (the same with "
                        "numbers-only masks); default: temp random")
    _common(p)
    p = sub.add_parser("check-gradients", help="test Theorem 3.1 on a scored run: loss-vector distance vs "
                                               "gradient difference along the fine-tuning direction")
    p.add_argument("--pairs", type=int, default=32, help="disjoint example pairs (2 backward passes each)")
    p.add_argument("--seed", type=int, default=0, help="draws the pairs")
    _common(p)
    return parser


def _one(plain: list[str], what: str) -> str:
    if len(plain) != 1:
        raise ConfigError(f"expected exactly one {what}, got {len(plain)}: {' '.join(plain) or '(none)'}")
    return plain[0]


def _data(args: argparse.Namespace) -> dict[str, Any]:
    """The reading flags every DATA-taking command has, as the API's keyword arguments."""
    return {"fields": args.field, "system_prompt": args.system_prompt, "skip_bad_rows": args.skip_bad_rows,
            "limit": args.limit}


def _scale(args: argparse.Namespace) -> dict[str, Any]:
    """Where the work units run (``scale.*``), as the API's keyword arguments."""
    return {"backend": args.backend, "ray_address": args.ray_address, "workers": args.workers}


def _common_kwargs(args: argparse.Namespace, overrides: list[str]) -> dict[str, Any]:
    return {"config": args.config, "overrides": overrides, "progress": not args.quiet, "command": args.command_line}


# Each command is one call into the API (the one front door) and one summary line.

def cmd_score(args: argparse.Namespace, plain: list[str], overrides: list[str]) -> int:
    report = api.score(_one(plain, "DATA path or hub id"), args.model, args.run, args.direction_model, args.seed,
                       **_data(args), **_scale(args), **_common_kwargs(args, overrides))
    if report:
        from reasonsift.scoring.cost import token_cost_lines

        t = report["tokens"]
        print(f"scored {report['counts']['examples']} examples ({report['counts']['rejected']} rejected) "
              f"-> {Path(args.run) / 'scores.parquet'}; {t['scored']:,} tokens scored: "
              + "; ".join(token_cost_lines(t)))
    return 0


def cmd_select(args: argparse.Namespace, plain: list[str], overrides: list[str]) -> int:
    run = _one(plain, "RUN folder")
    report = api.select(run, args.budget, args.budget_tokens, args.method, args.seed, **_common_kwargs(args, overrides))
    print(f"selected {report['n_selected']} examples ({report['selected_tokens']:,} response tokens) "
          f"with {report['method']} -> {Path(run) / 'selected.jsonl'} (kept in {Path(run) / report['kept_in']})")
    return 0


def cmd_curate(args: argparse.Namespace, plain: list[str], overrides: list[str]) -> int:
    sel = api.curate(_one(plain, "DATA path or hub id"), args.model, args.run, args.direction_model, args.budget,
                     args.budget_tokens, args.method, args.seed, **_data(args), **_scale(args),
                     **_common_kwargs(args, overrides))
    if sel is None:
        return 0  # another rank merges and selects
    print(f"selected {sel['n_selected']} of {sel['scoring']['counts']['examples']} examples "
          f"({sel['selected_tokens']:,} response tokens) -> {Path(args.run) / 'selected.jsonl'} "
          f"(kept in {Path(args.run) / sel['kept_in']})")
    return 0


def cmd_critical(args: argparse.Namespace, plain: list[str], overrides: list[str]) -> int:
    if args.show is not None and not plain:  # only look at a finished run
        api.show_critical(args.run, args.show, color=sys.stdout.isatty())
        return 0
    r = api.critical(_one(plain, "DATA path or hub id"), args.model, args.run, args.responses, args.method,
                     args.engine, **_data(args), **_scale(args),
                     **_common_kwargs(args, overrides))
    if r is None:
        return 0  # another rank merges
    print(f"kept {r['counts']['kept']} of {r['counts']['rows']} rows; {r['critical_tokens']:,} of "
          f"{r['positions_tested']:,} tokens critical ({100 * r['critical_share']:.1f}%) after {r['rollouts']:,} "
          f"rollouts -> {r['output']}")
    if args.show:
        api.show_critical(args.run, args.show, color=sys.stdout.isatty())
    return 0


def cmd_train(args: argparse.Namespace, plain: list[str], overrides: list[str]) -> int:
    report = api.train(_one(plain, "DATA path or hub id"), args.model, args.out, args.objective, args.lora,
                       **_data(args), **_common_kwargs(args, overrides))
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under accelerate/torchrun only the first process reports
    final = report["final_loss"]
    print(f"trained {report['objective']} for {report['steps']} steps on {report['dataset']['examples']} examples "
          f"({100 * report['dataset']['loss_token_fraction']:.1f}% of response tokens carry loss); final loss "
          f"{'n/a' if final is None else f'{final:.4f}'} (mean of the last {report.get('final_loss_steps', 1)} "
          f"steps) -> {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace, plain: list[str], overrides: list[str]) -> int:
    if plain:
        raise ConfigError(f"unexpected arguments: {' '.join(plain)}")
    m = api.evaluate(args.model, args.benchmark, args.out, args.samples, args.limit, args.engine,
                     **_common_kwargs(args, overrides))
    ks = " ".join(f"{k} {v:.3f}" for k, v in m.items() if k.startswith("pass@"))
    print(f"{m['benchmark']}: accuracy {m['accuracy']:.3f} over {m['n_items']} items; {ks}")
    return 0


def cmd_demo(args: argparse.Namespace, plain: list[str], overrides: list[str]) -> int:
    if plain or overrides:
        raise ConfigError("demo takes no positional arguments or overrides (use --quick, --seed, --world, --out)")
    api.demo(args.out, quick=args.quick, seed=args.seed, progress=not args.quiet, methods=args.methods,
             world=args.world)
    return 0


def cmd_check_gradients(args: argparse.Namespace, plain: list[str], overrides: list[str]) -> int:
    if overrides:
        raise ConfigError(f"check-gradients takes no overrides: {' '.join(overrides)}")
    r = api.check_gradients(_one(plain, "RUN folder"), pairs=args.pairs, seed=args.seed, progress=not args.quiet)
    s = r["spearman"]
    print(f"{r['pairs']} pairs: Spearman(|Δ⟨∇L, e⟩|, loss-vector distance) = {s['loss_vector_linf']['rho']:.3f} "
          f"(L∞, 95% CI {s['loss_vector_linf']['ci95'][0]:.2f}..{s['loss_vector_linf']['ci95'][1]:.2f}), "
          f"{s['loss_vector_l2']['rho']:.3f} (L2); θ₀-loss difference alone {s['base_loss_diff']['rho']:.3f} "
          f"-> {Path(r['run']) / 'gradient_check.json'}")
    return 0


def cmd_config(args: argparse.Namespace, plain: list[str], overrides: list[str]) -> int:
    from reasonsift.config_help import format_config_help

    print(format_config_help(args.section), end="")
    return 0


COMMANDS = {"score": cmd_score, "select": cmd_select, "curate": cmd_curate, "critical": cmd_critical,
            "train": cmd_train, "evaluate": cmd_evaluate, "demo": cmd_demo,
            "config": cmd_config, "check-gradients": cmd_check_gradients}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``reasonsift`` console script."""
    parser = build_parser()
    # Positional arguments may come after options (score DATA --model M key=value): collect the
    # leftovers argparse did not place, but still reject unknown --options.
    args, extra = parser.parse_known_args(argv)
    unknown = [e for e in extra if e.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.args = list(getattr(args, "args", [])) + extra
    # what the run folders record as the command: the argv actually parsed (main() may be called from Python)
    args.command_line = shlex.join(["reasonsift", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    plain, overrides = split_overrides(args.args)
    from reasonsift.data.records import DataError
    from reasonsift.models import ModelLoadError
    from reasonsift.runfolder import WriteError

    if getattr(args, "quiet", False):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    handler = COMMANDS[args.command]
    try:
        return handler(args, plain, overrides)
    except (ConfigError, DataError, ModelLoadError, FileNotFoundError, ValueError, ImportError, WriteError) as e:
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
