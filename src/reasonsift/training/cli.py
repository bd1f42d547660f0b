"""The ``reasonsift train`` subcommand: argparse wiring around ``run_training``.

    reasonsift train DATA --model M --out DIR [--objective sft|cft|dft|prefix] [--lora] [key=value ...]

``reasonsift.cli`` adds the parser with ``add_parser`` and dispatches to ``cmd_train``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any



def add_parser(sub: Any) -> None:
    """Add the ``train`` subparser to the subcommand action ``sub``."""
    from reasonsift.cli import USAGE, _common, _data_flags

    p = sub.add_parser("train", usage=USAGE["train"], help="fine-tune on DATA with a token-level objective (sft, cft, dft, prefix)")
    p.add_argument("--model", help="required: the base model, a local folder or HF hub id (or model.model in --config)")
    p.add_argument("--out", required=True, help="output folder (a rerun resumes from its checkpoints)")
    p.add_argument("--objective", choices=["sft", "cft", "dft", "prefix"], help="training objective (train.objective)")
    p.add_argument("--lora", action="store_true", help="train a LoRA adapter and save the merged model")
    _data_flags(p)
    _common(p)


def _train_overrides(args: argparse.Namespace) -> list[str]:
    out = []
    if args.model:
        out.append(f"model.model={args.model}")
    if args.objective:
        out.append(f"train.objective={args.objective}")
    if args.lora:
        out.append("train.lora=true")
    return out


def cmd_train(args: argparse.Namespace, plain: list[str], overrides: list[str]) -> int:
    """Run ``reasonsift train``; prints one summary line."""
    from reasonsift.cli import _data_overrides, _one
    from reasonsift.config import load_config
    from reasonsift.training.run_training import run_training

    data = _one(plain, "DATA path or hub id")
    configs = load_config(["data", "model", "train"], args.config,
                          _data_overrides(args) + _train_overrides(args) + overrides)
    report = run_training(data, configs, args.out, args.command_line, progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under accelerate/torchrun only the first process reports
    final = report["final_loss"]
    print(f"trained {report['objective']} for {report['steps']} steps on {report['dataset']['examples']} examples "
          f"({100 * report['dataset']['loss_token_fraction']:.1f}% of response tokens carry loss); final loss "
          f"{'n/a' if final is None else f'{final:.4f}'} (mean of the last {report.get('final_loss_steps', 1)} "
          f"steps) -> {args.out}")
    return 0
