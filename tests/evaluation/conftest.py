"""Evaluation fixtures: the first 20 GSM8K rows (from the committed fixture) and a tiny model trained on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import build_tiny_model, gsm8k_lines


def gsm8k20_rows() -> list[dict]:
    """The first 20 GSM8K train rows."""
    return [json.loads(line) for line in gsm8k_lines(20)]


@pytest.fixture(scope="session")
def eval_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a 400-token tokenizer trained on the 20 rows (generations stay short)."""
    return build_tiny_model(tmp_path_factory.mktemp("eval_tiny_model"),
                            [r["question"] + "\n" + r["answer"] for r in gsm8k20_rows()], vocab_size=400)


@pytest.fixture()
def gsm8k20(tmp_path: Path) -> Path:
    """A private copy of the 20-row sample (tests edit or place it in named folders)."""
    path = tmp_path / "gsm8k" / "sample.jsonl"
    path.parent.mkdir()
    path.write_text("".join(gsm8k_lines(20)), encoding="utf-8")
    return path
