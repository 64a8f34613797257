"""Where a study's (model type, seed) runs execute: one after another, as concurrent processes
on one machine (``train.jobs``), or as Ray tasks on a cluster (``--executor ray``).

Every executor runs the same picklable task function on the same task descriptions and yields
the outcomes as they finish; only the driver (``runner.run_study``) writes the results store.
A task that dies part-way is resumed, not restarted, because training and attacks resume from
their own checkpoints in the run's folder. No scheduler is written here: processes come from
``concurrent.futures`` and cluster scheduling from Ray.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol

from robustmer.errors import ConfigError

EXECUTORS: tuple[str, ...] = ("local", "ray")


@dataclass(frozen=True)
class RayOptions:
    """Resources of one Ray task: the GPU fraction (``0.25`` = four runs share a GPU), CPUs,
    and how often a task whose worker died is retried (each retry resumes from the checkpoint)."""

    address: str | None = None
    num_gpus: float = 0.0
    num_cpus: float = 1.0
    max_retries: int = 3


class Executor(Protocol):
    """Runs ``fn(task)`` for every task; yields ``(task, result)`` in completion order."""

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
        """Run every task; yield each with its result as it finishes."""
        ...


class SequentialExecutor:
    """In this process, one task after the other (the default; progress bars stay on)."""

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
        """Run every task in order."""
        for task in tasks:
            yield task, fn(task)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


class ProcessExecutor:
    """``jobs`` worker processes on this machine (spawned, so CUDA works in them), sharing its
    CPUs (``threads`` torch threads each) or its GPU. Processes are started fresh, so each task
    runs as it would in a new ``robustmer`` command."""

    def __init__(self, jobs: int, threads: int | None = None) -> None:
        if jobs < 1:
            raise ConfigError(f"train.jobs (--jobs) must be >= 1, found {jobs}")
        self.jobs = jobs
        self.threads = threads or max(1, (os.cpu_count() or 1) // jobs)

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
        """Run the tasks in ``jobs`` processes; yield results as they finish."""
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(self.jobs, mp_context=ctx, initializer=_init_worker,
                                   initargs=(self.threads,))
        try:
            pending = {pool.submit(fn, t): t for t in tasks}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield pending.pop(fut), fut.result()
        except BaseException:
            # Ctrl-C, a failed task or the driver closing the generator: stop the workers now.
            # ``shutdown`` alone would wait for the running tasks, leaving them writing into the
            # study folder after the driver said it stopped (and beside a resumed study).
            stop_workers(pool)
            raise
        pool.shutdown(wait=True)


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel queued tasks and terminate the pool's worker processes at once.

    concurrent.futures has no public call that stops running tasks, so this reads the pool's
    ``_processes`` (stable since Python 3.2); checkpoints are written atomically, so a task
    killed mid-epoch resumes from its last finished epoch."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=10)


class RayExecutor:
    """Each task as a Ray task (``ray.remote`` with the configured CPUs/GPU fraction and
    retries), on a local Ray instance or the cluster at ``address``."""

    def __init__(self, options: RayOptions) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'robustmer[ray]'") from None
        self.ray = ray
        self.options = options

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
        """Submit every task; yield results as Ray reports them finished."""
        ray = self.ray
        started = False
        if not ray.is_initialized():
            ray.init(address=self.options.address, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
            started = True
        try:
            remote = ray.remote(num_cpus=self.options.num_cpus, num_gpus=self.options.num_gpus,
                                max_retries=self.options.max_retries)(fn)
            pending = {remote.remote(t): t for t in tasks}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    yield pending.pop(ref), ray.get(ref)
        finally:
            if started:
                ray.shutdown()


def make_executor(name: str, jobs: int = 1, ray: RayOptions | None = None) -> Executor:
    """The executor called ``name`` (``local``: sequential for ``jobs == 1``, else processes)."""
    if name not in EXECUTORS:
        raise ConfigError(f"--executor must be one of {list(EXECUTORS)}, found {name!r}")
    if name == "ray":
        return RayExecutor(ray or RayOptions())
    if jobs < 1:
        raise ConfigError(f"train.jobs (--jobs) must be >= 1, found {jobs}")
    return SequentialExecutor() if jobs == 1 else ProcessExecutor(jobs)
