"""Per-token NLL of the first N response tokens: a fast packed path and the plain reference path.

Fast path (scoring-performance.md §2, §8):
- sequences are sorted by length and packed first-fit-decreasing into bins of ``batch_tokens``;
- one bin is one forward of the decoder on a single padding-free row, with ``position_ids``
  restarting at 0 per sequence, ``attention_mask=None`` and ``use_cache=False`` — the combination
  under which transformers builds a block-diagonal mask (with a cache it silently attends across
  sequences: trap 1, 0.49 nats of error);
- the LM head runs only on the hidden states of scored positions, in chunks, with an fp32
  log-sum-exp (``reasonsift.loss.token_nll``): no [tokens x vocab] logits;
- on out-of-memory the token budget is halved and the rest re-packed, instead of crashing.

The reference path is what a user would write (one ``model(input_ids)`` per example) and stays as
the test oracle; ``self_check`` compares both on real data before a run trusts the fast path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from reasonsift.loss import masked_token_nll, token_nll

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    """One sequence to score: the prompt and the response tokens whose NLL is wanted."""

    prompt_ids: list[int]
    response_ids: list[int]

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)


def pack_plan(lengths: list[int], batch_tokens: int, max_examples: int) -> list[list[int]]:
    """First-fit-decreasing bins of item indices, each ≤ batch_tokens (a longer item sits alone).

    Deterministic: ties are broken by index, so the same data gives the same bins every time.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        for b, free in enumerate(room):
            if lengths[i] <= free and len(bins[b]) < max_examples:
                bins[b].append(i)
                room[b] -= lengths[i]
                break
        else:
            bins.append([i])
            room.append(batch_tokens - lengths[i])
    return bins


# Without a varlen kernel (SDPA, eager) a packed row gets a dense (T x T) block-diagonal mask, so
# attention costs (Σ L)² instead of Σ L²: past a few thousand tokens per bin that dominates the
# forward. FlashAttention's varlen path has no such cost and keeps the full token budget.
DENSE_MASK_MAX_TOKENS = 2048


def packed_token_limit(model: torch.nn.Module, batch_tokens: int) -> int:
    """Tokens per packed bin for this model's attention implementation."""
    impl = str(getattr(model.config, "_attn_implementation", "sdpa") or "sdpa")
    return batch_tokens if "flash" in impl else min(batch_tokens, DENSE_MASK_MAX_TOKENS)


def _decoder_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    return model.get_decoder(), model.get_output_embeddings()


@torch.inference_mode()
def score_bin(model: torch.nn.Module, items: list[Item], chunk: int = 4096) -> list[np.ndarray]:
    """Score one packed bin; returns one (len(response_ids),) fp32 array of NLL per item."""
    device = next(model.parameters()).device
    ids, pos, rows, targets, counts = [], [], [], [], []
    offset = 0
    for it in items:
        seq = it.prompt_ids + it.response_ids
        ids.extend(seq)
        pos.extend(range(len(seq)))
        p, n = len(it.prompt_ids), len(it.response_ids)
        # Row t predicts token t+1: response token j is predicted at row offset + p - 1 + j.
        rows.extend(range(offset + p - 1, offset + p - 1 + n))
        targets.extend(it.response_ids)
        counts.append(n)
        offset += len(seq)
    input_ids = torch.tensor([ids], device=device)  # (1, T_total)
    position_ids = torch.tensor([pos], device=device)  # (1, T_total), restarting per sequence
    decoder, head = _decoder_and_head(model)
    hidden = decoder(input_ids=input_ids, position_ids=position_ids, attention_mask=None,
                     use_cache=False).last_hidden_state[0]  # (T_total, d)
    scored = hidden[torch.tensor(rows, device=device)]  # (n_scored, d)
    nll = token_nll(scored, head.weight, torch.tensor(targets, device=device),
                    getattr(head, "bias", None), chunk=chunk).cpu().numpy()  # (n_scored,)
    return list(np.split(nll, np.cumsum(counts)[:-1]))


def score_items(model: torch.nn.Module, items: list[Item], batch_tokens: int = 16384,
                max_examples: int = 256, chunk: int = 4096, progress: bool = False) -> list[np.ndarray]:
    """Score many items with packed bins; on out-of-memory, halve the token budget and re-pack.

    The back-off is sticky: once a bin did not fit, every later bin uses the smaller budget too,
    instead of failing again on each one.
    """
    out: list[np.ndarray | None] = [None] * len(items)
    lengths = [it.length for it in items]
    batch_tokens = packed_token_limit(model, batch_tokens)
    pending = pack_plan(lengths, batch_tokens, max_examples)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(lengths), unit="tok", desc="scoring", leave=False)
    while pending:
        group = pending.pop(0)
        try:
            results = score_bin(model, [items[i] for i in group], chunk)
        except torch.OutOfMemoryError:
            if len(group) == 1:
                raise RuntimeError(f"out of memory on a single sequence of {lengths[group[0]]} tokens; "
                                   "lower score.long_tokens or score.lm_head_chunk") from None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            batch_tokens = max(1, sum(lengths[i] for i in group) // 2)
            logger.warning("out of memory on a bin of %d sequences; token budget lowered to %d",
                           len(group), batch_tokens)
            rest = group + [i for g in pending for i in g]
            pending = [[rest[j] for j in b] for b in pack_plan([lengths[i] for i in rest], batch_tokens, max_examples)]
            continue
        for i, r in zip(group, results):
            out[i] = r
        if bar is not None:
            bar.update(sum(lengths[i] for i in group))
    if bar is not None:
        bar.close()
    return out  # type: ignore[return-value]


@torch.inference_mode()
def score_reference(model: torch.nn.Module, items: list[Item]) -> list[np.ndarray]:
    """The plain path: one full forward per example, NLL from the full logits. The test oracle."""
    device = next(model.parameters()).device
    out = []
    for it in items:
        seq = torch.tensor([it.prompt_ids + it.response_ids], device=device)  # (1, T)
        labels = seq.clone()
        labels[:, : len(it.prompt_ids)] = -100
        logits = model(input_ids=seq, use_cache=False).logits  # (1, T, V)
        nll, mask = masked_token_nll(logits, labels)
        out.append(nll[mask].float().cpu().numpy())
    return out


def self_check(model: torch.nn.Module, items: list[Item], tol: float | None = None) -> float:
    """Max |fast − reference| per-token NLL on a few packed items; raises if above ``tol``.

    Guards models whose architecture the fast path does not cover (logit soft-capping, scaled
    heads, attention that ignores packed position_ids): they fail loudly instead of silently
    scoring wrong. The default tolerance depends on the dtype (bf16 kernels differ by ~1e-2).
    """
    if not items:
        return 0.0
    dtype = next(model.parameters()).dtype
    tol = tol if tol is not None else (1e-3 if dtype == torch.float32 else 0.1)
    fast = score_items(model, items, batch_tokens=sum(it.length for it in items), max_examples=len(items))
    ref = score_reference(model, items)
    err = max(float(np.abs(a - b).max()) if len(a) else 0.0 for a, b in zip(fast, ref))
    if err > tol:
        raise RuntimeError(f"packed scoring differs from the plain forward by {err:.3g} nats on this model "
                           f"(tolerance {tol}); this architecture is not supported by the fast path")
    return err
