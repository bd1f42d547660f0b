"""Obtain a fine-tuning direction θ_f − θ₀ when the user has no θ_f (``score.direction=finetune``).

TEMP needs θ_f, the end of a fine-tuning run on the pool (for M23K the paper trains a full SFT run
first). Without one, reasonsift takes a short SFT on a seeded random sample of the pool: a few
dozen AdamW steps on the same rendering and the same per-token loss that scoring uses. It is a
cheaper, noisier estimate of where fine-tuning goes; the report records that it was used.
"""

from __future__ import annotations

import random

import torch

from reasonsift.data.render import IGNORE_INDEX, Tokenized, build_labels
from reasonsift.loss import masked_token_nll


def _batch(items: list[Tokenized], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (B, T) input_ids, attention_mask and labels (prompt and padding ignored)."""
    width = max(it.length for it in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full_like(ids, IGNORE_INDEX)
    attn = torch.zeros_like(ids)
    for b, it in enumerate(items):
        seq = it.prompt_ids + it.response_ids
        ids[b, : len(seq)] = torch.tensor(seq)
        attn[b, : len(seq)] = 1
        labels[b, : len(seq)] = build_labels(ids[b, : len(seq)], len(it.prompt_ids))
    return ids.to(device), attn.to(device), labels.to(device)


def finetune_direction(model: torch.nn.Module, items: list[Tokenized], steps: int, lr: float, seed: int,
                       batch_size: int = 8, pad_id: int = 0, micro_batch: int = 1) -> dict[str, torch.Tensor]:
    """Run a short SFT from the model's current weights and return θ_f (a state-dict copy).

    Each step's batch is run ``micro_batch`` examples at a time with gradients accumulated, the loss
    normalised by the whole batch's response tokens, so the step is the same as one batched forward
    but activation memory is that of ``micro_batch`` examples (8 MATH examples at once took 21 GB
    and were killed on a 24 GB machine for SmolLM2-135M; a 7B model needs this even more). The
    default, one at a time, trades a few seconds of a short run for never running out of memory.
    The model's own weights are restored afterwards (the caller keeps θ₀ in place).
    """
    if not items:
        raise ValueError("no examples to fine-tune the direction on")
    device = next(model.parameters()).device
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    with torch.enable_grad():
        for _ in range(steps):
            batch = [items[rng.randrange(len(items))] for _ in range(batch_size)]
            size = max(1, micro_batch)
            chunks = [_batch(batch[i:i + size], pad_id, device) for i in range(0, len(batch), size)]
            # the whole batch's loss tokens (labels after the causal shift), so the chunks sum to one step
            total = max(1, sum(int((labels[:, 1:] != IGNORE_INDEX).sum()) for _, _, labels in chunks))
            opt.zero_grad(set_to_none=True)
            for ids, attn, labels in chunks:
                logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits  # (b, T, V)
                nll, _ = masked_token_nll(logits, labels)
                (nll.sum() / total).backward()
                del logits, nll
            opt.step()
    model.eval()
    with torch.no_grad():
        target = {n: p.detach().clone() for n, p in model.named_parameters()}
        for n, p in model.named_parameters():
            p.copy_(start[n])
    return target
