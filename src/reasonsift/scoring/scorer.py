"""Per-token NLL of the first N response tokens: a fast path and the plain reference path.

Fast path (scoring-performance.md §2, §8):
- sequences are sorted by length and grouped into bins of ``batch_tokens``;
- with a varlen attention kernel (FlashAttention) a bin is one padding-free packed row, with
  ``position_ids`` restarting at 0 per sequence, ``attention_mask=None`` and ``use_cache=False`` —
  the combination under which transformers isolates the sequences (with a cache it silently
  attends across them: trap 1, 0.49 nats of error). Without one (SDPA, eager) the packed row would
  need a dense (T x T) mask, so a bin is a length-sorted, right-padded batch instead;
- the LM head runs only on the hidden states of scored positions, in chunks, with an fp32
  log-sum-exp (``reasonsift.loss.token_nll``): no [tokens x vocab] logits;
- on out-of-memory the token budget is halved and the rest re-planned, instead of crashing.

The reference path is what a user would write (one ``model(input_ids)`` per example) and stays as
the test oracle; ``self_check`` compares both on real data before a run trusts the fast path.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from reasonsift.data.render import Tokenized, build_labels
from reasonsift.loss import masked_token_nll, token_nll

logger = logging.getLogger(__name__)


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


def uses_packing(model: torch.nn.Module) -> bool:
    """Pack sequences into one row only when attention has a varlen kernel (FlashAttention).

    Under SDPA or eager attention a packed row gets a dense (T x T) block-diagonal mask, so attention
    costs (Σ L)² instead of Σ L²; there, length-sorted padded batches are cheaper (sorting keeps the
    padding small) and are used instead.
    """
    return "flash" in str(getattr(model.config, "_attn_implementation", "") or "")


def _hidden_packed(decoder: torch.nn.Module, seqs: list[list[int]], device: torch.device
                   ) -> tuple[torch.Tensor, list[int]]:
    """One padding-free row; returns (T_total, d) hidden states and each sequence's start row."""
    input_ids = torch.tensor([[t for s in seqs for t in s]], device=device)  # (1, T_total)
    position_ids = torch.tensor([[p for s in seqs for p in range(len(s))]], device=device)  # restarts per sequence
    hidden = decoder(input_ids=input_ids, position_ids=position_ids, attention_mask=None,
                     use_cache=False).last_hidden_state[0]  # (T_total, d)
    return hidden, np.cumsum([0] + [len(s) for s in seqs[:-1]]).tolist()


def _hidden_padded(decoder: torch.nn.Module, seqs: list[list[int]], device: torch.device
                   ) -> tuple[torch.Tensor, list[int]]:
    """Right-padded (B, L) batch; returns the hidden states flattened to (B*L, d) and start rows.

    No attention mask: with right padding a causal model's real positions never attend to the pads
    after them, and only real positions are read. Without a mask SDPA takes its causal kernel
    instead of a masked one (the padded mask cost ~16% of CPU scoring time); ``self_check`` would
    catch a model for which this does not hold.
    """
    width = max(len(s) for s in seqs)
    ids = torch.zeros((len(seqs), width), dtype=torch.long)  # (B, L)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = torch.tensor(s)
    hidden = decoder(input_ids=ids.to(device), attention_mask=None, use_cache=False).last_hidden_state  # (B, L, d)
    return hidden.reshape(-1, hidden.shape[-1]), [b * width for b in range(len(seqs))]


def decoder_hidden(model: torch.nn.Module, seqs: list[list[int]], packed: bool) -> tuple[torch.Tensor, list[int]]:
    """Last hidden states of a bin, flattened to (rows, d), and the row where each sequence starts."""
    decoder, device = model.get_decoder(), next(model.parameters()).device
    return (_hidden_packed if packed else _hidden_padded)(decoder, seqs, device)


@torch.inference_mode()
def score_bin(model: torch.nn.Module, items: list[Tokenized], chunk: int = 4096, packed: bool = True,
              workspace: torch.Tensor | None = None) -> list[np.ndarray]:
    """Score one bin (packed row or padded batch); one (len(response_ids),) fp32 NLL array per item.

    ``workspace``: a reusable (rows, V) fp32 buffer for the LM-head logits (see ``token_nll``).
    """
    device = next(model.parameters()).device
    head = model.get_output_embeddings()
    seqs = [it.prompt_ids + it.response_ids for it in items]
    hidden, starts = decoder_hidden(model, seqs, packed)
    rows, targets, counts = [], [], []
    for it, start in zip(items, starts):
        p, n = len(it.prompt_ids), len(it.response_ids)
        # Row t predicts token t+1: response token j is predicted at row start + p - 1 + j.
        rows.extend(range(start + p - 1, start + p - 1 + n))
        targets.extend(it.response_ids)
        counts.append(n)
    scored = hidden[torch.tensor(rows, device=device)]  # (n_scored, d): the LM head runs on these only
    nll = token_nll(scored, head.weight, torch.tensor(targets, device=device),
                    getattr(head, "bias", None), chunk=chunk, workspace=workspace).cpu().numpy()  # (n_scored,)
    return list(np.split(nll, np.cumsum(counts)[:-1]))


def padded_plan(lengths: list[int], batch_tokens: int, max_examples: int) -> list[list[int]]:
    """Consecutive groups of the length-sorted items whose padded size (count x longest) fits."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    for i in order:
        if bins and len(bins[-1]) < max_examples and (len(bins[-1]) + 1) * lengths[bins[-1][0]] <= batch_tokens:
            bins[-1].append(i)
        else:
            bins.append([i])
    return bins


def default_batch_tokens(device: torch.device) -> int:
    """Tokens per forward when the config says 0 (auto): 16,384 on a GPU, 2,048 on a CPU.

    A GPU wants large GEMMs; on a CPU a bin's activations should stay near the caches: on 2 cores
    2,048-token bins score ~1.6x faster than 16,384-token ones (BENCHMARKS.md, score_throughput).
    """
    return 16384 if device.type == "cuda" else 2048


def score_items(model: torch.nn.Module, items: list[Tokenized], batch_tokens: int = 0,
                max_examples: int = 256, chunk: int = 4096, progress: bool = False,
                packed: bool | None = None) -> list[np.ndarray]:
    """Score many items in bins of ``batch_tokens``; on out-of-memory, halve the budget and re-plan.

    ``batch_tokens``: tokens per forward; 0 picks ``default_batch_tokens`` for the model's device.
    ``packed``: one padding-free row per bin (None: when the model has a varlen attention kernel),
    else length-sorted padded batches whose padded size fits the budget.

    The back-off is sticky: once a bin did not fit, every later bin uses the smaller budget too,
    instead of failing again on each one.
    """
    out: list[np.ndarray | None] = [None] * len(items)
    lengths = [it.length for it in items]
    device = next(model.parameters()).device
    batch_tokens = batch_tokens or default_batch_tokens(device)
    packed = uses_packing(model) if packed is None else packed
    plan = pack_plan if packed else padded_plan
    pending = plan(lengths, batch_tokens, max_examples)
    workspace = None
    if device.type == "cpu" and pending:  # one logits buffer for every bin (CUDA's allocator caches)
        rows = max(sum(len(items[i].response_ids) for i in g) for g in pending)
        workspace = torch.empty(min(rows, chunk), model.get_output_embeddings().weight.shape[0])
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(lengths), unit="tok", unit_scale=True, desc="tokens in this unit", leave=False)
    while pending:
        group = pending.pop(0)
        try:
            results = score_bin(model, [items[i] for i in group], chunk, packed, workspace=workspace)
        except torch.OutOfMemoryError:
            if len(group) == 1:
                raise RuntimeError(f"out of memory on a single sequence of {lengths[group[0]]} tokens; "
                                   "lower score.long_tokens or score.lm_head_chunk") from None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            size = sum(lengths[i] for i in group) if packed else len(group) * max(lengths[i] for i in group)
            batch_tokens = max(1, size // 2)
            logger.warning("out of memory on a bin of %d sequences; token budget lowered to %d",
                           len(group), batch_tokens)
            rest = group + [i for g in pending for i in g]
            pending = [[rest[j] for j in b] for b in plan([lengths[i] for i in rest], batch_tokens, max_examples)]
            continue
        for i, r in zip(group, results):
            out[i] = r
        if bar is not None:
            bar.update(sum(lengths[i] for i in group))
    if bar is not None:
        bar.close()
    return out  # type: ignore[return-value]


@torch.inference_mode()
def score_reference(model: torch.nn.Module, items: list[Tokenized]) -> list[np.ndarray]:
    """The plain path: one full forward per example, NLL from the full logits. The test oracle."""
    device = next(model.parameters()).device
    out = []
    for it in items:
        seq = torch.tensor([it.prompt_ids + it.response_ids], device=device)  # (1, T)
        labels = build_labels(seq[0], len(it.prompt_ids))[None]  # (1, T)
        logits = model(input_ids=seq, use_cache=False).logits  # (1, T, V)
        nll, mask = masked_token_nll(logits, labels)
        out.append(nll[mask].float().cpu().numpy())
    return out


def self_check(model: torch.nn.Module, items: list[Tokenized], tol: float | None = None) -> float:
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
