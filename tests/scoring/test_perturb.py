"""Seeded in-memory perturbations: reproducible, nested, rebuilt alone, restored bit-exactly."""

from __future__ import annotations

import math

import pytest
import torch

from reasonsift.models import build_tiny_llama
from reasonsift.scoring.perturb import Perturber, directional_lambdas, isotropic_steps


def make(seed: int = 7, hidden: int = 64, dtype=torch.float32) -> Perturber:
    model = build_tiny_llama(300, hidden_size=hidden, num_layers=2, seed=0).to(dtype)
    return Perturber(model, seed, isotropic_steps(2e-3, 8e-3, 8), directional_lambdas(1.0, 10.0, 8))


def params(p: Perturber) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in p.model.named_parameters()}


def test_schedules_match_the_paper_values():
    cumulative = [math.sqrt(sum(s * s for s in isotropic_steps(2e-3, 8e-3, 8)[:k])) for k in range(1, 9)]
    assert cumulative == pytest.approx([0.00200, 0.00355, 0.00460, 0.00545, 0.00619, 0.00685, 0.00745, 0.00800],
                                       abs=6e-6)
    assert directional_lambdas(1.0, 10.0, 8) == pytest.approx(
        [0.707, 1.142, 1.225, 1.252, 1.265, 1.271, 1.275, 1.278], abs=1e-3)


def test_same_seed_same_weights_and_other_seed_differs():
    a, b, c = make(7), make(7), make(8)
    for p in (a, b, c):
        p.apply("isotropic", 3)
    pa, pb, pc = params(a), params(b), params(c)
    assert all(torch.equal(pa[n], pb[n]) for n in pa)
    assert any(not torch.equal(pa[n], pc[n]) for n in pa if "embed" not in n)


def test_checkpoint_rebuilt_alone_equals_the_nested_chain():
    chain, alone = make(), make()
    for k in range(1, 9):
        chain.apply("isotropic", k)
        if k == 5:
            at5 = params(chain)
    alone.apply("isotropic", 5)
    assert all(torch.equal(at5[n], t) for n, t in params(alone).items())
    # Nested: step 6 adds fresh noise of std s_6 on top of checkpoint 5, independent of what is there
    # (measured from the weights, not recomputed with the implementation's own noise functions).
    alone.apply("isotropic", 6)
    name = "model.layers.0.mlp.up_proj.weight"
    s5, s6 = isotropic_steps(2e-3, 8e-3, 8)[4:6]
    step6 = (params(alone)[name] - at5[name]).flatten().double()
    step5 = (at5[name] - alone.base[name]).flatten().double()
    assert float(step6.std()) == pytest.approx(s6, rel=0.05)
    assert abs(float(torch.corrcoef(torch.stack([step6, step5]))[0, 1])) < 0.05
    assert float(step5.std()) == pytest.approx(math.sqrt(sum(x * x for x in isotropic_steps(2e-3, 8e-3, 8)[:5])),
                                               rel=0.05) and s5 > 0


def _with_target(p: Perturber, scale: float = 0.01) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    target = {n: b + scale * torch.randn(b.shape, generator=gen) for n, b in p.base.items()}
    p.set_target(target)
    return target


def test_directional_checkpoints_are_seeded_nested_and_rebuilt_alone():
    chain, alone, again, other = make(7), make(7), make(7), make(8)
    target = _with_target(chain)
    for p in (alone, again, other):
        p.set_target(target)
    snaps = {}
    for j in range(1, 9):
        chain.apply("directional", j)
        snaps[j] = params(chain)
    alone.apply("directional", 6)
    again.apply("directional", 6)
    other.apply("directional", 6)
    assert all(torch.equal(snaps[6][n], t) for n, t in params(alone).items())
    assert all(torch.equal(t, params(again)[n]) for n, t in params(alone).items())
    assert any(not torch.equal(t, params(other)[n]) for n, t in params(alone).items())
    # theta_j - theta_{j-1} = lambda_j (1 + xi_j) * e: along e coordinate-wise, with a mean factor of lambda_j
    name = "model.layers.1.self_attn.q_proj.weight"
    e = ((target[name] - chain.base[name]) / chain.direction_norm).flatten().double()
    lambdas = directional_lambdas(1.0, 10.0, 8)
    for j in (2, 7):
        step = (snaps[j][name] - snaps[j - 1][name]).flatten().double()
        factor = step / e  # = lambda_j (1 + xi_j), xi_j ~ N(0, 1)
        assert float(factor.mean()) == pytest.approx(lambdas[j - 1], rel=0.05)
        assert float(factor.std()) == pytest.approx(lambdas[j - 1], rel=0.05)


def test_directional_embeddings_follow_the_switch():
    on, off = make(), make()
    on.directional_embeddings, off.directional_embeddings = True, False
    target = _with_target(on)
    off.set_target(target)
    on.apply("directional", 3)
    off.apply("directional", 3)
    name = "model.embed_tokens.weight"
    assert not torch.equal(params(on)[name], on.base[name])
    assert torch.equal(params(off)[name], off.base[name])
    assert not torch.equal(params(off)["lm_head.weight"], off.base["lm_head.weight"])


def test_base_restored_bit_exactly_and_embeddings_untouched():
    p = make()
    base = params(p)
    for stage, k in [("isotropic", 1), ("isotropic", 8), ("isotropic", 3)]:
        p.apply(stage, k)
        now = params(p)
        assert torch.equal(now["model.embed_tokens.weight"], base["model.embed_tokens.weight"])
        assert not torch.equal(now["lm_head.weight"], base["lm_head.weight"])  # untied head is perturbed
        p.restore()
        assert all(torch.equal(base[n], t) for n, t in params(p).items())


def test_measured_noise_std_matches_sigma():
    p = make(hidden=256)
    name = "model.layers.1.mlp.down_proj.weight"  # 256 x 1024 = 262k coordinates
    for k, sigma in [(1, 2e-3), (4, 0.00545), (8, 8e-3)]:
        p.apply("isotropic", k)
        delta = dict(p.model.named_parameters())[name].detach() - p.base[name]
        assert float(delta.std()) == pytest.approx(sigma, rel=0.02)
        assert abs(float(delta.mean())) < sigma / 50


def test_directional_radii_and_zero_direction():
    p = make(hidden=128)
    with pytest.raises(ValueError, match="zero"):
        p.set_target(p.base)
    gen = torch.Generator().manual_seed(0)
    p.set_target({n: b + 0.01 * torch.randn(b.shape, generator=gen) for n, b in p.base.items()})
    radii = [1.0 + 9.0 * j / 7 for j in range(8)]
    for j in (1, 4, 8):
        p.apply("directional", j)
        dist = math.sqrt(sum(float(((t.detach() - p.base[n]) ** 2).sum()) for n, t in p.model.named_parameters()))
        assert dist == pytest.approx(radii[j - 1], rel=0.1)
    p.restore()
    assert all(torch.equal(p.base[n], t) for n, t in params(p).items())


def test_bf16_rounding_is_counted():
    p = make(dtype=torch.bfloat16)
    stats = p.apply("isotropic", 1)
    # Norm weights are 1.0: most 2e-3 noise rounds away in bf16, so fewer coordinates change.
    assert 0 < stats["changed"] < stats["perturbed"]
    p.restore()
    assert all(torch.equal(p.base[n], t) for n, t in params(p).items())


def test_direction_model_must_have_exactly_the_base_parameters():
    """θ_f with an extra layer (a superset of θ₀'s names) is another architecture: refused, naming what differs."""
    base = build_tiny_llama(64, hidden_size=16, num_layers=2, num_heads=2, seed=0)
    deeper = build_tiny_llama(64, hidden_size=16, num_layers=3, num_heads=2, seed=1)
    p = Perturber(base, 0, isotropic_steps(1e-3, 2e-3, 2), directional_lambdas(1.0, 2.0, 2))
    with pytest.raises(ValueError, match=r"has 9 parameters θ₀ lacks \(model\.layers\.2\."):
        p.set_target(dict(deeper.named_parameters()))
    shallower = build_tiny_llama(64, hidden_size=16, num_layers=1, num_heads=2, seed=1)
    with pytest.raises(ValueError, match=r"lacks 9 of θ₀'s parameters \(model\.layers\.1\."):
        p.set_target(dict(shallower.named_parameters()))
    wider = build_tiny_llama(80, hidden_size=16, num_layers=2, num_heads=2, seed=1)
    with pytest.raises(ValueError, match=r"2 tensors of another shape \(lm_head\.weight \(80, 16\) vs θ₀ \(64, 16\)"):
        p.set_target(dict(wider.named_parameters()))
