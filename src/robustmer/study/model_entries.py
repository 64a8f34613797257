"""The study's ``models:`` entries: a registered model type's name (any case), or a user's own
model as a mapping (``name``, ``factory`` and its input contract; docs/own-model.md)."""

from __future__ import annotations

from typing import Any

from robustmer.errors import ConfigError
from robustmer.models import types as mtypes
from robustmer.models.factory import FactoryType, resolve_factory

FACTORY_KEYS: tuple[str, ...] = ("name", "factory", "task", "input", "sample_rate", "seconds",
                                 "train", "adversarial", "concepts", "settings")
"""Keys of a user model entry in ``models:`` (docs/own-model.md)."""


def model_type_name(name: str, where: str = "model type") -> str:
    """The canonical spelling of a registered model type, accepted in any case."""
    return mtypes.get_type(name, where).name


def parse_model(raw: Any, where: str) -> mtypes.ModelType:
    """One ``models:`` entry: a registered name (any case), or a user model as a mapping::

        {name: WaveNet, factory: my_models.py:build, task: regression, input: waveform,
         sample_rate: 16000, seconds: 4.0, train: true, adversarial: false, concepts: false,
         settings: {channels: 16}}

    (a file path resolves against the current directory). The type is registered, so the
    report and the store order it as given."""
    if isinstance(raw, str):
        if ":" in raw:
            raise ConfigError(f"{where}: {raw!r} looks like a factory; give a mapping with "
                              f"name: and factory: (docs/own-model.md)")
        return mtypes.get_type(raw, where)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a model type name or a mapping with name: and "
                          f"factory:, found {type(raw).__name__}")
    unknown = sorted(set(raw) - set(FACTORY_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {list(FACTORY_KEYS)}")
    for key in ("name", "factory"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ConfigError(f"{where}.{key}: required (a non-empty string)")
    for key in ("train", "adversarial", "concepts"):
        if key in raw and not isinstance(raw[key], bool):
            raise ConfigError(f"{where}.{key}: expected true or false, found {raw[key]!r}")
    settings = raw.get("settings") or {}
    if not isinstance(settings, dict):
        raise ConfigError(f"{where}.settings: expected a mapping of the factory's keyword "
                          f"arguments, found {settings!r}")
    if raw.get("adversarial"):
        raise ConfigError(f"{where}.adversarial: adversarial training of a user model is not "
                          f"supported yet; compare with the built-in aA2E / aA2B2E instead")
    existing = {n.lower(): n for n in mtypes.REGISTRY}
    clash = existing.get(str(raw["name"]).lower())
    if clash is not None and not isinstance(mtypes.REGISTRY[clash], FactoryType):
        raise ConfigError(f"{where}.name: {raw['name']!r} is a built-in model type; choose "
                          f"another name")
    try:
        mt = FactoryType(name=raw["name"], factory=resolve_factory(raw["factory"],
                                                                   f"{where}.factory"),
                         task=raw.get("task", "regression"), input=raw.get("input",
                                                                           "spectrogram"),
                         sample_rate=raw.get("sample_rate"), seconds=raw.get("seconds"),
                         trainable=raw.get("train", True),
                         needs_concepts=raw.get("concepts", False), settings=dict(settings))
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    return mtypes.register(mt, replace=True)
