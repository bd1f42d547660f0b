"""``ObjectiveTrainer``: TRL's ``SFTTrainer`` with reasonsift's objective as the loss (one method).

Why a subclass: TRL 1.16 deprecates ``compute_loss_func`` (removed in 2.0) and recommends
overriding ``compute_loss``; its ``compute_loss_func`` path also runs a second, no-grad forward per
micro-batch just for its entropy/accuracy metrics. This override runs one forward, asks the model
for the logits of the loss positions only (``logits_to_keep``, a forward kwarg, so it passes through
PEFT and DDP wrappers; prompt tokens and, under CFT, spans without critical tokens get no LM-head
row), and applies ``objectives.objective_loss``. TRL's entropy / token-accuracy metrics are not
logged; the Trainer still logs the loss.

Normalisation is the Trainer's: ``num_items_in_batch`` = loss tokens of all micro-batches of the
optimizer step over all ranks, and the loss is multiplied by the number of processes because DDP
averages gradients (as ``Trainer.compute_loss`` does). A model whose forward takes no ``**kwargs``
gets no ``num_items_in_batch`` from the Trainer; then each micro-batch is a mean over its own loss
tokens and the Trainer divides by the accumulation steps (HF's behaviour for such models). MoE
router auxiliary losses are not added (neither did the ``compute_loss_func`` path).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from trl import SFTTrainer

from reasonsift.training.objectives import loss_positions, objective_loss

logger = logging.getLogger(__name__)


class ObjectiveTrainer(SFTTrainer):
    """``SFTTrainer`` whose loss is ``objective_loss(..., self.objective)``; set ``objective`` after init."""

    objective: str = "sft"
    full_logits: bool = False  # set once a model rejected a tensor logits_to_keep

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None) -> Any:
        """The objective on the logits of the loss positions only (see the module docstring)."""
        labels = inputs["labels"]  # (B, T), IGNORE_INDEX where no loss
        model_inputs = {k: v for k, v in inputs.items() if k != "labels"}  # no labels: no HF loss over full logits
        keep, targets = loss_positions(labels)  # (K,), (B, K)
        try:
            outputs = model(**model_inputs, use_cache=False, **({} if self.full_logits else {"logits_to_keep": keep}))
        except TypeError:
            if self.full_logits:
                raise
            outputs = model(**model_inputs, use_cache=False)  # a second TypeError is not ours: it surfaces
            self.full_logits = True
            logger.warning("%s does not accept a tensor logits_to_keep: computing the logits of every position "
                           "(slower, and (B, T, V) logits in memory)", type(model).__name__)
        logits = outputs.logits  # (B, K, V); (B, T, V) when the model ignored logits_to_keep or full_logits
        if logits.shape[1] == labels.shape[1]:
            logits = logits[:, keep]
        elif logits.shape[1] != keep.numel():
            raise RuntimeError(f"{type(model).__name__} returned logits for {logits.shape[1]} positions, expected "
                               f"{keep.numel()} (logits_to_keep) or {labels.shape[1]} (all)")
        loss = objective_loss(logits, targets, self.objective, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # num_items_in_batch counts every rank's tokens and DDP averages gradients across ranks.
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        return (loss, outputs) if return_outputs else loss
