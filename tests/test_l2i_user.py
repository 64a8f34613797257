"""L2I on a user's own model (issue 20): a waveform model built by a factory file, layers named
by module path, Conv1d features, the time alignment of the model's input and the NMF's STFT, a
user classifier, and the CLI from `robustmer train --model FILE.py:build` to `l2i fit`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from robustmer.cli import app
from robustmer.data import prepare_data
from robustmer.errors import ConfigError
from robustmer.explain.l2i import (
    FeatureHooks,
    InputPath,
    InterpreterConfig,
    clip_tensors,
    excerpt_waves,
    last_conv_blocks,
)
from robustmer.features import LogFilteredSpectrogram
from robustmer.io import read_json
from robustmer.models.factory import FactoryType
from robustmer.train.interpreter import load_interpreter
from robustmer.train.l2i import evaluate_l2i, explain_l2i, fit_l2i

MODELS = '''
import torch
from torch import nn


class WaveNet(nn.Module):  # (B, S) -> (B, K)
    def __init__(self, n_outputs, channels=8):
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, 64, stride=16)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv1d(channels, channels, 9, stride=4)
        self.act2 = nn.ReLU()
        self.conv3 = nn.Conv1d(channels, channels, 9, stride=4)
        self.act3 = nn.ReLU()
        self.head = nn.Linear(channels, n_outputs)

    def forward(self, x):
        h = self.act3(self.conv3(self.act2(self.conv2(self.act1(self.conv1(x[:, None]))))))
        return self.head(h.mean(-1))


class Frames(nn.Module):  # no convolution: a linear layer on 400-sample frames
    def __init__(self, n_outputs):
        super().__init__()
        self.frame = nn.Linear(400, 16)
        self.act = nn.ReLU()
        self.head = nn.Linear(16, n_outputs)

    def forward(self, x):
        f = x[:, : x.shape[1] // 400 * 400].reshape(x.shape[0], -1, 400)
        return self.head(self.act(self.frame(f)).mean(1))


class Shared(nn.Module):  # one ReLU module used after every conv
    def __init__(self, n_outputs):
        super().__init__()
        self.conv1 = nn.Conv1d(1, 4, 64, stride=16)
        self.conv2 = nn.Conv1d(4, 4, 9, stride=4)
        self.conv3 = nn.Conv1d(4, 4, 9, stride=4)
        self.relu = nn.ReLU()
        self.head = nn.Linear(4, n_outputs)

    def forward(self, x):
        h = self.relu(self.conv3(self.relu(self.conv2(self.relu(self.conv1(x[:, None]))))))
        return self.head(h.mean(-1))


def build(n_outputs, channels=8):
    torch.manual_seed(0)
    return WaveNet(n_outputs, channels)


def build_frames(n_outputs):
    torch.manual_seed(0)
    return Frames(n_outputs)


def build_shared(n_outputs):
    torch.manual_seed(0)
    return Shared(n_outputs)
'''
RATE, SECONDS = 16000, 2.0
WAVE_LAYERS = ["conv1", "conv2", "conv3"]
TINY = {"k": 6, "nmf_iterations": 5, "frames_per_clip": 4}


def _write_dataset(root: Path) -> Path:
    """10 clips of 2.6 s (so the 2-s window has a start to draw), 4/3/3 split, two targets and
    a class label."""
    (root / "audio").mkdir(parents=True)
    rng = np.random.default_rng(0)
    sr, rows = 22050, []
    for i in range(10):
        t = np.arange(int(2.6 * sr)) / sr
        y = (0.4 * np.sin(2 * np.pi * (200 + 80 * i) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * t))
             + 0.05 * rng.standard_normal(len(t)))
        sf.write(root / "audio" / f"c{i:02d}.wav", y.astype(np.float32), sr)
        rows.append({"file": f"audio/c{i:02d}.wav", "arousal": i / 10, "valence": (i % 4) / 4,
                     "label": "abc"[i % 3], "split": (["train"] * 4 + ["val"] * 3
                                                      + ["test"] * 3)[i]})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("l2i_user")
    models = base / "my_models.py"
    models.write_text(MODELS, encoding="utf-8")
    data = prepare_data(_write_dataset(base / "data"), cache_dir=base / "cache")
    return {"base": base, "models": models, "data": data}


def _type(world: dict[str, Any], func: str = "build", task: str = "regression") -> FactoryType:
    return FactoryType(name=func, factory=f"{world['models']}:{func}", task=task,
                       input="waveform", sample_rate=RATE, seconds=SECONDS)


def _cfg(epochs: int = 1) -> InterpreterConfig:
    return InterpreterConfig(epochs=epochs, batch_size=2, hidden=8, seed=0)


def test_conv1d_blocks_and_hooks_leave_outputs_unchanged(world: dict[str, Any]) -> None:
    model = _type(world).build(2).eval()
    assert last_conv_blocks(model) == ["act1", "act2", "act3"]  # the ReLU after each Conv1d
    x = torch.randn(2, round(RATE * SECONDS), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(x)
    with FeatureHooks(model, WAVE_LAYERS) as hooks, torch.no_grad():
        during = model(x)
        feats = hooks.features
    with torch.no_grad():
        after = model(x)
    assert torch.equal(before, during) and torch.equal(before, after)
    # (B, C, T) read as (B, C, T, 1): 32000 samples -> 1997 -> 498 -> 123 frames
    assert [tuple(f.shape) for f in feats] == [(2, 8, 1997, 1), (2, 8, 498, 1), (2, 8, 123, 1)]
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_waveform_input_covers_the_same_seconds_as_the_models_window(
        world: dict[str, Any]) -> None:
    """The 22.05 kHz segment, resampled to the model's rate, is the model's own evaluation
    excerpt (the same seconds): best lag 0 against the dataset's item, outputs within 1 %."""
    data, spec = world["data"], _type(world).input_spec()
    fe = LogFilteredSpectrogram()
    clips = excerpt_waves(data, "train", frontend=fe, input_spec=spec)
    ds = data.dataset_for(spec, "train", mode="fixed")
    assert clips.ids == list(ds.ids)
    starts = [int(ds.excerpt_index(i)[0]) for i in clips.ids]
    assert any(s > 0 for s in starts)  # the windows do not all start at the clip's start
    path = InputPath(fe, None, spec)
    for k, clip_id in enumerate(clips.ids):
        assert len(clips.waves[k]) == round(SECONDS * 22050)
        mine, ref = path(clips.waves[k])[0].numpy(), ds[k]["x"].numpy()
        assert mine.shape == ref.shape == (round(SECONDS * RATE),)
        inner = slice(200, -200)
        lags = range(-20, 21)
        corr = [float(np.dot(np.roll(mine, lag)[inner], ref[inner])) for lag in lags]
        assert lags[int(np.argmax(corr))] == 0, clip_id
    x, X = clip_tensors(clips, fe, None, input_spec=spec)
    assert x.shape == (4, round(SECONDS * RATE))
    assert X.shape == (4, fe.num_frames(round(SECONDS * 22050)), 1024)
    model = _type(world).build(2).eval()
    with torch.no_grad():
        ref_out = model(torch.stack([ds[k]["x"] for k in range(len(ds))]))
        torch.testing.assert_close(model(x), ref_out, rtol=1e-2, atol=1e-3)


def test_fit_evaluate_explain_on_a_waveform_model(world: dict[str, Any], tmp_path: Path
                                                  ) -> None:
    mt = _type(world)
    model, data, spec = mt.build(2).eval(), world["data"], mt.input_spec()
    out = tmp_path / "l2i"
    seen: list[tuple[int, ...]] = []
    handle = model.register_forward_pre_hook(lambda _m, inp: seen.append(tuple(inp[0].shape)))
    fit = fit_l2i(model, "regression", data, out, **TINY, config=_cfg(2), layers=WAVE_LAYERS,
                  poolings=("att",), input_spec=spec)
    assert fit["layers"] == WAVE_LAYERS and fit["input"] == spec
    assert fit["dictionary"]["segments"]["samples"] == round(SECONDS * 22050)
    recorded = read_json(out / "fit.json")
    assert recorded["layers"] == WAVE_LAYERS and recorded["frames"] == 63
    interp, state = load_interpreter(out / "interpreter_att")
    assert interp.config["layers"] == WAVE_LAYERS and interp.config["in_channels"] == [8, 8, 8]
    assert [h["epoch"] for h in state["history"]] == [1, 2]
    fid, ff = evaluate_l2i(model, "regression", data, out, split="test", taus=(0.0, 0.5),
                           poolings=("att",), input_spec=spec)
    handle.remove()
    # every input the model saw was audio at its own rate and length (resynthesised ones too)
    assert seen and {s[1:] for s in seen} == {(round(SECONDS * RATE),)}
    assert set(fid["output"]) == {"arousal", "valence", "mean"}
    assert np.isfinite(fid["value"]).all()
    clips = pd.read_csv(out / "faithfulness_clips.csv")
    assert len(clips) == 3 * 2 * 2  # 3 test clips x 2 outputs x 2 taus
    at0 = clips[clips["tau"] == 0.0]
    assert (at0["n_selected"] > 0).all()  # tau 0 selects every positive component
    assert np.isfinite(ff["ff_median"]).all()
    folder = explain_l2i(model, "regression", data, out, "c08", "valence", tau=0.0,
                         input_spec=spec)
    wave, sr = sf.read(folder / "input.wav")
    assert sr == 22050 and len(wave) == round(SECONDS * 22050)
    payload = read_json(folder / "explanation.json")
    assert payload["selected"] and (folder / "interpretation.wav").is_file()
    # evaluated with the stored layers; another input contract is refused
    with pytest.raises(ConfigError, match="fitted for a model with input"):
        evaluate_l2i(model, "regression", data, out, split="test", poolings=("att",))


def test_a_model_without_conv_blocks_needs_layers(world: dict[str, Any], tmp_path: Path
                                                  ) -> None:
    mt = _type(world, "build_frames")
    model = mt.build(2).eval()
    with pytest.raises(ConfigError) as err:
        fit_l2i(model, "regression", world["data"], tmp_path / "l2i", **TINY, config=_cfg(),
                input_spec=mt.input_spec())
    text = str(err.value)
    assert "--layers" in text and "layers=" in text and "has 0" in text
    assert "frame (Linear)" in text and "head (Linear)" in text  # candidates to choose from
    assert not (tmp_path / "l2i").exists()  # refused before anything was fitted


def test_unknown_or_shared_layers_are_refused_with_the_option_to_set(
        world: dict[str, Any], tmp_path: Path) -> None:
    mt = _type(world)
    model = mt.build(2).eval()
    with pytest.raises(ConfigError, match=r"no module\(s\) \['conv9'\]") as err:
        fit_l2i(model, "regression", world["data"], tmp_path / "a", **TINY, config=_cfg(),
                layers=["conv2", "conv9"], input_spec=mt.input_spec())
    assert "--layers" in str(err.value) and "conv3 (Conv1d)" in str(err.value)
    with pytest.raises(ConfigError, match="'head' outputs shape"):  # (B, K): no time axis
        fit_l2i(model, "regression", world["data"], tmp_path / "b", **TINY, config=_cfg(),
                layers=["conv3", "head"], input_spec=mt.input_spec())
    shared = _type(world, "build_shared")
    with pytest.raises(ConfigError, match="'relu' ran 3 times"):  # the default picks it
        fit_l2i(shared.build(2).eval(), "regression", world["data"], tmp_path / "c", **TINY,
                config=_cfg(), input_spec=shared.input_spec())
    assert not any((tmp_path / p).exists() for p in "abc")


def test_user_classifier_with_logits_runs_through_fit(world: dict[str, Any], tmp_path: Path
                                                      ) -> None:
    data = world["data"]
    mt = _type(world, task="classification")
    model = mt.build(len(data.table.classes)).eval()
    out = tmp_path / "l2i"
    fit = fit_l2i(model, "classification", data, out, **TINY, config=_cfg(),
                  poolings=("max",), input_spec=mt.input_spec())  # default layers
    assert fit["task"] == "classification" and fit["layers"] == ["act1", "act2", "act3"]
    interp, _ = load_interpreter(out / "interpreter_max")
    assert interp.config["n_outputs"] == 3
    fid, _ = evaluate_l2i(model, "classification", data, out, split="test", taus=(0.5,),
                          poolings=("max",), input_spec=mt.input_spec())
    assert set(fid["metric"]) == {"top1", "top3", "top5"}
    assert float(fid.loc[fid["metric"] == "top3", "value"].iloc[0]) == 1.0  # 3 classes


def _invoke(*args: object) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, (args, res.output, res.exception)
    return res.output


def test_cli_train_a_waveform_factory_then_l2i_with_named_layers(world: dict[str, Any],
                                                                 tmp_path: Path) -> None:
    run = tmp_path / "run"
    _invoke("train", "--model", f"{world['models']}:build", "--input", "waveform",
            "--sample-rate", RATE, "--seconds", SECONDS, "--data", world["data"].root,
            "--epochs", 1, "--seed", 0, "--out", run, "--cache", world["base"] / "cache",
            "--no-progress")
    fit = ("l2i", "fit", run, "--layers", "conv1, conv2,act3", "--components", 4,
           "--frames-per-clip", 4, "--nmf-iterations", 5, "--epochs", 1, "--pooling", "att",
           "--batch-size", 2)
    text = _invoke(*fit)
    assert "layers: conv1, conv2, act3" in text
    assert read_json(run / "l2i" / "fit.json")["layers"] == ["conv1", "conv2", "act3"]
    assert read_json(run / "l2i" / "fit.json")["input"] == {
        "kind": "waveform", "sample_rate": RATE, "seconds": SECONDS}
    _invoke("l2i", "evaluate", run, "--split", "test", "--tau", "0.5", "--pooling", "att")
    assert set(pd.read_csv(run / "l2i" / "fidelity.csv")["output"]) == {
        "arousal", "valence", "mean"}
    out = _invoke("l2i", "explain", run, "--clip", "c07", "--target", "arousal", "--tau", 0.0)
    folder = Path(out.strip().split("results: ")[-1])
    assert (folder / "interpretation.wav").is_file() and (folder / "figure.png").is_file()
    res = CliRunner().invoke(app, ["l2i", "fit", str(run), "--layers", "conv1,nope",
                                   "--out", str(tmp_path / "other")])
    assert res.exit_code != 0 and "--layers" in str(res.exception)
    assert "nope" in str(res.exception) and "conv3 (Conv1d)" in str(res.exception)
