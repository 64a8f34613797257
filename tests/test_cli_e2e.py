"""The CLI stages wired together on a tiny synthetic dataset: synth -> check -> adversarial
train -> evaluate -> attack in both domains, with resume. With 10 clips there is one validation
clip, so the validation r is undefined: the run must still keep a best/ checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from robustmer.cli import app


def invoke(*args: str) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, (args, res.output, res.exception)
    return res.output


@pytest.mark.slow
def test_cli_pipeline_on_synthetic_data(tmp_path: Path) -> None:
    data, run, cache = tmp_path / "data", tmp_path / "run", tmp_path / "cache"
    invoke("data", "synth", "--out", data, "--clips", 10, "--seed", 3)
    assert "OK" in invoke("data", "check", data)
    invoke("train", "--model", "a2b2e", "--data", data, "--seed", 1, "--out", run,
           "--width", 0.0625, "--epochs", 2, "--cache", cache, "--adversarial",
           "--adv-every", 2, "--adv-iters", 2, "--adv-eps", 0.01, "--adv-eta", 0.005,
           "--dropout", 0, "--no-progress")
    assert (run / "best").is_dir() and (run / "history.csv").is_file()
    assert json.loads((run / "best" / "model_config.json").read_text())["dropout"] == 0.0
    import yaml
    recorded = yaml.safe_load((run / "config.yaml").read_text())["adversarial_attack"]
    assert (recorded["name"], recorded["eps"], recorded["eta"], recorded["max_iters"]) == (
        "bim", 0.01, 0.005, 2)
    invoke("evaluate", run, "--split", "test")
    assert (run / "metrics_test.json").is_file()

    spec = tmp_path / "attack-spec"
    invoke("attack", run, "--split", "val", "--eps", 0.05, "--eta", 0.01, "--iters", 3,
           "--out", spec, "--no-progress")
    table = pd.read_csv(spec / "attack.csv", dtype={"clip_id": str})
    assert len(table) == 1 and (table["delta_linf"] <= 0.05 + 1e-7).all()
    assert table["mae_adv"].iloc[0] >= 0 and {"config.yaml", "meta.json"} <= {
        p.name for p in spec.iterdir()}
    # resume: nothing left to do, same table
    invoke("attack", run, "--split", "val", "--eps", 0.05, "--eta", 0.01, "--iters", 3,
           "--out", spec, "--resume", "--no-progress")
    pd.testing.assert_frame_equal(pd.read_csv(spec / "attack.csv", dtype={"clip_id": str}),
                                  table)
    # without --resume an existing attack folder is refused, not overwritten
    res = CliRunner().invoke(app, ["attack", str(run), "--split", "val", "--out", str(spec),
                                   "--iters", "3", "--no-progress"])
    assert res.exit_code != 0

    # several budgets: one folder per ε; the reference preset by name, recorded as such
    many = tmp_path / "attack-many"
    invoke("attack", run, "--split", "val", "--eps", "0.01,0.05", "--eta", 0.01, "--iters", 3,
           "--out", many, "--no-progress")
    assert sorted(p.name for p in many.iterdir() if not p.name.startswith(".")) == [
        "bim-spectrogram-eps0.01", "bim-spectrogram-eps0.05"]
    again = pd.read_csv(many / "bim-spectrogram-eps0.05" / "attack.csv", dtype={"clip_id": str})
    pd.testing.assert_frame_equal(again, table)  # same attack as the single-ε folder above
    ref = tmp_path / "attack-ref"
    invoke("attack", run, "--split", "val", "--attack", "reference", "--iters", 3,
           "--out", ref, "--no-progress")
    cfg = yaml.safe_load((ref / "config.yaml").read_text())
    assert cfg["attack"]["name"] == "reference" and cfg["attack"]["clip"] == "reference_noop"
    assert cfg["setting"]["attack"] == "reference"
    bad = CliRunner().invoke(app, ["attack", str(run), "--attack", "reference", "--clip",
                                   "project", "--out", str(tmp_path / "x"), "--no-progress"])
    assert bad.exit_code != 0 and "fixes clip" in str(bad.exception)

    wave = tmp_path / "attack-wave"
    invoke("attack", run, "--split", "val", "--domain", "waveform", "--eps", 0.002,
           "--eta", 0.0005, "--iters", 2, "--out", wave, "--no-progress")
    wt = pd.read_csv(wave / "attack.csv", dtype={"clip_id": str})
    clip = wt["clip_id"].iloc[0]
    assert (wave / "audio" / f"{clip}_adv.wav").is_file()
    assert wt["snr_db"].iloc[0] > 20
    # the waveform path sees the same input as the spectrogram path: same clean predictions
    cols = [c for c in table.columns if c.startswith("pred_")]
    pd.testing.assert_frame_equal(wt[cols], table[cols], atol=1e-4, check_exact=False)
