"""One table of explanation methods: a registry name -> explainer class + settings.

``robustmer explain --method``, ``robustmer explainer-eval --methods``, :func:`make_explainer`
and :func:`robustmer.explain.explain` all go through it, so a new explainer is one class and one
call (docs/explain.md, "Add your own explainer")::

    register("inputxgrad", InputTimesGradient, doc="input times gradient")

``make("inputxgrad", batch_size=8)`` then checks the settings against the class's constructor
(an unknown one is a ``ConfigError`` that names the method and lists what it takes; a wrong type
where the default says int/float/str/bool is one too) and builds the explainer. A name may fix
some constructor arguments (``saliency+smoothgrad`` is ``GradientExplainer`` with
``base="saliency", noise="smoothgrad"``) and restrict the settings a caller may give (only
Integrated Gradients takes ``n_steps``). Names are lower case (looked up case-insensitively).

The built-in methods register themselves at the bottom of ``explain/gradient.py`` and
``explain/lime.py``, which ``robustmer.explain`` imports. The generic part (the constructor's
settings, the type check) is shared with the attack registry (``robustmer.registry``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from robustmer.errors import ConfigError
from robustmer.explain.base import Explainer
from robustmer.registry import check_registered_settings, check_type, class_parameters

NAME_ARGUMENT = "name"
"""The constructor argument that receives the registered name (where the class takes one), so
that the explanation and every table say the name the user chose."""


@dataclass(frozen=True)
class ExplainerEntry:
    """One registered method: the class, the constructor arguments the name fixes, defaults that
    differ from the class's, the settings a caller may give, defaults for a waveform model's
    views (``stft`` / ``input``), and one line of description."""

    name: str
    cls: type[Explainer]
    fixed: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    settings: tuple[str, ...] = ()
    view_defaults: dict[str, Any] = field(default_factory=dict)
    doc: str = ""

    def parameters(self) -> dict[str, Any]:
        """The settings a caller may give, with their defaults (the class's, then
        ``defaults``), in constructor order."""
        params = class_parameters(self.cls)
        return {k: self.defaults.get(k, params[k]) for k in params if k in self.settings}

    def check(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` checked against :meth:`parameters` (unknown names and wrong types are
        ``ConfigError`` naming the method); ints become floats where a float is expected."""
        allowed = self.parameters()
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ConfigError(f"method {self.name!r} does not take {unknown}; it takes "
                              f"{sorted(allowed)}")
        return {k: check_type(k, v, allowed[k], f"method {self.name!r}")
                for k, v in params.items()}

    def build(self, params: Mapping[str, Any] | None = None, *,
              view: str | None = None) -> Explainer:
        """A fresh explainer with ``params`` (checked). ``view``: a waveform model's view
        (``stft`` or ``input``), which adds :attr:`view_defaults` under ``params``."""
        given = dict(params or {})
        if view not in (None, "spectrogram"):
            given = {**self.view_defaults, **given}
        kwargs = {**self.fixed, **self.defaults, **self.check(given)}
        if NAME_ARGUMENT in class_parameters(self.cls):
            kwargs[NAME_ARGUMENT] = self.name
        return self.cls(**kwargs)


REGISTRY: dict[str, ExplainerEntry] = {}
"""Every registered method by name, in registration order."""


def register(name: str, cls: type[Explainer], *, fixed: Mapping[str, Any] | None = None,
             defaults: Mapping[str, Any] | None = None, settings: Sequence[str] | None = None,
             view_defaults: Mapping[str, Any] | None = None, doc: str = "") -> None:
    """Make ``cls`` reachable as ``name`` from :func:`make_explainer`, ``robustmer explain`` and
    ``robustmer explainer-eval`` (one call per method; registering a name again replaces it).

    ``fixed``: constructor arguments the name pins (a caller may not set them); ``defaults``:
    defaults that differ from the class's; ``settings``: the settings a caller may give (default:
    every keyword of the constructor that is not fixed and not ``name``); ``view_defaults``:
    defaults in a waveform model's views (LIME switches segments off to silence there); ``doc``:
    one line for the help. Every key must be a constructor setting (else ``ConfigError``)."""
    key = str(name).strip().lower()
    if not key or not key.replace("_", "").replace("+", "").isalnum():
        raise ConfigError(f"explainer name must be letters, digits, '_' and '+', got {name!r}")
    fixed, defaults = dict(fixed or {}), dict(defaults or {})
    view_defaults = dict(view_defaults or {})
    params = class_parameters(cls)
    if settings is None:
        settings = [k for k in params if k not in fixed and k != NAME_ARGUMENT]
    check_registered_settings(key, cls, [*fixed, *defaults, *settings, *view_defaults])
    pinned = sorted(set(settings) & (set(fixed) | {NAME_ARGUMENT}))
    if pinned:
        raise ConfigError(f"register({key!r}): {pinned} are fixed by the name, not settings")
    outside = sorted(set(view_defaults) - set(settings))
    if outside:
        raise ConfigError(f"register({key!r}): view_defaults {outside} are not settings of it")
    REGISTRY[key] = ExplainerEntry(key, cls, fixed, defaults, tuple(settings), view_defaults,
                                   doc)


def names() -> list[str]:
    """Every registered method name, in registration order."""
    return list(REGISTRY)


def get(method: str) -> ExplainerEntry:
    """The entry of ``method`` (case-insensitive); ``ConfigError`` listing the names otherwise."""
    key = str(method).strip().lower()
    if key not in REGISTRY:
        raise ConfigError(f"unknown explanation method {method!r}; choose from {names()}")
    return REGISTRY[key]


def make(method: str, params: Mapping[str, Any] | None = None, *,
         view: str | None = None) -> Explainer:
    """The explainer ``method`` with ``params`` (checked; see :meth:`ExplainerEntry.build`)."""
    return get(method).build(params, view=view)


def describe() -> str:
    """One line per method, ``name: doc`` (what the CLI's help and docs list)."""
    return "\n".join(f"{e.name}: {e.doc}" if e.doc else e.name for e in REGISTRY.values())
