"""Benchmark files -> evaluation items ``{"id", "question", "gold", "kind", "row"}``.

Reads ``.jsonl``, ``.jsonl.gz``, ``.json`` (an array of objects), ``.parquet`` and FLAN's CoT ``.tsv``
through the one input reader (``data.formats.iter_rows``); errors are ``DataError`` as in every stage. The answer kind is
inferred per row: GSM8K/MATH and number/LaTeX golds are ``math``, a gold option letter with options
in the question is ``choice``, anything else (yes/no, option text) is ``text``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from reasonsift.data.formats import iter_rows
from reasonsift.data.load import ID_KEYS
from reasonsift.data.records import BadRow, DataError
from reasonsift.evaluation.answers import choice_letter, gold_answer, question_text

logger = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".parquet", ".tsv")
# Options listed in the question: "Options:", "(A) ...", "A. ..." / "A) ..." at a line start.
_OPTIONS_RE = re.compile(r"options\s*:|\([A-J]\)|^\s*(?:-\s*)?[A-J][.)]\s", re.IGNORECASE | re.MULTILINE)


def infer_kind(row: dict, question: str, gold: str) -> str:
    """``choice``, ``math`` or ``text`` for one row (see the module docstring)."""
    if re.fullmatch(r"\(?[A-J]\)?", gold.strip()) and _OPTIONS_RE.search(question):
        return "choice"
    if isinstance(row.get("answer"), str) and "####" in row["answer"]:
        return "math"  # GSM8K
    if isinstance(row.get("solution"), str) and "\\boxed" in row["solution"]:
        return "math"  # MATH and its derivatives
    if re.search(r"[\d\\^_=+*/]", gold):
        return "math"
    return "text"


def _item(row: dict, index: int) -> dict:
    """One evaluation item; ValueError (from answers) when the question or gold is missing."""
    question = question_text(row)
    gold = gold_answer(row)
    kind = infer_kind(row, question, gold)
    if kind == "choice":
        gold = choice_letter(gold) or gold  # "(C)" -> "C"
    item_id = next((str(row[k]) for k in ID_KEYS if row.get(k) not in (None, "")), str(index))
    return {"id": item_id, "question": question, "gold": gold, "kind": kind, "row": row}


def load_benchmark(path: str | Path, limit: int | None = None, skip_bad_rows: bool = False) -> list[dict]:
    """Read a benchmark file into items ``{"id", "question", "gold", "kind", "row"}``.

    ``id`` is the row's first id column (``data.load.ID_KEYS``) or its 0-based position. A malformed
    line, a non-object row, a missing question or gold raises a one-line ``DataError`` naming file
    and line, unless ``skip_bad_rows`` (then such rows are logged and left out; MATH train has two
    empty ``\\boxed{}``). Duplicate ids and a file with no items raise: results are keyed by id.
    """
    path = Path(path)
    if limit is not None and limit < 1:
        raise DataError(f"limit must be None or >= 1, got {limit}")
    if not path.exists():
        raise FileNotFoundError(f"benchmark file not found: {path}")
    if not path.name.lower().endswith(SUFFIXES):
        raise DataError(f"{path}: unsupported benchmark format (expected {', '.join(SUFFIXES)})")
    items: list[dict] = []
    seen: dict[str, str] = {}
    num_skipped = 0
    for raw in iter_rows(path):
        if limit is not None and len(items) >= limit:
            break
        try:
            if raw.row is None:
                raise BadRow(raw.error or "unreadable row")
            item = _item(raw.row, index=len(items) + num_skipped)
        except ValueError as e:  # BadRow, and answers' missing question / gold
            if not skip_bad_rows:
                raise DataError(f"{raw.where}: {e}") from None
            if num_skipped < 5:  # the first few say why; the count comes at the end
                logger.warning("skipping %s: %s", raw.where, e)
            num_skipped += 1
            continue
        if item["id"] in seen:
            raise DataError(f"{raw.where}: duplicate id {item['id']!r} (first at {seen[item['id']]})")
        seen[item["id"]] = raw.where
        items.append(item)
    if num_skipped:
        logger.warning("%s: skipped %d bad rows, kept %d", path, num_skipped, len(items))
    if not items:
        raise DataError(f"{path}: no benchmark items (empty file, or every row lacked a question or gold)")
    return items
