"""Generation shared by evaluation and the critical stage: stop tokens, stop strings, batched ``generate``.

Both stages must stop a completion at the same places (the model's end-of-turn ids, and for a
tokenizer without a chat template the plain template's next ``User:`` turn), or a solution the
critical stage verified would read differently from the one evaluation scores.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import torch

from reasonsift.config import EvalConfig
from reasonsift.data.render import PLAIN_TEMPLATE
from reasonsift.models import config_positions

logger = logging.getLogger(__name__)

# The plain fallback template's next user turn ("\nUser:"): a base model without a chat template
# keeps writing the dialogue after its answer, and nothing else would stop it before max_new_tokens.
PLAIN_STOP = "\n" + PLAIN_TEMPLATE.split("{prompt}")[0].rstrip()


class Generation(NamedTuple):
    """One completion: its text (cut at a stop string) and whether it hit ``max_new_tokens``."""

    text: str
    truncated: bool


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The generation config's EOS ids (Qwen / Llama-3 list their end-of-turn tokens there) plus the
    tokenizer's EOS: passing only the tokenizer's would override the model's own list."""
    ids: list[int] = []
    gen_cfg = getattr(model, "generation_config", None)
    for value in (getattr(gen_cfg, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        for token_id in value if isinstance(value, (list, tuple)) else [value]:
            if token_id is not None and int(token_id) not in ids:
                ids.append(int(token_id))
    return ids


def stop_strings(tokenizer: Any) -> list[str]:
    """Strings that end a completion: the next ``User:`` turn of the plain template, none otherwise."""
    return [] if getattr(tokenizer, "chat_template", None) else [PLAIN_STOP]


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """``text`` up to the earliest stop string, and whether one was found."""
    cut = min((text.find(s) for s in stops if s in text), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def finish(ids: list[int], text: str, eos: set[int], stops: list[str], max_new_tokens: int) -> Generation:
    """Cut ``text`` at the first stop string; truncated = no EOS, no stop string and the full length."""
    text, stopped = cut_at_stop(text, stops)
    ended = stopped or any(t in eos for t in ids)
    return Generation(text, truncated=not ended and len(ids) >= max_new_tokens)


@torch.inference_mode()
def generate(model: Any, tokenizer: Any, prompts: list[str], cfg: EvalConfig,
             stops: list[str] | None = None) -> list[list[Generation]]:
    """``cfg.samples`` completions per rendered prompt (left-padded batch).

    Stops at any of ``stop_token_ids`` and at ``stops`` (default ``stop_strings(tokenizer)``).
    """
    device = next(model.parameters()).device
    tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    sampling = cfg.temperature > 0
    eos = stop_token_ids(model, tokenizer)
    stops = stop_strings(tokenizer) if stops is None else stops
    # Never past the model's positions (left padding: the longest prompt of the batch sets the width).
    limit = config_positions(getattr(model, "config", None))
    max_new = cfg.max_new_tokens if not limit else min(cfg.max_new_tokens, limit - enc["input_ids"].shape[1])
    if max_new < 1:  # a prompt that fills the model's context leaves no room for an answer
        return [[Generation("", truncated=True)] * cfg.samples for _ in prompts]
    out = model.generate(
        **enc, max_new_tokens=max_new, do_sample=sampling,
        temperature=cfg.temperature if sampling else None, top_p=cfg.top_p if sampling else None,
        top_k=None, num_return_sequences=cfg.samples, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=eos or None, **({"stop_strings": stops, "tokenizer": tokenizer} if stops else {}),
    )  # (len(prompts) * samples, prompt_len + new)
    new = out[:, enc["input_ids"].shape[1]:]
    texts = tokenizer.batch_decode(new, skip_special_tokens=True)
    gens = [finish(ids, text, set(eos), stops, max_new) for ids, text in zip(new.tolist(), texts)]
    return [gens[i * cfg.samples:(i + 1) * cfg.samples] for i in range(len(prompts))]


def warn_position_cap(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int, name: str) -> None:
    """Say once when prompt + ``max_new_tokens`` can pass the model's positions (``generate`` cuts there)."""
    limit = config_positions(getattr(model, "config", None))
    if not limit or not prompts:
        return
    longest = max(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts)
    if longest + max_new_tokens > limit:
        logger.warning("evaluate.max_new_tokens=%d plus prompts of up to %d tokens exceed the %d positions of %s: "
                       "generation stops at the model's limit (prompt + new tokens <= %d)", max_new_tokens, longest,
                       limit, name, limit)
