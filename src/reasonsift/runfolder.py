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
    RUN/.lock/<host>-<pid>.json  who owns the folder while a command runs (``runlock.run_lock``)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from reasonsift.config import ConfigError


class WriteError(OSError):
    """A file or folder could not be written (read-only location, full disk, a file in the way); the
    message names the path and what was being written, where ``OSError`` names only an errno."""


def write_error(what: str, path: Path, e: OSError) -> WriteError:
    """The ``WriteError`` for failing to ``what`` (e.g. "write") ``path`` with ``e``."""
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
        raise write_error("write", path, e) from None
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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
