"""``score.direction=finetune``: micro-batching changes memory, not the step."""

from __future__ import annotations

import random

import torch

from reasonsift.data.render import Tokenized
from reasonsift.models import build_tiny_llama
from reasonsift.scoring.direction import finetune_direction


def test_micro_batches_give_the_batched_step() -> None:
    rng = random.Random(0)
    items = [Tokenized([rng.randrange(3, 60) for _ in range(rng.randint(2, 9))],
                       [rng.randrange(3, 60) for _ in range(rng.randint(1, 30))]) for _ in range(12)]
    model = build_tiny_llama(64, hidden_size=32, num_layers=2, seed=1).double()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    whole = finetune_direction(model, items, steps=3, lr=1e-2, seed=5, batch_size=6, micro_batch=6)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # θ₀ restored
    one = finetune_direction(model, items, steps=3, lr=1e-2, seed=5, batch_size=6, micro_batch=1)
    two = finetune_direction(model, items, steps=3, lr=1e-2, seed=5, batch_size=6, micro_batch=4)
    for name in whole:
        assert not torch.equal(whole[name], before[name]) or "norm" in name  # it moved
        torch.testing.assert_close(one[name], whole[name], rtol=0, atol=1e-10)
        torch.testing.assert_close(two[name], whole[name], rtol=0, atol=1e-10)
