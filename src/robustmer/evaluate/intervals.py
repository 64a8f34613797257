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
* ``fisher_z_ci``: one Pearson r of n pairs; ``mean_correlation_ci``: an r averaged over seeds;
  ``bootstrap_correlation_ci``: a mean-over-outputs r with clips resampled. All stay in [-1, 1].
* ``family_correction``: Bonferroni or Holm over *one* family of tests.

The resampling schemes (``scheme=``) and why the defaults are what they are
------------------------------------------------------------------------------
With clusters (seeds) ``g = 1..G`` holding clips ``i``:

* ``"cluster"``: draw G seeds with replacement, keep each drawn seed's clips as they are. Field &
  Welsh (2007, JRSS B 69:369) show that this cluster bootstrap gives consistent variance estimates
  under both the random-effect and the transformation model, *as the number of clusters grows*.
  With the 3-5 seeds of a study it has at most C(2G-1, G) distinct resamples (10 for G = 3), its
  variance is shrunk by (G-1)/G, and its percentile interval is too narrow and lumpy.
* ``"two-stage"``: draw G seeds with replacement, then each drawn seed's clips with replacement.
  The second stage adds the within-seed variance a second time (Davison & Hinkley 1997, sec. 3.8),
  so it is conservative when clusters are many; with few seeds that extra width is what keeps the
  clip-sampling variance in the interval at all, so we prefer erring on the wide side.
* ``"crossed"``: the study's seeds are evaluated on *the same* test clips, so seeds and clips are
  crossed, not nested. Owen's (2007, Ann. Appl. Stat. 1:386) pigeonhole bootstrap draws seeds
  and clip ids independently, with replacement, and keeps every (drawn seed, drawn clip) cell;
  it is mildly conservative for crossed random effects. The two-stage scheme would draw clips
  independently per seed and so divide the clip variance by G (too narrow) on crossed data.

Default: ``"crossed"`` when clip ids (``items``) are given, else ``"two-stage"``. With a single
cluster every scheme is the ordinary clip bootstrap, and we hand it to ``scipy.stats.bootstrap``
(which also offers BCa). BCa's acceleration needs a jackknife over independent units, which scipy
does over rows; with several clusters the interval is the percentile interval of our own
resampler, and ``Interval.method`` says so. Every resampler is seeded: a seed fixes the result.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats

from robustmer.errors import ConfigError
from robustmer.evaluate.metrics import pearson_r

DEFAULT_N_BOOT = 2000
"""Bootstrap replicates by default: Monte-Carlo error of a 95 % percentile bound ~ 0.5 % of
the bootstrap distribution's spread, in well under a second for a study's clips."""

SCHEMES: tuple[str, ...] = ("two-stage", "crossed", "cluster")
"""The cluster-resampling schemes (see the module docstring)."""

_SCHEME_WORDS = {"two-stage": "two-stage cluster bootstrap (seeds, then clips within seeds)",
                 "cluster": "cluster bootstrap (seeds only)",
                 "crossed": "crossed bootstrap (seeds and clips drawn independently)"}

R_CLIP = 1.0 - 1e-12
"""r = ±1 becomes ±R_CLIP before ``arctanh``, so that a perfect correlation has a finite z."""


@dataclass(frozen=True)
class Interval:
    """An estimate, its two-sided ``level`` interval ``[low, high]`` and the sample behind it:
    ``n`` observations (clips, clip rows, pairs, or correlations averaged), ``n_clusters``
    clusters (seeds; 1 when not clustered), ``n_excluded`` non-finite values left out, and the
    ``method`` in words. Fields are floats, or arrays for the vectorised ``fisher_z_ci``."""

    estimate: Any
    low: Any
    high: Any
    n: Any
    n_clusters: int
    method: str
    level: float
    n_excluded: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (arrays become lists) for JSON and tables."""
        d = asdict(self)
        return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in d.items()}

    def format(self, digits: int = 3) -> str:
        """``0.123 [0.100, 0.150]`` (scalar intervals)."""
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


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


# --- checks and the resampler -------------------------------------------------------------


def _check_level(level: float) -> float:
    if not 0.0 < float(level) < 1.0:
        raise ConfigError(f"level={level}: expected a confidence level in (0, 1), e.g. 0.95")
    return float(level)


def _check_n_boot(n_boot: int) -> int:
    if int(n_boot) < 10:
        raise ConfigError(f"n_boot={n_boot}: expected at least 10 bootstrap replicates")
    return int(n_boot)


def _labels(labels: Sequence[Any] | np.ndarray | None, n: int, name: str) -> np.ndarray | None:
    if labels is None:
        return None
    arr = np.asarray(labels, dtype=object).reshape(-1)
    if len(arr) != n:
        raise ConfigError(f"{name}: {len(arr)} labels for {n} values")
    return arr


def _codes(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Integer codes 0..K-1 of hashable labels, in order of first appearance."""
    order: dict[Any, int] = {}
    codes = np.fromiter((order.setdefault(v, len(order)) for v in labels.tolist()),
                        dtype=np.int64, count=len(labels))
    return codes, len(order)


@dataclass
class _Design:
    """Where each row sits: its cluster (seed) code and, for the crossed scheme, its item
    (clip) code."""

    cluster: np.ndarray
    n_clusters: int
    scheme: str
    item: np.ndarray | None = None
    n_items: int = 0

    def groups(self) -> list[np.ndarray]:
        return [np.flatnonzero(self.cluster == g) for g in range(self.n_clusters)]


def _design(n: int, clusters: np.ndarray | None, items: np.ndarray | None,
            scheme: str | None) -> _Design:
    if scheme is None:
        scheme = "crossed" if items is not None else "two-stage"
    if scheme not in SCHEMES:
        raise ConfigError(f"scheme={scheme!r}: expected one of {', '.join(SCHEMES)}")
    cl, G = _codes(clusters) if clusters is not None else (np.zeros(n, np.int64), 1 if n else 0)
    if scheme != "crossed":
        return _Design(cl, G, scheme)
    if items is None:
        raise ConfigError("scheme='crossed' needs items (the clip id of each value)")
    it, n_items = _codes(items)
    pair = cl * max(n_items, 1) + it
    uniq, counts = np.unique(pair, return_counts=True)
    if (counts > 1).any():
        dup = int(uniq[counts > 1][0])
        row = int(np.flatnonzero(pair == dup)[0])
        where = f"cluster {clusters[row]!r}, " if clusters is not None else ""
        raise ConfigError(f"items: {where}item {items[row]!r} appears more than once; the "
                          "crossed scheme needs one value per (cluster, item)")
    return _Design(cl, G, scheme, it, n_items)


def _draws(design: _Design, n_boot: int, rng: np.random.Generator
           ) -> Iterator[list[np.ndarray]]:
    """Per replicate: one array of row indices per drawn cluster (a cluster drawn twice comes
    twice), by ``design.scheme``."""
    G = design.n_clusters
    groups = design.groups()
    sizes = np.array([len(g) for g in groups], dtype=np.int64)
    flat = np.concatenate(groups) if groups else np.zeros(0, np.int64)  # rows by cluster
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    table = None
    if design.scheme == "crossed":
        table = np.full((G, design.n_items), -1, dtype=np.int64)
        table[design.cluster, design.item] = np.arange(len(design.cluster))
    picks = rng.integers(0, G, (n_boot, G))
    for pick in picks:
        if design.scheme == "cluster":
            yield [groups[g] for g in pick]
        elif design.scheme == "two-stage":
            # clips with replacement inside every drawn seed, in one draw of uniforms
            m = sizes[pick]
            local = (rng.random(int(m.sum())) * np.repeat(m, m)).astype(np.int64)
            rows = flat[np.repeat(starts[pick], m) + local]
            yield np.split(rows, np.cumsum(m)[:-1])
        else:
            assert table is not None
            cols = rng.integers(0, design.n_items, design.n_items)
            cells = table[pick][:, cols]
            yield [r[r >= 0] for r in cells]


def _percentile(reps: np.ndarray, level: float) -> tuple[float, float, int]:
    """The percentile interval of the finite replicates and how many were not finite."""
    ok = reps[np.isfinite(reps)]
    bad = int(len(reps) - len(ok))
    if len(ok) == 0:
        return float("nan"), float("nan"), bad
    lo, hi = np.quantile(ok, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi), bad


def _scipy_bootstrap(n: int, stat_rows: Callable[[np.ndarray], float], n_boot: int,
                     level: float, seed: int, method: str) -> tuple[float, float, str]:
    """``scipy.stats.bootstrap`` of a statistic of rows, over the row indices (so any statistic
    of several columns can be resampled as pairs), ``method`` 'percentile' or 'BCa'. scipy
    returns NaN bounds when a replicate is undefined (e.g. d_z of a resample of equal values);
    then the percentile interval of the defined replicates is given and the note says so."""
    idx = np.arange(n)
    kwargs: dict[str, Any] = {"n_resamples": n_boot, "confidence_level": level,
                              "method": method, "vectorized": False}
    rng = np.random.default_rng(seed)
    # scipy >= 1.15 names the generator ``rng``; older releases ``random_state``
    if "rng" in inspect.signature(stats.bootstrap).parameters:
        kwargs["rng"] = rng
    else:  # pragma: no cover - older scipy
        kwargs["random_state"] = rng
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap((idx,), lambda i: stat_rows(np.asarray(i, dtype=np.int64)),
                              **kwargs)
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    reps = np.asarray(res.bootstrap_distribution, dtype=np.float64)
    if (np.isfinite(lo) and np.isfinite(hi)) or not np.isfinite(reps).any():
        return lo, hi, ""
    lo, hi, bad = _percentile(reps, level)
    return lo, hi, (f"; {bad} replicates undefined, left out"
                    + ("; percentile, as BCa is undefined" if method == "BCa" else ""))


def _boot(n: int, design: _Design, stat_groups: Callable[[list[np.ndarray]], float],
          n_boot: int, level: float, seed: int, method: str, what: str
          ) -> tuple[float, float, str]:
    """The interval of ``stat_groups`` (a statistic of a list of per-cluster row indices):
    scipy's clip bootstrap with one cluster, our percentile cluster bootstrap otherwise."""
    if method not in ("percentile", "bca"):
        raise ConfigError(f"method={method!r}: expected 'percentile' or 'bca'")
    if design.n_clusters <= 1:
        m = "BCa" if method == "bca" else "percentile"
        lo, hi, note = _scipy_bootstrap(n, lambda i: stat_groups([i]), n_boot, level, seed, m)
        return lo, hi, f"{m} bootstrap of {what} over clips (scipy, {n_boot} replicates{note})"
    rng = np.random.default_rng(seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = np.fromiter((stat_groups(g) for g in _draws(design, n_boot, rng)),
                           dtype=np.float64, count=n_boot)
    lo, hi, bad = _percentile(reps, level)
    note = "" if method == "percentile" else "; BCa needs a single cluster"
    if bad:
        note += f"; {bad} replicates undefined, left out"
    return lo, hi, (f"percentile {_SCHEME_WORDS[design.scheme]} of {what} "
                    f"({design.n_clusters} clusters, {n_boot} replicates{note})")


# --- means and paired differences ---------------------------------------------------------


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
    seed saw the same clips; without it the two-stage scheme is used (module docstring). With one
    cluster this is the ordinary clip bootstrap (``scipy.stats.bootstrap``; ``method="bca"``
    gives BCa there). Non-finite values are left out and counted in ``n_excluded``.
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
    level, n_boot = _check_level(level), _check_n_boot(n_boot)
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    cl = _labels(clusters, len(v), "clusters")
    it = _labels(items, len(v), "items")
    keep = np.isfinite(v)
    v = v[keep]
    cl = None if cl is None else cl[keep]
    it = None if it is None else it[keep]
    excluded = int((~keep).sum())
    design = _design(len(v), cl, it, scheme)
    if len(v) < 2:
        est = float(stat(v)) if len(v) else float("nan")
        return Interval(est, float("nan"), float("nan"), len(v), design.n_clusters,
                        "bootstrap needs at least 2 values", level, excluded)

    def stat_groups(groups: list[np.ndarray]) -> float:
        idx = groups[0] if len(groups) == 1 else np.concatenate(groups)
        return float(stat(v[idx])) if len(idx) else float("nan")

    lo, hi, how = _boot(len(v), design, stat_groups, n_boot, level, seed, method, what)
    return Interval(float(stat(v)), lo, hi, len(v), design.n_clusters, how, level, excluded)


def t_interval(values: Sequence[float] | np.ndarray, level: float = 0.95) -> Interval:
    """Mean and its two-sided t interval ``mean ± t(n-1) · sd/√n`` (sd ddof=1) over the finite
    values, treating them as independent; NaN bounds with fewer than 2 values."""
    level = _check_level(level)
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
    level = _check_level(level)
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
    level = _check_level(level)
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ConfigError(f"paired samples must have equal length, got {len(x)} and {len(y)}")
    cl = _labels(clusters, len(x), "clusters")
    it = _labels(items, len(x), "items")
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


# --- correlations ------------------------------------------------------------------------


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
    level = _check_level(level)
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
    level = _check_level(level)
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
    level, n_boot = _check_level(level), _check_n_boot(n_boot)
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.ndim == 1:
        t, p = t[:, None], p[:, None]
    if t.shape != p.shape or t.ndim != 2:
        raise ConfigError(f"y_true and y_pred must be equal (N, K) arrays, got {t.shape} and "
                          f"{p.shape}")
    cl = _labels(clusters, len(t), "clusters")
    it = _labels(items, len(t), "items")
    keep = np.isfinite(t).all(axis=1) & np.isfinite(p).all(axis=1)
    t, p = t[keep], p[keep]
    cl = None if cl is None else cl[keep]
    it = None if it is None else it[keep]
    excluded = int((~keep).sum())
    design = _design(len(t), cl, it, scheme)

    def stat_groups(groups: list[np.ndarray]) -> float:
        vals = [_mean_r(t[g], p[g]) for g in groups if len(g) > 1]
        vals = [v for v in vals if np.isfinite(v)]
        return float(np.mean(vals)) if vals else float("nan")

    est = stat_groups(design.groups())
    if len(t) < 3:
        return Interval(est, float("nan"), float("nan"), len(t), design.n_clusters,
                        "bootstrap of r needs at least 3 clips", level, excluded)
    lo, hi, how = _boot(len(t), design, stat_groups, n_boot, level, seed, method,
                        "the mean-over-outputs r")
    # a mean of correlations is in [-1, 1]; clip rounding (and BCa's extrapolated quantiles)
    lo, hi = (float(np.clip(x, -1.0, 1.0)) if np.isfinite(x) else x for x in (lo, hi))
    return Interval(est, lo, hi, len(t), design.n_clusters, how, level, excluded)


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
