"""Localisation of attributions against a planted ground truth (e.g. where the voice is).

For any attribution map ``(B, T, F)`` or ``(B, 1, T, F)`` and a boolean region ``(T, F)``
(shared) or ``(B, T, F)`` (per clip), three scores per clip, each beside its chance level:

- **mass share**: the share of the attribution mass inside the region, ``Σ_region w / Σ w``,
  with ``w = |a|`` (``part="abs"``, the default: gradient maps' signs are not stable evidence
  for or against, and SmoothGrad² / VarGrad are non-negative anyway) or ``w = max(a, 0)``
  (``part="pos"``, the relevance mass accuracy of Arras et al. 2022). Chance: a map that
  carries no information about the region puts the region's area share there.
- **pointing game (pixels)**: is the top pixel of ``w`` inside the region? When several pixels
  share the maximum, the score is the share of them inside the region (the hit rate under a
  random tie-break), so a constant map scores the area share instead of whatever pixel comes
  first. Chance: the region's area share.
- **pointing game (segments)**: with a segment map ``(T, F)`` / ``(B, T, F)`` and per-segment
  scores ``(B, S)`` (an explainer's ``segment_scores``, or the map aggregated with
  ``robustmer.explain.segments.aggregate``), is the top segment *in* the region, i.e. does at
  least ``min_overlap`` (default 0.5: most of it) of its pixels lie in the region? Ties share
  the hit as above; NaN scores rank last. Chance: the share of segments that count as in the
  region. ``min_overlap`` just above 0 gives the looser rule "the top segment touches the
  region".

Clips whose region is empty (no voice) have no localisation: their scores are NaN. A map with no
mass (all zero ``w``) has NaN mass share. Never imports train/, data/, study/ or the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from robustmer.errors import ConfigError
from robustmer.explain.segments import aggregate, check_segments

PARTS: tuple[str, ...] = ("abs", "pos")
"""Which part of the attribution counts as mass: ``abs`` (|a|, the default) or ``pos``."""

COLUMNS: tuple[str, ...] = (
    "clip_id", "region_share", "mass_share", "pointing_pixel", "pointing_segment",
    "segment_chance")
""":func:`localisation_table`: ``region_share`` (the region's area share: the chance level of
``mass_share`` and ``pointing_pixel``), ``pointing_segment`` and its chance ``segment_chance``
(NaN without a segment map)."""


def _maps(attribution: torch.Tensor) -> torch.Tensor:
    """``(B, T, F)`` or ``(B, 1, T, F)`` -> ``(B, T, F)`` float64 (detached, on the CPU)."""
    if not isinstance(attribution, torch.Tensor) or not (
            attribution.ndim == 3 or (attribution.ndim == 4 and attribution.shape[1] == 1)):
        raise ConfigError(f"attribution must be a (B, T, F) or (B, 1, T, F) tensor, got "
                          f"{getattr(attribution, 'shape', type(attribution).__name__)}")
    a = attribution.detach().to("cpu", torch.float64)
    return a[:, 0] if a.ndim == 4 else a


def _region(region: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """A boolean ``(T, F)`` or ``(B, T, F)`` region -> ``(B, T, F)`` bool for maps of ``shape``."""
    B, T, F = shape
    if not isinstance(region, torch.Tensor) or region.dtype != torch.bool:
        raise ConfigError(f"region must be a boolean tensor, got "
                          f"{getattr(region, 'dtype', type(region).__name__)}")
    if tuple(region.shape) == (T, F):
        return region.cpu()[None].expand(B, T, F)
    if tuple(region.shape) == (B, T, F):
        return region.cpu()
    raise ConfigError(f"region must have shape (T, F) = {(T, F)} or (B, T, F) = {(B, T, F)}, "
                      f"got {tuple(region.shape)}")


def _weights(a: torch.Tensor, part: str) -> torch.Tensor:
    if part not in PARTS:
        raise ConfigError(f"part must be one of {list(PARTS)}, got {part!r}")
    return a.abs() if part == "abs" else a.clamp(min=0.0)


def _empty_to_nan(values: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    empty = ~region.reshape(region.shape[0], -1).any(dim=1)
    return torch.where(empty, torch.full_like(values, float("nan")), values)


def region_share(region: torch.Tensor, shape: Sequence[int] | None = None) -> torch.Tensor:
    """``(B,)`` float64 area share of the region: the chance level of :func:`mass_share` and of
    :func:`pointing_game`. ``shape`` ``(B, T, F)`` expands a shared ``(T, F)`` region."""
    if shape is None:
        if not isinstance(region, torch.Tensor) or region.ndim not in (2, 3):
            raise ConfigError(f"region must be a (T, F) or (B, T, F) boolean tensor, got "
                              f"{getattr(region, 'shape', type(region).__name__)}")
        shape = tuple(region.shape) if region.ndim == 3 else (1, *region.shape)
    r = _region(region, shape)
    return r.reshape(r.shape[0], -1).double().mean(dim=1)


def mass_share(attribution: torch.Tensor, region: torch.Tensor,
               part: str = "abs") -> torch.Tensor:
    """``(B,)`` float64 share of the attribution mass (``|a|`` or ``max(a, 0)``, see ``part``)
    inside the region; NaN for an empty region or a map without mass."""
    a = _maps(attribution)
    r = _region(region, a.shape)
    w = _weights(a, part).reshape(a.shape[0], -1)
    inside = (w * r.reshape(a.shape[0], -1)).sum(dim=1)
    total = w.sum(dim=1)
    share = torch.where(total > 0, inside / total.clamp(min=1e-300),
                        torch.full_like(total, float("nan")))
    return _empty_to_nan(share, r)


def pointing_game(attribution: torch.Tensor, region: torch.Tensor,
                  part: str = "abs") -> torch.Tensor:
    """``(B,)`` float64 pixel pointing game: the share of the maximal pixels of ``w`` (``|a|``
    or ``max(a, 0)``) inside the region (1.0 or 0.0 unless pixels tie); NaN for an empty
    region."""
    a = _maps(attribution)
    r = _region(region, a.shape).reshape(a.shape[0], -1)
    w = _weights(a, part).reshape(a.shape[0], -1)
    top = w == w.max(dim=1, keepdim=True).values
    hit = (top & r).sum(dim=1).double() / top.sum(dim=1).double()
    return _empty_to_nan(hit, r)


def segment_overlap(segments: torch.Tensor, region: torch.Tensor,
                    batch: int | None = None) -> torch.Tensor:
    """``(B, S)`` float64 share of each segment's pixels inside the region."""
    if not isinstance(segments, torch.Tensor) or segments.ndim not in (2, 3):
        raise ConfigError(f"segments must be a (T, F) or (B, T, F) integer tensor, got "
                          f"{getattr(segments, 'shape', type(segments).__name__)}")
    T, F = segments.shape[-2:]
    B = batch if batch is not None else (segments.shape[0] if segments.ndim == 3 else (
        region.shape[0] if isinstance(region, torch.Tensor) and region.ndim == 3 else 1))
    seg, n_seg = check_segments(segments.cpu(), (B, T, F))
    r = _region(region, (B, T, F)).reshape(B, -1).double()
    idx = seg.reshape(B, -1)
    inside = torch.zeros(B, n_seg, dtype=torch.float64).scatter_add_(1, idx, r)
    count = torch.zeros(B, n_seg, dtype=torch.float64).scatter_add_(1, idx, torch.ones_like(r))
    return inside / count


def _check_overlap(min_overlap: float) -> float:
    if isinstance(min_overlap, bool) or not isinstance(min_overlap, int | float) \
            or not 0.0 < min_overlap <= 1.0:
        raise ConfigError(f"min_overlap must be in (0, 1], got {min_overlap!r}")
    return float(min_overlap)


def segment_pointing_game(segment_scores: torch.Tensor, segments: torch.Tensor,
                          region: torch.Tensor,
                          min_overlap: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Segment pointing game: ``(hit, chance)``, both ``(B,)`` float64.

    A segment is *in* the region when at least ``min_overlap`` of its pixels are; ``hit`` is the
    share of the top-scoring segments (ties) that are in it, ``chance`` the share of all
    segments that are (what a random pick scores on average). NaN where the region is empty.
    """
    thr = _check_overlap(min_overlap)
    if not isinstance(segment_scores, torch.Tensor) or segment_scores.ndim != 2:
        raise ConfigError(f"segment_scores must be a (B, S) tensor, got "
                          f"{getattr(segment_scores, 'shape', type(segment_scores).__name__)}")
    B = segment_scores.shape[0]
    inside = segment_overlap(segments, region, batch=B) >= thr - 1e-12
    if inside.shape != segment_scores.shape:
        raise ConfigError(f"segment_scores must be (B, S) = {tuple(inside.shape)} for this "
                          f"segment map, got {tuple(segment_scores.shape)}")
    s = torch.nan_to_num(segment_scores.detach().cpu().double(), nan=-torch.inf)
    top = s == s.max(dim=1, keepdim=True).values
    hit = (top & inside).sum(dim=1).double() / top.sum(dim=1).double()
    chance = inside.double().mean(dim=1)
    r = _region(region, (B, *segments.shape[-2:]))
    return _empty_to_nan(hit, r), _empty_to_nan(chance, r)


def localisation_table(attribution: torch.Tensor, region: torch.Tensor,
                       clip_ids: Sequence[str] | None = None,
                       segments: torch.Tensor | None = None,
                       segment_scores: torch.Tensor | None = None, part: str = "abs",
                       min_overlap: float = 0.5, aggregation: str = "mean_abs") -> pd.DataFrame:
    """One row per clip (:data:`COLUMNS`): mass share, pixel and segment pointing game, and
    their chance levels.

    With ``segments`` but no ``segment_scores``, the scores are the map aggregated per segment
    with ``aggregation`` (``mean_abs`` by default, matching ``part="abs"``).
    """
    a = _maps(attribution)
    B = a.shape[0]
    ids = [str(i) for i in (clip_ids if clip_ids is not None else range(B))]
    if len(ids) != B:
        raise ConfigError(f"clip_ids: expected {B} ids, got {len(ids)}")
    r = _region(region, a.shape)
    nan = torch.full((B,), float("nan"), dtype=torch.float64)
    seg_hit, seg_chance = nan, nan
    if segments is not None:
        scores = segment_scores if segment_scores is not None else aggregate(
            a, segments.cpu(), aggregation)
        seg_hit, seg_chance = segment_pointing_game(scores, segments, r, min_overlap)
    elif segment_scores is not None:
        raise ConfigError("segment_scores needs the segment map they score (segments=...)")
    return pd.DataFrame({
        "clip_id": ids,
        "region_share": region_share(r, a.shape).numpy(),
        "mass_share": mass_share(a, r, part).numpy(),
        "pointing_pixel": pointing_game(a, r, part).numpy(),
        "pointing_segment": seg_hit.numpy(),
        "segment_chance": seg_chance.numpy(),
    }, columns=list(COLUMNS))
