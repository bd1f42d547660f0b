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
    RUN/.lock/<host>-<pid>.json  who owns the folder while a command runs (``run_lock``)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from reasonsift.config import ConfigError

logger = logging.getLogger(__name__)
# Read once at import (os.umask can only be read by setting it, which is not thread-safe later).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class WriteError(OSError):
    """A file or folder could not be written (read-only location, full disk, a file in the way); the
    message names the path and what was being written, where ``OSError`` names only an errno."""


def _cannot(what: str, path: Path, e: OSError) -> WriteError:
    return WriteError(f"cannot {what} {path}: {e.strerror or e} (choose a writable location or free space)")


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then rename tmp onto ``path``; a crash never leaves half a file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _cannot("write", path, e) from None
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


def write_rejected_rows(path: Path, rejected: list[dict[str, Any]]) -> None:
    """Write a stage's quarantined rows (one JSON object per line: where, row_index, reason, raw), or
    remove a stale file when there are none."""
    if not rejected:
        Path(path).unlink(missing_ok=True)
        return
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejected))


def read_json(path: Path) -> Any:
    """Read a JSON file (small helper so callers need not open files)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


LOCK_DIR = ".lock"  # RUN/.lock/<host>-<pid>.json: one file per process that owns the folder
_held: dict[Path, int] = {}  # lock files this process holds -> nesting depth (a stage inside another)


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks (/proc), so a recycled pid is not taken for the holder."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of stat; the name before ")" may hold spaces


def _alive(holder: dict[str, Any]) -> bool:
    """Whether a holder on this host is still running (same pid and, where known, same start time)."""
    pid = int(holder.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's live process
    except (OSError, ValueError):
        return False
    start = _process_start(pid)
    return holder.get("start") is None or start is None or holder["start"] == start


@contextlib.contextmanager
def run_lock(folder: Path, key: str, what: str, command: str = "") -> Iterator[None]:
    """Own ``folder`` for the life of a command: the first thing to take it, before any manifest.

    Each process writes ``folder/.lock/<host>-<pid>.json`` (key, rank, pid, host) and removes it on
    exit, Ctrl-C included. ``key`` fingerprints the command's config: processes with the same key and
    different RANKs (torchrun, Slurm or Ray workers with RANK/WORLD_SIZE set) share the folder by
    design; a process with another key, or a second process for the same rank, is refused with one
    line. A holder that died (kill -9) is stale: on this host its pid is checked and its file
    removed; a holder on another host cannot be checked, so the message names its file. Checking and
    registering happen under an ``flock`` of the folder itself, so two processes starting together
    cannot both pass. A folder this call created and that is still empty on exit (a command that
    failed before writing anything) is removed again.
    """
    import fcntl

    folder = Path(folder)
    created = [p for p in [folder, *folder.parents] if not p.exists()]  # removed again if left empty
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.TemporaryFile(dir=folder)  # a read-only folder fails here, before any work
        probe.close()
    except OSError as e:
        raise _cannot(f"write the {what} folder", folder, e) from None
    host, pid = socket.gethostname(), os.getpid()
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    mine = folder / LOCK_DIR / f"{host}-{pid}.json"
    fd = os.open(folder, os.O_RDONLY)
    try:
        _flock(fd, fcntl.LOCK_EX)  # held only while checking/registering, not for the run
        try:
            if mine in _held:  # this process already owns the folder (one stage run inside another)
                _held[mine] += 1
            else:
                _check_holders(folder, key, what, host, pid, rank, world)
                mine.parent.mkdir(exist_ok=True)
                write_json_atomic(mine, {"key": key, "what": what, "host": host, "pid": pid,
                                         "start": _process_start(pid), "rank": rank, "world_size": world,
                                         "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": command})
                _held[mine] = 1
        finally:
            _flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    try:
        yield
    finally:
        _held[mine] -= 1
        if not _held[mine]:
            del _held[mine]
            _release(folder, mine, created)


def _flock(fd: int, op: int) -> None:
    """``flock`` of the run folder; where the file system cannot lock a directory (some NFS setups),
    go on without it: the owner files still refuse other commands, only two processes starting in the
    same instant are then not told apart."""
    import fcntl

    try:
        fcntl.flock(fd, op)
    except OSError as e:
        logger.debug("cannot flock the run folder (%s); checking owners without it", e)


def lock_key(*parts: Any) -> str:
    """The ``run_lock`` key of a command: a hash of what must be equal for processes to share a folder."""
    import hashlib

    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_holders(folder: Path, key: str, what: str, host: str, pid: int, rank: int, world: int) -> None:
    """Raise ConfigError when a live process that does not cooperate with this one owns ``folder``."""
    for path in sorted((folder / LOCK_DIR).glob("*.json")):
        try:
            holder = read_json(path)
        except (OSError, ValueError):
            continue  # half-written by a process that died between mkstemp and rename: not a holder
        if holder.get("host") == host and holder.get("pid") == pid:
            continue  # a file of this very process (left by an earlier command in it)
        if holder.get("host") == host and not _alive(holder):
            logger.info("%s: removing the stale lock of pid %s (no longer running)", folder, holder.get("pid"))
            path.unlink(missing_ok=True)
            continue
        who = (f"{holder.get('what', 'command')} (pid {holder.get('pid')} on {holder.get('host')}, "
               f"since {holder.get('since')})")
        gone = f"; if that process is gone, delete {path}" if holder.get("host") != host else ""
        if holder.get("key") != key:
            raise ConfigError(f"{folder} is in use by another {who} with a different config; wait for it to "
                              f"finish or use another folder{gone}")
        if (holder.get("rank"), holder.get("world_size")) == (rank, world):
            raise ConfigError(f"{folder} is already being written by {who} with the same config (rank {rank} of "
                              f"{world}); wait for it to finish{gone}")


def _release(folder: Path, mine: Path, created: list[Path]) -> None:
    """Remove this process's lock file, the lock folder when empty, and the folders ``run_lock`` made
    when they are left empty."""
    import fcntl

    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # the folder was removed under us: nothing left to release
    try:
        _flock(fd, fcntl.LOCK_EX)
        mine.unlink(missing_ok=True)
        for empty in [mine.parent, *created]:
            try:
                empty.rmdir()
            except OSError:  # not empty: another owner, or real outputs
                break
    finally:
        os.close(fd)
