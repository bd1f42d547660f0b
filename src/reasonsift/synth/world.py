"""The synthetic world's models: θ₀ pretrained on one-step facts and the first steps of problems.

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

import torch

from reasonsift.config import config_hash
from reasonsift.models import build_tiny_llama, char_tokenizer
from reasonsift.runfolder import is_done, mark_done
from reasonsift.synth.generate import fact_line, first_step_line, pretraining_corpus
from reasonsift.synth.tasks import CHARSET

logger = logging.getLogger(__name__)

CORPUS_VERSION = 4  # bump whenever tasks.py or pretraining_corpus change the text θ₀ is trained on
SHIPPED = Path(__file__).parent / "base_model"  # θ₀ of the default recipe, built by scripts/build_synth_base.py
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


def recipe_hash(recipe: BaseRecipe) -> str:
    """The name of θ₀ for this recipe and this version of the world's text."""
    return config_hash({**asdict(recipe), "charset": CHARSET, "corpus_version": CORPUS_VERSION})


def cache_root() -> Path:
    """Where built world models live (``REASONSIFT_CACHE`` or ``~/.cache/reasonsift``)."""
    return Path(os.environ.get("REASONSIFT_CACHE", Path.home() / ".cache" / "reasonsift"))


def _rows(tokenizer, lines: list[str], seq_len: int) -> torch.Tensor:
    """Pack corpus items (newline-separated) into (n_rows, seq_len) token rows."""
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


def write_base_model(recipe: BaseRecipe, out: Path, progress: bool = True) -> dict:
    """Pretrain θ₀ from scratch and save it (weights, tokenizer, ``recipe.json``) to ``out``.

    Written to a temporary folder and renamed, so an interrupted build is never mistaken for θ₀.
    Returns what ``recipe.json`` records (recipe, its hash, final loss, seconds).
    """
    start = time.time()
    torch.manual_seed(recipe.seed)
    tokenizer = char_tokenizer(CHARSET)
    model = build_tiny_llama(len(tokenizer), hidden_size=recipe.hidden_size, num_layers=recipe.num_layers,
                             num_heads=recipe.num_heads, max_position_embeddings=1024, seed=recipe.seed)
    rows = _rows(tokenizer, pretraining_corpus(recipe.corpus_lines, recipe.seed, recipe.problem_share),
                 recipe.seq_len)
    logger.info("building θ₀ (%.2fM params) on %d rows of %d characters into %s",
                sum(p.numel() for p in model.parameters()) / 1e6, rows.shape[0], recipe.seq_len, out)
    losses = pretrain(model, rows, recipe, progress)
    info = {"recipe": asdict(recipe), "hash": recipe_hash(recipe), "corpus_version": CORPUS_VERSION,
            "final_loss": round(sum(losses[-50:]) / len(losses[-50:]), 4), "seconds": round(time.time() - start, 1)}
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


def shipped_hash() -> str | None:
    """The recipe hash of the checkpoint shipped in the package, or None when there is none."""
    path = SHIPPED / RECIPE_FILE
    if not (path.exists() and (SHIPPED / "model.safetensors").exists()):
        return None
    return json.loads(path.read_text()).get("hash")


def build_base_model(recipe: BaseRecipe = BaseRecipe(), progress: bool = True) -> Path:
    """Return the folder of θ₀ for this recipe: the shipped one, a cached one, or a fresh build."""
    key = recipe_hash(recipe)
    if shipped_hash() == key:
        return SHIPPED
    out = cache_root() / f"synth-base-{key}"
    marker = out / "model.safetensors"
    if is_done(marker):
        return out
    info = write_base_model(recipe, out, progress)
    mark_done(marker, info)
    return out


def probe_base_model(model_dir: str | Path, n: int = 200, seed: int = 0) -> dict[str, float]:
    """Greedy accuracy of a model on held-out facts (per family) and one-step problems in context.

    A fact is completed after its ``=`` (carry: after the first ``=``: "7+9+1=" -> "17 write 7 carry
    1"); a one-step problem's whole step line is generated after the statement. Each item must be
    reproduced exactly. Drawn from a stream the corpus never uses, so this measures what θ₀ learned.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    rng = random.Random(f"probe-{seed}")
    items: list[tuple[str, str, str]] = []  # (kind, context, expected continuation)
    for i in range(n):
        if i % 2:
            text = first_step_line(rng)
            lines = text.split("\n")  # statement, first step line (and, for one step, the answer line)
            context, target, kind = lines[0] + "\n", lines[1], "first_step"
        else:
            text = fact_line(rng)
            cut = text.index("=") if " write " in text else text.rindex("=")
            context, target = text[: cut + 1], text[cut + 1:]
            kind = ("carry" if " write " in text else "list" if "[" in text else "mod" if "%" in text
                    else "subst" if text[0].isalpha() else "arith")
        items.append((kind, "\n" + context, target))
    hits: dict[str, list[bool]] = {}
    with torch.no_grad():
        for start in range(0, len(items), 64):
            batch = items[start:start + 64]
            enc = tok([c for _, c, _ in batch], return_tensors="pt", padding=True, add_special_tokens=False)
            new = max(len(t) for _, _, t in batch) + 1
            out = model.generate(**enc, max_new_tokens=new, do_sample=False, pad_token_id=tok.pad_token_id)
            for (kind, _, target), ids in zip(batch, out[:, enc["input_ids"].shape[1]:]):
                text = tok.decode(ids, skip_special_tokens=True)
                hits.setdefault(kind, []).append(text.split("\n")[0] == target)
    return {k: sum(v) / len(v) for k, v in sorted(hits.items())}
