"""Token-level training losses, all built on the one per-token NLL of ``reasonsift.loss``.

The objectives differ in two places only:

* **Which tokens carry loss** is decided by the labels (``IGNORE_INDEX`` elsewhere), built once in
  ``reasonsift.data.render.build_labels``: sft = every response token, cft = the critical response
  tokens, prefix = the first ``prefix_tokens`` response tokens + EOS (UPFT). Here they are the same
  loss: the mean NLL over loss tokens.
* **How each token is weighted**: dft multiplies each token's NLL by its own probability
  p = exp(-nll), detached (DFT, arXiv 2508.05629; TRL's ``loss_type="dft"`` computes the same).

Normalisation: the loss is the **mean over the loss tokens of the whole (accumulated) batch**:
``sum(per-token loss) / num_items``, where ``num_items`` is the number of loss tokens in all
micro-batches of one optimizer step (and all ranks), which the HF Trainer passes as
``num_items_in_batch``. Each micro-batch contributes its *sum* divided by that global count, so the
accumulated gradient equals the gradient of one big batch; dividing each micro-batch by its own
token count instead (then averaging micro-batches) would weight a token in a short micro-batch more
than one in a long micro-batch. This is TRL's and HF's normalisation, so ``sft`` here trains exactly
like TRL's default SFT. Without ``num_items`` (evaluation, direct calls) the count of this batch is used.

Why a per-token mean matters for sparse masks: CFT keeps < 12% of response tokens. With the mean,
each trained token gets the same gradient scale as a token under plain SFT, so the usual SFT
learning rate stays a sensible starting point; the total update is smaller only because fewer tokens
pull on the weights. The alternative, "sum over critical tokens / all response tokens" (i.e. SFT's
normaliser with the extra tokens zeroed), shrinks every step ~8x at a 12% mask — the same as an
~8x lower learning rate. The CFT paper does not report its normalisation
(token-objectives.md §2.1, §4.3); if you compare against it, sweep the learning rate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from reasonsift.loss import masked_token_nll

OBJECTIVES = ("sft", "cft", "dft", "prefix")


def per_token_loss(logits: torch.Tensor, labels: torch.Tensor, objective: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token loss of ``objective``, zero where no loss is taken.

    Args:
        logits: (B, T, V) model outputs; labels: (B, T) unshifted, ``IGNORE_INDEX`` where no loss.
    Returns:
        loss: (B, T-1) fp32; mask: (B, T-1) bool, True where a loss is taken.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}")
    nll, mask = masked_token_nll(logits, labels)  # (B, T-1) fp32, zero at ignored positions
    if objective == "dft":
        # p = exp(-nll) is the model's probability of the target; detached so the gradient is
        # p * grad(nll) (a re-weighting), not the gradient of p * nll.
        nll = nll * torch.exp(-nll).detach()
    return nll, mask


def objective_loss(logits: torch.Tensor, labels: torch.Tensor, objective: str,
                   num_items: torch.Tensor | float | None = None) -> torch.Tensor:
    """Scalar training loss: sum of per-token losses / number of loss tokens.

    Args:
        logits: (B, T, V); labels: (B, T) unshifted.
        objective: "sft", "cft", "dft" or "prefix".
        num_items: loss tokens in the whole accumulated batch (HF's ``num_items_in_batch``); None
            means the loss tokens of this batch.
    Returns:
        () fp32 loss; a batch without loss tokens gives 0 (never 0/0).
    """
    loss, mask = per_token_loss(logits, labels, objective)
    count = mask.sum() if num_items is None else num_items
    count = torch.as_tensor(count, device=loss.device, dtype=torch.float32).clamp(min=1)
    return loss.sum() / count


def make_compute_loss_func(objective: str) -> Callable[..., torch.Tensor]:
    """The ``compute_loss_func(outputs, labels, num_items_in_batch)`` hook for the HF/TRL trainer."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}")

    def compute_loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        return objective_loss(outputs.logits, labels, objective, num_items_in_batch)

    return compute_loss
