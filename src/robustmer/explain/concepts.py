"""Concept explanation of A2M2E / A2B2E: each concept's contribution to each emotion.

The emotion layer of a bottleneck model is linear in the concepts, so
``emotion_e = Σ_c bottleneck_c · W[e, c] + bias_e`` exactly; the terms ``bottleneck_c · W[e, c]``
(``model.concept_contributions``) are the model's own explanation, to set beside the post-hoc
attribution maps. This module only lays them out as a tidy table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import pandas as pd
import torch
from torch import nn

from robustmer.errors import ConfigError
from robustmer.explain.base import check_input, eval_mode

COLUMNS: tuple[str, ...] = ("clip_id", "emotion", "concept", "concept_value", "weight",
                            "contribution", "bias", "prediction")


def _names(n: int, given: Sequence[str] | None, prefix: str) -> list[str]:
    if given is not None:
        if len(given) != n:
            raise ConfigError(f"expected {n} {prefix} names, got {len(given)}")
        return [str(g) for g in given]
    return [f"{prefix}{i}" for i in range(n)]


@torch.no_grad()
def concept_table(model: nn.Module, x: torch.Tensor, clip_ids: Sequence[str] | None = None,
                  emotions: Sequence[str] | None = None,
                  concepts: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per clip x emotion x concept: ``concept_value`` (the bottleneck activation),
    ``weight`` (``W[e, c]``), ``contribution`` (their product), and per clip x emotion the
    ``bias`` and the model's ``prediction`` (= sum of contributions + bias).

    ``model`` must have ``concept_contributions(x)`` and ``contribution_bias`` (A2M2E, A2B2E);
    ``emotions`` / ``concepts`` name the outputs and concepts (the run's; indices otherwise).
    """
    if not hasattr(model, "concept_contributions"):
        raise ConfigError(f"concept explanation needs a model with a bottleneck (A2M2E, "
                          f"A2B2E), got a {type(model).__name__}")
    x = check_input(x)
    ids = [str(i) for i in (clip_ids if clip_ids is not None else range(x.shape[0]))]
    if len(ids) != x.shape[0]:
        raise ConfigError(f"{len(ids)} clip ids for a batch of {x.shape[0]} clips")
    with eval_mode(model):
        contrib = model.concept_contributions(x).double().cpu()  # type: ignore[operator]
        value = model.forward_all(x)["bottleneck"].double().cpu()  # type: ignore[operator]
        bias = cast(torch.Tensor, model.contribution_bias).detach().double().cpu()
    B, E, C = contrib.shape
    weight = cast(nn.Linear, model.head).weight.detach().double().cpu()
    pred = contrib.sum(-1) + bias
    e_names = _names(E, emotions, "output")
    c_names = _names(C, concepts, "concept")
    rows = [(ids[b], e_names[e], c_names[c], float(value[b, c]), float(weight[e, c]),
             float(contrib[b, e, c]), float(bias[e]), float(pred[b, e]))
            for b in range(B) for e in range(E) for c in range(C)]
    return pd.DataFrame(rows, columns=list(COLUMNS))
