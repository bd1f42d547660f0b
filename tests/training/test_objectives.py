"""Each objective's loss against a plain-torch reference; normalisation over accumulated batches."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from reasonsift.data.render import IGNORE_INDEX, build_labels
from reasonsift.training.objectives import make_compute_loss_func, objective_loss

V = 13


def fixed_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded logits (2, 7, V), input ids (2, 7) and a hand-made loss mask over them."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 7, V, generator=gen) * 3
    ids = torch.randint(0, V, (2, 7), generator=gen)
    # row 0: prompt of 2 tokens, 5 response tokens, loss on response tokens 0, 2, 3 (a CFT-like mask)
    # row 1: prompt of 3 tokens, 3 response tokens, last position is padding
    keep = torch.tensor([[0, 0, 1, 0, 1, 1, 0], [0, 0, 0, 1, 1, 1, 0]], dtype=torch.bool)
    return logits, ids, keep


def reference_nll(logits: torch.Tensor, ids: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token NLL of predicting ids[:, t+1] from logits[:, t], and the shifted mask, by hand."""
    logp = torch.log_softmax(logits[:, :-1].double(), dim=-1)  # (B, T-1, V)
    nll = -logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
    return nll, keep[:, 1:]


def labels_from(ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return torch.where(keep, ids, torch.full_like(ids, IGNORE_INDEX))


@pytest.mark.parametrize("objective", ["sft", "cft", "prefix"])
def test_masked_mean_objectives_match_reference(objective):
    logits, ids, keep = fixed_batch()
    nll, mask = reference_nll(logits, ids, keep)
    expected = (nll * mask).sum() / mask.sum()
    got = objective_loss(logits, labels_from(ids, keep), objective)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_dft_matches_reference_value_and_gradient():
    logits, ids, keep = fixed_batch()
    leaf = logits.clone().requires_grad_(True)
    nll, mask = reference_nll(leaf, ids, keep)
    p = torch.exp(-nll)
    expected = (p.detach() * nll * mask).sum() / mask.sum()
    expected.backward()
    ref_grad = leaf.grad.clone()

    leaf.grad = None
    got = objective_loss(leaf, labels_from(ids, keep), "dft")
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    got.backward()
    torch.testing.assert_close(leaf.grad, ref_grad.float(), rtol=1e-4, atol=1e-6)
    # p is detached: the gradient differs from that of p * nll taken through p
    leaf.grad = None
    nll2, _ = reference_nll(leaf, ids, keep)
    ((torch.exp(-nll2) * nll2 * mask).sum() / mask.sum()).backward()
    assert not torch.allclose(leaf.grad, ref_grad.float(), atol=1e-4)


def test_labels_from_build_labels_mask_prompt_and_non_critical_tokens():
    _, ids, keep = fixed_batch()
    row0 = build_labels(ids[0], 2, token_mask=torch.tensor([1, 0, 1, 1, 0], dtype=torch.bool))
    assert torch.equal(row0, labels_from(ids[:1], keep[:1])[0])
    full = build_labels(ids[1], 3)
    assert (full[:3] == IGNORE_INDEX).all() and torch.equal(full[3:], ids[1, 3:])


def test_prefix_cut_is_a_mean_over_the_first_tokens_only():
    logits, ids, _ = fixed_batch()
    prefix = torch.zeros_like(ids, dtype=torch.bool)
    prefix[:, 3:5] = True  # the two response tokens after a 3-token prompt
    nll, mask = reference_nll(logits, ids, prefix)
    expected = (nll * mask).sum() / 4
    got = objective_loss(logits, labels_from(ids, prefix), "prefix")
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("objective", ["sft", "dft"])
def test_gradient_accumulation_with_num_items_equals_one_big_batch(objective):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 9, V, generator=gen)
    ids = torch.randint(0, V, (4, 9), generator=gen)
    keep = torch.zeros(4, 9, dtype=torch.bool)
    for row, start in enumerate((2, 5, 7, 3)):  # very different numbers of loss tokens per sequence
        keep[row, start:] = True
    labels = labels_from(ids, keep)
    whole = logits.clone().requires_grad_(True)
    objective_loss(whole, labels, objective).backward()

    parts = logits.clone().requires_grad_(True)
    total = (labels[:, 1:] != IGNORE_INDEX).sum()  # what the HF Trainer passes as num_items_in_batch
    accumulated = sum(objective_loss(parts[i:i + 2], labels[i:i + 2], objective, num_items=total) for i in (0, 2))
    accumulated.backward()
    assert accumulated.item() == pytest.approx(objective_loss(logits, labels, objective).item(), rel=1e-5)
    torch.testing.assert_close(parts.grad, whole.grad)
    # per-micro-batch means averaged over micro-batches would weight tokens differently
    naive = logits.clone().requires_grad_(True)
    (sum(objective_loss(naive[i:i + 2], labels[i:i + 2], objective) for i in (0, 2)) / 2).backward()
    assert not torch.allclose(naive.grad, whole.grad, rtol=1e-2, atol=1e-5)


def test_batch_without_loss_tokens_gives_zero_not_nan():
    logits, ids, _ = fixed_batch()
    leaf = logits.clone().requires_grad_(True)
    loss = objective_loss(leaf, torch.full_like(ids, IGNORE_INDEX), "cft")
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(leaf.grad).all()


def test_compute_loss_hook_and_unknown_objective():
    logits, ids, keep = fixed_batch()
    hook = make_compute_loss_func("dft")
    out = hook(SimpleNamespace(logits=logits), labels_from(ids, keep), num_items_in_batch=torch.tensor(3))
    nll, mask = reference_nll(logits, ids, keep)
    assert out.item() == pytest.approx(((torch.exp(-nll) * nll * mask).sum() / 3).item(), rel=1e-5)
    with pytest.raises(ValueError, match="unknown objective"):
        make_compute_loss_func("kto")
    with pytest.raises(ValueError, match="unknown objective"):
        objective_loss(logits, labels_from(ids, keep), "sum")
