"""Run-folder primitives: atomic writes and done-markers."""

from __future__ import annotations

import os
import stat

import pytest
import yaml

from reasonsift.runfolder import (
    RunPaths,
    done_marker,
    is_done,
    mark_done,
    read_json,
    save_config,
    write_atomic,
    write_json_atomic,
    write_text_atomic,
)


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_write_atomic_writes_file_with_usual_permissions(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    write_text_atomic(path, "hello é\n")
    assert path.read_text(encoding="utf-8") == "hello é\n"
    assert os.listdir(path.parent) == ["out.txt"]
    # Not mkstemp's 0600: teammates on a shared filesystem must be able to read a run folder.
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~current_umask()


def test_writer_that_raises_leaves_nothing(tmp_path):
    path = tmp_path / "out.parquet"

    def half_writer(tmp):
        tmp.write_bytes(b"half a file")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(path, half_writer)
    assert not path.exists() and os.listdir(tmp_path) == []


def test_writer_that_raises_keeps_the_old_file(tmp_path):
    path = tmp_path / "report.json"
    write_json_atomic(path, {"n": 1})

    def failing(tmp):
        tmp.write_text('{"n": 2', encoding="utf-8")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, failing)
    assert read_json(path) == {"n": 1} and os.listdir(tmp_path) == ["report.json"]


def test_is_done_needs_file_and_marker(tmp_path):
    unit = RunPaths(tmp_path).unit("isotropic", 2, 3)
    assert unit == tmp_path / "score" / "isotropic" / "ckpt2" / "shard00003.parquet"
    assert not is_done(unit)
    mark_done(unit, {"rows": 5})  # marker without the file (a crash between the two writes)
    assert done_marker(unit).exists() and not is_done(unit)
    done_marker(unit).unlink()
    write_text_atomic(unit, "data")  # file without the marker
    assert not is_done(unit)
    mark_done(unit, {"rows": 5})
    assert is_done(unit) and read_json(done_marker(unit)) == {"rows": 5}
    assert done_marker(unit).name == "shard00003.parquet.done"


def test_save_config_has_header_and_loads_back(tmp_path):
    resolved = {"score": {"seed": 3, "fields": ["prompt=q"]}, "data": {"system_prompt": "Be: brief"}}
    path = RunPaths(tmp_path).config
    save_config(path, resolved, "reasonsift score pool.jsonl")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# written by: reasonsift score pool.jsonl\n")
    assert yaml.safe_load(text) == resolved
