"""Intervals of Pearson correlations that stay inside [-1, 1]: one r of n pairs
(``fisher_z_ci``), an r averaged over seeds (``mean_correlation_ci``) and the report's
mean-over-outputs r with seeds and clips resampled (``bootstrap_correlation_ci``).

Apart from ``evaluate.intervals`` because a correlation is not a mean of per-clip values: its
interval is made on the Fisher z scale or by recomputing r in every replicate, never by a
t interval or by resampling per-clip r's. The resampling itself is ``evaluate.resampling``'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats

from robustmer.errors import ConfigError
from robustmer.evaluate.metrics import pearson_r
from robustmer.evaluate.resampling import (
    DEFAULT_N_BOOT,
    Design,
    Interval,
    as_labels,
    bootstrap_bounds,
    check_level,
    check_n_boot,
    make_design,
    spread,
)

R_CLIP = 1.0 - 1e-12
"""r = ±1 becomes ±R_CLIP before ``arctanh``, so that a perfect correlation has a finite z."""



def _z(r: np.ndarray) -> np.ndarray:
    """Fisher z = atanh(r), with r = ±1 moved to ±``R_CLIP`` so that z stays finite."""
    return np.arctanh(np.where(np.abs(r) == 1.0, np.sign(r) * R_CLIP, r))


def fisher_z_ci(r: float | Sequence[float] | np.ndarray, n: int | Sequence[int] | np.ndarray,
                level: float = 0.95) -> Interval:
    """Interval of a Pearson r of ``n`` pairs by the Fisher z transform:
    ``tanh(atanh(r) ± z_{(1+level)/2} / √(n-3))`` (vectorised over ``r`` and ``n``). The bounds
    are a tanh, so always inside [-1, 1] (``[r, r]`` for |r| = 1); NaN where ``n <= 3`` or r
    is NaN. Scalars in, floats
    out; arrays in, arrays out."""
    level = check_level(level)
    scalar = np.ndim(r) == 0 and np.ndim(n) == 0
    rr = np.asarray(r, dtype=np.float64)
    nn = np.asarray(n, dtype=np.float64)
    if np.any(np.abs(rr[np.isfinite(rr)]) > 1.0):
        raise ConfigError(f"r={r}: a correlation must lie in [-1, 1]")
    rr, nn = np.broadcast_arrays(rr, nn)
    z = _z(rr)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.where(nn > 3, 1.0 / np.sqrt(np.where(nn > 3, nn - 3, 1.0)), np.nan)
    q = float(stats.norm.ppf((1 + level) / 2))
    # a perfect correlation (|r| = 1) has the degenerate interval [r, r]
    low = np.where(nn > 3, np.where(np.abs(rr) == 1.0, rr, np.tanh(z - q * se)), np.nan)
    high = np.where(nn > 3, np.where(np.abs(rr) == 1.0, rr, np.tanh(z + q * se)), np.nan)
    est = rr.copy()
    if scalar:
        return Interval(float(est), float(low), float(high), int(nn), 1, "Fisher z", level)
    return Interval(est, low, high, nn.astype(np.int64), 1, "Fisher z", level)


def mean_correlation_ci(rs: Sequence[float] | np.ndarray,
                        ns: Sequence[int] | np.ndarray | None = None,
                        level: float = 0.95) -> Interval:
    """An r averaged over k seeds on the Fisher z scale: ``tanh(mean(atanh r_s))`` and the
    interval ``tanh(z̄ ± t_{k-1} · sd(z)/√k)`` from the spread of z over the seeds (the seed is the
    unit; the clips are the same in every seed, so the per-seed ``n`` does not enter). The
    bounds are a tanh, so inside [-1, 1] by construction, even with 2 seeds. With one seed and
    ``ns`` given, the Fisher z interval of that r (``fisher_z_ci``); NaN r's are left out."""
    level = check_level(level)
    r = np.asarray(rs, dtype=np.float64).reshape(-1)
    nn = None if ns is None else np.asarray(ns, dtype=np.float64).reshape(-1)
    if nn is not None and len(nn) != len(r):
        raise ConfigError(f"ns: {len(nn)} sample sizes for {len(r)} correlations")
    if np.any(np.abs(r[np.isfinite(r)]) > 1.0):
        raise ConfigError(f"rs={r.tolist()}: a correlation must lie in [-1, 1]")
    keep = np.isfinite(r)
    excluded = int((~keep).sum())
    r = r[keep]
    nn = None if nn is None else nn[keep]
    k = len(r)
    if k == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, 0,
                        "mean of Fisher z over seeds", level, excluded)
    z = _z(r)
    zbar = float(z.mean())
    if k == 1:
        if nn is not None:
            one = fisher_z_ci(float(r[0]), int(nn[0]), level)
            return Interval(one.estimate, one.low, one.high, 1, 1,
                            f"Fisher z of one seed's r (n = {int(nn[0])})", level, excluded)
        return Interval(float(np.tanh(zbar)), float("nan"), float("nan"), 1, 1,
                        "one seed: no spread over seeds", level, excluded)
    half = float(stats.t.ppf((1 + level) / 2, k - 1) * z.std(ddof=1) / math.sqrt(k))
    return Interval(float(np.tanh(zbar)), float(np.tanh(zbar - half)),
                    float(np.tanh(zbar + half)), k, k,
                    f"t interval over the Fisher z of {k} seeds ({k - 1} df)", level, excluded)


def _mean_r(t: np.ndarray, p: np.ndarray) -> float:
    r = pearson_r(t, p)
    return float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")


def _weighted_r_reps(t: np.ndarray, p: np.ndarray, design: Design
                     ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """All crossed replicates of ``bootstrap_correlation_ci``'s statistic at once: per drawn
    seed the mean-over-outputs r of its drawn clips (weighted moments), averaged over the drawn
    seeds with a defined r, as ``stat_groups`` does one replicate at a time."""
    item = design.item
    assert item is not None, "only a crossed design (with item codes) has these replicates"

    def reps(seeds: np.ndarray, clips: np.ndarray) -> np.ndarray:
        num = np.zeros(len(seeds))
        den = np.zeros(len(seeds))
        for g in range(design.n_clusters):
            rows = np.flatnonzero(design.cluster == g)
            w = clips[:, item[rows]].astype(np.float64)  # (B, rows)
            n = w.sum(axis=1)
            a = t[rows] - t[rows].mean(axis=0)
            b = p[rows] - p[rows].mean(axis=0)
            nn = np.maximum(n, 1.0)[:, None]
            ma, mb = (w @ a) / nn, (w @ b) / nn
            saa = w @ (a * a) - n[:, None] * ma * ma
            sbb = w @ (b * b) - n[:, None] * mb * mb
            sab = w @ (a * b) - n[:, None] * ma * mb
            denom = np.sqrt(np.maximum(saa, 0.0) * np.maximum(sbb, 0.0))
            ok = (denom > 0) & (spread(t[rows], w) > 0) & (spread(p[rows], w) > 0)
            with np.errstate(invalid="ignore", divide="ignore"):
                r = np.where(ok, sab / np.where(ok, denom, 1.0), np.nan)
                mean_r = np.nanmean(np.where(ok.any(axis=1, keepdims=True), r, 0.0), axis=1)
            defined = (n > 1) & ok.any(axis=1)
            num += np.where(defined, seeds[:, g] * mean_r, 0.0)
            den += np.where(defined, seeds[:, g], 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return reps


def bootstrap_correlation_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    clusters: Sequence[Any] | np.ndarray | None = None,
    *,
    items: Sequence[Any] | np.ndarray | None = None,
    scheme: str | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = 0.95,
    seed: int = 0,
    method: str = "percentile",
) -> Interval:
    """Bootstrap interval of the mean-over-outputs Pearson r (``regression_metrics``'s
    ``mean_r``: per-output r with ``pearson_r``, averaged over the outputs) of ``(N, K)`` targets
    and predictions, resampling clips (rows) and recomputing r in every replicate.

    With ``clusters`` (seeds), the estimate is the mean over seeds of each seed's mean r (as
    Table 1 averages runs), and the replicates resample seeds and clips by ``scheme`` (crossed
    when ``items``, the clip ids, are given). Every replicate is a mean of correlations, so
    every bound lies in [-1, 1]. Rows with a non-finite entry are left out (``n_excluded``);
    replicates with no defined r (a constant resample) are dropped and counted in ``method``.
    """
    level, n_boot = check_level(level), check_n_boot(n_boot)
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.ndim == 1:
        t, p = t[:, None], p[:, None]
    if t.shape != p.shape or t.ndim != 2:
        raise ConfigError(f"y_true and y_pred must be equal (N, K) arrays, got {t.shape} and "
                          f"{p.shape}")
    cl = as_labels(clusters, len(t), "clusters")
    it = as_labels(items, len(t), "items")
    keep = np.isfinite(t).all(axis=1) & np.isfinite(p).all(axis=1)
    t, p = t[keep], p[keep]
    cl = None if cl is None else cl[keep]
    it = None if it is None else it[keep]
    excluded = int((~keep).sum())
    design = make_design(len(t), cl, it, scheme)

    def stat_groups(groups: list[np.ndarray]) -> float:
        vals = [_mean_r(t[g], p[g]) for g in groups if len(g) > 1]
        vals = [v for v in vals if np.isfinite(v)]
        return float(np.mean(vals)) if vals else float("nan")

    est = stat_groups(design.groups())
    if len(t) < 3:
        return Interval(est, float("nan"), float("nan"), len(t), design.n_clusters,
                        "bootstrap of r needs at least 3 clips", level, excluded)
    vector = _weighted_r_reps(t, p, design) if design.scheme == "crossed" else None
    lo, hi, how = bootstrap_bounds(len(t), design, stat_groups, n_boot, level, seed, method,
                                   "the mean-over-outputs r", vector)
    # a mean of correlations is in [-1, 1]; clip rounding (and BCa's extrapolated quantiles)
    lo, hi = (float(np.clip(x, -1.0, 1.0)) if np.isfinite(x) else x for x in (lo, hi))
    return Interval(est, lo, hi, len(t), design.n_clusters, how, level, excluded)
