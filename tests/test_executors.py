"""Study executors: concurrent processes (train.jobs) and Ray give the same results store as the
sequential study, and killed runs resume from their checkpoints (issue 13)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

import robustmer.study.runner as runner
from robustmer.errors import ConfigError
from robustmer.study.config import parse_config
from robustmer.study.executor import ProcessExecutor, RayExecutor, RayOptions, make_executor

REPO = Path(__file__).resolve().parents[1]


def tiny(out: Path, cache: Path, **over: object) -> dict:
    raw = {
        "name": "tiny", "output": str(out), "models": ["A2E", "A2B2E"], "seeds": [1],
        "data": {"synth_clips": 14, "cache": str(cache)},
        "train": {"width": 0.0625, "epochs": 2},
        "attack": {"iters": 2, "batch_size": 4},
        "media_clips": 0, "write_examples": False,
    }
    raw.update(over)
    return raw


def quiet(msg: str) -> None:
    pass


def tables(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    store = runner.ResultsStore(out)
    return store.read_runs(), store.read_clips()


def assert_same_store(a: Path, b: Path) -> None:
    (ra, ca), (rb, cb) = tables(a), tables(b)
    pd.testing.assert_frame_equal(ra, rb, check_exact=False, rtol=1e-4, atol=1e-6)
    pd.testing.assert_frame_equal(ca, cb, check_exact=False, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sequential study, and the shared feature cache."""
    base = tmp_path_factory.mktemp("executors")
    cache = base / "cache"
    runner.run_study(parse_config(tiny(base / "seq", cache)), progress=False, log=quiet)
    return base / "seq", cache


def test_executor_choice_and_bad_values() -> None:
    assert isinstance(make_executor("local", 1), runner.SequentialExecutor)
    assert isinstance(make_executor("local", 3), ProcessExecutor)
    with pytest.raises(ConfigError, match="--executor"):
        make_executor("slurm")
    with pytest.raises(ConfigError, match=r"train\.jobs"):
        parse_config({"name": "x", "output": "o", "train": {"jobs": 0}})
    with pytest.raises(ConfigError, match=r"ray\.num_gpus"):
        parse_config({"name": "x", "output": "o", "ray": {"num_gpus": -1}})


@pytest.mark.slow
def test_two_jobs_give_the_sequential_store(reference: tuple[Path, Path],
                                             tmp_path: Path) -> None:
    seq, cache = reference
    cfg = parse_config(tiny(tmp_path / "jobs", cache, train={"width": 0.0625, "epochs": 2,
                                                             "jobs": 2}))
    res = runner.run_study(cfg, progress=False, log=quiet)
    assert list(res.runs["status"]) == ["done", "done"]
    assert_same_store(seq, tmp_path / "jobs")


def start_study(config: Path) -> subprocess.Popen:
    """``robustmer study CONFIG --jobs 2`` as its own process group (stderr piped)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen([sys.executable, "-m", "robustmer", "study", str(config), "--jobs",
                             "2", "--no-progress", "--no-report"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def wait_for_an_epoch(proc: subprocess.Popen, out: Path) -> None:
    deadline = time.monotonic() + 240
    while not list(out.glob("runs/*/train/last/state.json")):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "no epoch finished in 240 s"
        time.sleep(0.2)


@pytest.mark.slow
def test_killed_concurrent_study_resumes(reference: tuple[Path, Path], tmp_path: Path) -> None:
    seq, cache = reference
    out = tmp_path / "killed"
    raw = tiny(out, cache, train={"width": 0.0625, "epochs": 2})
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(raw))
    proc = start_study(config)
    try:
        wait_for_an_epoch(proc, out)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its worker processes
        proc.wait()
    assert not (out / "clips.csv").exists()
    runner.run_study(dataclasses.replace(parse_config(raw)), progress=False, log=quiet,
                     jobs=2)
    assert_same_store(seq, out)


def flaky_run(task: runner.RunTask) -> runner.RunOutcome:
    """First attempt: train one epoch, then the worker dies. Ray retries the task, which then
    resumes the run from that epoch's checkpoint."""
    flag = Path(task.config.output) / f"died-{task.model_type}"
    if not flag.exists():
        flag.parent.mkdir(parents=True, exist_ok=True)
        flag.write_text("")
        short = dataclasses.replace(task.config,
                                    train=dataclasses.replace(task.config.train, epochs=1))
        data = runner.prepare_study_data(short, task.root)
        run_dir = Path(task.config.output) / "runs" / runner.run_id_of(task.model_type,
                                                                        task.seed) / "train"
        from robustmer.train import train_run

        mt = short.model_type(task.model_type)
        train_run(data.dataset("train", mode="random", seed=task.seed), data.dataset("val"),
                  run_dir, model_type=mt, model_settings=runner.model_settings(short, mt),
                  config=runner._train_config(short, task.seed, False),
                  data_description=data.to_dict(), normaliser=data.standardizer.to_dict(),
                  resume=True, progress=False)
        os._exit(1)
    return runner.execute_run(task)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has stopped; only its exit status is left


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc (Linux)")
def test_sigterm_to_the_study_driver_stops_its_workers(reference: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    """A scheduler cancelling the job sends SIGTERM to the driver only: its worker processes
    must end with it (they used to run on, training into the folder, beside a resumed study)."""
    _, cache = reference
    out = tmp_path / "term"
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(tiny(out, cache, train={"width": 0.0625, "epochs": 30})))
    proc = start_study(config)
    try:
        wait_for_an_epoch(proc, out)
        kids = _children(proc.pid)
        assert kids, "the driver has no worker processes"
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)
        deadline = time.monotonic() + 30
        while any(_alive(k) for k in kids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(k) for k in kids)
        assert "resume" in proc.stderr.read().decode()  # the usual interrupt message
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_ray_gives_the_sequential_store_and_retries_a_dead_worker(
        reference: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seq, cache = reference
    out = tmp_path / "ray"
    cfg = parse_config(tiny(out, cache, ray={"num_cpus": 1, "max_retries": 2}))
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers can't import tests
    monkeypatch.setattr(runner, "execute_run", flaky_run)
    res = runner.run_study(cfg, progress=False, log=quiet, executor="ray")
    assert list(res.runs["status"]) == ["done", "done"]
    assert (out / "died-A2E").exists() and (out / "died-A2B2E").exists()  # both were retried
    history = pd.read_csv(out / "runs" / "A2E_seed1" / "train" / "history.csv")
    assert list(history["epoch"]) == [1, 2]  # epoch 1 from the dead attempt, 2 after resuming
    assert_same_store(seq, out)


def test_ray_executor_without_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_ray(name: str, *args: object, **kwargs: object) -> object:
        if name == "ray":
            raise ImportError("no ray")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ConfigError, match=r"robustmer\[ray\]"):
        RayExecutor(RayOptions())


def test_interrupted_process_executor_stops_its_workers() -> None:
    """Ctrl-C in the driver (here: a timer raising KeyboardInterrupt during the wait) ends the
    running tasks at once instead of waiting for them; the old behaviour left them writing into
    the study folder after the driver had said it stopped."""
    import multiprocessing

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    t0 = time.perf_counter()
    try:
        signal.setitimer(signal.ITIMER_REAL, 5.0)
        with pytest.raises(KeyboardInterrupt):
            next(ProcessExecutor(2, threads=1).map(time.sleep, [60.0, 60.0, 60.0]))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.perf_counter() - t0 < 30  # not the 60 s of a task
    deadline = time.time() + 10
    while multiprocessing.active_children() and time.time() < deadline:
        time.sleep(0.1)
    assert not multiprocessing.active_children()
