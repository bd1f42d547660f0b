"""The run folder: every artifact path in one place, atomic writes, and per-unit done-markers.

Stages talk only through files here. A unit of work (one scoring shard at one checkpoint, say)
writes its output to a temporary name, renames it into place, then writes its done-marker, so a
crash at any instant leaves either a finished unit or nothing that a rerun would trust.

Layout::

    RUN/config.yaml            resolved config of the last command
    RUN/score/manifest.json    what the finished units were made from (a resume must match)
    RUN/score/tokens/shard<s>.parquet (+ .done)            the pool, tokenized once
    RUN/score/<stage>/ckpt<k>/shard<s>.parquet (+ .done)   per-unit losses
    RUN/score/<stage>/ckpt<k>/perturbation.json            what that checkpoint drew
    RUN/direction/theta_f.safetensors                      score.direction=finetune's θ_f
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
import dataclasses
import hashlib
import json
import logging
import os
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import yaml

from reasonsift.config import ConfigError

logger = logging.getLogger(__name__)


class WriteError(OSError):
    """A file or folder could not be written (read-only location, full disk, a file in the way); the
    message names the path and what was being written, where ``OSError`` names only an errno."""


def _cannot(what: str, path: Path, e: OSError) -> WriteError:
    return WriteError(f"cannot {what} {path}: {e.strerror or e} (choose a writable location or free space)")


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then rename tmp onto ``path``; a crash never leaves half a file.

    The temporary file is created with ``os.open(..., 0o666)`` so the process umask gives it the
    usual permissions (``mkstemp`` would make it 0600), without reading or changing the umask.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    except OSError as e:
        raise _cannot("write", path, e) from None
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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
        """One scoring unit: the losses of one shard at one checkpoint."""
        return self.score_dir / stage / f"ckpt{ckpt}" / f"shard{shard:05d}.parquet"

    @property
    def token_dir(self) -> Path:
        """The pool, tokenized once into shards (read at every checkpoint)."""
        return self.score_dir / "tokens"

    def token_shard(self, shard: int) -> Path:
        return self.token_dir / f"shard{shard:05d}.parquet"

    @property
    def calibration(self) -> Path:
        """score.noise=calibrate: the searched Gaussian schedule (done-marked; a rerun reuses it)."""
        return self.score_dir / "calibration.json"

    @property
    def gradient_check(self) -> Path:
        """``reasonsift check-gradients``: Theorem 3.1 on this run."""
        return self.root / "gradient_check.json"

    def perturbation(self, stage: str, ckpt: int) -> Path:
        """What one checkpoint's perturbation drew (norms, radius), beside its units."""
        return self.score_dir / stage / f"ckpt{ckpt}" / "perturbation.json"

    @property
    def direction_dir(self) -> Path:
        """``score.direction=finetune``: the short fine-tune's θ_f."""
        return self.root / "direction"

    @property
    def theta_f(self) -> Path:
        return self.direction_dir / "theta_f.safetensors"

    def critical_shard(self, shard: int) -> Path:
        """One unit of ``reasonsift critical``: the kept rows of ``shard_size`` input rows."""
        return self.critical_dir / f"shard{shard:05d}.jsonl"

    @property
    def critical_manifest(self) -> Path:
        return self.critical_dir / "manifest.json"

    @property
    def critical_config(self) -> Path:
        return self.critical_dir / "config.yaml"

    @property
    def critical_report(self) -> Path:
        return self.critical_dir / "report.json"

    @property
    def critical_rejected(self) -> Path:
        """Rows ``reasonsift critical`` quarantined (--skip-bad-rows), with their reasons."""
        return self.critical_dir / "rejected.jsonl"

    @property
    def critical_card(self) -> Path:
        return self.critical_dir / "README.md"

    def merge_lock(self, stage_dir: Path) -> Path:
        """The lock the last rank to finish takes before merging ``stage_dir``'s units."""
        return stage_dir / "merge.lock"


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


def _hash_file(digest: Any, path: Path) -> None:
    """Feed a file's bytes to ``digest`` in 1 MiB blocks (inputs can be many GB)."""
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)


def file_sha256(path: Path) -> str:
    """SHA-256 of one file's bytes."""
    digest = hashlib.sha256()
    _hash_file(digest, Path(path))
    return digest.hexdigest()


def input_fingerprint(data: str) -> str:
    """sha256 of the input file(s) (names and bytes), or ``hub:<id>``; part of every resume manifest."""
    path = Path(data)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] if path.exists() else []
    if not files:
        return f"hub:{data}"
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        _hash_file(digest, f)
    return digest.hexdigest()[:16]


def rank_world() -> tuple[int, int]:
    """(RANK, WORLD_SIZE) of this process under torchrun or a Slurm array; (0, 1) alone.

    Ranks split a stage's units by ``unit % world == rank``; no process group is needed because
    they meet only through the done-markers of this folder.
    """
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def wait_for(paths: list[Path], what: str, timeout_s: float = 24 * 3600) -> None:
    """File barrier for multi-process runs: wait until other ranks have marked ``paths`` done."""
    start = time.time()
    while not all(is_done(p) for p in paths):
        if time.time() - start > timeout_s:
            raise TimeoutError(f"gave up waiting for other ranks to finish {what}")
        time.sleep(2.0)


def flat_settings(configs: dict[str, Any], leave_out: Iterable[str] = ()) -> dict[str, Any]:
    """``{"section.key": value}`` of resolved configs (dataclasses), without the ``leave_out`` keys.

    What a resume manifest records: flat, so a refused resume can name each changed key. Values go
    through JSON, so they compare equal to what a rerun reads back (tuples become lists).
    """
    skip = set(leave_out)
    flat = {f"{section}.{f.name}": getattr(cfg, f.name) for section, cfg in configs.items()
            for f in dataclasses.fields(cfg) if f"{section}.{f.name}" not in skip}
    return json.loads(json.dumps(flat, default=str))


def changed_keys(old: dict[str, Any], new: dict[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """``"key old -> new"`` for every key whose value differs (a missing key reads as None), sorted.

    A mapping value (a manifest's ``settings``) is compared key by key, under its own keys.
    """
    skip = set(ignore)
    # A mapping one side lacks (a manifest an older reasonsift wrote): one entry, not every key in it.
    unrecorded = [f"{k} not recorded before" if k not in old else f"{k} no longer recorded"
                  for k in sorted(set(old) ^ set(new)) if isinstance(old.get(k, new.get(k)), dict)]
    before = _flat({k: v for k, v in old.items() if k in new or not isinstance(v, dict)})
    after = _flat({k: v for k, v in new.items() if k in old or not isinstance(v, dict)})
    return unrecorded + [f"{k} {_shown(before.get(k))} -> {_shown(after.get(k))}"
                         for k in sorted(set(before) | set(after)) if k not in skip and before.get(k) != after.get(k)]


def _flat(manifest: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in manifest.items():
        out.update(value if isinstance(value, dict) else {key: value})
    return out


def _shown(value: Any) -> str:
    """A manifest value as a refusal message shows it: numbers bare, text quoted, long text cut."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_resume(path: Path, manifest: dict[str, Any], finished: bool, holds: str, remedy: str,
                 ignore: Iterable[str] = (), write: bool = True) -> list[str]:
    """The one resume check of every stage: compare ``manifest`` with the one saved at ``path``.

    A stage whose finished units (``finished``) came from other settings must not mix them with new
    ones: then raise ``ConfigError`` naming every changed key with its old and new value. Otherwise
    return the changes (empty for a first run or an unchanged one) and, with ``write``, save
    ``manifest`` as the folder's new one. ``ignore``: keys recorded for people, not compared.
    """
    manifest = json.loads(json.dumps(manifest, default=str))
    changes = changed_keys(read_json(path), manifest, ignore) if Path(path).exists() else []
    if changes and finished:
        raise ConfigError(f"{holds} made with a different config (changed: {'; '.join(changes)}); {remedy}")
    if write:
        write_json_atomic(path, manifest)
    return changes


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
    rank, world = rank_world()
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
