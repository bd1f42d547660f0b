"""Who may write a run folder: ``run_lock`` (one owner per folder for a command's life; the ranks of
one launch share it), ``exclusive_lock`` (one process merges a stage's shards) and ``run_units`` (one
process runs each unit; a rank out of work takes over the units of a dead one).

All are OS locks or owner files checked against live processes, so a crashed or killed holder never
blocks a rerun. The folder's layout and atomic writes are in ``runfolder``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

from reasonsift.config import ConfigError
from reasonsift.runfolder import is_done, rank_world, read_json, write_error, write_json_atomic

logger = logging.getLogger(__name__)


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


U = TypeVar("U")


def claim_lock(unit_file: Path) -> Path:
    """The lock a process holds while it makes ``unit_file`` (beside it, like its done-marker)."""
    return unit_file.with_name(unit_file.name + ".claim")


def run_claimed(unit_file: Path, run: Callable[[], None]) -> bool:
    """Call ``run()`` (which makes ``unit_file`` and its done-marker) if this process can claim the
    unit and it is not done yet; whether it ran. No two processes make one unit this way."""
    if is_done(unit_file):
        return False
    with exclusive_lock(claim_lock(unit_file)) as claimed:
        if claimed and not is_done(unit_file):  # the marker may have come since the check above
            run()
            return True
    return False


def run_units(mine: Sequence[U], others: Sequence[U], unit_file: Callable[[U], Path], run: Callable[[U], None],
              poll_s: float = 2.0) -> bool:
    """Run this rank's units, then any other rank's unit no live process holds, until every unit is done.

    ``run(unit)`` must write the unit's file and done-marker; it is called through ``run_claimed``,
    so no two processes make one unit, and a unit with a marker is never made again. Other ranks' units are taken from the end of their list, as their owners work from
    the start. A rank with nothing left to take waits here rather than exit, for two reasons: a rank
    killed for good leaves its units unclaimed (the kernel drops a dead process's ``flock``) and the
    living take them; and under torchrun a node whose ranks have all exited sits at the agent's exit
    barrier and cannot join the restart of another node's failed rank, so that restart would wait for
    it at the rendezvous until both timed out (the torchrun test once hung so, docs/scaling.md).

    Returns whether this process should merge: False when the last units were finished by others
    (whichever process finishes the last unit merges; two finishing at once meet at the merge lock).
    """
    queue = list(mine) + list(reversed(others))
    should_merge = True
    while queue:
        ran = False
        for unit in queue:
            ran = run_claimed(unit_file(unit), lambda: run(unit)) or ran
        queue = [u for u in queue if not is_done(unit_file(u))]
        should_merge = ran
        if queue and not ran:
            time.sleep(poll_s)  # every unit left is being made by a live process
    return should_merge


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
        raise write_error(f"write the {what} folder", folder, e) from None
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
