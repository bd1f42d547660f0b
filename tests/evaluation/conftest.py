"""Evaluation fixtures that need nothing outside the repository.

The 20-row GSM8K sample is committed under ``fixtures/`` and the tiny model's tokenizer is trained on
it, so these tests run (rather than skip) on a checkout without ``../shared/data``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GSM8K20 = FIXTURES / "gsm8k_train_first20.jsonl"


def shared_data_or_skip(path: Path) -> Path:
    """``path`` under ../shared/data; skipped locally when absent, but a failure under CI (``CI`` set),
    where ../shared is part of the checkout and a skip would hide that the real-data tests never ran."""
    if not path.exists():
        message = f"real data not found at {path}"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(message + " (CI must provide ../shared/data)")
        pytest.skip(message)
    return path


def gsm8k20_rows() -> list[dict]:
    """The 20 committed GSM8K train rows."""
    return [json.loads(line) for line in GSM8K20.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="session")
def eval_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved 2-layer, hidden-64 Llama whose BPE tokenizer (with a chat template) is trained on the sample."""
    from reasonsift.models import build_tiny_llama, train_bpe_tokenizer

    tok = train_bpe_tokenizer([r["question"] + "\n" + r["answer"] for r in gsm8k20_rows()], vocab_size=400)
    model = build_tiny_llama(len(tok), hidden_size=64, num_layers=2, num_heads=4, seed=0)
    out = tmp_path_factory.mktemp("eval_tiny_model")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture()
def gsm8k20(tmp_path: Path) -> Path:
    """A private copy of the 20-row sample (tests edit or place it in named folders)."""
    path = tmp_path / "gsm8k" / "sample.jsonl"
    path.parent.mkdir()
    path.write_bytes(GSM8K20.read_bytes())
    return path
