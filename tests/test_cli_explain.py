"""`robustmer train --model classifier`, `evaluate` accuracy and `robustmer explain` on a tiny
synthetic dataset (width-0.0625 models, 1 epoch)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from robustmer.cli import app


def invoke(*args: object) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, (args, res.output, res.exception)
    return res.output


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("explain-cli")
    invoke("data", "synth", "--out", root / "data", "--clips", 10, "--seed", 3)
    return root


@pytest.mark.slow
def test_classifier_train_evaluate_explain(synth: Path) -> None:
    run = synth / "clf"
    invoke("train", "--model", "CLASSIFIER", "--data", synth / "data", "--seed", 1, "--out", run,
           "--width", 0.0625, "--epochs", 1, "--cache", synth / "cache", "--no-progress")
    classes = json.loads((run / "best" / "data.json").read_text())["classes"]
    assert len(classes) >= 2
    invoke("evaluate", run, "--split", "test")
    metrics = json.loads((run / "metrics_test.json").read_text(encoding="utf-8"))
    m = metrics["metrics"]
    assert m["n"] == metrics["n_clips"] == 1 and m["accuracy"] in (0.0, 1.0)
    assert sum(c["n_true"] for c in m["per_class"].values()) == m["n"]
    assert sum(c["n_pred"] for c in m["per_class"].values()) == m["n"]
    assert sum(c["n_correct"] for c in m["per_class"].values()) == round(m["accuracy"] * m["n"])
    clip = next(iter(metrics["clips"]))
    predicted = classes[int(np.argmax(metrics["clips"][clip]))]

    out = synth / "exp-clf"
    text = invoke("explain", run, "--clip", clip, "--method", "lime", "--param", "n_samples=64",
                  "--segments", "2x3", "--out", out)
    summary = json.loads((out / "explanation.json").read_text(encoding="utf-8"))
    (row,) = summary["targets"]
    assert row["target"] == predicted and predicted in text  # default: the predicted class
    assert len(row["segment_scores"]) == 6 and sorted(row["ranking"]) == list(range(6))
    assert -1.0 <= row["r2"] <= 1.0
    assert (out / row["figure"]).is_file() and (out / "config.yaml").is_file()
    assert (out / "meta.json").is_file()
    with np.load(out / "attribution.npz") as z:
        assert z["attribution"].shape == (1, 1, 313, 149)
        assert np.unique(z["segments"]).tolist() == list(range(6))

    res = CliRunner().invoke(app, ["explain", str(run), "--clip", clip, "--target", "nosuch",
                                   "--out", str(synth / "bad")])
    assert res.exit_code != 0 and "not a class" in str(res.exception)


@pytest.mark.slow
def test_a2m2e_explain_emotions_and_concepts(synth: Path) -> None:
    run = synth / "a2m2e"
    invoke("train", "--model", "a2m2e", "--data", synth / "data", "--seed", 1, "--out", run,
           "--width", 0.0625, "--epochs", 1, "--cache", synth / "cache", "--no-progress")
    clip = json.loads((run / "split.json").read_text())["test"][0]
    out = synth / "exp-a2m2e"
    invoke("explain", run, "--clip", clip, "--method", "saliency", "--out", out)
    summary = json.loads((out / "explanation.json").read_text(encoding="utf-8"))
    assert [r["target"] for r in summary["targets"]][:2] == ["valence", "energy"]
    assert len(summary["targets"]) == 8  # every emotion of a regressor by default
    assert all((out / r["figure"]).is_file() for r in summary["targets"])
    assert (out / "concepts.png").is_file() and (out / "concepts.csv").is_file()
    out2 = synth / "exp-concept"
    invoke("explain", run, "--clip", clip, "--method", "gbp", "--target", "Minorness",
           "--out", out2)
    (row,) = json.loads((out2 / "explanation.json").read_text(encoding="utf-8"))["targets"]
    assert row["target"] == "minorness" and row["index"] == 6
