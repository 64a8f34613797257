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
from robustmer.folders import claim_folder
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


def test_failed_start_records_no_config_and_a_changed_setting_is_named(tmp_path: Path) -> None:
    cfg = tiny(tmp_path / "out", tmp_path / "cache", models=["A2M2E"],
               data={"root": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match=r"data\.root"):
        runner.run_study(cfg, progress=False, log=_quiet)
    # the failed call left nothing that would refuse the corrected config
    assert not (tmp_path / "out" / "config.yaml").exists()
    # a study that really started records its config; other train settings are refused by key
    started = tiny(tmp_path / "out", tmp_path / "cache", models=["A2M2E"])
    claim_folder(tmp_path / "out", runner.STUDY_KIND)
    ResultsStore(tmp_path / "out").write_config(started.to_dict())
    other = dataclasses.replace(started, train=dataclasses.replace(started.train, epochs=3))
    with pytest.raises(ConfigError, match=r"train\.epochs: stored 2, asked 3"):
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
def test_study_with_two_budgets_and_a_preset_resumes_per_setting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    attack = {"eps": [0.01, 0.05], "eta": 0.01, "iters": 2, "batch_size": 4,
              "presets": [{"name": "reference", "iters": 2}]}
    cfg = tiny(tmp_path / "out", tmp_path / "cache", models=["A2E"], attack=attack,
               train={"width": 0.0625, "epochs": 1})
    ids = [s.id for s in cfg.attack.settings]
    assert ids == ["bim-spectrogram-eps0.01", "bim-spectrogram-eps0.05", "reference-spectrogram"]

    real_attack = runner.attack_dataset
    calls: list[str] = []

    def dying_on_second(model: object, data: object, split: str, spec: object, out_dir: Path,
                        **kw: object) -> object:
        calls.append(Path(out_dir).name)
        if Path(out_dir).name == ids[1]:
            raise Killed
        return real_attack(model, data, split, spec, out_dir, **kw)

    monkeypatch.setattr(runner, "attack_dataset", dying_on_second)
    with pytest.raises(Killed):
        runner.run_study(cfg, progress=False, log=_quiet)
    assert calls == ids[:2]
    run_dir = tmp_path / "out" / "runs" / "A2E_seed1" / "attack"
    assert (run_dir / ids[0] / runner.DONE).exists()

    calls.clear()
    monkeypatch.setattr(runner, "attack_dataset", lambda *a, **k: (calls.append(
        Path(a[4]).name), real_attack(*a, **k))[1])
    res = runner.run_study(cfg, progress=False, log=_quiet)
    assert calls == ids[1:]  # the finished (run, ε) was not attacked again

    clips = res.store.read_clips()
    assert list(clips.columns[3:6]) == ["attack", "domain", "eps"]
    n = clips["clip_id"].nunique()
    assert len(clips) == 3 * n
    got = sorted((a, d, -1.0 if e != e else e) for a, d, e in
                 clips[["attack", "domain", "eps"]].drop_duplicates().itertuples(index=False))
    assert got == [("bim", "spectrogram", 0.01), ("bim", "spectrogram", 0.05),
                   ("reference", "spectrogram", -1.0)]
    bim = clips[clips["attack"] == "bim"]
    assert (bim["delta_linf"] <= bim["eps"] + 1e-6).all()  # each budget held
    runs = res.store.read_runs()
    assert len(runs) == 3 and list(runs["status"]) == ["done"] * 3
    # clean metrics repeat on each row of a run; the attack summary is per setting
    assert runs["clean_mae"].nunique() == 1
    from robustmer.evaluate.attack_settings import settings
    assert settings(clips)[-1][0] == "reference"
    import yaml
    recorded = yaml.safe_load((run_dir / ids[2] / "config.yaml").read_text())
    assert recorded["attack"]["name"] == "reference"
    assert recorded["attack"]["update"] == "adam_sign"


def test_attack_block_is_validated_with_the_key_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"attack\.eta: give one number or one per eps"):
        tiny(tmp_path, tmp_path, attack={"eps": [0.1, 0.2], "eta": [0.1]})
    with pytest.raises(ConfigError, match=r"attack\.eps\[1\]"):
        tiny(tmp_path, tmp_path, attack={"eps": [0.1, "x"]})
    with pytest.raises(ConfigError, match=r"attack: unknown setting 'epsilon'"):
        tiny(tmp_path, tmp_path, attack={"epsilon": 0.1})
    with pytest.raises(ConfigError, match=r"attack\.presets\[0\]\.name: unknown attack"):
        tiny(tmp_path, tmp_path, attack={"presets": ["nope"]})
    with pytest.raises(ConfigError, match="appears twice"):
        tiny(tmp_path, tmp_path, attack={"eps": [0.1, 0.1]})
    with pytest.raises(ConfigError, match="classification"):
        tiny(tmp_path, tmp_path, attack={"name": "cw"})
    with pytest.raises(ConfigError, match=r"train\.adv_attack"):
        tiny(tmp_path, tmp_path, train={"adv_attack": "nope"})
    one = tiny(tmp_path, tmp_path, attack={"eps": 0.02})  # a single number still works
    assert [s.spec.eps for s in one.attack.settings] == [0.02]


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
