"""Import of the published CP-JKU attack logs: strict parsing of numpy's printed arrays, the
results store it writes, the CLI command, and (realdata) the 50 published runs x 36 clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from robustmer import EMOTIONS
from robustmer.cli import app
from robustmer.errors import DatasetError
from robustmer.evaluate.attack_settings import settings
from robustmer.evaluate.store import ResultsStore
from robustmer.evaluate.summary import summarize_runs
from robustmer.study.cpjku import import_cpjku, parse_array, parse_clip_id

HEADER = "file,epoch,db,norm,converged,true-label,orig-pred,new-pred,adv-target\n"


def _arr(v: np.ndarray, wrap: bool = False) -> str:
    """numpy's printed 1x8 form; wrapped ones are also in scientific notation, as numpy prints
    arrays with small entries, and span two lines (CSV-quoted)."""
    body = " ".join(f"{x:.7e}" if wrap else f"{x:.6g}" for x in v)
    if wrap:
        toks = body.split(" ")
        return '"[[' + " ".join(toks[:6]) + "\n  " + " ".join(toks[6:]) + ']]"'
    return "[[" + body + "]]"


def _write_run(folder: Path, rows: list[tuple], extra_line: str | None = None) -> None:
    folder.mkdir(parents=True)
    (folder / "hparams.yaml").write_text("clip_eps: 0.001\nlr: 0.002\nmax_iters: 1000\n"
                                         "conv_method: corr\n")
    lines = [HEADER]
    for clip, it, db, norm, conv, y, p, a, tgt, wrap in rows:
        lines.append(f"['{clip}.mp3.spec'],{it},{db},{norm},{conv},{_arr(y)},{_arr(p, wrap)},"
                     f"{_arr(a, wrap)},{tgt}\n")
    if extra_line:
        lines.append(extra_line)
    (folder / "log.csv").write_text("".join(lines))


def _rows(rng: np.random.Generator, n: int) -> list[tuple]:
    out = []
    for i in range(n):
        y = np.round(rng.uniform(0.1, 0.8, 8), 5)
        p = y + rng.normal(0, 0.05, 8)
        a = p + rng.normal(0, 1.0, 8)
        a[3] = 1.0942239e-03
        out.append((f"{i + 1:03d}", 1000 - i, 30.0 + i, 10.0 + i, i == 0, y, p, a, -0.6,
                    i % 2 == 0))
    return out


@pytest.fixture()
def logs(tmp_path: Path) -> tuple[Path, dict[str, list[tuple]]]:
    rng = np.random.default_rng(0)
    spec, data = {}, {}
    for k, (mt, seed) in enumerate([("A2E", 6), ("A2M2E", 6), ("A2E", 21), ("A2M2E", 21)]):
        folder = f"{seed}_run{k}_test"
        rows = _rows(rng, 4)
        _write_run(tmp_path / "logs" / folder, rows)
        spec[folder] = {"model_type": mt, "seed": seed}
        data[folder] = rows
    (tmp_path / "logs" / "runs.json").write_text(json.dumps(spec))
    return tmp_path / "logs", data


def test_parse_array_is_strict() -> None:
    text = "[[ 0.5402055   0.4292855   0.26274085 -0.0112503   0.10650109  0.438852\n" \
           "   0.32875907  0.35396203]]"
    np.testing.assert_allclose(parse_array(text, where="w"),
                               [0.5402055, 0.4292855, 0.26274085, -0.0112503, 0.10650109,
                                0.438852, 0.32875907, 0.35396203])
    sci = "[[-1.1363444e+00  1.0997533e+00  1.7164702e+00  1.0942239e-03\n" \
          "   1.7300955e+00 -5.8986670e-01  4.9039906e-01 -1.7242981e+00]]"
    assert parse_array(sci, where="w")[3] == pytest.approx(1.0942239e-03)
    for bad in ("[[0.1 0.2 0.3]]", "[[" + " ".join(["0.1"] * 9) + "]]",
                "[0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8]", "[[0.1 0.2 0.3 0.4 0.5 0.6 0.7 abc]]",
                "[[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8]]", "__import__('os')", ""):
        with pytest.raises(DatasetError, match=r"file\.csv: row 3"):
            parse_array(bad, where="file.csv: row 3")
    assert parse_clip_id("['146.mp3.spec']", where="w") == "146"
    with pytest.raises(DatasetError, match="file entry"):
        parse_clip_id("146.mp3.spec", where="w")


def test_import_writes_the_results_store(logs: tuple[Path, dict], tmp_path: Path) -> None:
    log_dir, data = logs
    store = import_cpjku(log_dir, tmp_path / "out")
    clips, runs = store.read_clips(), store.read_runs()
    assert len(runs) == 4 and len(clips) == 16
    folder = next(iter(data))
    rows = data[folder]
    got = clips[clips["run_id"] == folder].set_index("clip_id")
    assert list(got.index) == ["001", "002", "003", "004"]
    for clip, it, db, norm, conv, y, p, a, tgt, _ in rows:
        r = got.loc[clip]
        np.testing.assert_allclose(r[[f"y_{e}" for e in EMOTIONS]].to_numpy(float), y, rtol=1e-5)
        np.testing.assert_allclose(r[[f"pred_{e}" for e in EMOTIONS]].to_numpy(float), p,
                                   rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(r[[f"adv_{e}" for e in EMOTIONS]].to_numpy(float), a,
                                   rtol=1e-5, atol=1e-7)
        assert r["iterations"] == it and r["snr_db"] == db and r["delta_l2"] == norm
        assert bool(r["converged"]) == conv and r["final_threshold"] == tgt
        assert np.isnan(r["delta_linf"])
        assert r["mae_adv"] == pytest.approx(np.abs(a - y).mean(), rel=1e-5)
    # runs.csv is exactly the shared summary code applied to the clips
    ref = summarize_runs(clips)
    np.testing.assert_allclose(runs.set_index("run_id").loc[ref["run_id"], "delta_mae"],
                               ref["delta_mae"])
    assert set(runs["model_type"]) == {"A2E", "A2M2E"}
    # the published attack: the reference preset, no effective bound (nominal 0.001 in config)
    assert str(settings(clips)) == str(settings(runs)) == str([("reference", "spectrogram",
                                                                 float("nan"))])
    # an import written before the setting columns existed reads back the same setting
    for path in (store.clips_path, store.runs_path):
        pd.read_csv(path).drop(columns=["attack", "domain", "eps"]).to_csv(path, index=False)
    assert str(settings(store.read_clips())) == str([("reference", "spectrogram", float("nan"))])
    assert store.read_runs()["eps"].isna().all()
    config = yaml.safe_load(store.config_path.read_text())
    assert config["source"] == "cpjku"
    assert config["runs"][folder]["hparams"]["clip_eps"] == 0.001
    assert json.loads(store.meta_path.read_text())["source"] == "cpjku"


def test_malformed_row_names_file_and_row(logs: tuple[Path, dict], tmp_path: Path) -> None:
    log_dir, data = logs
    folder = list(data)[2]
    log = log_dir / folder / "log.csv"
    seven = "[[0.1 0.2 0.3 0.4 0.5 0.6 0.7]]"
    eight = "[[0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8]]"
    log.write_text(log.read_text() + f"['099.mp3.spec'],5,30,1,False,{eight},{seven},{eight},0.5\n")
    with pytest.raises(DatasetError, match=rf"{folder}/log\.csv: row 5 .*orig-pred.*exactly 8"):
        import_cpjku(log_dir, tmp_path / "out")
    assert not (tmp_path / "out" / "clips.csv").exists()


def test_missing_run_folder_and_column(logs: tuple[Path, dict], tmp_path: Path) -> None:
    log_dir, data = logs
    spec = json.loads((log_dir / "runs.json").read_text())
    spec["nope"] = {"model_type": "A2E", "seed": 1}
    other = tmp_path / "runs2.json"
    other.write_text(json.dumps(spec))
    with pytest.raises(DatasetError, match="run folder nope not found"):
        import_cpjku(log_dir, tmp_path / "out", other)
    folder = next(iter(data))
    log = log_dir / folder / "log.csv"
    log.write_text(log.read_text().replace("adv-target", "target"))
    with pytest.raises(DatasetError, match=r"missing column.*adv-target"):
        import_cpjku(log_dir, tmp_path / "out")


def test_cli_import_and_report(logs: tuple[Path, dict], tmp_path: Path) -> None:
    log_dir, _ = logs
    out = tmp_path / "imported"
    runner = CliRunner()
    res = runner.invoke(app, ["import-cpjku", str(log_dir), "--runs",
                              str(log_dir / "runs.json"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert ResultsStore(out).exists()
    res = runner.invoke(app, ["report", str(out), "--media-clips", "0"])
    assert res.exit_code == 0, res.output
    page = (out / "report.html").read_text()
    assert "A2E vs A2M2E" in page and "t(7)=" in page  # 2 seeds x 4 clips = 8 pairs


@pytest.mark.realdata
def test_import_real_published_logs(shared_dir: Path, tmp_path: Path) -> None:
    log_dir = shared_dir / "reference" / "cpjku-attack-logs"
    store = import_cpjku(log_dir, tmp_path / "cpjku", log_dir / "runs.json")
    runs, clips = store.read_runs(), store.read_clips()
    assert len(runs) == 50 and len(clips) == 50 * 36
    assert clips.groupby("run_id").size().eq(36).all()
    assert runs.groupby("model_type").size().to_dict() == {
        t: 10 for t in ("A2E", "A2B2E", "A2M2E", "aA2E", "aA2B2E")}
    # one test split: the same 36 clips in every run
    assert clips.groupby("run_id")["clip_id"].apply(frozenset).nunique() == 1
    assert clips[[f"y_{e}" for e in EMOTIONS]].to_numpy().max() <= 0.9
    assert (runs["delta_mae"] > 0).all()
