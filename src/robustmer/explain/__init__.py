"""Explainers for any ``torch.nn.Module`` on 2-D (time x frequency) input (docs/explain.md).

One call for every method: ``explain(model, x, target, method, segments=None, **params) ->
Explanation``. The gradient family (Saliency, Guided Backprop, Integrated Gradients, each
optionally SmoothGrad / SmoothGrad² / VarGrad) and LIME come from captum; segment maps and their
aggregation, and A2M2E's concept explanation, are here; a waveform model is explained through
the views of ``explain/audio.py`` (its STFT magnitude, or its samples). Never imports train/,
data/, study/ or the CLI.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robustmer.explain import registry
from robustmer.explain.audio import (
    VIEWS,
    InputView,
    STFTSettings,
    STFTView,
    input_segments,
    stft_input,
)
from robustmer.explain.base import Explainer, Explanation
from robustmer.explain.concepts import concept_table
from robustmer.explain.gradient import BASES, NOISES, GradientExplainer
from robustmer.explain.lime import FILLS, LimeExplainer
from robustmer.explain.segments import (
    AGGREGATIONS,
    aggregate,
    grid_segments,
    log_band_segments,
    parse_grid,
)

ALIASES: dict[str, str] = {noise: f"saliency+{noise}" for noise in NOISES}
"""``smoothgrad`` = ``saliency+smoothgrad`` etc. (the usual meaning of the bare names)."""

METHODS: tuple[str, ...] = tuple(registry.names())
"""The built-in method names (``robustmer.explain.registry.names()`` also lists those
registered later)."""


def make_explainer(method: str, **params: Any) -> Explainer:
    """The explainer for ``method`` (a registered name, case-insensitive: see
    :mod:`robustmer.explain.registry`) with ``params``.

    Gradient methods take ``aggregation``, ``batch_size``, ``n_steps`` (ig), and with noise
    ``nt_samples``, ``sigma``, ``seed``; LIME takes ``n_samples``, ``fill``, ``kernel_width``,
    ``alpha``, ``p_on``, ``batch_size``, ``seed``, ``grid``. A parameter the method does not use
    is an error (so a typo is not silently ignored).
    """
    return registry.make(method, params)


def explain(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor, method: str,
            segments: torch.Tensor | None = None, **params: Any) -> Explanation:
    """Explain output ``target`` (int or ``(B,)``) of ``model`` on the batch ``x`` ``(B, ..., T,
    F)`` with ``method``; with a segment map ``(T, F)`` / ``(B, T, F)``, also score segments.

    Examples:
        A model that reads only the top-left quarter of its input: saliency puts all its mass
        there, and the segment map's first segment (of 2 x 2) is the one that matters.

        >>> import torch
        >>> from torch import nn
        >>> from robustmer.explain import explain, grid_segments
        >>> class TopLeft(nn.Module):
        ...     def forward(self, x: torch.Tensor) -> torch.Tensor:
        ...         return x[:, 0, :4, :4].sum(dim=(1, 2))[:, None] * torch.ones(1, 2)
        >>> x = torch.randn(3, 1, 8, 8)
        >>> seg = grid_segments((8, 8), n_freq=2, n_time=2)
        >>> ex = explain(TopLeft(), x, target=1, method="saliency", segments=seg)
        >>> tuple(ex.attribution.shape), tuple(ex.segment_scores.shape)
        ((3, 1, 8, 8), (3, 4))
        >>> a = ex.attribution[:, 0]
        >>> bool((a[:, :4, :4] == 1).all()), float(a[:, 4:].abs().sum() + a[:, :, 4:].abs().sum())
        (True, 0.0)
        >>> ex.top_k(1)[:, 0].tolist() == [int(seg[0, 0])] * 3
        True
    """
    return make_explainer(method, **params)(model, x, target, segments)


__all__ = [
    "AGGREGATIONS", "ALIASES", "BASES", "FILLS", "METHODS", "NOISES", "VIEWS", "Explainer",
    "Explanation", "GradientExplainer", "InputView", "LimeExplainer", "STFTSettings", "STFTView",
    "aggregate", "concept_table", "explain", "grid_segments", "input_segments",
    "log_band_segments", "make_explainer", "parse_grid", "registry", "stft_input",
]
