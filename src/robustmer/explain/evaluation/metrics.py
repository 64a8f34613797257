"""Segment arithmetic and the judge of a (partial) perturbation: the measurements of the
explainer evaluation (``robustmer.explain.evaluation``), usable on their own (the deletion and
standard tests reuse them)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from robustmer.attacks import per_sample_mse
from robustmer.attacks.base import Subsettable
from robustmer.errors import ConfigError
from robustmer.explain.base import Explainer
from robustmer.io import stable_hash

TASKS: tuple[str, ...] = ("classification", "regression")
"""What the explained model does (a model type's task); ``classifier`` / ``regressor`` are
accepted as the older spellings (``attacks.spec.TASK_ALIASES``)."""


# -- segment arithmetic -------------------------------------------------------------------------

def n_segments(segments: torch.Tensor) -> int:
    """Number of segments ``S`` of an integer map with ids ``0..S-1``."""
    return int(segments.max()) + 1


def segment_energy(delta: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """``Σδ²`` inside each segment, ``(B, S)`` float64; ``delta`` is ``(B, ..., T, F)`` (leading
    channel axes are summed) and ``segments`` a ``(T, F)`` map."""
    seg = segments.to(delta.device).long()
    S = n_segments(seg)
    d2 = (delta.detach().double() ** 2).reshape(delta.shape[0], -1, *seg.shape).sum(dim=1)
    flat = d2.reshape(delta.shape[0], -1)
    out = torch.zeros(delta.shape[0], S, dtype=torch.float64, device=delta.device)
    out.scatter_add_(1, seg.reshape(1, -1).expand(delta.shape[0], -1), flat)
    return out.cpu()


def rank_segments(scores: torch.Tensor) -> torch.Tensor:
    """Segment ids ``(B, S)`` ordered by score, highest first; ties go to the lower id and NaN /
    -inf rank last (the order of ``Explanation.top_k``)."""
    s = scores.detach().double().cpu()
    s = torch.where(torch.isnan(s), torch.full_like(s, -math.inf), s)
    return torch.sort(-s, dim=1, stable=True).indices


def keep_segments(delta: torch.Tensor, segments: torch.Tensor,
                  ids: torch.Tensor) -> torch.Tensor:
    """``δ`` with everything outside the segments ``ids (B, k)`` set to zero."""
    seg = segments.to(delta.device).long()
    S = n_segments(seg)
    keep = torch.zeros(delta.shape[0], S, dtype=torch.bool, device=delta.device)
    if ids.numel():
        keep.scatter_(1, ids.to(delta.device).long(), True)
    pix = keep[:, seg.reshape(-1)].reshape(delta.shape[0], *seg.shape)  # (B, T, F)
    shape = (delta.shape[0],) + (1,) * (delta.ndim - 3) + tuple(seg.shape)
    return delta * pix.reshape(shape).to(delta.dtype)


def recovery_hits(ranking: torch.Tensor, modified: torch.Tensor, k: int) -> torch.Tensor:
    """How many of the ``modified (B, k)`` segment ids are among the first ``k`` of ``ranking``
    ``(B, S)``, per clip ``(B,)`` int64."""
    top = ranking[:, :k].cpu()
    mod = modified.cpu()
    return (top[:, :, None] == mod[:, None, :]).any(dim=2).sum(dim=1)


def random_ranking(clip_ids: Sequence[str], S: int, seed: int, stage: str) -> torch.Tensor:
    """A seeded random segment order per clip ``(B, S)``, drawn from ``(seed, clip id, stage)``
    so that it does not depend on the batch a clip lands in (resume gives the same table)."""
    rows = []
    for cid in clip_ids:
        key = int(stable_hash([str(cid), stage], length=12), 16)
        rows.append(np.random.default_rng([int(seed), key]).permutation(S))
    return torch.as_tensor(np.stack(rows), dtype=torch.int64)


# -- judging a (partial) perturbation -----------------------------------------------------------

@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """``model(x)`` in chunks, no gradients, on the CPU as float64. A model with per-clip state
    (``Subsettable``, e.g. a waveform model's STFT view holding each clip's phase) is narrowed
    to each chunk's rows, so the rows of ``x`` must be its clips, in order."""
    outs = []
    for i in range(0, len(x), batch_size):
        rows = torch.arange(i, min(i + batch_size, len(x)))
        m = model.subset(rows) if isinstance(model, Subsettable) else model
        outs.append(m(x[i:i + batch_size]).double().cpu())
    return torch.cat(outs) if outs else torch.zeros(0)


def rows_model(model: nn.Module, rows: torch.Tensor, n_rows: int) -> nn.Module:
    """``model`` for the batch ``rows`` of its ``n_rows`` clips (``subset`` when it holds
    per-clip state and ``rows`` is not the whole batch)."""
    if isinstance(model, Subsettable) and len(rows) != n_rows:
        return model.subset(rows)
    return model


def clip_batches(model: nn.Module, n: int,
                 batch_size: int) -> Iterator[tuple[slice, nn.Module]]:
    """``(rows, module)`` over ``n`` clips, ``batch_size`` at a time; a model with per-clip
    state (``Subsettable``, a waveform model's STFT view) one clip at a time, narrowed to it:
    explainers evaluate one clip's perturbed copies in batches of their own, which only a
    one-clip view can follow."""
    if isinstance(model, Subsettable):
        for i in range(n):
            yield slice(i, i + 1), model.subset(torch.tensor([i]))
        return
    for i in range(0, n, batch_size):
        yield slice(i, i + batch_size), model


def explain_segments(explainer: Explainer, model: nn.Module, x: torch.Tensor,
                     target: torch.Tensor, segments: torch.Tensor, name: str,
                     batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Segment scores ``(B, S)`` and attributions (float32) of every clip on the CPU, in
    :func:`clip_batches` of ``batch_size`` (default: all at once); an explainer that gives no
    segment scores, or scores of another shape, is a ``ConfigError`` naming it."""
    scores, attrs = [], []
    for rows, m in clip_batches(model, x.shape[0], batch_size or x.shape[0]):
        expl = explainer(m, x[rows], target[rows], segments)
        part = getattr(expl, "segment_scores", None)
        if part is None:
            raise ConfigError(f"explainer {name!r} returned no segment scores although a "
                              f"segment map was given")
        scores.append(part.detach().cpu())
        attrs.append(expl.attribution.detach().float().cpu())
    out = torch.cat(scores)
    S = n_segments(segments)
    if tuple(out.shape) != (x.shape[0], S):
        raise ConfigError(f"explainer {name!r} returned segment scores of shape "
                          f"{tuple(out.shape)}, expected {(x.shape[0], S)}")
    return out, torch.cat(attrs)


@dataclass
class Judge:
    """Decides whether an input is adversarial for each clip.

    Classifier: adversarial ⇔ ``argmax f = target``; ``effect`` = softmax probability of the
    target. Regressor: ``effect`` = ``(MSE(f, y) − mse_clean) / (mse_adv − mse_clean)``;
    adversarial ⇔ ``effect ≥ fraction``. ``target`` ``(B,)`` int64, ``y`` ``(B, K)``,
    ``mse_clean`` / ``mse_adv`` ``(B,)`` float64 (regressor only).
    """

    task: str
    target: torch.Tensor
    y: torch.Tensor | None = None
    mse_clean: torch.Tensor | None = None
    mse_adv: torch.Tensor | None = None
    fraction: float = 0.5

    def __call__(self, out: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(adversarial, effect)`` for outputs ``out`` of the clips ``rows`` (batch indices)."""
        out = out.double().cpu()
        rows = rows.cpu()
        if self.task == "classification":
            t = self.target[rows]
            p = torch.softmax(out, dim=1).gather(1, t[:, None]).squeeze(1)
            return out.argmax(dim=1) == t, p
        assert self.y is not None and self.mse_clean is not None and self.mse_adv is not None
        mse = per_sample_mse(out, self.y[rows].double())
        rise = self.mse_adv[rows] - self.mse_clean[rows]
        effect = (mse - self.mse_clean[rows]) / rise
        return effect >= self.fraction, effect


def flip_curve(model: nn.Module, x: torch.Tensor, delta: torch.Tensor, segments: torch.Tensor,
               ranking: torch.Tensor, ks: Sequence[int], judge: Judge,
               batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """For each clip and each ``k`` in ``ks``: is ``x + δ`` restricted to the first ``k``
    segments of ``ranking`` adversarial? Returns ``(flipped, effect)``, ``(B, len(ks))`` each."""
    B = x.shape[0]
    # one k at a time, so each call's rows are the batch's clips (a model with per-clip state)
    outs = [predict(model, x + keep_segments(delta, segments, ranking[:, :k]), batch_size)
            for k in ks]
    rows = torch.arange(B).repeat(len(ks))
    flipped, effect = judge(torch.cat(outs), rows)
    return flipped.reshape(len(ks), B).T, effect.reshape(len(ks), B).T

