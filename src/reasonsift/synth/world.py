"""The synthetic worlds' base models θ₀ (v1: ``BaseRecipe``; v2: ``BaseRecipeV2``).

v2 (docs/synth-world-v2.md): a word-tokenizer Llama pretrained on one-step facts and on whole
problems solved in a terse textbook form, so chaining is latent and SFT elicits the long-CoT form;
a copy phase before the world text forms the induction heads that reading a problem needs.
Shipped in ``synth/base_model_v2/``; otherwise as v1 below.

v1: θ₀ pretrained on one-step facts and the first steps of problems.

What either θ₀ knows before SFT is measured by ``synth/probes.py``.

θ₀ is a small Llama-style model with a character tokenizer, pretrained (plain causal LM, no chat
template) on ``pretraining_corpus``: one-step facts such as ``7+5=12`` or ``(9*3)%7=6``, whole
one-step problems with their answer line, and longer problems with their first step line only,
packed into rows long enough that the model learns to read a problem statement, not only to
complete a fact. It knows the world's facts and the answer format but has never seen a second step
line or the chat format, like a base LLM before reasoning SFT.

Where θ₀ comes from, first match wins:

1. the checkpoint shipped in this package (``synth/base_model/``, ~2 MB), when its recorded recipe
   hash equals the requested recipe's (``scripts/build_synth_base.py`` rebuilds it);
2. the cache (``REASONSIFT_CACHE`` or ``~/.cache/reasonsift``), keyed by the same hash;
3. a fresh build into the cache (minutes on a CPU for the default recipe).

The hash covers the recipe, the character set and ``CORPUS_VERSION``, so changing the world's text
formats (bump the version) or the recipe never silently reuses a stale θ₀.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, ClassVar

import torch

from reasonsift.config import config_hash
from reasonsift.models import build_tiny_llama, char_tokenizer
from reasonsift.runfolder import is_done, mark_done
from reasonsift.synth.generate import pretraining_corpus
from reasonsift.synth.tasks import CHARSET

logger = logging.getLogger(__name__)

CORPUS_VERSION = 4  # bump whenever tasks.py or pretraining_corpus change the text θ₀ is trained on
CORPUS_VERSION_V2 = 2  # the same for v2/tasks.py and v2/generate.py (the vocabulary comes from their text)
SHIPPED = Path(__file__).parent / "base_model"  # θ₀ of the default recipe, built by scripts/build_synth_base.py
SHIPPED_V2 = Path(__file__).parent / "base_model_v2"  # θ₀ of the default v2 recipe (--world v2)
RECIPE_FILE = "recipe.json"


@dataclass(frozen=True)
class BaseRecipe:
    """How θ₀ is built; every field is part of the hash that names it."""

    hidden_size: int = 96
    num_layers: int = 3
    num_heads: int = 4
    corpus_lines: int = 200_000
    problem_share: float = 0.5  # share of corpus items that are one-step problems (the rest: bare facts)
    seq_len: int = 256  # characters per training row: several items, so attention learns to look back
    batch_size: int = 16
    steps: int = 3000
    learning_rate: float = 3e-3
    seed: int = 0
    world: ClassVar[str] = "v1"


@dataclass(frozen=True)
class BaseRecipeV2:
    """How world v2's θ₀ is built; every field is part of the hash that names it."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4  # head_dim 32: also what vLLM's CPU attention accepts
    corpus_items: int = 40_000
    solution_share: float = 0.7  # share of corpus items that are whole problems in the terse form
    seq_len: int = 256  # tokens per training row (several items packed): more, shorter steps
    batch_size: int = 16
    steps: int = 3000
    learning_rate: float = 3e-3  # the copy phase forms the heads at 1e-3; the world phase needs 3e-3 (change 6)
    seed: int = 0
    # Copy phase (docs/synth-world-v2.md, changes 5-6): before any world text, ``copy_steps`` steps of the
    # pure copy task at a constant ``copy_learning_rate`` form the induction heads that copying a
    # problem's operations needs; the world text alone never formed them. ``copy_share`` of the world
    # phase's rows stay copy-task rows so the heads are still used while the world is learnt.
    copy_steps: int = 5000  # without separators the loss is still falling here (3.66; copying perfectly: ~2.3)
    copy_learning_rate: float = 1e-3
    copy_share: float = 0.125
    # Change 8: a share of the pretraining items are clean long-CoT traces as plain text (no chat turn), as
    # a base LLM has seen worked solutions before reasoning SFT; SFT then elicits the form, not teaches it.
    long_share: float = 0.1
    world: ClassVar[str] = "v2"


def recipe_hash(recipe: BaseRecipe | BaseRecipeV2) -> str:
    """The name of θ₀ for this recipe and this version of the world's text."""
    if recipe.world == "v2":
        return config_hash({**asdict(recipe), "world": "v2", "corpus_version": CORPUS_VERSION_V2})
    return config_hash({**asdict(recipe), "charset": CHARSET, "corpus_version": CORPUS_VERSION})


def shipped_folder(recipe: BaseRecipe | BaseRecipeV2) -> Path:
    """Where the package ships θ₀ of this recipe's world."""
    return SHIPPED_V2 if recipe.world == "v2" else SHIPPED


def cache_root() -> Path:
    """Where built world models live (``REASONSIFT_CACHE`` or ``~/.cache/reasonsift``)."""
    return Path(os.environ.get("REASONSIFT_CACHE", Path.home() / ".cache" / "reasonsift"))


def _rows(tokenizer, lines: list[str], seq_len: int) -> torch.Tensor:
    """Pack corpus items (newline-separated) into (n_rows, seq_len) token rows."""
    ids = tokenizer("\n".join(lines), add_special_tokens=False)["input_ids"]
    n = len(ids) // seq_len
    return torch.tensor(ids[: n * seq_len]).view(n, seq_len)


def copy_task_row(numbers: list[int], rng: random.Random, seq_len: int) -> list[int]:
    """One row of the pure copy task: random numbers (``numbers``: token ids) written twice in a row,
    then the next sequence written twice, … cut at ``seq_len`` tokens. No separators.

    A repetition can only be predicted by finding the current number earlier in the context and
    copying what followed it, so this is the task on which induction heads form. With a separator
    before each repetition (change 5, build 4) the model learnt to copy *after the separator*
    (second-copy loss 0.0 there) but not from plain context, and the world text gained nothing
    (docs/synth-world-v2.md, changes 4-6).
    """
    ids: list[int] = []
    while len(ids) < seq_len:
        seq = [rng.choice(numbers) for _ in range(rng.randint(4, 40))]
        ids += seq + seq
    return ids[:seq_len]


def copy_rows(tokenizer, recipe: BaseRecipeV2) -> Callable[[int], torch.Tensor]:
    """A seeded stream of copy-task rows over the numbers 0-99 as the world's own tokens: ``f(n)`` is the
    next (n, seq_len) batch. One stream serves the copy phase and then the world phase's mixed rows, so
    a build is reproducible from its recipe; the corpus's own stream is untouched."""
    numbers = [tokenizer.convert_tokens_to_ids(f"\u0120{i}") for i in range(100)]  # "Ġ7": " 7"
    rng = random.Random(f"v2-copy-{recipe.seed}")
    return lambda n: torch.tensor([copy_task_row(numbers, rng, recipe.seq_len) for _ in range(n)])


def pretrain(model: torch.nn.Module, batch: Callable[[], torch.Tensor], steps: int, learning_rate: float,
             cosine: bool = True, progress: bool = True, desc: str = "pretrain θ₀") -> list[float]:
    """Plain next-token pretraining with AdamW, ``batch()`` drawing each (B, seq_len) batch; a 5% linear
    warm-up, then a cosine decay to 0 (``cosine``) or a constant rate. Returns the loss curve."""
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, betas=(0.9, 0.95), weight_decay=0.01)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * (
        0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)) if cosine else 1.0))
    model.train()
    losses = []
    from tqdm.auto import tqdm

    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    for step in bar:
        rows = batch()  # (B, seq_len)
        loss = model(input_ids=rows, labels=rows, use_cache=False).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.detach().item())
        if step % 50 == 49:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / 50:.3f}")
    model.eval()
    return losses


def _tail_loss(losses: list[float]) -> float:
    """The mean of the last 50 steps' losses, as ``recipe.json`` records it."""
    return round(sum(losses[-50:]) / len(losses[-50:]), 4)


def _batches(recipe: BaseRecipe | BaseRecipeV2, rows: torch.Tensor,
             copy: Callable[[int], torch.Tensor] | None) -> Callable[[], torch.Tensor]:
    """The world phase's batch function: ``batch_size`` corpus rows drawn with replacement, of which a
    v2 recipe's ``copy_share`` are replaced by rows of the ``copy`` stream (changes 5-6)."""
    gen = torch.Generator().manual_seed(recipe.seed)

    def world_batch() -> torch.Tensor:
        return rows[torch.randint(0, rows.shape[0], (recipe.batch_size,), generator=gen)]  # (B, seq_len)

    if copy is None or not recipe.copy_share:
        return world_batch
    n_copy = round(recipe.copy_share * recipe.batch_size)  # fixed per batch: the same mix every step

    def mixed_batch() -> torch.Tensor:
        batch = world_batch()
        batch[:n_copy] = copy(n_copy)
        return batch

    return mixed_batch


def write_base_model(recipe: BaseRecipe | BaseRecipeV2, out: Path, progress: bool = True) -> dict:
    """Pretrain θ₀ from scratch and save it (weights, tokenizer, ``recipe.json``) to ``out``.

    Written to a temporary folder and renamed, so an interrupted build is never mistaken for θ₀.
    Returns what ``recipe.json`` records (recipe, its hash, final loss, seconds).
    """
    start = time.time()
    torch.manual_seed(recipe.seed)
    if recipe.world == "v2":
        from reasonsift.synth.v2.generate import pretraining_corpus as corpus_v2, world_tokenizer

        tokenizer = world_tokenizer()
        model = build_tiny_llama(len(tokenizer), hidden_size=recipe.hidden_size, num_layers=recipe.num_layers,
                                 num_heads=recipe.num_heads, max_position_embeddings=2048, tie_word_embeddings=True,
                                 seed=recipe.seed)
        lines = corpus_v2(recipe.corpus_items, recipe.seed, recipe.solution_share, recipe.long_share)
    else:
        tokenizer = char_tokenizer(CHARSET)
        model = build_tiny_llama(len(tokenizer), hidden_size=recipe.hidden_size, num_layers=recipe.num_layers,
                                 num_heads=recipe.num_heads, max_position_embeddings=1024, seed=recipe.seed)
        lines = pretraining_corpus(recipe.corpus_lines, recipe.seed, recipe.problem_share)
    rows = _rows(tokenizer, lines, recipe.seq_len)
    logger.info("building θ₀ (%.2fM params) on %d rows of %d tokens into %s",
                sum(p.numel() for p in model.parameters()) / 1e6, rows.shape[0], recipe.seq_len, out)
    copy = copy_rows(tokenizer, recipe) if recipe.world == "v2" else None
    info_extra: dict = {}
    if copy is not None and recipe.copy_steps:  # the copy phase first: induction heads (changes 5-6)
        copy_losses = pretrain(model, lambda: copy(recipe.batch_size), recipe.copy_steps, recipe.copy_learning_rate,
                               cosine=False, progress=progress, desc="θ₀ copy phase")
        info_extra["copy_final_loss"] = _tail_loss(copy_losses)
        logger.info("copy phase done (final loss %.3f; perfect copying ≈ 2.3)", info_extra["copy_final_loss"])
    losses = pretrain(model, _batches(recipe, rows, copy), recipe.steps, recipe.learning_rate, progress=progress)
    info = {"recipe": asdict(recipe), "world": recipe.world, "hash": recipe_hash(recipe),
            "corpus_version": CORPUS_VERSION_V2 if recipe.world == "v2" else CORPUS_VERSION,
            "final_loss": _tail_loss(losses), **info_extra, "seconds": round(time.time() - start, 1)}
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "pretrain_loss.txt").write_text("\n".join(f"{x:.4f}" for x in losses))
    (tmp / RECIPE_FILE).write_text(json.dumps(info, indent=2))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    logger.info("θ₀ built in %.0f s (final pretraining loss %.3f)", info["seconds"], info["final_loss"])
    return info


def shipped_hash(folder: Path = SHIPPED) -> str | None:
    """The recipe hash of the checkpoint shipped in ``folder``, or None when there is none."""
    path = folder / RECIPE_FILE
    if not (path.exists() and (folder / "model.safetensors").exists()):
        return None
    return json.loads(path.read_text()).get("hash")


def build_base_model(recipe: BaseRecipe | BaseRecipeV2 = BaseRecipe(), progress: bool = True) -> Path:
    """Return the folder of θ₀ for this recipe: the shipped one, a cached one, or a fresh build."""
    key = recipe_hash(recipe)
    if shipped_hash(shipped_folder(recipe)) == key:
        return shipped_folder(recipe)
    out = cache_root() / f"synth-base-{key}"
    marker = out / "model.safetensors"
    if is_done(marker):
        return out
    info = write_base_model(recipe, out, progress)
    mark_done(marker, info)
    return out
