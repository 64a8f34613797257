"""Feature packs: round trip against the audio path, refusals (front end, split, damage), and
training, evaluation, attacks and a study from a pack without the audio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from robustmer.cli import app
from robustmer.data import prepare_data
from robustmer.data.pack import make_pack, prepare_pack, read_pack, write_pack
from robustmer.data.split import make_split
from robustmer.data.synth import synthesize
from robustmer.errors import ConfigError, DatasetError
from robustmer.features import FrontEndConfig


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 10-clip synthetic dataset, its feature cache and its float32 and float16 packs."""
    base = tmp_path_factory.mktemp("packs")
    root = Path(synthesize(base / "data", clips=10, seed=0).root)
    out = {"root": root, "cache": base / "cache", "base": base}
    for dtype in ("float32", "float16"):
        out[dtype] = make_pack(root, base / f"data-{dtype}.pack", dtype=dtype,
                               cache_dir=base / "cache").path
    return out


def invoke(*args: object) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, (args, res.output, res.exception)
    return res.output


def test_pack_round_trips_the_audio_paths_data(made: dict[str, Path]) -> None:
    audio = prepare_data(made["root"], cache_dir=made["cache"])
    f32 = prepare_pack(made["float32"])
    f16 = prepare_pack(made["float16"])
    assert set(f32.specs) == set(audio.specs) == set(f16.specs)
    for clip, spec in audio.specs.items():
        assert f32.specs[clip].dtype == np.float32
        np.testing.assert_array_equal(f32.specs[clip], spec)  # bit-exact
        # float16: exactly the rounding of the float32 spectrogram, nothing more
        np.testing.assert_array_equal(f16.specs[clip], spec.astype(np.float16).astype(np.float32))
        np.testing.assert_allclose(f16.specs[clip], spec, rtol=2.0**-11, atol=2.0**-24)
    for data in (f32, f16):
        assert data.split == audio.split
        pd.testing.assert_frame_equal(data.table.targets, audio.table.targets)
        pd.testing.assert_frame_equal(data.table.concepts, audio.table.concepts)
        pd.testing.assert_series_equal(data.table.labels, audio.table.labels)
        assert data.table.classes == audio.table.classes
    assert f32.content_id == audio.content_id
    assert f32.standardizer == audio.standardizer  # fitted on the training split only
    assert f16.content_id != audio.content_id and f16.feature_dtype == "float16"
    assert f32.to_dict()["pack"] == str(made["float32"].resolve())
    item_a, item_p = audio.dataset("test")[0], f32.dataset("test")[0]
    assert item_a["id"] == item_p["id"]
    assert np.array_equal(item_a["x"].numpy(), item_p["x"].numpy())
    with pytest.raises(ConfigError, match="waveform domain needs the audio"):
        f32.waveform(f32.split.test[0])


def test_pack_with_another_front_end_or_split_is_refused(made: dict[str, Path],
                                                         tmp_path: Path) -> None:
    pack = read_pack(made["float32"])
    other = tmp_path / "fps25.pack"
    write_pack(other, table=pack.table, specs=pack.specs,
               audio_sha256=pack.header["audio_sha256"], frontend=FrontEndConfig(fps=25.0),
               split=pack.split, split_origin={"seed": 0})
    with pytest.raises(ConfigError, match=r"another front-end config.*fps: pack 25\.0, "
                                          r"asked 31\.3") as err:
        prepare_pack(other)
    assert str(other) in str(err.value)
    prepare_pack(other, frontend=FrontEndConfig(fps=25.0))  # the config it was made with

    moved = make_split(pack.table.ids, seed=1)
    assert moved != pack.split
    split_file = tmp_path / "split.json"
    moved.save(split_file)
    with pytest.raises(ConfigError, match="another split") as err:
        prepare_pack(made["float32"], split_path=split_file)
    for text in (str(made["float32"]), str(split_file), moved.split_id, pack.split.split_id):
        assert text in str(err.value)
    with pytest.raises(ConfigError, match="split seed 1"):
        prepare_pack(made["float32"], split_seed=1)
    # a missing split file receives the pack's split, which is then accepted
    fresh = tmp_path / "fresh.json"
    prepare_pack(made["float32"], split_path=fresh, split_seed=0)
    assert json.loads(fresh.read_text())["split_id"] == pack.split.split_id


def test_truncated_or_corrupted_pack_is_refused(made: dict[str, Path], tmp_path: Path) -> None:
    blob = made["float32"].read_bytes()
    truncated = tmp_path / "truncated.pack"
    truncated.write_bytes(blob[: len(blob) - 1000])
    with pytest.raises(DatasetError, match="truncated or corrupted") as err:
        read_pack(truncated)
    assert str(truncated) in str(err.value)
    flipped = bytearray(blob)
    flipped[-50] ^= 0xFF  # inside the last clip's array
    corrupted = tmp_path / "corrupted.pack"
    corrupted.write_bytes(bytes(flipped))
    with pytest.raises(DatasetError, match="does not match its recorded SHA-256"):
        read_pack(corrupted)
    with pytest.raises(ConfigError, match="not found"):
        read_pack(tmp_path / "missing.pack")


def test_train_evaluate_attack_from_a_pack_via_the_cli(made: dict[str, Path],
                                                       tmp_path: Path) -> None:
    pack, run = tmp_path / "cli.pack", tmp_path / "run"
    out = invoke("data", "features", made["root"], "--cache", made["cache"], "--pack", pack)
    assert f"pack: {pack}" in out and read_pack(pack).content_id == read_pack(
        made["float32"]).content_id
    invoke("train", "--model", "a2e", "--data", pack, "--seed", 1, "--out", run,
           "--width", 0.0625, "--epochs", 1, "--no-progress")
    assert json.loads((run / "best" / "data.json").read_text())["pack"] == str(pack.resolve())
    # scored on the training split: its 8 clips make every metric a number (on the 1 test
    # clip r, mean r and R² are NaN, and json's one NaN object compares equal to itself)
    invoke("evaluate", run, "--split", "train")
    from_pack = json.loads((run / "metrics_train.json").read_text())
    metrics = from_pack["metrics"]
    assert from_pack["n_clips"] == 8 and len(metrics["r"]) == 8
    values = [metrics["mean_r"], metrics["mae"], metrics["rmse"], metrics["r2"],
              *metrics["r"].values(), *metrics["mae_per"].values()]
    assert all(np.isfinite(values)), metrics
    # the same run scored from the audio folder: same content id, same spectrograms, same numbers
    # (the metrics and every clip's prediction)
    invoke("evaluate", run, "--split", "train", "--data", made["root"], "--cache", made["cache"])
    assert json.loads((run / "metrics_train.json").read_text()) == from_pack

    attack = tmp_path / "attack"
    invoke("attack", run, "--split", "test", "--iters", 1, "--out", attack, "--no-progress")
    table = pd.read_csv(attack / "attack.csv", dtype={"clip_id": str})
    assert len(table) == 1 and (table["delta_linf"] <= 0.001 + 1e-7).all()

    res = CliRunner().invoke(app, ["attack", str(run), "--split", "test", "--domain",
                                   "waveform", "--iters", "1", "--out", str(tmp_path / "wave"),
                                   "--no-progress"])
    assert res.exit_code != 0 and isinstance(res.exception, ConfigError)
    assert "--domain waveform needs the audio" in str(res.exception)
    assert not (tmp_path / "wave").exists()  # refused before anything was written
    for command in ("attack-search", "robustness-curve"):
        res = CliRunner().invoke(app, [command, str(run), "--domain", "waveform", "--out",
                                       str(tmp_path / command)])
        assert isinstance(res.exception, ConfigError), (command, res.output)
        assert "--domain waveform needs the audio" in str(res.exception)

    res = CliRunner().invoke(app, ["evaluate", str(run), "--data", str(made["float16"])])
    assert isinstance(res.exception, ConfigError) and "float16" in str(res.exception)


def test_study_runs_from_a_pack(made: dict[str, Path], tmp_path: Path) -> None:
    import robustmer.study.runner as runner
    from robustmer.study.config import parse_config

    raw = {"name": "pack", "output": str(tmp_path / "out"), "models": ["A2E"], "seeds": [0],
           "data": {"pack": str(made["float32"])},
           "train": {"width": 0.0625, "epochs": 1}, "attack": {"iters": 1}, "media_clips": 0}
    res = runner.run_study(parse_config(raw), progress=False, log=lambda m: None)
    assert res.runs["status"].tolist() == ["done"]
    assert json.loads((tmp_path / "out" / "split.json").read_text())["split_id"] == read_pack(
        made["float32"]).split.split_id
    clips = pd.read_csv(tmp_path / "out" / "clips.csv", dtype={"clip_id": str})
    assert len(clips) == 1

    with pytest.raises(ConfigError, match=r"attack\.domain waveform needs the audio"):
        parse_config({**raw, "attack": {"domain": "waveform"}})
    with pytest.raises(ConfigError, match=r"data\.root and data\.pack"):
        parse_config({**raw, "data": {"pack": "x.pack", "root": "x"}})
    with pytest.raises(ConfigError, match="split seed 3"):
        runner.run_study(parse_config({**raw, "output": str(tmp_path / "o3"),
                                       "data": {"pack": str(made["float32"]), "split_seed": 3}}),
                         progress=False, log=lambda m: None)
