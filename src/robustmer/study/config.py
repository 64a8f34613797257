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

from robustmer.errors import ConfigError
from robustmer.study.checkspec import CheckSpec, parse_checks

MODEL_TYPES: dict[str, tuple[str, bool]] = {
    "A2E": ("a2e", False),
    "A2B2E": ("a2b2e", False),
    "A2M2E": ("a2m2e", False),
    "aA2E": ("a2e", True),
    "aA2B2E": ("a2b2e", True),
}
"""Study model type -> (model kind, adversarially trained)."""


@dataclass(frozen=True)
class DataSpec:
    """Where the clips come from. ``root: null`` means the embedded synthetic dataset."""

    root: str | None = None
    midlevel: str | None = None
    cache: str | None = None
    split_seed: int = 0
    synth_clips: int = 120
    synth_seed: int = 0


@dataclass(frozen=True)
class TrainSpec:
    """The training recipe (defaults: the reference study's)."""

    width: float = 1.0
    epochs: int = 200
    patience: int = 50
    batch_size: int = 8
    lr: float = 5e-4
    device: str = "cpu"
    adv_every: int = 5
    adv_iters: int = 50
    adv_eps: float = 0.001
    adv_eta: float = 0.002


@dataclass(frozen=True)
class AttackSpec:
    """The attack on the test split (defaults: the study's choice)."""

    domain: str = "spectrogram"
    eps: float = 0.001
    eta: float = 0.002
    iters: int = 1000
    stop: str = "corr"
    norm: str = "linf"
    batch_size: int = 8


@dataclass(frozen=True)
class StudyConfig:
    """A whole study: data x model types x seeds -> train -> attack -> results store."""

    name: str
    output: str
    models: tuple[str, ...] = tuple(MODEL_TYPES)
    seeds: tuple[int, ...] = (6, 21, 42, 796, 950, 2025, 2324, 2451, 3100, 7192)
    data: DataSpec = field(default_factory=DataSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    attack: AttackSpec = field(default_factory=AttackSpec)
    media_clips: int = 3
    checks: CheckSpec | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (what ``config.yaml`` in the results folder holds)."""
        d = dataclasses.asdict(self)
        d["models"] = list(self.models)
        d["seeds"] = list(self.seeds)
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
        wrong_type = kind in (int, float, str) and not isinstance(val, kind)
        if wrong_type or (kind in (int, float) and isinstance(val, bool)):
            raise ConfigError(f"{where}.{key}: expected {kind.__name__}, found {val!r}")
        values[key] = val
    return cls(**values)


def parse_config(raw: dict[str, Any], source: str = "<config>") -> StudyConfig:
    """Validate a study config mapping; every error names ``source`` and the offending key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the study config must be a mapping")
    allowed = {"name", "output", "models", "seeds", "data", "train", "attack", "media_clips",
               "checks"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    for key in ("name", "output"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ConfigError(f"{source}: '{key}' must be a non-empty string")
    models = raw.get("models", list(MODEL_TYPES))
    if not isinstance(models, list) or not models:
        raise ConfigError(f"{source}: 'models' must be a non-empty list of {list(MODEL_TYPES)}")
    for m in models:
        if m not in MODEL_TYPES:
            raise ConfigError(f"{source}: models: unknown model type {m!r}; "
                              f"choose from {list(MODEL_TYPES)}")
    seeds = raw.get("seeds", list(StudyConfig.__dataclass_fields__["seeds"].default))
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise ConfigError(f"{source}: 'seeds' must be a non-empty list of integers")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{source}: 'seeds' has duplicates: {seeds}")
    data = _build(DataSpec, raw.get("data"), f"{source}: data")
    train = _build(TrainSpec, raw.get("train"), f"{source}: train")
    attack = _build(AttackSpec, raw.get("attack"), f"{source}: attack")
    if attack.domain not in ("spectrogram", "waveform"):
        raise ConfigError(f"{source}: attack.domain must be spectrogram or waveform, "
                          f"found {attack.domain!r}")
    if attack.stop not in ("corr", "mse"):
        raise ConfigError(f"{source}: attack.stop must be corr or mse, found {attack.stop!r}")
    if attack.norm not in ("linf", "l2"):
        raise ConfigError(f"{source}: attack.norm must be linf or l2, found {attack.norm!r}")
    for name, val in (("attack.eps", attack.eps), ("attack.eta", attack.eta),
                      ("train.adv_eps", train.adv_eps), ("train.adv_eta", train.adv_eta),
                      ("train.lr", train.lr), ("train.width", train.width)):
        if not val > 0:
            raise ConfigError(f"{source}: {name} must be > 0, found {val}")
    for name, ival in (("attack.iters", attack.iters), ("train.epochs", train.epochs),
                       ("train.batch_size", train.batch_size),
                       ("attack.batch_size", attack.batch_size)):
        if ival < 1:
            raise ConfigError(f"{source}: {name} must be >= 1, found {ival}")
    media = raw.get("media_clips", 3)
    if not isinstance(media, int) or media < 0:
        raise ConfigError(f"{source}: media_clips must be an integer >= 0")
    checks = parse_checks(raw.get("checks"), source, attack, models)
    return StudyConfig(name=raw["name"], output=raw["output"], models=tuple(models),
                       seeds=tuple(seeds), data=data, train=train, attack=attack,
                       media_clips=media, checks=checks)


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
