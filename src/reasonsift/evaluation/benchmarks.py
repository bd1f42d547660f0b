"""Benchmark files -> evaluation items ``{"id", "question", "gold", "kind", "row"}``.

Reads ``.jsonl``, ``.jsonl.gz``, ``.json`` (an array of objects), ``.parquet`` and FLAN's CoT ``.tsv``
(question, answer, rationale; no header; newlines written as a literal ``\\n``). The answer kind is
inferred per row: GSM8K/MATH and number/LaTeX golds are ``math``, a gold option letter with options
in the question is ``choice``, anything else (yes/no, option text) is ``text``.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

from reasonsift.evaluation.answers import choice_letter, gold_answer, question_text

logger = logging.getLogger(__name__)

ID_KEYS = ("id", "unique_id", "idx", "question_id", "problem_id")
# Options listed in the question: "Options:", "(A) ...", "A. ..." / "A) ..." at a line start.
_OPTIONS_RE = re.compile(r"options\s*:|\([A-J]\)|^\s*(?:-\s*)?[A-J][.)]\s", re.IGNORECASE | re.MULTILINE)


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, row) for each non-blank line of a .jsonl or .jsonl.gz file."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no}: malformed JSON ({e.msg} at column {e.colno})") from None
            yield line_no, row


def _read_json(path: Path) -> Iterator[tuple[int, dict]]:
    """(1-based array index, row) for a .json file holding one array of objects."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON array of objects, got {type(rows).__name__}")
    yield from enumerate(rows, start=1)


def _read_parquet(path: Path) -> Iterator[tuple[int, dict]]:
    """(1-based row number, row) for a .parquet file, one record batch at a time."""
    import pyarrow.parquet as pq

    row_no = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            row_no += 1
            yield row_no, row


def _read_flan_tsv(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, row) for FLAN CoT TSV: ``question\\tanswer\\trationale``, literal ``\\n`` newlines."""
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 3:
                raise ValueError(
                    f"{path}:{line_no}: expected 3 tab-separated columns (question, answer, rationale), "
                    f"got {len(fields)}"
                )
            question, answer, rationale = (field.replace("\\n", "\n") for field in fields)
            yield line_no, {"question": question, "answer": answer, "rationale": rationale}


def _read_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """Dispatch on the file suffix; raise for formats we do not read."""
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return _read_jsonl(path)
    if name.endswith(".json"):
        return _read_json(path)
    if name.endswith(".parquet"):
        return _read_parquet(path)
    if name.endswith(".tsv"):
        return _read_flan_tsv(path)
    raise ValueError(f"{path}: unsupported benchmark format (expected .jsonl, .jsonl.gz, .json, .parquet, .tsv)")


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

    ``id`` is the row's ``id``/``unique_id``/``idx``/... or its 0-based position. A malformed line, a
    non-object row, a missing question or gold raises a one-line ValueError naming file and line,
    unless ``skip_bad_rows`` (then such rows are logged and left out; MATH train has two empty
    ``\\boxed{}``). Duplicate ids and a file with no items raise: results are keyed by id.
    """
    path = Path(path)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be None or >= 1, got {limit}")
    if not path.exists():
        raise FileNotFoundError(f"benchmark file not found: {path}")
    items: list[dict] = []
    seen: dict[str, int] = {}
    num_skipped = 0
    for line_no, row in _read_rows(path):
        if limit is not None and len(items) >= limit:
            break
        try:
            if not isinstance(row, dict):
                raise ValueError(f"expected a JSON object, got {type(row).__name__}")
            item = _item(row, index=len(items) + num_skipped)
        except ValueError as e:
            if not skip_bad_rows:
                raise ValueError(f"{path}:{line_no}: {e}") from None
            if num_skipped < 5:  # the first few say why; the count comes at the end
                logger.warning("skipping %s:%d: %s", path, line_no, e)
            num_skipped += 1
            continue
        if item["id"] in seen:
            raise ValueError(f"{path}:{line_no}: duplicate id {item['id']!r} (first at line {seen[item['id']]})")
        seen[item["id"]] = line_no
        items.append(item)
    if num_skipped:
        logger.warning("%s: skipped %d bad rows, kept %d", path, num_skipped, len(items))
    if not items:
        raise ValueError(f"{path}: no benchmark items (empty file, or every row lacked a question or gold)")
    return items
