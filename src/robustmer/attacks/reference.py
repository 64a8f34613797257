"""The reference study's reproduction, out of the generic loop: the switches as a mixin that sets
the loop's hooks (``attacks.base.Attack``) the way the reference implementation behaved, and the
settings of the ``reference`` preset (:data:`PRESET`), which turns them on.

The switches (docs/attacks.md, "The reference preset"): ``update="adam_sign"`` steps with Adam
on the sign of the gradient; ``clip="reference_noop"`` reproduces an ε-clip that never took
effect; ``judge_last=False`` never judges the ``δ`` after the last step;
``count_check_step=True`` reports one more iteration for a sample that converged (the
reference counts the check that found it converged); ``log_prediction="last_evaluated"``
reports the prediction at the last ``δ`` the loop evaluated instead of at the returned one.
Their defaults are the generic loop's behaviour. :class:`~robustmer.attacks.bim.BIM` (and so
PGD) takes them, so each can be switched on its own (ablations, tests); an attack written on
:class:`~robustmer.attacks.base.Attack` does not inherit them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from robustmer.attacks.base import Attack, in_loop_order
from robustmer.errors import ConfigError

UPDATES: tuple[str, ...] = ("sign", "adam_sign")
CLIPS: tuple[str, ...] = ("project", "reference_noop")
LOG_PREDICTIONS: tuple[str, ...] = ("returned", "last_evaluated")
GENERIC: dict[str, Any] = {"update": "sign", "clip": "project", "judge_last": True,
                           "count_check_step": False, "log_prediction": "returned"}
"""The switches' values that are the generic loop's behaviour."""
REFERENCE: dict[str, Any] = {"update": "adam_sign", "clip": "reference_noop", "judge_last": False,
                             "count_check_step": True, "log_prediction": "last_evaluated"}
"""The switches as the reference implementation behaved."""
PRESET: dict[str, Any] = {**REFERENCE, "norm": "linf", "stop": "corr", "random_start": False,
                          "thresholds": "reference", "threshold_step": 0.1, "box": None}
"""The settings the registry's ``reference`` entry fixes on :class:`~robustmer.attacks.bim.BIM`:
the switches on, the correlation stopping rule with the reference's threshold walk, no box
(the reference study's unbounded attack, regenerated step for step: docs/attacks.md,
tests/test_attack_reference.py)."""


class ReferenceRules(Attack):
    """The loop with the reference switches (see the module docstring), generic by default."""

    choices: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "update": UPDATES, "clip": CLIPS, "log_prediction": LOG_PREDICTIONS}

    def __init__(self, *, update: str = "sign", clip: str = "project", judge_last: bool = True,
                 count_check_step: bool = False, log_prediction: str = "returned",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if update not in UPDATES:
            raise ConfigError(f"update must be one of {list(UPDATES)}, got {update!r}")
        if clip not in CLIPS:
            raise ConfigError(f"clip must be one of {list(CLIPS)}, got {clip!r}")
        if log_prediction not in LOG_PREDICTIONS:
            raise ConfigError(f"log_prediction must be one of {list(LOG_PREDICTIONS)}, "
                              f"got {log_prediction!r}")
        self.update, self.clip = update, clip
        self.judge_last, self.count_check_step = bool(judge_last), bool(count_check_step)
        self.log_prediction = log_prediction

    def switches(self) -> dict[str, Any]:
        """The five switches' values."""
        return {"update": self.update, "clip": self.clip, "judge_last": self.judge_last,
                "count_check_step": self.count_check_step,
                "log_prediction": self.log_prediction}

    def config(self) -> dict[str, Any]:
        """The loop's settings with the switches where they have always been recorded."""
        return in_loop_order(super().config(), self.switches())

    def begin(self, x: torch.Tensor) -> dict[str, Any]:
        """Adam's moments per sample (``update="adam_sign"``)."""
        if self.update == "adam_sign":
            return {"m": torch.zeros_like(x), "v": torch.zeros_like(x)}
        return {}

    def propose(self, d: torch.Tensor, grad: torch.Tensor, rows: torch.Tensor,
                t: torch.Tensor, state: dict[str, Any]) -> torch.Tensor:
        """The sign step, or (``adam_sign``) one Adam step on the sign of the gradient."""
        if self.update == "sign":
            return super().propose(d, grad, rows, t, state)
        return self._adam_step(d, grad, rows, t, state["m"], state["v"])

    def project(self, delta: torch.Tensor, x: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        """The ε projection, or (``reference_noop``) only the mask and the box."""
        if self.clip == "reference_noop":
            # The reference wrote `delta.data.clamp(-eps, eps)`: the clamped copy was discarded,
            # so δ was never bounded. Reproduced on purpose; only the box (audio range) remains.
            if mask is not None:
                delta = delta * mask
            if self.box is not None:
                delta = torch.clamp(x + delta, *self.box) - x
            return delta
        return super().project(delta, x, mask)

    def judged(self, active: torch.Tensor, iters: torch.Tensor) -> torch.Tensor:
        """All running samples, or (``judge_last=False``) those with steps left: a sample that
        used all its steps stops unjudged."""
        return active if self.judge_last else active & (iters < self.max_iters)

    def finish(self, iters: torch.Tensor, converged: torch.Tensor, best: torch.Tensor,
               evaluated: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``count_check_step``: one more iteration per converged sample;
        ``log_prediction="last_evaluated"``: the last evaluated ``δ`` is the logged one."""
        if self.count_check_step:
            iters = iters + converged.to(iters.dtype)
        return iters, evaluated if self.log_prediction == "last_evaluated" else best

    def _adam_step(self, d: torch.Tensor, grad: torch.Tensor, rows: torch.Tensor,
                   t: torch.Tensor, m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """One Adam step (β=(0.9, 0.999), ε=1e-8, lr=η) ascending on ``sign(grad)``, with
        per-sample step counts ``t``; returns the new ``δ`` of ``rows``.

        Written out because torch.optim.Adam keeps one global step count and updates every row;
        here frozen samples keep their state and each sample its own ``t``, as in one-at-a-time
        runs. The arithmetic is torch.optim.Adam's own (single-tensor path,
        the one it takes on the CPU), op for op: ``lerp`` for the first moment,
        ``mul``/``addcmul`` for the second, bias corrections as Python floats, ``addcdiv`` for
        the step; so each step is bit-identical to ``torch.optim.Adam`` minimising ``-loss``
        (Adam is odd in its gradient, and IEEE rounding is symmetric in the sign).
        """
        b1, b2, eps = 0.9, 0.999, 1e-8
        g = torch.sign(grad)
        m_r = torch.lerp(m[rows], g, 1 - b1)
        v_r = v[rows].mul(b2).addcmul_(g, g, value=1 - b2)
        m[rows], v[rows] = m_r, v_r
        out = torch.empty_like(d)
        for step in torch.unique(t).tolist():
            sel = (t == step).nonzero().squeeze(1)
            bias_correction1 = 1 - b1 ** step
            bias_correction2 = 1 - b2 ** step
            step_size = self.eta / bias_correction1
            denom = (v_r[sel].sqrt() / bias_correction2 ** 0.5).add_(eps)
            out[sel] = d[sel].addcdiv(m_r[sel], denom, value=step_size)
        return out
