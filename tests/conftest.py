"""Shared fixtures: a tiny Llama-style model with a locally trained tokenizer, and real data samples.

Nothing is downloaded: the model is built from a config and the tokenizer is trained on GSM8K text
from ../shared/data, then both are saved and reloaded through ``from_pretrained`` like a user's model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GSM8K = SHARED_DATA / "gsm8k" / "train.jsonl"


def gsm8k_lines(n: int) -> list[str]:
    """The first n raw lines of GSM8K train (skips the test when ../shared/data is absent, fails under CI)."""
    if not GSM8K.exists():
        if os.environ.get("CI"):  # CI has the data: a skip there would hide every test that needs it
            pytest.fail(f"real data not found at {GSM8K}")
        pytest.skip(f"real data not found at {GSM8K}")
    with open(GSM8K, encoding="utf-8") as f:
        return [next(f) for _ in range(n)]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved 2-layer, hidden-64 Llama with a 512-token BPE tokenizer trained on GSM8K text."""
    from reasonsift.models import build_tiny_llama, train_bpe_tokenizer

    rows = [json.loads(line) for line in gsm8k_lines(400)]
    tok = train_bpe_tokenizer([r["question"] + "\n" + r["answer"] for r in rows], vocab_size=512)
    model = build_tiny_llama(len(tok), hidden_size=64, num_layers=2, num_heads=4, seed=0)
    out = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


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
