"""Statistics on constructed data with known answers: t-tests against scipy, Bonferroni
arithmetic, Table 1 against a hand computation, pairing by (seed, clip), graceful skips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from robustmer import EMOTIONS
from robustmer.errors import ConfigError, DatasetError
from robustmer.evaluate import stats
from robustmer.evaluate.metrics import per_sample_mae, regression_metrics
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
    res = stats.paired_ttest(a, b)
    ref = sps.ttest_rel(a, b)
    assert res.t == pytest.approx(ref.statistic) and res.p == pytest.approx(ref.pvalue)
    assert res.df == 39 and res.n == 40
    d = a - b
    assert res.d_z == pytest.approx(d.mean() / d.std(ddof=1))
    assert res.d_z == pytest.approx(res.t / np.sqrt(40))
    assert res.formatted == f"t(39)={ref.statistic:.2f}"
    with pytest.raises(ConfigError, match="at least 2"):
        stats.paired_ttest([1.0], [2.0])


def test_bonferroni_arithmetic() -> None:
    level, dec = stats.bonferroni([0.01, 0.03, float("nan")], alpha=0.06)
    assert level == pytest.approx(0.02)
    assert dec == [True, False, False]
    level, dec = stats.bonferroni([0.024, 0.026])
    assert level == pytest.approx(0.025) and dec == [True, False]
    with pytest.raises(ConfigError, match="alpha"):
        stats.bonferroni([0.1], alpha=1.5)


def test_comparisons_pair_by_seed_and_clip_and_match_scipy() -> None:
    clips = _study()
    shuffled = clips.sample(frac=1.0, random_state=3).reset_index(drop=True)
    out = stats.compare_model_types(shuffled)
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
    out = stats.compare_model_types(clips)
    assert not out[0].skipped and out[1].skipped
    assert "A2B2E" in out[1].note and out[1].formatted == "n/a"
    assert out[0].alpha_corrected == pytest.approx(0.05)  # one test run: no correction


def test_unpaired_rows_are_left_out_with_a_note_and_duplicates_refused() -> None:
    clips = _study()
    clips = clips[~((clips["model_type"] == "A2E") & (clips["clip_id"] == "000"))]
    c = stats.compare_model_types(clips)[0]
    assert c.n == len(SEEDS) * (N_CLIPS - 1) and "without a partner" in c.note
    dup = _study()
    extra = dup[(dup["model_type"] == "A2E") & (dup["seed"] == 6)].assign(run_id="again")
    with pytest.raises(DatasetError, match="A2E has more than one row for seed 6"):
        stats.compare_model_types(pd.concat([dup, extra], ignore_index=True))


def test_table1_matches_hand_computation() -> None:
    clips = _study()
    runs = pd.DataFrame([run_row(f"{t}-{s}", t, s,
                                 names=EMOTIONS) for t in ("A2E", "A2B2E", "A2M2E")
                         for s in SEEDS] + [run_row("x", "A2E", 99, "failed", "boom",
                                                    names=EMOTIONS)])
    t1 = stats.table1(runs, clips)
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
    t1 = stats.table1(None, one)
    assert (t1["n_runs"] == 1).all() and t1["adv_mae_std"].isna().all()
    snr = stats.snr_table(None, clips)
    sel = clips[clips["model_type"] == "A2E"]
    row = snr[snr["model_type"] == "A2E"].iloc[0]
    assert row["snr_db_mean"] == pytest.approx(sel["snr_db"].mean())
    assert row["snr_db_std"] == pytest.approx(sel.groupby("seed")["snr_db"].mean().std(ddof=1))
    assert row["converged_frac"] == pytest.approx(3 / 9)
    assert np.isnan(row["delta_linf_mean"])
