"""The tokenized training set: labels mask exactly the prompt (+ non-critical / post-prefix tokens)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from reasonsift.config import DataConfig
from reasonsift.data.load import iter_examples
from reasonsift.data.records import DataError
from reasonsift.data.render import IGNORE_INDEX, tokenize_example
from reasonsift.config import UPFT_INSTRUCTION, TrainConfig
from reasonsift.training.dataset import build_train_dataset, choose_prefix_examples
from tests.training.conftest import full_sequence_loss


def examples(path):
    return [ex for _, ex, _ in iter_examples(path)]


def build(path, tokenizer, **train):
    return build_train_dataset(str(path), tokenizer, DataConfig(), TrainConfig(**train))


@pytest.mark.parametrize("objective", ["sft", "dft"])
def test_labels_mask_exactly_the_prompt(train_data, tokenizer, objective):
    ds, stats = build(train_data, tokenizer, objective=objective)
    assert len(ds) == 8 and set(ds.column_names) == {"input_ids", "labels", "attention_mask"}
    for row, ex in zip(ds, examples(train_data)):
        tok = tokenize_example(tokenizer, ex)
        n = len(tok.prompt_ids)
        assert row["input_ids"] == tok.prompt_ids + tok.response_ids
        assert row["labels"][:n] == [IGNORE_INDEX] * n
        assert row["labels"][n:] == tok.response_ids and tok.response_ids[-1] == tokenizer.eos_token_id
        assert row["attention_mask"] == [1] * len(row["input_ids"])
    assert stats["loss_token_fraction"] == 1.0 and stats["truncated"] == 0


def test_truncation_keeps_the_prompt_and_drops_prompt_only_examples(train_data, tokenizer):
    prompts = [len(tokenize_example(tokenizer, ex).prompt_ids) for ex in examples(train_data)]
    limit = sorted(prompts)[4] + 3  # some prompts fit with 3+ response tokens, the longest ones do not fit
    ds, stats = build(train_data, tokenizer, max_length=limit)
    kept = [p for p in prompts if p < limit]
    assert len(ds) == len(kept) and stats["dropped_prompt_too_long"] == 8 - len(kept)
    assert all(len(r) <= limit for r in ds["input_ids"])
    for row, n in zip(ds, kept):
        assert len(row["input_ids"]) == limit and row["labels"][n:] == row["input_ids"][n:]


def test_cft_mask_from_row_column(cft_data, tokenizer):
    ds, stats = build(cft_data, tokenizer, objective="cft")
    rows = [json.loads(line) for line in cft_data.read_text().splitlines()]
    loss_tokens = 0
    for row, raw, ex in zip(ds, rows, examples(cft_data)):
        n = len(tokenize_example(tokenizer, ex).prompt_ids)
        ids, labels, mask = row["input_ids"], row["labels"], raw["critical_mask"]
        assert labels[:n] == [IGNORE_INDEX] * n
        assert labels[n:] == [t if m else IGNORE_INDEX for t, m in zip(ids[n:], mask)]
        loss_tokens += sum(mask)
    assert stats["tokens"]["loss"] == loss_tokens
    assert stats["loss_token_fraction"] == pytest.approx(loss_tokens / stats["tokens"]["response_in_input"])
    assert 0.1 < stats["loss_token_fraction"] < 0.4


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_cft_mask_file_joined_by_id_matches_row_masks(cft_data, train_data, tokenizer, tmp_path, suffix):
    ids = [ex.id for ex in examples(cft_data)]
    masks = [json.loads(line)["critical_mask"] for line in cft_data.read_text().splitlines()]
    path = tmp_path / f"masks{suffix}"
    order = list(range(8))[::-1]  # the file order does not matter, the id does
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps({"id": ids[i], "m": masks[i]}) + "\n" for i in order))
    else:
        pq.write_table(pa.table({"id": [ids[i] for i in order], "m": [masks[i] for i in order]}), path)
    from_file, _ = build(train_data, tokenizer, objective="cft", mask_file=str(path), mask_column="m")
    from_rows, _ = build(cft_data, tokenizer, objective="cft")
    assert from_file["labels"] == from_rows["labels"]


def test_cft_mask_errors_name_the_problem(cft_data, train_data, tokenizer, tmp_path):
    rows = [json.loads(line) for line in cft_data.read_text().splitlines()]
    rows[3]["critical_mask"] = rows[3]["critical_mask"][:-1]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bad_id = examples(bad)[3].id
    with pytest.raises(DataError, match=f"example '{bad_id}'.*critical mask has .* entries"):
        build(bad, tokenizer, objective="cft")
    with pytest.raises(DataError, match="needs a critical-token mask.*critical_mask.*mask_file"):
        build(train_data, tokenizer, objective="cft")
    partial = tmp_path / "partial.jsonl"
    partial.write_text(json.dumps({"id": examples(train_data)[0].id, "critical_mask": [1]}) + "\n")
    with pytest.raises(DataError, match="no mask for 7 example"):
        build(train_data, tokenizer, objective="cft", mask_file=str(partial))
    rows[3]["critical_mask"] = ["a"]
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match="list of 0/1"):
        build(bad, tokenizer, objective="cft")


def test_cft_examples_without_critical_tokens_are_dropped(cft_data, tokenizer, tmp_path):
    rows = [json.loads(line) for line in cft_data.read_text().splitlines()]
    rows[0]["critical_mask"] = [0] * len(rows[0]["critical_mask"])
    path = tmp_path / "zero.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds, stats = build(path, tokenizer, objective="cft")
    assert len(ds) == 7 and stats["dropped_no_loss_tokens"] == 1


def test_prefix_upft_examples(train_data, tokenizer):
    cfg = {"objective": "prefix", "prefix_tokens": 5, "prefix_fraction": 0.5, "seed": 3}
    ds, stats = build(train_data, tokenizer, **cfg)
    chosen = choose_prefix_examples(8, 0.5, 3)
    assert stats["prefix_examples"] == len(chosen) == 4
    assert choose_prefix_examples(8, 0.5, 3) == chosen and choose_prefix_examples(50, 0.5, 4) != \
        choose_prefix_examples(50, 0.5, 3)
    for i, (row, ex) in enumerate(zip(ds, examples(train_data))):
        if i in chosen:  # instruction appended, response = first 5 tokens + EOS, all of it trained
            tok = tokenize_example(tokenizer, replace(ex, prompt=ex.prompt + UPFT_INSTRUCTION))
            response = tok.response_ids[:5] + [tokenizer.eos_token_id]
        else:  # plain prompt, full response
            tok = tokenize_example(tokenizer, ex)
            response = tok.response_ids
        n = len(tok.prompt_ids)
        assert row["input_ids"] == tok.prompt_ids + response
        assert row["labels"] == [IGNORE_INDEX] * n + response
    again, _ = build(train_data, tokenizer, **cfg)
    assert again["input_ids"] == ds["input_ids"]


@pytest.mark.parametrize("objective", ["sft", "cft", "dft", "prefix"])
def test_a_few_steps_lower_the_nll_on_loss_tokens(tiny_model_dir, cft_data, tokenizer, objective):
    from reasonsift.models import load_model

    ds, _ = build(cft_data, tokenizer, objective=objective, max_length=96, prefix_tokens=8)
    width = max(len(r) for r in ds["input_ids"])

    def pad(col: str, value: int) -> torch.Tensor:  # (N, width) right-padded
        return torch.tensor([r + [value] * (width - len(r)) for r in ds[col]])

    ids, labels = pad("input_ids", tokenizer.pad_token_id), pad("labels", IGNORE_INDEX)
    attn = pad("attention_mask", 0)
    model = load_model(str(tiny_model_dir)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    nll = []
    for _ in range(6):
        logits = model(input_ids=ids, attention_mask=attn).logits
        loss = full_sequence_loss(logits, labels, objective)
        nll.append(full_sequence_loss(logits.detach(), labels, "sft").item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert nll[-1] < nll[0] - 0.05, nll
    assert np.isfinite(nll).all()
