"""The study runner end to end on a tiny synthetic study, including a kill and a resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

import robustmer.study.runner as runner
from robustmer.errors import ConfigError
from robustmer.evaluate.store import ResultsStore
from robustmer.study.config import parse_config


def tiny(out: Path, cache: Path, **over: object) -> runner.StudyConfig:
    raw = {
        "name": "tiny", "output": str(out), "models": ["A2E", "aA2B2E"], "seeds": [1],
        "data": {"synth_clips": 20, "cache": str(cache)},
        "train": {"width": 0.0625, "epochs": 2, "adv_every": 1, "adv_iters": 2},
        "attack": {"iters": 4, "batch_size": 2},
        "media_clips": 1,
    }
    raw.update(over)
    return parse_config(raw)


def _quiet(msg: str) -> None:
    pass


class Killed(BaseException):
    """Stands in for SIGKILL / Ctrl-C: not an Exception, so nothing in the runner catches it."""


@pytest.mark.slow
def test_killed_study_resumes_to_the_uninterrupted_result(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    ref = runner.run_study(tiny(tmp_path / "ref", cache), progress=False, log=_quiet)
    assert list(ref.runs["status"]) == ["done", "done"]

    # Kill the second study while the first run's attack is in progress.
    real_attack = runner.attack_dataset
    calls = {"train": 0}
    real_train = runner.train_run

    def dying_attack(*args: object, **kwargs: object) -> object:
        raise Killed

    def counting_train(*args: object, **kwargs: object) -> object:
        calls["train"] += 1
        return real_train(*args, **kwargs)

    monkeypatch.setattr(runner, "attack_dataset", dying_attack)
    monkeypatch.setattr(runner, "train_run", counting_train)
    cfg = tiny(tmp_path / "killed", cache)
    with pytest.raises(Killed):
        runner.run_study(cfg, progress=False, log=_quiet)
    assert calls["train"] == 1
    assert not (tmp_path / "killed" / "clips.csv").exists()

    monkeypatch.setattr(runner, "attack_dataset", real_attack)
    resumed = runner.run_study(cfg, progress=False, log=_quiet)
    assert calls["train"] == 2  # only the second model was trained after the restart

    a = ref.store.read_clips().reset_index(drop=True)
    b = resumed.store.read_clips().reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(ref.store.read_runs(), resumed.store.read_runs())

    # A third run finds everything done: no training, no attack.
    monkeypatch.setattr(runner, "attack_dataset", dying_attack)
    again = runner.run_study(cfg, progress=False, log=_quiet)
    assert calls["train"] == 2  # unchanged
    pd.testing.assert_frame_equal(again.store.read_clips(), b)
    # media for the report: one clip per run
    store = ResultsStore(tmp_path / "killed")
    assert len(list(store.media_dir.glob("*/*_delta.npz"))) == 2


def test_a2m2e_without_concepts_is_reported_not_runnable(tmp_path: Path) -> None:
    import shutil

    from robustmer.data.synth import synthesize

    root = synthesize(tmp_path / "data", clips=10, seed=0).root
    shutil.rmtree(Path(root) / "midlevel")  # Soundtracks without Mid-level annotations
    cfg = tiny(tmp_path / "out", tmp_path / "cache", models=["A2M2E"],
               data={"root": str(root), "cache": str(tmp_path / "cache")})
    res = runner.run_study(cfg, progress=False, log=_quiet)
    row = res.runs.iloc[0]
    assert row["status"] == "not_runnable"
    assert "concept" in row["message"]


def test_output_folder_of_another_study_is_refused(tmp_path: Path) -> None:
    cfg = tiny(tmp_path / "out", tmp_path / "cache", models=["A2M2E"],
               data={"root": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match=r"data\.root"):
        runner.run_study(cfg, progress=False, log=_quiet)
    other = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=3))
    with pytest.raises(ConfigError, match="different train"):
        runner.run_study(other, progress=False, log=_quiet)


def test_waveform_study_puts_listenable_audio_in_the_store(tmp_path: Path) -> None:
    cfg = tiny(tmp_path / "out", tmp_path / "cache", models=["A2E"],
               attack={"domain": "waveform", "eps": 0.002, "eta": 0.0005, "iters": 2,
                       "batch_size": 2})
    res = runner.run_study(cfg, progress=False, log=_quiet)
    clips = res.store.read_clips()
    assert (clips["delta_linf"] <= 0.002 + 1e-7).all()
    assert (clips["snr_db"] > 20).all()
    wavs = sorted(p.name for p in res.store.media_dir.glob("A2E_seed1/*.wav"))
    assert len(wavs) == 2 and wavs[0].endswith("_adv.wav") and wavs[1].endswith("_clean.wav")


@pytest.mark.slow
def test_runs_csv_reports_the_concept_r_of_a2m2e(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tiny(tmp_path / "out", tmp_path / "cache", models=["A2M2E", "A2E"],
               train={"width": 0.0625, "epochs": 1, "standardize_targets": True})
    res = runner.run_study(cfg, progress=False, log=_quiet)
    runs = res.store.read_runs().set_index("model_type")
    r = runs.loc["A2M2E", "clean_concept_mean_r"]
    assert -1.0 <= r <= 1.0 and pd.isna(runs.loc["A2E", "clean_concept_mean_r"])
    stored = json.loads((tmp_path / "out" / "runs" / "A2M2E_seed1" / "concepts.json").read_text())
    assert stored["mean_r"] == pytest.approx(r)

    def no_loading(*args: object, **kwargs: object) -> object:
        raise Killed

    # resumed: read back from concepts.json, no model loaded again
    monkeypatch.setattr(runner, "load_run", no_loading)
    again = runner.run_study(cfg, progress=False, log=_quiet)
    pd.testing.assert_frame_equal(again.store.read_runs(), res.store.read_runs())
