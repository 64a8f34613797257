"""C&W-style audio attack (Carlini & Wagner, 2018, simplified as in the reference study):
minimise ``‖δ‖₂² + α·L(f(x+δ), t)`` with sign steps of size ``η`` and an L∞ clip ``ε``
(defaults α=15, ε=0.1, η=0.0005, 1000 iterations, audio box [-1, 1]); stop when the target
class is predicted. ``L`` is the cross-entropy, or C&W's margin
``max(max_{i≠t} z_i − z_t, −κ)`` with ``loss="margin"``. With ``confidence`` > 0 it stops only
when the target's softmax probability reaches it (past the boundary by a margin)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch.nn import functional as F

from robustmer.attacks.base import Attack, StopRule, check_positive
from robustmer.attacks.reference import GENERIC
from robustmer.attacks.targeted import TargetReached, check_confidence, check_targets
from robustmer.errors import ConfigError

LOSSES: tuple[str, ...] = ("ce", "margin")


class CWAudio(Attack):
    """Targeted, distortion-penalised attack sharing the one loop (L∞ sign steps by default)."""

    name = "cw"
    choices: ClassVar[Mapping[str, tuple[str, ...]]] = {"loss": LOSSES}
    recorded = GENERIC  # the switches its folders recorded while they lived in the loop

    def __init__(self, alpha: float = 15.0, eps: float = 0.1, eta: float = 0.0005,
                 max_iters: int = 1000, norm: str = "linf", *, loss: str = "ce",
                 kappa: float = 0.0, box: tuple[float, float] | None = (-1.0, 1.0),
                 confidence: float = 0.0, **kwargs: Any) -> None:
        super().__init__(eps=eps, eta=eta, max_iters=max_iters, norm=norm, box=box, **kwargs)
        self.alpha = check_positive("alpha", alpha, allow_zero=True)
        if loss not in LOSSES:
            raise ConfigError(f"loss must be 'ce' or 'margin', got {loss!r}")
        self.loss = loss
        self.kappa = check_positive("kappa", kappa, allow_zero=True)
        self.confidence = check_confidence(confidence)

    def objective(self, out: torch.Tensor, y: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """``-(‖δ‖₂² + α·L)`` per sample."""
        check_targets(out, y)
        y = y.long()
        if self.loss == "ce":
            L = F.cross_entropy(out, y, reduction="none")
        else:
            z_t = out.gather(1, y[:, None]).squeeze(1)
            others = out.masked_fill(F.one_hot(y, out.shape[1]).bool(), float("-inf"))
            L = torch.clamp(others.amax(dim=1) - z_t, min=-self.kappa)
        dist = (delta ** 2).reshape(delta.shape[0], -1).sum(dim=1)
        return -(dist + self.alpha * L)

    def make_stop(self) -> StopRule:
        """Stop when the target is predicted (with ``confidence`` > 0: with at least that
        softmax probability)."""
        return TargetReached(self.confidence)

    def config(self) -> dict[str, Any]:
        """Settings incl. α and the loss."""
        return {**super().config(), "alpha": self.alpha, "loss": self.loss, "kappa": self.kappa,
                "confidence": self.confidence}
