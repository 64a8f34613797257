"""Explaining waveform models (robustmer.explain.audio): the STFT view reproduces the model and
passes gradients through the inverse STFT, the log-band segment map keeps the grid's
conventions, the input view is the model itself, every explainer runs in both views, LIME's
switched-off rectangle is silence in those STFT bins, and the CLI explains and evaluates a
user's waveform model end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from robustmer.errors import ConfigError
from robustmer.explain import make_explainer
from robustmer.explain.audio import (
    InputView,
    STFTSettings,
    STFTView,
    default_n_fft,
    from_input,
    input_segments,
    istft,
    stft,
    stft_input,
    to_input,
)
from robustmer.explain.segments import log_band_edges, log_band_segments

WAVENET = '''
import torch
from torch import nn


class WaveNet(nn.Module):
    """(B, S) audio -> (B, K)."""

    def __init__(self, n_outputs, channels=4):
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, 64, stride=16)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv1d(channels, channels, 9, stride=4)
        self.act2 = nn.ReLU()
        self.head = nn.Linear(channels, n_outputs)

    def forward(self, x):
        h = self.act2(self.conv2(self.act1(self.conv1(x[:, None]))))
        return self.head(h.mean(-1))


def build(n_outputs, **settings):
    return WaveNet(n_outputs, **settings)
'''


class WaveNet(nn.Module):
    """A tiny waveform model ``(B, S) -> (B, K)`` (conv front end owned by the model)."""

    def __init__(self, n_outputs: int = 3, channels: int = 4, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv1d(1, channels, 64, stride=16)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv1d(channels, channels, 9, stride=4)
        self.act2 = nn.ReLU()
        self.head = nn.Linear(channels, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act2(self.conv2(self.act1(self.conv1(x[:, None]))))
        return self.head(h.mean(-1))


def waves(n: int = 2, samples: int = 4000, sr: int = 8000, seed: int = 0) -> torch.Tensor:
    """Tones plus noise in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / sr
    rows = [0.4 * torch.sin(2 * torch.pi * (300 + 500 * i) * t)
            + 0.05 * torch.randn(samples, generator=g) for i in range(n)]
    return torch.stack(rows).clamp(-1, 1)


# -- the STFT view --------------------------------------------------------------------------------

def test_default_n_fft_covers_64_ms() -> None:
    assert [default_n_fft(sr) for sr in (8000, 16000, 22050, 44100)] == [512, 1024, 2048, 4096]
    s = STFTSettings.for_rate(16000)
    assert (s.n_fft, s.hop, s.n_bins, s.n_frames(32000)) == (1024, 256, 513, 126)
    with pytest.raises(ConfigError, match="sample_rate"):
        default_n_fft(0)
    with pytest.raises(ConfigError, match="n_fft"):
        STFTSettings.for_rate(16000, n_fft=1022)


def test_stft_view_reproduces_the_model_on_the_clip() -> None:
    w = waves(3, 4000)
    model = WaveNet().eval()
    mag, kw = stft_input(w, 8000)
    assert mag.shape == (3, 1, 1 + 4000 // 128, 257) and bool((mag >= 0).all())
    view = STFTView(model, **kw)
    assert float((view.waves(mag) - w).abs().max()) < 1e-5  # the inverse is exact
    with torch.no_grad():
        assert torch.allclose(view(mag), model(w), atol=1e-5, rtol=1e-4)
    assert not view.training  # takes the wrapped model's mode


def test_gradients_flow_through_the_inverse_stft() -> None:
    settings = STFTSettings(sample_rate=64, n_fft=16, hop=4)
    g = torch.Generator().manual_seed(1)
    w = torch.randn(1, 40, generator=g, dtype=torch.float64)
    spec = stft(w, settings)
    assert torch.allclose(istft(spec, settings, 40), w, atol=1e-12)
    lin = nn.Linear(40, 2).double()
    view = STFTView(lin, spec.angle(), settings, 40).double()
    mag = spec.abs()[:, None].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(view, (mag,), eps=1e-6, atol=1e-6)
    # and on one bin, a central finite difference agrees with autograd
    out = view(mag)[0, 0]
    (grad,) = torch.autograd.grad(out, mag)
    bump = torch.zeros_like(mag)
    bump[0, 0, 3, 2] = 1e-6
    with torch.no_grad():
        fd = (view(mag + bump)[0, 0] - view(mag - bump)[0, 0]) / 2e-6
    assert abs(float(fd) - float(grad[0, 0, 3, 2])) < 1e-6


def test_subset_keeps_each_clips_phase_and_one_clip_broadcasts() -> None:
    w = waves(3, 2000)
    model = WaveNet().eval()
    mag, kw = stft_input(w, 8000)
    view = STFTView(model, **kw)
    rows = torch.tensor([2, 0])
    with torch.no_grad():
        full = view(mag)
        assert torch.allclose(view.subset(rows)(mag[rows]), full[rows], atol=1e-6)
        one = view.subset(torch.tensor([1]))
        assert one.n_clips == 1 and one.subset(torch.tensor([0, 0])) is one
        copies = one(mag[1:2].expand(4, -1, -1, -1))
        assert torch.allclose(copies, full[1:2].expand(4, -1), atol=1e-6)
    with pytest.raises(ConfigError, match="phases of 3 clips"):
        view(mag[:2])
    with pytest.raises(ConfigError, match="frames"):
        STFTView(model, kw["phase"][:, :-1], kw["settings"], kw["length"])


# -- segment maps -----------------------------------------------------------------------------

def test_log_band_segments_conventions() -> None:
    sr, n_fft, T = 16000, 1024, 126
    edges = log_band_edges(4, sr)
    assert edges[0] == 0 and edges[-1] == 8000
    assert np.allclose(edges[2:] / edges[1:-1], (8000 / 40) ** 0.25)  # geometric steps
    seg = log_band_segments((T, 513), 4, 5, sample_rate=sr, n_fft=n_fft)
    assert seg.shape == (T, 513) and seg.dtype == torch.int64
    assert sorted(torch.unique(seg).tolist()) == list(range(20))
    # bins are 15.625 Hz apart; edges 150.4, 565.7, 2127.3 Hz -> bins 0-9, 10-36, 37-136, 137-512
    assert torch.bincount(seg[0]).tolist() == [10, 27, 100, 376]
    # time block i, band j -> i * n_freq + j; blocks as in grid_segments (t * n_time // T)
    for t in (0, 25, 26, 125):
        for f, band in ((0, 0), (9, 0), (10, 1), (136, 2), (137, 3), (512, 3)):
            assert int(seg[t, f]) == (t * 5 // T) * 4 + band
    with pytest.raises(ConfigError, match="hold no STFT bin"):
        log_band_segments((T, 513), 40, 5, sample_rate=sr, n_fft=n_fft)
    with pytest.raises(ConfigError, match="do not match n_fft"):
        log_band_segments((T, 512), 4, 5, sample_rate=sr, n_fft=n_fft)


def test_input_view_is_the_model_on_its_samples() -> None:
    w = waves(2, 2000)
    model = WaveNet().eval()
    x = to_input(w)
    assert x.shape == (2, 1, 2000, 1) and torch.equal(from_input(x), w)
    with torch.no_grad():
        assert torch.equal(InputView(model)(x), model(w))
    seg = input_segments(2000, 5)
    assert seg.shape == (2000, 1) and seg[:400].eq(0).all() and seg[-400:].eq(4).all()
    with pytest.raises(ConfigError, match="InputView"):
        InputView(model)(w[:, None])


# -- explainers in both views -------------------------------------------------------------------

METHODS = {"saliency": {}, "gbp": {}, "ig": {"n_steps": 4},
           "smoothgrad": {"nt_samples": 3}, "lime": {"n_samples": 32, "fill": "zero"}}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_explainer_runs_in_both_views(method: str) -> None:
    w = waves(2, 2000)
    model = WaveNet().eval()
    mag, kw = stft_input(w, 8000)
    view = STFTView(model, **kw)
    seg = log_band_segments(tuple(mag.shape[-2:]), 3, 4, sample_rate=8000, n_fft=512)
    explainer = make_explainer(method, **METHODS[method])
    for i in range(2):  # one clip per view: explainers batch one clip's perturbed copies
        ex = explainer(view.subset(torch.tensor([i])), mag[i:i + 1], 1, seg)
        assert ex.attribution.shape == (1, 1, *mag.shape[-2:])
        assert ex.segment_scores is not None and ex.segment_scores.shape == (1, 12)
        assert bool(torch.isfinite(ex.attribution).all())
        assert bool(torch.isfinite(ex.segment_scores).all())
    ex = explainer(InputView(model), to_input(w), 0, input_segments(2000, 5))
    assert ex.attribution.shape == (2, 1, 2000, 1) and ex.segment_scores is not None
    assert ex.segment_scores.shape == (2, 5) and bool(torch.isfinite(ex.segment_scores).all())


def test_saliency_in_the_input_view_is_the_sample_gradient() -> None:
    w = waves(1, 2000)
    model = WaveNet().eval()
    x = w.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x)[0, 2], x)
    ex = make_explainer("saliency")(InputView(model), to_input(w), 2, input_segments(2000, 4))
    assert torch.allclose(ex.attribution[0, 0, :, 0], grad[0], atol=1e-7)
    blocks = grad[0].reshape(4, 500).mean(1)
    assert ex.segment_scores is not None
    assert torch.allclose(ex.segment_scores[0], blocks, atol=1e-7)


class Recorder(nn.Module):
    """Passes through, keeping every input batch and output."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        self.seen.append((x.detach().clone(), out.detach().clone()))
        return out


def test_lime_switching_off_a_rectangle_silences_those_stft_bins() -> None:
    w = waves(1, 2000)
    model = WaveNet().eval()
    mag, kw = stft_input(w, 8000)
    seg = log_band_segments(tuple(mag.shape[-2:]), 3, 4, sample_rate=8000, n_fft=512)
    rec = Recorder(STFTView(model, **kw))
    make_explainer("lime", n_samples=16, fill="zero", batch_size=16)(rec, mag, 0, seg)
    inputs = torch.cat([x for x, _ in rec.seen])
    outputs = torch.cat([o for _, o in rec.seen])
    settings, phase = kw["settings"], kw["phase"]
    checked = 0
    for m_in, out in zip(inputs, outputs, strict=True):
        off = (m_in[0] == 0) & (mag[0, 0] != 0)
        if not bool(off.any()):
            continue
        off_ids = torch.unique(seg[off])
        assert torch.equal(off, torch.isin(seg, off_ids))  # whole segments, nothing else
        spec = torch.polar(mag[0, 0], phase[0]).clone()
        spec[off] = 0  # the same STFT bins zeroed in the audio's own STFT
        silenced = istft(spec[None], settings, 2000)
        with torch.no_grad():
            assert torch.allclose(out, model(silenced)[0], atol=1e-5)
        checked += 1
    assert checked >= 5


# -- end to end from the CLI --------------------------------------------------------------------

def invoke(*args: object) -> str:
    from typer.testing import CliRunner

    from robustmer.cli import app

    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, (args, res.output, res.exception)
    return res.output


@pytest.fixture(scope="module")
def wave_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's waveform model (a .py factory) trained 1 epoch on a 12-clip manifest."""
    import soundfile as sf

    root = tmp_path_factory.mktemp("wave-explain")
    (root / "audio").mkdir()
    (root / "wavenet.py").write_text(WAVENET, encoding="utf-8")
    rng = np.random.default_rng(0)
    rows = ["file,arousal,valence,tension,split"]
    t = np.arange(int(22050 * 2.2)) / 22050
    for i in range(12):
        wave = 0.3 * np.sin(2 * np.pi * 150 * (1 + i) * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(root / "audio" / f"c{i:02d}.wav", wave.astype(np.float32), 22050)
        part = "train" if i < 6 else "val" if i < 9 else "test"
        rows.append(f"audio/c{i:02d}.wav,{i / 12:.3f},{1 - i / 12:.3f},{rng.random():.3f},"
                    f"{part}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    run = root / "run"
    invoke("train", "--model", f"{root / 'wavenet.py'}:build", "--input", "waveform",
           "--sample-rate", 16000, "--seconds", 2, "--data", root / "manifest.csv",
           "--epochs", 1, "--out", run, "--no-progress")
    return run


@pytest.mark.slow
def test_cli_explains_a_waveform_model_in_both_views(wave_run: Path) -> None:
    clip = json.loads((wave_run / "split.json").read_text())["test"][0]
    out = wave_run.parent / "exp-stft"
    text = invoke("explain", wave_run, "--clip", clip, "--method", "saliency", "--out", out)
    assert "saliency for arousal" in text
    summary = json.loads((out / "explanation.json").read_text(encoding="utf-8"))
    assert summary["view"] == "stft" and summary["stft"]["n_fft"] == 1024
    assert summary["stft"]["hop"] == 256 and summary["band_edges_hz"][-1] == 8000
    assert [r["target"] for r in summary["targets"]] == ["arousal", "valence", "tension"]
    for row in summary["targets"]:
        assert len(row["segment_scores"]) == 20 and np.isfinite(row["segment_scores"]).all()
        assert (out / row["figure"]).stat().st_size > 10_000
    with np.load(out / "attribution.npz") as z:
        assert z["attribution"].shape == (3, 1, 126, 513)
        assert np.isfinite(z["attribution"]).all() and z["segments"].shape == (126, 513)

    out2 = wave_run.parent / "exp-input"
    invoke("explain", wave_run, "--clip", clip, "--method", "lime", "--view", "input",
           "--param", "n_samples=32", "--target", "valence", "--out", out2)
    summary = json.loads((out2 / "explanation.json").read_text(encoding="utf-8"))
    (row,) = summary["targets"]
    assert summary["view"] == "input" and summary["grid"] == {"n_freq": 1, "n_time": 5}
    assert summary["explainer"]["fill"] == "zero"  # switched off = silence
    assert len(row["segment_scores"]) == 5 and np.isfinite(row["segment_scores"]).all()
    with np.load(out2 / "attribution.npz") as z:
        assert z["attribution"].shape == (1, 1, 32000, 1)

    from typer.testing import CliRunner

    from robustmer.cli import app

    res = CliRunner().invoke(app, ["explain", str(wave_run), "--clip", clip, "--view",
                                   "spectrogram", "--out", str(wave_run.parent / "bad")])
    assert res.exit_code != 0 and "waveform model" in str(res.exception)


@pytest.mark.slow
def test_cli_explainer_eval_on_a_waveform_model(wave_run: Path) -> None:
    out = wave_run.parent / "xeval"
    text = invoke("explainer-eval", wave_run, "--methods", "saliency", "--max-clips", 4,
                  "--split", "train", "--attack-iters", 5, "--eps", 0.01, "--norm", "linf",
                  "--stop", "none", "--min-rise", 0, "--k", "1,3,20", "--batch-size", 3,
                  "--out", out, "--no-progress")
    assert "4 of 4 clips" in text
    adv = pd.read_csv(out / "adversarial.csv", dtype={"clip_id": str})
    assert len(adv) == 4 and adv["success"].all()
    assert np.allclose(adv["delta_linf"], 0.01, rtol=1e-5)  # ε bounds the magnitudes' change
    flips = pd.read_csv(out / "flips.csv", dtype={"clip_id": str})
    assert set(flips["method"]) == {"magnitude", "random", "saliency"}
    assert len(flips) == 4 * 3 * 3 and np.isfinite(flips["effect"]).all()
    # all 20 segments carry all of δ: the full perturbation's effect
    assert np.allclose(flips.loc[flips["k"] == 20, "effect"], 1.0, atol=1e-6)
    cfg = __import__("yaml").safe_load((out / "config.yaml").read_text(encoding="utf-8"))
    assert cfg["view"] == "stft" and cfg["attack_domain"] == "stft_magnitude"
    assert cfg["attack"]["box"][0] == 0.0 and cfg["segments"]["shape"] == [126, 513]
    with np.load(out / "examples" / f"{adv['clip_id'][0]}.npz") as z:
        assert z["x"].shape == (1, 126, 513) and z["context_phase"].shape == (126, 513)
        assert float((z["x"] + z["delta"]).min()) >= 0.0  # still a magnitude
    _check_standard_tests_in_the_stft_view(wave_run, out, list(adv["clip_id"]))


def _check_standard_tests_in_the_stft_view(run: Path, out: Path, clips: list[str]) -> None:
    """The standard tests ran in the STFT view, each clip with its own phase: the deletion
    curve's first point (nothing deleted) is the model's output on that clip's audio; the
    cascade re-initialised the waveform model's own layers and flags the input reference."""
    from robustmer.train import load_run

    model = load_run(run).model.eval()
    settings = STFTSettings.for_rate(16000)
    outputs = {}
    for cid in clips:
        with np.load(out / "examples" / f"{cid}.npz") as z:
            x, phase = torch.as_tensor(z["x"]), torch.as_tensor(z["context_phase"])
        with torch.no_grad():
            outputs[cid] = model(STFTView(model, phase, settings, 32000).waves(x[None]))[0]
    out_all = torch.stack([outputs[c] for c in clips]).double()
    target = (out_all - out_all.mean(dim=0)).abs().argmax(dim=1)  # standard.default_targets
    curves = pd.read_csv(out / "deletion_curves.csv", dtype={"clip_id": str})
    first = curves[(curves["mode"] == "deletion") & (curves["step"] == 0)
                   & (curves["method"] == "saliency")].set_index("clip_id")["score"]
    assert sorted(first.index) == sorted(clips)
    for i, cid in enumerate(clips):
        assert abs(first[cid] - float(out_all[i, target[i]])) < 1e-4, cid
    auc = pd.read_csv(out / "deletion_auc.csv", dtype={"clip_id": str})
    assert set(auc["method"]) == {"saliency", "random"} and np.isfinite(auc["auc"]).all()
    cascade = pd.read_csv(out / "sanity_cascade.csv", dtype={"clip": str})
    assert set(cascade["method"]) == {"saliency", "input"} and cascade["clip"].nunique() == 4
    assert all(layer.startswith("model.") for layer in cascade["layer"])  # the wrapped model's
    top = cascade[cascade["step"] == cascade["step"].max()]
    assert top[top["method"] == "input"]["spearman_abs"].median() == pytest.approx(1.0)


class WaveClips:
    """A dataset-like list of audio excerpts (``ids``, items ``{"x", "targets"}``)."""

    def __init__(self, w: torch.Tensor) -> None:
        self.w = w
        self.ids = [f"w{i}" for i in range(len(w))]

    def __len__(self) -> int:
        return len(self.w)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.w[i], "targets": torch.zeros(3)}


def test_explainer_evaluation_of_a_waveform_classifier_in_the_stft_view(tmp_path: Path) -> None:
    from robustmer.attacks import CWAudio
    from robustmer.explain.audio import stft_evaluation_inputs
    from robustmer.explain.evaluation import evaluate_explainers

    model = WaveNet(n_outputs=3, seed=2).eval()
    clips = WaveClips(waves(3, 2000, seed=4))
    ev = stft_evaluation_inputs(model, clips, 3, 8000, (3, 4))
    assert ev.segments.shape == (1 + 2000 // 128, 257) and ev.settings.n_fft == 512
    attack = CWAudio(alpha=15.0, eps=0.2, eta=0.02, max_iters=40, box=(0.0, float("inf")))
    explainers = {"saliency": make_explainer("saliency"),
                  "lime": make_explainer("lime", n_samples=16, fill="zero")}
    res = evaluate_explainers(model, ev.items, ev.segments, explainers, tmp_path,
                              task="classification", attack=attack, batch_size=2, ks=[1, 4, 12],
                              recovery_ks=[1, 3], model_for=ev.model_for)
    assert res.n_attacked == 3 and res.n_successful >= 2
    ok = res.adversarial[res.adversarial["success"]]
    assert len(res.flips) == len(ok) * 4 * 3 and np.isfinite(res.flips["effect"]).all()
    # δ of all 12 segments is the whole adversarial example: it reaches the target class
    assert res.flips.loc[res.flips["k"] == 12, "flipped"].all()
    for cid in ok["clip_id"]:
        with np.load(tmp_path / "examples" / f"{cid}.npz") as z:
            x, d, phase = (torch.as_tensor(z[k]) for k in ("x", "delta", "context_phase"))
        assert float((x + d).min()) >= 0.0 and float(d.abs().max()) <= 0.2 + 1e-7
        # the stored magnitude and phase give back the clip's audio, so the class is reached
        # on the audio itself
        i = clips.ids.index(cid)
        view = STFTView(model, phase, ev.settings, 2000)
        assert torch.allclose(view.waves(x[None])[0], clips.w[i], atol=1e-5)
        target = int(res.adversarial.set_index("clip_id").loc[cid, "target_class"])
        with torch.no_grad():
            assert int(model(view.waves((x + d)[None])).argmax()) == target
