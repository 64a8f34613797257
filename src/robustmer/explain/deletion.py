"""Deletion and insertion curves on input segments (Petsiuk et al., RISE, BMVC 2018, on segments).

Given a model, inputs ``x (B, 1, T, F)``, the explained output per clip, a segment map ``(T, F)``
and a segment ranking per clip ``(B, S)`` (most important first, e.g.
``robustmer.explain.evaluation.rank_segments(explanation.segment_scores)``):

- **deletion**: replace the segments by ``fill`` one by one in ranking order and record the
  score after each step: ``S + 1`` values from the intact input (step 0) to the all-fill one
  (step ``S``). A good ranking makes the score fall early: *lower* area is better.
- **insertion**: start from the all-fill input and put the segments back in ranking order;
  *higher* area is better.

The score is the softmax probability of the explained class for a classifier
(``task="classification"``) and the explained output itself for a regressor. The area under a
curve is the trapezoid rule over the fraction of segments ``k / S`` in ``[0, 1]``, so it is in the
score's units (the mean height of the curve). The ``fill`` (default ``"mean"``: each clip's own
mean, LIME's default fill, so removed segments look like the clip's average level rather than
silence) may also be ``"min"`` (the clip's minimum: silence in the log spectrogram),
``"zero"`` (0: the dataset mean in standardised units) or a number. The baseline is a random
order (``robustmer.explain.evaluation.random_ranking``, seeded per clip id), averaged over
``n_random`` orders. Segment arithmetic reuses ``evaluation.keep_segments``. Never imports
train/, data/, study/ or the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from robustmer.attacks.spec import TASK_ALIASES
from robustmer.errors import ConfigError
from robustmer.explain.base import check_input, check_target, eval_mode
from robustmer.explain.evaluation.metrics import (
    TASKS,
    keep_segments,
    predict,
    random_ranking,
)
from robustmer.explain.segments import check_segments

MODES: tuple[str, ...] = ("deletion", "insertion")
FILLS: tuple[str, ...] = ("mean", "min", "zero")
"""Named fills (or pass a number): each clip's mean, its minimum, or 0."""
CURVE_COLUMNS: tuple[str, ...] = ("clip_id", "method", "mode", "step", "fraction", "score")
AUC_COLUMNS: tuple[str, ...] = ("clip_id", "method", "mode", "auc")
RANDOM = "random"
"""The method name of the random-order baseline in :func:`deletion_table`."""


def fill_value(x: torch.Tensor, fill: str | float = "mean") -> torch.Tensor:
    """Per-clip fill ``(B, 1, ..., 1)`` broadcastable to ``x``: see :data:`FILLS`."""
    dims = tuple(range(1, x.ndim))
    if isinstance(fill, str):
        if fill not in FILLS:
            raise ConfigError(f"fill must be one of {list(FILLS)} or a number, got {fill!r}")
        if fill == "mean":
            return x.mean(dim=dims, keepdim=True)
        if fill == "min":
            return x.amin(dim=dims, keepdim=True)
        return torch.zeros((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)
    if isinstance(fill, bool) or not isinstance(fill, int | float) or fill != fill:
        raise ConfigError(f"fill must be one of {list(FILLS)} or a number, got {fill!r}")
    return torch.full((x.shape[0],) + (1,) * (x.ndim - 1), float(fill), dtype=x.dtype,
                      device=x.device)


def check_ranking(ranking: torch.Tensor, batch: int, n_seg: int) -> torch.Tensor:
    """``ranking`` must be ``(B, S)`` integer with every row a permutation of ``0..S-1``."""
    if not isinstance(ranking, torch.Tensor) or ranking.dtype.is_floating_point \
            or ranking.dtype == torch.bool:
        raise ConfigError(f"ranking must be an integer tensor, got "
                          f"{getattr(ranking, 'dtype', type(ranking).__name__)}")
    if tuple(ranking.shape) != (batch, n_seg):
        raise ConfigError(f"ranking must have shape (B, S) = {(batch, n_seg)}, got "
                          f"{tuple(ranking.shape)}")
    r = ranking.detach().cpu().long()
    if not torch.equal(r.sort(dim=1).values, torch.arange(n_seg).expand(batch, n_seg)):
        raise ConfigError(f"every row of ranking must be a permutation of 0..{n_seg - 1}")
    return r


def perturbation_curves(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor,
                        segments: torch.Tensor, ranking: torch.Tensor, *,
                        mode: str = "deletion", fill: str | float = "mean",
                        task: str = "classification", batch_size: int = 32) -> torch.Tensor:
    """``(B, S + 1)`` float64 scores of the explained output after ``0..S`` steps of deleting
    (or inserting) segments in ``ranking`` order (see the module doc)."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {list(MODES)}, got {mode!r}")
    task = TASK_ALIASES.get(task, task)
    if task not in TASKS:
        raise ConfigError(f"task must be one of {list(TASKS)}, got {task!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    check_input(x)
    seg, n_seg = check_segments(torch.as_tensor(segments), tuple(x.shape), shared=True)
    seg = seg.to(x.device)
    order = check_ranking(ranking, x.shape[0], n_seg).to(x.device)
    t = check_target(model, x, target)
    base = fill_value(x, fill)
    delta = x.detach() - base
    rows = torch.arange(x.shape[0], device=x.device)
    curve = []
    with eval_mode(model):
        for k in range(n_seg + 1):
            ids = order[:, k:] if mode == "deletion" else order[:, :k]
            out = predict(model, base + keep_segments(delta, seg, ids), batch_size)
            if task == "classification":
                out = out.softmax(dim=1)
            curve.append(out[rows.cpu(), t.cpu()])
    return torch.stack(curve, dim=1)


def curve_auc(curves: torch.Tensor) -> torch.Tensor:
    """``(B,)`` area under ``(B, S + 1)`` curves over the fraction of segments ``[0, 1]``
    (trapezoid rule)."""
    if not isinstance(curves, torch.Tensor) or curves.ndim != 2 or curves.shape[1] < 2:
        raise ConfigError(f"curves must be a (B, S + 1) tensor with S >= 1, got "
                          f"{getattr(curves, 'shape', type(curves).__name__)}")
    return torch.trapezoid(curves.double(), dx=1.0 / (curves.shape[1] - 1), dim=1)


def deletion_table(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor,
                   segments: torch.Tensor, rankings: Mapping[str, torch.Tensor], *,
                   clip_ids: Sequence[str] | None = None, modes: Sequence[str] = MODES,
                   fill: str | float = "mean", task: str = "classification", seed: int = 0,
                   n_random: int = 1, batch_size: int = 32) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Deletion/insertion curves of every method's ranking plus the random baseline.

    ``rankings`` maps a method name to its ``(B, S)`` ranking; the baseline (method
    :data:`RANDOM`) is the mean curve over ``n_random`` seeded random orders (0: none).
    Returns ``(curves, auc)``: tidy tables with :data:`CURVE_COLUMNS` (one row per clip x
    method x mode x step) and :data:`AUC_COLUMNS`.
    """
    if RANDOM in rankings:
        raise ConfigError(f"method name {RANDOM!r} is reserved for the random baseline")
    if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 0:
        raise ConfigError(f"n_random must be a non-negative integer, got {n_random!r}")
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ConfigError(f"modes must be a non-empty subset of {list(MODES)}, got {list(modes)}")
    B = x.shape[0]
    ids = [str(c) for c in (clip_ids if clip_ids is not None else range(B))]
    if len(ids) != B:
        raise ConfigError(f"clip_ids: expected {B} ids, got {len(ids)}")
    _, n_seg = check_segments(torch.as_tensor(segments), tuple(x.shape), shared=True)
    orders: dict[str, list[torch.Tensor]] = {name: [r] for name, r in rankings.items()}
    if n_random:
        orders[RANDOM] = [random_ranking(ids, n_seg, seed, f"deletion-{i}")
                          for i in range(n_random)]
    curve_rows: list[dict[str, Any]] = []
    auc_rows: list[dict[str, Any]] = []
    frac = [k / n_seg for k in range(n_seg + 1)]
    for name, rs in orders.items():
        for mode in modes:
            curves = torch.stack([perturbation_curves(
                model, x, target, segments, r, mode=mode, fill=fill, task=task,
                batch_size=batch_size) for r in rs]).mean(dim=0)
            area = curve_auc(curves)
            for b, cid in enumerate(ids):
                auc_rows.append({"clip_id": cid, "method": name, "mode": mode,
                                 "auc": float(area[b])})
                curve_rows.extend({"clip_id": cid, "method": name, "mode": mode, "step": k,
                                   "fraction": frac[k], "score": float(curves[b, k])}
                                  for k in range(n_seg + 1))
    return (pd.DataFrame(curve_rows, columns=list(CURVE_COLUMNS)),
            pd.DataFrame(auc_rows, columns=list(AUC_COLUMNS)))
