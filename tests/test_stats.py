"""Statistics on constructed data with known answers: t-tests against scipy, Bonferroni
arithmetic, Table 1 against a hand computation, pairing by (seed, clip), graceful skips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from robustmer import EMOTIONS
from robustmer.errors import ConfigError, DatasetError
from robustmer.evaluate.curves import clip_auc, curve_points, mean_ci
from robustmer.evaluate.metrics import per_sample_mae, regression_metrics
from robustmer.evaluate.paired_tests import bonferroni, compare_model_types, paired_ttest
from robustmer.evaluate.planned import ADVERSARIAL, adversarial_comparisons, planned_family
from robustmer.evaluate.study_tables import snr_table, table1, zero_delta_clips
from robustmer.evaluate.summary import clips_frame, run_row

N_CLIPS = 9
SEEDS = (6, 21, 42)


def _run(model_type: str, seed: int, shift: float, rng: np.random.Generator) -> pd.DataFrame:
    # the same targets per seed for every model type, as in a real study (same test split)
    y = np.random.default_rng(seed).uniform(0.1, 0.8, (N_CLIPS, 8))
    p = y + rng.normal(0, 0.05, y.shape)
    a = p + rng.normal(shift, 0.3, y.shape)
    return clips_frame(f"{model_type}-{seed}", model_type, seed,
                       [f"{i:03d}" for i in range(N_CLIPS)], y, p, a,
                       snr_db=rng.uniform(20, 40, N_CLIPS), delta_l2=rng.uniform(0, 1, N_CLIPS),
                       iterations=np.full(N_CLIPS, 10), converged=np.arange(N_CLIPS) % 3 == 0,
                       names=EMOTIONS)


def _study(types: dict[str, float] | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    types = types or {"A2M2E": 0.2, "A2E": 0.6, "A2B2E": 0.5}
    return pd.concat([_run(t, s, shift, rng) for t, shift in types.items() for s in SEEDS],
                     ignore_index=True)


def test_paired_ttest_matches_scipy_and_dz() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(1.0, 1.0, 40)
    b = a - 0.3 + rng.normal(0, 0.5, 40)
    res = paired_ttest(a, b)
    ref = sps.ttest_rel(a, b)
    assert res.t == pytest.approx(ref.statistic) and res.p == pytest.approx(ref.pvalue)
    assert res.df == 39 and res.n == 40
    d = a - b
    assert res.d_z == pytest.approx(d.mean() / d.std(ddof=1))
    assert res.d_z == pytest.approx(res.t / np.sqrt(40))
    assert res.formatted == f"t(39)={ref.statistic:.2f}"
    with pytest.raises(ConfigError, match="at least 2"):
        paired_ttest([1.0], [2.0])


def test_bonferroni_arithmetic() -> None:
    level, dec = bonferroni([0.01, 0.03, float("nan")], alpha=0.06)
    assert level == pytest.approx(0.02)
    assert dec == [True, False, False]
    level, dec = bonferroni([0.024, 0.026])
    assert level == pytest.approx(0.025) and dec == [True, False]
    with pytest.raises(ConfigError, match="alpha"):
        bonferroni([0.1], alpha=1.5)


def test_comparisons_pair_by_seed_and_clip_and_match_scipy() -> None:
    clips = _study()
    shuffled = clips.sample(frac=1.0, random_state=3).reset_index(drop=True)
    out = compare_model_types(shuffled)
    assert [(c.a, c.b) for c in out] == [("A2E", "A2M2E"), ("A2B2E", "A2M2E")]
    for c in out:
        xa = clips[clips["model_type"] == c.a].sort_values(["seed", "clip_id"])
        xb = clips[clips["model_type"] == c.b].sort_values(["seed", "clip_id"])
        ma = per_sample_mae(xa[[f"y_{e}" for e in EMOTIONS]], xa[[f"adv_{e}" for e in EMOTIONS]])
        mb = per_sample_mae(xb[[f"y_{e}" for e in EMOTIONS]], xb[[f"adv_{e}" for e in EMOTIONS]])
        ref = sps.ttest_rel(ma, mb)
        assert c.n == len(SEEDS) * N_CLIPS and c.df == c.n - 1
        assert c.t == pytest.approx(ref.statistic) and c.p == pytest.approx(ref.pvalue)
        assert c.alpha_corrected == pytest.approx(0.025)
        assert c.significant == (ref.pvalue < 0.025)
        assert c.mean_a == pytest.approx(ma.mean())
    # the constructed shifts make A2E clearly worse than A2M2E
    assert out[0].t > 0 and out[0].significant


def test_missing_model_type_is_skipped_with_note_and_bonferroni_counts_run_tests() -> None:
    clips = _study({"A2M2E": 0.2, "A2E": 0.6})
    out = compare_model_types(clips)
    assert not out[0].skipped and out[1].skipped
    assert "A2B2E" in out[1].note and out[1].formatted == "n/a"
    assert out[0].alpha_corrected == pytest.approx(0.05)  # one test run: no correction


def test_unpaired_rows_are_left_out_with_a_note_and_duplicates_refused() -> None:
    clips = _study()
    clips = clips[~((clips["model_type"] == "A2E") & (clips["clip_id"] == "000"))]
    c = compare_model_types(clips)[0]
    assert c.n == len(SEEDS) * (N_CLIPS - 1) and "without a partner" in c.note
    dup = _study()
    extra = dup[(dup["model_type"] == "A2E") & (dup["seed"] == 6)].assign(run_id="again")
    with pytest.raises(DatasetError, match="A2E has more than one row for seed 6"):
        compare_model_types(pd.concat([dup, extra], ignore_index=True))


def test_table1_matches_hand_computation() -> None:
    clips = _study()
    runs = pd.DataFrame([run_row(f"{t}-{s}", t, s,
                                 names=EMOTIONS) for t in ("A2E", "A2B2E", "A2M2E")
                         for s in SEEDS] + [run_row("x", "A2E", 99, "failed", "boom",
                                                    names=EMOTIONS)])
    t1 = table1(runs, clips)
    assert t1["model_type"].tolist() == ["A2E", "A2B2E", "A2M2E"]
    row = t1.iloc[0]
    assert row["n_runs"] == 3 and row["n_not_done"] == 1
    r_vals, adv, delta = [], [], []
    for s in SEEDS:
        g = clips[clips["run_id"] == f"A2E-{s}"]
        y = g[[f"y_{e}" for e in EMOTIONS]].to_numpy()
        p = g[[f"pred_{e}" for e in EMOTIONS]].to_numpy()
        a = g[[f"adv_{e}" for e in EMOTIONS]].to_numpy()
        r_vals.append(np.mean([np.corrcoef(y[:, k], p[:, k])[0, 1] for k in range(8)]))
        adv.append(np.abs(a - y).mean())
        delta.append(np.abs(a - y).mean() - regression_metrics(y, p)["mae"])
    assert row["clean_mean_r_mean"] == pytest.approx(np.mean(r_vals))
    assert row["clean_mean_r_std"] == pytest.approx(np.std(r_vals, ddof=1))
    assert row["adv_mae_mean"] == pytest.approx(np.mean(adv))
    assert row["delta_mae_std"] == pytest.approx(np.std(delta, ddof=1))


def test_single_seed_has_undefined_std_and_snr_table() -> None:
    clips = _study()
    one = clips[clips["seed"] == 6]
    t1 = table1(None, one)
    assert (t1["n_runs"] == 1).all() and t1["adv_mae_std"].isna().all()
    snr = snr_table(None, clips)
    sel = clips[clips["model_type"] == "A2E"]
    row = snr[snr["model_type"] == "A2E"].iloc[0]
    assert row["snr_db_mean"] == pytest.approx(sel["snr_db"].mean())
    assert row["snr_db_std"] == pytest.approx(sel.groupby("seed")["snr_db"].mean().std(ddof=1))
    assert row["converged_frac"] == pytest.approx(3 / 9)
    assert np.isnan(row["delta_linf_mean"])


# --- issue 22: honest intervals, every clip accounted for, one family ----------------------

from robustmer.evaluate.correlations import bootstrap_correlation_ci  # noqa: E402
from robustmer.evaluate.intervals import cluster_bootstrap_ci, paired_effect  # noqa: E402

Y8 = [f"y_{e}" for e in EMOTIONS]
P8 = [f"pred_{e}" for e in EMOTIONS]
A8 = [f"adv_{e}" for e in EMOTIONS]


def _hand_mae(g: pd.DataFrame, cols: list[str]) -> np.ndarray:
    return np.abs(g[cols].to_numpy() - g[Y8].to_numpy()).mean(axis=1)


def test_table1_intervals_are_the_clip_bootstrap_with_n() -> None:
    clips = _study()
    t1 = table1(None, clips, n_boot=300)
    row = t1[t1["model_type"] == "A2E"].iloc[0]
    g = clips[clips["model_type"] == "A2E"]
    assert row["n_clips"] == len(SEEDS) * N_CLIPS and row["n_seeds"] == len(SEEDS)
    delta = _hand_mae(g, A8) - _hand_mae(g, P8)
    ref = cluster_bootstrap_ci(delta, g["seed"], items=g["clip_id"], n_boot=300)
    assert (row["delta_mae_lo"], row["delta_mae_hi"]) == pytest.approx((ref.low, ref.high))
    assert ref.estimate == pytest.approx(row["delta_mae_mean"])  # equal clips per seed
    r = bootstrap_correlation_ci(g[Y8].to_numpy(), g[P8].to_numpy(), g["seed"],
                                 items=g["clip_id"], n_boot=300)
    assert (row["clean_mean_r_lo"], row["clean_mean_r_hi"]) == pytest.approx((r.low, r.high))
    assert r.estimate == pytest.approx(row["clean_mean_r_mean"])
    assert (t1["clean_mean_r_lo"] >= -1).all() and (t1["clean_mean_r_hi"] <= 1).all()
    assert "crossed" in row["mae_method"] and "3 clusters" in row["mae_method"]
    # one seed: the ordinary clip bootstrap, which is scipy.stats.bootstrap's percentile
    one = clips[(clips["seed"] == 6) & (clips["model_type"] == "A2E")]
    row = table1(None, one, n_boot=300).iloc[0]
    ref_sp = sps.bootstrap((_hand_mae(one, A8),), np.mean, n_resamples=300,
                           method="percentile", rng=np.random.default_rng(0))
    assert (row["adv_mae_lo"], row["adv_mae_hi"]) == pytest.approx(
        (ref_sp.confidence_interval.low, ref_sp.confidence_interval.high))
    assert row["n_seeds"] == 1 and row["n_clips"] == N_CLIPS


def test_two_seeds_r_interval_stays_in_range_where_the_t_interval_did_not() -> None:
    """The issue's case: with 2 seeds the t interval (1 df) of a mean r left [-1, 1]."""
    rng = np.random.default_rng(4)
    frames = []
    for s, shift in ((1, 0.0), (2, 0.0)):
        y = rng.uniform(0.1, 0.8, (12, 8))
        a = y + rng.normal(shift, 0.3, y.shape) if s == 1 else 0.5 - (y - 0.45)  # r = -1
        frames.append(clips_frame(f"A2M2E-{s}", "A2M2E", s, [f"{i:03d}" for i in range(12)],
                                  y, y + 0.01, a, names=EMOTIONS))
    clips = pd.concat(frames, ignore_index=True)
    from robustmer.evaluate.summary import summarize_runs
    per_run = summarize_runs(clips)
    _, lo_t, hi_t = mean_ci(per_run["adv_mean_r"])
    assert lo_t < -1.0 or hi_t > 1.0  # what the page used to show
    pts = curve_points(per_run, clips, n_boot=300)
    assert -1.0 <= pts["adv_mean_r_lo"].iloc[0] <= pts["adv_mean_r_hi"].iloc[0] <= 1.0


def _snr_clips() -> pd.DataFrame:
    """Two runs of 4 clips: run 1 clip 0 has δ = 0 and a higher logged error, clip 1 δ = 0 and
    an unchanged error; run 2 clip 0 has no SNR recorded, clip 3 a zero-gradient start."""
    frames = []
    for s in (1, 2):
        y = np.random.default_rng(s).uniform(0.1, 0.8, (4, 8))
        p = y + 0.05
        a = p + 0.1
        snr = np.array([30.0, 31.0, 32.0, 33.0]) + s
        linf = np.full(4, 1e-3)
        zg = np.zeros(4, dtype=bool)
        if s == 1:
            snr[:2], linf[:2] = np.inf, 0.0
            a[1] = p[1]  # δ = 0 and the logged prediction is the clean one
        else:
            snr[0] = np.nan
            zg[3] = True
        frames.append(clips_frame(f"A2E-{s}", "A2E", s, ["a", "b", "c", "d"], y, p, a,
                                  snr_db=snr, delta_linf=linf, zero_grad_start=zg,
                                  converged=[True, False, False, False], names=EMOTIONS))
    clips = pd.concat(frames, ignore_index=True)
    clips["zero_grad_start"] = clips["zero_grad_start"].astype("boolean").fillna(False)
    return clips


def test_snr_table_accounts_for_every_clip() -> None:
    clips = _snr_clips()
    row = snr_table(None, clips, n_boot=200).iloc[0]
    assert row["n_clips"] == 8 and row["n_seeds"] == 2
    assert row["n_zero_delta"] == 2 and row["n_zero_delta_rose"] == 1
    assert row["n_snr_missing"] == 1 and row["n_zero_grad_start"] == 1
    assert row["n_snr"] == 8 - 2 - 1
    finite = np.array([33.0, 34.0, 33.0, 34.0, 35.0])  # run 1: clips c, d; run 2: b, c, d
    assert row["snr_db_mean"] == pytest.approx(finite.mean())
    # the s.d. over seeds of each run's mean over its finite SNRs (an infinite one used to
    # make the run's mean infinite and drop the "±")
    assert row["snr_db_std"] == pytest.approx(np.std([33.5, 34.0], ddof=1))
    ok = np.isfinite(clips["snr_db"].to_numpy())
    ref = cluster_bootstrap_ci(clips["snr_db"][ok], clips["seed"][ok],
                               items=clips["clip_id"][ok], n_boot=200)
    assert (row["snr_db_lo"], row["snr_db_hi"]) == pytest.approx((ref.low, ref.high))
    assert row["converged_frac"] == pytest.approx(2 / 8)
    zero = zero_delta_clips(clips)
    assert zero["clip_id"].tolist() == ["a", "b"] and zero["error_rose"].tolist() == [True,
                                                                                      False]
    g = clips.iloc[:1]
    assert zero["mae_adv"].iloc[0] == pytest.approx(_hand_mae(g, A8)[0])


def test_adversarial_comparisons_come_from_the_registry() -> None:
    assert adversarial_comparisons(["A2E", "aA2E", "aA2B2E", "mine"]) == [("aA2E", "A2E")]
    assert adversarial_comparisons(["aA2B2E", "A2B2E", "aA2E", "A2E"]) == [
        ("aA2E", "A2E"), ("aA2B2E", "A2B2E")]
    assert adversarial_comparisons(["A2E", "A2M2E"]) == []


def _holm(p: list[float]) -> np.ndarray:
    """Holm by its definition: the i-th smallest p times (m - i + 1), running max, cap 1."""
    order = np.argsort(p)
    m = len(p)
    out = np.empty(m)
    running = 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[k]))
        out[k] = running
    return out


def test_planned_family_matches_scipy_and_hand_holm() -> None:
    rng = np.random.default_rng(0)
    frames = []
    for t, shifts in {"A2E": (0.2, 0.5), "A2M2E": (0.15, 0.4), "aA2E": (0.05, 0.1)}.items():
        for s in SEEDS:
            y = np.random.default_rng(s).uniform(0.1, 0.8, (N_CLIPS, 8))
            p = y + rng.normal(0, 0.05, y.shape)
            for eps, sh in zip((1e-3, 1e-2), shifts, strict=True):
                frames.append(clips_frame(f"{t}-{s}", t, s, [f"{i:03d}" for i in range(N_CLIPS)],
                                          y, p, p + rng.normal(sh, 0.2, y.shape), eps=eps,
                                          names=EMOTIONS))
    clips = pd.concat(frames, ignore_index=True)
    fam = planned_family(clips, None, [("A2E", "A2M2E"), ("A2B2E", "A2M2E")], n_boot=200)
    assert fam.pairs == [("A2E", "A2M2E", "planned"), ("A2B2E", "A2M2E", "planned"),
                         ("aA2E", "A2E", "adversarial training")]
    # 3 pairs x (2 budgets + 1 area); the A2B2E tests are skipped and not counted
    assert len(fam.tests) == 9 and fam.m == 6 and fam.method == "holm"
    skipped = [t for t in fam.tests if t.skipped]
    assert len(skipped) == 3 and all("no results for A2B2E" in t.note for t in skipped)
    ran = [t for t in fam.tests if not t.skipped]
    ps = []
    for t in ran:
        if t.scope == "setting":
            sel = clips[np.isclose(clips["eps"], t.setting[2])]
            a = sel[sel["model_type"] == t.a].sort_values(["seed", "clip_id"])
            b = sel[sel["model_type"] == t.b].sort_values(["seed", "clip_id"])
            xa, xb = _hand_mae(a, A8), _hand_mae(b, A8)
            seeds, ids = a["seed"].to_numpy(), a["clip_id"].to_numpy()
        else:
            area = clip_auc(clips, "bim", "spectrogram", [1e-3, 1e-2])
            a = area[area["model_type"] == t.a].sort_values(["seed", "clip_id"])
            b = area[area["model_type"] == t.b].sort_values(["seed", "clip_id"])
            xa, xb = a["value"].to_numpy(), b["value"].to_numpy()
            seeds, ids = a["seed"].to_numpy(), a["clip_id"].to_numpy()
            # the area of a clip by hand: one trapezoid over one decade
            ga = clips[(clips["model_type"] == t.a) & (clips["seed"] == 6)
                       & (clips["clip_id"] == "000")].sort_values("eps")
            d = _hand_mae(ga, A8) - _hand_mae(ga, P8)
            assert xa[0] == pytest.approx((d[0] + d[1]) / 2)
        ref = sps.ttest_rel(xa, xb)
        e = t.effect
        assert e is not None and e.n == len(SEEDS) * N_CLIPS and e.n_clusters == len(SEEDS)
        assert e.t == pytest.approx(ref.statistic) and e.p == pytest.approx(ref.pvalue)
        assert e.df == e.n - 1
        diff = xa - xb
        assert e.mean_diff_bootstrap.estimate == pytest.approx(diff.mean())
        assert e.d_z.estimate == pytest.approx(diff.mean() / diff.std(ddof=1))
        own = paired_effect(xa, xb, seeds, items=ids, n_boot=200)
        assert (e.mean_diff_bootstrap.low, e.d_z_bootstrap.high) == pytest.approx(
            (own.mean_diff_bootstrap.low, own.d_z_bootstrap.high))
        ps.append(ref.pvalue)
    holm = _holm(ps)
    for t, adj in zip(ran, holm, strict=True):
        assert t.p_adjusted == pytest.approx(adj)
        assert t.significant == (adj <= 0.05)
    # the adversarially trained type has the smaller attacked error by construction
    adv = [t for t in ran if t.why == ADVERSARIAL]
    assert all(t.effect.mean_diff_bootstrap.high < 0 and t.significant for t in adv)
    text = fam.statement()
    assert "m = 6" in text and "aA2E vs A2E" in text and "3 test(s) could not be run" in text


def test_planned_test_flags_a_decision_the_bootstrap_does_not_support() -> None:
    clips = _study()
    fam = planned_family(clips, n_boot=200)
    t = fam.tests[0]
    assert t.effect is not None
    from dataclasses import replace

    from robustmer.evaluate.resampling import Interval
    wide = Interval(0.01, -0.02, 0.04, t.effect.n, t.effect.n_clusters, "x", 0.95)
    t2 = replace(t, effect=replace(t.effect, mean_diff_bootstrap=wide), significant=True)
    assert not t2.interval_excludes_zero and not t2.agrees
    assert replace(t2, significant=False).agrees
