"""The results store: schema round trip, validation errors naming file / column / row, appends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustmer import EMOTIONS
from robustmer.errors import ConfigError, DatasetError
from robustmer.evaluate.attack_settings import settings
from robustmer.evaluate.metrics import per_sample_mae, regression_metrics
from robustmer.evaluate.store import (
    ResultsStore,
    clips_columns,
    order_model_types,
    runs_columns,
)
from robustmer.evaluate.summary import clips_frame, run_row, summarize_run, summarize_runs


def _clips(run_id: str, model_type: str, seed: int, n: int = 5, rng_seed: int = 0
           ) -> pd.DataFrame:
    rng = np.random.default_rng(rng_seed)
    y = rng.uniform(0.1, 0.8, (n, 8))
    p = y + rng.normal(0, 0.05, (n, 8))
    a = p + rng.normal(0, 0.5, (n, 8))
    return clips_frame(run_id, model_type, seed, [f"{i:03d}" for i in range(n)], y, p, a,
                       iterations=rng.integers(1, 100, n), converged=rng.random(n) > 0.5,
                       final_threshold=rng.uniform(-1, 1, n), delta_linf=np.full(n, 1e-3),
                       delta_l2=rng.uniform(0, 1, n), snr_db=rng.uniform(20, 40, n), names=EMOTIONS)


def test_round_trip_keeps_values_types_and_leading_zeros(tmp_path: Path) -> None:
    clips = pd.concat([_clips("r1", "A2E", 6, rng_seed=1), _clips("r2", "A2M2E", 6, rng_seed=2)],
                      ignore_index=True)
    runs = summarize_runs(clips)
    store = ResultsStore(tmp_path / "res")
    store.write_clips(clips)
    store.write_runs(runs)
    back = store.read_clips()
    assert list(back.columns) == list(clips_columns(EMOTIONS))
    assert back["clip_id"].tolist()[:3] == ["000", "001", "002"]
    assert back["seed"].dtype == np.int64 and back["converged"].dtype == bool
    np.testing.assert_allclose(back["y_valence"], clips["y_valence"], rtol=1e-12)
    assert back["converged"].tolist() == clips["converged"].tolist()
    rb = store.read_runs()
    assert list(rb.columns) == list(runs_columns(EMOTIONS))
    np.testing.assert_allclose(rb["adv_mae"], runs["adv_mae"], rtol=1e-12)
    assert (rb["status"] == "done").all()


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    clips = _clips("r1", "A2E", 6)
    clips.drop(columns=["adv_tender"]).to_csv(store.clips_path, index=False)
    with pytest.raises(DatasetError, match=r"clips\.csv.*adv_tender"):
        store.read_clips()
    with pytest.raises(DatasetError, match=r"clips\.csv.*snr_db"):
        store.write_clips(clips.drop(columns=["snr_db"]))
    with pytest.raises(DatasetError, match=r"runs\.csv.*not found"):
        store.read_runs()


def test_bad_values_name_the_line(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    runs = summarize_runs(_clips("r1", "A2E", 6))
    runs = pd.concat([runs, pd.DataFrame([run_row("r2", "A2M2E", 6, "broken", "x",
                                                  names=EMOTIONS)])],
                     ignore_index=True)
    with pytest.raises(DatasetError, match=r"runs\.csv: line 3: status 'broken'"):
        store.write_runs(runs)
    clips = _clips("r1", "A2E", 6).astype({"mae_adv": object})
    clips.loc[2, "mae_adv"] = "abc"
    with pytest.raises(DatasetError, match=r"line 4: column mae_adv must be a number"):
        store.write_clips(clips)
    clips = _clips("r1", "A2E", 6).astype({"converged": object})
    clips.loc[0, "converged"] = "maybe"
    with pytest.raises(DatasetError, match=r"line 2: column converged"):
        store.write_clips(clips)


def test_duplicates_rejected_and_append_replaces_a_run(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    c1 = _clips("r1", "A2E", 6, rng_seed=1)
    with pytest.raises(DatasetError, match=r"duplicate row for run_id=r1, .*clip_id=000"):
        store.write_clips(pd.concat([c1, c1.iloc[:1]], ignore_index=True))
    store.append_clips(c1)
    store.append_clips(_clips("r2", "A2E", 21, rng_seed=2))
    redo = _clips("r1", "A2E", 6, n=3, rng_seed=3)
    store.append_clips(redo)
    back = store.read_clips()
    assert len(back) == 5 + 3
    np.testing.assert_allclose(back[back["run_id"] == "r1"]["y_energy"], redo["y_energy"])
    store.append_runs(pd.DataFrame([run_row("r1", "A2E", 6, "failed", "oom", names=EMOTIONS)]))
    store.append_runs(pd.DataFrame([run_row("r1", "A2E", 6, clips=redo, names=EMOTIONS)]))
    rb = store.read_runs()
    assert len(rb) == 1 and rb["status"].iloc[0] == "done" and rb["message"].iloc[0] == ""


def test_store_path_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    f = tmp_path / "x.txt"
    f.write_text("hi")
    with pytest.raises(ConfigError, match="not a folder"):
        ResultsStore(f)
    with pytest.raises(ConfigError, match="media kind"):
        ResultsStore(tmp_path).media_path("r", "1", "clean.mp3")


def test_summary_uses_regression_metrics() -> None:
    clips = _clips("r1", "A2E", 6, n=12)
    s = summarize_run(clips)
    y = clips[[f"y_{e}" for e in EMOTIONS]].to_numpy()
    a = clips[[f"adv_{e}" for e in EMOTIONS]].to_numpy()
    p = clips[[f"pred_{e}" for e in EMOTIONS]].to_numpy()
    ref = regression_metrics(y, p, EMOTIONS)
    assert s["clean_mean_r"] == pytest.approx(ref["mean_r"])
    assert s["r_tension"] == pytest.approx(ref["r"]["tension"])
    assert s["adv_mae"] == pytest.approx(np.abs(a - y).mean())
    assert s["delta_mae"] == pytest.approx(np.mean(per_sample_mae(y, a) - per_sample_mae(y, p)))
    assert s["mean_snr_db"] == pytest.approx(clips["snr_db"].mean())


def test_summarize_runs_keeps_failed_runs_without_metrics() -> None:
    clips = _clips("r1", "A2M2E", 6)
    runs = pd.DataFrame([run_row("r1", "A2M2E", 6,
                                 names=EMOTIONS), run_row("r0", "A2E", 6, "not_runnable",
                                                            "no mid-level data", names=EMOTIONS)])
    out = summarize_runs(clips, runs)
    assert out["run_id"].tolist() == ["r0", "r1"]  # model-type order: A2E first
    assert np.isnan(out.loc[0, "clean_mae"]) and out.loc[0, "message"] == "no mid-level data"
    assert np.isfinite(out.loc[1, "clean_mae"])


def test_model_type_order() -> None:
    assert order_model_types(["zz", "aA2B2E", "A2E", "b", "A2M2E", "A2E"]) == [
        "A2E", "A2M2E", "aA2B2E", "b", "zz"]


def test_setting_columns_round_trip_and_validation(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    c = pd.concat([clips_frame_setting("r1", 1e-3), clips_frame_setting("r1", 1e-2),
                   clips_frame_setting("r1", float("nan"), attack="reference")],
                  ignore_index=True)
    store.write_clips(c)
    back = store.read_clips()
    assert list(back.columns[3:6]) == ["attack", "domain", "eps"]
    assert settings(back)[:2] == [("bim", "spectrogram", 1e-3), ("bim", "spectrogram", 1e-2)]
    assert settings(back)[2][0] == "reference" and np.isnan(settings(back)[2][2])
    # the same clip may appear once per setting, not twice in one
    with pytest.raises(DatasetError, match="duplicate row for run_id=r1, clip_id=000, "
                                           "attack=bim"):
        store.write_clips(pd.concat([c, c.iloc[:1]], ignore_index=True))
    bad = c.copy()
    bad.loc[1, "domain"] = "frequency"
    with pytest.raises(DatasetError, match=r"line 3: domain 'frequency'"):
        store.write_clips(bad)
    bad = c.copy()
    bad.loc[0, "eps"] = -1.0
    with pytest.raises(DatasetError, match=r"line 2: eps must be a positive number"):
        store.write_clips(bad)
    bad = c.astype({"attack": object})
    bad.loc[0, "attack"] = ""
    with pytest.raises(DatasetError, match=r"line 2: column attack is empty"):
        store.write_clips(bad)


def clips_frame_setting(run_id: str, eps: float, attack: str = "bim") -> pd.DataFrame:
    c = _clips(run_id, "A2E", 6, n=3)
    return c.assign(attack=attack, domain="spectrogram", eps=eps)


def test_old_tables_are_filled_from_config(tmp_path: Path) -> None:
    clips = _clips("r1", "A2E", 6)
    runs = pd.DataFrame([run_row("r1", "A2E", 6, clips=clips, names=EMOTIONS),
                         run_row("r0", "A2M2E", 6, "failed", "boom", names=EMOTIONS)])
    store = ResultsStore(tmp_path)
    old_clips = clips.drop(columns=["attack", "domain", "eps"])
    old_clips.to_csv(store.clips_path, index=False)
    runs.drop(columns=["attack", "domain", "eps"]).to_csv(store.runs_path, index=False)
    # no config.yaml: the contract's default, one setting
    back = store.read_clips()
    assert list(back.columns) == list(clips_columns(EMOTIONS))
    assert settings(back)[0][:2] == ("bim", "spectrogram") and np.isnan(settings(back)[0][2])
    store.write_config({"attack": {"domain": "waveform", "eps": 0.002}})
    assert settings(store.read_clips()) == [("bim", "waveform", 0.002)]
    rb = store.read_runs().set_index("run_id")
    assert rb.loc["r1", "eps"] == 0.002 and rb.loc["r0", "attack"] == ""
    assert np.isnan(rb.loc["r0", "eps"])
    # half the columns is a damaged table, not an old one
    old_clips.assign(eps=0.1).to_csv(store.clips_path, index=False)
    with pytest.raises(DatasetError, match=r"clips\.csv: has eps but is missing attack, domain"):
        store.read_clips()


def test_appends_replace_per_run_and_setting(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    a, b = clips_frame_setting("r1", 1e-3), clips_frame_setting("r1", 1e-2)
    store.append_clips(a)
    store.append_clips(b)
    store.append_clips(a)  # a resumed (run, eps) replaces its rows, the other eps stays
    assert len(store.read_clips()) == 6
    store.append_runs(pd.DataFrame([run_row("r1", "A2E", 6, "failed", "killed", names=EMOTIONS)]))
    store.append_runs(pd.DataFrame([run_row("r1", "A2E", 6, clips=a, names=EMOTIONS)]))
    store.append_runs(pd.DataFrame([run_row("r1", "A2E", 6, clips=b, names=EMOTIONS)]))
    rb = store.read_runs()
    assert rb["eps"].tolist() == [1e-3, 1e-2] and (rb["status"] == "done").all()
    store.append_runs(pd.DataFrame([run_row("r1", "A2E", 6, clips=b, names=EMOTIONS)]))
    assert len(store.read_runs()) == 2
    store.append_runs(pd.DataFrame([run_row("r1", "A2E", 6, "failed", "retrained, broke",
                                            names=EMOTIONS)]))
    assert store.read_runs()["status"].tolist() == ["failed"]
    with pytest.raises(DatasetError, match="2 attack settings"):
        run_row("r1", "A2E", 6, clips=pd.concat([a, b], ignore_index=True), names=EMOTIONS)


def test_runs_without_the_concept_column_read_as_nan(tmp_path: Path) -> None:
    """Stores written before ``clean_concept_mean_r`` existed stay readable."""
    store = ResultsStore(tmp_path)
    runs = pd.DataFrame([run_row("r1", "A2M2E", 6, concept_mean_r=0.7, names=EMOTIONS),
                         run_row("r2", "A2E", 6, names=EMOTIONS)])
    store.write_runs(runs)
    back = store.read_runs()
    assert back["clean_concept_mean_r"].iloc[0] == pytest.approx(0.7)
    assert pd.isna(back["clean_concept_mean_r"].iloc[1])
    old = pd.read_csv(store.runs_path).drop(columns=["clean_concept_mean_r"])
    old.to_csv(store.runs_path, index=False)
    assert store.read_runs()["clean_concept_mean_r"].isna().all()


def test_zero_gradient_flags_of_some_runs_only_are_false_elsewhere(tmp_path: Path) -> None:
    """``zero_grad_start`` is written only when some clip has it: a store that combines runs
    with and without it reads the missing flags as False."""
    y = np.full((3, 8), 0.5)
    flagged = clips_frame("r", "A2E", 1, ["1", "2", "3"], y, y, y, names=EMOTIONS,
                          zero_grad_start=[True, False, False])
    plain = clips_frame("s", "A2E", 2, ["1", "2", "3"], y, y, y, names=EMOTIONS)
    assert "zero_grad_start" in flagged.columns and "zero_grad_start" not in plain.columns
    store = ResultsStore(tmp_path)
    store.write_clips(pd.concat([flagged, plain], ignore_index=True))
    assert store.read_clips()["zero_grad_start"].tolist() == [True] + [False] * 5
