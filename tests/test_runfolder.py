"""Run-folder primitives: atomic writes and done-markers."""

from __future__ import annotations

import os
import stat

import pytest
import yaml

from reasonsift.config import ConfigError
from reasonsift.runfolder import (
    RunPaths,
    check_resume,
    done_marker,
    flat_settings,
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


def test_refused_resume_names_every_changed_key_with_both_values(tmp_path):
    path = tmp_path / "manifest.json"
    first = {"input": "abc", "settings": {"score.seed": 42, "score.long_tokens": 1000, "score.batch_tokens": 0}}
    assert check_resume(path, first, finished=False, holds="RUN holds scores", remedy="start over") == []
    assert read_json(path) == first
    # the same settings resume silently; an ignored key may change
    same = {**first, "settings": {**first["settings"], "score.batch_tokens": 4096}}
    assert check_resume(path, same, True, "RUN holds scores", "start over", ignore=["score.batch_tokens"]) == []
    changed = {"input": "def", "settings": {"score.seed": 5, "score.long_tokens": 1000, "score.new_key": "x"}}
    with pytest.raises(ConfigError) as err:
        check_resume(path, changed, True, "RUN holds scores", "start over")
    message = str(err.value)
    assert "changed: " in message and len(message.splitlines()) == 1
    for part in ("input 'abc' -> 'def'", "score.seed 42 -> 5", "score.new_key None -> 'x'", "score.batch_tokens 4096 -> None"):
        assert part in message
    assert "score.long_tokens" not in message
    assert read_json(path) == same  # a refusal leaves the manifest alone
    # nothing finished under the old settings: the changes are returned and the new manifest saved
    assert len(check_resume(path, changed, False, "RUN holds scores", "start over")) == 4
    assert read_json(path) == changed


def test_flat_settings_name_section_and_key_and_leave_out_speed_knobs():
    from reasonsift.config import ScoreConfig, SelectConfig

    flat = flat_settings({"score": ScoreConfig(), "select": SelectConfig(budget=3)}, ["score.batch_tokens"])
    assert flat["score.seed"] == 42 and flat["select.budget"] == 3 and "score.batch_tokens" not in flat


def test_a_manifest_of_an_older_format_is_one_named_change(tmp_path):
    path = tmp_path / "manifest.json"
    write_json_atomic(path, {"input": "abc", "config": "0123456789abcdef"})  # before settings were recorded
    with pytest.raises(ConfigError) as err:
        check_resume(path, {"input": "abc", "settings": {"score.seed": 42, "score.long_tokens": 1000}}, True,
                     "RUN holds scores", "start over")
    assert "settings not recorded before" in str(err.value) and "score.seed" not in str(err.value)
    assert "config '0123456789abcdef' -> None" in str(err.value)
