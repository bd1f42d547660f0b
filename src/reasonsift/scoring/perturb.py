"""Seeded, in-memory weight perturbations of θ₀ (temp-method.md §1.2 and §1.4).

No perturbed checkpoint is ever written to disk (the official code writes 16 full copies). Each
checkpoint is computed from a kept copy of the base weights, in fp32, and rounded once to the
working dtype: never restored by subtraction, which drifts in bf16 (scoring-performance.md §5).

Noise is drawn from one generator per (seed, stage, step, tensor name), so any checkpoint can be
rebuilt alone, reruns are bit-identical, and tensors of equal shape never share noise.

- isotropic checkpoint k:  θ_k = θ₀ + Σ_{i≤k} s_i ε_i, nested, with s_1 = σ_start and
  s_i = Δ = sqrt((σ_end² − σ_start²)/(n−1)) so the cumulative std goes σ_start → σ_end.
  Every parameter whose name lacks "embed" (so a tied LM head, listed under the embedding, stays).
- directional checkpoint j: θ_j = θ_{j−1} + λ_j (1 + ξ_j) ⊙ e, e = (θ_f − θ₀)/‖θ_f − θ₀‖,
  with λ from the closed form that makes E‖θ_j − θ₀‖ hit radii linearly spaced in [r_min, r_max].
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import torch


def noise_seed(seed: int, stage: str, step: int, name: str) -> int:
    """A 63-bit generator seed for one (seed, stage, step, tensor) — TEMP's blake2b scheme."""
    digest = hashlib.blake2b(f"{seed}|{stage}|{step}|{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def gaussian(shape: torch.Size, seed: int, device: torch.device) -> torch.Tensor:
    """Standard normal fp32 noise from a private generator (the global RNG is never touched)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return torch.randn(shape, generator=gen, device=device, dtype=torch.float32)


def isotropic_steps(std_start: float, std_end: float, n: int) -> list[float]:
    """Per-step stds s_1..s_n of the nested Gaussian schedule (variances add)."""
    if n < 1:
        return []
    if n == 1:
        return [std_start]
    delta = math.sqrt(max(std_end**2 - std_start**2, 0.0) / (n - 1))
    return [std_start] + [delta] * (n - 1)


def directional_lambdas(min_radius: float, final_radius: float, n: int) -> list[float]:
    """λ_1..λ_n: λ_j = (−m_{j−1} + sqrt(m_{j−1}² + 2(r_j² − r_{j−1}²)))/2, m_j = Σ_{i≤j} λ_i.

    Derived from E‖θ_j − θ₀‖² ≈ m_j² + Σ_{i≤j} λ_i² with ‖e‖ = 1 and E[ξ²] = 1 (temp-method.md §1.4).
    """
    radii = [min_radius + (final_radius - min_radius) * j / (n - 1) for j in range(n)] if n > 1 else [min_radius]
    lambdas, m, prev_r = [], 0.0, 0.0
    for r in radii:
        lam = (-m + math.sqrt(m * m + 2 * (r * r - prev_r * prev_r))) / 2
        lambdas.append(lam)
        m, prev_r = m + lam, r
    return lambdas


def _names(names: list[str], limit: int = 3) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_same_parameters(base: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> None:
    """θ_f must have exactly θ₀'s parameter names and shapes (not a superset: a model with an extra
    layer is another architecture, not a fine-tune); the error names what differs."""
    problems = []
    missing = sorted(set(base) - set(target))
    extra = sorted(set(target) - set(base))
    if missing:
        problems.append(f"lacks {len(missing)} of θ₀'s parameters ({_names(missing)})")
    if extra:
        problems.append(f"has {len(extra)} parameters θ₀ lacks ({_names(extra)})")
    shapes = [f"{n} {tuple(target[n].shape)} vs θ₀ {tuple(base[n].shape)}" for n in sorted(set(base) & set(target))
              if tuple(target[n].shape) != tuple(base[n].shape)]
    if shapes:
        problems.append(f"has {len(shapes)} tensors of another shape ({_names(shapes)})")
    if problems:
        raise ValueError(f"direction model (θ_f) {'; '.join(problems)}: it must be a fine-tune of θ₀ with the "
                         "same architecture")


@dataclass
class Perturber:
    """Holds θ₀ (and θ_f) and writes any checkpoint's weights into ``model`` from them."""

    model: torch.nn.Module
    seed: int
    iso_steps: list[float]
    dir_lambdas: list[float]
    directional_embeddings: bool = True
    base: dict[str, torch.Tensor] = field(default_factory=dict)
    target: dict[str, torch.Tensor] | None = None  # θ_f, when a direction is known
    direction_norm: float = 0.0
    current: tuple[str, int] = ("base", 0)

    def __post_init__(self) -> None:
        with torch.no_grad():
            self.base = {n: p.detach().clone() for n, p in self.model.named_parameters()}

    def set_target(self, target_state: dict[str, torch.Tensor]) -> None:
        """Keep θ_f and compute ‖θ_f − θ₀‖ over all parameters at once, in float64."""
        check_same_parameters(self.base, target_state)
        total = 0.0
        self.target = {}
        for name, b in self.base.items():
            t = target_state[name].detach().to(device=b.device, dtype=b.dtype)
            if t.shape != b.shape:
                raise ValueError(f"direction model tensor {name} has shape {tuple(t.shape)}, θ₀ has {tuple(b.shape)}")
            self.target[name] = t
            if self._in_direction(name):
                total += float(((t.detach().double() - b.double()) ** 2).sum())
        self.direction_norm = math.sqrt(total)
        if self.direction_norm == 0.0:
            raise ValueError("θ_f equals θ₀: the fine-tuning direction is zero")

    def _in_direction(self, name: str) -> bool:
        return self.directional_embeddings or "embed" not in name

    def _tensor(self, stage: str, k: int, name: str, b: torch.Tensor) -> torch.Tensor | None:
        """fp32 weights of checkpoint (stage, k) for one tensor, or None when it stays at θ₀."""
        if stage == "base" or k == 0:
            return None
        acc = b.float().clone()
        if stage == "isotropic":
            if "embed" in name:
                return None
            for i, s in enumerate(self.iso_steps[:k], start=1):
                acc += s * gaussian(b.shape, noise_seed(self.seed, stage, i, name), b.device)
            return acc
        if stage == "directional":
            if self.target is None:
                raise RuntimeError("directional checkpoint requested but no direction model was set")
            if not self._in_direction(name):
                return None
            e = (self.target[name].float() - b.float()) / self.direction_norm  # unit direction, this tensor
            for i, lam in enumerate(self.dir_lambdas[:k], start=1):
                xi = gaussian(b.shape, noise_seed(self.seed, stage, i, name), b.device)
                acc += lam * (1 + xi) * e
            return acc
        raise ValueError(f"unknown perturbation stage {stage!r}")

    @torch.no_grad()
    def apply(self, stage: str, k: int) -> dict[str, int]:
        """Write checkpoint (stage, k) into the model; returns perturbed vs actually-changed counts.

        ``changed`` counts coordinates that differ from θ₀ after rounding to the working dtype: in
        bf16 most norm weights (≈1.0) do not move at σ = 2e-3 (scoring-performance.md §5).
        """
        perturbed = changed = 0
        for name, p in self.model.named_parameters():
            b = self.base[name]
            new = self._tensor(stage, k, name, b)
            if new is None:
                p.copy_(b)
                continue
            p.copy_(new)  # one rounding from fp32 to the working dtype
            perturbed += p.numel()
            changed += int((p != b).sum())
        self.current = (stage, k)
        return {"perturbed": perturbed, "changed": changed}

    def restore(self) -> None:
        """Put θ₀ back bit-exactly (a copy from the kept base, never a subtraction)."""
        self.apply("base", 0)
