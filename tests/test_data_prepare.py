"""Feature cache, ``prepare_data``, ``ExcerptDataset`` and ``robustmer data features|synth``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from typer.testing import CliRunner

import robustmer.data.cache as cache_mod
from robustmer.audio import load_audio
from robustmer.cli import app
from robustmer.data import FeatureCache, Split, default_cache_dir, make_split, prepare_data
from robustmer.errors import ConfigError, DatasetError
from robustmer.features import EXCERPT_FRAMES, FrontEndConfig, Standardizer, compute_spectrogram
from test_data_loaders import ratings_rows, write_clip, write_dataset, write_midlevel, write_ratings

# 10 clips, lengths chosen so windows can move (>= 313 frames) and one is shorter than 313.
LENGTHS = [10.5, 12.0, 10.5, 14.0, 10.5, 11.0, 10.5, 6.0, 10.5, 10.5]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_dataset(tmp_path_factory.mktemp("prep") / "ds", n=len(LENGTHS), seconds=LENGTHS)
    write_midlevel(root / "midlevel", {"001": [2] * 7, "004": list(range(1, 8))})
    rows = ratings_rows(len(LENGTHS))
    rows[2][9] = ""  # unknown label for clip 003
    write_ratings(root, rows)
    return root


@pytest.fixture(scope="module")
def prepared(dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("prep_out")
    return prepare_data(dataset, cache_dir=out / "cache", split_path=out / "split.json",
                        split_seed=1)


@pytest.fixture()
def counted_loads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []

    def counting(path):
        calls.append(Path(path))
        return load_audio(path)

    monkeypatch.setattr(cache_mod, "load_audio", counting)
    return calls


# ----------------------------------------------------------------------------- feature cache
def test_cache_hit_miss_and_stale_rebuild(tmp_path: Path, counted_loads: list[Path]) -> None:
    audio = tmp_path / "a.wav"
    write_clip(audio, 2.0, seed=1)
    cache = FeatureCache(tmp_path / "cache")
    spec, hit = cache.get("001", audio)
    assert not hit and counted_loads == [audio]
    assert spec.dtype == np.float32 and spec.shape[1] == 149
    np.testing.assert_allclose(spec, compute_spectrogram(load_audio(audio)), rtol=0, atol=0)
    entries = list(cache.directory.glob("*.npy"))
    assert len(entries) == 1 and cache.directory.parent == tmp_path / "cache"
    assert cache.directory.name == FrontEndConfig().key()

    again, hit = cache.get("001", audio)
    assert hit and len(counted_loads) == 1
    np.testing.assert_array_equal(again, spec)

    write_clip(audio, 2.0, seed=2)  # new bytes -> stale entry
    rebuilt, hit = cache.get("001", audio)
    assert not hit and len(counted_loads) == 2
    assert not np.array_equal(rebuilt, spec)
    assert list(cache.directory.glob("*.npy")) != entries
    assert len(list(cache.directory.glob("001-*.npy"))) == 1  # the stale file was removed


def test_cache_recomputes_a_corrupt_entry(tmp_path: Path, counted_loads: list[Path]) -> None:
    audio = tmp_path / "a.wav"
    write_clip(audio, 1.0)
    cache = FeatureCache(tmp_path / "cache")
    spec, _ = cache.get("x", audio)
    entry = next(cache.directory.glob("x-*.npy"))
    entry.write_bytes(entry.read_bytes()[:50])  # truncated by a crash
    again, hit = cache.get("x", audio)
    assert not hit and len(counted_loads) == 2
    np.testing.assert_array_equal(again, spec)


def test_cache_key_depends_on_frontend(tmp_path: Path) -> None:
    a = FeatureCache(tmp_path, FrontEndConfig())
    b = FeatureCache(tmp_path, FrontEndConfig(bands_per_octave=12))
    assert a.directory != b.directory


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROBUSTMER_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    assert FeatureCache().root == tmp_path / "c"
    monkeypatch.delenv("ROBUSTMER_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "robustmer"


# ----------------------------------------------------------------------------- prepare_data
def test_prepare_data_second_run_reads_cache_and_split(prepared, dataset: Path,
                                                       counted_loads: list[Path]) -> None:
    assert prepared.split_path.is_file()
    assert prepared.feature_stats.computed == len(LENGTHS)
    again = prepare_data(dataset, cache_dir=prepared.cache_dir, split_path=prepared.split_path,
                         split_seed=99)  # seed ignored: the saved split is loaded
    assert counted_loads == []
    assert again.feature_stats.cached == len(LENGTHS)
    assert again.split == prepared.split
    assert again.standardizer == prepared.standardizer
    assert again.to_dict() == prepared.to_dict()


def test_standardizer_is_fitted_on_training_clips_only(prepared) -> None:
    train = [prepared.spec(i) for i in prepared.split.train]
    assert prepared.standardizer == Standardizer.fit(train)
    everything = Standardizer.fit(prepared.spec(i) for i in prepared.table.ids)
    assert not np.isclose(everything.mean, prepared.standardizer.mean, rtol=1e-6)
    saved = json.loads(prepared.standardizer_path.read_text())
    assert saved["mean"] == prepared.standardizer.mean
    assert saved["split_id"] == prepared.split.split_id
    assert prepared.standardizer_path.parent == prepared.cache_dir / FrontEndConfig().key()


def test_prepare_data_accessors_and_description(prepared, dataset: Path) -> None:
    assert prepared.split == make_split(prepared.table.ids, seed=1)
    spec = prepared.spec("002")
    assert spec.ndim == 2 and spec.shape[1] == 149 and spec.dtype == np.float32
    wave = prepared.waveform("002")
    assert wave.ndim == 1 and wave.dtype == np.float32
    assert spec.shape[0] == FrontEndConfig().num_frames(len(wave))
    with pytest.raises(DatasetError, match="'999'"):
        prepared.spec("999")
    desc = json.loads(json.dumps(prepared.to_dict()))
    assert desc["root"] == str(dataset)
    assert desc["midlevel_root"] == str(dataset / "midlevel")
    assert desc["split_id"] == prepared.split.split_id
    assert desc["split_path"] == str(prepared.split_path)
    assert Standardizer.from_dict(desc["standardizer"]) == prepared.standardizer
    assert FrontEndConfig.from_dict(desc["frontend"]) == prepared.frontend


def test_prepare_data_rejects_split_of_another_dataset(dataset: Path, tmp_path: Path) -> None:
    path = tmp_path / "split.json"
    Split(train=("001", "002", "foreign"), val=(), test=()).save(path)
    with pytest.raises(DatasetError, match="foreign") as info:
        prepare_data(dataset, cache_dir=tmp_path / "cache", split_path=path)
    assert str(path) in str(info.value)


# ----------------------------------------------------------------------------- ExcerptDataset
def test_dataset_items(prepared) -> None:
    ds = prepared.dataset("train")
    assert ds.ids == list(prepared.split.train) and len(ds) == len(prepared.split.train)
    table = prepared.table
    for k, clip in enumerate(ds.ids):
        item = ds[k]
        assert item["id"] == clip
        assert item["x"].shape == (1, EXCERPT_FRAMES, 149) and item["x"].dtype == torch.float32
        assert item["targets"].shape == (8,) and item["targets"].dtype == torch.float32
        np.testing.assert_allclose(item["targets"].numpy(), table.targets.loc[clip], rtol=1e-6)
        assert item["concepts"].shape == (7,) and item["concepts"].dtype == torch.float32
        assert item["concept_mask"].dtype == torch.bool and item["concept_mask"].ndim == 0
        assert item["label"].dtype == torch.int64
        assert int(item["label"]) == table.label_index(clip)
        idx = ds.excerpt_index(clip)
        expected = prepared.standardizer.transform(prepared.spec(clip)[idx])
        np.testing.assert_allclose(item["x"][0].numpy(), expected, rtol=1e-6)


def test_dataset_concepts_and_unknown_labels(prepared) -> None:
    ds = prepared.dataset("all")
    items = {ds[k]["id"]: ds[k] for k in range(len(ds))}
    assert bool(items["001"]["concept_mask"]) and bool(items["004"]["concept_mask"])
    np.testing.assert_allclose(items["004"]["concepts"].numpy(), np.arange(1, 8) / 10, rtol=1e-6)
    assert not bool(items["002"]["concept_mask"])
    assert torch.count_nonzero(items["002"]["concepts"]) == 0
    assert int(items["003"]["label"]) == -1
    assert int(items["001"]["label"]) >= 0


def test_short_clip_is_tiled(prepared) -> None:
    ds = prepared.dataset("all")
    n = prepared.spec("008").shape[0]
    assert n < EXCERPT_FRAMES
    idx = ds.excerpt_index("008")
    np.testing.assert_array_equal(idx, np.arange(EXCERPT_FRAMES) % n)
    assert ds[ds.ids.index("008")]["x"].shape == (1, EXCERPT_FRAMES, 149)


def test_fixed_windows_are_stable(prepared) -> None:
    a = prepared.dataset("all", mode="fixed", seed=0)
    b = prepared.dataset("all", mode="fixed", seed=0)
    b.set_epoch(5)  # no effect in fixed mode
    for clip in a.ids:
        np.testing.assert_array_equal(a.excerpt_index(clip), b.excerpt_index(clip))
    torch.testing.assert_close(a[3]["x"], b[3]["x"])
    c = prepared.dataset("all", mode="fixed", seed=1)
    long_clips = [i for i in a.ids if prepared.spec(i).shape[0] > EXCERPT_FRAMES + 20]
    assert any(not np.array_equal(a.excerpt_index(i), c.excerpt_index(i)) for i in long_clips)


def test_random_windows_follow_seed_and_epoch(prepared) -> None:
    a = prepared.dataset("all", mode="random", seed=7)
    b = prepared.dataset("all", mode="random", seed=7)
    a.set_epoch(3)
    b.set_epoch(3)
    first = {i: a.excerpt_index(i) for i in a.ids}
    assert all(np.array_equal(first[i], b.excerpt_index(i)) for i in a.ids)  # resumable
    a.set_epoch(4)
    assert any(not np.array_equal(first[i], a.excerpt_index(i)) for i in a.ids)
    a.set_epoch(3)
    assert all(np.array_equal(first[i], a.excerpt_index(i)) for i in a.ids)


def test_dataloader_batches(prepared) -> None:
    loader = DataLoader(prepared.dataset("train"), batch_size=4, shuffle=False)
    batch = next(iter(loader))
    assert batch["x"].shape == (4, 1, EXCERPT_FRAMES, 149)
    assert batch["targets"].shape == (4, 8) and batch["concept_mask"].shape == (4,)
    assert list(batch["id"]) == list(prepared.split.train[:4])


def test_dataset_rejects_bad_arguments(prepared) -> None:
    with pytest.raises(ConfigError, match="mode"):
        prepared.dataset("train", mode="shuffled")
    with pytest.raises(ConfigError, match="'dev'"):
        prepared.dataset("dev")
    with pytest.raises(DatasetError, match="'zzz'"):
        prepared.dataset("train").excerpt_index("zzz")


# ----------------------------------------------------------------------------- CLI
def test_cli_features(dataset: Path, prepared) -> None:
    result = CliRunner().invoke(app, ["data", "features", str(dataset), "--cache",
                                      str(prepared.cache_dir)])
    assert result.exit_code == 0, result.output
    assert f"clips: {len(LENGTHS)} (0 computed, {len(LENGTHS)} from cache)" in result.output
    frames = [prepared.spec(i).shape[0] for i in prepared.table.ids]
    assert f"frames: min {min(frames)}, mean {np.mean(frames):.1f}, max {max(frames)}" \
        in result.output
    assert str(prepared.cache_dir / FrontEndConfig().key()) in result.output


def test_cli_synth_calls_synthesize(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import robustmer.data.synth as synth

    seen = {}

    class Info:
        root, clips = tmp_path / "syn", 5

    def fake(out, clips, seed, version):
        seen.update(out=out, clips=clips, seed=seed, version=version)
        return Info()

    monkeypatch.setattr(synth, "synthesize", fake)
    result = CliRunner().invoke(app, ["data", "synth", "--out", str(tmp_path / "syn"),
                                      "--clips", "5", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert seen == {"out": tmp_path / "syn", "clips": 5, "seed": 3, "version": 3}
    assert str(tmp_path / "syn") in result.output
    result = CliRunner().invoke(app, ["data", "synth", "--out", str(tmp_path / "syn"),
                                      "--clips", "5", "--format-version", "2"])
    assert result.exit_code == 0 and seen["version"] == 2, result.output


def test_cli_features_reports_dataset_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["data", "features", str(tmp_path / "missing")])
    assert result.exit_code != 0
    assert isinstance(result.exception, DatasetError)
