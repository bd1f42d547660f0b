"""The one per-token loss of reasonsift, shared by scoring and training.

Per-token negative log-likelihood in natural log, computed in fp32 as ``logsumexp(logits) -
logits[target]``. Scoring calls ``token_nll`` on the hidden states of the scored positions only (the
LM head is applied in chunks, so the full [tokens x vocab] fp32 logits never exist, and the
log-sum-exp runs in place on them: ``_nll_inplace``, the no-autograd twin of ``nll_from_logits``);
training asks the model for logits at its loss positions only and calls ``masked_nll`` on them
(``reasonsift.training.objectives``); ``masked_token_nll`` is its shifted full-logits form, used by
the reference scoring path and the direction fine-tune. All compute the same fp32 formula, so the loss
a selection decision is based on is exactly the loss training minimises (a test holds the twins
equal).
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


def _nll_inplace(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``nll_from_logits`` for fp32 logits that may be overwritten (no autograd): (n, V) -> (n,).

    The same log-sum-exp with the max subtracted, done in place: no second (n, V) temporary, which
    on a CPU makes the log-sum-exp ~1.8x faster at a 152k vocabulary (BENCHMARKS.md).
    """
    target = logits.gather(-1, targets[:, None]).squeeze(-1)  # (n,), read before the in-place ops
    top = logits.amax(-1, keepdim=True)  # (n, 1)
    total = logits.sub_(top).exp_().sum(-1)  # (n,)
    return total.log_() + top.squeeze(-1) - target


@torch.inference_mode()
def token_nll(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
              bias: torch.Tensor | None = None, chunk: int = 4096,
              workspace: torch.Tensor | None = None) -> torch.Tensor:
    """NLL of ``targets`` given final hidden states, with the LM head applied chunk by chunk.

    Args:
        hidden: (n, d) hidden states of the positions whose *next* token is scored.
        weight: (V, d) LM-head weight; bias: optional (V,).
        targets: (n,) next-token ids.
        chunk: rows per LM-head GEMM; peak extra memory is chunk x V fp32.
        workspace: optional fp32 (rows, V) buffer for the chunk logits, reused across chunks and
            calls (CPU only). A fresh multi-hundred-MB tensor per chunk is returned to the OS when
            freed, and faulting its pages back in costs about as much as the GEMM itself.
    Returns:
        (n,) fp32 NLL (inference only: the logits are overwritten in place).
    """
    out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
    on_cuda = hidden.device.type == "cuda"
    w32 = None if on_cuda else weight.float()  # CPU: one fp32 copy of the head, reused per chunk
    for s in range(0, hidden.shape[0], chunk):
        h = hidden[s:s + chunk]
        if on_cuda:
            # bf16 GEMM speed with an fp32 result (aten::mm.dtype); no bf16-rounded logits.
            logits = torch.mm(h, weight.T, out_dtype=torch.float32)  # (c, V)
        elif workspace is not None and workspace.shape[0] >= h.shape[0]:
            logits = torch.mm(h.float(), w32.T, out=workspace[: h.shape[0]])  # (c, V)
        else:
            logits = h.float() @ w32.T  # (c, V)
        if bias is not None:
            logits += bias.float()
        out[s:s + chunk] = _nll_inplace(logits, targets[s:s + chunk])
    return out


def masked_nll(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token NLL of already aligned targets, zero where a target is ``IGNORE_INDEX``.

    Args:
        logits: (..., V) logits of the positions that predict ``targets``;
        targets: (...) next-token ids, ``IGNORE_INDEX`` where no loss is taken.
    Returns:
        nll: (...) fp32; mask: (...) bool, True where a loss is taken.
    """
    mask = targets != IGNORE_INDEX
    safe = targets.masked_fill(~mask, 0)  # any valid id; its loss is zeroed below
    nll = nll_from_logits(logits.reshape(-1, logits.shape[-1]), safe.reshape(-1))
    return nll.view(targets.shape) * mask, mask


def masked_token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shifted per-token NLL of a causal LM batch: ``masked_nll`` of position t predicting labels[:, t+1].

    Args:
        logits: (B, T, V) model outputs; labels: (B, T) unshifted labels.
    Returns:
        nll: (B, T-1) fp32; mask: (B, T-1) bool, True where a loss is taken.
    """
    return masked_nll(logits[:, :-1, :], labels[:, 1:])
