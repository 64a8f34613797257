"""Statistics and report over several attack settings (issue 14 part 2), on hand-made stores:
per-ε t-tests against scipy with one Bonferroni family over comparisons x budgets, Table 1 per
setting, the area under ΔMAE(log10 ε) with known answers, its paired tests, the curve figure,
old stores without setting columns, and the --compare warning."""

from __future__ import annotations

import base64
import math
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from scipy import stats as sps

from robustmer import EMOTIONS
from robustmer.errors import ConfigError
from robustmer.evaluate.attack_settings import select_setting, setting_label, settings
from robustmer.evaluate.curves import (
    auc_log_eps,
    clip_auc,
    curve_groups,
    curve_points,
    mean_ci,
    off_curve_settings,
    robustness_curves,
)
from robustmer.evaluate.metrics import per_sample_mae
from robustmer.evaluate.paired_tests import compare_by_setting, compare_model_types
from robustmer.evaluate.store import ResultsStore
from robustmer.evaluate.study_tables import snr_by_setting, snr_table, table1, table1_by_setting
from robustmer.evaluate.summary import clips_frame, run_row
from robustmer.io import run_meta
from robustmer.report.html import build_report, settings_warnings
from robustmer.report.page import FIGURES_DIR

SEEDS = (6, 21, 42)
BUDGETS = (1e-3, 1e-2)
N_CLIPS = 5
ONE = ("tension",)  # Figure 4 with one emotion: half the drawing time
Y = [f"y_{e}" for e in EMOTIONS]
ADV = [f"adv_{e}" for e in EMOTIONS]

# per model type: the adversarial shift at each budget (index into BUDGETS); A2E breaks more
SHIFT = {"A2E": (0.05, 0.4), "A2M2E": (0.03, 0.2)}


def budget_clips(types: dict[str, tuple[float, ...]] = SHIFT,
                 budgets: tuple[float, ...] = BUDGETS, seeds: tuple[int, ...] = SEEDS,
                 preset: float | None = None) -> pd.DataFrame:
    """clips.csv of a study: every type x seed x budget (and an unbounded ``reference`` preset
    with shift ``preset``), the same targets per seed for every type (one test split)."""
    rng = np.random.default_rng(0)
    frames = []
    for t, shifts in types.items():
        for s in seeds:
            y = np.random.default_rng(s).uniform(0.1, 0.8, (N_CLIPS, 8))
            p = y + rng.normal(0, 0.05, y.shape)
            ids = [f"{i:03d}" for i in range(N_CLIPS)]
            cases = [("bim", e, sh) for e, sh in zip(budgets, shifts, strict=True)]
            if preset is not None:
                cases.append(("reference", float("nan"), preset))
            for attack, eps, sh in cases:
                a = p + rng.normal(sh, 0.1, y.shape)
                frames.append(clips_frame(f"{t}-{s}", t, s, ids, y, p, a, attack=attack,
                                          domain="spectrogram", eps=eps,
                                          snr_db=np.full(N_CLIPS, 40 - 10 * math.log10(1 + sh)),
                                          names=EMOTIONS))
    return pd.concat(frames, ignore_index=True)


def budget_runs(clips: pd.DataFrame, failed: bool = True) -> pd.DataFrame:
    """runs.csv: one row per (run, setting), and a failed run without a setting."""
    rows = []
    for (run_id, *_), g in clips.groupby(["run_id", "attack", "domain", "eps"], sort=False,
                                         dropna=False):
        rows.append(run_row(run_id, g["model_type"].iloc[0], int(g["seed"].iloc[0]), clips=g,
                            names=EMOTIONS))
    if failed:
        rows.append(run_row("A2E-99", "A2E", 99, "failed", "out of memory", names=EMOTIONS))
    return pd.DataFrame(rows)


def write_store(root: Path, clips: pd.DataFrame, config: dict | None = None) -> ResultsStore:
    store = ResultsStore(root)
    store.path.mkdir(parents=True, exist_ok=True)
    store.write_clips(clips)
    store.write_runs(budget_runs(clips))
    store.write_config(config or {"name": "budgets", "attack": {"eps": list(BUDGETS)}})
    store.write_meta(run_meta(source="robustmer"))
    return store


def _clip_adv(clips: pd.DataFrame, t: str, eps: float) -> np.ndarray:
    sel = clips[(clips["model_type"] == t) & np.isclose(clips["eps"], eps)]
    sel = sel.sort_values(["seed", "clip_id"])
    return per_sample_mae(sel[Y].to_numpy(), sel[ADV].to_numpy())


# --- settings helpers -------------------------------------------------------------------------

def test_settings_sorted_nan_last_labelled_and_selected() -> None:
    clips = budget_clips(preset=1.0)
    found = settings(clips)
    assert found[:2] == [("bim", "spectrogram", 1e-3), ("bim", "spectrogram", 1e-2)]
    assert found[2][:2] == ("reference", "spectrogram") and math.isnan(found[2][2])
    assert setting_label(found[0]) == "bim eps=0.001 (spectrogram)"
    assert setting_label(found[2]) == "reference, no bound (spectrogram)"
    assert len(select_setting(clips, found[2])) == 2 * len(SEEDS) * N_CLIPS
    runs = budget_runs(clips)
    assert [setting_label(x) for x in settings(runs)] == [setting_label(x) for x in found]
    # the failed run (no setting) is kept at every setting only when asked
    assert "A2E-99" in set(select_setting(runs, found[0], keep_unset=True)["run_id"])
    assert "A2E-99" not in set(select_setting(runs, found[0])["run_id"])


def test_single_setting_functions_refuse_mixed_settings() -> None:
    clips = budget_clips()
    for fn in (lambda: table1(None, clips), lambda: compare_model_types(clips),
               lambda: snr_table(None, clips)):
        with pytest.raises(ConfigError, match=r"2 attack settings.*bim eps=0\.01"):
            fn()


# --- per-ε statistics -------------------------------------------------------------------------

def test_per_eps_ttests_match_scipy_with_bonferroni_over_comparisons_x_budgets() -> None:
    clips = budget_clips()
    runs = budget_runs(clips)
    out = compare_by_setting(clips, [("A2E", "A2M2E"), ("A2B2E", "A2M2E")], runs=runs)
    assert [st for st, _ in out] == [("bim", "spectrogram", e) for e in BUDGETS]
    for (_, comps), eps in zip(out, BUDGETS, strict=True):
        c, skipped = comps
        assert skipped.skipped and "A2B2E" in skipped.note
        ma, mb = _clip_adv(clips, "A2E", eps), _clip_adv(clips, "A2M2E", eps)
        ref = sps.ttest_rel(ma, mb)
        assert c.n == len(SEEDS) * N_CLIPS and c.df == c.n - 1
        assert c.t == pytest.approx(ref.statistic) and c.p == pytest.approx(ref.pvalue)
        assert c.mean_a == pytest.approx(ma.mean()) and c.mean_b == pytest.approx(mb.mean())
        d = ma - mb
        assert c.d_z == pytest.approx(d.mean() / d.std(ddof=1))
        # one family: 1 comparison that ran x 2 budgets (the skipped one does not count)
        assert c.alpha_corrected == pytest.approx(0.05 / 2)
        assert c.significant == (ref.pvalue < 0.025)
    # at the large budget the constructed shifts make A2E clearly worse
    assert out[1][1][0].t > 0 and out[1][1][0].significant


def test_bonferroni_family_counts_every_setting_and_comparison() -> None:
    clips = budget_clips({"A2E": (0.05, 0.4), "A2B2E": (0.05, 0.3), "A2M2E": (0.03, 0.2)},
                         preset=1.0)
    out = compare_by_setting(clips, alpha=0.06)  # the two default comparisons
    assert len(out) == 3 and all(len(c) == 2 for _, c in out)
    levels = [c.alpha_corrected for _, cs in out for c in cs]
    assert levels == pytest.approx([0.06 / 6] * 6)  # 2 comparisons x 3 settings
    for _, cs in out:
        for c in cs:
            assert c.significant == (c.p < 0.01)
    # a single setting is the old per-store family: m = the comparisons run
    one = select_setting(clips, ("bim", "spectrogram", 1e-3))
    assert compare_by_setting(one, alpha=0.06)[0][1][0].alpha_corrected == pytest.approx(
        0.03)
    assert compare_model_types(one, alpha=0.06)[0].alpha_corrected == pytest.approx(0.03)


def test_table1_per_setting_matches_hand_computation() -> None:
    clips = budget_clips()
    runs = budget_runs(clips)
    out = table1_by_setting(runs, clips)
    assert [st for st, _ in out] == [("bim", "spectrogram", e) for e in BUDGETS]
    for (_, t1), eps in zip(out, BUDGETS, strict=True):
        row = t1[t1["model_type"] == "A2E"].iloc[0]
        assert row["n_runs"] == len(SEEDS) and row["n_not_done"] == 1  # the failed run
        adv = []
        for s in SEEDS:
            g = clips[(clips["run_id"] == f"A2E-{s}") & np.isclose(clips["eps"], eps)]
            adv.append(np.abs(g[ADV].to_numpy() - g[Y].to_numpy()).mean())
        assert row["adv_mae_mean"] == pytest.approx(np.mean(adv))
        assert row["adv_mae_std"] == pytest.approx(np.std(adv, ddof=1))
    # clean numbers do not depend on the budget
    assert out[0][1]["clean_mae_mean"].tolist() == pytest.approx(
        out[1][1]["clean_mae_mean"].tolist())
    snr = snr_by_setting(runs, clips)
    assert snr[0][1]["snr_db_mean"].iloc[0] > snr[1][1]["snr_db_mean"].iloc[0]


def test_mean_ci_is_the_t_interval() -> None:
    v = np.array([0.1, 0.4, 0.25, 0.3])
    m, lo, hi = mean_ci(v)
    ref = sps.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=sps.sem(v))
    assert m == pytest.approx(v.mean()) and (lo, hi) == pytest.approx(ref)
    m, lo, hi = mean_ci([0.3, float("nan")])
    assert m == pytest.approx(0.3) and math.isnan(lo) and math.isnan(hi)


# --- area under ΔMAE(ε) -----------------------------------------------------------------------

def test_auc_log_eps_known_answers() -> None:
    # constant 0.2 over two decades: 0.4
    assert auc_log_eps([1e-4, 1e-3, 1e-2], [0.2, 0.2, 0.2]) == pytest.approx(0.4)
    # linear in log10 eps (1, 2, 3 at 1e-4, 1e-3, 1e-2): the trapezoid is exact, 4
    assert auc_log_eps([1e-2, 1e-4, 1e-3], [3.0, 1.0, 2.0]) == pytest.approx(4.0)
    # a budget grid with uneven spacing: 1e-3 -> 2e-3 is log10(2) decades wide
    area = auc_log_eps([1e-3, 2e-3, 1e-2], [0.0, 1.0, 1.0])
    assert area == pytest.approx(0.5 * math.log10(2) + (1 - math.log10(2)))
    assert math.isnan(auc_log_eps([1e-3], [0.5]))
    assert math.isnan(auc_log_eps([1e-3, 1e-2], [0.5, float("nan")]))
    with pytest.raises(ConfigError, match="positive"):
        auc_log_eps([0.0, 1e-2], [0.1, 0.2])
    with pytest.raises(ConfigError, match="repeat"):
        auc_log_eps([1e-2, 1e-2], [0.1, 0.2])


def _exact_clips(deltas: dict[str, dict[int, tuple[float, ...]]],
                 budgets: tuple[float, ...]) -> pd.DataFrame:
    """Clips whose every error is positive, so a run's ΔMAE at each budget is exactly the
    given shift: pred = y + 0.1, adv = pred + delta (+ a per-clip wiggle averaging to 0)."""
    frames = []
    wiggle = np.array([-0.02, 0.0, 0.02])
    for t, per_seed in deltas.items():
        for s, ds in per_seed.items():
            y = np.random.default_rng(s).uniform(0.1, 0.8, (3, 8))
            p = y + 0.1
            for e, d in zip(budgets, ds, strict=True):
                a = p + d + wiggle[:, None]
                frames.append(clips_frame(f"{t}-{s}", t, s, ["a", "b", "c"], y, p, a,
                                          eps=e, names=EMOTIONS))
    return pd.concat(frames, ignore_index=True)


def test_run_auc_and_table_known_answers() -> None:
    budgets = (1e-4, 1e-3, 1e-2)
    deltas = {"A2E": {1: (0.1, 0.2, 0.4), 2: (0.1, 0.3, 0.5), 3: (0.2, 0.2, 0.2)},
              "A2M2E": {1: (0.0, 0.1, 0.1), 2: (0.0, 0.0, 0.2), 3: (0.1, 0.1, 0.1)}}
    clips = _exact_clips(deltas, budgets)
    curves = robustness_curves(None, clips, [("A2E", "A2M2E")])
    assert len(curves) == 1
    c = curves[0]
    assert (c.attack, c.domain, c.budgets) == ("bim", "spectrogram", list(budgets))
    assert c.decades == pytest.approx(2.0)

    def area(ds: tuple[float, ...]) -> float:
        return (ds[0] + ds[1]) / 2 + (ds[1] + ds[2]) / 2  # one decade per step

    ra = c.run_auc.set_index("run_id")
    for t, per_seed in deltas.items():
        for s, ds in per_seed.items():
            assert ra.loc[f"{t}-{s}", "auc"] == pytest.approx(area(ds))
            assert ra.loc[f"{t}-{s}", "mean_delta_mae"] == pytest.approx(area(ds) / 2)
    row = c.table[c.table["model_type"] == "A2E"].iloc[0]
    vals = [area(d) for d in deltas["A2E"].values()]
    assert row["n_runs"] == 3 and row["auc_mean"] == pytest.approx(np.mean(vals))
    assert row["auc_std"] == pytest.approx(np.std(vals, ddof=1))
    # per-clip areas (the tested values) average to the run's area, paired by (seed, clip)
    per_clip = clip_auc(clips, "bim", "spectrogram", budgets)
    assert len(per_clip) == 2 * 3 * 3
    means = per_clip.groupby("run_id")["value"].mean()
    assert means.loc["A2E-1"] == pytest.approx(area(deltas["A2E"][1]))
    xa = per_clip[per_clip["model_type"] == "A2E"].sort_values(["seed", "clip_id"])["value"]
    xb = per_clip[per_clip["model_type"] == "A2M2E"].sort_values(["seed", "clip_id"])["value"]
    ref = sps.ttest_rel(xa.to_numpy(), xb.to_numpy())
    test = c.tests[0]
    assert test.n == 9 and test.t == pytest.approx(ref.statistic)
    assert test.p == pytest.approx(ref.pvalue)
    assert test.alpha_corrected == pytest.approx(0.05)  # one comparison, one curve


def test_run_missing_a_budget_is_left_out_of_the_area() -> None:
    clips = budget_clips({"A2E": (0.05, 0.4, 0.6), "A2M2E": (0.03, 0.2, 0.3)},
                         budgets=(1e-3, 1e-2, 1e-1), preset=1.0)
    gone = (clips["run_id"] == "A2E-6") & np.isclose(clips["eps"], 1e-1)
    c = robustness_curves(None, clips[~gone], [("A2E", "A2M2E")])[0]
    assert c.budgets == [1e-3, 1e-2, 1e-1]  # the preset (eps NaN) is on no curve
    row = c.run_auc.set_index("run_id").loc["A2E-6"]
    assert math.isnan(row["auc"]) and "no ΔMAE at eps 0.1" in row["note"]
    t = c.table.set_index("model_type")
    assert t.loc["A2E", "n_runs"] == 2 and t.loc["A2E", "n_left_out"] == 1
    assert c.tests[0].n == 2 * N_CLIPS  # seed 6 has no A2E area: its clips have no partner
    assert off_curve_settings(clips)[0][0] == "reference"
    # one budget only: no curve at all
    one = clips[np.isclose(clips["eps"], 1e-3)]
    assert robustness_curves(None, one) == [] and curve_groups(one) == []


def test_curve_points_mean_over_seeds_and_clip_bootstrap_interval() -> None:
    clips = budget_clips(preset=1.0)
    from robustmer.evaluate.correlations import bootstrap_correlation_ci
    from robustmer.evaluate.intervals import cluster_bootstrap_ci
    from robustmer.evaluate.summary import summarize_runs
    pts = curve_points(summarize_runs(clips, budget_runs(clips)), clips, n_boot=400)
    assert len(pts) == 3 * 2 and (pts["n"] == len(SEEDS)).all()
    assert (pts["n_seeds"] == len(SEEDS)).all() and (pts["n_clips"] == len(SEEDS) * N_CLIPS).all()
    one = pts[(pts["model_type"] == "A2E") & np.isclose(pts["eps"], 1e-2)].iloc[0]
    per_run, per_clip, seeds, ids = [], [], [], []
    sel = clips[(clips["model_type"] == "A2E") & np.isclose(clips["eps"], 1e-2)]
    for s in SEEDS:
        g = sel[sel["seed"] == s]
        y, p, a = g[Y].to_numpy(), g[[f"pred_{e}" for e in EMOTIONS]].to_numpy(), g[ADV].to_numpy()
        per_run.append(np.abs(a - y).mean() - np.abs(p - y).mean())
        per_clip += list(np.abs(a - y).mean(axis=1) - np.abs(p - y).mean(axis=1))
        seeds += [s] * len(g)
        ids += g["clip_id"].tolist()
    # the point is the mean over seeds; the interval the crossed bootstrap of the clip ΔMAE
    ref = cluster_bootstrap_ci(per_clip, seeds, items=ids, n_boot=400)
    assert one["delta_mae_mean"] == pytest.approx(np.mean(per_run))
    assert ref.estimate == pytest.approx(np.mean(per_run))  # equal clips per seed
    assert (one["delta_mae_lo"], one["delta_mae_hi"]) == pytest.approx((ref.low, ref.high))
    assert one["delta_mae_lo"] < one["delta_mae_mean"] < one["delta_mae_hi"]
    r = bootstrap_correlation_ci(sel[Y].to_numpy(), sel[ADV].to_numpy(), sel["seed"],
                                 items=sel["clip_id"], n_boot=400)
    assert (one["adv_mean_r_lo"], one["adv_mean_r_hi"]) == pytest.approx((r.low, r.high))
    # a correlation's interval never leaves [-1, 1] (the old t interval over seeds did)
    assert pts["adv_mean_r_lo"].min() >= -1.0 and pts["adv_mean_r_hi"].max() <= 1.0


# --- report -----------------------------------------------------------------------------------

def _imgs(page: str) -> list[str]:
    import re
    return re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]+)"', page)


def test_report_of_two_budgets_has_curves_and_per_setting_sections(tmp_path: Path) -> None:
    store = write_store(tmp_path / "res", budget_clips(preset=1.0))
    wav = store.media_path("A2E-6", "000", "clean.wav")
    wav.parent.mkdir(parents=True)
    for kind in ("clean.wav", "adv.wav"):
        sf.write(store.media_path("A2E-6", "000", kind), np.zeros(2205, np.float32), 22050)
    page = build_report(store.path, media_clips=2, emotions=ONE).read_text(encoding="utf-8")
    # one clip with media: listed once although its run has a row per setting
    assert page.count("<audio") == 2
    imgs = dict(_imgs(page))
    assert any(a.startswith("Robustness curves") for a in imgs)
    png = base64.b64decode(next(v for a, v in imgs.items() if a.startswith("Robustness")))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24])[0] > 300
    for text in ("Area under ΔMAE(ε)", "Setting: bim eps=0.001 (spectrogram)",
                 "Setting: bim eps=0.01 (spectrogram)", "Setting: reference, no bound",
                 "trapezoid rule over log10 ε", "one family over every setting and curve",
                 "out of memory"):
        assert text in page, text
    # one pair present (A2E vs A2M2E) x (3 settings + 1 curve area): one Holm family of 4
    assert "Holm&#x27;s step-down correction over all m = 4 at α = 0.05" in page
    assert page.count("One family of planned comparisons") == 1  # stated once
    assert page.count('class="table1"') == 3
    names = sorted(p.name for p in (store.path / FIGURES_DIR).iterdir())
    assert "robustmer-res-curves.png" in names and len(names) == 1 + 3 * 2


def test_report_of_one_budget_has_no_curve_section(tmp_path: Path) -> None:
    clips = budget_clips()
    clips = clips[np.isclose(clips["eps"], 1e-3)]
    store = write_store(tmp_path / "one", clips)
    page = build_report(store.path, media_clips=0, emotions=ONE).read_text(encoding="utf-8")
    assert "Robustness curves" not in page and "Area under" not in page
    assert "Setting:" not in page and page.count('class="table1"') == 1
    assert len(_imgs(page)) == 2  # Figures 3 and 4, as before
    assert sorted(p.name for p in (store.path / FIGURES_DIR).iterdir()) == [
        "robustmer-one-figure3.png", "robustmer-one-figure4-tension.png"]


def test_old_store_without_setting_columns_renders(tmp_path: Path) -> None:
    clips = budget_clips()
    clips = clips[np.isclose(clips["eps"], 1e-3)]
    store = write_store(tmp_path / "old", clips,
                        config={"attack": {"domain": "waveform", "eps": 0.002, "iters": 10}})
    for path in (store.clips_path, store.runs_path):
        pd.read_csv(path).drop(columns=["attack", "domain", "eps"]).to_csv(path, index=False)
    back = store.read_runs()
    assert settings(back) == [("bim", "waveform", 0.002)]
    assert back.loc[back["status"] != "done", "attack"].tolist() == [""]
    page = build_report(store.path, media_clips=0, emotions=ONE).read_text(encoding="utf-8")
    assert "Table 1" in page and "A2E vs A2M2E" in page and "Robustness curves" not in page


def test_compare_warns_when_settings_differ(tmp_path: Path) -> None:
    clips = budget_clips(preset=1.0)
    ours = write_store(tmp_path / "ours", clips[~np.isclose(clips["eps"], 1e-2)])
    theirs = write_store(tmp_path / "theirs", clips[np.isclose(clips["eps"], 1e-3)])
    page = build_report(ours.path, tmp_path / "page.html", [theirs.path],
                        media_clips=0, emotions=ONE).read_text(encoding="utf-8")
    head = page[:page.index('id="side-by-side"')]
    assert 'class="warning" role="alert"' in head
    assert "different attacks" in head and "different budgets" in head
    assert "different domains" not in head
    assert ("robustmer (ours): bim eps=0.001 (spectrogram); reference, no bound (spectrogram)"
            in head)
    assert "robustmer (theirs): bim eps=0.001 (spectrogram)" in head
    # side by side: one column group per store and setting
    assert "robustmer (theirs) · bim eps=0.001 (spectrogram)" in page


def test_settings_warnings_name_what_differs() -> None:
    def src(name: str, *sts: tuple[str, str, float]) -> SimpleNamespace:
        return SimpleNamespace(name=name, settings=list(sts))

    a = src("ours", ("bim", "spectrogram", 1e-3), ("bim", "spectrogram", 1e-2))
    assert settings_warnings([a, src("same", *a.settings)]) == []
    assert settings_warnings([a]) == []
    out = settings_warnings([a, src("wave", ("bim", "waveform", 1e-3),
                                    ("bim", "waveform", 1e-2))])
    assert out == ["The stores used different domains: ours: spectrogram; wave: waveform"]
    out = settings_warnings([a, src("pub", ("reference", "spectrogram", 1e-3))])
    assert out == ["The stores used different attacks: ours: bim; pub: reference",
                   "The stores used different budgets: ours: 0.001, 0.01; pub: 0.001"]


def test_settings_warnings_sort_budgets_numerically() -> None:
    a = SimpleNamespace(name="a", settings=[("bim", "spectrogram", 1e-5),
                                            ("bim", "spectrogram", 2e-3),
                                            ("reference", "spectrogram", float("nan"))])
    b = SimpleNamespace(name="b", settings=[("bim", "spectrogram", 2e-3),
                                            ("reference", "spectrogram", float("nan"))])
    assert settings_warnings([a, b]) == [
        "The stores used different budgets: a: 1e-05, 0.002, no bound; b: 0.002, no bound"]
