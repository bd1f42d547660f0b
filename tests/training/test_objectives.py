"""Each objective's loss against a plain-torch reference over the full sequence; the loss positions;
normalisation over accumulated batches."""

from __future__ import annotations

import pytest
import torch

from reasonsift.data.render import IGNORE_INDEX, build_labels
from reasonsift.training.objectives import loss_positions, objective_loss
from tests.training.conftest import full_sequence_loss

V = 13


def fixed_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded logits (2, 7, V), input ids (2, 7) and a hand-made loss mask over them."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 7, V, generator=gen) * 3
    ids = torch.randint(0, V, (2, 7), generator=gen)
    # row 0: prompt of 2 tokens, 5 response tokens, loss on response tokens 0, 2, 3 (a CFT-like mask)
    # row 1: prompt of 3 tokens, 3 response tokens, last position is padding
    trained = torch.tensor([[0, 0, 1, 0, 1, 1, 0], [0, 0, 0, 1, 1, 1, 0]], dtype=torch.bool)
    return logits, ids, trained


def reference_nll(logits: torch.Tensor, ids: torch.Tensor, trained: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token NLL of predicting ids[:, t+1] from logits[:, t], and the shifted mask, by hand."""
    logp = torch.log_softmax(logits[:, :-1].double(), dim=-1)  # (B, T-1, V)
    nll = -logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
    return nll, trained[:, 1:]


def labels_from(ids: torch.Tensor, trained: torch.Tensor) -> torch.Tensor:
    return torch.where(trained, ids, torch.full_like(ids, IGNORE_INDEX))


@pytest.mark.parametrize("objective", ["sft", "cft", "prefix"])
def test_masked_mean_objectives_match_reference(objective):
    logits, ids, trained = fixed_batch()
    nll, mask = reference_nll(logits, ids, trained)
    expected = (nll * mask).sum() / mask.sum()
    got = full_sequence_loss(logits, labels_from(ids, trained), objective)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_dft_matches_reference_value_and_gradient():
    logits, ids, trained = fixed_batch()
    leaf = logits.clone().requires_grad_(True)
    nll, mask = reference_nll(leaf, ids, trained)
    p = torch.exp(-nll)
    expected = (p.detach() * nll * mask).sum() / mask.sum()
    expected.backward()
    ref_grad = leaf.grad.clone()

    leaf.grad = None
    got = full_sequence_loss(leaf, labels_from(ids, trained), "dft")
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    got.backward()
    torch.testing.assert_close(leaf.grad, ref_grad.float(), rtol=1e-4, atol=1e-6)
    # p is detached: the gradient differs from that of p * nll taken through p
    leaf.grad = None
    nll2, _ = reference_nll(leaf, ids, trained)
    ((torch.exp(-nll2) * nll2 * mask).sum() / mask.sum()).backward()
    assert not torch.allclose(leaf.grad, ref_grad.float(), atol=1e-4)


def test_labels_from_build_labels_mask_prompt_and_non_critical_tokens():
    _, ids, trained = fixed_batch()
    row0 = build_labels(ids[0], 2, token_mask=torch.tensor([1, 0, 1, 1, 0], dtype=torch.bool))
    assert torch.equal(row0, labels_from(ids[:1], trained[:1])[0])
    full = build_labels(ids[1], 3)
    assert (full[:3] == IGNORE_INDEX).all() and torch.equal(full[3:], ids[1, 3:])


def test_prefix_cut_is_a_mean_over_the_first_tokens_only():
    logits, ids, _ = fixed_batch()
    prefix = torch.zeros_like(ids, dtype=torch.bool)
    prefix[:, 3:5] = True  # the two response tokens after a 3-token prompt
    nll, mask = reference_nll(logits, ids, prefix)
    expected = (nll * mask).sum() / 4
    got = full_sequence_loss(logits, labels_from(ids, prefix), "prefix")
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("objective", ["sft", "dft"])
def test_gradient_accumulation_with_num_items_equals_one_big_batch(objective):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 9, V, generator=gen)
    ids = torch.randint(0, V, (4, 9), generator=gen)
    trained = torch.zeros(4, 9, dtype=torch.bool)
    for row, start in enumerate((2, 5, 7, 3)):  # very different numbers of loss tokens per sequence
        trained[row, start:] = True
    labels = labels_from(ids, trained)
    whole = logits.clone().requires_grad_(True)
    full_sequence_loss(whole, labels, objective).backward()

    parts = logits.clone().requires_grad_(True)
    total = (labels[:, 1:] != IGNORE_INDEX).sum()  # what the HF Trainer passes as num_items_in_batch
    accumulated = sum(full_sequence_loss(parts[i:i + 2], labels[i:i + 2], objective, num_items=total) for i in (0, 2))
    accumulated.backward()
    assert accumulated.item() == pytest.approx(full_sequence_loss(logits, labels, objective).item(), rel=1e-5)
    torch.testing.assert_close(parts.grad, whole.grad)
    # per-micro-batch means averaged over micro-batches would weight tokens differently
    naive = logits.clone().requires_grad_(True)
    (sum(full_sequence_loss(naive[i:i + 2], labels[i:i + 2], objective) for i in (0, 2)) / 2).backward()
    assert not torch.allclose(naive.grad, whole.grad, rtol=1e-2, atol=1e-5)


def test_batch_without_loss_tokens_gives_zero_not_nan():
    logits, ids, _ = fixed_batch()
    leaf = logits.clone().requires_grad_(True)
    loss = full_sequence_loss(leaf, torch.full_like(ids, IGNORE_INDEX), "cft")
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(leaf.grad).all()


def test_loss_positions_are_the_union_of_next_token_loss_positions():
    _, ids, trained = fixed_batch()
    labels = labels_from(ids, trained)
    keep, targets = loss_positions(labels)
    # row 0 predicts a loss token from positions 1, 3, 4; row 1 from 2, 3, 4: union 1..4. Position 0
    # (prompt) and 5 (predicts row 0's untrained last token and row 1's padding) get no logits.
    assert keep.dtype == torch.int64 and keep.tolist() == [1, 2, 3, 4]
    assert torch.equal(targets, labels[:, 2:6])
    assert (targets[0, 1], targets[1, 0]) == (IGNORE_INDEX, IGNORE_INDEX)  # the rows' non-loss positions
    empty, none = loss_positions(torch.full_like(ids, IGNORE_INDEX))
    assert empty.shape == (0,) and none.shape == (2, 0)


def test_gathered_logits_give_the_full_sequence_reference_and_unknown_objective_fails():
    logits, ids, trained = fixed_batch()
    keep, targets = loss_positions(labels_from(ids, trained))
    nll, mask = reference_nll(logits, ids, trained)
    got = objective_loss(logits[:, keep], targets, "dft", num_items=torch.tensor(3))
    assert got.item() == pytest.approx(((torch.exp(-nll) * nll * mask).sum() / 3).item(), rel=1e-5)
    with pytest.raises(ValueError, match="unknown objective"):
        objective_loss(logits[:, keep], targets, "sum")
