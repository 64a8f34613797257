"""One description of an attack for the whole package: a registry name -> class + settings.

The CLI (``robustmer attack --attack NAME``), the study's ``attack:`` block, adversarial training
and the results folders all go through :class:`AttackSpec`: ``AttackSpec.from_dict({"name":
"bim", "eps": 0.001})`` validates the settings against the class's constructor (unknown keys and
wrong types raise ``ConfigError`` naming the key), ``to_dict()`` gives every setting (defaults
filled in, so what is recorded is what ran) and ``build()`` makes the attack.

A later attack registers itself with one line, ``register("apgd", APGD)`` (at the bottom of its
module, which ``robustmer.attacks`` imports; or in ``_register_builtins`` below). A *preset* is a
registered name with some settings fixed, such as ``reference``: the reference study's
unbounded attack.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from robustmer.attacks.base import DEFAULT_EPS, DEFAULT_ETA, in_loop_order
from robustmer.attacks.bim import MIN_CORR_OUTPUTS
from robustmer.errors import ConfigError
from robustmer.protocols import AttackLike
from robustmer.registry import check_registered_settings, check_type
from robustmer.registry import class_parameters as class_parameters  # public here as before
from robustmer.registry import setting_choices as setting_choices  # public here as before

TASKS: tuple[str, ...] = ("regression", "classification")
"""What a registered attack attacks: a regressor (targets are values) or a classifier (targets
are class indices); the same words as a model type's task (``robustmer.models.types``)."""
TASK_ALIASES: dict[str, str] = {"classifier": "classification", "regressor": "regression"}
"""Older spellings of the tasks (explainer-eval folders written before record them)."""

ALIASES: dict[str, str] = {"iters": "max_iters"}
"""Accepted alternative spellings of settings (the study's YAML has always said ``iters``)."""
PAPER_TARGET_RANGE = 0.8
"""The span of the paper's targets (ratings 1-9 divided by 10), which the MSE rule's default
thresholds were chosen for."""


@dataclass(frozen=True)
class Entry:
    """One registered name: the class, settings that a preset fixes, defaults that differ from the
    class's, whether it attacks a regressor or a classifier, and one line of description."""

    name: str
    cls: type[AttackLike]
    fixed: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    task: str = "regression"
    doc: str = ""

    @property
    def recorded(self) -> dict[str, Any]:
        """Settings the class's folders record that it does not take (``Attack.recorded``)."""
        return dict(getattr(self.cls, "recorded", {}))

    def parameters(self) -> dict[str, Any]:
        """Every setting of the class with its default (class defaults, then ``defaults`` and
        ``fixed``), in constructor order, with the recorded ones where they have always been."""
        params = in_loop_order(class_parameters(self.cls), self.recorded)
        params.update(self.defaults)
        params.update(self.fixed)
        return params

    def choices(self) -> dict[str, tuple[str, ...]]:
        """The allowed values of the class's text settings (its ``choices``, merged up the
        class hierarchy; e.g. ``{"norm": ("linf", "l2"), "stop": ("corr", "mse", "none")}``)."""
        return setting_choices(self.cls)


REGISTRY: dict[str, Entry] = {}


def register(name: str, cls: type[AttackLike], *, fixed: Mapping[str, Any] | None = None,
             defaults: Mapping[str, Any] | None = None, task: str = "regression",
             doc: str = "") -> None:
    """Make ``cls`` reachable as ``name`` from the CLI, the study and training (one line per
    attack). ``fixed``: settings a preset pins (a config may not change them); ``defaults``:
    defaults that differ from the class's; ``task``: ``regression`` (targets are values) or
    ``classification`` (targets are class indices)."""
    if not name or not name.replace("_", "").isalnum():
        raise ConfigError(f"attack name must be letters, digits and '_', got {name!r}")
    task = TASK_ALIASES.get(task, task)
    if task not in TASKS:
        raise ConfigError(f"task must be one of {list(TASKS)}, got {task!r}")
    check_registered_settings(name, cls, [*(fixed or {}), *(defaults or {})])
    REGISTRY[name] = Entry(name, cls, dict(fixed or {}), dict(defaults or {}), task, doc)


def names(task: str | None = None) -> list[str]:
    """Registered attack names (optionally only those of one ``task``), sorted."""
    task = None if task is None else TASK_ALIASES.get(task, task)
    return sorted(n for n, e in REGISTRY.items() if task is None or e.task == task)


def names_for(task: str) -> list[str]:
    """The attacks for a model of ``task`` (``regression`` or ``classification``)."""
    return names(task)


def entry(name: str, where: str = "attack") -> Entry:
    """The registry entry of ``name``; ``ConfigError`` listing the known names otherwise."""
    if name not in REGISTRY:
        raise ConfigError(f"{where}: unknown attack {name!r}; choose from {names()}")
    return REGISTRY[name]


def choices(setting: str, task: str | None = None) -> tuple[str, ...]:
    """Every value of the text setting ``setting`` that some registered attack (of ``task``)
    accepts, in registration order: what the CLI offers (``--stop``, ``--norm``, ...)."""
    out: dict[str, None] = {}
    for e in REGISTRY.values():
        if task is None or e.task == TASK_ALIASES.get(task, task):
            out.update(dict.fromkeys(e.choices().get(setting, ())))
    return tuple(out)


def _check_value(key: str, value: Any, default: Any, where: str) -> Any:
    """Type-check one setting against its default's type (ints become floats where a float is
    expected; a box is ``null`` or ``[lo, hi]``)."""
    if key == "box":
        if value is None:
            return None
        if (not isinstance(value, list | tuple) or len(value) != 2
                or not all(isinstance(v, int | float) and not isinstance(v, bool)
                           for v in value)):
            raise ConfigError(f"{where}.box: expected null or [lo, hi], found {value!r}")
        return (float(value[0]), float(value[1]))
    return check_type(key, value, default, where)


@dataclass(frozen=True)
class AttackSpec:
    """A validated attack description: registry ``name`` + every setting of its class.

    ``eps`` is the budget the attack really enforces: the ``eps`` setting, or NaN where the ε
    projection never takes effect (``clip="reference_noop"``, the reference preset).

    Examples:
        >>> spec = AttackSpec.from_dict({"name": "bim", "eps": 0.01, "iters": 20})
        >>> spec.settings["max_iters"], spec.settings["eta"], spec.task
        (20, 0.002, 'regression')
        >>> reference = AttackSpec.from_dict("reference")  # the preset: no effective ε
        >>> setting_id(spec, "spectrogram"), setting_id(reference, "waveform"), reference.eps
        ('bim-spectrogram-eps0.01', 'reference-waveform', nan)
        >>> AttackSpec.from_dict(spec.to_dict()) == spec  # what is recorded rebuilds it
        True
        >>> AttackSpec.from_dict({"name": "bim", "epsilon": 0.1})
        Traceback (most recent call last):
        ...
        robustmer.errors.ConfigError: attack: unknown setting 'epsilon' for attack 'bim'; ...
        >>> type(spec.build()).__name__
        'BIM'
    """

    name: str = "bim"
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | str, where: str = "attack",
                  n_outputs: int | None = None,
                  target_range: float | None = None) -> AttackSpec:
        """Validate ``{"name": ..., <setting>: value, ...}`` (or just a name). Unknown keys, wrong
        types, values the attack refuses and changes to a preset's fixed settings raise
        ``ConfigError`` naming ``where`` and the key.

        ``n_outputs``: the attacked model's number of outputs, where known. With fewer than 3,
        a stopping rule left to its default becomes ``mse`` (the correlation rule's per-clip r
        over 2 values is always ±1), and an explicit ``stop: corr`` is refused. The MSE rule's
        thresholds (``threshold_step`` 0.1 up to ``mse_limit`` 1.0) are meant for targets
        spanning the paper's 0.8 (ratings / 10); with the data's ``target_range`` given, the
        ones left to their defaults are scaled by ``(target_range / 0.8)**2``, so they mean the
        same share of the targets' range on any scale."""
        if isinstance(raw, str):
            raw = {"name": raw}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: expected a mapping or an attack name, "
                              f"found {type(raw).__name__}")
        raw = dict(raw)
        name = raw.pop("name", "bim")
        if not isinstance(name, str):
            raise ConfigError(f"{where}.name: expected a string, found {name!r}")
        e = entry(name, f"{where}.name")
        params = e.parameters()
        settings = dict(params)
        for key, value in raw.items():
            k = ALIASES.get(key, key)
            if k not in params:
                raise ConfigError(f"{where}: unknown setting {key!r} for attack {name!r}; "
                                  f"allowed: {sorted(params)}")
            if k in e.fixed and value != e.fixed[k]:
                raise ConfigError(f"{where}.{key}: the {name!r} preset fixes {k}={e.fixed[k]!r}"
                                  f" (found {value!r}); use attack 'bim' to change it")
            if k in e.recorded and value != e.recorded[k]:
                raise ConfigError(f"{where}.{key}: attack {name!r} records {k}="
                                  f"{e.recorded[k]!r} and takes no other value (found "
                                  f"{value!r}); the reference switches belong to 'bim' and "
                                  f"'pgd'")
            settings[k] = _check_value(key, value, params[k], where)
        if (n_outputs is not None and n_outputs < MIN_CORR_OUTPUTS
                and settings.get("stop") == "corr"):
            given = "stop" in raw or "stop" in e.fixed
            if given:
                raise ConfigError(f"{where}.stop: the correlation stopping rule needs at least "
                                  f"{MIN_CORR_OUTPUTS} outputs per clip; the model has "
                                  f"{n_outputs} (r over 2 values is always ±1): use stop: mse"
                                  + (f" (the {name!r} preset fixes stop: corr; use 'bim')"
                                     if "stop" in e.fixed else ""))
            settings["stop"] = "mse"
        if (target_range is not None and target_range > 0 and settings.get("stop") == "mse"
                and "mse_limit" in params):
            factor = (float(target_range) / PAPER_TARGET_RANGE) ** 2
            for key in ("threshold_step", "mse_limit"):
                if key not in raw and key not in e.fixed:
                    settings[key] = float(params[key]) * factor
        spec = cls(name, settings)
        try:
            spec.build()
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        return spec

    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., <every setting>: value}``, plain YAML/JSON types (what is recorded)."""
        out: dict[str, Any] = {"name": self.name}
        for k, v in self.settings.items():
            out[k] = list(v) if isinstance(v, tuple) else v
        return out

    def build(self) -> AttackLike:
        """A fresh attack object with these settings (its ``spec`` attribute is this spec, so
        whoever receives the object can record the description, e.g. the trainer)."""
        e = entry(self.name)
        attack = e.cls(**{k: v for k, v in self.settings.items() if k not in e.recorded})
        attack.spec = self  # type: ignore[attr-defined]
        return attack

    def replace(self, **changes: Any) -> AttackSpec:
        """The same attack with some settings changed (validated)."""
        return AttackSpec.from_dict({**self.to_dict(), **changes})

    @property
    def task(self) -> str:
        """``regression`` or ``classification``: what kind of model the attack attacks."""
        return entry(self.name).task

    @property
    def model_task(self) -> str:
        """The same as :attr:`task` (the word a model type uses)."""
        return self.task

    @property
    def eps(self) -> float:
        """The enforced budget (NaN for an attack whose ε clip never takes effect)."""
        if self.settings.get("clip") == "reference_noop":
            return math.nan
        return float(self.settings.get("eps", math.nan))


def setting_id(spec: AttackSpec, domain: str) -> str:
    """Folder name of one attack setting, e.g. ``bim-spectrogram-eps0.001`` or
    ``reference-spectrogram`` (no ε for an unbounded attack)."""
    eps = spec.eps
    base = f"{spec.name}-{domain}"
    return base if math.isnan(eps) else f"{base}-eps{eps:g}"


def setting_label(setting: tuple[str, str, float | None]) -> str:
    """Human label of one attack setting ``(attack, domain, eps)``, the one every page, table
    and figure shows: ``bim eps=0.001 (spectrogram)``; ``reference, no bound (spectrogram)``
    for an attack without an effective bound (ε NaN or None)."""
    attack, domain, eps = setting
    if eps is None or math.isnan(float(eps)):
        return f"{attack}, no bound ({domain})"
    return f"{attack} eps={float(eps):g} ({domain})"


def _register_builtins() -> None:
    from robustmer.attacks import reference
    from robustmer.attacks.bim import BIM, PGD
    from robustmer.attacks.cw import CWAudio
    from robustmer.attacks.targeted import TargetedPGD, UntargetedPGD

    register("bim", BIM, doc="untargeted regression BIM (sign steps, ε projection, stepped "
                             "correlation stop)")
    register("pgd", PGD, defaults={"random_start": True},
             doc="BIM with a seeded random start in the ε-ball")
    register("targeted_pgd", TargetedPGD, task="classification",
             doc="targeted PGD on a classifier (descend CE to the target class)")
    register("untargeted_pgd", UntargetedPGD, task="classification",
             doc="untargeted BIM/PGD on a classifier (ascend CE of the label until the decision "
                 "changes)")
    register("cw", CWAudio, task="classification",
             doc="C&W-style audio attack on a classifier (distortion + α·loss)")
    register("reference", BIM, fixed=reference.PRESET,
             defaults={"eps": DEFAULT_EPS, "eta": DEFAULT_ETA, "max_iters": 1000},
             doc="the reference study's attack: Adam on the sign, the no-op ε clip and its "
                 "stopping/logging rules (docs/attacks.md)")


_register_builtins()
