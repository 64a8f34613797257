"""The study configuration: one YAML file names the data, model types, seeds, training recipe,
attack and output folder. Parsing is strict: an unknown key or a bad value raises ``ConfigError``
naming the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from robustmer.attacks.base import DEFAULT_EPS, DEFAULT_ETA
from robustmer.attacks.spec import AttackSpec, entry
from robustmer.data.synth import FORMAT_VERSION as SYNTH_FORMAT
from robustmer.data.synth import FORMAT_VERSIONS as SYNTH_FORMATS
from robustmer.errors import ConfigError
from robustmer.models import types as mtypes
from robustmer.models.factory import FactoryType
from robustmer.study.attack_block import (
    DEFAULT_ATTACK,
    AttackSetting,
    StudyAttack,
    parse_attack,
)
from robustmer.study.checkspec import CheckSpec, parse_checks
from robustmer.study.executor import RayOptions
from robustmer.study.model_entries import FACTORY_KEYS, model_type_name, parse_model
from robustmer.study.xeval_settings import StudyExplainerEval, parse_study_block
from robustmer.train.config import LR_SCHEDULES
from robustmer.userfiles import resolve_callable

__all__ = [
    "DEFAULT_ATTACK", "DEFAULT_MODELS", "EXAMPLES", "FACTORY_KEYS", "AttackSetting", "DataSpec",
    "StudyAttack", "StudyConfig", "TrainSpec", "entry_fixed", "for_outputs", "load_config",
    "model_type_name", "parse_config", "parse_model", "training_attack",
]

DEFAULT_SEEDS: tuple[int, ...] = (6, 21, 42, 796, 950, 2025, 2324, 2451, 3100, 7192)
"""The paper's ten seeds."""
DEFAULT_MODELS: tuple[str, ...] = tuple(mtypes.names("regression"))
"""The study's default model list: every registered regression type (the paper's five)."""
EXAMPLES: tuple[str, ...] = ("media", "all", "none")
"""``write_examples``: which attacked clips keep their δ (and WAVs): the ones the report plays
(the first ``media_clips`` of each type's lowest seed, first attack setting), every clip, or
none (``true`` / ``false`` are accepted for all / none)."""
@dataclass(frozen=True)
class DataSpec:
    """Where the clips come from. ``root``: a dataset (a manifest CSV, a ``dataset.yaml``, a
    folder holding one, or a Soundtracks folder); ``null`` means the embedded synthetic
    dataset, or with ``make`` the dataset ``make`` writes; ``pack`` a feature pack (``robustmer
    data features ROOT --pack FILE``) instead of audio. ``make``: ``"FILE.py:function"``, the
    user's generator, called as ``function(folder)`` to write the dataset when ``root`` does not
    exist yet (``root``'s folder, or ``OUTPUT/data`` without ``root``); it returns the dataset's
    path (or None: the folder)."""

    root: str | None = None
    make: str | None = None
    pack: str | None = None
    midlevel: str | None = None
    cache: str | None = None
    split_seed: int = 0
    synth_clips: int = 120
    synth_seed: int = 0
    synth_duration: float = 12.0
    synth_format: int = SYNTH_FORMAT


@dataclass(frozen=True)
class TrainSpec:
    """The training recipe (defaults: the reference study's). ``amp`` to ``bn_recalibrate``
    are departures for short CPU runs (``TrainConfig`` fields of the same names; off by default,
    docs/demo.md). ``jobs``: runs at once as processes; ``batch_seeds``: a model type's seeds
    trained as one batched model (``robustmer.train.batched``; not the adversarially trained
    types, which train one by one)."""

    width: float = mtypes.MERType.DEFAULT_SETTINGS["width"]
    dropout: float = mtypes.MERType.DEFAULT_SETTINGS["dropout"]
    epochs: int = 200
    patience: int = 50
    batch_size: int = 8
    lr: float = 5e-4
    device: str = "cpu"
    adv_every: int = 5
    adv_iters: int = 50
    adv_eps: float = DEFAULT_EPS
    adv_eta: float = DEFAULT_ETA
    adv_attack: str = "bim"
    amp: bool = False
    standardize_targets: bool = False
    lr_schedule: str = "constant"
    bn_recalibrate: bool = False
    jobs: int = 1
    batch_seeds: bool = False


def for_outputs(config: StudyConfig, n_outputs: int, where: str = "attack",
                target_range: float | None = None) -> StudyConfig:
    """The study with its attack settings resolved for models of ``n_outputs`` outputs whose
    targets span ``target_range`` (known once the data is read): with fewer than 3 outputs, a
    stopping rule left to its default is ``mse`` with thresholds scaled to the range, and an
    explicit ``corr`` is refused (``AttackSpec.from_dict``)."""
    attack = parse_attack(config.attack.raw, where, config.task, n_outputs, target_range)
    return dataclasses.replace(config, attack=attack)


@dataclass(frozen=True)
class StudyConfig:
    """A whole study: data x model types x seeds -> train -> attack -> results store.

    ``types``: the model types of ``models`` (registered names or the user's own, parsed from
    the YAML); ``comparisons``: the planned pairs of model types (default: the paper's where
    its types are present, else every type against the first); ``task``: what every type
    does (``regression`` or ``classification``)."""

    name: str
    output: str
    models: tuple[str, ...] = DEFAULT_MODELS
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    data: DataSpec = field(default_factory=DataSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    attack: StudyAttack = field(default_factory=lambda: parse_attack(None, "attack"))
    media_clips: int = 3
    write_examples: str = "media"
    ray: RayOptions = field(default_factory=RayOptions)
    checks: CheckSpec | None = None
    explainer_eval: StudyExplainerEval | None = None
    types: tuple[mtypes.ModelType, ...] = ()
    comparisons: tuple[tuple[str, str], ...] = ()
    task: str = "regression"

    def model_type(self, name: str) -> mtypes.ModelType:
        """The type of one of the study's models."""
        for t in self.types:
            if t.name == name:
                return t
        return mtypes.get_type(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (what ``config.yaml`` in the results folder holds)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
             if f.name != "types"}
        d["data"], d["train"] = dataclasses.asdict(self.data), dataclasses.asdict(self.train)
        d["attack"] = self.attack.to_dict()
        d["ray"] = dataclasses.asdict(self.ray)
        d["checks"] = None if self.checks is None else dataclasses.asdict(self.checks)
        if self.explainer_eval is None:  # absent, so a study without one records what it did
            del d["explainer_eval"]
        else:
            d["explainer_eval"] = self.explainer_eval.to_dict()
        d["models"] = [t.to_dict() if isinstance(t, FactoryType) else t.name
                       for t in (self.types or [mtypes.get_type(m) for m in self.models])]
        d["seeds"] = list(self.seeds)
        d["comparisons"] = [list(p) for p in self.comparisons]
        return d


def _build(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, found {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    values: dict[str, Any] = {}
    for key, val in raw.items():
        default = fields[key].default
        kind = type(default) if default is not dataclasses.MISSING else None
        if kind is float and isinstance(val, int) and not isinstance(val, bool):
            val = float(val)
        wrong_type = kind in (int, float, str, bool) and not isinstance(val, kind)
        if kind is not None and (wrong_type or (kind in (int, float) and isinstance(val, bool))):
            raise ConfigError(f"{where}.{key}: expected {kind.__name__}, found {val!r}")
        values[key] = val
    return cls(**values)


def parse_config(raw: dict[str, Any], source: str = "<config>") -> StudyConfig:
    """Validate a study config mapping; every error names ``source`` and the offending key."""
    _check_keys(raw, source)
    types, task = _parse_models(raw, source)
    models = [t.name for t in types]
    comparisons = _parse_comparisons(raw.get("comparisons"), models, source)
    seeds = _parse_seeds(raw, source)
    data = _build(DataSpec, raw.get("data"), f"{source}: data")
    train = _build(TrainSpec, raw.get("train"), f"{source}: train")
    attack = parse_attack(raw.get("attack"), f"{source}: attack", task)
    _check_data(data, types, attack, source)
    _check_train(train, data, attack, source)
    media = raw.get("media_clips", 3)
    if not isinstance(media, int) or isinstance(media, bool) or media < 0:
        raise ConfigError(f"{source}: media_clips must be an integer >= 0")
    ray = _parse_ray(raw, source)
    if train.jobs < 1:
        raise ConfigError(f"{source}: train.jobs must be >= 1, found {train.jobs}")
    if train.batch_seeds and train.amp:
        raise ConfigError(f"{source}: train.batch_seeds and train.amp exclude each other (amp's "
                          f"loss scaler is global: one seed's overflow would skip every seed's "
                          f"step); turn one off")
    examples = raw.get("write_examples", "media")
    examples = {True: "all", False: "none"}.get(examples, examples)  # the older true / false
    if examples not in EXAMPLES:
        raise ConfigError(f"{source}: write_examples must be one of {list(EXAMPLES)} (media: "
                          f"only the clips the report plays; all: every attacked clip, about "
                          f"2 MB each in the waveform domain), found {examples!r}")
    checks = parse_checks(raw.get("checks"), source, attack, models)
    if checks is not None and checks.enabled:
        odd = [t.name for t in types if t.task != "regression" or t.input_kind != "spectrogram"]
        if odd:
            raise ConfigError(f"{source}: checks: the checks attack spectrogram regressors; "
                              f"model type(s) {odd} are not (remove them or the checks block)")
    xeval = parse_study_block(raw.get("explainer_eval"), source, models, seeds, task)
    if train.batch_seeds and any(isinstance(t, FactoryType) for t in types):
        raise ConfigError(f"{source}: train.batch_seeds stacks robustmer's own networks; the "
                          f"user models train one by one (set it to false)")
    return StudyConfig(name=raw["name"], output=raw["output"], models=tuple(models),
                       seeds=tuple(seeds), data=data, train=train, attack=attack,
                       media_clips=media, write_examples=examples, ray=ray,
                       checks=checks, explainer_eval=xeval, types=tuple(types),
                       comparisons=comparisons, task=task)


def _check_keys(raw: Any, source: str) -> None:
    """A mapping of known keys with a ``name`` and an ``output``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the study config must be a mapping")
    allowed = {"name", "output", "models", "seeds", "data", "train", "attack", "media_clips",
               "write_examples", "ray", "checks", "comparisons", "explainer_eval"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    for key in ("name", "output"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ConfigError(f"{source}: '{key}' must be a non-empty string")


def _parse_models(raw: dict[str, Any],
                  source: str) -> tuple[list[mtypes.ModelType], str]:
    """``models:``: the types (registered names or user models, no duplicates) and their one
    task."""
    raw_models = raw.get("models", list(DEFAULT_MODELS))
    if not isinstance(raw_models, list) or not raw_models:
        raise ConfigError(f"{source}: 'models' must be a non-empty list of model types "
                          f"({mtypes.names()}) or user models (mappings with name: and "
                          f"factory:)")
    types = [parse_model(m, f"{source}: models[{i}]") for i, m in enumerate(raw_models)]
    models = [t.name for t in types]
    if len(set(models)) != len(models):
        raise ConfigError(f"{source}: 'models' has duplicates: {models}")
    tasks = sorted({t.task for t in types})
    if len(tasks) > 1:
        raise ConfigError(f"{source}: 'models' mixes tasks {tasks} "
                          f"({', '.join(f'{t.name}: {t.task}' for t in types)}); a study "
                          f"compares models of one task")
    return types, tasks[0]


def _parse_seeds(raw: dict[str, Any], source: str) -> list[int]:
    """``seeds:``: a non-empty list of distinct integers (default: the paper's ten)."""
    seeds = raw.get("seeds", list(DEFAULT_SEEDS))
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise ConfigError(f"{source}: 'seeds' must be a non-empty list of integers")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{source}: 'seeds' has duplicates: {seeds}")
    return seeds


def _check_data(data: DataSpec, types: list[mtypes.ModelType], attack: StudyAttack,
                source: str) -> None:
    """The data fits the models and the attack: audio models are attacked on audio, a feature
    pack holds no audio and excludes the other sources, ``data.make`` names a callable."""
    waveform = [t.name for t in types if t.input_kind == "waveform"]
    spectrogram_settings = [st.id for st in attack.settings if st.domain == "spectrogram"]
    if waveform and spectrogram_settings:
        raise ConfigError(f"{source}: attack: model type(s) {waveform} read audio (input: "
                          f"waveform) and are attacked in the waveform domain; the setting(s) "
                          f"{spectrogram_settings} attack spectrograms (set attack.domain: "
                          f"waveform, and domain: waveform on presets)")
    if data.pack is not None and waveform:
        raise ConfigError(f"{source}: data.pack holds spectrograms only; model type(s) "
                          f"{waveform} read audio: use data.root")
    if data.make is not None:
        if data.pack is not None:
            raise ConfigError(f"{source}: data.make writes an audio dataset; data.pack is a "
                              f"feature pack: give one")
        resolve_callable(data.make, f"{source}: data.make")
    if data.pack is not None:
        if not isinstance(data.pack, str) or not data.pack:
            raise ConfigError(f"{source}: data.pack must be the path of a feature pack file, "
                              f"found {data.pack!r}")
        for key in ("root", "midlevel", "cache"):
            if getattr(data, key) is not None:
                raise ConfigError(f"{source}: data.{key} and data.pack exclude each other (the "
                                  f"pack holds the spectrograms and annotations); give one")
        if any(st.domain == "waveform" for st in attack.settings):
            raise ConfigError(f"{source}: attack.domain waveform needs the audio; this study's "
                              f"data is the feature pack {data.pack} (spectrograms only); use "
                              f"attack.domain spectrogram, or data.root for the audio folder")


def _check_train(train: TrainSpec, data: DataSpec, attack: StudyAttack, source: str) -> None:
    """The recipe's values are in range, the synthetic format exists, and the training attack
    (``train.adv_*``) is a valid regression attack."""
    if train.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"{source}: train.lr_schedule must be one of {list(LR_SCHEDULES)}, "
                          f"found {train.lr_schedule!r}")
    for name, val in (("train.adv_eps", train.adv_eps), ("train.adv_eta", train.adv_eta),
                      ("train.lr", train.lr), ("train.width", train.width)):
        if not val > 0:
            raise ConfigError(f"{source}: {name} must be > 0, found {val}")
    if not 0.0 <= train.dropout < 1.0:
        raise ConfigError(f"{source}: train.dropout must be in [0, 1), found {train.dropout}")
    if data.synth_format not in SYNTH_FORMATS:
        raise ConfigError(f"{source}: data.synth_format must be one of {list(SYNTH_FORMATS)}, "
                          f"found {data.synth_format!r}")
    for name, ival in (("train.epochs", train.epochs), ("train.batch_size", train.batch_size)):
        if ival < 1:
            raise ConfigError(f"{source}: {name} must be >= 1, found {ival}")
    training_attack(train, attack, f"{source}: train")  # validates adv_attack and its budget


def _parse_ray(raw: dict[str, Any], source: str) -> RayOptions:
    """``ray:``: where and how Ray runs the study's tasks."""
    ray: RayOptions = _build(RayOptions, raw.get("ray"), f"{source}: ray")
    if ray.address is not None and not isinstance(ray.address, str):
        raise ConfigError(f"{source}: ray.address must be a string such as 'auto' or "
                          f"'HOST:6379', found {ray.address!r}")
    if ray.num_gpus < 0 or ray.num_cpus < 0 or ray.max_retries < 0:
        raise ConfigError(f"{source}: ray.num_gpus, ray.num_cpus and ray.max_retries must be "
                          f">= 0, found {ray.num_gpus}, {ray.num_cpus}, {ray.max_retries}")
    return ray


def _parse_comparisons(raw: Any, models: list[str], source: str) -> tuple[tuple[str, str], ...]:
    """``comparisons: [[A, B], ...]`` (pairs of the study's model types, any case); default:
    the paper's where its types are present, else every type against the first listed."""
    where = f"{source}: comparisons"
    if raw is None:
        return tuple(mtypes.default_comparisons(models))
    if not isinstance(raw, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(t, str) for t in p)
            for p in raw):
        raise ConfigError(f"{where}: expected a list of [type, type] pairs, found {raw!r}")
    by_lower = {m.lower(): m for m in models}
    out = []
    for k, (a, b) in enumerate(raw):
        names = []
        for t in (a, b):
            if t.lower() not in by_lower:
                raise ConfigError(f"{where}[{k}]: {t!r} is not one of the study's models "
                                  f"{models}")
            names.append(by_lower[t.lower()])
        if names[0] == names[1]:
            raise ConfigError(f"{where}[{k}]: compares {names[0]} with itself")
        out.append((names[0], names[1]))
    if len(set(out)) != len(out):
        raise ConfigError(f"{where}: a pair appears twice: {raw}")
    return tuple(out)


def training_attack(train: TrainSpec, attack: StudyAttack,
                    where: str = "train") -> AttackSpec:
    """The attack inside adversarial training: ``train.adv_attack`` with its own budget
    (``adv_eps``, ``adv_eta``, ``adv_iters``) on the training batches' spectrogram excerpts;
    ``norm`` and ``stop`` follow the study's attack when both attacks have them."""
    settings: dict[str, Any] = {"name": train.adv_attack, "eps": train.adv_eps,
                                "eta": train.adv_eta, "max_iters": train.adv_iters}
    first = attack.settings[0].spec.settings if attack.settings else {}
    probe = AttackSpec.from_dict({"name": train.adv_attack}, where=f"{where}.adv_attack")
    if probe.task != "regression":
        raise ConfigError(f"{where}.adv_attack: {train.adv_attack!r} attacks a classifier")
    for key in ("norm", "stop"):
        if key in first and key in probe.settings and key not in entry_fixed(train.adv_attack):
            settings[key] = first[key]
    return AttackSpec.from_dict(settings, where=f"{where}.adv_*")


def entry_fixed(name: str) -> dict[str, Any]:
    """Settings a registered preset fixes (empty for a plain attack)."""
    return entry(name).fixed


def load_config(path: str | Path) -> StudyConfig:
    """Read and validate a study YAML file; relative data/output paths resolve against the
    current directory (as a user typing the command expects)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"study config not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: not valid YAML: {err}") from err
    return parse_config(raw, source=str(p))
