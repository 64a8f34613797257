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

import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from robustmer import EMOTIONS, io
from robustmer.attacks.runner import attack_dataset, read_table
from robustmer.data import prepare_data
from robustmer.data.prepare import PreparedData
from robustmer.errors import ConfigError, RobustmerError
from robustmer.evaluate.store import CLIPS_COLUMNS, ResultsStore, empty_frame
from robustmer.evaluate.summary import clips_frame, run_row
from robustmer.study.checks import run_checks
from robustmer.study.config import MODEL_TYPES, AttackSetting, StudyConfig, training_attack
from robustmer.train import TrainConfig, load_run, train_run

Log = Callable[[str], None]
DONE = "DONE"


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
    if config.data.root is not None:
        root = Path(config.data.root)
        if not root.is_dir():
            raise ConfigError(f"data.root: dataset folder not found: {root}")
        return root
    from robustmer.data.synth import synthesize  # only the demo path needs the synthesiser

    info = synthesize(out / "data", clips=config.data.synth_clips, seed=config.data.synth_seed)
    log(f"embedded concept dataset: {info.clips} clips in {info.root}")
    return Path(info.root)


def has_concepts(data: PreparedData) -> bool:
    """Whether every training clip has the 7 concept ratings (A2M2E needs them)."""
    train = data.split.train
    return bool(train) and all(data.table.has_concepts(i) for i in train)


def _check_resumable(store: ResultsStore, config: StudyConfig) -> None:
    """Refuse to mix two different studies in one output folder. The attack settings are
    checked per setting folder instead (``attacks.runner`` refuses a folder attacked with other
    settings), so a budget can be added to a finished study."""
    if not store.config_path.exists():
        return
    stored = store.read_config()
    asked = config.to_dict()
    keep = ("data", "train")
    diff = [k for k in keep if stored.get(k) != asked.get(k)]
    if diff:
        raise ConfigError(f"{store.path} holds a study with different {', '.join(diff)} settings; "
                          f"choose another output folder or delete it")


def _train_config(config: StudyConfig, seed: int, adversarial: bool) -> TrainConfig:
    t = config.train
    return TrainConfig(seed=seed, lr=t.lr, batch_size=t.batch_size, max_epochs=t.epochs,
                       patience=t.patience, adversarial_every=t.adv_every if adversarial else 0,
                       device=t.device)


def run_one(config: StudyConfig, data: PreparedData, model_type: str, seed: int, out: Path,
            *, progress: bool = True) -> pd.DataFrame:
    """Train (resumably) and attack one (model type, seed); return its ``clips.csv`` rows."""
    kind, adversarial = MODEL_TYPES[model_type]
    run_dir = out / "runs" / run_id_of(model_type, seed)
    train_dir = run_dir / "train"
    if not (train_dir / DONE).exists():
        train_attack = (training_attack(config.train, config.attack).build() if adversarial
                        else None)
        train_run(data.dataset("train", mode="random", seed=seed), data.dataset("val"),
                  train_dir, kind=kind, width=config.train.width,
                  config=_train_config(config, seed, adversarial),
                  data_description=data.to_dict(), normaliser=data.standardizer.to_dict(),
                  attack=train_attack, resume=True, progress=progress)
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
                                   domain=setting.domain, batch_size=config.attack.batch_size,
                                   device=config.train.device, resume=True, progress=progress)
            io.write_text(attack_dir / DONE, "")
        attack, domain, eps = setting.key
        frames.append(clips_frame(
            run_id_of(model_type, seed), model_type, seed,
            table["clip_id"].astype(str).tolist(),
            table[[f"y_{e}" for e in EMOTIONS]].to_numpy(),
            table[[f"pred_{e}" for e in EMOTIONS]].to_numpy(),
            table[[f"adv_{e}" for e in EMOTIONS]].to_numpy(),
            iterations=table["iterations"], converged=table["converged"],
            final_threshold=table["final_threshold"], delta_linf=table["delta_linf"],
            delta_l2=table["delta_l2"], snr_db=table["snr_db"],
            attack=attack, domain=domain, eps=eps))
    return pd.concat(frames, ignore_index=True)


def attack_dir_of(run_dir: Path, setting: AttackSetting) -> Path:
    """``runs/<run_id>/attack/<setting-id>/``: one resumable folder per attack setting."""
    return run_dir / "attack" / setting.id


def _copy_media(config: StudyConfig, store: ResultsStore, run_id: str, attack_dir: Path,
                clip_ids: list[str]) -> None:
    """Put the first ``media_clips`` clips' listenable/visible perturbations where the report
    looks for them (``media/<run_id>/``; from the block's first setting)."""
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
                shutil.copyfile(src, dest)


def _same_eps(values: pd.Series, eps: float) -> pd.Series:
    """``values == eps`` with NaN equal to NaN (an unbounded setting)."""
    v = values.astype(float)
    return v.isna() if eps != eps else v == eps


def run_study(config: StudyConfig, *, progress: bool = True, log: Log = print) -> StudyResult:
    """Run (or resume) a whole study and write its results store; see the module docstring."""
    t0 = time.perf_counter()
    out = Path(config.output)
    store = ResultsStore(out)
    _check_resumable(store, config)
    out.mkdir(parents=True, exist_ok=True)
    store.write_config(config.to_dict())
    if progress and log is print:
        log = tqdm.write  # keep the study's progress bar intact

    root = _dataset_root(config, out, log)
    data = prepare_data(root, cache_dir=config.data.cache or out / "cache",
                        split_path=out / "split.json", split_seed=config.data.split_seed,
                        midlevel_root=config.data.midlevel, progress=progress)
    log(f"data: {len(data.table.ids)} clips, split {data.split.split_id} "
        f"({len(data.split.train)}/{len(data.split.val)}/{len(data.split.test)})")
    concepts_ok = has_concepts(data)

    rows: list[dict[str, Any]] = []
    frames: list[pd.DataFrame] = []
    todo = [(m, s) for m in config.models for s in config.seeds]
    bar = tqdm(todo, desc=f"study {config.name}", unit="run", disable=not progress)
    for i, (model_type, seed) in enumerate(bar, start=1):
        run_id = run_id_of(model_type, seed)
        prefix = f"[{i}/{len(todo)}] {run_id}"
        if model_type == "A2M2E" and not concepts_ok:
            msg = ("not runnable: A2M2E needs the 7 concept ratings for every training clip "
                   "(give data.midlevel, the Mid-level Perceptual Features folder)")
            log(f"{prefix}: {msg}")
            rows.append(run_row(run_id, model_type, seed, "not_runnable", msg))
            continue
        t_run = time.perf_counter()
        try:
            clips = run_one(config, data, model_type, seed, out, progress=progress)
        except (RobustmerError, RuntimeError, ValueError) as err:
            msg = f"{type(err).__name__}: {err}"
            log(f"{prefix}: FAILED {msg}")
            io.write_text(out / "runs" / run_id / "error.txt", traceback.format_exc())
            rows.append(run_row(run_id, model_type, seed, "failed", msg))
            continue
        first = config.attack.settings[0]
        _copy_media(config, store, run_id, attack_dir_of(out / "runs" / run_id, first),
                    clips["clip_id"].astype(str).drop_duplicates().tolist())
        frames.append(clips)
        for setting in config.attack.settings:
            sel = clips[(clips["attack"] == setting.key[0]) & (clips["domain"] == setting.key[1])
                        & _same_eps(clips["eps"], setting.key[2])]
            row = run_row(run_id, model_type, seed, clips=sel, setting=setting.key)
            rows.append(row)
            log(f"{prefix} {setting.id}: clean r {row['clean_mean_r']:.3f} MAE "
                f"{row['clean_mae']:.3f} -> attacked MAE {row['adv_mae']:.3f} (ΔMAE "
                f"{row['delta_mae']:+.3f}, {row['mean_iterations']:.0f} it)")
        log(f"{prefix}: done in {time.perf_counter() - t_run:.0f} s")
    bar.close()

    store.write_clips(pd.concat(frames, ignore_index=True) if frames
                      else empty_frame(CLIPS_COLUMNS))
    runs = pd.DataFrame(rows)
    store.write_runs(runs)
    if config.checks is not None and config.checks.enabled:
        run_checks(config, data, out, runs, progress=progress, log=log)
    seconds = time.perf_counter() - t0
    store.write_meta(io.run_meta(source="robustmer", study=config.name, seconds=seconds,
                                 data=data.to_dict()))
    return StudyResult(store=store, runs=runs, seconds=seconds)
