"""Read an SFT pool's rows from disk or the hub, streamed, each as a ``RawRow`` (parsed dict + verbatim text).

Formats: ``.jsonl`` (optionally ``.gz``), ``.json`` (an array of objects), ``.parquet``, FLAN's CoT
``.tsv`` (question, answer, rationale), a folder written by ``datasets.save_to_disk``, or a
``datasets`` hub id (``datasets.load_dataset``). Reading is streamed row by row (only ``.json``
arrays are parsed whole), so memory does not grow with the pool. A row that cannot be parsed is a
``RawRow`` with ``error`` set, so the caller decides whether it is fatal or quarantined. Which
columns are the prompt and response is ``data.load``'s business.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonsift.data.records import DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawRow:
    """One input row as read: where it came from, the parsed dict, and its verbatim text."""

    index: int  # 0-based row position in the input
    where: str  # "file.jsonl:12" (1-based line) or "file.parquet row 12"
    raw: str  # the row's exact text for .jsonl; canonical JSON for other formats
    row: dict[str, Any] | None  # None when the row could not be parsed
    error: str | None = None  # why it could not be parsed


def _json_default(value: Any) -> Any:
    """Make numpy / datetime / bytes values from parquet or Arrow JSON-serialisable."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def canonical_json(row: dict[str, Any]) -> str:
    """The verbatim text written for a row whose input format is not JSON lines."""
    return json.dumps(row, ensure_ascii=False, default=_json_default)


def _iter_jsonl(path: Path) -> Iterator[RawRow]:
    """Rows of a JSON-lines file. A truncated or corrupt .gz fails mid-stream: the rows read before
    stay good, and the rest of the file becomes one last bad row saying where reading stopped (an
    error, or under ``--skip-bad-rows`` a quarantined row, so the readable rows are kept)."""
    opener = gzip.open if path.suffix == ".gz" else open
    last, index = "its start", 0
    try:
        for raw in _jsonl_rows(path, opener):
            last, index = raw.where, raw.index + 1
            yield raw
    except (EOFError, OSError, zlib.error) as e:
        error = f"file truncated or corrupt, unreadable after {last} ({type(e).__name__}: {_first_line(e)})"
        logger.warning("%s: %s; the rows before it are read", path, error)
        yield RawRow(index, f"{path.name} (after {last})", "", None, error)


def _jsonl_rows(path: Path, opener: Any) -> Iterator[RawRow]:
    """Rows of a (gzipped) JSON-lines file; ``raw`` is each line's exact text."""
    with opener(path, "rb") as f:
        index = 0
        for line_no, line in enumerate(f, start=1):
            where = f"{path.name}:{line_no}"
            stripped = line.rstrip(b"\r\n")
            if not stripped.strip():
                continue  # blank lines are not rows
            try:
                text = stripped.decode("utf-8")
            except UnicodeDecodeError as e:
                yield RawRow(index, where, stripped.decode("utf-8", errors="replace"), None,
                             f"not valid UTF-8 (byte {e.start})")
                index += 1
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as e:
                yield RawRow(index, where, text, None, f"malformed JSON ({e.msg} at column {e.colno})")
            else:
                if isinstance(row, dict):
                    yield RawRow(index, where, text, row)
                else:
                    yield RawRow(index, where, text, None, f"expected a JSON object, got {type(row).__name__}")
            index += 1


def _iter_json(path: Path) -> Iterator[RawRow]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON array of objects (or use .jsonl)")
    for i, row in enumerate(data):
        where = f"{path.name} item {i}"
        if isinstance(row, dict):
            yield RawRow(i, where, canonical_json(row), row)
        else:
            yield RawRow(i, where, json.dumps(row), None, f"expected an object, got {type(row).__name__}")


def _iter_parquet(path: Path) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a corrupt file
        raise DataError(f"{path}: not a readable parquet file ({_first_line(e)})") from None
    index = 0
    for batch in parquet.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            yield RawRow(index, f"{path.name} row {index}", canonical_json(row), row)
            index += 1


def _iter_flan_tsv(path: Path) -> Iterator[RawRow]:
    """FLAN's CoT ``.tsv``: ``question\\tanswer\\trationale``, no header, newlines as a literal ``\\n``."""
    with open(path, encoding="utf-8") as f:
        index = 0
        for line_no, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            where = f"{path.name}:{line_no}"
            if len(fields) != 3:
                yield RawRow(index, where, line, None, "expected 3 tab-separated columns (question, answer, "
                                                      f"rationale), got {len(fields)}")
            else:
                question, answer, rationale = (field.replace("\\n", "\n") for field in fields)
                row = {"question": question, "answer": answer, "rationale": rationale}
                yield RawRow(index, where, canonical_json(row), row)
            index += 1


def _first_line(e: Exception) -> str:
    """An exception as one line (library messages often span several)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _iter_hf(dataset: Any, name: str) -> Iterator[RawRow]:
    for i, row in enumerate(dataset):
        yield RawRow(i, f"{name} row {i}", canonical_json(row), dict(row))


def iter_rows(source: str | Path, split: str = "train") -> Iterator[RawRow]:
    """Stream the rows of a file, a ``save_to_disk`` folder or a hub dataset id."""
    path = Path(source)
    if path.is_dir():
        import datasets

        try:
            ds = datasets.load_from_disk(str(path))
        except Exception as e:  # noqa: BLE001 - any failure here is a bad input folder
            raise DataError(f"{path}: not a datasets.save_to_disk folder ({_first_line(e)})") from None
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise DataError(f"{path}: no split '{split}' (splits: {', '.join(ds)}); set data.split")
            ds = ds[split]
        return _iter_hf(ds, path.name)
    if path.exists():
        name = path.name.lower()
        if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
            return _iter_jsonl(path)
        if name.endswith(".json"):
            return _iter_json(path)
        if name.endswith(".parquet"):
            return _iter_parquet(path)
        if name.endswith(".tsv"):
            return _iter_flan_tsv(path)
        raise DataError(f"{path}: unsupported file type (use .jsonl, .json, .parquet, FLAN .tsv or a save_to_disk "
                        "folder)")
    if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", str(source)) and not str(source).endswith((".jsonl", ".json", ".parquet")):
        import datasets

        try:
            ds = datasets.load_dataset(str(source), split=split)
        except Exception as e:  # noqa: BLE001 - hub errors are many; report them in one line
            # Also reached by a mistyped relative path ("data/pool"), so say both.
            raise DataError(f"{source}: no such file or folder, and could not load it from the hub "
                            f"({_first_line(e)})") from None
        return _iter_hf(ds, str(source))
    raise DataError(f"{source}: no such file or folder")


def check_source(source: str | Path, split: str = "train") -> None:
    """Raise DataError when the input cannot be opened (no such file, unsupported type, unreadable first
    row's container), before a stage creates anything: it reads at most the first row."""
    next(iter(iter_rows(source, split)), None)


def source_id(source: str | Path) -> str:
    """How a run names its input: the absolute path of a local file or folder (so a later stage finds it
    from any working directory, and two spellings of one file are one input), else the hub id as given."""
    return str(Path(source).resolve()) if Path(source).exists() else str(source)


def rows_at(source: str | Path, indices: set[int], split: str = "train") -> dict[int, RawRow]:
    """The raw rows at ``indices`` (one more pass over the input), for stages that find a row bad
    only after tokenizing it and must still write it verbatim to ``rejected.jsonl``."""
    found: dict[int, RawRow] = {}
    if not indices:
        return found
    for raw in iter_rows(source, split):
        if raw.index in indices:
            found[raw.index] = raw
            if len(found) == len(indices):
                break
    return found


def rejected_entry(raw: RawRow, reason: str) -> dict[str, Any]:
    """One line of ``rejected.jsonl``: where the row was, why it was rejected, and the row verbatim."""
    return {"where": raw.where, "row_index": raw.index, "reason": reason, "raw": raw.raw}
