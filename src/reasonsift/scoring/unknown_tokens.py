"""Response tokens the tokenizer maps to its unknown token: counted per shard while tokenizing, summed for the report.

The model cannot see text its tokenizer cannot spell, so losses over it say little about that text;
scoring counts such tokens, keeps one example, and warns above ``UNKNOWN_TOKEN_WARN_SHARE``.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


def real_unk_id(tokenizer: Any) -> int | None:
    """The unknown token's id, or None when there is none or it doubles as eos/bos/pad (GPT-2's
    ``<|endoftext|>`` is all four: counting it would count every end of sequence)."""
    unk = tokenizer.unk_token_id
    if unk is None or unk in (tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.pad_token_id):
        return None
    return unk


# Above this share of response tokens mapped to the unknown token, scoring warns (report.json records it always).
UNKNOWN_TOKEN_WARN_SHARE = 0.01


def unknown_example(tokenizer: Any, example_id: str, text: str) -> dict[str, str] | None:
    """The first stretch of ``text`` the tokenizer maps to its unknown token, with a little context."""
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, ValueError, TypeError):  # slow tokenizers have no offsets
        return {"id": example_id, "text": "", "context": ""}
    for t, (a, b) in zip(enc["input_ids"], enc["offset_mapping"]):
        if t == real_unk_id(tokenizer):
            return {"id": example_id, "text": text[a:b], "context": text[max(0, a - 20): b + 20]}
    return None


def unknown_token_summary(markers: list[dict[str, Any]], tokenizer: Any, warn: bool = True) -> dict[str, Any] | None:
    """How many response tokens the tokenizer mapped to its unknown token, from the token shards' markers.

    Returns None when the tokenizer has no unknown token (byte-level BPE never needs one) or the
    shards predate the count. Above ``UNKNOWN_TOKEN_WARN_SHARE`` the summary carries a ``warning``
    (logged when ``warn``: one rank says it): losses of text the model cannot see are not a signal
    about that text.
    """
    if real_unk_id(tokenizer) is None or any("unknown_tokens" not in m for m in markers):
        return None
    count = sum(m["unknown_tokens"] for m in markers)
    total = sum(m.get("response_tokens", 0) for m in markers)
    example = next((m["unknown_example"] for m in markers if m.get("unknown_example")), None)
    out = {"token": tokenizer.unk_token, "count": count, "response_tokens": total,
           "share": round(count / total, 4) if total else 0.0, "example": example, "warning": None}
    if total and count / total > UNKNOWN_TOKEN_WARN_SHARE:
        eg = (f"; e.g. {example['text']!r} in example {example['id']} ({example['context']!r})" if example else "")
        out["warning"] = (f"the tokenizer maps {100 * count / total:.1f}% of the response tokens ({count:,} of "
                          f"{total:,}) to its unknown token {tokenizer.unk_token}{eg}. The model cannot see that "
                          "text, so its losses say little about it: use a model whose tokenizer covers the data")
        if warn:
            logger.warning("%s", out["warning"])
    return out
