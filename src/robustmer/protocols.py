"""The contracts between stages: what one stage hands another, as types every stage may import
(this module imports no stage).

- :class:`AttackResult`: what every attack returns (tensors, batch first).
- :class:`AttackLike`: what an attack is to the code that calls it: adversarial training
  (``robustmer.train``, which must not import ``robustmer.attacks``), the attack runner, the
  checks and the explainer evaluation. The gradient attacks of the one loop
  (``robustmer.attacks.base.Attack``) and the gradient-free Square attack both are one; the
  attack registry (``robustmer.attacks.spec``) holds classes of this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@dataclass
class AttackResult:
    """What an attack returns (tensors, batch first).

    ``delta`` is the returned perturbation: the ``δ`` recorded when the last threshold was passed
    (the best one), or the last ``δ`` if no threshold was passed; ``x_adv = x + delta``.
    ``iterations`` counts the update steps each sample took; ``converged`` says the final
    threshold (or the target class) was reached; ``final_threshold`` is the threshold the sample
    was working towards when it stopped (the final one if converged; NaN for class targets);
    ``last_passed`` the last threshold passed (NaN if none); ``score`` the stop metric at the
    returned ``δ`` (per-sample r, MSE, or 1/0 for target reached); ``last_delta`` the ``δ`` after
    the last step.
    """

    x_adv: torch.Tensor
    delta: torch.Tensor
    iterations: torch.Tensor
    converged: torch.Tensor
    final_threshold: torch.Tensor
    last_passed: torch.Tensor
    score: torch.Tensor
    last_delta: torch.Tensor
    logged_delta: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> AttackResult:
        """A copy with every tensor on ``device``."""
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        for k, v in kw.items():
            if isinstance(v, torch.Tensor):
                kw[k] = v.to(device)
        return AttackResult(**kw)


@runtime_checkable
class AttackLike(Protocol):
    """An attack: ``attack(model, x, y, mask=None) -> AttackResult``, deterministic for the same
    inputs and settings, with its registry ``name``, its budget ``eps``, the value range
    ``box`` of ``x + δ`` (None: unbounded; the runner sets the audio box in the waveform
    domain) and ``config()``, its JSON-able settings (recorded beside results)."""

    name: str
    eps: float
    box: tuple[float, float] | None

    def config(self) -> dict[str, Any]:
        """JSON-able settings."""
        ...

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 mask: torch.Tensor | None = None) -> AttackResult:
        """Attack ``model`` at inputs ``x`` (targets ``y``; ``mask``: perturbable positions)."""
        ...
