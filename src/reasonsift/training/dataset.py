"""Turn a DATA path into the tokenized training set: ``input_ids``, ``labels``, ``attention_mask``.

Rows are read with ``iter_examples`` and rendered with ``tokenize_example`` (the same chat template
scoring used); loss masks are built only by ``build_labels``. Per objective:

* sft / dft: loss on every response token (the EOS that ends the response included).
* cft: loss on critical tokens only. The mask is a list of 0/1, one entry per response token as
  ``tokenize_example`` produces them (EOS included), taken from the row's ``train.mask_column`` or
  from ``train.mask_file`` (``id`` + mask column, joined on the example id). A length mismatch is an
  error naming the example: a mask made with another tokenizer or template must not train silently.
* prefix (UPFT): ``int(prefix_fraction * N)`` examples, drawn with ``random.Random(seed)``, get
  ``prefix_instruction`` appended to their prompt and their response cut to ``prefix_tokens``
  tokens + EOS (UPFT's code cuts whitespace words, then tokens, then writes EOS last; cutting tokens
  directly gives the same sequence without the word step). The others keep the full response.

Sequences longer than ``max_length`` keep the whole prompt and the first response tokens; examples
whose prompt alone fills ``max_length``, or that are left with no loss token (a CFT mask with no
critical token), are dropped and counted. Token ids are kept as numpy arrays and assembled into one
Arrow table, so memory stays ~9 bytes per token rather than a Python object per token.
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from reasonsift.config import DataConfig, TrainConfig
from reasonsift.data.formats import iter_rows, rejected_entry, rows_at
from reasonsift.data.load import iter_examples, parse_field_overrides, warn_coercions
from reasonsift.data.records import DataError, Example
from reasonsift.data.render import IGNORE_INDEX, build_labels, context_overflow, tokenize_example

logger = logging.getLogger(__name__)


def _as_mask(value: Any, example_id: str, source: str) -> np.ndarray:
    """A 0/1 (or bool) sequence as a bool array, or DataError naming the example."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        arr = np.asarray([None])
    if arr.ndim != 1 or arr.dtype.kind not in "biuf" or not np.isin(arr, (0, 1)).all():
        raise DataError(f"example {example_id!r}: {source} must be a list of 0/1 per response token")
    return arr.astype(bool)


def load_mask_file(path: str | Path, mask_column: str) -> dict[str, np.ndarray]:
    """``{example id: bool mask}`` from a .jsonl or .parquet file with ``id`` and ``mask_column``."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: mask file not found")
    if not path.name.endswith((".jsonl", ".ndjson", ".parquet")):
        raise DataError(f"{path}: mask file must be .jsonl or .parquet")
    masks: dict[str, np.ndarray] = {}
    for raw in iter_rows(path):
        if raw.row is None:
            raise DataError(f"{raw.where}: {raw.error}")
        if "id" not in raw.row or mask_column not in raw.row:
            raise DataError(f"{raw.where}: expected an object with 'id' and '{mask_column}' (columns: "
                            f"{', '.join(raw.row)})")
        example_id = str(raw.row["id"])
        if example_id in masks:
            raise DataError(f"{raw.where}: duplicate id {example_id!r} in the mask file")
        masks[example_id] = _as_mask(raw.row[mask_column], example_id, f"'{mask_column}' in {path.name}")
    return masks


def collect_examples(data: str, data_cfg: DataConfig, cfg: TrainConfig,
                     rejected_rows: list[dict[str, Any]] | None = None,
                     coerced: dict[str, Any] | None = None,
                     ) -> tuple[list[tuple[Example, np.ndarray | None]], int]:
    """Read DATA: ``([(example, cft mask or None)], rejected row count)``; the rejected rows
    themselves (``rejected_entry``) are appended to ``rejected_rows`` and rows with fields converted
    to text tallied in ``coerced``, when given."""
    file_masks = load_mask_file(cfg.mask_file, cfg.mask_column) if cfg.objective == "cft" and cfg.mask_file else None
    out, rejected, missing = [], 0, []
    for raw, ex, reason in iter_examples(data, parse_field_overrides(data_cfg.fields), data_cfg.split,
                                         data_cfg.skip_bad_rows, data_cfg.limit, coerced):
        if ex is None:
            rejected += 1
            if rejected_rows is not None:
                rejected_rows.append(rejected_entry(raw, reason or "bad row"))
            continue
        mask = None
        if cfg.objective == "cft":
            if file_masks is not None:
                mask = file_masks.get(ex.id)
                if mask is None:
                    missing.append(ex.id)
                    continue
            elif raw.row is not None and raw.row.get(cfg.mask_column) is not None:
                mask = _as_mask(raw.row[cfg.mask_column], ex.id, f"'{cfg.mask_column}' ({raw.where})")
            else:
                raise DataError(f"{raw.where}: objective cft needs a critical-token mask: the row has no "
                                f"'{cfg.mask_column}' column (train.mask_column) and no train.mask_file is set")
        out.append((ex, mask))
    if missing:
        raise DataError(f"{cfg.mask_file}: no mask for {len(missing)} example(s) of {data}, "
                        f"e.g. id {missing[0]!r} (masks are joined on the example id)")
    return out, rejected


def choose_prefix_examples(n: int, fraction: float, seed: int) -> set[int]:
    """Indices of the ``int(fraction * n)`` examples trained on their prefix only (UPFT)."""
    return set(random.Random(seed).sample(range(n), int(fraction * n)))


def encode_example(tokenizer: Any, ex: Example, mask: np.ndarray | None, cfg: TrainConfig,
                   system_prompt: str | None, prefix: bool) -> dict[str, Any]:
    """Token ids and labels of one example (already cut to ``max_length``).

    Returns a dict with ``input_ids`` and ``labels`` ((T,) int32 arrays, or None when the prompt alone
    fills ``max_length``), ``n_prompt``, ``n_response`` (full response length, eos included) and
    ``truncated``.
    """
    if prefix:
        ex = replace(ex, prompt=ex.prompt + cfg.prefix_instruction)
    tok = tokenize_example(tokenizer, ex, system_prompt)
    response = tok.response_ids
    if mask is not None and len(mask) != tok.n_response_tokens:
        raise DataError(f"example {ex.id!r}: critical mask has {len(mask)} entries but the response has "
                        f"{tok.n_response_tokens} tokens (eos included) with this tokenizer and template")
    if prefix and len(response) > cfg.prefix_tokens + 1:
        response = response[:cfg.prefix_tokens] + [tokenizer.eos_token_id]  # UPFT: L tokens, then EOS
    n_prompt = len(tok.prompt_ids)
    room = cfg.max_length - n_prompt
    if room <= 0:
        return {"input_ids": None, "labels": None, "n_prompt": n_prompt, "n_response": tok.n_response_tokens,
                "truncated": True}
    truncated = len(response) > room
    response = response[:room]
    ids = torch.tensor(tok.prompt_ids + response, dtype=torch.long)  # (T,)
    token_mask = None if mask is None else torch.from_numpy(mask[:len(response)].copy())  # (T - P,)
    labels = build_labels(ids, n_prompt, token_mask)  # (T,)
    return {"input_ids": ids.numpy().astype(np.int32), "labels": labels.numpy().astype(np.int32),
            "n_prompt": n_prompt, "n_response": tok.n_response_tokens, "truncated": truncated}


def _ragged(arrays: list[np.ndarray], dtype: type) -> pa.Array:
    """A list<dtype> Arrow column from per-row numpy arrays (no per-token Python objects)."""
    lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    values = pa.array(np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype))
    if offsets[-1] < 2**31:
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)
    return pa.LargeListArray.from_arrays(pa.array(offsets), values)


def build_train_dataset(data: str, tokenizer: Any, data_cfg: DataConfig, cfg: TrainConfig,
                        model_positions: int | None = None,
                        rejected_rows: list[dict[str, Any]] | None = None) -> tuple[Any, dict]:
    """The tokenized ``datasets.Dataset`` for ``cfg.objective`` and its token/example accounting.

    A row whose prompt leaves no response token within ``model_positions`` is a bad row
    (``context_overflow``, as in every stage): an error naming it, or under ``--skip-bad-rows`` one
    more rejected row. Rejected rows are appended to ``rejected_rows`` when given.
    """
    import datasets

    if cfg.objective == "prefix" and tokenizer.eos_token_id is None:
        raise DataError("objective prefix needs a tokenizer with an eos token (UPFT ends each prefix with EOS)")
    rejected_rows = [] if rejected_rows is None else rejected_rows
    coerced: dict[str, Any] = {"rows": 0, "fields": {}}
    examples, rejected = collect_examples(data, data_cfg, cfg, rejected_rows, coerced)
    warn_coercions(coerced, data)
    overflow: dict[int, str] = {}  # row index -> reason
    prefix_idx = choose_prefix_examples(len(examples), cfg.prefix_fraction, cfg.seed) \
        if cfg.objective == "prefix" else set()
    ids_col, labels_col = [], []
    stats = {"examples_read": len(examples), "rejected_rows": rejected, "dropped_prompt_too_long": 0,
             "dropped_no_loss_tokens": 0, "truncated": 0, "prefix_examples": 0, "coerced": coerced}
    full_response = in_response = loss_tokens = 0
    for i, (ex, mask) in enumerate(examples):
        enc = encode_example(tokenizer, ex, mask, cfg, data_cfg.system_prompt, i in prefix_idx)
        reason = context_overflow(enc["n_prompt"], 1, model_positions)
        if reason:
            overflow[ex.row_index] = reason
            continue
        if enc["input_ids"] is None:
            stats["dropped_prompt_too_long"] += 1
            continue
        n_loss = int((enc["labels"] != IGNORE_INDEX).sum())
        if n_loss == 0:
            stats["dropped_no_loss_tokens"] += 1
            continue
        stats["truncated"] += enc["truncated"]
        stats["prefix_examples"] += i in prefix_idx
        in_response += len(enc["input_ids"]) - enc["n_prompt"]
        full_response += enc["n_response"]
        loss_tokens += n_loss
        ids_col.append(enc["input_ids"])
        labels_col.append(enc["labels"])
    if overflow:
        raws = rows_at(data, set(overflow), data_cfg.split)
        if not data_cfg.skip_bad_rows:
            first = min(overflow)
            where = raws[first].where if first in raws else f"row {first}"
            raise DataError(f"{where}: {overflow[first]} (use --skip-bad-rows to quarantine bad rows)")
        rejected_rows += [rejected_entry(raws[i], overflow[i]) for i in sorted(overflow) if i in raws]
        rejected_rows.sort(key=lambda r: r["row_index"])
        stats["rejected_rows"] += len(overflow)
    if not ids_col:
        raise DataError(f"{data}: no example left to train on ({stats})")
    input_tokens = int(sum(len(a) for a in ids_col))
    stats.update(examples=len(ids_col), tokens={
        "input": input_tokens, "response_in_input": in_response, "response_full": full_response,
        "loss": loss_tokens,
    }, loss_token_fraction=loss_tokens / max(in_response, 1),
        loss_token_fraction_of_full_responses=loss_tokens / max(full_response, 1))
    table = pa.table({"input_ids": _ragged(ids_col, np.int32), "labels": _ragged(labels_col, np.int32),
                      "attention_mask": _ragged([np.ones(len(a), np.int8) for a in ids_col], np.int8)})
    for key in ("rejected_rows", "dropped_prompt_too_long", "dropped_no_loss_tokens", "truncated"):
        if stats[key]:
            logger.warning("%s: %d example(s) %s", data, stats[key], key.replace("_", " "))
    return datasets.Dataset(table), stats

