"""Render an Example to token ids with the tokenizer's own chat template; build loss masks.

This is the only place where prompts are rendered and loss masks built, so scoring, training and
evaluation see exactly the same text (template drift between them is the most common bug report
against peer tools).

Rendering (TEMP's, temp-method.md §1.1):
    messages    = [system, if any] + [user: prompt]
    prompt_text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full_text   = prompt_text + response + eos
    ids         = tokenizer(full_text, add_special_tokens=False)
The loss covers response tokens only. A tokenizer without a chat template uses ``PLAIN_TEMPLATE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from reasonsift.data.records import Example

IGNORE_INDEX = -100  # the HF convention for "no loss here"; used by every label tensor

# Fallback for tokenizers without a chat template (base models, locally trained tokenizers).
PLAIN_SYSTEM = "{system}\n\n"
PLAIN_TEMPLATE = "User: {prompt}\nAssistant: "


@dataclass(frozen=True)
class Tokenized:
    """The one tokenized record: an example's prompt and response token ids.

    What scoring scores, the critical stage tests and the embedding baseline embeds; only
    ``tokenize_example`` makes one from an ``Example`` (tests and benchmarks may build one from ids).
    """

    prompt_ids: list[int]
    response_ids: list[int]  # the response tokens kept (eos included if reached)
    n_response_tokens: int = field(default=-1)  # full response length, eos included; -1: len(response_ids)
    boundary_ok: bool = True  # prompt tokens were a prefix of prompt+response tokens

    def __post_init__(self) -> None:
        if self.n_response_tokens < 0:
            object.__setattr__(self, "n_response_tokens", len(self.response_ids))

    @property
    def length(self) -> int:
        """Tokens in one forward pass: prompt + kept response."""
        return len(self.prompt_ids) + len(self.response_ids)

    def window(self, n: int) -> Tokenized:
        """The same record with only the first ``n`` response tokens kept (the scoring window)."""
        return replace(self, response_ids=self.response_ids[:n])


def template_notice(tokenizer: Any, model: str) -> dict[str, Any]:
    """What the stages record in report.json about the prompt template, warning once per command when
    the tokenizer has no chat template (prompts then use ``PLAIN_TEMPLATE``, which a chat model was
    not trained on)."""
    import logging

    if getattr(tokenizer, "chat_template", None):
        return {"chat_template": True}
    note = (f"{model}: the tokenizer has no chat template; prompts use the plain template "
            f"{PLAIN_TEMPLATE!r} (fine for a base model, wrong for a chat model)")
    logging.getLogger(__name__).warning(note)
    return {"chat_template": False, "note": note}


def prompt_text(tokenizer: Any, prompt: str, system: str | None = None) -> str:
    """The prompt exactly as the model sees it before the response, generation prompt included."""
    if getattr(tokenizer, "chat_template", None):
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": prompt}
        ]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    head = PLAIN_SYSTEM.format(system=system) if system else ""
    return head + PLAIN_TEMPLATE.format(prompt=prompt)


def tokenize_example(tokenizer: Any, example: Example, system_prompt: str | None = None,
                     max_response_tokens: int | None = None) -> Tokenized:
    """Tokenize prompt + response + eos; keep the first ``max_response_tokens`` response tokens.

    ``system_prompt`` (the user's ``--system-prompt``) wins over a system turn found in the row.
    When the tokenizer merges characters across the prompt/response boundary, the prompt tokens are
    not a prefix of the full tokenization; the response is then tokenized on its own and appended,
    so the prompt the model sees stays identical to generation time (``boundary_ok=False``).
    """
    text = prompt_text(tokenizer, example.prompt, system_prompt or example.system)
    eos = tokenizer.eos_token or ""
    prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(text + example.response + eos, add_special_tokens=False)["input_ids"]
    boundary_ok = full_ids[: len(prompt_ids)] == prompt_ids
    if boundary_ok:
        response_ids = full_ids[len(prompt_ids):]
    else:
        response_ids = tokenizer(example.response + eos, add_special_tokens=False)["input_ids"]
    n_response = len(response_ids)
    if max_response_tokens is not None:
        response_ids = response_ids[:max_response_tokens]
    return Tokenized(list(prompt_ids), list(response_ids), n_response, boundary_ok)


def context_overflow(n_prompt: int, n_window: int, max_positions: int | None) -> str | None:
    """Why a row cannot be read by the model, or None: its prompt plus the ``n_window`` response tokens
    a stage reads (score: the scored window; train: at least one token; critical: the response) must
    fit the model's positions. Every stage rejects such a row with this reason: past its positions a
    model's losses are meaningless (a 30k-token prompt would look like the pool's hardest example)."""
    if max_positions is None or n_prompt + n_window <= max_positions:
        return None
    return (f"prompt ({n_prompt:,} tokens) + {n_window:,} response tokens exceed the model's "
            f"{max_positions:,} positions")


def build_labels(input_ids: torch.Tensor, num_prompt_tokens: int,
                 token_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Labels for one sequence: the token id where loss is taken, ``IGNORE_INDEX`` elsewhere.

    Args:
        input_ids: (T,) prompt followed by response tokens.
        num_prompt_tokens: the prompt length P; positions < P never carry loss.
        token_mask: optional (T - P,) bool over response tokens (critical tokens, a UPFT prefix);
            None means every response token.
    Returns:
        (T,) int64 labels, unshifted (HF causal LMs shift internally).
    """
    labels = input_ids.clone().long()
    labels[:num_prompt_tokens] = IGNORE_INDEX
    if token_mask is not None:
        response = labels[num_prompt_tokens:]
        if token_mask.shape != response.shape:
            raise ValueError(f"token mask has {token_mask.shape[0]} entries for {response.shape[0]} response tokens")
        response[~token_mask.bool()] = IGNORE_INDEX
    return labels
