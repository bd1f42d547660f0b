"""Rendering with the tokenizer's chat template, response truncation, and loss labels."""

from __future__ import annotations

import json

import pytest
import torch

from reasonsift.data.records import Example
from reasonsift.data.render import IGNORE_INDEX, PLAIN_TEMPLATE, build_labels, prompt_text, tokenize_example
from reasonsift.models import char_tokenizer, train_bpe_tokenizer
from tests.conftest import gsm8k_lines


@pytest.fixture(scope="module")
def gsm8k_rows() -> list[dict]:
    return [json.loads(line) for line in gsm8k_lines(50)]


@pytest.fixture(scope="module")
def bpe(gsm8k_rows):
    return train_bpe_tokenizer([r["question"] + "\n" + r["answer"] for r in gsm8k_rows], vocab_size=300)


@pytest.fixture(scope="module")
def chars(gsm8k_rows):
    # Every character of the sample (and of the hand-written texts below), so nothing maps to <unk>.
    text = "".join(r["question"] + r["answer"] for r in gsm8k_rows) + "abcdefghijklmnopqrstuvwxyz?+"
    return char_tokenizer("".join(sorted(set(text))))


@pytest.fixture(params=["bpe", "char"])
def tok(request, bpe, chars):
    return {"bpe": bpe, "char": chars}[request.param]


def gsm_example(row: dict) -> Example:
    return Example(id="x", prompt=row["question"], response=row["answer"])


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_prompt_is_prefix_and_response_decodes(tok, gsm8k_rows):
    for row in gsm8k_rows[:10]:
        ex = gsm_example(row)
        t = tokenize_example(tok, ex)
        full = encode(tok, prompt_text(tok, ex.prompt) + ex.response + tok.eos_token)
        assert t.boundary_ok
        assert t.prompt_ids == encode(tok, prompt_text(tok, ex.prompt))
        assert full[: len(t.prompt_ids)] == t.prompt_ids and full[len(t.prompt_ids):] == t.response_ids
        assert tok.decode(t.response_ids) == ex.response + tok.eos_token
        assert t.response_ids[-1] == tok.eos_token_id
        assert t.n_response_tokens == len(t.response_ids)


def test_truncation_keeps_first_tokens_and_counts_all(tok, gsm8k_rows):
    ex = gsm_example(gsm8k_rows[0])
    full = tokenize_example(tok, ex)
    assert full.n_response_tokens > 20
    cut = tokenize_example(tok, ex, max_response_tokens=20)
    assert cut.response_ids == full.response_ids[:20] and cut.prompt_ids == full.prompt_ids
    assert cut.n_response_tokens == full.n_response_tokens
    longer = tokenize_example(tok, ex, max_response_tokens=10_000)
    assert longer.response_ids == full.response_ids


def test_system_prompt_is_rendered(tok):
    ex = Example(id="x", prompt="what is 2+2?", response="4", system="row system")
    assert "row system" in prompt_text(tok, ex.prompt, ex.system)
    assert "be brief" not in prompt_text(tok, ex.prompt)
    # The user's --system-prompt wins over a system turn found in the row.
    t = tokenize_example(tok, ex, system_prompt="be brief")
    assert t.prompt_ids == encode(tok, prompt_text(tok, ex.prompt, "be brief"))
    assert tok.decode(t.prompt_ids).count("be brief") == 1 and "row system" not in tok.decode(t.prompt_ids)
    assert tokenize_example(tok, ex).prompt_ids == encode(tok, prompt_text(tok, ex.prompt, "row system"))


def test_plain_fallback_without_chat_template(bpe):
    bpe.chat_template, saved = None, bpe.chat_template
    try:
        assert prompt_text(bpe, "Hi there") == "User: Hi there\nAssistant: "
        assert PLAIN_TEMPLATE.format(prompt="Hi there") == "User: Hi there\nAssistant: "
        assert prompt_text(bpe, "Hi", "Sys") == "Sys\n\nUser: Hi\nAssistant: "
    finally:
        bpe.chat_template = saved
    assert prompt_text(bpe, "Hi there").startswith("<|user|>")


def test_boundary_merge_keeps_the_prompt_tokens(bpe):
    # "Assistant: " ends in a space; a BPE that merges " t" glues the response onto the prompt.
    assert len(bpe.tokenize(" t")) == 1, "fixture tokenizer should have learned the ' t' merge"
    bpe.chat_template, saved = None, bpe.chat_template
    try:
        ex = Example(id="x", prompt="How many?", response="the answer is 4")
        t = tokenize_example(bpe, ex, max_response_tokens=3)
        plain_prompt = "User: How many?\nAssistant: "
        assert not t.boundary_ok
        assert t.prompt_ids == encode(bpe, plain_prompt)
        assert t.response_ids == encode(bpe, ex.response + bpe.eos_token)[:3]
        assert t.n_response_tokens == len(encode(bpe, ex.response + bpe.eos_token))
        assert bpe.decode(tokenize_example(bpe, ex).response_ids) == ex.response + bpe.eos_token
    finally:
        bpe.chat_template = saved


def test_build_labels_masks_the_prompt():
    ids = torch.tensor([5, 6, 7, 8, 9, 10])  # (T,) = 2 prompt + 4 response tokens
    labels = build_labels(ids, 2)
    assert labels.dtype == torch.int64 and labels.tolist() == [IGNORE_INDEX, IGNORE_INDEX, 7, 8, 9, 10]
    assert ids.tolist() == [5, 6, 7, 8, 9, 10]  # the input is not modified


def test_build_labels_token_mask():
    ids = torch.tensor([5, 6, 7, 8, 9, 10])
    mask = torch.tensor([True, False, False, True])  # (T - P,) over response tokens
    assert build_labels(ids, 2, mask).tolist() == [IGNORE_INDEX, IGNORE_INDEX, 7, IGNORE_INDEX, IGNORE_INDEX, 10]
    assert build_labels(ids, 2, torch.tensor([1, 0, 1, 1])).tolist() == [
        IGNORE_INDEX, IGNORE_INDEX, 7, IGNORE_INDEX, 9, 10]


@pytest.mark.parametrize("n", [3, 5])
def test_build_labels_rejects_wrong_mask_length(n):
    with pytest.raises(ValueError, match="token mask"):
        build_labels(torch.arange(6), 2, torch.ones(n, dtype=torch.bool))
