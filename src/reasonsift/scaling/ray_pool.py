"""Run a stage's work units on a pool of Ray actors (``--backend ray``; docs/scaling.md).

Plain actors rather than ``ray.data`` ``map_batches``: each actor holds a model and, for scoring,
the checkpoint it last built, so the driver routes the next unit of that same checkpoint to it
(Ray Data hands rows to whichever actor is free and would rebuild checkpoints at random). The
driver also needs to see each failure itself: Ray does not retry an application exception, and
Ray Data's ``max_errored_blocks`` lets a job "succeed" with blocks missing.

What a unit does is up to the stage's *worker*: a class built inside the actor as
``factory(*args)`` (it loads the model once), with ``run(unit)`` writing the unit's file and
done-marker through ``reasonsift.runfolder`` exactly as the single-process path does, and
``info()`` describing itself (device, dtype, ...). Failures:

- an exception inside ``run`` is retried on the same actor up to ``max_attempts`` times in all;
- an actor that dies (killed, out of host memory) loses only its unit: a fresh actor replaces it
  and the unit is redone; the unit's partial file, if any, never had a done-marker;
- a worker that cannot be built (the model does not fit: out of memory) is a one-line error,
  never a hang; so is a cluster without the resources for the pool.

The caller re-checks every unit's done-marker afterwards (``missing_units_error``): whatever this
pool reports, a unit counts only if its marker is there, and a rerun redoes just the missing ones.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

RAY_PIP = "pip install 'reasonsift[ray]'  (or: pip install 'ray[data]==2.60.0')"
# A worker loads the model in its constructor; a big model on a slow disk takes minutes, not hours.
STARTUP_TIMEOUT_S = 1800.0
# Fault-injection aid: seconds each actor waits inside ``run`` before the unit, read by the driver.
# Units of a tiny test job last milliseconds; a test that kills a worker *inside* a unit sets this so
# the kill lands there every time instead of depending on the machine's load.
UNIT_DELAY_ENV = "REASONSIFT_RAY_UNIT_DELAY_S"


class UnitsFailedError(RuntimeError):
    """Some work units are not done after the pool finished (the message names them)."""


class WorkerStartError(RuntimeError):
    """A Ray worker could not be started or could not build its model."""


def require_ray() -> Any:
    """``import ray``, or an ImportError naming the pip command."""
    try:
        import ray
    except ImportError:
        raise ImportError(f"--backend ray needs Ray, which is not installed: {RAY_PIP}") from None
    return ray


def missing_units_error(names: list[str], total: int, errors: dict[str, str]) -> UnitsFailedError:
    """The one-line error for units without a done-marker: names (the first 8) and a last error."""
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    why = next((f" ({n}: {errors[n]})" for n in names if n in errors), "")
    return UnitsFailedError(f"{len(names)} of {total} work units did not finish: {shown}{why}; "
                            "rerun the same command to resume (finished units are kept)")


class UnitHost:
    """The Ray actor: builds the stage's worker once and runs units on it.

    A failure to build is kept and reported by ``ready()`` instead of raised, so the driver can
    print it as one line (a constructor exception would only surface as a dead actor).
    """

    def __init__(self, factory: Callable[..., Any], args: tuple[Any, ...], threads: int,
                 unit_delay_s: float = 0.0) -> None:
        import torch
        from transformers.utils import logging as hf_logging

        torch.set_num_threads(max(1, threads))
        hf_logging.disable_progress_bar()  # actor output goes to the driver's terminal: its bar only
        self.worker, self.error, self.unit_delay_s = None, None, unit_delay_s
        try:
            self.worker = factory(*args)
        except BaseException as e:  # noqa: BLE001 - reported to the driver, which stops the run
            self.error = f"{type(e).__name__}: {' '.join(str(e).split())[:500]}"

    def ready(self) -> tuple[str | None, dict[str, Any]]:
        return self.error, ({} if self.worker is None else self.worker.info())

    def run(self, unit: Any) -> None:
        if self.unit_delay_s:
            time.sleep(self.unit_delay_s)
        self.worker.run(unit)


@dataclass
class PoolStats:
    """What happened in the pool: for the stage report and for tests."""

    workers: int = 0
    units: int = 0
    workers_lost: int = 0  # actors that died and were replaced
    retries: int = 0  # unit attempts after a failed one
    errors: dict[str, str] = field(default_factory=dict)  # unit name -> last error, for units given up on
    worker_info: list[dict[str, Any]] = field(default_factory=list)

    def as_report(self) -> dict[str, Any]:
        return {"backend": "ray", "workers": self.workers, "units": self.units,
                "workers_lost": self.workers_lost, "unit_retries": self.retries}


def connect(address: str | None) -> bool:
    """Join (or start) a Ray cluster unless this process already did; returns whether it was started here."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING,
             configure_logging=False)
    return True


def actor_resources(ray: Any, device: str, workers: int) -> tuple[int, dict[str, Any], int]:
    """(pool size, ``.options`` resources per actor, torch threads per actor) for this cluster.

    One GPU per actor when the model goes on a GPU; on CPUs an equal share of the cluster's CPUs
    (a fraction when there are more actors than CPUs, so the same code runs on a 2-core CI box).
    """
    total = ray.cluster_resources()
    gpus, cpus = int(total.get("GPU", 0)), float(total.get("CPU", 1))
    on_gpu = device.startswith("cuda") or (device == "auto" and gpus > 0)
    if on_gpu:
        if gpus == 0:
            raise WorkerStartError(f"model.device={device} but the Ray cluster has no GPUs "
                                   f"(resources: {dict(total)}); use model.device=cpu")
        n = workers or gpus
        if n > gpus:
            raise WorkerStartError(f"--workers {n} needs {n} GPUs (one per worker) but the Ray cluster has {gpus}")
        return n, {"num_gpus": 1, "num_cpus": min(1.0, cpus / n)}, 1
    n = workers or max(1, int(cpus))
    share = cpus / n
    return n, {"num_cpus": min(1.0, share) if share < 1 else share}, max(1, int(share))


def run_pool(factory: Callable[..., Any], args: tuple[Any, ...], units: Iterable[Any], name: Callable[[Any], str],
             group: Callable[[Any], Hashable] = lambda u: None, *, address: str | None = None, workers: int = 0,
             device: str = "auto", max_attempts: int = 3, first_alone: bool = False,
             progress: bool = True, total: int | None = None) -> PoolStats:
    """Run ``units`` on a pool of actors, each holding ``factory(*args)``; returns what happened.

    ``group(unit)``: units of one group (a scoring checkpoint) go preferably to the actor that ran
    that group last. ``units`` may be a lazy iterator (critical rows are read as the pool goes).
    ``first_alone``: build one worker before the others (it writes something they then read, e.g.
    the fine-tuned θ_f). Units still not done after ``max_attempts`` are left out and listed in
    ``PoolStats.errors``; the caller turns missing done-markers into the error.
    """
    ray = require_ray()
    started = connect(address)
    stats = PoolStats()
    try:
        n, resources, threads = actor_resources(ray, device, workers)
        stats.workers = n
        host = ray.remote(UnitHost).options(max_restarts=0, max_task_retries=0, **resources)
        unit_delay_s = float(os.environ.get(UNIT_DELAY_ENV) or 0)

        def start(k: int) -> list[Any]:
            actors = [host.remote(factory, args, threads, unit_delay_s) for _ in range(k)]
            ready = [a.ready.remote() for a in actors]
            done, waiting = ray.wait(ready, num_returns=len(ready), timeout=STARTUP_TIMEOUT_S)
            if waiting:
                raise WorkerStartError(f"{len(waiting)} Ray worker(s) did not start within {STARTUP_TIMEOUT_S:.0f} s "
                                       f"(each asks for {resources}; cluster: {ray.cluster_resources()})")
            for ref in done:
                try:
                    error, info = ray.get(ref)
                except ray.exceptions.RayActorError as e:
                    raise WorkerStartError("a Ray worker died while loading the model (out of host memory?): "
                                           + " ".join(str(e).split())[:300]) from None
                if error:
                    raise WorkerStartError(f"a Ray worker could not load the model: {error}")
                stats.worker_info.append(info)
            return actors

        actors = start(1) if first_alone else []
        actors += start(n - len(actors))
        _drive(ray, actors, start, units, name, group, max_attempts, stats, progress, total)
        for a in actors:
            ray.kill(a)
    finally:
        if started:
            ray.shutdown()
    return stats


def _drive(ray: Any, actors: list[Any], start: Callable[[int], list[Any]], units: Iterable[Any],
           name: Callable[[Any], str], group: Callable[[Any], Hashable], max_attempts: int, stats: PoolStats,
           progress: bool, total: int | None) -> None:
    """The scheduling loop: keep every actor busy with one unit, route by group, redo lost units."""
    from tqdm.auto import tqdm

    source, pending, attempts = iter(units), deque(), {}
    holding: dict[int, Hashable] = {}  # actor slot -> group it ran last
    inflight: dict[Any, tuple[int, Any]] = {}  # ObjectRef -> (actor slot, unit)
    bar = tqdm(total=total, desc="units", unit="unit", disable=not progress)

    def take(slot: int) -> Any | None:
        """The next unit for an actor: its own group's first, else the oldest waiting one."""
        while len(pending) < 2 * len(actors):  # a short look-ahead; the source may be a lazy reader
            nxt = next(source, None)
            if nxt is None:
                break
            pending.append(nxt)
        for i, u in enumerate(pending):
            if slot in holding and group(u) == holding[slot]:
                del pending[i]
                return u
        return pending.popleft() if pending else None

    def submit(slot: int) -> None:
        unit = take(slot)
        if unit is not None:
            holding[slot] = group(unit)
            inflight[actors[slot].run.remote(unit)] = (slot, unit)

    for slot in range(len(actors)):
        submit(slot)
    started = time.time()
    while inflight:
        [ref], _ = ray.wait(list(inflight), num_returns=1)
        slot, unit = inflight.pop(ref)
        try:
            ray.get(ref)
            stats.units += 1
            bar.update(1)
        except ray.exceptions.RayActorError as e:  # the actor process is gone: its unit is lost, not failed
            stats.workers_lost += 1
            logger.warning("Ray worker %d died during %s; starting a new one and redoing that unit (%s)",
                           slot, name(unit), " ".join(str(e).split())[:200])
            _retry(unit, name, attempts, max_attempts, pending, stats, "the worker running it died")
            ray.kill(actors[slot])
            actors[slot] = start(1)[0]
            holding.pop(slot, None)
        except ray.exceptions.RayTaskError as e:
            cause = e.cause if getattr(e, "cause", None) is not None else e
            message = f"{type(cause).__name__}: {' '.join(str(cause).split())[:300]}"
            logger.warning("%s failed: %s", name(unit), message)
            _retry(unit, name, attempts, max_attempts, pending, stats, message)
        submit(slot)
        for other in range(len(actors)):  # a slot left idle while units remained (after a retry)
            if other not in {s for s, _ in inflight.values()} and pending:
                submit(other)
    bar.close()
    logger.info("Ray pool: %d units on %d workers in %.1f s", stats.units, len(actors), time.time() - started)


def _retry(unit: Any, name: Callable[[Any], str], attempts: dict[str, int], max_attempts: int, pending: deque,
           stats: PoolStats, message: str) -> None:
    """Queue a failed unit again (first in line), or give up on it after ``max_attempts``."""
    key = name(unit)
    attempts[key] = attempts.get(key, 0) + 1
    if attempts[key] >= max_attempts:
        stats.errors[key] = message
        return
    stats.retries += 1
    pending.appendleft(unit)
