"""The run folder: every artifact path in one place, atomic writes, and per-unit done-markers.

Stages talk only through files here. A unit of work (one scoring shard at one checkpoint, say)
writes its output to a temporary name, renames it into place, then writes its done-marker, so a
crash at any instant leaves either a finished unit or nothing that a rerun would trust.

Layout::

    RUN/config.yaml            resolved config of the last command
    RUN/score/<stage>/ckpt<k>/shard<s>.parquet (+ .done)   per-unit losses
    RUN/scores.parquet         one row per example
    RUN/rejected.jsonl         quarantined input rows (--skip-bad-rows)
    RUN/report.json            counts, token accounting, wall time
    RUN/selected.jsonl         chosen input rows, verbatim
    RUN/report.html            the person-facing report
    RUN/select/<method>-<budget>-seed<s>/   each selection's selected.jsonl, report.json/.html, README.md,
                               selection.parquet (id, cluster, selected); the latest is also in RUN/
    RUN/critical/shard<s>.jsonl (+ .done), manifest.json, config.yaml, report.json   critical tokens
    RUN/critical.jsonl         examples + critical_mask (reasonsift critical)
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

# Read once at import (os.umask can only be read by setting it, which is not thread-safe later).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then rename tmp onto ``path``; a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[bool]:
    """Try to take an exclusive lock on ``path`` without waiting; yields whether it was taken.

    An OS lock (``flock``) rather than a marker file: it is released when the process dies, so a
    crashed holder never blocks a rerun.
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_text_atomic(path: Path, text: str) -> None:
    """Atomically write a text file."""
    write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json_atomic(path: Path, payload: Any) -> None:
    """Atomically write indented JSON."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


@dataclass(frozen=True)
class RunPaths:
    """Paths of every artifact in a run folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def scores(self) -> Path:
        return self.root / "scores.parquet"

    @property
    def report(self) -> Path:
        return self.root / "report.json"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def rejected(self) -> Path:
        return self.root / "rejected.jsonl"

    @property
    def selected(self) -> Path:
        return self.root / "selected.jsonl"

    @property
    def dataset_card(self) -> Path:
        return self.root / "README.md"

    def selection(self, name: str) -> Path:
        """``RUN/select/<method>-<budget>-seed<seed>/``: every selection kept (the latest is also at the top)."""
        return self.root / "select" / name

    @property
    def score_dir(self) -> Path:
        return self.root / "score"

    @property
    def manifest(self) -> Path:
        """Fingerprint of the scoring inputs; a rerun with another fingerprint refuses to resume."""
        return self.score_dir / "manifest.json"

    @property
    def critical_dir(self) -> Path:
        """``reasonsift critical``'s work units, manifest, config and report."""
        return self.root / "critical"

    @property
    def critical(self) -> Path:
        """The examples with their ``critical_mask``, ready for ``train --objective cft``."""
        return self.root / "critical.jsonl"

    def unit(self, stage: str, ckpt: int, shard: int) -> Path:
        return self.score_dir / stage / f"ckpt{ckpt}" / f"shard{shard:05d}.parquet"


def done_marker(path: Path) -> Path:
    """The done-marker that sits beside a unit file."""
    return path.with_name(path.name + ".done")


def is_done(path: Path) -> bool:
    """A unit counts as done only when both its file and its marker exist."""
    return path.exists() and done_marker(path).exists()


def mark_done(path: Path, info: dict[str, Any] | None = None) -> None:
    """Write the unit's done-marker (after its file is in place)."""
    write_json_atomic(done_marker(path), info or {})


def save_config(path: Path, resolved: dict[str, Any], command: str) -> None:
    """Write the resolved config (YAML), headed by the command that produced it."""
    header = f"# written by: {command}\n"
    write_text_atomic(path, header + yaml.safe_dump(resolved, sort_keys=False))


def read_json(path: Path) -> Any:
    """Read a JSON file (small helper so callers need not open files)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
