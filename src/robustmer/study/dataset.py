"""The study's data: where it comes from (the embedded dataset, the user's generator, a dataset
or a feature pack), prepared as every run sees it, and what it says about the study (its output
names, the span of its targets, whether the concept-trained types can run)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from robustmer import io
from robustmer.data import prepare_data
from robustmer.data.prepared import PreparedData
from robustmer.errors import ConfigError
from robustmer.study.config import StudyConfig
from robustmer.userfiles import callable_source, load_callable, resolve_callable

Log = Callable[[str], None]


def check_sources(config: StudyConfig) -> None:
    """Refuse a study whose ``data.root`` or ``data.pack`` does not exist (before the output
    folder is claimed, so a typo leaves nothing behind)."""
    if (config.data.root is not None and config.data.make is None
            and not Path(config.data.root).exists()):
        raise ConfigError(f"data.root: dataset not found: {config.data.root} (a manifest CSV, a "
                          f"dataset.yaml, a folder holding one, or a Soundtracks folder)")
    if config.data.pack is not None and not Path(config.data.pack).is_file():
        raise ConfigError(f"data.pack: feature pack not found: {config.data.pack}")


def dataset_root(config: StudyConfig, out: Path, log: Log) -> Path:
    """The dataset the study reads: the feature pack, the one ``data.make`` writes, the given
    ``data.root``, or the embedded dataset (written to ``OUTPUT/data`` first)."""
    if config.data.pack is not None:
        return Path(config.data.pack)  # a feature pack; checked by check_sources
    if config.data.make is not None:
        return make_dataset(config, out, log)
    if config.data.root is not None:
        return Path(config.data.root)  # checked by check_sources before the folder is claimed
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


def output_names(config: StudyConfig, data: PreparedData) -> list[str]:
    """The names of the study's outputs: the data's targets, or its classes."""
    table = data.table
    return list(table.classes if config.task == "classification" else table.target_names)


def prepare_study_data(config: StudyConfig, root: Path | str,
                       progress: bool | None = False) -> PreparedData:
    """The study's data exactly as the driver prepared it (same cache, split file, standardiser);
    in a worker the spectrograms come from the cache the driver filled."""
    out = Path(config.output)
    data = prepare_data(root, cache_dir=config.data.cache or out / "cache",
                        split_path=out / "split.json", split_seed=config.data.split_seed,
                        midlevel_root=config.data.midlevel, progress=progress)
    if not isinstance(data, PreparedData):
        raise ConfigError(f"data {root}: a voice-detection dataset (voice.json) is read by "
                          f"train, evaluate and explainer-eval; a study needs clip-level "
                          f"labels (a manifest, dataset.yaml or Soundtracks folder)")
    return data


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
