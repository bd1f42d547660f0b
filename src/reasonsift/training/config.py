"""``TrainConfig``: the ``train:`` section of a reasonsift config (``reasonsift train``).

Defaults follow TEMP's SFT recipe (temp-method.md §3.3): lr 1e-5, cosine, 5% warmup, weight decay
1e-4, AdamW betas (0.9, 0.95), per-device batch 2 x 8 accumulation = 16 sequences per step. Importing
this module registers the section, so YAML ``train:`` blocks and ``train.key=value`` overrides work.

Objectives (token-objectives.md §2-§3):
    sft     mean NLL over every response token;
    cft     mean NLL over the critical response tokens only (a 0/1 mask per response token);
    dft     mean over response tokens of NLL x stop-grad(p) (Dynamic Fine-Tuning, arXiv 2508.05629);
    prefix  UPFT (arXiv 2503.02875) as its official code does it: a seeded ``prefix_fraction`` of the
            examples get ``prefix_instruction`` appended to the prompt and their response cut to the
            first ``prefix_tokens`` tokens followed by EOS; the other examples train on the full
            response with the plain prompt. UPFT's code default prefix length is 32; its mixing
            ratio has no code default (a script argument), so 0.5 here is our choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reasonsift.config import register_section

# UPFT's planning prompt, appended to the question of prefix examples (1KE-JI/UPFT scripts/train_sft.sh).
UPFT_INSTRUCTION = (" Please provide the initial step towards resolving the question. This step may serve "
                    "as a foundation but might not encompass the entire solution.")


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning with a token-level objective (see ``reasonsift.training.run_training``)."""

    objective: Literal["sft", "cft", "dft", "prefix"] = "sft"
    learning_rate: float = 1e-5
    num_train_epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides num_train_epochs
    per_device_train_batch_size: int = 2
    gradient_accumulation_steps: int = 8
    warmup_ratio: float = 0.05  # fraction of optimizer steps with linear warmup
    lr_scheduler_type: str = "cosine"
    weight_decay: float = 1e-4
    adam_beta2: float = 0.95  # beta1 stays 0.9
    max_length: int = 8192  # prompt + response tokens; longer responses are cut (the prompt is kept)
    seed: int = 42  # data order, LoRA init and the UPFT prefix draw
    lora: bool = False  # train a LoRA adapter, then merge it into the saved model
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = "all-linear"  # or a comma-separated list of module names
    mask_column: str = "critical_mask"  # cft: per-row list of 0/1 over the response tokens (eos included)
    mask_file: str | None = None  # cft: .jsonl/.parquet with `id` + mask_column, joined by example id
    prefix_tokens: int = 32  # prefix: response tokens kept (then EOS); UPFT's default
    prefix_fraction: float = 0.5  # prefix: share of examples trained on the prefix only
    prefix_instruction: str = UPFT_INSTRUCTION  # prefix: appended to the prompt of prefix examples
    save_steps: int = 500  # checkpoint every N optimizer steps (the resume granularity)
    save_total_limit: int | None = 2  # keep the newest N checkpoints (each holds optimizer state)
    logging_steps: int = 10
    bf16: str = "auto"  # auto: bf16 mixed precision on GPUs that support it, fp32 on CPU; or true/false
    gradient_checkpointing: bool = False
    resume: bool = True  # continue from OUT/checkpoint-* when present


register_section("train", TrainConfig)
