"""APGD (Croce & Hein, 2020, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks"), adapted to the regression loss: ascent on the per-sample MSE
(as :class:`~robustmer.attacks.bim.BIM`) with APGD's step-size schedule, momentum and restarts
from the best point, through the one attack loop (``Attack.step_rule``).

Per sample, with ``f`` the per-sample MSE and ``P`` the projection onto the ε-ball (and box/mask):

- ``η₀ = 2ε``; first step ``δ₁ = P(δ₀ + η·dir(∇f(δ₀)))``;
- then ``z = P(δₖ + η·dir(∇f(δₖ)))`` and ``δₖ₊₁ = P(δₖ + α(z − δₖ) + (1 − α)(δₖ − δₖ₋₁))``,
  momentum ``α = 0.75``;
- checkpoints ``wⱼ = ⌈pⱼ·N⌉`` with ``p₀ = 0, p₁ = 0.22, pⱼ₊₁ = pⱼ + max(pⱼ − pⱼ₋₁ − 0.03, 0.06)``;
  at a checkpoint η is halved and the iterate restarts from the best point found so far (with its
  gradient; momentum reset) when (1) fewer than ``ρ = 0.75`` of the steps since the last
  checkpoint increased ``f``, or (2) η was not halved at the last checkpoint and the best ``f``
  did not improve since.

``dir`` is ``sign`` (L∞) or ``g/‖g‖₂`` (L2). With ``stop="none"`` the returned ``δ`` is the best
point by MSE among all iterates (APGD's ``x_max``); with a threshold rule it is the loop's (the δ
recorded when the last threshold was passed). Written here because no maintained library offers
APGD for a regression loss behind our loop's stopping, masking and per-sample contract
(torchattacks / AutoAttack implement it for classifiers' CE/DLR losses only).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import torch
from torch import nn

from robustmer.attacks import norms
from robustmer.attacks.base import DEFAULT_EPS, AttackResult
from robustmer.attacks.bim import BIM
from robustmer.attacks.spec import register
from robustmer.errors import ConfigError

MOMENTUM = 0.75
RHO = 0.75


def checkpoints(n_iters: int) -> list[int]:
    """APGD's checkpoints ``wⱼ = ⌈pⱼ·N⌉`` (``j ≥ 1``), strictly inside ``(0, N)``, sorted."""
    p_prev, p = 0.0, 0.22
    out: list[int] = []
    while p < 1.0:
        w = math.ceil(round(p * n_iters, 9))  # 0.57·100 is 57.000000000000014 in floats
        if 0 < w < n_iters and (not out or w > out[-1]):
            out.append(w)
        p_prev, p = p, p + max(p - p_prev - 0.03, 0.06)
    return out


class APGD(BIM):
    """Regression APGD: :class:`BIM`'s objective and stop rules, APGD's step rule.

    ``eta`` is the initial step size (default ``2ε``; APGD halves it adaptively);
    ``momentum`` (α) and ``rho`` (ρ) are the paper's 0.75. Only ``update="sign"`` and
    ``clip="project"`` are meaningful (the schedule needs the ε-ball).
    """

    name = "apgd"

    def __init__(self, eps: float = DEFAULT_EPS, eta: float | None = None, max_iters: int = 1000,
                 norm: str = "linf", stop: str = "corr", *, momentum: float = MOMENTUM,
                 rho: float = RHO, **kwargs: Any) -> None:
        if kwargs.get("update", "sign") != "sign" or kwargs.get("clip", "project") != "project":
            raise ConfigError("APGD uses its own step rule inside the ε-ball: update must be "
                              "'sign' and clip 'project'")
        if eta is None:
            eta = 2.0 * float(eps) if float(eps) > 0 else 1.0
        super().__init__(eps, eta, max_iters, norm, stop, **kwargs)
        if not 0.0 < float(momentum) <= 1.0:
            raise ConfigError(f"momentum must lie in (0, 1], got {momentum!r}")
        if not 0.0 < float(rho) <= 1.0:
            raise ConfigError(f"rho must lie in (0, 1], got {rho!r}")
        self.momentum, self.rho = float(momentum), float(rho)
        self._state: dict[str, Any] | None = None

    def config(self) -> dict[str, Any]:
        """Settings incl. momentum and ρ."""
        return {**super().config(), "momentum": self.momentum, "rho": self.rho}

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 mask: torch.Tensor | None = None) -> AttackResult:
        """As :meth:`Attack.__call__`; with ``stop="none"`` returns the best point by MSE."""
        B = x.shape[0]
        dev = x.device
        w = checkpoints(self.max_iters)
        self._state = {
            "eta": torch.full((B,), self.eta, dtype=torch.float64, device=dev),
            "prev": torch.zeros_like(x), "f_prev": torch.full((B,), -math.inf, device=dev,
                                                              dtype=torch.float64),
            "f_max": torch.full((B,), -math.inf, dtype=torch.float64, device=dev),
            "x_max": torch.zeros_like(x), "g_max": torch.zeros_like(x),
            "n_up": torch.zeros(B, dtype=torch.int64, device=dev),
            "f_max_check": torch.full((B,), -math.inf, dtype=torch.float64, device=dev),
            "reduced_check": torch.zeros(B, dtype=torch.bool, device=dev),
            "window": {b: b - a for a, b in itertools.pairwise([0, *w])},
        }
        try:
            res = super().__call__(model, x, y, mask)
            if self.stop == "none":
                res = self._best_of(model, x, y, res)
            return res
        finally:
            self._state = None

    def _best_of(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 res: AttackResult) -> AttackResult:
        """Swap in APGD's best iterate where its MSE beats the last one's."""
        st = self._state
        assert st is not None
        better = (st["f_max"].cpu() > res.score.double()).to(x.device)
        if not bool(better.any()):
            return res
        delta = torch.where(better.reshape((-1,) + (1,) * (x.ndim - 1)), st["x_max"],
                            res.delta.to(x.device))
        score = torch.where(better.cpu(), st["f_max"].cpu(), res.score.double())
        # logged_delta: the prediction is reported at the returned δ
        return dataclasses.replace(res, x_adv=(x + delta).detach(), delta=delta.detach(),
                                   score=score, logged_delta=delta.detach())

    def step_rule(self, d_new: torch.Tensor, d: torch.Tensor, grad: torch.Tensor,
                  obj: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None,
                  rows: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """APGD's step for ``rows`` (see the module docstring); ``obj`` is ``f`` at ``d``."""
        st = self._state
        if st is None:  # called outside __call__ (should not happen)
            raise RuntimeError("APGD.step_rule called outside an attack call")
        f = obj.detach().double()
        d = d.clone()
        grad = grad.clone()
        shape = (-1,) + (1,) * (d.ndim - 1)
        first = t == 0
        # f(δₖ) > f(δₖ₋₁): a successful step (counted in the window since the last checkpoint)
        st["n_up"][rows] += ((f > st["f_prev"][rows]) & ~first).long()
        # best point so far (with its gradient, for a restart)
        better = f > st["f_max"][rows]
        if bool(better.any()):
            b = rows[better]
            st["f_max"][b] = f[better]
            st["x_max"][b] = d[better]
            st["g_max"][b] = grad[better]
        # checkpoints: halve η and restart from the best point
        restart = torch.zeros_like(first)
        window = st["window"]
        for k in torch.unique(t[~first]).tolist():
            if k not in window:
                continue
            at = t == k
            r = rows[at]
            cond1 = st["n_up"][r].double() < self.rho * window[k]
            cond2 = ~st["reduced_check"][r] & (st["f_max_check"][r] >= st["f_max"][r])
            red = cond1 | cond2
            st["eta"][r[red]] /= 2.0
            st["reduced_check"][r] = red
            st["f_max_check"][r] = st["f_max"][r]
            st["n_up"][r] = 0
            restart[at] = red
        if bool(restart.any()):
            rr = rows[restart]
            d[restart] = st["x_max"][rr]
            grad[restart] = st["g_max"][rr]
            f = torch.where(restart, st["f_max"][rows], f)
        eta = st["eta"][rows].to(d.dtype).reshape(shape)
        z = self.project(d + eta * norms.direction(grad, self.norm), x, mask)
        prev = torch.where((first | restart).reshape(shape), d, st["prev"][rows])
        a = torch.where(first, 1.0, self.momentum).to(d.dtype).reshape(shape)
        step = self.project(d + a * (z - d) + (1 - a) * (d - prev), x, mask)
        st["prev"][rows] = d
        st["f_prev"][rows] = f
        return step


register("apgd", APGD, doc="APGD on the per-sample MSE (step-size schedule with checkpoints, "
                            "momentum 0.75, restarts from the best point)")
