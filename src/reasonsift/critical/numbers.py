"""The numbers-only mask (``critical.method=numbers``): an approximation of CFT's critical tokens.

A response token is marked when its text holds a digit; the final EOS is marked as in the
counterfactual mask (the model has to learn to stop). No rollouts, no forward pass: with
``critical.responses=dataset`` only the tokenizer is loaded. On math traces most counterfactually
critical tokens are digits of results (the synthetic world's test finds every digit of the answer
line critical), so this is the near-free baseline any CFT result should be compared with; it also
marks digits that do not matter (restated quantities) and misses critical words and operators.
"""

from __future__ import annotations

from typing import Any


def digit_tokens(tokenizer: Any) -> set[int]:
    """Ids whose text holds a digit (0-9 or any other Unicode decimal digit)."""
    pieces = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return {i for i, piece in enumerate(pieces) if any(ch.isdigit() for ch in piece)}


def numbers_mask(response_ids: list[int], digits: set[int], eos_ids: set[int]) -> list[int]:
    """0/1 per response token: 1 on tokens with a digit, and on a final EOS."""
    mask = [int(t in digits) for t in response_ids]
    if response_ids and response_ids[-1] in eos_ids:
        mask[-1] = 1
    return mask
