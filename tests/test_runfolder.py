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


# --- run_lock: one owner per folder, cooperating ranks share it ---------------------------------

HOLD = """
import sys, time
from pathlib import Path
from reasonsift.runlock import run_lock
with run_lock(Path(sys.argv[1]), sys.argv[2], "score"):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(folder, key, rank=0, world=1):
    """A child process that owns ``folder`` with ``key`` until it is killed."""
    import subprocess
    import sys
    from pathlib import Path

    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src, "RANK": str(rank), "WORLD_SIZE": str(world)}
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), key], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_run_lock_refuses_another_config_and_a_second_copy(tmp_path, monkeypatch):
    from reasonsift.config import ConfigError
    from reasonsift.runlock import run_lock

    run = tmp_path / "run"
    proc = _holder(run, "config-a")
    try:
        monkeypatch.delenv("RANK", raising=False)
        monkeypatch.delenv("WORLD_SIZE", raising=False)
        with pytest.raises(ConfigError, match=r"in use by another score \(pid \d+ on .*different config"):
            with run_lock(run, "config-b", "score"):
                pass
        with pytest.raises(ConfigError, match="already being written by .* same config"):
            with run_lock(run, "config-a", "score"):
                pass
    finally:
        proc.kill()
        proc.wait()


def test_run_lock_lets_cooperating_ranks_share_the_folder(tmp_path, monkeypatch):
    from reasonsift.runlock import LOCK_DIR, run_lock

    run = tmp_path / "run"
    proc = _holder(run, "config-a", rank=0, world=2)
    try:
        monkeypatch.setenv("RANK", "1")
        monkeypatch.setenv("WORLD_SIZE", "2")
        with run_lock(run, "config-a", "score"):
            assert len(list((run / LOCK_DIR).glob("*.json"))) == 2
        assert len(list((run / LOCK_DIR).glob("*.json"))) == 1  # only the other rank's is left
    finally:
        proc.kill()
        proc.wait()


def test_run_lock_takes_over_from_a_killed_holder(tmp_path, monkeypatch):
    from reasonsift.runlock import LOCK_DIR, run_lock

    run = tmp_path / "run"
    proc = _holder(run, "config-a")
    proc.kill()  # kill -9: no chance to remove its lock file
    proc.wait()
    assert len(list((run / LOCK_DIR).glob("*.json"))) == 1
    monkeypatch.delenv("RANK", raising=False)
    with run_lock(run, "config-b", "score"):
        (run / "out.txt").write_text("x")
    assert not (run / LOCK_DIR).exists() and (run / "out.txt").exists()


# --- run_units: one process per unit; a rank out of work takes a dead rank's units -------------------

CLAIM = """
import fcntl, sys, time
from pathlib import Path
unit, claim, marker = map(Path, sys.argv[1:4])
fh = open(claim, "a")
fcntl.flock(fh, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(float(sys.argv[4]))
unit.write_text("made by the other rank")
marker.write_text("{}")
"""


def _claimer(unit, seconds):
    """A child process (another rank) that holds ``unit``'s claim, then makes it after ``seconds``."""
    import subprocess
    import sys

    from reasonsift.runfolder import done_marker
    from reasonsift.runlock import claim_lock

    proc = subprocess.Popen([sys.executable, "-c", CLAIM, str(unit), str(claim_lock(unit)), str(done_marker(unit)),
                             str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _run_units_within(seconds, *args, **kwargs):
    """``run_units(*args)`` in a thread, failing (not hanging) when it has not returned in ``seconds``."""
    import threading

    from reasonsift.runlock import run_units

    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(run_units(*args, **kwargs)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert result, f"run_units still waiting after {seconds} s"
    return result[0]


def _make(folder, made):
    from reasonsift.runfolder import mark_done

    def run(unit):
        made.append(unit)
        (folder / unit).write_text("made here")
        mark_done(folder / unit)
    return run


def test_run_units_takes_unclaimed_units_and_leaves_the_last_one_and_the_merge_to_its_live_maker(tmp_path):
    other = _claimer(tmp_path / "u3", seconds=1.5)  # a live rank busy with u3; u2's rank is gone
    try:
        made: list[str] = []
        last = _run_units_within(60, ["u0", "u1"], ["u2", "u3"], lambda u: tmp_path / u, _make(tmp_path, made),
                                 poll_s=0.05)
        assert other.wait(timeout=30) == 0
    finally:
        other.kill()
    # its own units first, then the other ranks' from the end; u3 was never made twice
    assert made == ["u0", "u1", "u2"] and (tmp_path / "u3").read_text() == "made by the other rank"
    assert last is False  # the other rank finished the last unit: it merges


def test_run_units_takes_over_the_unit_of_a_killed_rank_and_merges(tmp_path):
    import threading

    other = _claimer(tmp_path / "u1", seconds=120)
    made: list[str] = []
    # kill -9 the holder while this rank waits on its unit: the kernel drops its flock
    threading.Timer(0.5, other.kill).start()
    try:
        last = _run_units_within(60, ["u0"], ["u1"], lambda u: tmp_path / u, _make(tmp_path, made), poll_s=0.05)
    finally:
        other.kill()
        other.wait()
    assert made == ["u0", "u1"] and last is True


def test_run_lock_removes_the_folders_it_made_when_nothing_was_written(tmp_path):
    from reasonsift.runlock import run_lock

    run = tmp_path / "a" / "b" / "run"
    with pytest.raises(RuntimeError):
        with run_lock(run, "k", "score"):
            raise RuntimeError("failed before writing anything")
    assert not (tmp_path / "a").exists()


def test_an_unwritable_location_names_the_path_and_what_was_written(tmp_path, gsm8k_sample, tiny_model_dir, capsys):
    """A file where the folder should be fails like a read-only location does, with the path named."""
    from reasonsift.cli import main
    from reasonsift.runfolder import WriteError

    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    with pytest.raises(WriteError, match=r"cannot write .*blocker/sub/config.yaml: "):
        write_text_atomic(blocker / "sub" / "config.yaml", "x")
    assert main(["score", str(gsm8k_sample), "--model", str(tiny_model_dir), "--run", str(blocker / "run"),
                 "--quiet", "data.limit=4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"cannot write the score folder {blocker / 'run'}" in err


@pytest.mark.parametrize("stage", ["critical", "train", "evaluate"])
def test_every_stage_refuses_a_folder_owned_by_another_command(stage, tmp_path, gsm8k_sample, tiny_model_dir, capsys):
    from reasonsift.cli import main

    folder = tmp_path / "folder"
    proc = _holder(folder, "another-config")
    bench = gsm8k_sample  # GSM8K rows: a benchmark as well as a pool
    args = {"critical": ["critical", str(gsm8k_sample), "--model", str(tiny_model_dir), "--run", str(folder)],
            "train": ["train", str(gsm8k_sample), "--model", str(tiny_model_dir), "--out", str(folder)],
            "evaluate": ["evaluate", "--model", str(tiny_model_dir), "--benchmark", str(bench), "--out", str(folder)]}
    try:
        assert main([*args[stage], "--quiet"]) == 2
    finally:
        proc.kill()
        proc.wait()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{folder} is in use by another score (pid {proc.pid}" in err
    assert sorted(p.name for p in folder.iterdir()) == [".lock"]  # nothing of the refused command was written
