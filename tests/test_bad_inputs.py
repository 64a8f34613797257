"""Bad input to the explain / attack / explainer-eval commands gets a named error (or, for a
budget that cannot mean what it says, a warning), and nothing half-made is left behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from robustmer.cli import app
from robustmer.errors import CheckpointError, ConfigError

pytestmark = pytest.mark.slow


def run_cli(*args: object) -> tuple[int, str, BaseException | None]:
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.output, res.exception


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad-inputs")
    assert run_cli("data", "synth", "--out", root / "data", "--clips", 10, "--seed", 3)[0] == 0
    code, out, err = run_cli("train", "--model", "a2e", "--data", root / "data", "--seed", 1,
                             "--out", root / "run", "--width", 0.0625, "--epochs", 1,
                             "--cache", root / "cache", "--no-progress")
    assert code == 0, (out, err)
    return root / "run"


def test_explain_refuses_an_unknown_method_or_clip_before_any_file(run: Path) -> None:
    before = sorted(p.name for p in run.iterdir())
    code, _, err = run_cli("explain", run, "--clip", "030", "--method", "shap")
    assert code != 0 and isinstance(err, ConfigError) and "shap" in str(err)
    code, _, err = run_cli("explain", run, "--clip", "999", "--method", "saliency")
    assert code != 0 and isinstance(err, ConfigError) and "'999'" in str(err)
    code, _, err = run_cli("explain", run, "--clip", "001", "--method", "lime",
                           "--param", "n_sample=10")
    assert code != 0 and isinstance(err, ConfigError) and "n_sample" in str(err)
    assert sorted(p.name for p in run.iterdir()) == before  # no explain/ folder left


def test_a_truncated_checkpoint_is_a_named_error(run: Path, tmp_path: Path) -> None:
    broken = tmp_path / "run"
    shutil.copytree(run, broken)
    weights = broken / "best" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    code, _, err = run_cli("evaluate", broken)
    assert code != 0 and isinstance(err, CheckpointError)
    assert "best" in str(err) and "unreadable" in str(err) and "truncated" in str(err)


def test_a_budget_the_box_or_the_steps_cannot_honour_is_warned(run: Path, tmp_path: Path) -> None:
    code, out, err = run_cli("attack", run, "--out", tmp_path / "a", "--domain", "waveform",
                             "--eps", 1000, "--iters", 1, "--no-examples", "--no-progress")
    assert code == 0, (out, err)
    assert "eps=1000 on audio samples in [-1, 1]" in out
    assert "reach at most 0.002" in out  # 1 step of the default eta


def test_explainer_eval_needs_a_method(run: Path, tmp_path: Path) -> None:
    code, _, err = run_cli("explainer-eval", run, "--out", tmp_path / "x")
    assert code != 0 and isinstance(err, ConfigError) and "--methods" in str(err)
    assert not (tmp_path / "x").exists()
