"""The synthetic world's models: θ₀ pretrained on elementary facts, built on first use and cached.

θ₀ is a small Llama-style model with a character tokenizer, pretrained (plain causal LM, no chat
template) on ``pretraining_corpus``: single-step facts such as ``7+5=12`` or ``(9*3)%7=6``. It
knows the world's facts but has never seen a multi-step trace or the chat format, like a base LLM
before reasoning SFT. The cache key hashes the recipe, so changing it rebuilds.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from reasonsift.config import config_hash
from reasonsift.models import build_tiny_llama, char_tokenizer
from reasonsift.runfolder import is_done, mark_done
from reasonsift.synth.generate import pretraining_corpus
from reasonsift.synth.tasks import CHARSET

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaseRecipe:
    """How θ₀ is built; every field is part of the cache key."""

    hidden_size: int = 96
    num_layers: int = 3
    num_heads: int = 4
    corpus_lines: int = 60_000
    seq_len: int = 64  # characters per training row (facts are packed, separated by newlines)
    batch_size: int = 32
    steps: int = 600
    learning_rate: float = 3e-3
    seed: int = 0


def cache_root() -> Path:
    """Where built world models live (``REASONSIFT_CACHE`` or ``~/.cache/reasonsift``)."""
    return Path(os.environ.get("REASONSIFT_CACHE", Path.home() / ".cache" / "reasonsift"))


def _rows(tokenizer, lines: list[str], seq_len: int) -> torch.Tensor:
    """Pack fact lines (newline-separated) into (n_rows, seq_len) token rows."""
    ids = tokenizer("\n".join(lines), add_special_tokens=False)["input_ids"]
    n = len(ids) // seq_len
    return torch.tensor(ids[: n * seq_len]).view(n, seq_len)


def pretrain(model: torch.nn.Module, rows: torch.Tensor, recipe: BaseRecipe, progress: bool = True) -> list[float]:
    """Plain next-token pretraining with AdamW and a cosine schedule; returns the loss curve."""
    gen = torch.Generator().manual_seed(recipe.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, betas=(0.9, 0.95), weight_decay=0.01)
    warmup = max(1, recipe.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 *
                                              (1 + math.cos(math.pi * min(s, recipe.steps) / recipe.steps)))
    model.train()
    losses = []
    from tqdm.auto import tqdm

    for _ in tqdm(range(recipe.steps), desc="pretrain θ₀", disable=not progress, leave=False):
        batch = rows[torch.randint(0, rows.shape[0], (recipe.batch_size,), generator=gen)]  # (B, seq_len)
        loss = model(input_ids=batch, labels=batch, use_cache=False).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.detach().item())
    model.eval()
    return losses


def build_base_model(recipe: BaseRecipe = BaseRecipe(), progress: bool = True) -> Path:
    """Return the folder of θ₀ for this recipe, pretraining and caching it on first use."""
    out = cache_root() / f"synth-base-{config_hash(asdict(recipe))}"
    marker = out / "model.safetensors"
    if is_done(marker):
        return out
    start = time.time()
    tokenizer = char_tokenizer(CHARSET)
    model = build_tiny_llama(len(tokenizer), hidden_size=recipe.hidden_size, num_layers=recipe.num_layers,
                             num_heads=recipe.num_heads, max_position_embeddings=1024, seed=recipe.seed)
    rows = _rows(tokenizer, pretraining_corpus(recipe.corpus_lines, recipe.seed), recipe.seq_len)
    logger.info("building θ₀ (%.1fM params) on %d rows of facts; cached in %s",
                sum(p.numel() for p in model.parameters()) / 1e6, rows.shape[0], out)
    losses = pretrain(model, rows, recipe, progress)
    # Write to a temporary folder and rename, so an interrupted build is never mistaken for θ₀.
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "pretrain_loss.txt").write_text("\n".join(f"{x:.4f}" for x in losses))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    mark_done(marker, {"recipe": asdict(recipe), "final_loss": losses[-1], "seconds": round(time.time() - start, 1)})
    logger.info("θ₀ built in %.0f s (final pretraining loss %.3f)", time.time() - start, losses[-1])
    return out
