"""The demo's recipe really learns (issue 14): A2M2E, trained exactly as `robustmer demo` trains
its seed-1 run (the data and train blocks of configs/demo.yaml, through the study's own calls),
clears on the demo's test clips what the issue asks of every model type in the demo. A regression
guard for the recipe: dropout, the synthetic data's format, BatchNorm recalibration or the
trainer changing so that the thin network stops learning would fail here. Measured: test r 0.886,
MAE 0.043 (mean predictor 0.095), concept r 0.683, the demo's own A2M2E seed-1 numbers to the last
digit printed (docs/demo.md) on a 2-core machine, where the demo's two workers also train with one
torch thread each. About 40 s on 2 CPU cores.

And the demo's "identical results" from run to run on one machine: configs/demo.yaml shrunk
(fewer clips, types and epochs, a thinner network, shorter attacks), run twice in one
environment, writes byte-identical clips.csv and runs.csv. About 30 s on 2 CPU cores."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from robustmer import EMOTIONS
from robustmer.data import prepare_data, synthesize
from robustmer.evaluate.metrics import mean_predictor_metrics
from robustmer.study.config import load_config, parse_config
from robustmer.study.runner import _train_config, run_study
from robustmer.train import evaluate_model, load_run, train_run

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "robustmer" / "configs"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow
def test_the_demo_recipe_learns_the_emotions_and_the_concepts(tmp_path: Path) -> None:
    cfg = load_config(CONFIGS / "demo.yaml")
    d, t = cfg.data, cfg.train
    root = synthesize(tmp_path / "data", clips=d.synth_clips, seed=d.synth_seed,
                      duration=d.synth_duration, version=d.synth_format).root
    data = prepare_data(root, cache_dir=tmp_path / "cache", split_path=tmp_path / "split.json",
                        split_seed=d.split_seed, progress=False)
    train_run(data.dataset("train", mode="random", seed=1), data.dataset("val"),
              tmp_path / "run", model_type="A2M2E",
              model_settings={"width": t.width, "dropout": t.dropout},
              config=_train_config(cfg, 1, adversarial=False), data_description=data.to_dict(),
              normaliser=data.standardizer.to_dict(), progress=False)
    model = load_run(tmp_path / "run").model  # what the study attacks: best/, recalibrated
    ev = evaluate_model(model, data.dataset("test"))
    emotions = data.table.targets[list(EMOTIONS)]
    base = mean_predictor_metrics(emotions.loc[list(data.split.train)].to_numpy(),
                                  emotions.loc[list(data.split.test)].to_numpy())
    assert ev["metrics"]["mean_r"] >= 0.6
    assert ev["metrics"]["mae"] < base["mae"]
    assert ev["concept_metrics"]["mean_r"] >= 0.6


def shrunk_demo_config() -> dict:
    """configs/demo.yaml shrunk to seconds: 30 clips, A2M2E and aA2B2E, one seed, 2 epochs of
    a width-0.0625 network, 2-3 attack iterations (set ``output`` before parsing)."""
    raw = yaml.safe_load((CONFIGS / "demo.yaml").read_text())
    raw.update(models=["A2M2E", "aA2B2E"], seeds=[1], media_clips=1)
    raw["data"] = {**raw["data"], "synth_clips": 30}
    raw["train"] = {**raw["train"], "width": 0.0625, "epochs": 2, "adv_every": 1,
                    "adv_iters": 1}
    preset = {**raw["attack"]["presets"][0], "iters": 3}
    raw["attack"] = {**raw["attack"], "iters": 2, "presets": [preset]}
    return raw


@pytest.mark.slow
def test_the_demo_shrunk_gives_byte_identical_results_twice(tmp_path: Path) -> None:
    """The demo's pipeline (its data generator, two workers, standardised targets, BatchNorm
    recalibration, adversarial training, waveform budgets and the reference preset) twice in
    one environment: byte-identical results stores. 30 clips, so that the 3 test clips give
    every r a value."""
    raw = shrunk_demo_config()
    outs = [tmp_path / "first", tmp_path / "second"]
    for out in outs:
        res = run_study(parse_config({**raw, "output": str(out)}), progress=False,
                        log=lambda m: None)
        assert set(res.runs["status"]) == {"done"} and len(res.runs) == 6
    runs = pd.read_csv(outs[0] / "runs.csv")
    assert np.isfinite(runs[["clean_mean_r", "clean_r2", "adv_mean_r", "delta_mae"]]).all().all()
    for name in ("clips.csv", "runs.csv"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    wavs = sorted((outs[0] / "media").rglob("*.wav"))
    assert len(wavs) == 4  # 2 runs x (clean, adversarial) of the one listened clip
    for a in wavs:  # equal samples, equal files: no time stamp in the WAVs
        assert a.read_bytes() == (outs[1] / a.relative_to(outs[0])).read_bytes(), a
    cleans = [p for p in wavs if p.name.endswith("_clean.wav")]
    assert len(cleans) == 2 and os.path.samefile(*cleans)  # the clip's excerpt, kept once
