"""The explainer interface: one :class:`Explanation` result and the :class:`Explainer` protocol.

Input convention (docs/explain.md): ``x`` is ``(B, ..., T, F)`` (the models' ``(B, 1, T, F)``
standardised excerpt); ``target`` an int (same for every clip) or a ``(B,)`` tensor of output
indices; a segment map an integer ``(T, F)`` (shared) or ``(B, T, F)`` (per clip) tensor with
ids ``0..S-1``. Explainers put the model in eval mode and restore its mode afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from robustmer.attacks.base import Subsettable
from robustmer.errors import ConfigError


@dataclass
class Explanation:
    """What every explainer returns (tensors batch first, on the CPU).

    ``attribution`` has the shape of the input ``x`` (LIME: each segment's weight painted onto
    its pixels); ``segment_scores`` ``(B, S)`` one score per segment (``None`` when no
    segmentation was given); ``extra`` holds method-specific results (LIME: ``"r2"``) and the
    settings.
    """

    method: str
    target: torch.Tensor
    attribution: torch.Tensor
    segment_scores: torch.Tensor | None
    extra: dict[str, Any] = field(default_factory=dict)

    def top_k(self, k: int) -> torch.Tensor:
        """``(B, k)`` int64 segment ids, highest score first; ties go to the lower id, NaN ranks
        last (with -inf)."""
        if self.segment_scores is None:
            raise ConfigError(f"{self.method}: no segment scores (explain with a segment map)")
        n_seg = self.segment_scores.shape[1]
        if not 1 <= int(k) <= n_seg:
            raise ConfigError(f"top_k: k must be in 1..{n_seg}, found {k}")
        scores = torch.nan_to_num(self.segment_scores.double(), nan=-torch.inf)
        # a stable descending sort keeps equal scores in id order: lower id first
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices
        return order[:, : int(k)].to(torch.int64)


@runtime_checkable
class Explainer(Protocol):
    """``explainer(model, x, target, segments=None) -> Explanation``; ``config()`` its settings."""

    name: str

    def __call__(self, model: nn.Module, x: torch.Tensor, target: int | torch.Tensor,
                 segments: torch.Tensor | None = None) -> Explanation:
        """Explain ``model``'s output ``target`` on the batch ``x``."""
        ...

    def config(self) -> dict[str, Any]:
        """JSON-able settings."""
        ...


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode (dropout off, BatchNorm statistics frozen), then restore it."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def check_input(x: torch.Tensor) -> torch.Tensor:
    """``x`` must be a floating ``(B, ..., T, F)`` tensor with at least 3 dims and finite values."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ConfigError(f"x must be a floating-point tensor, got {type(x).__name__} "
                          f"{getattr(x, 'dtype', '')}")
    if x.ndim < 3 or x.shape[0] < 1:
        raise ConfigError(f"x must be (B, ..., T, F) with B >= 1, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ConfigError("x holds NaN or infinite values")
    return x


def check_target(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor) -> torch.Tensor:
    """``target`` as a ``(B,)`` int64 tensor on ``x``'s device, checked against the model's
    output width (one no-grad forward pass on the first clip; a ``Subsettable`` model holding
    per-clip state is narrowed to that clip)."""
    n = x.shape[0]
    if isinstance(target, torch.Tensor):
        if target.dtype.is_floating_point or target.dtype == torch.bool:
            raise ConfigError(f"target must hold integer output indices, got {target.dtype}")
        t = target.reshape(-1).to(torch.int64)
        if t.numel() == 1 and n > 1:
            t = t.expand(n)
        if t.numel() != n:
            raise ConfigError(f"target must be an int or a ({n},) tensor, got shape "
                              f"{tuple(target.shape)}")
    elif isinstance(target, int) and not isinstance(target, bool):
        t = torch.full((n,), int(target), dtype=torch.int64)
    else:
        raise ConfigError(f"target must be an int or a (B,) integer tensor, got {target!r}")
    # a model with per-clip state (a waveform model's STFT view) is narrowed to the first clip
    first = model.subset(torch.tensor([0])) if isinstance(model, Subsettable) else model
    with torch.no_grad(), eval_mode(first):
        out = first(x[:1])
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise ConfigError(f"the model must return a (B, n_outputs) tensor, got "
                          f"{getattr(out, 'shape', type(out).__name__)}")
    if bool(((t < 0) | (t >= out.shape[1])).any()):
        raise ConfigError(f"target indices must lie in [0, {out.shape[1]}), got "
                          f"{sorted(set(t.tolist()))}")
    return t.to(x.device).contiguous()
