"""Scale-out (docs/scaling.md): one process, two torchrun "nodes" and a Ray pool write the same bytes.

One small scoring job (48 GSM8K rows, 6 shards x 7 checkpoints = 42 units, tiny Llama) and one small
critical job (the synthetic world's θ₀, 4 shards) are run single-process once per module; every
other launch mode must reproduce ``scores.parquet`` / ``critical.jsonl`` byte for byte. Failures are
real: a Ray worker process is SIGKILLed while it runs a unit, a torchrun rank is SIGKILLed and
restarted by torchrun's elastic agent, a token shard is corrupted so its units fail on every try.
One local Ray (2 CPUs, no dashboard) is shared by the module and shut down at its end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from reasonsift.cli import main
from reasonsift.scaling.ray_pool import UNIT_DELAY_ENV
from tests.conftest import gsm8k_lines

SRC = str(Path(__file__).resolve().parents[2] / "src")
SCORE = ["score.num_isotropic=3", "score.num_directional=3", "score.short_tokens=16", "score.long_tokens=64",
         "score.shard_size=8", "score.isotropic_std_start=0.02", "score.isotropic_std_end=0.2"]
CRITICAL = ["critical.answer_kind=text", "critical.rollout_extra_tokens=4", "critical.max_new_tokens=40",
            "critical.shard_size=2"]


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray with 2 CPUs for this module; the pool's 2 workers take 1 CPU each."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def job(tmp_path_factory, tiny_model_dir, tiny_direction_dir):
    """The scoring job's input and arguments, and its single-process run folder."""
    root = tmp_path_factory.mktemp("scaling")
    data = root / "pool.jsonl"
    data.write_text("".join(gsm8k_lines(48)), encoding="utf-8")

    def args(run: Path, *extra: str) -> list[str]:
        return ["score", str(data), "--model", str(tiny_model_dir), "--direction-model", str(tiny_direction_dir),
                "--run", str(run), "--quiet", *SCORE, *extra]

    single = root / "single"
    assert main(args(single)) == 0
    return args, single


@pytest.fixture(scope="module")
def critical_job(tmp_path_factory):
    """The critical job (greedy responses of the synthetic θ₀ on one-step problems), single-process."""
    from reasonsift.synth.world import build_base_model
    from tests.critical.test_critical import _one_step_rows
    from reasonsift.synth.generate import write_jsonl

    root = tmp_path_factory.mktemp("critical_scaling")
    data = write_jsonl(_one_step_rows(8), root / "pool.jsonl")
    model = build_base_model(progress=False)

    def args(run: Path, *extra: str) -> list[str]:
        return ["critical", str(data), "--model", str(model), "--run", str(run), "--quiet", *CRITICAL, *extra]

    single = root / "single"
    assert main(args(single)) == 0
    return args, single


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun_two_nodes(cli_args: list[str], max_restarts: int = 0) -> list[subprocess.Popen]:
    """Two torchrun agents as two nodes of one job (one process each), meeting on 127.0.0.1.

    The c10d rendezvous, as on a real cluster: it lets the agents restart their ranks together.
    ``--run-dir``: torchrun's parser would take ``--run`` for an ambiguous abbreviation of its own
    ``--run-path`` (docs/scaling.md).
    """
    cli_args = ["--run-dir" if a == "--run" else a for a in cli_args]
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                              "--node-rank", str(node), "--rdzv-backend", "c10d",
                              "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "reasonsift-test",
                              "--max-restarts", str(max_restarts), "-m", "reasonsift.cli", *cli_args],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for node in (0, 1)]


def _finish(agents: list[subprocess.Popen], timeout: float = 300) -> None:
    for agent in agents:
        out, _ = agent.communicate(timeout=timeout)
        assert agent.returncode == 0, out[-3000:]


def _same_bytes(a: Path, b: Path) -> None:
    assert a.read_bytes() == b.read_bytes(), f"{a} differs from {b}"


def test_torchrun_two_nodes_and_ray_write_the_same_scores_as_one_process(job, ray_cluster, tmp_path):
    args, single = job
    # two torchrun "nodes" sharing one run folder; one of their ranks is SIGKILLed mid-run and the
    # elastic agent restarts the job's ranks, which redo only the units without a done-marker
    run = tmp_path / "torchrun"
    agents = _torchrun_two_nodes(args(run), max_restarts=1)
    deadline = time.time() + 240
    while len(list(run.glob("score/*/ckpt*/*.done"))) < 6:
        if time.time() > deadline or any(a.poll() is not None for a in agents):
            _finish(agents)  # shows the agents' output
            raise AssertionError("no unit was scored")
        time.sleep(0.01)
    victim = _rank_process(agents[1].pid)
    os.kill(victim, signal.SIGKILL)
    markers = {p: p.stat().st_mtime_ns for p in run.glob("score/*/ckpt*/*.done")}
    _finish(agents)
    assert json.loads((run / "report.json").read_text())["world_size"] == 2
    _same_bytes(run / "scores.parquet", single / "scores.parquet")
    assert 6 <= len(markers) < 42, "the rank was killed before or after the scoring"
    assert all(p.stat().st_mtime_ns == t for p, t in markers.items()), "a finished unit was scored again"
    # a local Ray with 2 workers, fed by this process
    assert main(args(tmp_path / "ray", "--backend", "ray", "--workers", "2")) == 0
    _same_bytes(tmp_path / "ray" / "scores.parquet", single / "scores.parquet")
    report = json.loads((tmp_path / "ray" / "report.json").read_text())
    assert report["scale"] == {"backend": "ray", "workers": 2, "units": 42, "workers_lost": 0, "unit_retries": 0}


def test_a_rank_left_alone_scores_the_dead_ranks_units_too_and_merges(job, tmp_path, monkeypatch):
    args, single = job
    # rank 0 of two died for good after the tokenization: some units of both ranks have no marker
    run = tmp_path / "alone"
    shutil.copytree(single, run)
    (run / "scores.parquet").unlink()
    undone = sorted(run.glob("score/*/ckpt*/*.done"))[::5]
    shards = {int(m.name.split(".")[0].removeprefix("shard")) % 2 for m in undone}
    assert shards == {0, 1}, "the test should leave units of both ranks undone"
    for marker in undone:
        marker.unlink()
    kept = {p: p.stat().st_mtime_ns for p in run.glob("score/*/ckpt*/*.done")}
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(args(run)) == 0
    _same_bytes(run / "scores.parquet", single / "scores.parquet")
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items()), "a finished unit was scored again"
    assert all(m.exists() for m in undone)


def _rank_process(agent_pid: int, timeout: float = 60) -> int:
    """The pid of the worker process a torchrun agent started (its child running reasonsift.cli)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for task in Path(f"/proc/{agent_pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                if b"reasonsift.cli" in Path(f"/proc/{child}/cmdline").read_bytes():
                    return int(child)
        time.sleep(0.05)
    raise AssertionError("torchrun started no worker")


def test_critical_masks_are_the_same_from_torchrun_and_ray(critical_job, ray_cluster, tmp_path):
    args, single = critical_job
    _finish(_torchrun_two_nodes(args(tmp_path / "torchrun")))
    _same_bytes(tmp_path / "torchrun" / "critical.jsonl", single / "critical.jsonl")
    assert main(args(tmp_path / "ray", "--backend", "ray", "--workers", "2")) == 0
    _same_bytes(tmp_path / "ray" / "critical.jsonl", single / "critical.jsonl")
    report = json.loads((tmp_path / "ray" / "critical" / "report.json").read_text())
    assert report["scale"]["units"] == 4 and report["counts"] == \
        json.loads((single / "critical" / "report.json").read_text())["counts"]


def _unit_host_pids() -> set[int]:
    """Pids of every process Ray has titled as one of our actors (``ray::UnitHost``, ``ray::UnitHost.run``)."""
    pids = set()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"ray::UnitHost"):
                pids.add(int(proc.name))
        except OSError:
            continue
    return pids


def _ray_workers_running_a_unit(known: set[int], stale: set[int]) -> list[int]:
    """Pids of this run's Ray actor processes inside ``UnitHost.run`` (Ray titles a busy actor ``ray::UnitHost.run``).

    ``known``: this run's actor pids seen so far; /proc is scanned only until both are found (a scan is
    slow on a loaded machine). ``stale``: actor processes of an earlier test's pool that were still
    exiting when this run started; counting them as this run's once stopped the scan before the new
    actors existed, and the test failed with "no worker was seen inside a unit".
    """
    if len(known) < 2:
        known |= _unit_host_pids() - stale
    busy = []
    for pid in list(known):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::UnitHost.run"):
                busy.append(pid)
        except OSError:
            known.discard(pid)  # gone: not one of this run's live actors
    return busy


def test_a_ray_worker_killed_mid_unit_loses_only_that_unit(job, ray_cluster, tmp_path, monkeypatch):
    args, single = job
    killed: list[int] = []
    # Units of this job last milliseconds; each now waits 0.2 s inside UnitHost.run, so a loaded machine's
    # slow /proc polling still lands the kill inside a unit. (The failures seen in fresh clones came from
    # the previous test's actors, still exiting, being taken for this run's: see `stale` below.)
    monkeypatch.setenv(UNIT_DELAY_ENV, "0.2")

    stale = _unit_host_pids()  # an earlier test's actors may still be exiting

    def kill_one_busy_worker() -> None:
        deadline, known = time.time() + 240, set()
        while time.time() < deadline and not killed:
            for pid in _ray_workers_running_a_unit(known, stale):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.002)

    watcher = threading.Thread(target=kill_one_busy_worker)
    watcher.start()
    try:
        assert main(args(tmp_path / "run", "--backend", "ray", "--workers", "2")) == 0
    finally:
        killed.append(-1)  # stops the watcher if the run ended first
        watcher.join()
    assert killed[0] > 0, "no worker was seen inside a unit"
    _same_bytes(tmp_path / "run" / "scores.parquet", single / "scores.parquet")
    scale = json.loads((tmp_path / "run" / "report.json").read_text())["scale"]
    assert scale["workers_lost"] == 1 and scale["unit_retries"] == 1 and scale["units"] == 42


def test_a_unit_that_keeps_failing_is_named_and_a_rerun_finishes_it(job, ray_cluster, tmp_path, capsys):
    args, single = job
    run = tmp_path / "run"
    # the tokenized pool (and noise calibration) of the single-process run, with shard 1 corrupted
    # (its done-marker kept): every unit of shard 1 fails; the workers themselves start
    shutil.copytree(single / "score" / "tokens", run / "score" / "tokens")
    for name in ("manifest.json", "calibration.json", "calibration.json.done"):  # the noise schedule is kept too
        shutil.copy(single / "score" / name, run / "score" / name)
    good = (run / "score" / "tokens" / "shard00001.parquet").read_bytes()
    (run / "score" / "tokens" / "shard00001.parquet").write_bytes(b"PAR1 not a parquet file")
    assert main(args(run, "--backend", "ray", "--workers", "2")) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (Ray's own lines may come before)
    assert err.startswith("reasonsift score: error: UnitsFailedError: ")
    assert "7 of 42 work units did not finish" in err and "base/ckpt0/shard00001" in err
    assert "rerun the same command to resume" in err and not (run / "scores.parquet").exists()
    assert len(list(run.glob("score/*/ckpt*/shard*.done"))) == 35  # every other unit is kept
    # a rerun (the shard mended) finishes the missing units; a partial unit file is not taken as done
    (run / "score" / "tokens" / "shard00001.parquet").write_bytes(good)
    (run / "score" / "isotropic" / "ckpt2" / "shard00001.parquet").write_bytes(b"half a file")
    assert main(args(run, "--backend", "ray", "--workers", "2")) == 0
    _same_bytes(run / "scores.parquet", single / "scores.parquet")
    assert json.loads((run / "report.json").read_text())["scale"]["units"] == 7


def test_backend_ray_without_ray_names_the_pip_command(job, tmp_path, capsys, monkeypatch):
    args, _ = job
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees where Ray is not installed
    assert main(args(tmp_path / "run", "--backend", "ray")) == 2
    assert "pip install 'reasonsift[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "run" / "score").exists()  # refused before any work
