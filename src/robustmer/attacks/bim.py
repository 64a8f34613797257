"""Untargeted regression BIM / PGD: gradient ascent on the per-sample MSE, with the stepped
correlation (or MSE) stopping rule of the reference study.

Update (default): ``δ ← Proj_ε(δ + η·sign(∇δ MSE(f(x+δ), y)))`` (L∞) or
``δ ← Proj_ε(δ + η·g/‖g‖₂)`` (L2), ``δ₀ = 0`` (or a seeded random start: :class:`PGD`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from robustmer.attacks.base import DEFAULT_EPS, DEFAULT_ETA, StopRule, check_positive
from robustmer.attacks.reference import ReferenceRules
from robustmer.errors import ConfigError
from robustmer.evaluate.metrics import rowwise_pearson_r

STOPS: tuple[str, ...] = ("corr", "mse", "none")
THRESHOLDS: tuple[str, ...] = ("ours", "reference")
_GRID_TOL = 1e-9
"""A value within 1e-9 steps of a grid point counts as on it (0.3 / 0.1 is 2.9999999999999996
in floating point), so "strictly below 0.3" gives 0.2, not 0.3."""


def _grid(k: torch.Tensor, step: float) -> torch.Tensor:
    """``k·step`` rounded to 12 decimals, so tables show -0.6, not -0.6000000000000001."""
    return torch.round(k * step, decimals=12)


def per_sample_mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each sample's outputs, ``(B,)``."""
    return ((out - y) ** 2).reshape(out.shape[0], -1).mean(dim=1)


MIN_CORR_OUTPUTS = 3
"""The correlation rule judges a Pearson r over each clip's outputs: with 2 it is always ±1."""


def check_corr_outputs(out: torch.Tensor) -> None:
    """Refuse the correlation stopping rule for a model with fewer than 3 outputs per clip."""
    k = int(out.reshape(out.shape[0], -1).shape[1]) if out.ndim else 0
    if k < MIN_CORR_OUTPUTS:
        raise ConfigError(f"stop='corr': the correlation stopping rule judges the Pearson r over "
                          f"each clip's outputs, which needs at least {MIN_CORR_OUTPUTS}; this "
                          f"model has {k} (r over 2 values is always ±1); use stop='mse' (the "
                          f"default for such models) or stop='none'")


def per_sample_corr(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson r between each sample's K predictions and K targets, float64 ``(B,)`` on the
    device of ``out``; NaN where either is constant. One definition: this *is*
    ``evaluate.metrics.rowwise_pearson_r`` (the constant-row rule included)."""
    a = out.detach().double().reshape(out.shape[0], -1).cpu().numpy()
    b = y.detach().double().reshape(y.shape[0], -1).cpu().numpy()
    return torch.from_numpy(rowwise_pearson_r(b, a)).to(out.device)


class ThresholdStop(StopRule):
    """The stepped threshold rule on the per-sample correlation (falling) or MSE (rising).

    Thresholds are multiples ``k·step`` (float64). Start: for ``corr`` the largest multiple
    strictly below the clean r (a NaN r counts as 1.0), for ``mse`` the smallest multiple strictly
    above the clean MSE; both capped at the final threshold (``corr``: -1; ``mse``: ``limit``).
    A threshold is passed when ``r ≤ t`` (``mse ≥ t``); then the current ``δ`` is recorded as the
    best and the next threshold is the first multiple beyond the *current* value (several may be
    passed in one step). Done when the final threshold is passed.
    """

    def __init__(self, metric: str, step: float = 0.1, limit: float = 1.0) -> None:
        if metric not in ("corr", "mse"):
            raise ConfigError(f"stop must be 'corr' or 'mse', got {metric!r}")
        self.metric = metric
        self.step = check_positive("threshold_step", step)
        self.final = -1.0 if metric == "corr" else check_positive("mse_limit", limit)
        self.t: torch.Tensor | None = None
        self.passed_t: torch.Tensor | None = None

    def value(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The judged per-sample metric (float64)."""
        if self.metric == "corr":
            return per_sample_corr(out, y)
        return per_sample_mse(out.detach().double(), y.detach().double())

    def _next(self, v: torch.Tensor) -> torch.Tensor:
        if self.metric == "corr":
            v = torch.where(torch.isnan(v), torch.ones_like(v), v)
            k = torch.ceil(v / self.step - _GRID_TOL) - 1
            return torch.clamp(_grid(k, self.step), min=self.final)
        k = torch.floor(v / self.step + _GRID_TOL) + 1
        return torch.clamp(_grid(k, self.step), max=self.final)

    def _reached(self, v: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        ok = v <= t if self.metric == "corr" else v >= t
        return ok & ~torch.isnan(v)

    def start(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """First threshold from the clean value; samples already past the final one are done."""
        if self.metric == "corr":
            check_corr_outputs(out)
        v = self.value(out, y)
        self.t = self._next(v)
        done = self._reached(v, self.final)
        self.t = torch.where(done, torch.full_like(v, self.final), self.t)
        self.passed_t = torch.where(done, torch.full_like(v, self.final),
                                    torch.full_like(v, math.nan))
        return done, v

    def update(self, out: torch.Tensor, y: torch.Tensor,
               rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Passed / done for ``rows``; moves their thresholds."""
        assert self.t is not None and self.passed_t is not None
        rows = rows.to(self.t.device)
        v = self.value(out, y).to(self.t.device)
        t = self.t[rows]
        passed = self._reached(v, t)
        done = self._reached(v, self.final)
        if self.metric == "corr":
            # the lowest grid point passed
            grid = _grid(torch.ceil(v / self.step - _GRID_TOL), self.step)
            last = torch.minimum(t, grid)
        else:
            grid = _grid(torch.floor(v / self.step + _GRID_TOL), self.step)
            last = torch.maximum(t, grid)
        last = torch.where(done, torch.full_like(v, self.final), last)
        self.passed_t[rows] = torch.where(passed, last, self.passed_t[rows])
        self.t[rows] = torch.where(passed, self._next(v), t)
        self.t[rows] = torch.where(done, torch.full_like(v, self.final), self.t[rows])
        return passed, done, v

    def final_threshold(self) -> torch.Tensor:
        """The threshold each sample was working towards when it stopped."""
        assert self.t is not None
        return self.t.clone()

    def last_passed(self) -> torch.Tensor:
        """The last threshold each sample passed (NaN if none)."""
        assert self.passed_t is not None
        return self.passed_t.clone()


class ReferenceThresholdStop(StopRule):
    """The reference implementation's threshold walk, reproduced on purpose (the reference
    preset; docs/attacks.md lists each rule).

    - No threshold before the loop: the first judged ``δ`` (``δ₀``) sets it to
      ``ceil(10·r)/10`` (``corr``) or ``floor(10·mse)/10`` (``mse``), which that ``δ`` always
      passes, so ``δ₀ = 0`` is recorded (``records_start``).
    - One step per pass: a passed threshold moves by exactly one ``step`` (float64 arithmetic,
      ``t - 0.1`` as the reference computes it), even when the value is already past several.
    - A threshold that lands exactly on 0.0 counts as unset (the reference tests ``not t``) and
      is re-initialised from the next judged value, which passes it.
    - Convergence: a pass at a threshold that can no longer move (``t < -1 + step`` for ``corr``,
      ``t > limit - step`` for ``mse``, compared in float64 as the reference does).
    """

    records_start = True

    def __init__(self, metric: str, step: float = 0.1, limit: float = 1.0) -> None:
        if metric not in ("corr", "mse"):
            raise ConfigError(f"stop must be 'corr' or 'mse', got {metric!r}")
        self.metric = metric
        self.step = check_positive("threshold_step", step)
        self.scale = 1.0 / self.step
        self.limit = check_positive("mse_limit", limit)

    def value(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The judged per-sample metric (float64)."""
        if self.metric == "corr":
            return per_sample_corr(out, y)
        return per_sample_mse(out.detach().double(), y.detach().double())

    def start(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """No threshold yet and nothing done (the loop judges ``δ₀`` itself)."""
        if self.metric == "corr":
            check_corr_outputs(out)
        v = self.value(out, y)
        self.t = torch.full_like(v, math.nan)
        self.set = torch.zeros_like(v, dtype=torch.bool)
        self.passed_t = torch.full_like(v, math.nan)
        return torch.zeros_like(v, dtype=torch.bool), v

    def update(self, out: torch.Tensor, y: torch.Tensor,
               rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Initialise / re-initialise, judge, move one step or converge."""
        rows = rows.to(self.t.device)
        v = self.value(out, y).to(self.t.device)
        t = self.t[rows]
        unset = ~self.set[rows] | (t == 0.0)
        if self.metric == "corr":
            init = torch.ceil(v * self.scale) / self.scale
        else:
            init = torch.floor(v * self.scale) / self.scale
        t = torch.where(unset, init, t)
        self.set[rows] = True
        if self.metric == "corr":
            passed = (v <= t) & ~torch.isnan(v)
            movable = t >= -1.0 + self.step
            moved = t - self.step
        else:
            passed = (v >= t) & ~torch.isnan(v)
            movable = t <= self.limit - self.step
            moved = t + self.step
        self.passed_t[rows] = torch.where(passed, t, self.passed_t[rows])
        self.t[rows] = torch.where(passed & movable, moved, t)
        return passed, passed & ~movable, v

    def final_threshold(self) -> torch.Tensor:
        """The threshold each sample was working towards when it stopped (the reference's
        ``adv-target``; NaN if never set)."""
        return self.t.clone()

    def last_passed(self) -> torch.Tensor:
        """The last threshold each sample passed (NaN if none)."""
        return self.passed_t.clone()


class NoStop(StopRule):
    """Run every sample for ``max_iters`` steps (score: per-sample MSE)."""

    def start(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nothing is done at the start."""
        self.n = out.shape[0]
        return torch.zeros(self.n, dtype=torch.bool), per_sample_mse(out.double(), y.double())

    def update(self, out: torch.Tensor, y: torch.Tensor,
               rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Never passes, never done."""
        no = torch.zeros(len(rows), dtype=torch.bool, device=out.device)
        return no, no, per_sample_mse(out.double(), y.double())

    def final_threshold(self) -> torch.Tensor:
        """NaN: no thresholds."""
        return torch.full((self.n,), math.nan, dtype=torch.float64)

    def last_passed(self) -> torch.Tensor:
        """NaN: no thresholds."""
        return torch.full((self.n,), math.nan, dtype=torch.float64)


class BIM(ReferenceRules):
    """Untargeted regression BIM: maximise the per-sample MSE between ``f(x+δ)`` and ``y``.

    Defaults are the study's choice (ε=0.001, η=0.002, 1000 iterations, L∞, correlation rule down
    to -1). ``stop="mse"`` uses the rising MSE rule up to ``mse_limit``; ``stop="none"`` runs all
    ``max_iters`` steps and returns the last ``δ``. ``thresholds="reference"`` walks the
    thresholds as the reference implementation did (:class:`ReferenceThresholdStop`). It takes
    the reference switches (``update``, ``clip``, ``judge_last``, ``count_check_step``,
    ``log_prediction``: :mod:`robustmer.attacks.reference`), generic by default; the
    ``reference`` preset turns them on (:data:`robustmer.attacks.reference.PRESET`).
    """

    name = "bim"
    choices: ClassVar[Mapping[str, tuple[str, ...]]] = {"stop": STOPS, "thresholds": THRESHOLDS}

    def __init__(self, eps: float = DEFAULT_EPS, eta: float = DEFAULT_ETA, max_iters: int = 1000,
                 norm: str = "linf", stop: str = "corr", *, threshold_step: float = 0.1,
                 mse_limit: float = 1.0, thresholds: str = "ours",
                 box: tuple[float, float] | None = None, update: str = "sign",
                 clip: str = "project", random_start: bool = False, seed: int = 0,
                 judge_last: bool = True, count_check_step: bool = False,
                 log_prediction: str = "returned") -> None:
        super().__init__(eps=eps, eta=eta, max_iters=max_iters, norm=norm, box=box,
                         update=update, clip=clip, random_start=random_start, seed=seed,
                         judge_last=judge_last, count_check_step=count_check_step,
                         log_prediction=log_prediction)
        if stop not in STOPS:
            raise ConfigError(f"stop must be one of {list(STOPS)}, got {stop!r}")
        if thresholds not in THRESHOLDS:
            raise ConfigError(f"thresholds must be one of {list(THRESHOLDS)}, "
                              f"got {thresholds!r}")
        if thresholds == "reference" and stop == "none":
            raise ConfigError("thresholds='reference' needs stop='corr' or 'mse'")
        self.stop, self.thresholds = stop, thresholds
        self.threshold_step = check_positive("threshold_step", threshold_step)
        self.mse_limit = check_positive("mse_limit", mse_limit)

    def objective(self, out: torch.Tensor, y: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Per-sample MSE (ascended)."""
        return per_sample_mse(out, y.to(out.dtype))

    def make_stop(self) -> StopRule:
        """The configured stop rule."""
        if self.stop == "none":
            return NoStop()
        if self.thresholds == "reference":
            return ReferenceThresholdStop(self.stop, self.threshold_step, self.mse_limit)
        return ThresholdStop(self.stop, self.threshold_step, self.mse_limit)

    def config(self) -> dict[str, Any]:
        """Settings incl. the stop rule."""
        return {**super().config(), "stop": self.stop, "threshold_step": self.threshold_step,
                "mse_limit": self.mse_limit, "thresholds": self.thresholds}


class PGD(BIM):
    """:class:`BIM` with a seeded uniform random start inside the ε-ball (Madry et al.)."""

    name = "pgd"

    def __init__(self, eps: float = DEFAULT_EPS, eta: float = DEFAULT_ETA, max_iters: int = 1000,
                 norm: str = "linf", stop: str = "corr", **kwargs: Any) -> None:
        kwargs.setdefault("random_start", True)
        super().__init__(eps, eta, max_iters, norm, stop, **kwargs)
