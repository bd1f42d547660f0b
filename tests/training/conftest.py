"""Fixtures for the training tests: small GSM8K files (with and without CFT masks), config and loss helpers."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import gsm8k_lines

# Short sequences and tiny batches keep every run_training call to a second or two on CPU.
FAST = ["train.max_length=256", "train.per_device_train_batch_size=2", "train.gradient_accumulation_steps=2",
        "train.learning_rate=1e-3", "train.logging_steps=1", "train.warmup_ratio=0"]


def make_configs(model_dir: Path, *overrides: str) -> dict[str, Any]:
    """Resolved data/model/train configs as ``reasonsift train`` would build them."""
    from reasonsift.config import load_config

    return load_config(["data", "model", "train"], None, [f"model.model={model_dir}", *FAST, *overrides])


def full_sequence_loss(logits: Any, labels: Any, objective: str, num_items: Any = None) -> Any:
    """``objective_loss`` from full (B, T, V) logits and unshifted (B, T) labels, as the trainer gathers them."""
    from reasonsift.training.objectives import loss_positions, objective_loss

    keep, targets = loss_positions(labels)  # (K,), (B, K)
    return objective_loss(logits[:, keep], targets, objective, num_items)


def response_lengths(tokenizer: Any, path: Path) -> dict[str, int]:
    """``{example id: number of response tokens (eos included)}`` as training tokenizes them."""
    from reasonsift.data.load import iter_examples
    from reasonsift.data.render import tokenize_example

    return {ex.id: tokenize_example(tokenizer, ex).n_response_tokens for _, ex, _ in iter_examples(path)}


@pytest.fixture()
def train_data(tmp_path: Path) -> Path:
    """8 real GSM8K rows."""
    path = tmp_path / "train.jsonl"
    path.write_text("".join(gsm8k_lines(8)), encoding="utf-8")
    return path


@pytest.fixture()
def tokenizer(tiny_model_dir: Path) -> Any:
    from reasonsift.models import load_tokenizer

    return load_tokenizer(str(tiny_model_dir))


@pytest.fixture()
def cft_data(train_data: Path, tokenizer: Any, tmp_path: Path) -> Path:
    """The same 8 rows with a seeded random ``critical_mask`` (~25% ones) over their response tokens."""
    rng = random.Random(0)
    lengths = list(response_lengths(tokenizer, train_data).values())
    rows = [json.loads(line) for line in train_data.read_text().splitlines()]
    path = tmp_path / "cft.jsonl"
    path.write_text("".join(json.dumps({**row, "critical_mask": [int(rng.random() < 0.25) for _ in range(n)]}) + "\n"
                            for row, n in zip(rows, lengths)), encoding="utf-8")
    return path
