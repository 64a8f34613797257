"""The study runner: config -> data -> (model type x seed) runs -> train -> attack -> results store.

It knows the stages, not their insides: it calls ``data.prepare_data``, ``train.train_run``,
``attacks.runner.attack_dataset`` and ``evaluate.summary``; the report is built from the results
store it writes. Every trained model is attacked at every setting of the ``attack:`` block (one
folder ``runs/<run_id>/attack/<setting-id>/`` each). Every step is resumable: a finished
training or (run, setting) attack (``DONE`` marker) is skipped, a half-trained run resumes from
its last epoch, a half-attacked setting resumes after its last finished batch, so a killed study
loses at most the epoch or the attack batch in progress.

Its parts live beside it: the data (:mod:`~robustmer.study.dataset`), the plan of runs
(:mod:`~robustmer.study.plan`), the folder layout (:mod:`~robustmer.study.layout`) and the store's
rows and media (:mod:`~robustmer.study.assemble`).
"""

from __future__ import annotations

import functools
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from robustmer import io
from robustmer.attacks.runner import attack_dataset, read_table
from robustmer.data.prepared import PreparedData
from robustmer.errors import ConfigError, RobustmerError
from robustmer.evaluate.store import ResultsStore, clips_columns, empty_frame
from robustmer.evaluate.summary import clips_from_attack_table, run_row
from robustmer.folders import claim_folder, folder_lock, refuse_if_locked, require_same_settings
from robustmer.models.types import MERType, ModelType
from robustmer.study.assemble import copy_media, not_runnable, setting_rows, summary_line
from robustmer.study.checks import run_checks
from robustmer.study.config import AttackSetting, StudyConfig, for_outputs, training_attack
from robustmer.study.dataset import (
    check_outputs,
    check_sources,
    dataset_root,
    has_concepts,
    output_names,
    prepare_study_data,
    target_range,
)
from robustmer.study.executor import (
    Executor,
    RayOptions,
    SequentialExecutor,
    make_executor,
)
from robustmer.study.explainers import run_study_explainer_evals
from robustmer.study.layout import (
    DONE,
    STUDY_KIND,
    attack_dir_of,
    run_dir_of,
    run_id_of,
    train_dir_of,
)
from robustmer.study.plan import BatchTask, RunTask, StudyPlan, plan_study, run_seeds
from robustmer.train import TrainConfig, evaluate_model, load_run, train_run, write_pretrained
from robustmer.train.batched import train_runs_batched

__all__ = [
    "DONE", "STUDY_KIND", "BatchTask", "ResultsStore", "RunOutcome", "RunTask",
    "SequentialExecutor", "StudyConfig", "StudyResult", "attack_dir_of", "concept_mean_r_of",
    "examples_for", "execute_batch", "execute_run", "execute_task", "model_settings",
    "prepare_study_data", "run_id_of", "run_one", "run_seeds", "run_study", "train_dir_of",
]

Log = Callable[[str], None]


@dataclass
class StudyResult:
    """Where a study wrote its results, and how each run ended."""

    store: ResultsStore
    runs: pd.DataFrame
    seconds: float


RESUME_KEYS: tuple[str, ...] = ("data", "train")
"""Config sections that must match for a study to continue in its output folder (models, seeds,
budgets, name and media may change: added runs are trained, added settings attacked, and the
store is rebuilt from what is there)."""


RESUME_FREE: tuple[str, ...] = ("train.jobs", "train.batch_seeds")
"""Keys of the resume sections that may change between calls: how runs are scheduled, not what
they compute (a batched seed's run folder is a solo run folder; docs/training.md)."""


LEGACY_VALUES: dict[str, dict[str, Any]] = {
    "data": {"synth_format": 2},
    "train": {"dropout": MERType.DEFAULT_SETTINGS["dropout"]},
}
"""Keys added to the resume sections after stores were written, with the value a store that
lacks them was computed with (the synthetic data were format 2 before format 3 existed, and
every network had the paper's dropout)."""


def _check_resumable(store: ResultsStore, config: StudyConfig) -> None:
    """Refuse to mix two different studies in one output folder. The attack settings are
    checked per setting folder instead (``attacks.runner`` refuses a folder attacked with other
    settings), so a budget can be added to a finished study."""
    if not store.config_path.exists():
        return
    stored = store.read_config()
    for section, keys in LEGACY_VALUES.items():
        if isinstance(stored.get(section), dict):
            for key, value in keys.items():
                stored[section].setdefault(key, value)
    asked = config.to_dict()
    require_same_settings({k: stored.get(k) for k in RESUME_KEYS},
                          {k: asked.get(k) for k in RESUME_KEYS}, f"study folder {store.path}",
                          ignore=lambda key: key in RESUME_FREE,
                          hint="choose another output folder, or pass --overwrite to replace it")


def _train_config(config: StudyConfig, seed: int, adversarial: bool) -> TrainConfig:
    t = config.train
    return TrainConfig(seed=seed, lr=t.lr, batch_size=t.batch_size, max_epochs=t.epochs,
                       patience=t.patience, adversarial_every=t.adv_every if adversarial else 0,
                       device=t.device, amp=t.amp, standardize_targets=t.standardize_targets,
                       lr_schedule=t.lr_schedule, bn_recalibrate=t.bn_recalibrate)


def model_settings(config: StudyConfig, model_type: ModelType) -> dict[str, Any]:
    """The build settings a study gives a model type: ``train.width`` and ``train.dropout`` for
    robustmer's own networks; a user model carries its own (``models[].settings``)."""
    if isinstance(model_type, MERType):
        return {"width": config.train.width, "dropout": config.train.dropout}
    return {}


def run_one(config: StudyConfig, data: PreparedData, model_type: str, seed: int, out: Path,
            *, progress: bool = True) -> pd.DataFrame:
    """Train (resumably; a pretrained model: write its run folder) and attack one (model type,
    seed); return its ``clips.csv`` rows."""
    mt = config.model_type(model_type)
    spec = mt.input_spec()
    run_dir = run_dir_of(out, model_type, seed)
    train_dir = train_dir_of(out, model_type, seed)
    if not (train_dir / DONE).exists():
        common: dict[str, Any] = {"data_description": data.to_dict(),
                  "normaliser": data.standardizer.to_dict(),
                  "extra_config": {"model_type": model_type}}
        val = data.dataset_for(spec, "val")
        if not mt.trainable:
            write_pretrained(data.dataset_for(spec, "train"), val, train_dir, model_type=mt,
                             model_settings=model_settings(config, mt), seed=seed, **common)
        else:
            train_attack = (training_attack(config.train, config.attack).build()
                            if mt.adversarial else None)
            train_run(data.dataset_for(spec, "train", mode="random", seed=seed), val,
                      train_dir, model_type=mt, model_settings=model_settings(config, mt),
                      config=_train_config(config, seed, mt.adversarial), attack=train_attack,
                      resume=True, progress=progress, **common)
        io.write_text(train_dir / DONE, "")
    frames = []
    model = None
    for setting in config.attack.settings:
        attack_dir = attack_dir_of(run_dir, setting)
        if (attack_dir / DONE).exists():
            table = read_table(attack_dir)
        else:
            if model is None:
                model = load_run(train_dir, device=config.train.device).model
            table = attack_dataset(model, data, "test", setting.spec, attack_dir,
                                   domain=setting.domain, model_input=spec, task=mt.task,
                                   batch_size=config.attack.batch_size,
                                   device=config.train.device, resume=True, progress=progress,
                                   write_examples=examples_for(config, mt, seed, setting))
            io.write_text(attack_dir / DONE, "")
        frames.append(clips_from_attack_table(table, run_id_of(model_type, seed), model_type,
                                              seed, setting.key))
    return pd.concat(frames, ignore_index=True)


def examples_for(config: StudyConfig, model_type: ModelType, seed: int,
                 setting: AttackSetting) -> bool | int:
    """``write_examples`` of one attack folder: every clip (``all``), none (``none``), or
    (``media``) the first ``media_clips`` clips where the report plays them: the first attack
    setting of the type's lowest seed."""
    if config.write_examples in ("all", "none"):
        return config.write_examples == "all"
    first = setting == config.attack.settings[0]
    return config.media_clips if first and seed == min(run_seeds(config, model_type)) else 0


def train_batched_group(config: StudyConfig, data: PreparedData, model_type: str,
                        seeds: list[int], out: Path, *, progress: bool = True) -> list[int]:
    """``train.batch_seeds``: train the seeds of ``model_type`` whose training is not done as
    one batched model (each into its own ``runs/<id>/train/``, resumably, ``DONE`` when
    finished); returns the seeds trained (none when fewer than 2 are left: those train alone)."""
    mt = config.model_type(model_type)
    if mt.adversarial or not isinstance(mt, MERType):
        raise ConfigError(f"train.batch_seeds: {model_type} is adversarially trained or not one "
                          f"of robustmer's own networks, which batched seeds do not support")
    todo = [s for s in seeds if not (train_dir_of(out, model_type, s) / DONE).exists()]
    if len(todo) < 2:
        return []
    train_runs_batched([data.dataset("train", mode="random", seed=s) for s in todo],
                       data.dataset("val"), [train_dir_of(out, model_type, s) for s in todo],
                       model_type=mt, seeds=todo, model_settings=model_settings(config, mt),
                       config=_train_config(config, todo[0], False),
                       data_description=data.to_dict(), normaliser=data.standardizer.to_dict(),
                       resume=True, progress=progress)
    for s in todo:
        io.write_text(train_dir_of(out, model_type, s) / DONE, "")
    return todo


def concept_mean_r_of(config: StudyConfig, data: PreparedData, model_type: str, seed: int,
                       out: Path) -> float:
    """Test-split concept mean r of a concept-trained bottleneck (A2M2E), NaN for other types;
    computed once from the trained model and kept in ``runs/<id>/concepts.json``."""
    mt = config.model_type(model_type)
    if not mt.needs_concepts:
        return float("nan")
    path = run_dir_of(out, model_type, seed) / "concepts.json"
    if not path.is_file():
        model = load_run(train_dir_of(out, model_type, seed), device=config.train.device).model
        metrics = evaluate_model(model, data.dataset_for(mt.input_spec(), "test"),
                                 device=config.train.device, model_type=mt)
        io.write_json(path, metrics.get("concept_metrics"))
    stored = io.read_json(path)
    return float("nan") if stored is None else float(stored["mean_r"])


@dataclass
class RunOutcome:
    """What a run task gives back to the driver: its clips rows, or the error that stopped it."""

    clips: pd.DataFrame | None
    error: str | None = None
    trace: str | None = None
    seconds: float = 0.0


def execute_run(task: RunTask, data: PreparedData | None = None,
                progress: bool = False) -> RunOutcome:
    """Train and attack one run (in any process): the function every executor runs. Errors of
    the run itself come back as an outcome, so one failed run does not stop the study."""
    t0 = time.perf_counter()
    if data is None:
        data = prepare_study_data(task.config, task.root)
    try:
        clips = run_one(task.config, data, task.model_type, task.seed,
                        Path(task.config.output), progress=progress)
    except (RobustmerError, RuntimeError, ValueError) as err:
        return RunOutcome(None, f"{type(err).__name__}: {err}", traceback.format_exc(),
                          time.perf_counter() - t0)
    return RunOutcome(clips, seconds=time.perf_counter() - t0)


def execute_batch(task: BatchTask, data: PreparedData | None = None,
                  progress: bool = False) -> RunOutcome:
    """Train one batched group (in any process); its error comes back as an outcome, and the
    group's runs then train one by one in their run tasks."""
    t0 = time.perf_counter()
    if data is None:
        data = prepare_study_data(task.config, task.root)
    try:
        train_batched_group(task.config, data, task.model_type, list(task.seeds),
                            Path(task.config.output), progress=progress)
    except (RobustmerError, RuntimeError, ValueError) as err:
        return RunOutcome(None, f"{type(err).__name__}: {err}", traceback.format_exc(),
                          time.perf_counter() - t0)
    return RunOutcome(None, seconds=time.perf_counter() - t0)


def execute_task(task: RunTask | BatchTask, data: PreparedData | None = None,
                 progress: bool = False) -> RunOutcome:
    """:func:`execute_run` or :func:`execute_batch`, by the task's type (one executor map)."""
    if isinstance(task, BatchTask):
        return execute_batch(task, data, progress)
    return execute_run(task, data, progress)


def run_study(config: StudyConfig, *, progress: bool = True, log: Log = print,
              overwrite: bool = False, jobs: int | None = None, executor: str = "local",
              ray: RayOptions | None = None) -> StudyResult:
    """Run (or resume) a whole study and write its results store; see the module docstring.

    The output folder must be empty, missing or this study's own (same data, train and attack
    settings); ``overwrite`` replaces any other folder whole first. ``jobs`` (default
    ``train.jobs``) runs that many (type, seed) runs at once as processes; ``executor="ray"``
    runs each as a Ray task (``ray``: address, GPU fraction, retries). Only this process writes
    the results store, whatever the executor."""
    t0 = time.perf_counter()
    out = Path(config.output)
    check_sources(config)
    refuse_if_locked(out, "output folder")  # --overwrite must not remove a running study
    claim_folder(out, STUDY_KIND, overwrite=overwrite, option="output folder")
    with folder_lock(out, "output folder"):
        store = ResultsStore(out)
        _check_resumable(store, config)
        if progress and log is print:
            log = tqdm.write  # keep the study's progress bar intact
        config, data, root, names = _open_data(config, store, out, progress, log)
        plan = plan_study(config, str(root), has_concepts(data))
        runner = make_executor(executor, config.train.jobs if jobs is None else jobs,
                               ray if ray is not None else config.ray)
        outcomes = _execute(plan, runner, config, data, names, out, progress, log)
        runs = _write_tables(store, config, data, plan, outcomes, names, out, log)
        if config.checks is not None and config.checks.enabled:
            run_checks(config, data, out, runs, progress=progress, log=log)
        run_study_explainer_evals(config, data, out, runs, progress=progress, log=log)
        seconds = time.perf_counter() - t0
        previous = store.read_meta() if store.meta_path.exists() else {}
        total = float(previous.get("seconds_total", previous.get("seconds", 0.0))) + seconds
        calls = int(previous.get("calls", 1 if previous else 0)) + 1
        store.write_meta(io.run_meta(source="robustmer", study=config.name, seconds=seconds,
                                     seconds_total=total, calls=calls, data=data.to_dict()))
        return StudyResult(store=store, runs=runs, seconds=seconds)


def _open_data(config: StudyConfig, store: ResultsStore, out: Path, progress: bool,
               log: Log) -> tuple[StudyConfig, PreparedData, Path, list[str]]:
    """The study's data, prepared; the config with its attack settings resolved for the data's
    outputs, recorded in the store; the dataset's path and the output names."""
    root = dataset_root(config, out, log).resolve()
    data = prepare_study_data(config, root, progress=progress)
    if any(st.domain == "waveform" for st in config.attack.settings):
        data.require_audio("attack.domain waveform")  # a feature pack has no audio
    names = output_names(config, data)
    check_outputs(config, data, names)
    config = for_outputs(config, len(names), f"{config.name}: attack",
                         target_range(config, data))
    # Recorded only now that the data is there: a study that failed before it really started
    # leaves no config behind to refuse the corrected one.
    store.write_config({**config.to_dict(), "outputs": names,
                        "target_info": data.table.target_info})
    log(f"data: {len(data.table.ids)} clips, split {data.split.split_id} "
        f"({len(data.split.train)}/{len(data.split.val)}/{len(data.split.test)})")
    return config, data, root, names


def _execute(plan: StudyPlan, runner: Executor, config: StudyConfig, data: PreparedData,
             names: list[str], out: Path, progress: bool,
             log: Log) -> dict[tuple[str, int], RunOutcome]:
    """Run the plan's phases on ``runner``, logging each outcome as it arrives (a failed run's
    traceback goes to ``runs/<run_id>/error.txt``); the outcomes by (model type, seed)."""
    local = isinstance(runner, SequentialExecutor)

    def fn_for(phase: list[RunTask | BatchTask]) -> Callable[[Any], RunOutcome]:
        # execute_run itself where no batched task is in the phase (what a worker imports)
        fn = execute_task if any(isinstance(t, BatchTask) for t in phase) else execute_run
        return functools.partial(fn, data=data, progress=progress) if local else fn

    outcomes: dict[tuple[str, int], RunOutcome] = {}
    bar = tqdm(total=len(plan.tasks), desc=f"study {config.name}", unit="run",
               disable=not progress)
    for task, outcome in (pair for phase in plan.phases if phase
                          for pair in runner.map(fn_for(phase), phase)):
        if isinstance(task, BatchTask):
            what = f"batched training of {task.model_type} seeds {list(task.seeds)}"
            if outcome.error is not None:
                log(f"{what}: FAILED {outcome.error}; its runs train one by one")
                io.write_text(out / f"batch-{task.model_type}-error.txt", outcome.trace or "")
            else:
                log(f"{what}: done in {outcome.seconds:.0f} s")
            continue
        key = (task.model_type, task.seed)
        outcomes[key] = outcome
        bar.update(1)
        prefix = f"[{len(outcomes)}/{len(plan.tasks)}] {run_id_of(*key)}"
        if outcome.error is not None:
            log(f"{prefix}: FAILED {outcome.error}")
            io.write_text(run_dir_of(out, *key) / "error.txt", outcome.trace or "")
        else:
            assert outcome.clips is not None
            for setting, row in zip(config.attack.settings, setting_rows(
                    config, run_id_of(*key), *key, outcome.clips, names), strict=True):
                log(f"{prefix} {setting.id}: " + summary_line(row))
            log(f"{prefix}: done in {outcome.seconds:.0f} s")
    bar.close()
    return outcomes


def _write_tables(store: ResultsStore, config: StudyConfig, data: PreparedData,
                  plan: StudyPlan, outcomes: dict[tuple[str, int], RunOutcome],
                  names: list[str], out: Path, log: Log) -> pd.DataFrame:
    """The store's ``clips.csv`` and ``runs.csv`` (runs in the config's order, whatever order
    they finished in) and the media the report plays; returns the runs table."""
    rows: list[dict[str, Any]] = []
    frames: list[pd.DataFrame] = []
    for model_type, seed in plan.todo:
        run_id = run_id_of(model_type, seed)
        if (model_type, seed) in plan.blocked:
            msg = not_runnable(model_type)
            log(f"{run_id}: {msg}")
            rows.append(run_row(run_id, model_type, seed, "not_runnable", msg, names=names,
                                task=config.task))
            continue
        outcome = outcomes[(model_type, seed)]
        if outcome.clips is None:
            rows.append(run_row(run_id, model_type, seed, "failed", outcome.error or "",
                                names=names, task=config.task))
            continue
        clips = outcome.clips
        first = config.attack.settings[0]
        copy_media(config, store, run_id, attack_dir_of(run_dir_of(out, model_type, seed), first),
                   clips["clip_id"].astype(str).drop_duplicates().tolist())
        frames.append(clips)
        concept = concept_mean_r_of(config, data, model_type, seed, out)
        rows.extend(setting_rows(config, run_id, model_type, seed, clips, names, concept))
    store.write_clips(pd.concat(frames, ignore_index=True) if frames
                      else empty_frame(clips_columns(names)))
    runs = pd.DataFrame(rows)
    store.write_runs(runs)
    return runs
