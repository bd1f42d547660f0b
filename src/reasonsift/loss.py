"""The one per-token loss of reasonsift, shared by scoring and training.

Per-token negative log-likelihood in natural log, computed in fp32 as ``logsumexp(logits) -
logits[target]``. Scoring calls ``token_nll`` on the hidden states of the scored positions only (the
LM head is applied in chunks, so the full [tokens x vocab] fp32 logits never exist); training asks
the model for logits at its loss positions only and calls ``nll_from_logits`` on them
(``reasonsift.training.objectives``); ``masked_token_nll`` is the plain full-logits form, used by the
reference scoring path and the direction fine-tune. All end in ``nll_from_logits``, so the loss a
selection decision is based on is exactly the loss training minimises.
"""

from __future__ import annotations

import torch

from reasonsift.data.render import IGNORE_INDEX


def nll_from_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row NLL. logits: (n, V) any float dtype; targets: (n,) int64. Returns (n,) fp32.

    Upcasting before the log-sum-exp matters: bf16 logits carry ~0.01-nat rounding per token
    (scoring-performance.md §2, trap 2).
    """
    logits = logits.float()
    return torch.logsumexp(logits, dim=-1) - logits.gather(-1, targets[:, None]).squeeze(-1)


def token_nll(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
              bias: torch.Tensor | None = None, chunk: int = 4096) -> torch.Tensor:
    """NLL of ``targets`` given final hidden states, with the LM head applied chunk by chunk.

    Args:
        hidden: (n, d) hidden states of the positions whose *next* token is scored.
        weight: (V, d) LM-head weight; bias: optional (V,).
        targets: (n,) next-token ids.
        chunk: rows per LM-head GEMM; peak extra memory is chunk x V fp32.
    Returns:
        (n,) fp32 NLL.
    """
    out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
    on_cuda = hidden.device.type == "cuda"
    w32 = None if on_cuda else weight.float()  # CPU: one fp32 copy of the head, reused per chunk
    for s in range(0, hidden.shape[0], chunk):
        h = hidden[s:s + chunk]
        if on_cuda:
            # bf16 GEMM speed with an fp32 result (aten::mm.dtype); no bf16-rounded logits.
            logits = torch.mm(h, weight.T, out_dtype=torch.float32)  # (c, V)
        else:
            logits = h.float() @ w32.T  # (c, V)
        if bias is not None:
            logits = logits + bias.float()
        out[s:s + chunk] = nll_from_logits(logits, targets[s:s + chunk])
    return out


def masked_token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shifted per-token NLL of a causal LM batch, zero where labels are ``IGNORE_INDEX``.

    Args:
        logits: (B, T, V) model outputs; labels: (B, T) unshifted labels.
    Returns:
        nll: (B, T-1) fp32, position t is the loss of predicting labels[:, t+1];
        mask: (B, T-1) bool, True where a loss is taken.
    """
    shift_logits = logits[:, :-1, :]  # (B, T-1, V)
    shift_labels = labels[:, 1:]  # (B, T-1)
    mask = shift_labels != IGNORE_INDEX
    safe = shift_labels.masked_fill(~mask, 0)
    nll = nll_from_logits(shift_logits.reshape(-1, shift_logits.shape[-1]), safe.reshape(-1))
    return nll.view(shift_labels.shape) * mask, mask
