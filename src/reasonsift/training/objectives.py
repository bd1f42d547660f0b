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

Positions: the losses take the logits of the **loss positions only** — the positions t whose next
label ``labels[:, t+1]`` carries loss, as ``loss_positions`` picks them — so the trainer can ask the
model for just those rows (``logits_to_keep``) instead of the full (B, T, V) logits, most of which
belong to prompt tokens (and, under CFT, to non-critical ones).

Why a per-token mean matters for sparse masks: CFT keeps < 12% of response tokens. With the mean,
each trained token gets the same gradient scale as a token under plain SFT, so the usual SFT
learning rate stays a sensible starting point; the total update is smaller only because fewer tokens
pull on the weights. The alternative, "sum over critical tokens / all response tokens" (i.e. SFT's
normaliser with the extra tokens zeroed), shrinks every step ~8x at a 12% mask — the same as an
~8x lower learning rate. The CFT paper does not report its normalisation
(token-objectives.md §2.1, §4.3); if you compare against it, sweep the learning rate.

Prefix (UPFT) needs no per-sequence weighting option: every example contributes the same
``prefix_tokens`` (+ EOS) loss tokens unless its response is shorter, so the token mean is already
(nearly) the per-sequence mean UPFT describes; only responses shorter than the prefix weigh less.
"""

from __future__ import annotations

import torch

from reasonsift.config import OBJECTIVES
from reasonsift.data.render import IGNORE_INDEX
from reasonsift.loss import masked_nll


def loss_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The positions whose next token carries loss in any row of the batch, and those targets.

    One index for the whole batch (the union over rows) because a 1-D ``logits_to_keep`` is what
    every HF causal LM accepts; a row whose own loss starts later gets IGNORE_INDEX targets there.

    Args:
        labels: (B, T) unshifted labels, ``IGNORE_INDEX`` where no loss is taken.
    Returns:
        keep: (K,) int64, sorted positions t < T-1 with ``labels[b, t+1] != IGNORE_INDEX`` for some b;
        targets: (B, K) ``labels[:, keep + 1]``: the token the logits at ``keep`` must predict.
    """
    keep = (labels[:, 1:] != IGNORE_INDEX).any(dim=0).nonzero().squeeze(-1)  # (K,)
    return keep, labels[:, keep + 1]


def per_token_loss(logits: torch.Tensor, targets: torch.Tensor, objective: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token loss of ``objective``, zero where no loss is taken.

    Args:
        logits: (..., V) logits of the positions that predict ``targets`` (already shifted);
        targets: (...) next-token ids, ``IGNORE_INDEX`` where no loss is taken.
    Returns:
        loss: (...) fp32; mask: (...) bool, True where a loss is taken.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}")
    nll, mask = masked_nll(logits, targets)
    if objective == "dft":
        # p = exp(-nll) is the model's probability of the target; detached so the gradient is
        # p * grad(nll) (a re-weighting), not the gradient of p * nll.
        nll = nll * torch.exp(-nll).detach()
    return nll, mask


def objective_loss(logits: torch.Tensor, targets: torch.Tensor, objective: str,
                   num_items: torch.Tensor | float | None = None) -> torch.Tensor:
    """Scalar training loss: sum of per-token losses / number of loss tokens.

    Args:
        logits: (B, K, V) logits at the loss positions; targets: (B, K) their next tokens
            (``loss_positions`` gives both from full-sequence labels).
        objective: "sft", "cft", "dft" or "prefix".
        num_items: loss tokens in the whole accumulated batch (HF's ``num_items_in_batch``); None
            means the loss tokens of this batch.
    Returns:
        () fp32 loss; a batch without loss tokens gives 0 (never 0/0).
    """
    loss, mask = per_token_loss(logits, targets, objective)
    count = mask.sum() if num_items is None else num_items
    count = torch.as_tensor(count, device=loss.device, dtype=torch.float32).clamp(min=1)
    return loss.sum() / count
