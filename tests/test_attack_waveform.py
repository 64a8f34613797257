"""Waveform domain (WaveformModel, padded batches, SNR, WAV) and the per-split runner."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from torch import nn
from typer.testing import CliRunner

from robustmer import EMOTIONS
from robustmer.attacks import BIM, WaveformModel, pad_batch, snr_db, spectrogram_snr_db, write_wav
from robustmer.attacks.runner import attack_dataset, attack_items, read_table, table_columns
from robustmer.errors import ConfigError
from robustmer.features import (
    FrontEndConfig,
    LogFilteredSpectrogram,
    Standardizer,
    compute_spectrogram,
)


def tiny_net(seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                         nn.AdaptiveAvgPool2d((2, 4)), nn.Flatten(), nn.Linear(24, 8)).to(dtype)


def clip(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 22050
    return (0.5 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t)
            + 0.1 * rng.standard_normal(n)).astype(np.float32).clip(-1, 1)


STD = Standardizer(0.4, 0.25)


def test_waveform_model_matches_cached_features():
    wave = clip(9000, 0)
    idx = np.array([1, 2, 3, 4])
    wm = WaveformModel(nn.Identity(), LogFilteredSpectrogram(), STD, idx)
    got = wm.spectrogram(torch.from_numpy(wave)[None])[0, 0].numpy()
    want = STD.transform(compute_spectrogram(wave))[idx]
    assert got.shape == (4, 149)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_padding_does_not_change_a_clip_and_subset_keeps_windows():
    a, b = clip(7000, 1), clip(12000, 2)
    x, mask = pad_batch([a, b])
    assert x.shape == (2, 12000) and mask.sum(1).tolist() == [7000, 12000]
    fe = LogFilteredSpectrogram()
    idx = np.array([[0, 1, 2], [5, 6, 7]])
    wm = WaveformModel(nn.Identity(), fe, STD, idx)
    both = wm.spectrogram(x)
    alone = WaveformModel(nn.Identity(), fe, STD, idx[0]).spectrogram(torch.from_numpy(a)[None])
    assert torch.equal(both[0], alone[0])
    sub = wm.subset(torch.tensor([1]))
    assert torch.equal(sub.spectrogram(x[1:]), both[1:])
    with pytest.raises(ConfigError, match="frame_index"):
        WaveformModel(nn.Identity(), fe, STD, np.array([0, 99])).spectrogram(x)


def test_padded_batch_attack_equals_one_clip_at_a_time():
    waves = [clip(n, s) for s, n in enumerate((5000, 8000, 6500))]
    idx = np.array([[0, 1, 2, 3], [3, 4, 5, 6], [2, 3, 4, 5]])
    fe = LogFilteredSpectrogram(FrontEndConfig(), dtype=torch.float64)
    net = tiny_net(dtype=torch.float64).eval()
    y = torch.rand(3, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x, mask = pad_batch(waves, dtype=torch.float64)
    attack = BIM(eps=0.01, eta=0.002, max_iters=15, stop="corr", box=(-1.0, 1.0))
    res = attack(WaveformModel(net, fe, STD, idx), x, y, mask=mask)
    for i, w in enumerate(waves):
        xi = torch.from_numpy(w).double()[None]
        one = attack(WaveformModel(net, fe, STD, idx[i]), xi, y[i:i + 1])
        n = len(w)
        assert torch.equal(one.delta[0], res.delta[i, :n]), i
        assert torch.all(res.delta[i, n:] == 0)
        assert int(one.iterations[0]) == int(res.iterations[i])


def test_snr_definitions_known_answers():
    x = torch.ones(2, 100)
    d = torch.full((2, 100), 0.1)
    mask = torch.ones(2, 100, dtype=torch.bool)
    mask[1, 50:] = False
    s = snr_db(x, d, mask)
    assert s.tolist() == pytest.approx([20.0, 20.0])
    assert math.isinf(float(snr_db(x, torch.zeros_like(x))[0]))
    # spectrogram: de-normalised x·std + mean vs δ·std
    xs, ds = torch.zeros(1, 4), torch.full((1, 4), 0.5)
    got = float(spectrogram_snr_db(xs, ds, mean=2.0, std=2.0)[0])
    assert got == pytest.approx(10 * math.log10((4 * 4.0) / (4 * 1.0)))


def test_write_wav_roundtrip(tmp_path):
    w = clip(3000, 4)
    write_wav(tmp_path / "a.wav", torch.from_numpy(w))
    back, sr = sf.read(tmp_path / "a.wav", dtype="float32")
    assert sr == 22050 and np.array_equal(back, w)
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]  # no temp files left


class Counting(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.rows = inner, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        return self.inner(x)


def spec_items(n: int) -> list[dict]:
    g = torch.Generator().manual_seed(5)
    return [{"id": f"{i:03d}", "x": torch.randn(1, 10, 12, generator=g),
             "y": torch.rand(8, generator=g)} for i in range(n)]


def test_runner_spectrogram_table_examples_and_resume(tmp_path):
    items = spec_items(5)
    net = Counting(tiny_net())
    attack = BIM(eps=0.05, eta=0.01, max_iters=4)
    t1 = attack_items(net, items[:3], attack, tmp_path, batch_size=2, standardizer=STD,
                      names=EMOTIONS)
    assert list(t1.columns) == list(table_columns(EMOTIONS))
    assert t1["clip_id"].tolist() == ["000", "001", "002"]
    assert (tmp_path / "config.yaml").exists() and (tmp_path / "meta.json").exists()
    ex = np.load(tmp_path / "examples" / "001.npz")
    assert set(ex.files) == {"x", "delta"}  # x_adv = x + delta is not stored twice
    assert np.abs(ex["delta"]).max() == pytest.approx(t1.loc[1, "delta_linf"], rel=1e-6)
    assert (t1["delta_linf"] <= 0.05 * (1 + 1e-6)).all()
    for e in EMOTIONS:
        assert {f"y_{e}", f"pred_{e}", f"adv_{e}"} <= set(t1.columns)
    mae = (t1[[f"adv_{e}" for e in EMOTIONS]].to_numpy()
           - t1[[f"y_{e}" for e in EMOTIONS]].to_numpy())
    assert np.allclose(np.abs(mae).mean(1), t1["mae_adv"])
    with pytest.raises(ConfigError, match="resume"):
        attack_items(net, items, attack, tmp_path, standardizer=STD, names=EMOTIONS)
    with pytest.raises(ConfigError, match=r"attack\.eps: stored 0\.05, asked 0\.1"):
        attack_items(net, items, BIM(eps=0.1, max_iters=4), tmp_path, resume=True,
                     standardizer=STD, names=EMOTIONS)
    net.rows = 0
    t2 = attack_items(net, items, attack, tmp_path, batch_size=2, resume=True, standardizer=STD,
                      names=EMOTIONS)
    assert t2["clip_id"].tolist() == [f"{i:03d}" for i in range(5)]
    assert net.rows > 0
    # the first three rows are the stored ones; the whole table equals a fresh run's
    fresh = attack_items(Counting(tiny_net()), items, attack, tmp_path / "fresh", batch_size=2,
                         standardizer=STD, names=EMOTIONS)
    pd.testing.assert_frame_equal(read_table(tmp_path), read_table(tmp_path / "fresh"))
    assert len(fresh) == 5


def test_runner_waveform_and_dataset_adapter(tmp_path):
    waves = {"a": clip(6000, 1), "b": clip(9000, 2), "c": clip(7000, 3)}
    ids = list(waves)
    g = torch.Generator().manual_seed(0)
    y = {i: torch.rand(8, generator=g) for i in ids}

    class FakeDataset:  # the ExcerptDataset interface the adapter uses
        target_names, classes = EMOTIONS, ()

        def __init__(self) -> None:
            self.ids = ids

        def __len__(self) -> int:
            return len(ids)

        def __getitem__(self, k: int) -> dict:
            return {"id": ids[k], "x": torch.zeros(1, 3, 149), "targets": y[ids[k]]}

        def excerpt_index(self, cid: str) -> np.ndarray:
            return np.array([0, 1, 2]) + len(cid) - 1

    data = SimpleNamespace(dataset_for=lambda spec, part, mode="fixed": FakeDataset(),
                           waveform=lambda cid: waves[cid], standardizer=STD,
                           frontend=FrontEndConfig())
    table = attack_dataset(tiny_net(), data, "test", BIM(eps=0.005, eta=0.001, max_iters=3),
                           tmp_path, domain="waveform", batch_size=2)
    assert table["clip_id"].tolist() == ids
    assert (table["delta_linf"] <= 0.005 * (1 + 1e-6)).all()
    for cid in ids:
        clean, sr = sf.read(tmp_path / "audio" / f"{cid}_clean.wav", dtype="float32")
        adv, _ = sf.read(tmp_path / "audio" / f"{cid}_adv.wav", dtype="float32")
        assert sr == 22050 and len(clean) == len(waves[cid]) == len(adv)
        assert np.abs(adv).max() <= 1.0
        d = adv.astype(np.float64) - clean
        snr = 10 * np.log10((clean.astype(np.float64) ** 2).sum() / (d ** 2).sum())
        row = table[table["clip_id"] == cid].iloc[0]
        assert row["snr_db"] == pytest.approx(snr, abs=0.05)


def test_runner_waveform_predictions_are_eval_mode(tmp_path):
    """Regression: the wrapper once started in training mode, so the attack's mode restore left
    BatchNorm/dropout in training mode and the table's clean predictions were wrong."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(),
                          nn.Dropout(0.5), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(2, 8)).eval()
    waves = [clip(6000, 1), clip(9000, 2), clip(7000, 3)]
    idx = np.array([0, 1, 2])
    items = [{"id": str(i), "wave": w, "frame_index": idx, "y": torch.rand(8)}
             for i, w in enumerate(waves)]
    fe = LogFilteredSpectrogram(FrontEndConfig())
    table = attack_items(model, items, BIM(eps=0.005, eta=0.001, max_iters=2), tmp_path,
                         domain="waveform", frontend=fe, standardizer=STD, batch_size=3,
                         names=EMOTIONS)
    assert not model.training
    x, _ = pad_batch([torch.from_numpy(w) for w in waves])
    with torch.no_grad():
        expected = WaveformModel(model, fe, STD, idx).eval()(x).double().numpy()
    pred = table[[f"pred_{e}" for e in EMOTIONS]].to_numpy()
    np.testing.assert_allclose(pred, expected, rtol=1e-6, atol=1e-7)


def test_cli_commands_registered():
    from robustmer.cli import app

    runner = CliRunner()
    for cmd in ("attack", "attack-search", "robustness-curve"):
        res = runner.invoke(app, [cmd, "--help"])
        assert res.exit_code == 0, res.output
    from robustmer.cli.attack import _floats

    assert _floats(["0.001,0.01", "0.1"], "--eps") == [0.001, 0.01, 0.1]
    with pytest.raises(ConfigError, match="--eps"):
        _floats(["x"], "--eps")
