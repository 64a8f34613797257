"""Results are never lost or mixed, runs travel, and outputs say what they are (issue 9).

Each test here failed on the behaviour before the change it guards (see the issue's list)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from robustmer import EMOTIONS
from robustmer.cli import app
from robustmer.errors import ConfigError, RobustmerError
from robustmer.evaluate.store import ResultsStore
from robustmer.folders import MARKER, claim_folder, settings_diff

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: object) -> tuple[int, str]:
    """Exit code and output as the console script gives them (a RobustmerError is exit 2)."""
    res = CliRunner().invoke(app, [str(a) for a in args])
    if isinstance(res.exception, RobustmerError):
        return 2, res.output + f"error: {res.exception}"
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.output


def ok(*args: object) -> str:
    code, out = run_cli(*args)
    assert code == 0, (args, out)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 12-clip embedded dataset and two 1-epoch A2E runs (seeds 1 and 2) on it."""
    base = tmp_path_factory.mktemp("safety")
    data, cache = base / "data", base / "cache"
    ok("data", "synth", "--out", data, "--clips", 12, "--seed", 5)
    runs = {}
    for seed in (1, 2):
        runs[seed] = base / f"run{seed}"
        ok("train", "--model", "A2E", "--data", data, "--seed", seed, "--out", runs[seed],
           "--width", 0.0625, "--epochs", 1, "--cache", cache, "--no-progress")
    return {"base": base, "data": data, "cache": cache, "run1": runs[1], "run2": runs[2]}


def attack_args(run: Path, out: Path, *extra: object) -> list[object]:
    return ["attack", run, "--split", "test", "--eps", 0.05, "--eta", 0.01, "--iters", 2,
            "--out", out, "--no-progress", "--batch-size", 1, *extra]


# --- results lost or mixed ---------------------------------------------------------------------

def test_settings_diff_names_nested_keys() -> None:
    diff = settings_diff({"a": {"eps": 0.001, "iters": 10}, "b": 1},
                         {"a": {"eps": 0.01, "iters": 10}, "b": 1, "c": 2})
    assert diff == [("a.eps", 0.001, 0.01), ("c", None, 2)]


def test_import_into_a_study_store_is_refused_then_replaced_whole(tmp_path: Path) -> None:
    import numpy as np

    from test_cpjku_import import _rows, _write_run

    logs = tmp_path / "logs"
    rng = np.random.default_rng(0)
    _write_run(logs / "r1", _rows(rng, 3))
    (logs / "runs.json").write_text(json.dumps({"r1": {"model_type": "A2E", "seed": 1}}))
    study = tmp_path / "study"
    claim_folder(study, "study")
    (study / "runs").mkdir()
    for name in ("runs.csv", "clips.csv", "config.yaml", "meta.json"):
        (study / name).write_text("the study's own file\n")
    code, out = run_cli("import-cpjku", logs, "--out", study)
    assert code == 2 and "--overwrite" in out and "study results" in out
    assert (study / "runs.csv").read_text() == "the study's own file\n"  # untouched
    ok("import-cpjku", logs, "--out", study, "--overwrite")
    assert not (study / "runs").exists()  # nothing of the old folder is left
    assert json.loads((study / MARKER).read_text())["kind"] == "store"
    assert len(ResultsStore(study).read_clips()) == 3
    ok("import-cpjku", logs, "--out", study)  # re-importing into its own folder is fine
    assert not any(p.name.startswith(".study.") for p in tmp_path.iterdir())  # no temp left


def test_non_empty_foreign_folder_is_refused(tiny: dict[str, Path], tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    code, out = run_cli(*attack_args(tiny["run1"], foreign))
    assert code == 2 and "not empty" in out
    code, out = run_cli("train", "--model", "a2e", "--data", tiny["data"], "--out", foreign,
                        "--width", 0.0625, "--epochs", 1, "--cache", tiny["cache"])
    assert code == 2 and "not empty" in out
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_attack_resume_with_another_run_or_setting_names_the_key(tiny: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "att"
    ok(*attack_args(tiny["run1"], out))
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["run"]["path"] == str(tiny["run1"].resolve())
    assert len(cfg["run"]["weights_sha256"]) == 64
    code, msg = run_cli(*attack_args(tiny["run2"], out, "--resume"))
    assert code == 2 and "run.weights_sha256: stored" in msg
    code, msg = run_cli(*attack_args(tiny["run1"], out, "--iters", 3, "--resume"))
    assert code == 2 and "attack.max_iters: stored 2, asked 3" in msg
    # the same run and settings resume (nothing left to do)
    before = (out / "attack.csv").read_text()
    ok(*attack_args(tiny["run1"], out, "--resume"))
    assert (out / "attack.csv").read_text() == before


def test_train_resume_needs_a_run_and_names_a_changed_setting(tiny: dict[str, Path],
                                                              tmp_path: Path) -> None:
    code, out = run_cli("train", "--model", "a2e", "--data", tiny["data"], "--out",
                        tmp_path / "nothing", "--resume", "--cache", tiny["cache"])
    assert code == 2 and "no run to resume" in out
    assert not (tmp_path / "nothing").exists()
    run = tmp_path / "r"
    shutil.copytree(tiny["run1"], run)
    code, out = run_cli("train", "--model", "a2e", "--data", tiny["data"], "--out", run,
                        "--seed", 1, "--width", 0.0625, "--epochs", 2, "--lr", 0.01,
                        "--cache", tiny["cache"], "--resume", "--no-progress")
    assert code == 2 and "lr: stored 0.0005, asked 0.01" in out
    code, out = run_cli("train", "--model", "a2e", "--data", tiny["data"], "--out", run,
                        "--seed", 1, "--width", 0.125, "--epochs", 2, "--cache", tiny["cache"],
                        "--resume", "--no-progress")
    assert code == 2 and "width: stored 0.0625, asked 0.125" in out


def test_a_run_being_trained_is_refused_to_a_second_train(tiny: dict[str, Path],
                                                           tmp_path: Path) -> None:
    from robustmer.folders import folder_lock

    run = tmp_path / "r"
    shutil.copytree(tiny["run1"], run)
    before = (run / "history.csv").read_text()
    with folder_lock(run):  # as the first `robustmer train` holds it while it trains
        for flag in ("--resume", "--overwrite"):
            code, out = run_cli("train", "--model", "a2e", "--data", tiny["data"], "--out",
                                run, "--seed", 1, "--width", 0.0625, "--epochs", 2, "--cache",
                                tiny["cache"], flag, "--no-progress")
            assert code == 2 and "another robustmer process" in out, out
    assert (run / "history.csv").read_text() == before
    ok("train", "--model", "a2e", "--data", tiny["data"], "--out", run, "--seed", 1,
       "--width", 0.0625, "--epochs", 2, "--cache", tiny["cache"], "--resume", "--no-progress")
    assert (run / "history.csv").read_text() != before  # the lock went with its holder


# --- runs that travel --------------------------------------------------------------------------

def test_run_records_absolute_data_and_moved_data_is_found_with_data_option(
        tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(tiny["data"], tmp_path / "d")
    monkeypatch.chdir(tmp_path)
    ok("train", "--model", "a2e", "--data", "d", "--out", "r", "--width", 0.0625, "--epochs", 1,
       "--cache", tiny["cache"], "--no-progress")
    recorded = json.loads((tmp_path / "r" / "best" / "data.json").read_text())
    assert recorded["root"] == str((tmp_path / "d").resolve())
    assert recorded["content_id"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    ok("evaluate", tmp_path / "r")  # relative path typed at training time, other cwd now
    (tmp_path / "d").rename(tmp_path / "moved")
    code, out = run_cli("evaluate", tmp_path / "r")
    assert code == 2 and "dataset folder not found" in out and "--data" in out
    ok("evaluate", tmp_path / "r", "--data", tmp_path / "moved")
    # another dataset is refused, even under the right name
    ok("data", "synth", "--out", tmp_path / "other", "--clips", 12, "--seed", 6)
    code, out = run_cli("evaluate", tmp_path / "r", "--data", tmp_path / "other")
    assert code == 2 and "content id" in out


@pytest.mark.slow
def test_ctrl_c_says_where_training_stopped_and_how_to_resume(tiny: dict[str, Path],
                                                             tmp_path: Path) -> None:
    run = tmp_path / "r"
    cmd = [sys.executable, "-m", "robustmer", "train", "--model", "a2e", "--data",
           str(tiny["data"]), "--out", str(run), "--width", "0.0625", "--epochs", "500",
           "--cache", str(tiny["cache"]), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        deadline = time.monotonic() + 120
        while not (run / "last" / "state.json").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no epoch finished in 120 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "stopped after epoch" in err and "--resume" in err and "robustmer train" in err


# --- outputs that say what they are --------------------------------------------------------------

def test_train_summary_labels_best_and_last_epoch_and_history_keeps_column_order(
        tiny: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "r"
    shutil.copytree(tiny["run1"], run)
    out = ok("train", "--model", "a2e", "--data", tiny["data"], "--out", run, "--seed", 1,
             "--width", 0.0625, "--epochs", 2, "--cache", tiny["cache"], "--resume",
             "--no-progress")
    assert "best epoch" in out and "last epoch 2" in out and "validation MAE" in out
    assert "%|" not in out  # --no-progress silences the epoch bar too
    header = (run / "history.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["epoch", "train_loss", "val_mean_r"]


def test_model_type_names_in_any_case_and_adversarial_runs_are_named(
        tiny: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "adv"
    ok("train", "--model", "aA2E", "--data", tiny["data"], "--out", run, "--width", 0.0625,
       "--epochs", 1, "--adv-every", 1, "--adv-iters", 1, "--cache", tiny["cache"],
       "--no-progress")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model_type"] == "aA2E" and cfg["train"]["adversarial_every"] == 1
    assert cfg["adversarial_attack"]["max_iters"] == 1
    from robustmer.study.config import parse_config

    parsed = parse_config({"name": "x", "output": "o", "models": ["a2e", "AA2B2E"]})
    assert parsed.models == ("A2E", "aA2B2E")


def test_invalid_option_is_refused_by_its_name_before_any_feature(tiny: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    cache = tmp_path / "fresh-cache"
    for option, value in (("--width", 0), ("--dropout", 1), ("--epochs", 0), ("--lr", -1)):
        code, out = run_cli("train", "--model", "a2e", "--data", tiny["data"], "--out",
                            tmp_path / "r", "--cache", cache, option, value)
        assert code == 2 and option in out and "TrainConfig" not in out, out
    assert not cache.exists() and not (tmp_path / "r").exists()


def test_evaluate_prints_a_table_with_the_baseline_and_names_clip_outputs(
        tiny: dict[str, Path]) -> None:
    out = ok("evaluate", tiny["run1"], "--split", "test")
    assert "mean-pred MAE" in out and "valence" in out and "ratings divided by 10" in out
    payload = json.loads((tiny["run1"] / "metrics_test.json").read_text())
    _clip, values = next(iter(payload["clips"].items()))
    assert set(values) == {"target", "prediction"} and "tender" in values["prediction"]
    assert payload["mean_predictor"]["mae"] > 0 and "divided by 10" in payload["units"]


def test_search_and_curve_take_the_waveform_domain(tiny: dict[str, Path],
                                                   tmp_path: Path) -> None:
    ok("robustness-curve", tiny["run1"], "--domain", "waveform", "--eps", "0.001",
       "--iters", 1, "--split", "train", "--max-clips", 3, "--out", tmp_path / "curve")
    table = pd.read_csv(tmp_path / "curve" / "curve.csv")
    assert len(table) == 1 and table["mae_adv"].iloc[0] >= 0
    cfg = yaml.safe_load((tmp_path / "curve" / "config.yaml").read_text())
    assert cfg["domain"] == "waveform"
    ok("attack-search", tiny["run1"], "--domain", "waveform", "--eps", "0.001", "--iters", "1",
       "--split", "train", "--max-clips", 3, "--out", tmp_path / "search")
    assert (tmp_path / "search" / "search.csv").is_file()


def test_config_command_prints_a_packaged_config() -> None:
    from robustmer.study.config import parse_config

    out = ok("config", "demo")
    assert parse_config(yaml.safe_load(out)).name == "demo"
    code, out = run_cli("config", "nope")
    assert code == 2 and "demo" in out


def test_study_without_examples_and_with_total_wall_time(tmp_path: Path) -> None:
    import robustmer.study.runner as runner
    from robustmer.study.config import parse_config

    cfg = parse_config({
        "name": "t", "output": str(tmp_path / "out"), "models": ["A2E"], "seeds": [1],
        "data": {"synth_clips": 12, "cache": str(tmp_path / "cache")},
        "train": {"width": 0.0625, "epochs": 1}, "attack": {"iters": 1, "batch_size": 4},
        "write_examples": False})
    first = runner.run_study(cfg, progress=False, log=lambda m: None)
    (attack_dir,) = (tmp_path / "out" / "runs" / "A2E_seed1" / "attack").iterdir()
    assert (attack_dir / "attack.csv").is_file() and not (attack_dir / "examples").exists()
    second = runner.run_study(cfg, progress=False, log=lambda m: None)
    meta = second.store.read_meta()
    assert meta["calls"] == 2
    assert meta["seconds_total"] == pytest.approx(first.seconds + second.seconds, rel=1e-6)
    from robustmer.report import build_report

    page = build_report(tmp_path / "out").read_text(encoding="utf-8")
    assert "Glossary of the columns" in page and "ratings divided by 10" in page
    assert "copy that media/ folder" in page and "self-contained" not in page


def test_report_of_a_single_attack_folder(tiny: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "att"
    ok(*attack_args(tiny["run1"], out, "--split", "train"))
    page = Path(ok("report", out).strip().splitlines()[-1])
    assert page == out / "report.html" and page.is_file()
    html = page.read_text(encoding="utf-8")
    assert "Table 1" in html and "run1" in html and "A2E" in html
    assert "attack folder (att)" in html and "(report-store)" not in html  # named by the folder
    store = ResultsStore(out / "report-store")
    clips = store.read_clips()
    table = pd.read_csv(out / "attack.csv", dtype={"clip_id": str})
    assert clips["clip_id"].tolist() == table["clip_id"].tolist()
    assert clips["eps"].iloc[0] == 0.05 and clips["attack"].iloc[0] == "bim"


def test_readme_python_api_example_runs(tiny: dict[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The README's Python API block, run as written on a tiny run and a tiny store."""
    import re

    import numpy as np

    from test_cpjku_import import _rows, _write_run

    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Python API\n\n```python\n(.*?)```", text, re.S)
    assert block, "README has no Python API block"
    code = block.group(1)
    assert 'run_dir = "runs/a2e-1"' in code and 'ResultsStore("demo-output")' in code
    logs = tmp_path / "logs"
    _write_run(logs / "r1", _rows(np.random.default_rng(0), 3))
    (logs / "runs.json").write_text(json.dumps({"r1": {"model_type": "A2E", "seed": 1}}))
    ok("import-cpjku", logs, "--out", tmp_path / "store")
    code = code.replace('"runs/a2e-1"', repr(str(tiny["run1"]))).replace(
        '"demo-output"', repr(str(tmp_path / "store")))
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "MAE" in printed and "mae_adv" in printed


def test_mean_snr_leaves_out_clips_whose_delta_is_zero() -> None:
    """The reference preset may return the clean input (δ = 0, SNR infinite) for some clips;
    the run's mean SNR is over the others, not infinite."""
    import numpy as np

    from robustmer.evaluate.summary import clips_frame, summarize_run

    y = np.full((3, 8), 0.5)
    clips = clips_frame("r", "A2E", 1, ["1", "2", "3"], y, y + 0.01, y + 0.02,
                        snr_db=[30.0, np.inf, 40.0], attack="reference", eps=float("nan"),
                        names=EMOTIONS)
    assert summarize_run(clips)["mean_snr_db"] == pytest.approx(35.0)


def test_a_study_folder_being_written_is_refused_even_with_overwrite(tmp_path: Path) -> None:
    """Two studies writing one folder mix their results; the second one is refused by the
    folder's lock (held by the writing process, released by the OS when it ends)."""
    from robustmer.folders import LOCK, folder_lock
    from robustmer.study.config import parse_config
    from robustmer.study.runner import STUDY_KIND, run_study

    out = claim_folder(tmp_path / "s", STUDY_KIND)
    raw = {"name": "t", "output": str(out), "models": ["A2E"], "seeds": [1],
           "data": {"synth_clips": 12}, "train": {"width": 0.0625, "epochs": 1},
           "attack": {"iters": 1}, "media_clips": 0}
    with folder_lock(out, "output folder"):
        for overwrite in (False, True):
            with pytest.raises(ConfigError, match=r"another robustmer process \(pid \d+\)"):
                run_study(parse_config(raw), progress=False, log=lambda m: None,
                          overwrite=overwrite)
    assert (out / LOCK).is_file() and not (out / "data").exists()
