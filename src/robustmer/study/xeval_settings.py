"""The settings of an explainer evaluation (``robustmer explainer-eval`` and a study's
``explainer_eval:`` block), in one frozen dataclass with the command's defaults.

Parsing is strict, as for the rest of the study config: an unknown key or a bad value raises
``ConfigError`` naming it, as ``--option`` for the command (``where=None``) and as
``<where>.<key>`` for a YAML block. :func:`parse_study_block` adds the block's choice of runs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from robustmer.errors import ConfigError
from robustmer.explain import parse_grid, registry
from robustmer.explain.base import Explainer

CLASSIFIER_ATTACKS: tuple[str, ...] = ("targeted-pgd", "cw")
"""The attacks of a classifier's evaluation (regressors always get the regression BIM)."""
CLI_NAMES: dict[str, str] = {"iters": "--attack-iters", "params": "--param"}
"""Settings whose command-line option is not ``--<key with dashes>``."""


@dataclass(frozen=True)
class ExplainerEvalSettings:
    """Every option of ``robustmer explainer-eval`` except where things are (run, data, output,
    device, resume); docs/explainer-eval.md describes each. ``methods``: the explainers tested
    (the magnitude and random baselines are always added); ``params``: each method's settings;
    ``k``: the label-flip curve's k (None: every k); ``attack``: the classifier attack;
    ``eps`` / ``eta`` / ``norm`` / ``iters`` / ``stop``: None keeps the attack's default."""

    methods: tuple[str, ...]
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    k: tuple[int, ...] | None = None
    recovery_k: tuple[int, ...] = (1, 3, 5)
    split: str = "test"
    max_clips: int | None = None
    attack: str = "targeted-pgd"
    eps: float | None = None
    eta: float | None = None
    norm: str | None = None
    confidence: float = 0.99
    stop: str | None = None
    iters: int | None = None
    min_rise: float = 0.1
    standard: bool = True
    standard_clips: int = 100
    sanity_clips: int = 8
    sanity_layers: int | None = None
    shuffled_run: str | None = None
    deletion_fill: str = "mean"
    min_overlap: float = 0.05
    excerpt_hop: int = 50
    per_class: int | None = None
    grid: str = "4x5"
    fraction: float = 0.5
    target_rule: str = "runner_up"
    maps: int = 3
    seed: int = 0
    batch_size: int = 8

    @classmethod
    def from_dict(cls, raw: Any, where: str | None = None) -> ExplainerEvalSettings:
        """Validate a mapping of settings (missing keys: the defaults). ``methods``: a list or
        a comma-separated string; ``params``: ``{method: {name: value}}`` or a list of
        ``METHOD.NAME=VALUE`` strings (values read as YAML); ``k``: integers or ranges such as
        ``"1-20"``. Errors name ``--option`` (``where=None``) or ``<where>.<key>``."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping, found {type(raw).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(fields))
        if unknown:
            raise ConfigError(f"{where or 'explainer-eval'}: unknown key(s) {unknown}; "
                              f"allowed: {sorted(fields)}")
        methods = list(dict.fromkeys(m.lower() for m in _csv(raw.get("methods", []),
                                                             _name("methods", where))))
        if not methods:
            raise ConfigError(f"{_name('methods', where)}: name at least one explainer to test, "
                              f"e.g. saliency,gbp,ig,lime (the magnitude and random baselines "
                              f"are added to every evaluation)")
        values: dict[str, Any] = {"methods": tuple(methods),
                                  "params": _params(raw.get("params", {}), methods, where)}
        for key, val in raw.items():
            if key not in ("methods", "params"):
                values[key] = _value(key, val, fields[key].type, _name(key, where))
        settings = cls(**values)
        settings.check(where)
        return settings

    def check(self, where: str | None = None) -> None:
        """The checks that need no model: choices, ranges, the grid and each explainer's
        settings (``registry.make`` refuses a setting the method does not take)."""
        if self.attack not in CLASSIFIER_ATTACKS:
            raise ConfigError(f"{_name('attack', where)}: expected one of "
                              f"{list(CLASSIFIER_ATTACKS)}, found {self.attack!r}")
        if self.per_class is not None and self.per_class < 1:
            raise ConfigError(f"{_name('per_class', where)} must be >= 1, got {self.per_class}")
        if self.standard and self.standard_clips < 1:
            raise ConfigError(f"{_name('standard_clips', where)} must be >= 1, got "
                              f"{self.standard_clips}")
        for key in ("max_clips", "maps", "batch_size", "excerpt_hop"):
            val = getattr(self, key)
            if val is not None and val < (0 if key == "maps" else 1):
                raise ConfigError(f"{_name(key, where)} must be >= {0 if key == 'maps' else 1}, "
                                  f"got {val}")
        parse_grid(self.grid)
        self.explainers()

    def explainers(self, view: str | None = None) -> dict[str, Explainer]:
        """The explainers to test, by name, built with their settings for ``view``."""
        return {m: registry.make(m, self.params.get(m, {}), view=view) for m in self.methods}

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (YAML-safe: tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class StudyExplainerEval:
    """A study's ``explainer_eval:`` block: the settings, and which runs are evaluated (each
    model type of ``models`` at each seed of ``seeds``)."""

    settings: ExplainerEvalSettings
    models: tuple[str, ...] = ()
    seeds: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The block as the study's ``config.yaml`` records it."""
        return {"models": list(self.models),
                "seeds": None if self.seeds is None else list(self.seeds),
                **self.settings.to_dict()}


def parse_study_block(raw: Any, source: str, models: list[str], seeds: list[int],
                      task: str) -> StudyExplainerEval | None:
    """Validate the study's ``explainer_eval:`` mapping (``None``: no evaluation). Besides the
    settings it takes ``models`` (default: every model type of the study) and ``seeds``
    (default None: the first seed each type runs with, an evaluation being expensive)."""
    if raw is None:
        return None
    where = f"{source}: explainer_eval"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, found {type(raw).__name__}")
    allowed = {f.name for f in dataclasses.fields(ExplainerEvalSettings)} | {"models", "seeds"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    rest = {k: v for k, v in raw.items() if k not in ("models", "seeds")}
    settings = ExplainerEvalSettings.from_dict(rest, where=where)
    chosen = _choice(raw.get("models", list(models)), models, f"{where}.models", str)
    chosen_seeds = (None if raw.get("seeds") is None
                    else _choice(raw["seeds"], seeds, f"{where}.seeds", int))
    if task != "classification" and settings.per_class is not None:
        raise ConfigError(f"{where}.per_class: balances a classifier's clean decisions; this "
                          f"study's models do {task}")
    if task == "classification" and settings.stop is not None:
        raise ConfigError(f"{where}.stop: the regression attack's stopping rule; a classifier "
                          f"attack stops at its target (confidence)")
    return StudyExplainerEval(settings, tuple(chosen),
                              None if chosen_seeds is None else tuple(chosen_seeds))


def _choice(val: Any, allowed: list[Any], where: str, kind: type) -> list[Any]:
    """A non-empty list of distinct values of ``allowed``."""
    if not isinstance(val, list) or not val or not all(
            isinstance(v, kind) and not isinstance(v, bool) for v in val):
        raise ConfigError(f"{where}: expected a non-empty list of {kind.__name__}, found {val!r}")
    bad = [v for v in val if v not in allowed]
    if bad:
        raise ConfigError(f"{where}: {bad} not among the study's {allowed}")
    return list(dict.fromkeys(val))


def _name(key: str, where: str | None) -> str:
    """How an error names a setting: the command's option, or the YAML key."""
    if where is None:
        return CLI_NAMES.get(key, "--" + key.replace("_", "-"))
    return f"{where}.{key}"


def _csv(values: Any, name: str) -> list[str]:
    """``"a,b"`` or ``["a,b", "c"]`` -> ``[a, b, c]``."""
    values = [values] if isinstance(values, str | int) else values
    if not isinstance(values, list | tuple):
        raise ConfigError(f"{name}: expected a list or a comma-separated string, found "
                          f"{values!r}")
    return [p.strip() for v in values for p in str(v).split(",") if p.strip()]


def _ints(val: Any, name: str, ranges: bool) -> tuple[int, ...]:
    """``[1, 3]``, ``"1,3,5"`` or (``ranges``) ``"1-20"`` -> a tuple of integers."""
    out: list[int] = []
    for part in _csv(val, name):
        try:
            if ranges and "-" in part:
                lo, hi = (int(p) for p in part.split("-", 1))
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            want = "integers or ranges like 1-20" if ranges else "integers"
            raise ConfigError(f"{name}: expected {want}, got {part!r}") from None
    return tuple(out)


def _value(key: str, val: Any, kind: Any, name: str) -> Any:
    """One setting checked against its field's type (``kind``: the annotation's text)."""
    text = str(kind)
    if key == "k":
        return _ints(val, name, ranges=True) or None
    if key == "recovery_k":
        return _ints(val, name, ranges=False)
    if val is None and "None" in text:
        return None
    if text.startswith("bool"):
        if not isinstance(val, bool):
            raise ConfigError(f"{name}: expected true or false, found {val!r}")
        return val
    if text.startswith("int"):
        if isinstance(val, bool) or not isinstance(val, int):
            raise ConfigError(f"{name}: expected an integer, found {val!r}")
        return val
    if text.startswith("float"):
        if isinstance(val, bool) or not isinstance(val, int | float) or not math.isfinite(val):
            raise ConfigError(f"{name}: expected a finite number, found {val!r}")
        return float(val)
    if not isinstance(val, str):
        raise ConfigError(f"{name}: expected a string, found {val!r}")
    return str(val)


def _params(raw: Any, methods: list[str], where: str | None) -> dict[str, dict[str, Any]]:
    """Each method's settings, from ``{method: {name: value}}`` or ``["lime.n_samples=512"]``
    (the command's ``--param``; values read as YAML)."""
    import yaml

    out: dict[str, dict[str, Any]] = {m: {} for m in methods}
    name = _name("params", where)
    if isinstance(raw, dict):
        for method, settings in raw.items():
            if method not in out:
                raise ConfigError(f"{name}: method {method!r} is not in methods {methods}")
            if not isinstance(settings, dict):
                raise ConfigError(f"{name}.{method}: expected a mapping of settings, found "
                                  f"{settings!r}")
            out[method] = dict(settings)
        return out
    if not isinstance(raw, list | tuple):
        raise ConfigError(f"{name}: expected a mapping or a list of METHOD.NAME=VALUE")
    for item in raw:
        key, sep, value = str(item).partition("=")
        method, dot, setting = key.partition(".")
        if not sep or not dot or not setting:
            raise ConfigError(f"{name}: expected METHOD.NAME=VALUE, got {item!r}")
        if method not in out:
            raise ConfigError(f"{name} {item!r}: method {method!r} is not in "
                              f"{_name('methods', where)} {methods}")
        try:
            out[method][setting] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ConfigError(f"{name} {item!r}: cannot read the value ({err})") from None
    return out
