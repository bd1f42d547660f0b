"""Generation-engine fixtures: a tiny model vLLM's CPU build accepts, with clear greedy margins.

vLLM refuses head_dim 16 or 24 on CPU (the synthetic world's θ₀ has 24), so the model here has two
heads of 64. A random model's next-token logits are nearly tied, and two engines' float rounding
would then pick different tokens; this one is trained until it has memorised a few synthetic-world
problems (each answer line followed by a closing remark, so a rollout has text to skip after its
answer), which makes its greedy choices clear-cut on and near those texts. Seconds on a CPU.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

# Only the vLLM test run sets this (.ci/run, in .venv-vllm): there a missing vLLM must fail, not skip.
REQUIRE_VLLM = os.environ.get("REASONSIFT_REQUIRE_VLLM", "").lower() not in ("", "0", "false")
CLOSING = "\nthat is all."  # text after the answer line: what stopping at a completed answer saves


def vllm_or_skip() -> None:
    """Skip (or, with REASONSIFT_REQUIRE_VLLM=1, fail) when vLLM is not installed."""
    if importlib.util.find_spec("vllm") is None:
        message = "vLLM is not installed (bash scripts/setup_vllm.sh makes .venv-vllm with the CPU build)"
        if REQUIRE_VLLM:
            pytest.fail(message + "; REASONSIFT_REQUIRE_VLLM is set")
        pytest.skip(message)


def memorised_rows(n: int = 8, seed: int = 7) -> list[dict]:
    """One-step synthetic-world problems with the closing remark after the answer line."""
    from reasonsift.synth.generate import generate_pool

    rows = [r for r in generate_pool(40 * n, seed=seed, low_quality_fraction=0.0) if r["true_difficulty"] == 1]
    return [{**r, "response": r["response"] + CLOSING} for r in rows[:n]]


def unseen_rows(n: int = 4) -> list[dict]:
    """Problems the model has not memorised (mostly answered wrong)."""
    return memorised_rows(n, seed=99)


@pytest.fixture(scope="session")
def memorised_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama (2 heads of 64) with a character tokenizer, trained to recite ``memorised_rows()``."""
    return build_memorised_model(tmp_path_factory.mktemp("memorised_model"))


def build_memorised_model(out: Path) -> Path:
    """Train and save the model of ``memorised_model_dir`` into ``out``."""
    from reasonsift.data.records import Example
    from reasonsift.data.render import tokenize_example
    from reasonsift.models import build_tiny_llama, char_tokenizer
    from reasonsift.synth.tasks import CHARSET

    tok = char_tokenizer(CHARSET)
    model = build_tiny_llama(len(tok), hidden_size=128, num_layers=2, num_heads=2, seed=0).train()
    seqs = []
    for r in memorised_rows():
        t = tokenize_example(tok, Example(id=r["id"], prompt=r["prompt"], response=r["response"], answer=r["answer"]))
        seqs.append(t.prompt_ids + t.response_ids)
    width = max(map(len, seqs))
    ids = torch.tensor([s + [tok.pad_token_id] * (width - len(s)) for s in seqs])  # (8, W)
    labels = torch.tensor([s + [-100] * (width - len(s)) for s in seqs])  # (8, W)
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is ~10x faster than two contending on a shared box
    try:
        for _ in range(300):
            loss = model(input_ids=ids, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    assert loss.item() < 0.05, f"the test model did not memorise its rows (loss {loss.item():.3f})"
    model.eval().save_pretrained(out)
    tok.save_pretrained(out)
    return out
