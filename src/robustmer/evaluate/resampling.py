"""How the bootstrap intervals of ``evaluate.intervals`` and ``evaluate.correlations`` resample:
the schemes, the seeded draws of seeds and clips, and the replicates turned into a percentile
interval, with ``Interval``, the estimate-interval-and-N record every interval function returns.

Kept apart from the statistics so that the one question "how are seeds and clips drawn?" has one
answer, in one place, for means, differences, effect sizes and correlations alike.

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
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from robustmer.errors import ConfigError

DEFAULT_N_BOOT = 2000
"""Bootstrap replicates by default: Monte-Carlo error of a 95 % percentile bound ~ 0.5 % of
the bootstrap distribution's spread, in well under a second for a study's clips."""

SCHEMES: tuple[str, ...] = ("two-stage", "crossed", "cluster")
"""The cluster-resampling schemes (see the module docstring)."""

_SCHEME_WORDS = {"two-stage": "two-stage cluster bootstrap (seeds, then clips within seeds)",
                 "cluster": "cluster bootstrap (seeds only)",
                 "crossed": "crossed bootstrap (seeds and clips drawn independently)"}


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



# --- checks, designs and draws -------------------------------------------------------------


def check_level(level: float) -> float:
    """``level`` as a float, or ``ConfigError`` unless it is a confidence level in (0, 1)."""
    if not 0.0 < float(level) < 1.0:
        raise ConfigError(f"level={level}: expected a confidence level in (0, 1), e.g. 0.95")
    return float(level)


def check_n_boot(n_boot: int) -> int:
    """``n_boot`` as an int, or ``ConfigError`` with fewer than 10 replicates."""
    if int(n_boot) < 10:
        raise ConfigError(f"n_boot={n_boot}: expected at least 10 bootstrap replicates")
    return int(n_boot)


def as_labels(labels: Sequence[Any] | np.ndarray | None, n: int, name: str
              ) -> np.ndarray | None:
    """``labels`` (cluster or item labels, one per value) as a flat object array, checked to
    hold ``n``; ``None`` stays ``None``. ``name`` names the argument in the error."""
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
class Design:
    """Where each row sits: its cluster (seed) code and, for the crossed scheme, its item
    (clip) code."""

    cluster: np.ndarray
    n_clusters: int
    scheme: str
    item: np.ndarray | None = None
    n_items: int = 0

    def groups(self) -> list[np.ndarray]:
        """The row indices of each cluster, in cluster-code order."""
        return [np.flatnonzero(self.cluster == g) for g in range(self.n_clusters)]


def make_design(n: int, clusters: np.ndarray | None, items: np.ndarray | None,
                scheme: str | None) -> Design:
    """The ``Design`` of ``n`` values with cluster labels ``clusters`` (None: one cluster) and
    item labels ``items``, under ``scheme`` (default: crossed with items, else two-stage).
    ``ConfigError`` for an unknown scheme, or a crossed design without items or with an item
    twice in one cluster."""
    if scheme is None:
        scheme = "crossed" if items is not None else "two-stage"
    if scheme not in SCHEMES:
        raise ConfigError(f"scheme={scheme!r}: expected one of {', '.join(SCHEMES)}")
    cl, G = _codes(clusters) if clusters is not None else (np.zeros(n, np.int64), 1 if n else 0)
    if scheme != "crossed":
        return Design(cl, G, scheme)
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
    return Design(cl, G, scheme, it, n_items)


def draws(design: Design, n_boot: int, rng: np.random.Generator
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


def crossed_counts(design: Design, n_boot: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The crossed scheme's replicates as counts, drawn exactly as :func:`draws` draws them:
    ``(n_boot, G)`` times each seed is drawn and ``(n_boot, n_items)`` times each clip is drawn.
    Row ``r`` then appears ``seeds[b, cluster[r]] * clips[b, item[r]]`` times in replicate
    ``b``, so a weighted statistic computes all replicates at once (one matrix product instead
    of a Python call per replicate; 2000 replicates of a study's clips in milliseconds)."""
    G, n_items = design.n_clusters, design.n_items
    picks = rng.integers(0, G, (n_boot, G))
    seeds = np.zeros((n_boot, G), dtype=np.int64)
    np.add.at(seeds, (np.arange(n_boot)[:, None], picks), 1)
    clips = np.empty((n_boot, n_items), dtype=np.int64)
    for b in range(n_boot):
        clips[b] = np.bincount(rng.integers(0, n_items, n_items), minlength=n_items)
    return seeds, clips


def spread(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``max - min`` of the values drawn (weight > 0) in each replicate: ``(B, n)`` weights and
    ``(n,)`` or ``(n, K)`` values give ``(B,)`` or ``(B, K)``; 0 marks a constant resample
    exactly (weighted moments would leave rounding noise there)."""
    drawn = weights > 0
    v = values if values.ndim == 2 else values[:, None]
    hi = np.where(drawn[:, :, None], v[None], -np.inf).max(axis=1)
    lo = np.where(drawn[:, :, None], v[None], np.inf).min(axis=1)
    out: np.ndarray = hi - lo
    return out if values.ndim == 2 else out[:, 0]


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


def bootstrap_bounds(n: int, design: Design,
                     stat_groups: Callable[[list[np.ndarray]], float], n_boot: int,
                     level: float, seed: int, method: str, what: str,
                     vector: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
                     ) -> tuple[float, float, str]:
    """The interval of ``stat_groups`` (a statistic of a list of per-cluster row indices):
    scipy's clip bootstrap with one cluster, our percentile cluster bootstrap otherwise.
    ``vector`` (optional) computes the same statistic for all crossed replicates at once from
    :func:`crossed_counts`; it is used for the crossed scheme (same draws, same numbers up to
    rounding; tests/test_intervals.py compares the two)."""
    if method not in ("percentile", "bca"):
        raise ConfigError(f"method={method!r}: expected 'percentile' or 'bca'")
    if design.n_clusters <= 1:
        m = "BCa" if method == "bca" else "percentile"
        lo, hi, note = _scipy_bootstrap(n, lambda i: stat_groups([i]), n_boot, level, seed, m)
        return lo, hi, f"{m} bootstrap of {what} over clips (scipy, {n_boot} replicates{note})"
    rng = np.random.default_rng(seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        if vector is not None and design.scheme == "crossed":
            reps = np.asarray(vector(*crossed_counts(design, n_boot, rng)), dtype=np.float64)
        else:
            reps = np.fromiter((stat_groups(g) for g in draws(design, n_boot, rng)),
                               dtype=np.float64, count=n_boot)
    lo, hi, bad = _percentile(reps, level)
    note = "" if method == "percentile" else "; BCa needs a single cluster"
    if bad:
        note += f"; {bad} replicates undefined, left out"
    return lo, hi, (f"percentile {_SCHEME_WORDS[design.scheme]} of {what} "
                    f"({design.n_clusters} clusters, {n_boot} replicates{note})")


