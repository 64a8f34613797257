"""The ``checks:`` block of the study config (off when absent): which gradient-masking /
convergence checks to run after the attack, on how many test clips, with what settings.
Strict like the rest of the config: an unknown key or a bad value raises ``ConfigError`` naming
``checks.<key>``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from robustmer.errors import ConfigError
from robustmer.models.types import PAPER_COMPARISONS

CHECK_NAMES: tuple[str, ...] = ("convergence", "restarts", "unbounded", "transfer",
                                "gradient_free", "apgd")


@dataclass(frozen=True)
class CheckSpec:
    """Settings of the checks (see docs/attacks.md, "Checks against gradient masking").

    ``eps``: spectrogram-domain budgets (default: the study's, when it attacks spectrograms;
    required when it attacks waveforms); ``eta_ratio``: η = ratio·ε (default: the study's
    η/ε when it attacks spectrograms, else 2); ``attack_iters``: the "full" iteration count
    (default: the study's ``attack.iters``); ``clips``: the first N test clips.
    """

    enabled: bool = True
    run: list[str] = field(default_factory=lambda: list(CHECK_NAMES))
    clips: int = 8
    eps: list[float] | None = None
    eta_ratio: float | None = None
    attack_iters: int | None = None
    iters: list[int] = field(default_factory=lambda: [10, 100])
    restarts: int = 5
    unbounded_eps: float = 10.0
    unbounded_eta: float = 0.1
    unbounded_iters: int = 200
    mse_limit: float = 1.0
    min_fraction: float = 0.9
    rel_tol: float = 0.1
    abs_tol: float = 0.001
    queries: int = 1000
    p_init: float = 0.1
    transfer: list[list[str]] = field(default_factory=lambda: [
        list(PAPER_COMPARISONS[0]), list(reversed(PAPER_COMPARISONS[0]))])
    transfer_seeds: bool = True
    seed: int = 0
    batch_size: int = 8


def _num(where: str, val: Any, kind: type, positive: bool = True) -> Any:
    if isinstance(val, bool) or not isinstance(val, (int, float)):
        raise ConfigError(f"{where}: expected {kind.__name__}, found {val!r}")
    if kind is int and (not isinstance(val, int)):
        raise ConfigError(f"{where}: expected an integer, found {val!r}")
    v = kind(val)
    if not math.isfinite(v) or (positive and v <= 0):
        raise ConfigError(f"{where}: must be a {'positive ' if positive else ''}finite number, "
                          f"found {val!r}")
    return v


def parse_checks(raw: Any, source: str, attack: Any, model_types: list[str] | tuple[str, ...]
                 ) -> CheckSpec | None:
    """Validate the ``checks:`` mapping (``None`` -> no checks). ``attack`` is the study's
    parsed attack block (its domain decides whether ``eps`` is required)."""
    if raw is None:
        return None
    where = f"{source}: checks"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, found {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(CheckSpec)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    v: dict[str, Any] = {}
    for key, val in raw.items():
        w = f"{where}.{key}"
        if key in ("enabled", "transfer_seeds"):
            if not isinstance(val, bool):
                raise ConfigError(f"{w}: expected true or false, found {val!r}")
            v[key] = val
        elif key == "run":
            if not isinstance(val, list) or not all(isinstance(c, str) for c in val):
                raise ConfigError(f"{w}: expected a list of {list(CHECK_NAMES)}")
            bad = sorted(set(val) - set(CHECK_NAMES))
            if bad:
                raise ConfigError(f"{w}: unknown check(s) {bad}; choose from "
                                  f"{list(CHECK_NAMES)}")
            v[key] = list(dict.fromkeys(val))
        elif key in ("clips", "restarts", "unbounded_iters", "queries", "batch_size"):
            v[key] = _num(w, val, int)
        elif key == "seed":
            v[key] = _num(w, val, int, positive=False)
        elif key == "attack_iters":
            v[key] = None if val is None else _num(w, val, int)
        elif key in ("unbounded_eps", "unbounded_eta", "mse_limit", "min_fraction", "p_init",
                     "rel_tol", "abs_tol"):
            v[key] = _num(w, val, float)
        elif key == "eta_ratio":
            v[key] = None if val is None else _num(w, val, float)
        elif key == "eps":
            vals = val if isinstance(val, list) else [val]
            v[key] = None if val is None else [_num(w, e, float) for e in vals]
            if v[key] is not None and not v[key]:
                raise ConfigError(f"{w}: give at least one budget")
        elif key == "iters":
            if not isinstance(val, list):
                raise ConfigError(f"{w}: expected a list of iteration counts, found {val!r}")
            v[key] = [_num(w, k, int) for k in val]
        elif key == "transfer":
            ok = isinstance(val, list) and all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(t, str) for t in p)
                for p in val)
            if not ok:
                raise ConfigError(f"{w}: expected a list of [source, target] model-type pairs")
            bad = sorted({t for p in val for t in p} - set(model_types))
            if bad:
                raise ConfigError(f"{w}: model type(s) {bad} are not among the study's models "
                                  f"{list(model_types)}")
            v[key] = [list(p) for p in val]
    if "transfer" not in v:  # the default pairs, restricted to the study's models
        v["transfer"] = [p for p in CheckSpec().transfer
                         if p[0] in model_types and p[1] in model_types]
    spec = CheckSpec(**v)
    if spec.min_fraction > 1:
        raise ConfigError(f"{where}.min_fraction: must lie in (0, 1], found {spec.min_fraction}")
    if spec.p_init > 1:
        raise ConfigError(f"{where}.p_init: must lie in (0, 1], found {spec.p_init}")
    if spec.eps is None and getattr(attack, "domain", "spectrogram") != "spectrogram":
        raise ConfigError(f"{where}.eps: required when attack.domain is "
                          f"{attack.domain!r} (the checks attack the spectrogram excerpts; the "
                          f"study's waveform budget does not apply there)")
    return spec
