"""evaluate.intervals, .correlations and .resampling: known answers (t interval, d_z, Fisher z,
Holm), agreement with scipy (bootstrap, ttest_rel, nct), determinism, correlations inside
[-1, 1], and coverage sanity of the cluster bootstrap on simulated nested and crossed data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from robustmer.errors import ConfigError
from robustmer.evaluate import correlations as cor
from robustmer.evaluate import intervals as iv
from robustmer.evaluate import resampling as rs


def test_t_interval_and_d_z_known_vector() -> None:
    # differences 1..5: mean 3, sd sqrt(2.5), t(0.975, 4) = 2.776445, half = 1.963243
    e = iv.paired_effect([2, 4, 6, 8, 10], [1, 2, 3, 4, 5])
    assert e.mean_diff.estimate == pytest.approx(3.0)
    assert (e.mean_diff.low, e.mean_diff.high) == pytest.approx((1.036757, 4.963243), abs=1e-5)
    assert e.d_z.estimate == pytest.approx(3 / math.sqrt(2.5))
    assert (e.n, e.n_clusters, e.df) == (5, 1, 4)
    ref = stats.ttest_rel([2, 4, 6, 8, 10], [1, 2, 3, 4, 5])
    assert e.t == pytest.approx(ref.statistic) and e.p == pytest.approx(ref.pvalue)
    assert e.t == pytest.approx(e.d_z.estimate * math.sqrt(5))  # d_z = t / sqrt(n)
    assert (e.mean_a, e.mean_b) == pytest.approx((6.0, 3.0))


def test_paired_effect_drops_non_finite_pairs_and_counts_them() -> None:
    e = iv.paired_effect([1.0, 2.0, np.nan, 4.0, 3.5], [0.5, 1.0, 1.0, 3.0, np.inf])
    assert e.n == 3 and e.n_excluded == 2 and e.mean_diff.n_excluded == 2
    with pytest.raises(ConfigError, match="at least 2 finite pairs"):
        iv.paired_effect([1.0, np.nan], [0.0, 0.0])
    with pytest.raises(ConfigError, match="equal length"):
        iv.paired_effect([1.0, 2.0], [1.0])


def test_d_z_noncentral_interval_inverts_nct_and_matches_large_n_approximation() -> None:
    n, d = 12, 0.8
    lo, hi = iv.dz_noncentral_ci(d, n, 0.95)
    t_obs = d * math.sqrt(n)
    assert stats.nct.cdf(t_obs, n - 1, lo * math.sqrt(n)) == pytest.approx(0.975, abs=1e-8)
    assert stats.nct.cdf(t_obs, n - 1, hi * math.sqrt(n)) == pytest.approx(0.025, abs=1e-8)
    assert lo < d < hi
    # symmetric around 0 for d = 0
    lo0, hi0 = iv.dz_noncentral_ci(0.0, n)
    assert lo0 == pytest.approx(-hi0, abs=1e-9)
    # large n: d ± z · sqrt(1/n + d²/(2n))
    n, d = 400, 0.5
    lo, hi = iv.dz_noncentral_ci(d, n)
    half = stats.norm.ppf(0.975) * math.sqrt(1 / n + d * d / (2 * n))
    assert (lo, hi) == pytest.approx((d - half, d + half), abs=0.01)


def test_d_z_noncentral_interval_covers_on_normal_differences() -> None:
    rng = np.random.default_rng(7)
    hits = sum(iv.dz_noncentral_ci(float(np.mean(x) / np.std(x, ddof=1)), 15)[0] <= 0.5
               <= iv.dz_noncentral_ci(float(np.mean(x) / np.std(x, ddof=1)), 15)[1]
               for x in (rng.normal(0.5, 1.0, 15) for _ in range(150)))
    assert 0.88 <= hits / 150 <= 0.995


def test_single_cluster_is_scipys_ordinary_bootstrap() -> None:
    v = np.random.default_rng(3).normal(size=40)
    ours = iv.cluster_bootstrap_ci(v, None, np.mean, n_boot=999, seed=5)
    ref = stats.bootstrap((v,), np.mean, n_resamples=999, method="percentile",
                          vectorized=False, rng=np.random.default_rng(5))
    assert (ours.low, ours.high) == pytest.approx(
        (ref.confidence_interval.low, ref.confidence_interval.high))
    same = iv.cluster_bootstrap_ci(v, ["s1"] * len(v), np.mean, n_boot=999, seed=5)
    assert (same.low, same.high) == (ours.low, ours.high) and same.n_clusters == 1
    bca = iv.cluster_bootstrap_ci(v, None, np.mean, n_boot=999, seed=5, method="bca")
    ref = stats.bootstrap((v,), np.mean, n_resamples=999, method="BCa", vectorized=False,
                          rng=np.random.default_rng(5))
    assert bca.low == pytest.approx(ref.confidence_interval.low) and "BCa" in bca.method
    assert ours.estimate == pytest.approx(v.mean()) and ours.n == 40


def test_cluster_bootstrap_is_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=60)
    cl = np.repeat(["a", "b", "c", "d", "e", "f"], 10)
    items = np.tile(np.arange(10).astype(str), 6)
    for kw in ({"scheme": "two-stage"}, {"scheme": "cluster"}, {"items": items}):
        a = iv.cluster_bootstrap_ci(v, cl, n_boot=200, seed=11, **kw)
        b = iv.cluster_bootstrap_ci(v, cl, n_boot=200, seed=11, **kw)
        c = iv.cluster_bootstrap_ci(v, cl, n_boot=200, seed=12, **kw)
        assert (a.low, a.high) == (b.low, b.high)
        assert (a.low, a.high) != (c.low, c.high)
        assert a.n == 60 and a.n_clusters == 6 and a.estimate == pytest.approx(v.mean())
    assert "crossed" in iv.cluster_bootstrap_ci(v, cl, items=items, n_boot=20).method
    assert "two-stage" in iv.cluster_bootstrap_ci(v, cl, n_boot=20).method


def test_undefined_replicates_are_left_out_not_propagated() -> None:
    # d_z of a resample of equal differences is undefined; the interval stays finite
    e = iv.paired_effect([2, 4, 6, 8, 10], [1, 2, 3, 4, 5], n_boot=2000, seed=0)
    assert np.isfinite(e.d_z_bootstrap.low) and np.isfinite(e.d_z_bootstrap.high)
    assert "undefined" in e.d_z_bootstrap.method


def test_cluster_bootstrap_counts_excluded_values_and_refuses_bad_input() -> None:
    r = iv.cluster_bootstrap_ci([1.0, np.nan, 2.0, 3.0, np.inf], n_boot=50)
    assert r.n == 3 and r.n_excluded == 2
    with pytest.raises(ConfigError, match="more than once"):
        iv.cluster_bootstrap_ci([1.0, 2.0, 3.0], [0, 0, 1], items=["x", "x", "x"])
    with pytest.raises(ConfigError, match="needs items"):
        iv.cluster_bootstrap_ci([1.0, 2.0, 3.0], [0, 0, 1], scheme="crossed")
    with pytest.raises(ConfigError, match="scheme"):
        iv.cluster_bootstrap_ci([1.0, 2.0, 3.0], scheme="jackknife")
    with pytest.raises(ConfigError, match="level"):
        iv.cluster_bootstrap_ci([1.0, 2.0, 3.0], level=95)
    with pytest.raises(ConfigError, match="3 values"):
        iv.cluster_bootstrap_ci([1.0, 2.0, 3.0], [0, 1])


def _coverage(gen, scheme: str, draws: int, n_boot: int) -> float:
    rng = np.random.default_rng(2024)
    hits = 0
    for k in range(draws):
        v, cl, items = gen(rng)
        r = iv.cluster_bootstrap_ci(v, cl, items=items if scheme == "crossed" else None,
                                    scheme=scheme, n_boot=n_boot, seed=k)
        hits += r.low <= 0.0 <= r.high
    return hits / draws


def _nested(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, None]:
    G, n = 8, 12  # seed effect sd 0.5, clip sd 1, true mean 0
    v = rng.normal(0, 0.5, G)[:, None] + rng.normal(0, 1, (G, n))
    return v.ravel(), np.repeat(np.arange(G), n), None


def _crossed(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    G, n = 4, 30  # the same 30 clips under 4 seeds: clip effect shared by every seed
    v = (rng.normal(0, 0.2, G)[:, None] + rng.normal(0, 1, n)[None, :]
         + rng.normal(0, 0.3, (G, n)))
    return v.ravel(), np.repeat(np.arange(G), n), np.tile(np.arange(n), G)


def test_coverage_two_stage_on_nested_normal_data() -> None:
    # few clusters: t-like tails the percentile interval does not widen for; ~0.92 expected
    assert 0.88 <= _coverage(_nested, "two-stage", 200, 200) <= 0.99


def test_coverage_crossed_scheme_on_crossed_data_and_why_it_is_the_default() -> None:
    crossed = _coverage(_crossed, "crossed", 200, 200)
    assert 0.88 <= crossed <= 0.99
    # resampling clips independently per seed divides the shared clip variance by G: too narrow
    assert _coverage(_crossed, "two-stage", 200, 200) < crossed - 0.08


def test_coverage_ordinary_bootstrap_single_cluster() -> None:
    rng = np.random.default_rng(8)
    hits = 0
    for k in range(200):
        v = rng.normal(1.0, 2.0, 30)
        r = iv.cluster_bootstrap_ci(v, n_boot=300, seed=k)
        hits += r.low <= 1.0 <= r.high
    assert 0.88 <= hits / 200 <= 0.99


def test_paired_effect_bootstrap_intervals_with_clusters() -> None:
    rng = np.random.default_rng(1)
    G, n = 3, 25
    a = rng.normal(0.3, 0.1, (G, n)) + rng.normal(0, 0.05, n)
    b = a - 0.05 + rng.normal(0, 0.05, (G, n))
    cl = np.repeat(["s0", "s1", "s2"], n)
    items = np.tile([f"c{i}" for i in range(n)], G)
    e = iv.paired_effect(a.ravel(), b.ravel(), cl, items=items, n_boot=400, seed=3)
    assert e.n == G * n and e.n_clusters == 3
    for interval in (e.mean_diff, e.mean_diff_bootstrap, e.d_z, e.d_z_bootstrap):
        assert interval.low < interval.estimate < interval.high
        assert interval.n == G * n and interval.n_clusters == 3
    assert "crossed" in e.mean_diff_bootstrap.method and "d_z" in e.d_z_bootstrap.method
    d = e.to_dict()
    assert d["mean_diff_bootstrap_low"] == e.mean_diff_bootstrap.low and d["n"] == G * n


def test_fisher_z_known_values_and_vectorised() -> None:
    # textbook: r = .5, n = 28: z = 0.5493, se = 0.2, z ± 1.96·0.2 -> tanh -> [0.156, 0.736]
    r = cor.fisher_z_ci(0.5, 28)
    assert (r.low, r.high) == pytest.approx((math.tanh(0.549306 - 0.391993),
                                             math.tanh(0.549306 + 0.391993)), abs=1e-5)
    assert (r.low, r.high) == pytest.approx((0.156, 0.736), abs=5e-4)
    assert r.n == 28
    v = cor.fisher_z_ci([0.5, -0.3, 0.9, np.nan, 1.0], [28, 3, 10, 50, 10])
    assert v.low[0] == pytest.approx(r.low) and np.isnan(v.low[1]) and np.isnan(v.high[3])
    assert v.low[4] == v.high[4] == 1.0  # a perfect correlation: [1, 1]
    assert list(v.n) == [28, 3, 10, 50, 10]
    with pytest.raises(ConfigError, match=r"\[-1, 1\]"):
        cor.fisher_z_ci(1.2, 10)


@settings(max_examples=60, deadline=None)
@given(st.floats(-1.0, 1.0), st.integers(0, 10_000), st.floats(0.5, 0.999))
def test_fisher_z_ci_inside_minus_one_one(r: float, n: int, level: float) -> None:
    ci = cor.fisher_z_ci(r, n, level)
    if n <= 3:
        assert math.isnan(ci.low) and math.isnan(ci.high)
    else:
        assert -1.0 <= ci.low <= r <= ci.high <= 1.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1.0, 1.0), min_size=2, max_size=6), st.floats(0.5, 0.999))
def test_mean_correlation_ci_inside_minus_one_one_even_with_two_seeds(
        rs: list[float], level: float) -> None:
    ci = cor.mean_correlation_ci(rs, level=level)
    assert -1.0 <= ci.low <= ci.estimate <= ci.high <= 1.0
    assert ci.n == len(rs) and ci.n_clusters == len(rs)


def test_mean_correlation_ci_averages_z_with_a_t_quantile() -> None:
    rs = [0.6, 0.7, 0.8]
    z = np.arctanh(rs)
    half = stats.t.ppf(0.975, 2) * z.std(ddof=1) / math.sqrt(3)
    ci = cor.mean_correlation_ci(rs)
    assert ci.estimate == pytest.approx(math.tanh(z.mean()))
    assert (ci.low, ci.high) == pytest.approx((math.tanh(z.mean() - half),
                                               math.tanh(z.mean() + half)))
    one = cor.mean_correlation_ci([0.5], [28])
    assert (one.low, one.high) == pytest.approx((cor.fisher_z_ci(0.5, 28).low,
                                                 cor.fisher_z_ci(0.5, 28).high))
    assert math.isnan(cor.mean_correlation_ci([0.5]).low)
    nan = cor.mean_correlation_ci([0.5, np.nan, 0.7])
    assert nan.n == 2 and nan.n_excluded == 1


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(4, 25), st.integers(1, 3), st.floats(-2.0, 2.0))
def test_bootstrap_correlation_ci_inside_minus_one_one(seed: int, n: int, seeds: int,
                                                       slope: float) -> None:
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n * seeds, 3))
    p = slope * y + rng.normal(size=y.shape)
    cl = np.repeat(np.arange(seeds), n)
    items = np.tile(np.arange(n), seeds)
    ci = cor.bootstrap_correlation_ci(y, p, cl, items=items, n_boot=40, seed=seed)
    assert -1.0 <= ci.low <= ci.high <= 1.0 and -1.0 <= ci.estimate <= 1.0
    assert ci.n == n * seeds and ci.n_clusters == seeds


def test_bootstrap_correlation_ci_estimate_is_the_mean_over_seeds_of_mean_r() -> None:
    from robustmer.evaluate.metrics import regression_metrics

    rng = np.random.default_rng(4)
    y = rng.normal(size=(60, 4))
    p = y + rng.normal(size=y.shape)
    cl = np.repeat([1, 2], 30)
    ci = cor.bootstrap_correlation_ci(y, p, cl, n_boot=100)
    want = np.mean([regression_metrics(y[:30], p[:30])["mean_r"],
                    regression_metrics(y[30:], p[30:])["mean_r"]])
    assert ci.estimate == pytest.approx(want)
    assert ci.low < ci.estimate < ci.high
    single = cor.bootstrap_correlation_ci(y, p, n_boot=300, seed=1, method="bca")
    assert single.estimate == pytest.approx(regression_metrics(y, p)["mean_r"])
    assert "BCa" in single.method and -1 <= single.low < single.high <= 1


def test_holm_and_bonferroni_hand_example() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 -> running max 0.06
    holm = iv.family_correction(p, "holm")
    assert holm.adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm.reject.tolist() == [True, False, False, True] and holm.m == 4
    bonf = iv.family_correction(p, "bonferroni")
    assert bonf.adjusted == pytest.approx([0.04, 0.16, 0.12, 0.02])
    # Holm rejects at least what Bonferroni rejects; at alpha 0.07 it rejects more
    assert iv.family_correction(p, "holm", 0.07).reject.sum() == 4
    assert iv.family_correction(p, "bonferroni", 0.07).reject.sum() == 2
    nan = iv.family_correction([0.02, np.nan, 0.5], "bonferroni")
    assert nan.m == 2 and np.isnan(nan.adjusted[1]) and not nan.reject[1]
    assert nan.adjusted[2] == 1.0
    with pytest.raises(ConfigError, match="method"):
        iv.family_correction(p, "bh")


def _loop_and_vector(design: rs.Design, stat_groups, vector, n_boot: int = 300
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The replicates of one statistic by the per-replicate loop and by the counts."""
    rng = np.random.default_rng(7)
    with np.errstate(invalid="ignore", divide="ignore"):
        loop = np.array([stat_groups(g) for g in rs.draws(design, n_boot, rng)])
    rng = np.random.default_rng(7)
    return loop, vector(*rs.crossed_counts(design, n_boot, rng))


@pytest.mark.parametrize("missing", [False, True])
def test_crossed_replicates_at_once_equal_the_loop(missing: bool) -> None:
    """The vectorised crossed bootstrap (means, d_z, mean-over-outputs r) draws the same
    replicates as the loop over ``resampling.draws`` and gives the same statistic in each, including
    resamples that are constant (r and d_z undefined) and seeds that miss some clips."""
    rng = np.random.default_rng(1)
    seeds, clips = np.repeat([1, 2, 3], 6), np.tile([f"c{i}" for i in range(6)], 3)
    keep = np.ones(len(seeds), bool)
    if missing:
        keep[[2, 9, 10]] = False  # seed 1 misses c2, seed 2 misses c3 and c4
    seeds, clips = seeds[keep], clips[keep]
    y = rng.normal(size=(len(seeds), 3))
    y[:, 2] = np.round(y[:, 2])  # ties: some resamples of this output are constant
    pred = y + rng.normal(scale=0.5, size=y.shape)
    d = np.round(rng.normal(size=len(seeds)), 0)  # ties: some d_z undefined
    design = rs.make_design(len(seeds), rs.as_labels(seeds, len(seeds), "c"),
                            rs.as_labels(clips, len(seeds), "i"), None)
    assert design.scheme == "crossed"

    def mean_groups(groups: list[np.ndarray]) -> float:
        idx = np.concatenate(groups)
        return float(np.mean(d[idx])) if len(idx) else float("nan")

    def dz_groups(groups: list[np.ndarray]) -> float:
        return iv._dz(d[np.concatenate(groups)])

    def r_groups(groups: list[np.ndarray]) -> float:
        vals = [cor._mean_r(y[g], pred[g]) for g in groups if len(g) > 1]
        vals = [v for v in vals if np.isfinite(v)]
        return float(np.mean(vals)) if vals else float("nan")

    for groups, vector in ((mean_groups, iv._weighted_mean_reps(d, design)),
                           (dz_groups, iv._weighted_dz_reps(d, design)),
                           (r_groups, cor._weighted_r_reps(y, pred, design))):
        loop, fast = _loop_and_vector(design, groups, vector)
        np.testing.assert_array_equal(np.isnan(loop), np.isnan(fast))
        np.testing.assert_allclose(fast, loop, rtol=1e-9, atol=1e-12, equal_nan=True)
    _, fast_dz = _loop_and_vector(design, dz_groups, iv._weighted_dz_reps(d, design))
    assert np.isnan(fast_dz).any() or missing  # the constant-resample path was exercised
