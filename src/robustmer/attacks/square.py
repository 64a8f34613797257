"""Square Attack (Andriushchenko et al., 2020), L∞, adapted to regression: a score-based random
search that never reads a gradient, maximising the per-sample MSE between ``f(x+δ)`` and ``y``.

Why its own loop: the one loop (``attacks/base.py``) takes ``∇δ`` every step; a score-based
attack proposes a random change, queries the model (under ``torch.no_grad``) and keeps it only if
the MSE rose. It shares the pieces that matter for comparability: the projection
(``norms.project``: ε-ball ∩ box ∩ mask), the stop rules of :mod:`robustmer.attacks.bim` and the
:class:`~robustmer.attacks.base.AttackResult` contract.

Per sample (seeded, reproducible per (seed, batch)):

1. ``δ₀``: vertical stripes, ``±ε`` per (channel, column), projected (query 1).
2. Query ``i``: a window covering a fraction ``p(i)`` of the last two axes (the time x frequency
   plane of a spectrogram; a segment of a waveform) at a uniform random position gets a new
   ``±ε`` per channel; projected; accepted iff the MSE rose.
3. ``p(i)`` is the paper's schedule: ``p_init`` halved at 10, 50, 200, 500, 1000, 2000, 4000,
   6000 and 8000 of 10 000 queries (rescaled to ``max_iters``).

Written by hand because the maintained implementations (torchattacks, AutoAttack) attack
classifiers' margin losses on images and know neither a regression loss, a mask nor our stop rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from robustmer.attacks import norms
from robustmer.attacks.base import (
    DEFAULT_EPS,
    AttackResult,
    StopRule,
    Subsettable,
    check_box,
    check_inputs,
    check_positive,
    eval_mode,
)
from robustmer.attacks.bim import STOPS, NoStop, ThresholdStop, per_sample_mse
from robustmer.attacks.spec import register
from robustmer.errors import ConfigError

_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_schedule(i: int, max_iters: int, p_init: float) -> float:
    """Fraction of the plane the ``i``-th proposal changes (the paper's piecewise halving)."""
    it = int(i / max(max_iters, 1) * 10000)
    halvings = sum(it > s for s in _SCHEDULE)
    return p_init / float(2 ** halvings)


def _as4d(t: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` view: ``(B, S)`` -> ``(B, 1, 1, S)``, ``(B, H, W)`` -> ``(B, 1, H, W)``,
    more than 4 dims: the middle ones are merged into channels."""
    B = t.shape[0]
    if t.ndim == 2:
        return t.reshape(B, 1, 1, t.shape[1])
    if t.ndim == 3:
        return t.reshape(B, 1, *t.shape[1:])
    return t.reshape(B, -1, *t.shape[-2:])


class Square:
    """Gradient-free L∞ Square Attack on the per-sample MSE; ``attack(model, x, y, mask=None)``.

    ``max_iters`` is the query budget: model evaluations per sample after the clean one
    (``iterations``; named as the other attacks' so the study's ``iters`` sets it);
    ``stop`` is BIM's (``"none"`` runs every query; ``"corr"``/``"mse"`` stop a sample at the
    final threshold). The returned ``δ`` is always the best one found (the search only accepts
    improvements).
    """

    name = "square"
    choices: ClassVar[Mapping[str, tuple[str, ...]]] = {"stop": STOPS}

    def __init__(self, eps: float = DEFAULT_EPS, max_iters: int = 1000, p_init: float = 0.1,
                 stop: str = "none", *, threshold_step: float = 0.1, mse_limit: float = 1.0,
                 box: tuple[float, float] | None = None, seed: int = 0) -> None:
        self.eps = check_positive("eps", eps, allow_zero=True)
        if int(max_iters) != max_iters or max_iters < 0:
            raise ConfigError(f"max_iters must be an integer >= 0, got {max_iters!r}")
        self.max_iters = int(max_iters)
        self.p_init = check_positive("p_init", p_init)
        if self.p_init > 1:
            raise ConfigError(f"p_init must lie in (0, 1], got {p_init!r}")
        if stop not in STOPS:
            raise ConfigError(f"stop must be one of {list(STOPS)}, got {stop!r}")
        self.stop = stop
        self.threshold_step = check_positive("threshold_step", threshold_step)
        self.mse_limit = check_positive("mse_limit", mse_limit)
        self.box = check_box(box)
        self.norm = "linf"
        self.seed = int(seed)

    def config(self) -> dict[str, Any]:
        """JSON-able settings."""
        return {"attack": self.name, "eps": self.eps, "max_iters": self.max_iters,
                "p_init": self.p_init, "norm": self.norm, "stop": self.stop,
                "threshold_step": self.threshold_step, "mse_limit": self.mse_limit,
                "box": None if self.box is None else list(self.box), "seed": self.seed}

    def make_stop(self) -> StopRule:
        """The configured stop rule (as BIM's)."""
        if self.stop == "none":
            return NoStop()
        return ThresholdStop(self.stop, self.threshold_step, self.mse_limit)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 mask: torch.Tensor | None = None) -> AttackResult:
        """Attack ``model`` at ``x`` (targets ``y``) by random search; never reads gradients."""
        if x.ndim < 2:
            raise ConfigError(f"x must be batched (B, ...), got {tuple(x.shape)}")
        check_inputs(x, y, mask, self.box)
        with eval_mode(model), torch.no_grad():
            return self._run(model, x.detach(), y.detach(),
                             None if mask is None else mask.to(x.dtype).detach())

    def _project(self, delta: torch.Tensor, x: torch.Tensor,
                 mask: torch.Tensor | None) -> torch.Tensor:
        return norms.project(delta, x, self.eps, "linf", self.box, mask)

    def _run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             mask: torch.Tensor | None) -> AttackResult:
        B, dev = x.shape[0], x.device
        gen = torch.Generator().manual_seed(self.seed)
        x4 = _as4d(x)
        _, C, H, W = x4.shape
        stop = self.make_stop()
        done, score = stop.start(model(x), y)
        done = done.to(dev)
        score = score.to(dev, torch.float64)
        converged = done.clone()
        iters = torch.zeros(B, dtype=torch.int64, device=dev)
        delta = torch.zeros_like(x)
        loss = torch.full((B,), -math.inf, dtype=torch.float64, device=dev)
        active = ~done
        for i in range(self.max_iters):
            if not bool(active.any()):
                break
            rows = active.nonzero().squeeze(1)
            if i == 0:
                signs = torch.randint(0, 2, (B, C, 1, W), generator=gen).to(dev, x.dtype)
                prop4 = (2 * signs - 1).expand(B, C, H, W)[rows] * self.eps
            else:
                p = p_schedule(i, self.max_iters, self.p_init)
                sh = min(H, max(1, round(math.sqrt(p) * H)))
                sw = min(W, max(1, round(math.sqrt(p) * W)))
                h0 = torch.randint(0, H - sh + 1, (B,), generator=gen)[rows.cpu()].to(dev)
                w0 = torch.randint(0, W - sw + 1, (B,), generator=gen)[rows.cpu()].to(dev)
                s = torch.randint(0, 2, (B, C, 1, 1), generator=gen)[rows.cpu()].to(dev, x.dtype)
                ah = torch.arange(H, device=dev)[None, :]
                aw = torch.arange(W, device=dev)[None, :]
                hm = (ah >= h0[:, None]) & (ah < (h0 + sh)[:, None])
                wm = (aw >= w0[:, None]) & (aw < (w0 + sw)[:, None])
                win = hm[:, None, :, None] & wm[:, None, None, :]
                prop4 = torch.where(win, (2 * s - 1) * self.eps, _as4d(delta[rows]))
            x_r = x[rows]
            m_r = None if mask is None else mask[rows]
            prop = self._project(prop4.reshape(x_r.shape), x_r, m_r)
            sub = model.subset(rows) if isinstance(model, Subsettable) else model
            out = sub(x_r + prop)
            new_loss = per_sample_mse(out.double(), y[rows].double())
            acc = new_loss > loss[rows]
            iters[rows] += 1
            if bool(acc.any()):
                a_rows = rows[acc]
                delta[a_rows] = prop[acc]
                loss[a_rows] = new_loss[acc]
                _, fin, sc = stop.update(out[acc], y[a_rows], a_rows)
                score[a_rows] = sc.to(dev, torch.float64)
                converged[a_rows[fin.to(dev)]] = True
                active[a_rows[fin.to(dev)]] = False
        return AttackResult(
            x_adv=(x + delta).detach(), delta=delta.detach(), iterations=iters.cpu(),
            converged=converged.cpu(), final_threshold=stop.final_threshold().cpu(),
            last_passed=stop.last_passed().cpu(), score=score.cpu(), last_delta=delta.detach(),
            logged_delta=delta.detach(), extra={"queries": iters.cpu()})


register("square", Square, doc="gradient-free Square Attack (L∞ random search on the per-sample "
                                "MSE; iterations = queries)")
