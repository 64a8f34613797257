"""PGD for classifiers. Targeted: ``δ ← clip_ε(δ − η·sign(∇δ CE(f(x+δ), t)))`` until ``t`` is
predicted (``y`` holds the target class indices ``(B,)``). Untargeted:
``δ ← clip_ε(δ + η·sign(∇δ CE(f(x+δ), y)))`` until the decision leaves the class ``y`` (the
label, or the clean prediction when there is none)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F

from robustmer.attacks.base import DEFAULT_EPS, DEFAULT_ETA, Attack, StopRule
from robustmer.attacks.reference import GENERIC
from robustmer.errors import ConfigError


class TargetReached(StopRule):
    """Done (and ``δ`` recorded) as soon as ``argmax f(x+δ) == target``; no thresholds (NaN).

    ``confidence`` > 0 asks for more: the target must also have a softmax probability of at
    least ``confidence`` (C&W's high-confidence adversarial examples: the decision is moved
    past the boundary by a margin instead of onto it)."""

    def __init__(self, confidence: float = 0.0) -> None:
        self.confidence = float(confidence)

    def _hit(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        hit = out.argmax(dim=1) == y
        if self.confidence > 0:
            p = torch.softmax(out.detach().double(), dim=1).gather(1, y.long()[:, None])[:, 0]
            hit &= p >= self.confidence
        return hit

    def start(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples already classified as their target are done at ``δ₀``."""
        self.n = out.shape[0]
        hit = self._hit(out, y)
        return hit, hit.double()

    def update(self, out: torch.Tensor, y: torch.Tensor,
               rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Passed == done == target predicted (with the asked confidence)."""
        hit = self._hit(out, y)
        return hit, hit, hit.double()

    def final_threshold(self) -> torch.Tensor:
        """NaN: a class target has no threshold."""
        return torch.full((self.n,), math.nan, dtype=torch.float64)

    def last_passed(self) -> torch.Tensor:
        """NaN: a class target has no threshold."""
        return torch.full((self.n,), math.nan, dtype=torch.float64)


def check_targets(out: torch.Tensor, y: torch.Tensor) -> None:
    """Class targets: integer indices ``(B,)`` within the logits' classes."""
    if y.ndim != 1 or y.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"targets must be integer class indices (B,), got {y.dtype} "
                         f"{tuple(y.shape)}")
    if out.ndim != 2 or bool(((y < 0) | (y >= out.shape[1])).any()):
        raise ValueError(f"targets must lie in [0, {out.shape[-1]}) for logits "
                         f"{tuple(out.shape)}")


def check_confidence(confidence: float) -> float:
    """A stopping confidence: a softmax probability in ``[0, 1)`` (0: stop on the decision)."""
    c = float(confidence)
    if not 0.0 <= c < 1.0:
        raise ConfigError(f"confidence must lie in [0, 1) (0: stop on the decision), got "
                          f"{confidence!r}")
    return c


class ClassifierPGD(Attack):
    """The loop on a classifier's logits with the study's budget by default; ``y`` holds class
    indices. Its subclasses record the reference switches' generic values, as every folder of
    theirs did while the switches lived in the loop (``Attack.recorded``)."""

    recorded = GENERIC

    def __init__(self, eps: float = DEFAULT_EPS, eta: float = DEFAULT_ETA, max_iters: int = 1000,
                 norm: str = "linf", **kwargs: Any) -> None:
        super().__init__(eps=eps, eta=eta, max_iters=max_iters, norm=norm, **kwargs)


class TargetedPGD(ClassifierPGD):
    """Targeted attack on a classifier: descend the cross-entropy to the target class; stop
    when it is predicted (with ``confidence`` > 0: with at least that softmax probability)."""

    name = "targeted_pgd"

    def __init__(self, eps: float = DEFAULT_EPS, eta: float = DEFAULT_ETA, max_iters: int = 1000,
                 norm: str = "linf", confidence: float = 0.0, **kwargs: Any) -> None:
        super().__init__(eps=eps, eta=eta, max_iters=max_iters, norm=norm, **kwargs)
        self.confidence = check_confidence(confidence)

    def objective(self, out: torch.Tensor, y: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """``-CE(f(x+δ), t)`` per sample (so ascent descends the CE)."""
        check_targets(out, y)
        return -F.cross_entropy(out, y.long(), reduction="none")

    def make_stop(self) -> StopRule:
        """Stop when the target is predicted (with the asked confidence)."""
        return TargetReached(self.confidence)

    def config(self) -> dict[str, Any]:
        """Settings incl. the stopping confidence."""
        return {**super().config(), "confidence": self.confidence}


class DecisionChanged(TargetReached):
    """Done (and ``δ`` recorded) as soon as ``argmax f(x+δ) != y``; no thresholds (NaN)."""

    def start(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples already misclassified are done at ``δ₀``."""
        self.n = out.shape[0]
        miss = out.argmax(dim=1) != y
        return miss, miss.double()

    def update(self, out: torch.Tensor, y: torch.Tensor,
               rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Passed == done == the decision left ``y``."""
        miss = out.argmax(dim=1) != y
        return miss, miss, miss.double()


class UntargetedPGD(ClassifierPGD):
    """Untargeted attack on a classifier: ascend the cross-entropy of the class ``y``; BIM
    (``δ₀ = 0``) by default, PGD with ``random_start=True``."""

    name = "untargeted_pgd"

    def objective(self, out: torch.Tensor, y: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """``CE(f(x+δ), y)`` per sample."""
        check_targets(out, y)
        return F.cross_entropy(out, y.long(), reduction="none")

    def make_stop(self) -> StopRule:
        """Stop when the decision changes."""
        return DecisionChanged()
