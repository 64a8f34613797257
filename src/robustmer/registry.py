"""What the attack and the explainer registries share: a registered name is a class plus
settings, and the settings are checked against the class's constructor.

``robustmer.attacks.spec`` (attacks) and ``robustmer.explain.registry`` (explainers) each keep
their own table of names and their own error messages; the generic part is here: which keyword
settings a constructor takes (:func:`class_parameters`), that a registration only names
settings that exist (:func:`check_registered_settings`), the allowed values of text settings
(:func:`setting_choices`) and a type check of one value against its default
(:func:`check_type`). Imports no stage, so that both stages can use it.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from robustmer.errors import ConfigError


def class_parameters(cls: type) -> dict[str, Any]:
    """Keyword settings of ``cls.__init__`` with their defaults (``None`` where there is none),
    following ``**kwargs`` up the class hierarchy (``PGD`` passes its extras to ``BIM``, ``BIM``
    to ``Attack``)."""
    out: dict[str, Any] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        more = False
        for p in list(inspect.signature(init).parameters.values())[1:]:
            if p.kind is p.VAR_KEYWORD:
                more = True
            elif p.kind is not p.VAR_POSITIONAL and p.name not in out:
                out[p.name] = None if p.default is p.empty else p.default
        if not more:
            break
    return out


def check_registered_settings(name: str, cls: type, keys: Iterable[str]) -> None:
    """``ConfigError`` unless every key (of a registration's fixed settings or defaults) is a
    setting of ``cls``'s constructor: a typo in a ``register`` call fails at import time."""
    params = class_parameters(cls)
    for key in keys:
        if key not in params:
            raise ConfigError(f"register({name!r}): {cls.__name__} has no setting {key!r}")


def setting_choices(cls: type) -> dict[str, tuple[str, ...]]:
    """``cls.choices`` merged up the class hierarchy (a subclass's entries win)."""
    out: dict[str, tuple[str, ...]] = {}
    for klass in reversed(cls.__mro__):
        out.update(klass.__dict__.get("choices", {}))
    return out


def check_type(key: str, value: Any, default: Any, where: str) -> Any:
    """Type-check one setting against its default's type: a bool, int, float or str default
    wants the same type (an int becomes a float where a float is expected; a bool is not a
    number); a ``None`` or other default accepts anything (the class checks it)."""
    if default is None:
        return value
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{where}.{key}: expected {kind.__name__}, found {value!r}")
    if kind in (bool, int, float, str) and not isinstance(value, kind):
        raise ConfigError(f"{where}.{key}: expected {kind.__name__}, found {value!r}")
    return value
