"""The fast path (packed rows and padded batches) against a plain per-example HF forward with ``labels=``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from reasonsift.data.formats import RawRow
from reasonsift.data.load import to_example
from reasonsift.data.render import Tokenized, build_labels, tokenize_example
from reasonsift.scoring import scorer
from reasonsift.scoring.scorer import pack_plan, padded_plan, score_items, score_reference, self_check
from tests.conftest import gsm8k_lines


@pytest.fixture(scope="module")
def model_and_items(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    items = []
    for i, line in enumerate(gsm8k_lines(12)):
        ex = to_example(RawRow(i, "x", line, json.loads(line)))
        t = tokenize_example(tok, ex, max_response_tokens=1000)
        items.append(Tokenized(t.prompt_ids, t.response_ids))
    # Responses much shorter than N: one token, and a few tokens.
    items.append(Tokenized(items[0].prompt_ids, items[0].response_ids[:1]))
    items.append(Tokenized(items[1].prompt_ids[:5], items[1].response_ids[:3]))
    return model, items


def assert_equals_reference(model, items: list[Tokenized], got: list[np.ndarray]) -> None:
    """The one fast-path-vs-reference check: per-token NLL equal to one plain forward per example."""
    ref = score_reference(model, items)
    assert len(got) == len(ref)
    for x, r in zip(got, ref):
        np.testing.assert_allclose(x, r, atol=1e-5)


def hf_mean_loss(model, item: Tokenized, n: int) -> float:
    """What a user would write: model(input_ids, labels=...).loss over the first n response tokens."""
    ids = torch.tensor([item.prompt_ids + item.response_ids[:n]])
    labels = build_labels(ids[0], len(item.prompt_ids))[None]
    with torch.no_grad():
        return float(model(input_ids=ids, labels=labels).loss)


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "padded"])
@pytest.mark.parametrize("n", [100, 1000])
def test_fast_path_matches_hf_labels_loss(model_and_items, n, packed):
    model, items = model_and_items
    lengths = {len(it.response_ids) for it in items}
    assert min(lengths) < 5 and max(lengths) > 100  # mixed lengths, some responses shorter than N
    # Small token budget and LM-head chunk: several bins, and chunk edges inside sequences.
    nll = score_items(model, [Tokenized(it.prompt_ids, it.response_ids[:n]) for it in items],
                      batch_tokens=600, max_examples=5, chunk=7, packed=packed)
    for it, x in zip(items, nll):
        assert len(x) == min(n, len(it.response_ids))
        assert abs(float(x.mean()) - hf_mean_loss(model, it, n)) < 1e-4


def test_one_long_pass_gives_the_short_window(model_and_items):
    model, items = model_and_items
    long = score_items(model, items, batch_tokens=4096, max_examples=64)
    short = score_items(model, [Tokenized(it.prompt_ids, it.response_ids[:20]) for it in items], batch_tokens=4096)
    for a, b in zip(long, short):
        np.testing.assert_allclose(a[:20], b, atol=1e-5)


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "padded"])
def test_result_does_not_depend_on_bin_composition(model_and_items, packed):
    model, items = model_and_items
    a = score_items(model, items, batch_tokens=300, max_examples=2, chunk=3, packed=packed)
    b = score_items(model, items, batch_tokens=100_000, max_examples=100, chunk=4096, packed=packed)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=1e-5)
    assert_equals_reference(model, items, a)


def test_plans_cover_every_item_once_within_budget():
    lengths = [5, 300, 17, 120, 120, 64, 1, 999, 40]
    for plan, cost in ((pack_plan, lambda b: sum(lengths[i] for i in b)),
                       (padded_plan, lambda b: len(b) * max(lengths[i] for i in b))):
        bins = plan(lengths, 200, 3)
        assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
        for b in bins:
            assert len(b) <= 3
            assert cost(b) <= 200 or len(b) == 1  # an oversize item sits alone
        assert bins == plan(lengths, 200, 3)  # deterministic


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "padded"])
def test_out_of_memory_lowers_the_budget_for_good(model_and_items, monkeypatch, packed):
    model, items = model_and_items
    real = scorer.score_bin
    fits, failed = [], []

    def memory_limited(model_, group, chunk=4096, packed_=True, **kw):
        size = sum(it.length for it in group) if packed_ else len(group) * max(it.length for it in group)
        if size > 700 and len(group) > 1:  # a device that holds 700 tokens per forward
            failed.append(size)
            raise torch.OutOfMemoryError("simulated")
        fits.append(size)
        return real(model_, group, chunk, packed_, **kw)

    monkeypatch.setattr(scorer, "score_bin", memory_limited)
    got = score_items(model, items, batch_tokens=100_000, max_examples=100, packed=packed)
    assert failed and len(failed) <= 6  # the lowered budget sticks: no failure on every later bin
    assert_equals_reference(model, items, got)


def test_self_check_refuses_a_wrong_fast_path(model_and_items, monkeypatch):
    model, items = model_and_items
    assert self_check(model, items[:3]) < 1e-4
    monkeypatch.setattr(scorer, "score_reference", lambda m, its: [x + 0.5 for x in real_ref(m, its)])
    real_ref = score_reference
    with pytest.raises(RuntimeError, match="not supported by the fast path"):
        self_check(model, items[:3])


def test_in_place_lm_head_equals_the_training_loss():
    """Scoring's in-place log-sum-exp (with and without a reused workspace) == nll_from_logits."""
    from reasonsift.loss import nll_from_logits, token_nll

    g = torch.Generator().manual_seed(0)
    hidden, weight = torch.randn(37, 16, generator=g), torch.randn(50, 16, generator=g) * 3
    bias, targets = torch.randn(50, generator=g), torch.randint(0, 50, (37,), generator=g)
    want = nll_from_logits(hidden @ weight.T + bias, targets)
    workspace = torch.full((10, 50), float("nan"))  # stale contents must not leak into results
    for kw in ({}, {"workspace": workspace}, {"workspace": torch.empty(3, 50)}):  # too small: ignored
        got = token_nll(hidden, weight, targets, bias, chunk=10, **kw)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_auto_batch_tokens_scores_the_same(model_and_items):
    model, items = model_and_items
    assert scorer.default_batch_tokens(torch.device("cpu")) == 2048
    assert_equals_reference(model, items, score_items(model, items, batch_tokens=0))


def test_progress_inside_a_unit_shows_tokens_rate_and_eta(model_and_items, capsys):
    """A unit is one checkpoint over a shard (minutes on a CPU): its bar counts tokens, with rate and ETA."""
    model, items = model_and_items
    score_items(model, items, batch_tokens=256, progress=True)
    err = capsys.readouterr().err
    total = sum(it.length for it in items)
    assert "tokens in this unit" in err and "tok/s" in err and "<" in err  # tqdm: [elapsed<remaining, rate]
    assert f"/{total}" in err or f"/{total / 1000:.2f}k" in err
