"""The study runner: config -> data -> (model type x seed) runs -> train -> attack -> results store.

It knows the stages, not their insides: it calls ``data.prepare_data``, ``train.train_run``,
``attacks.runner.attack_dataset`` and ``evaluate.summary``; the report is built from the results
store it writes. Every trained model is attacked at every setting of the ``attack:`` block (one
folder ``runs/<run_id>/attack/<setting-id>/`` each). Every step is resumable: a finished
training or (run, setting) attack (``DONE`` marker) is skipped, a half-trained run resumes from
its last epoch, a half-attacked setting resumes after its last finished batch, so a killed study
loses at most the epoch or the attack batch in progress.
"""

from __future__ import annotations

import functools
import os
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from robustmer import io
from robustmer.attacks.runner import attack_dataset, read_table
from robustmer.data import prepare_data
from robustmer.data.prepared import PreparedData
from robustmer.errors import ConfigError, RobustmerError
from robustmer.evaluate.store import ResultsStore, clips_columns, empty_frame
from robustmer.evaluate.summary import clips_from_attack_table, run_row
from robustmer.folders import claim_folder, folder_lock, refuse_if_locked, require_same_settings
from robustmer.models.backbone import DROPOUT
from robustmer.models.types import MERType, ModelType
from robustmer.study.checks import run_checks
from robustmer.study.config import AttackSetting, StudyConfig, for_outputs, training_attack
from robustmer.study.executor import RayOptions, SequentialExecutor, make_executor
from robustmer.train import TrainConfig, evaluate_model, load_run, train_run, write_pretrained
from robustmer.train.batched import train_runs_batched
from robustmer.userfiles import callable_source, load_callable, resolve_callable

Log = Callable[[str], None]
DONE = "DONE"
STUDY_KIND = "study"
"""The folder kind of a study's output (see robustmer.folders)."""


@dataclass
class StudyResult:
    """Where a study wrote its results, and how each run ended."""

    store: ResultsStore
    runs: pd.DataFrame
    seconds: float


def run_id_of(model_type: str, seed: int) -> str:
    """The stable folder / table id of one (model type, seed) run."""
    return f"{model_type}_seed{seed}"


def _dataset_root(config: StudyConfig, out: Path, log: Log) -> Path:
    if config.data.pack is not None:
        return Path(config.data.pack)  # a feature pack; checked by run_study
    if config.data.make is not None:
        return make_dataset(config, out, log)
    if config.data.root is not None:
        return Path(config.data.root)  # checked by run_study before the folder is claimed
    from robustmer.data.synth import synthesize  # only the demo path needs the synthesiser

    info = synthesize(out / "data", clips=config.data.synth_clips, seed=config.data.synth_seed,
                      duration=config.data.synth_duration, version=config.data.synth_format)
    log(f"embedded concept dataset: {info.clips} clips in {info.root}")
    return Path(info.root)


def make_dataset(config: StudyConfig, out: Path, log: Log) -> Path:
    """``data.make``: the user's generator writes the dataset when it is not there yet (into
    ``data.root``'s folder, or ``OUTPUT/data``); returns the dataset's path."""
    assert config.data.make is not None
    target = Path(config.data.root) if config.data.root is not None else out / "data"
    folder = target if target.suffix.lower() not in (".csv", ".yaml", ".yml") else target.parent
    marker = folder / ".robustmer-made"
    if target.exists() and (config.data.root is not None or marker.is_file()):
        return target
    make = load_callable(resolve_callable(config.data.make, "data.make"), "data.make")
    t0 = time.perf_counter()
    made = make(folder)
    io.write_json(marker, {"make": config.data.make, "source": callable_source(
        resolve_callable(config.data.make, "data.make"))})
    path = Path(made) if made is not None else target
    if not path.exists():
        raise ConfigError(f"data.make {config.data.make}: returned {path}, which does not "
                          f"exist")
    log(f"data.make {config.data.make}: wrote {path} in {time.perf_counter() - t0:.1f} s")
    return path


def has_concepts(data: PreparedData) -> bool:
    """Whether every training clip has the 7 concept ratings (A2M2E needs them)."""
    train = data.split.train
    return bool(train) and all(data.table.has_concepts(i) for i in train)


RESUME_KEYS: tuple[str, ...] = ("data", "train")
"""Config sections that must match for a study to continue in its output folder (models, seeds,
budgets, name and media may change: added runs are trained, added settings attacked, and the
store is rebuilt from what is there)."""


RESUME_FREE: tuple[str, ...] = ("train.jobs", "train.batch_seeds")
"""Keys of the resume sections that may change between calls: how runs are scheduled, not what
they compute (a batched seed's run folder is a solo run folder; docs/training.md)."""


LEGACY_VALUES: dict[str, dict[str, Any]] = {
    "data": {"synth_format": 2},
    "train": {"dropout": DROPOUT},
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


def output_names(config: StudyConfig, data: PreparedData) -> list[str]:
    """The names of the study's outputs: the data's targets, or its classes."""
    table = data.table
    return list(table.classes if config.task == "classification" else table.target_names)


def run_seeds(config: StudyConfig, model_type: ModelType) -> tuple[int, ...]:
    """The seeds a type runs with: every seed, or the first alone for a pretrained model (one
    model, nothing drawn)."""
    return config.seeds if model_type.trainable else config.seeds[:1]


def run_one(config: StudyConfig, data: PreparedData, model_type: str, seed: int, out: Path,
            *, progress: bool = True) -> pd.DataFrame:
    """Train (resumably; a pretrained model: write its run folder) and attack one (model type,
    seed); return its ``clips.csv`` rows."""
    mt = config.model_type(model_type)
    spec = mt.input_spec()
    run_dir = out / "runs" / run_id_of(model_type, seed)
    train_dir = train_dir_of(out, model_type, seed)
    if not (train_dir / DONE).exists():
        common = {"data_description": data.to_dict(),
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


def train_dir_of(out: Path, model_type: str, seed: int) -> Path:
    """``runs/<run_id>/train/``: the run's training folder (``DONE`` when finished)."""
    return out / "runs" / run_id_of(model_type, seed) / "train"


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


def attack_dir_of(run_dir: Path, setting: AttackSetting) -> Path:
    """``runs/<run_id>/attack/<setting-id>/``: one resumable folder per attack setting."""
    return run_dir / "attack" / setting.id


def concept_mean_r_of(config: StudyConfig, data: PreparedData, model_type: str, seed: int,
                       out: Path) -> float:
    """Test-split concept mean r of a concept-trained bottleneck (A2M2E), NaN for other types;
    computed once from the trained model and kept in ``runs/<id>/concepts.json``."""
    mt = config.model_type(model_type)
    if not mt.needs_concepts:
        return float("nan")
    path = out / "runs" / run_id_of(model_type, seed) / "concepts.json"
    if not path.is_file():
        model = load_run(path.parent / "train", device=config.train.device).model
        metrics = evaluate_model(model, data.dataset_for(mt.input_spec(), "test"),
                                 device=config.train.device, model_type=mt)
        io.write_json(path, metrics.get("concept_metrics"))
    stored = io.read_json(path)
    return float("nan") if stored is None else float(stored["mean_r"])


def _copy_media(config: StudyConfig, store: ResultsStore, run_id: str, attack_dir: Path,
                clip_ids: list[str]) -> None:
    """Put the first ``media_clips`` clips' listenable/visible perturbations where the report
    looks for them (``media/<run_id>/``; from the block's first setting). A hard link where
    the file system allows it, so the store does not hold the audio twice."""
    for clip in clip_ids[: config.media_clips]:
        sources = {"clean.wav": attack_dir / "audio" / f"{clip}_clean.wav",
                   "adv.wav": attack_dir / "audio" / f"{clip}_adv.wav",
                   "delta.npz": attack_dir / "examples" / f"{clip}.npz"}
        if config.attack.settings[0].domain == "waveform":
            sources.pop("delta.npz")  # listenable audio instead of a delta image
        for kind, src in sources.items():
            if src.exists():
                dest = store.media_path(run_id, clip, kind)
                dest.parent.mkdir(parents=True, exist_ok=True)
                link_or_copy(src, dest)


def link_or_copy(src: Path, dest: Path) -> None:
    """``dest`` as a hard link to ``src`` (replacing it), or a copy where links fail."""
    if dest.exists() or dest.is_symlink():
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def _same_eps(values: pd.Series, eps: float) -> pd.Series:
    """``values == eps`` with NaN equal to NaN (an unbounded setting)."""
    v = values.astype(float)
    return v.isna() if eps != eps else v == eps


@dataclass(frozen=True)
class RunTask:
    """One (model type, seed) run of a study, as handed to an executor (picklable)."""

    config: StudyConfig
    root: str
    model_type: str
    seed: int


@dataclass(frozen=True)
class BatchTask:
    """``train.batch_seeds``: the seeds of one model type trained together (picklable)."""

    config: StudyConfig
    root: str
    model_type: str
    seeds: tuple[int, ...]


@dataclass
class RunOutcome:
    """What a run task gives back to the driver: its clips rows, or the error that stopped it."""

    clips: pd.DataFrame | None
    error: str | None = None
    trace: str | None = None
    seconds: float = 0.0


def prepare_study_data(config: StudyConfig, root: Path | str,
                       progress: bool | None = False) -> PreparedData:
    """The study's data exactly as the driver prepared it (same cache, split file, standardiser);
    in a worker the spectrograms come from the cache the driver filled."""
    out = Path(config.output)
    return prepare_data(root, cache_dir=config.data.cache or out / "cache",
                        split_path=out / "split.json", split_seed=config.data.split_seed,
                        midlevel_root=config.data.midlevel, progress=progress)


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


def _setting_rows(config: StudyConfig, run_id: str, model_type: str, seed: int,
                  clips: pd.DataFrame, names: list[str],
                  concept: float = float("nan")) -> list[dict[str, Any]]:
    """One ``runs.csv`` row per attack setting of a finished run."""
    rows = []
    for setting in config.attack.settings:
        sel = clips[(clips["attack"] == setting.key[0]) & (clips["domain"] == setting.key[1])
                    & _same_eps(clips["eps"], setting.key[2])]
        rows.append(run_row(run_id, model_type, seed, clips=sel, setting=setting.key,
                            concept_mean_r=concept, names=names, task=config.task))
    return rows


def _summary_line(row: dict[str, Any]) -> str:
    """One run x setting in the study's log: clean and attacked MAE (and accuracy)."""
    text = (f"clean r {row['clean_mean_r']:.3f} MAE {row['clean_mae']:.3f} -> attacked MAE "
            f"{row['adv_mae']:.3f} (ΔMAE {row['delta_mae']:+.3f}, "
            f"{row['mean_iterations']:.0f} it)")
    if "clean_accuracy" in row:
        text = (f"accuracy {row['clean_accuracy']:.3f} -> {row['adv_accuracy']:.3f}; "
                f"probability error (MAE) {row['clean_mae']:.3f} -> {row['adv_mae']:.3f} "
                f"({row['mean_iterations']:.0f} it)")
    return text


def target_range(config: StudyConfig, data: PreparedData) -> float | None:
    """The span of the training targets (largest over outputs; the declared rating scale
    when the data names one); None for classification."""
    if config.task != "regression" or not len(data.table.targets.columns):
        return None
    scale = data.table.target_info.get("scale")
    if scale:
        return float(scale[1] - scale[0]) / float(data.table.target_info.get("divisor", 1.0))
    train = data.table.targets.loc[list(data.split.train)].to_numpy(dtype=float)
    return float(np.nanmax(np.nanmax(train, axis=0) - np.nanmin(train, axis=0)))


def check_outputs(config: StudyConfig, data: PreparedData, names: list[str]) -> None:
    """Refuse a study whose data cannot feed its models: no targets for a regression study,
    fewer than 2 classes for a classification one; warn (in the store's log) otherwise."""
    if config.task == "classification" and len(names) < 2:
        raise ConfigError(f"models: {list(config.models)} classify, but the data at "
                          f"{data.root} has {len(names)} class(es) {names}; give a label column")
    if config.task == "regression" and not names:
        raise ConfigError(f"models: {list(config.models)} regress, but the data at "
                          f"{data.root} has no target column")


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
    if (config.data.root is not None and config.data.make is None
            and not Path(config.data.root).exists()):
        raise ConfigError(f"data.root: dataset not found: {config.data.root} (a manifest CSV, a "
                          f"dataset.yaml, a folder holding one, or a Soundtracks folder)")
    if config.data.pack is not None and not Path(config.data.pack).is_file():
        raise ConfigError(f"data.pack: feature pack not found: {config.data.pack}")
    refuse_if_locked(out, "output folder")  # --overwrite must not remove a running study
    claim_folder(out, STUDY_KIND, overwrite=overwrite, option="output folder")
    with folder_lock(out, "output folder"):
        store = ResultsStore(out)
        _check_resumable(store, config)
        if progress and log is print:
            log = tqdm.write  # keep the study's progress bar intact

        root = _dataset_root(config, out, log).resolve()
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
        concepts_ok = has_concepts(data)

        rows: list[dict[str, Any]] = []
        frames: list[pd.DataFrame] = []
        todo = [(m, s) for m in config.models for s in run_seeds(config, config.model_type(m))]
        blocked = {(m, s) for m, s in todo
                   if config.model_type(m).needs_concepts and not concepts_ok}
        tasks = [RunTask(config, str(root), m, s) for m, s in todo if (m, s) not in blocked]
        jobs = config.train.jobs if jobs is None else jobs
        runner = make_executor(executor, jobs, ray if ray is not None else config.ray)
        # train.batch_seeds: each plain model type's seeds train as one task; it runs beside the
        # runs that do not wait for it (adversarial types), and its runs (then attack only) after.
        groups = [BatchTask(config, str(root), m, tuple(config.seeds)) for m in config.models
                  if config.train.batch_seeds and not config.model_type(m).adversarial
                  and isinstance(config.model_type(m), MERType) and len(config.seeds) > 1
                  and not any((m, s) in blocked for s in config.seeds)]
        grouped = {(g.model_type, s) for g in groups for s in g.seeds}
        phases: list[list[RunTask | BatchTask]] = [
            [*groups, *(t for t in tasks if (t.model_type, t.seed) not in grouped)],
            [t for t in tasks if (t.model_type, t.seed) in grouped]]
        local = isinstance(runner, SequentialExecutor)

        def fn_for(phase: list[RunTask | BatchTask]) -> Callable[[Any], RunOutcome]:
            # execute_run itself where no batched task is in the phase (what a worker imports)
            fn = execute_task if any(isinstance(t, BatchTask) for t in phase) else execute_run
            return functools.partial(fn, data=data, progress=progress) if local else fn

        outcomes: dict[tuple[str, int], RunOutcome] = {}
        bar = tqdm(total=len(tasks), desc=f"study {config.name}", unit="run",
                   disable=not progress)
        for task, outcome in (pair for phase in phases if phase
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
            run_id = run_id_of(*key)
            prefix = f"[{len(outcomes)}/{len(tasks)}] {run_id}"
            if outcome.error is not None:
                log(f"{prefix}: FAILED {outcome.error}")
                io.write_text(out / "runs" / run_id / "error.txt", outcome.trace or "")
            else:
                assert outcome.clips is not None
                for setting, row in zip(config.attack.settings, _setting_rows(
                        config, run_id, *key, outcome.clips, names), strict=True):
                    log(f"{prefix} {setting.id}: " + _summary_line(row))
                log(f"{prefix}: done in {outcome.seconds:.0f} s")
        bar.close()

        # The store lists runs in the config's order, whatever order they finished in.
        for model_type, seed in todo:
            run_id = run_id_of(model_type, seed)
            if (model_type, seed) in blocked:
                msg = (f"not runnable: {model_type} learns concepts and needs the concept "
                       f"ratings of every training clip (Soundtracks: give data.midlevel, the "
                       f"Mid-level Perceptual Features folder; a manifest: concept columns)")
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
            _copy_media(config, store, run_id, attack_dir_of(out / "runs" / run_id, first),
                        clips["clip_id"].astype(str).drop_duplicates().tolist())
            frames.append(clips)
            concept = concept_mean_r_of(config, data, model_type, seed, out)
            rows.extend(_setting_rows(config, run_id, model_type, seed, clips, names, concept))

        store.write_clips(pd.concat(frames, ignore_index=True) if frames
                          else empty_frame(clips_columns(names)))
        runs = pd.DataFrame(rows)
        store.write_runs(runs)
        if config.checks is not None and config.checks.enabled:
            run_checks(config, data, out, runs, progress=progress, log=log)
        seconds = time.perf_counter() - t0
        previous = store.read_meta() if store.meta_path.exists() else {}
        total = float(previous.get("seconds_total", previous.get("seconds", 0.0))) + seconds
        calls = int(previous.get("calls", 1 if previous else 0)) + 1
        store.write_meta(io.run_meta(source="robustmer", study=config.name, seconds=seconds,
                                     seconds_total=total, calls=calls, data=data.to_dict()))
        return StudyResult(store=store, runs=runs, seconds=seconds)
