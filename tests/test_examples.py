"""The examples of docs/own-model.md run as a user would run them, from the repository root:
``robustmer study examples/NAME.yaml -o DIR``, then an explainer, ``explainer-eval``, L2I on
named layers and the report, on the user's own model and data."""

from __future__ import annotations

import html.parser
import json
import os
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from robustmer.cli import app

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def invoke(*args: object) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, (args, res.output, res.exception)
    return res.output


class Tables(html.parser.HTMLParser):
    """The text of every table header cell of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[str] = []
        self._in = False

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self._in = self._in or tag == "th"

    def handle_endtag(self, tag: str) -> None:
        if tag == "th":
            self._in = False

    def handle_data(self, data: str) -> None:
        if self._in:
            self.headers.append(data)


@pytest.fixture
def at_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(ROOT)  # the YAMLs name their files relative to the repository root
    return ROOT


def test_own_waveform_model_on_own_data(tmp_path: Path, at_root: Path) -> None:
    out = tmp_path / "own"
    invoke("study", "examples/own_model.yaml", "-o", out, "--no-progress")
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs["status"]) == {"done"}
    assert set(runs["model_type"]) == {"WaveCNN", "A2E"} and len(runs) == 8  # 2 x 2 x 2
    assert {"r_arousal", "r_valence"} <= set(runs.columns)
    assert runs[["clean_mean_r", "adv_mae", "delta_mae"]].notna().all().all()
    config = (out / "config.yaml").read_text()
    assert "stop: mse" in config  # two outputs: the MSE rule, scaled to the 1-9 range
    manifest = pd.read_csv(out / "data" / "clips.csv")
    assert list(manifest.columns) == ["file", "arousal", "valence", "split"]
    page = (out / "report.html").read_text(encoding="utf-8")
    parser = Tables()
    parser.feed(page)
    assert "r arousal" in parser.headers and "r valence" in parser.headers
    assert "WaveCNN" in page and "A2E" in page

    run = out / "runs" / "WaveCNN_seed1" / "train"
    model_config = json.loads((run / "best" / "model_config.json").read_text())
    assert model_config["factory"].endswith("examples/own_model/model.py:build")
    clip = pd.read_csv(out / "clips.csv", dtype={"clip_id": str})["clip_id"].iloc[0]
    text = invoke("explain", run, "--clip", clip, "--method", "saliency",
                  "--out", tmp_path / "explain")
    assert "saliency for arousal" in text and "saliency for valence" in text
    summary = json.loads((tmp_path / "explain" / "explanation.json").read_text())
    assert summary["view"] == "stft" and [t["target"] for t in summary["targets"]] == [
        "arousal", "valence"]
    # the default attack (docs/own-model.md: 6 of 6 test clips; budgets made for standardised
    # spectrograms, e.g. --eps 0.05 --eta 0.01, gave none on the STFT magnitudes)
    text = invoke("explainer-eval", run, "--methods", "saliency", "--out", tmp_path / "xeval",
                  "--max-clips", 3, "--no-progress")
    assert "3 of 3 clips of test gave a successful adversarial example (regression)" in text
    flips = pd.read_csv(tmp_path / "xeval" / "flips.csv")
    assert set(flips["method"]) == {"saliency", "magnitude", "random"}
    assert flips["clip_id"].nunique() == 3
    text = invoke("l2i", "fit", run, "--layers", "block1,block2,block3", "--components", 8,
                  "--nmf-iterations", 20, "--epochs", 2, "--pooling", "att")
    fit = json.loads((run / "l2i" / "fit.json").read_text())
    assert fit["layers"] == ["block1", "block2", "block3"]
    assert fit["input"]["kind"] == "waveform"
    invoke("report", tmp_path / "xeval")
    assert (tmp_path / "xeval" / "report.html").is_file()


def test_pretrained_classifier_on_own_labels(tmp_path: Path, at_root: Path) -> None:
    out = tmp_path / "pre"
    invoke("study", "examples/pretrained_classifier.yaml", "-o", out, "--no-progress")
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs["status"]) == {"done"}
    pretrained = runs[runs["model_type"] == "BrightnessNet"]
    assert len(pretrained) == 2  # one run (its first seed), two budgets
    assert {"clean_accuracy", "adv_accuracy", "r_bright", "r_dark"} <= set(runs.columns)
    run = out / "runs" / "BrightnessNet_seed1" / "train"
    model_config = json.loads((run / "best" / "model_config.json").read_text())
    assert len(model_config["weights_sha256"]) == 64 and model_config["trainable"] is False
    assert json.loads((run / "best" / "state.json").read_text())["pretrained"] is True
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "bright" in page and "BrightnessNet" in page
    text = invoke("explainer-eval", run, "--methods", "saliency", "--out", tmp_path / "xeval",
                  "--split", "test", "--attack-iters", 100, "--no-progress")
    assert "(classification)" in text
    flips = pd.read_csv(tmp_path / "xeval" / "flips.csv")
    adversarial = pd.read_csv(tmp_path / "xeval" / "adversarial.csv")
    assert len(adversarial) == 6 and set(flips["method"]) <= {"saliency", "magnitude", "random"}
    assert adversarial["success"].sum() >= 3  # measured: 5 of 6 (docs/own-model.md)
    assert flips["clip_id"].nunique() == adversarial["success"].sum()
    invoke("l2i", "fit", run, "--layers", "filterbank,act1,act2", "--components", 8,
           "--nmf-iterations", 20, "--epochs", 2, "--pooling", "att")
    assert json.loads((run / "l2i" / "fit.json").read_text())["task"] == "classification"
    invoke("report", out)
    assert os.path.getsize(out / "report.html") > 0
