"""Intervals and tests a reader can trust: every function returns its estimate, its interval
*and the sample it came from* (``n``, ``n_clusters``, the method), so a report can print N beside
every interval.

What each function is for (see docs/report.md for the wiring):

* ``cluster_bootstrap_ci``: a statistic (the mean by default) of per-clip values pooled over
  seeds, e.g. a model type's adversarial MAE. The seeds are clusters: the clips of one seed share
  the trained model, so treating all rows as independent understates the spread.
* ``paired_effect``: two conditions on the same (seed, clip) pairs, e.g. adversarial MAE of model
  type A vs B: the mean difference (t interval over pairs and cluster-bootstrap interval), Cohen's
  d_z (noncentral-t and cluster-bootstrap intervals) and the paired t-test.
* ``family_correction``: Bonferroni or Holm over *one* family of tests.

Intervals of correlations are in ``evaluate.correlations``; how the bootstrap draws seeds and
clips (the schemes and why the defaults are what they are) is in ``evaluate.resampling``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats

from robustmer.errors import ConfigError
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


@dataclass(frozen=True)
class PairedEffect:
    """Paired comparison of ``a - b``: the mean difference with its t interval over pairs
    (``mean_diff``, treats the pairs as independent) and its cluster-bootstrap interval
    (``mean_diff_bootstrap``), Cohen's d_z = mean(a-b)/sd(a-b) with its noncentral-t interval
    (``d_z``, independent pairs, normal differences) and cluster-bootstrap interval
    (``d_z_bootstrap``), the two-sided paired t-test (``t``, ``df``, ``p``; scipy's
    ``ttest_rel``), ``n`` pairs over ``n_clusters`` seeds, and the means of ``a`` and ``b``."""

    mean_diff: Interval
    mean_diff_bootstrap: Interval
    d_z: Interval
    d_z_bootstrap: Interval
    t: float
    df: int
    p: float
    n: int
    n_clusters: int
    mean_a: float
    mean_b: float
    n_excluded: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Flat dict: ``mean_diff``, ``mean_diff_low``, ... ``d_z_bootstrap_high``, ``t``..."""
        out: dict[str, Any] = {}
        for name in ("mean_diff", "mean_diff_bootstrap", "d_z", "d_z_bootstrap"):
            iv: Interval = getattr(self, name)
            out[name] = iv.estimate
            out[f"{name}_low"] = iv.low
            out[f"{name}_high"] = iv.high
            out[f"{name}_method"] = iv.method
        out.update(t=self.t, df=self.df, p=self.p, n=self.n, n_clusters=self.n_clusters,
                   mean_a=self.mean_a, mean_b=self.mean_b, n_excluded=self.n_excluded,
                   level=self.mean_diff.level)
        return out


@dataclass(frozen=True)
class Family:
    """One family of tests after a multiple-testing correction: ``adjusted`` p-values (NaN where
    the input was NaN), ``reject`` flags (``adjusted <= alpha``), ``m`` tests in the family
    (finite p-values only), the ``method`` and ``alpha``."""

    adjusted: np.ndarray
    reject: np.ndarray
    m: int
    method: str
    alpha: float



# --- means and paired differences ---------------------------------------------------------


def _weighted_mean_reps(v: np.ndarray, design: Design) -> Callable[..., np.ndarray]:
    """All replicates of the mean of the pooled rows (``stat=np.mean``), from the counts."""
    def reps(seeds: np.ndarray, clips: np.ndarray) -> np.ndarray:
        w = (seeds[:, design.cluster] * clips[:, design.item]).astype(np.float64)
        n = w.sum(axis=1)
        return np.where(n > 0, (w @ v) / np.where(n > 0, n, 1.0), np.nan)
    return reps


def _weighted_dz_reps(v: np.ndarray, design: Design) -> Callable[..., np.ndarray]:
    """All replicates of Cohen's d_z (mean / sd, ddof 1) of the pooled rows, as :func:`_dz`."""
    def reps(seeds: np.ndarray, clips: np.ndarray) -> np.ndarray:
        w = (seeds[:, design.cluster] * clips[:, design.item]).astype(np.float64)
        n = w.sum(axis=1)
        c = v - v.mean()  # shifted for the moments' precision; d_z uses the unshifted mean
        m = (w @ c) / np.maximum(n, 1.0)
        var = np.maximum((w @ (c * c) - n * m * m), 0.0) / np.maximum(n - 1.0, 1.0)
        ok = (n >= 2) & (spread(v, w) > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(ok, (m + v.mean()) / np.sqrt(var), np.nan)
    return reps


def cluster_bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    clusters: Sequence[Any] | np.ndarray | None = None,
    stat: Callable[[np.ndarray], float] = np.mean,
    *,
    items: Sequence[Any] | np.ndarray | None = None,
    scheme: str | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = 0.95,
    seed: int = 0,
    method: str = "percentile",
) -> Interval:
    """Bootstrap interval of ``stat`` (a function of a 1-d array; the mean by default) of
    per-clip ``values`` pooled over ``clusters`` (the seed of each value; None = one cluster).

    ``items`` (the clip id of each value) selects the crossed scheme, the right one when every
    seed saw the same clips; without it the two-stage scheme is used (``evaluate.resampling``).
    With one cluster this is the ordinary clip bootstrap (``scipy.stats.bootstrap``;
    ``method="bca"`` gives BCa there). Non-finite values are left out and counted in ``n_excluded``.
    """
    return _cluster_interval(values, clusters, stat, getattr(stat, "__name__", "the statistic"),
                             items=items, scheme=scheme, n_boot=n_boot, level=level, seed=seed,
                             method=method)


def _cluster_interval(values: Sequence[float] | np.ndarray,
                      clusters: Sequence[Any] | np.ndarray | None,
                      stat: Callable[[np.ndarray], float], what: str, *,
                      items: Sequence[Any] | np.ndarray | None, scheme: str | None,
                      n_boot: int, level: float, seed: int, method: str) -> Interval:
    """``cluster_bootstrap_ci`` with ``what`` (the statistic in words) for ``method``."""
    level, n_boot = check_level(level), check_n_boot(n_boot)
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    cl = as_labels(clusters, len(v), "clusters")
    it = as_labels(items, len(v), "items")
    keep = np.isfinite(v)
    v = v[keep]
    cl = None if cl is None else cl[keep]
    it = None if it is None else it[keep]
    excluded = int((~keep).sum())
    design = make_design(len(v), cl, it, scheme)
    if len(v) < 2:
        est = float(stat(v)) if len(v) else float("nan")
        return Interval(est, float("nan"), float("nan"), len(v), design.n_clusters,
                        "bootstrap needs at least 2 values", level, excluded)

    def stat_groups(groups: list[np.ndarray]) -> float:
        idx = groups[0] if len(groups) == 1 else np.concatenate(groups)
        return float(stat(v[idx])) if len(idx) else float("nan")

    vector = None
    if design.scheme == "crossed":
        if stat is np.mean:
            vector = _weighted_mean_reps(v, design)
        elif stat is _dz:
            vector = _weighted_dz_reps(v, design)
    lo, hi, how = bootstrap_bounds(len(v), design, stat_groups, n_boot, level, seed, method,
                                   what, vector)
    return Interval(float(stat(v)), lo, hi, len(v), design.n_clusters, how, level, excluded)


def t_interval(values: Sequence[float] | np.ndarray, level: float = 0.95) -> Interval:
    """Mean and its two-sided t interval ``mean ± t(n-1) · sd/√n`` (sd ddof=1) over the finite
    values, treating them as independent; NaN bounds with fewer than 2 values."""
    level = check_level(level)
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    ok = v[np.isfinite(v)]
    n = len(ok)
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, 0, "t interval", level,
                        len(v))
    m = float(ok.mean())
    if n < 2:
        return Interval(m, float("nan"), float("nan"), n, 1, "t interval (needs 2 values)",
                        level, len(v) - n)
    half = float(stats.t.ppf((1 + level) / 2, n - 1) * ok.std(ddof=1) / math.sqrt(n))
    return Interval(m, m - half, m + half, n, 1, f"t interval, {n - 1} df", level, len(v) - n)


def dz_noncentral_ci(d_z: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Interval of Cohen's d_z from the noncentral t distribution: t = d_z·√n follows
    nct(df = n-1, nc = δ·√n), so the bounds are the noncentrality parameters whose upper and
    lower ``(1-level)/2`` tails put the observed t at their edge, divided by √n (Steiger &
    Fouladi's inversion; exact for independent, normal differences). Root finding with
    ``scipy.optimize.brentq`` on ``scipy.stats.nct.cdf``."""
    level = check_level(level)
    if n < 2 or not np.isfinite(d_z):
        return float("nan"), float("nan")
    df, t_obs = n - 1, float(d_z) * math.sqrt(n)

    def bound(tail: float) -> float:
        # nct.cdf(t_obs; nc) falls monotonically as nc grows: bracket the root, then solve.
        def f(nc: float) -> float:
            return float(stats.nct.cdf(t_obs, df, nc)) - tail

        step = 2.0 + abs(t_obs)
        lo, hi = t_obs - step, t_obs + step
        for _ in range(60):
            if f(lo) > 0 > f(hi):
                break
            lo, hi = lo - step, hi + step
            step *= 2
        return float(optimize.brentq(f, lo, hi, xtol=1e-12))

    a = (1 - level) / 2
    return bound(1 - a) / math.sqrt(n), bound(a) / math.sqrt(n)


def _dz(d: np.ndarray) -> float:
    if len(d) < 2:
        return float("nan")
    sd = float(d.std(ddof=1))
    return float(d.mean() / sd) if sd > 0 else float("nan")


def paired_effect(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    clusters: Sequence[Any] | np.ndarray | None = None,
    level: float = 0.95,
    *,
    items: Sequence[Any] | np.ndarray | None = None,
    scheme: str | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
) -> PairedEffect:
    """Effect of ``a - b`` over paired per-clip values (same clip, same seed), e.g. adversarial
    MAE of model type A vs B. Pairs with a non-finite value are left out (``n_excluded``).

    The t interval, the noncentral-t interval of d_z and the t-test treat the pairs as
    independent; with several seeds the pairs of one clip are correlated, so the cluster-
    bootstrap intervals (``*_bootstrap``; clusters = seeds, ``items`` = clip ids for the
    crossed scheme) are the ones to report, with the t-test's p as the family's test.
    """
    level = check_level(level)
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ConfigError(f"paired samples must have equal length, got {len(x)} and {len(y)}")
    cl = as_labels(clusters, len(x), "clusters")
    it = as_labels(items, len(x), "items")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    cl = None if cl is None else cl[keep]
    it = None if it is None else it[keep]
    d = x - y
    n = len(d)
    excluded = int((~keep).sum())
    n_clusters = len(set(cl.tolist())) if cl is not None else (1 if n else 0)
    if n < 2:
        raise ConfigError(f"a paired comparison needs at least 2 finite pairs, got {n}"
                          + (f" ({excluded} left out for a non-finite value)" if excluded
                             else ""))
    mean_t = t_interval(d, level)
    mean_t = Interval(mean_t.estimate, mean_t.low, mean_t.high, n, n_clusters,
                      f"t interval over {n} pairs, {n - 1} df (pairs as independent)", level,
                      excluded)
    boot: dict[str, Any] = {"items": it, "scheme": scheme, "n_boot": n_boot, "level": level,
                            "seed": seed, "method": "percentile"}
    mean_b = _cluster_interval(d, cl, np.mean, "the mean difference", **boot)
    dz = _dz(d)
    lo, hi = dz_noncentral_ci(dz, n, level)
    dz_nct = Interval(dz, lo, hi, n, n_clusters,
                      f"noncentral t over {n} pairs (pairs as independent)", level, excluded)
    dz_b = _cluster_interval(d, cl, _dz, "d_z", **boot)
    mean_b, dz_b = (Interval(iv.estimate, iv.low, iv.high, n, n_clusters, iv.method, level,
                             excluded) for iv in (mean_b, dz_b))
    with np.errstate(invalid="ignore", divide="ignore"):
        res = stats.ttest_rel(x, y)
    return PairedEffect(mean_diff=mean_t, mean_diff_bootstrap=mean_b, d_z=dz_nct,
                        d_z_bootstrap=dz_b, t=float(res.statistic), df=n - 1,
                        p=float(res.pvalue), n=n, n_clusters=n_clusters,
                        mean_a=float(x.mean()), mean_b=float(y.mean()), n_excluded=excluded)


# --- one family of tests -----------------------------------------------------------------


def family_correction(pvalues: Sequence[float] | np.ndarray, method: str = "holm",
                      alpha: float = 0.05) -> Family:
    """Adjusted p-values and decisions for one family of tests.

    ``bonferroni``: ``min(1, m·p)``. ``holm`` (step-down): sort ascending, multiply the i-th
    smallest (1-based) by ``m - i + 1``, carry the running maximum, cap at 1; it rejects
    everything Bonferroni rejects and controls the same family-wise error rate. Written by hand
    (a few lines) because scipy has no Holm/Bonferroni (only ``false_discovery_control``, which
    controls the FDR, a different error rate) and statsmodels is not a dependency. NaN p-values
    (tests that could not run) get NaN and are not counted in m. ``reject``: adjusted ≤ alpha.
    """
    if method not in ("bonferroni", "holm"):
        raise ConfigError(f"method={method!r}: expected 'bonferroni' or 'holm'")
    if not 0.0 < float(alpha) < 1.0:
        raise ConfigError(f"alpha={alpha}: expected a level in (0, 1)")
    p = np.asarray(pvalues, dtype=np.float64).reshape(-1)
    if np.any((p[np.isfinite(p)] < 0) | (p[np.isfinite(p)] > 1)):
        raise ConfigError(f"pvalues={p.tolist()}: a p-value must lie in [0, 1]")
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    adjusted = np.full(p.shape, np.nan)
    if m:
        if method == "bonferroni":
            adjusted[ok] = np.minimum(1.0, m * p[ok])
        else:
            order = ok[np.argsort(p[ok], kind="stable")]
            steps = (m - np.arange(m)) * p[order]
            adjusted[order] = np.minimum(1.0, np.maximum.accumulate(steps))
    reject = np.isfinite(adjusted) & (adjusted <= alpha)
    return Family(adjusted=adjusted, reject=reject, m=m, method=method, alpha=float(alpha))
