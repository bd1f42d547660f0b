"""Words for what scoring cost, against the two references ``report.json`` records.

TEMP scores short windows at many checkpoints. Against full-trace scoring at the *same* checkpoints
it always saves; against *one* full pass over the pool it may cost more (short traces, many
checkpoints). A saving that comes out negative must not be printed as "−218% saved": the words
follow the sign.
"""

from __future__ import annotations

from typing import Any


def versus(scored: int, reference: int, what: str) -> str:
    """``"74% fewer than WHAT (N)"`` or ``"3.2x as many as WHAT (N)"``; "" when ``reference`` is 0."""
    if not reference:
        return ""
    if scored <= reference:
        return f"{1 - scored / reference:.0%} fewer than {what} ({reference:,})"
    return f"{scored / reference:.1f}x as many as {what} ({reference:,})"


def token_cost_lines(tokens: dict[str, Any]) -> list[str]:
    """The scored-token count against full traces at the same checkpoints and against one full pass.

    tokens: ``report.json``'s ``tokens`` (``scored``, ``full_trace_all_checkpoints``,
    ``full_trace_once``, ``checkpoints``).
    """
    scored = int(tokens.get("scored") or 0)
    n = tokens.get("checkpoints")
    same = f"full traces at the same {n} checkpoints" if n else "full traces at the same checkpoints"
    out = [versus(scored, int(tokens.get("full_trace_all_checkpoints") or 0), same),
           versus(scored, int(tokens.get("full_trace_once") or 0), "one full pass over the pool at θ₀")]
    return [line for line in out if line]
