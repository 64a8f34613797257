"""`robustmer l2i fit | explain | evaluate` and the report's L2I section on a tiny run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from robustmer.cli import app
from robustmer.data import Split


def invoke(*args: object) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, (args, res.output, res.exception)
    return res.output


@pytest.mark.slow
def test_l2i_cli_on_tiny_run(tmp_path: Path) -> None:
    data, run = tmp_path / "data", tmp_path / "run"
    invoke("data", "synth", "--out", data, "--clips", 10, "--seed", 1)
    invoke("train", "--model", "a2e", "--data", data, "--seed", 0, "--out", run, "--width",
           0.0625, "--epochs", 1, "--cache", tmp_path / "cache", "--no-progress")
    fit = ("l2i", "fit", run, "--components", 4, "--frames-per-clip", 4, "--nmf-iterations", 5,
           "--epochs", 2, "--pooling", "att,max", "--max-clips", 3)
    assert "fitted" in invoke(*fit)
    l2i = run / "l2i"
    assert (l2i / "dictionary" / "dictionary.safetensors").is_file()
    assert (l2i / "interpreter_att" / "last" / "model.safetensors").is_file()
    assert (l2i / "interpreter_max" / "last" / "model.safetensors").is_file()
    assert "reused" in invoke(*fit)  # same settings: the dictionary is not refitted
    clip = Split.load(run / "split.json").test[0]
    out = invoke("l2i", "explain", run, "--clip", clip, "--target", "tension", "--tau", 0.0)
    folder = Path(out.strip().split("results: ")[-1])
    assert (folder / "input.wav").is_file() and (folder / "interpretation.wav").is_file()
    assert (folder / "figure.png").is_file() and (folder / "explanation.json").is_file()
    invoke("l2i", "evaluate", run, "--split", "train", "--tau", "0.3,0.7", "--max-clips", 2)
    fid = pd.read_csv(l2i / "fidelity.csv")
    assert set(fid["pooling"]) == {"att", "max"} and {"r", "mae"} <= set(fid["metric"])
    ff = pd.read_csv(l2i / "faithfulness.csv")
    assert sorted(set(ff["tau"])) == [0.3, 0.7] and "wilcoxon_p" in ff.columns
    assert (l2i / "evaluate.yaml").is_file() and (l2i / "evaluate_meta.json").is_file()
    page = Path(invoke("report", run, "--out", tmp_path / "rep" / "report.html").strip())
    html = page.read_text(encoding="utf-8")
    assert "Listen to Interpret" in html and html.count("<audio") >= 2
    res = CliRunner().invoke(app, ["l2i", "explain", str(run), "--clip", clip, "--target",
                                   "nope", "--tau", "0.5"])
    assert res.exit_code != 0 and "nope" in str(res.exception)
