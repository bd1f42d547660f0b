"""Shared fixtures: a tiny Llama-style model with a locally trained tokenizer, and real data samples.

Nothing is downloaded: the model is built from a config and the tokenizer is trained on GSM8K text
committed under ``tests/fixtures`` (the first 400 rows of GSM8K train, byte-identical), then both are
saved and reloaded through ``from_pretrained`` like a user's model. So the core tests run from the
repository alone; tests of other real data read ../shared/data through ``shared_data_or_skip``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GSM8K = SHARED_DATA / "gsm8k" / "train.jsonl"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
GSM8K_FIXTURE = FIXTURES / "gsm8k_train_first400.jsonl"  # the first 400 lines of GSM8K, byte-identical


def in_ci() -> bool:
    """Whether this is a CI run: ``CI`` set to anything but empty, 0 or false."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def shared_data_or_skip(path: Path) -> Path:
    """``path`` under ../shared/data; skipped locally when absent, but a failure under CI, where
    ../shared is part of the checkout and a skip would hide that the real-data tests never ran."""
    if not path.exists():
        message = f"real data not found at {path}"
        if in_ci():
            pytest.fail(message + " (CI must provide ../shared/data)")
        pytest.skip(message)
    return path


def gsm8k_lines(n: int) -> list[str]:
    """The first n raw lines of GSM8K train: from the committed fixture (n <= 400), else ../shared."""
    with open(GSM8K_FIXTURE, encoding="utf-8") as f:
        lines = [line for _, line in zip(range(n), f)]
    if len(lines) == n:
        return lines
    with open(shared_data_or_skip(GSM8K), encoding="utf-8") as f:
        return [next(f) for _ in range(n)]


def build_tiny_model(out: Path, texts: list[str], vocab_size: int) -> Path:
    """The one tiny model of the tests: a saved 2-layer, hidden-64 Llama with a BPE tokenizer (and the
    local chat template) trained on ``texts``."""
    from reasonsift.models import build_tiny_llama, train_bpe_tokenizer

    tok = train_bpe_tokenizer(texts, vocab_size=vocab_size)
    model = build_tiny_llama(len(tok), hidden_size=64, num_layers=2, num_heads=4, seed=0)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a 512-token tokenizer trained on 400 GSM8K rows."""
    rows = [json.loads(line) for line in gsm8k_lines(400)]
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"), [r["question"] + "\n" + r["answer"] for r in rows],
                            vocab_size=512)


@pytest.fixture(scope="session")
def tiny_direction_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """θ_f for tests: θ₀ with small seeded changes to every tensor (a stand-in fine-tune)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    gen = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=gen))
    out = tmp_path_factory.mktemp("tiny_direction")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


@pytest.fixture()
def gsm8k_sample(tmp_path: Path) -> Path:
    """48 real GSM8K rows as a .jsonl file."""
    path = tmp_path / "gsm8k_sample.jsonl"
    path.write_text("".join(gsm8k_lines(48)), encoding="utf-8")
    return path
