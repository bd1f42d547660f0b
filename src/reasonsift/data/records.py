"""The one record type that flows through reasonsift: an ``Example``.

Scores, clusters, selections and masks are all keyed by ``Example.id``. The original input row is
never modified; ``row_index`` points back at it so a selection can be written out verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    """One (prompt, response) pair of an SFT pool.

    ``response`` is the full assistant text (reasoning followed by the final answer when the input
    keeps them apart); ``answer`` is the final answer alone when the input has one, else "".
    """

    id: str  # stable: the input's id column, else a content hash of prompt + response
    prompt: str
    response: str
    source: str = "default"  # sub-dataset; TEMP budgets per source
    domain: str = "default"  # TEMP allocates across domains first
    answer: str = ""
    system: str | None = None  # a system message found in the row itself (chat inputs)
    row_index: int = 0  # position of the row in the input


class BadRow(ValueError):
    """A row that cannot become an Example; the message says why (one line)."""


class DataError(ValueError):
    """An input problem that stops the run; the message names file, line/row and problem."""
