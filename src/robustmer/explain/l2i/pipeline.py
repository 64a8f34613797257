"""L2I on a dataset: clips -> (model input, X), dictionary frames, fidelity, faithfulness and
the listenable explanation of one clip.

``data`` is duck-typed (explain/ does not import data/): anything with ``dataset(part,
mode="fixed")`` (items with ``id``; ``excerpt_index(id)``), ``waveform(id)`` and a
``standardizer`` with ``transform`` (for a waveform model: ``dataset_for(input_spec, part,
mode="fixed")`` instead of the last) — ``robustmer.data.PreparedData`` is one.

What a clip is here: the waveform segment under the clip's fixed 313-frame evaluation window,
``wave[int(i0 * hop) : int(i0 * hop) + int(313 * hop)]`` (zero-padded if the clip is shorter).
Both the model's input (front end + standardiser) and ``X = log1p(|STFT|)`` are computed from
that segment, so their frames are the same frames, and a resynthesised segment goes back through
exactly the same path. (The segment's frame starts can differ by one sample from the cached
excerpt's, since ``int((i0 + i) * hop) - int(i0 * hop)`` is not always ``int(i * hop)``.)

A model that reads audio (input contract ``{"kind": "waveform", "sample_rate": SR, "seconds":
S}``, see :class:`InputPath`) has its own window: a clip is the 22.05 kHz segment covering the
same seconds as the model's fixed ``S``-second evaluation window at ``SR`` (``round(S * 22050)``
samples from ``round(i0 * 22050 / SR)``, where ``i0`` is the window's first sample at ``SR``).
``X`` is the STFT of that segment and the model's input is the segment resampled to ``SR``
(soxr): both sides see the same seconds of audio, and Ψ maps the model's time axis onto the
frames of ``X``. A resynthesised segment is resampled the same way before the model sees it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soxr
import torch
import torch.nn.functional as F
from torch import nn

from robustmer.audio.load import RESAMPLE_QUALITY
from robustmer.errors import ConfigError
from robustmer.evaluate.metrics import regression_metrics
from robustmer.explain.l2i.interpreter import FeatureHooks, Interpreter, relevance, select
from robustmer.explain.l2i.signal import log_magnitude, resynthesize, soft_masks
from robustmer.features import EXCERPT_FRAMES, LogFilteredSpectrogram

TAUS: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)


@dataclass
class InterpreterConfig:
    """Training settings of Ψ and Θ (defaults: the authors' loss weights).

    Loss = ``fidelity_weight(epoch) * fidelity + reconstruction_weight * mean (X - WH)² +
    sparsity_weight * mean |H|``. Fidelity schedule: ``fidelity_start`` (0.5) for the first
    ``round(warm_fraction * epochs)`` epochs, then ``fidelity_end`` (1.0); the authors raise the
    weight after the first part of training, the 30 % split is our choice.
    """

    pooling: str = "att"
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0
    hidden: int = 128
    reconstruction_weight: float = 5.0
    sparsity_weight: float = 0.4
    fidelity_start: float = 0.5
    fidelity_end: float = 1.0
    warm_fraction: float = 0.3
    device: str = "cpu"

    def fidelity_weight(self, epoch: int) -> float:
        """Weight of the fidelity loss in (1-based) ``epoch``."""
        return self.fidelity_start if epoch <= round(self.warm_fraction * self.epochs) \
            else self.fidelity_end

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-able)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InterpreterConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ConfigError``."""
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"InterpreterConfig: unknown keys {sorted(unknown)}")
        return cls(**d)


@dataclass
class Clips:
    """Clip ids and their waveform segments (float32 tensors)."""

    ids: list[str]
    waves: list[torch.Tensor]


def resample(wave: torch.Tensor, rate: int, to_rate: int, samples: int) -> torch.Tensor:
    """``(S,)`` audio at ``rate`` -> float32 ``(samples,)`` at ``to_rate`` (soxr, the quality
    ``robustmer.data`` resamples with; cut or zero-padded to exactly ``samples``)."""
    y = wave.detach().cpu().numpy().astype(np.float32, copy=False)
    if int(rate) != int(to_rate):
        y = soxr.resample(y, int(rate), int(to_rate), quality=RESAMPLE_QUALITY)
    y = np.asarray(y, dtype=np.float32)[:samples]
    if len(y) < samples:
        y = np.pad(y, (0, samples - len(y)))
    return torch.from_numpy(np.ascontiguousarray(y))


@dataclass(frozen=True)
class InputPath:
    """How a segment of robustmer's audio (the front end's 22.05 kHz) becomes the model's input,
    following its input contract ``spec`` (``ModelType.input_spec()``; None = spectrogram):

    - ``{"kind": "spectrogram"}``: front end + the run's ``standardizer`` -> ``(1, 1, T, bands)``;
    - ``{"kind": "waveform", "sample_rate": SR, "seconds": S}``: the segment resampled to ``SR``
      -> ``(1, round(S * SR))``.
    """

    frontend: LogFilteredSpectrogram
    standardizer: Any = None
    spec: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        kind = self.kind
        if kind == "waveform":
            sr, sec = (self.spec or {}).get("sample_rate"), (self.spec or {}).get("seconds")
            if not sr or not sec or float(sec) <= 0 or int(sr) < 1:
                raise ConfigError(f"L2I: a waveform model's input contract needs sample_rate "
                                  f"and seconds > 0, found {dict(self.spec or {})}")
        elif kind == "spectrogram":
            if self.standardizer is None:
                raise ConfigError("L2I: a spectrogram model's input needs the run's "
                                  "standardizer")
        else:
            raise ConfigError(f"L2I: model input kind must be spectrogram or waveform, found "
                              f"{kind!r}")

    @property
    def kind(self) -> str:
        """``spectrogram`` or ``waveform``."""
        return "spectrogram" if self.spec is None else str(self.spec.get("kind", "spectrogram"))

    @property
    def sample_rate(self) -> int:
        """The model's audio rate (the front end's for a spectrogram model)."""
        if self.kind == "waveform":
            return int((self.spec or {})["sample_rate"])
        return int(self.frontend.config.sample_rate)

    @property
    def samples(self) -> int:
        """A waveform model's excerpt length in its own samples, ``round(seconds * SR)``."""
        return round(float((self.spec or {}).get("seconds", 0.0)) * self.sample_rate)

    def segment_length(self, frames: int = EXCERPT_FRAMES) -> int:
        """Samples of a clip's 22.05 kHz segment: ``int(frames * hop)`` for a spectrogram model,
        ``round(seconds * 22050)`` (the model's excerpt, in the front end's samples) else."""
        cfg = self.frontend.config
        if self.kind == "waveform":
            return round(float((self.spec or {})["seconds"]) * cfg.sample_rate)
        return int(frames * cfg.hop_size)

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        """``(S,)`` 22.05 kHz segment -> the model's input, a batch of one."""
        if self.kind == "waveform":
            return resample(wave, self.frontend.config.sample_rate, self.sample_rate,
                            self.samples)[None]
        return model_input(self.frontend, self.standardizer, wave)


def excerpt_waves(data: Any, part: str, max_clips: int | None = None,
                  frames: int = EXCERPT_FRAMES, frontend: LogFilteredSpectrogram | None = None,
                  *, input_spec: Mapping[str, Any] | None = None,
                  ids: list[str] | None = None) -> Clips:
    """The 22.05 kHz waveform segments under the fixed evaluation windows of a split part (the
    first ``max_clips``, or the clips ``ids``). The window is the model's: the spectrogram
    dataset's ``frames``-frame window, or, for a waveform model (``input_spec``), the same
    seconds as its fixed excerpt at its own rate (``data.dataset_for(input_spec, ...)``)."""
    fe = frontend or LogFilteredSpectrogram()
    path_kind = "spectrogram" if input_spec is None else input_spec.get("kind", "spectrogram")
    waveform = path_kind == "waveform"
    ds = data.dataset_for(input_spec, part, mode="fixed") if waveform else data.dataset(
        part, mode="fixed")
    if ids is None:
        ids = list(ds.ids)[: max_clips]
    else:
        have = set(ds.ids)
        unknown = [i for i in ids if i not in have]
        if unknown:
            raise ConfigError(f"clip(s) {unknown} are not in split part {part!r}")
    if waveform:
        assert input_spec is not None
        rate = int(input_spec["sample_rate"])
        length = round(float(input_spec["seconds"]) * fe.config.sample_rate)
    else:
        length = int(frames * fe.config.hop_size)
    waves = []
    for clip_id in ids:
        wave = np.asarray(data.waveform(clip_id), dtype=np.float32)
        idx = ds.excerpt_index(clip_id)
        if waveform:
            start = round(int(idx[0]) * fe.config.sample_rate / rate) if len(idx) else 0
        else:
            start = int(fe.config.frame_starts(len(wave))[idx[0]]) if len(idx) else 0
        seg = wave[start: start + length]
        if len(seg) < length:
            seg = np.pad(seg, (0, length - len(seg)))
        waves.append(torch.from_numpy(np.ascontiguousarray(seg)))
    return Clips(ids=list(ids), waves=waves)


def model_input(frontend: LogFilteredSpectrogram, standardizer: Any, wave: torch.Tensor
                ) -> torch.Tensor:
    """``(S,)`` waveform -> the model's ``(1, 1, T, bands)`` standardised input (a spectrogram
    model; :class:`InputPath` covers both contracts)."""
    return standardizer.transform(frontend(wave))[None, None].float()


def clip_tensors(clips: Clips, frontend: LogFilteredSpectrogram, standardizer: Any, *,
                 input_spec: Mapping[str, Any] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Model inputs ``x`` (``(N, 1, T, bands)``, or ``(N, samples)`` for a waveform model
    ``input_spec``) and ``X (N, T, F)`` log-magnitudes of the 22.05 kHz segments."""
    path = InputPath(frontend, standardizer, input_spec)
    with torch.no_grad():
        xs = torch.cat([path(w) for w in clips.waves])
        Xs = torch.stack([log_magnitude(frontend, w)[0].float() for w in clips.waves])
    return xs, Xs


def sample_frames(X: torch.Tensor, per_clip: int, seed: int) -> torch.Tensor:
    """``(F, N * per_clip)``: ``per_clip`` frames drawn without replacement from every clip."""
    g = torch.Generator().manual_seed(int(seed))
    cols = [X[i, torch.randperm(X.shape[1], generator=g)[:per_clip]] for i in range(X.shape[0])]
    return torch.cat(cols).T.contiguous()


def model_targets(task: str, out: torch.Tensor) -> torch.Tensor:
    """What Θ imitates: the class distribution (softmax) for a classifier, else the outputs."""
    return torch.softmax(out, dim=-1) if task == "classification" else out


def fidelity_loss(task: str, theta_out: torch.Tensor, model_out: torch.Tensor) -> torch.Tensor:
    """Cross-entropy to the classifier's distribution, or MSE to the regressor's outputs."""
    if task == "classification":
        return F.cross_entropy(theta_out, torch.softmax(model_out, dim=-1))
    return F.mse_loss(theta_out, model_out)


def interpret_batches(model: nn.Module, interpreter: Interpreter, x: torch.Tensor,
                      frames: int, batch_size: int = 16
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(model outputs, H (N, K, T), Θ outputs)`` for inputs ``x``, without gradients."""
    outs, Hs, ys = [], [], []
    layers = interpreter.config.get("layers")
    with FeatureHooks(model, layers) as hooks, torch.no_grad():
        for i in range(0, len(x), batch_size):
            out = model(x[i: i + batch_size])
            H, y = interpreter(hooks.features, frames)
            outs.append(out)
            Hs.append(H)
            ys.append(y)
    return torch.cat(outs), torch.cat(Hs), torch.cat(ys)


def fidelity_table(task: str, model_out: torch.Tensor, theta_out: torch.Tensor,
                   names: list[str]) -> pd.DataFrame:
    """Tidy ``metric, output, value`` rows: top-1/3/5 agreement (classifier: is the model's
    top class among Θ's top k) or Pearson r / MAE per output and their mean (regressor)."""
    rows: list[dict[str, Any]] = []
    if task == "classification":
        top = model_out.argmax(-1)
        for k in (1, 3, 5):
            kk = min(k, theta_out.shape[-1])
            hit = (theta_out.topk(kk, dim=-1).indices == top[:, None]).any(-1)
            rows.append({"metric": f"top{k}", "output": "all", "value": float(hit.float().mean())})
        return pd.DataFrame(rows)
    m = regression_metrics(model_out.numpy(), theta_out.numpy(), names)
    for name in names:
        rows.append({"metric": "r", "output": name, "value": float(m["r"][name])})
    rows.append({"metric": "r", "output": "mean", "value": float(m["mean_r"])})
    rows.append({"metric": "mae", "output": "mean", "value": float(m["mae"])})
    return pd.DataFrame(rows)


def _target_value(task: str, out: torch.Tensor, c: int) -> float:
    return float(model_targets(task, out)[0, c])


def faithfulness(model: nn.Module, interpreter: Interpreter, W: torch.Tensor, clips: Clips,
                 frontend: LogFilteredSpectrogram, standardizer: Any, task: str,
                 taus: tuple[float, ...] = TAUS, targets: list[int] | None = None,
                 seed: int = 0, *, input_spec: Mapping[str, Any] | None = None
                 ) -> pd.DataFrame:
    """Per clip, target and τ: remove the selected components, resynthesise, and measure the
    drop of the model's output c, ``ff = f(x)_c - f(x')_c`` (class probability for a classifier,
    the output itself for a regressor); ``ff_random`` removes as many random components (seeded
    per clip, target and τ). Targets: the predicted class (classifier) or every output. ``x`` and
    ``x'`` both reach the model through its input contract (:class:`InputPath`: a waveform
    model gets the 22.05 kHz audio resampled to its rate)."""
    path = InputPath(frontend, standardizer, input_spec)
    rows = []
    g = torch.Generator().manual_seed(int(seed))
    k = W.shape[1]
    for clip_id, wave in zip(clips.ids, clips.waves, strict=True):
        x = path(wave)
        X, spec = log_magnitude(frontend, wave)
        model_out, H, _ = interpret_batches(model, interpreter, x, X.shape[0])
        parts = soft_masks(X.float(), W, H[0])
        r = relevance(interpreter.theta, H)[0]  # (C, K)
        cs = targets if targets is not None else (
            [int(model_out.argmax())] if task == "classification"
            else list(range(model_out.shape[1])))
        for c in cs:
            base = _target_value(task, model_out, c)
            for tau in taus:
                chosen = select(r[c], tau)
                n = int(chosen.sum())
                rand = torch.zeros(k, dtype=torch.bool)
                rand[torch.randperm(k, generator=g)[:n]] = True
                vals = []
                for mask in (chosen, rand):
                    if n == 0:
                        vals.append(0.0)
                        continue
                    X_rm = (X - parts[mask].sum(0)).clamp_min(0)
                    wave_rm = resynthesize(X_rm.to(X.dtype), spec, len(wave), frontend)
                    with torch.no_grad():
                        out = model(path(wave_rm.float()))
                    vals.append(base - _target_value(task, out, c))
                rows.append({"clip_id": clip_id, "target": c, "tau": tau, "n_selected": n,
                             "ff": vals[0], "ff_random": vals[1]})
    return pd.DataFrame(rows)


def faithfulness_summary(per_clip: pd.DataFrame) -> pd.DataFrame:
    """Per τ: FF_median of L2I and of the random baseline, mean selected components, and a
    Wilcoxon signed-rank test of the paired differences ``ff - ff_random`` (two-sided)."""
    from scipy.stats import wilcoxon

    rows = []
    for tau, grp in per_clip.groupby("tau"):
        diff = (grp["ff"] - grp["ff_random"]).to_numpy()
        p = float(wilcoxon(diff).pvalue) if np.any(diff != 0) else 1.0
        rows.append({"tau": float(tau), "n": len(grp), "mean_selected": grp["n_selected"].mean(),
                     "ff_median": grp["ff"].median(), "ff_random_median": grp["ff_random"].median(),
                     "median_difference": float(np.median(diff)), "wilcoxon_p": p})
    return pd.DataFrame(rows)


def explain_clip(model: nn.Module, interpreter: Interpreter, W: torch.Tensor,
                 wave: torch.Tensor, frontend: LogFilteredSpectrogram, standardizer: Any,
                 target: int, tau: float, out_dir: str | Path, task: str,
                 target_name: str = "", max_components: int = 8, *,
                 input_spec: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Listenable interpretation of one clip for output ``target``: writes ``input.wav``,
    ``interpretation.wav`` (the selected components together), ``component_<k>.wav`` (each of
    the ``max_components`` most relevant selected components), ``figure.png`` and
    ``explanation.json``; returns the JSON payload. The WAVs are at the front end's rate (the
    STFT side), whatever the model's own rate (``input_spec``)."""
    from robustmer import io
    from robustmer.attacks.waveform import write_wav

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sr = frontend.config.sample_rate
    x = InputPath(frontend, standardizer, input_spec)(wave)
    X, spec = log_magnitude(frontend, wave)
    model_out, H, theta_out = interpret_batches(model, interpreter, x, X.shape[0])
    r = relevance(interpreter.theta, H)[0, target]
    chosen = torch.nonzero(select(r, tau)).flatten()
    chosen = chosen[torch.argsort(r[chosen], descending=True)]
    parts = soft_masks(X.float(), W, H[0])
    n = len(wave)
    write_wav(out / "input.wav", wave, sr)
    interp = parts[chosen].sum(0) if len(chosen) else torch.zeros_like(X)
    write_wav(out / "interpretation.wav", resynthesize(interp.to(X.dtype), spec, n, frontend), sr)
    comps = [int(k) for k in chosen[:max_components]]
    for kk in comps:
        write_wav(out / f"component_{kk}.wav",
                  resynthesize(parts[kk].to(X.dtype), spec, n, frontend), sr)
    alt = _figure(X, parts, comps, r, tau, out / "figure.png", target_name, sample_rate=sr,
                  frame_size=frontend.config.frame_size)
    payload = {"target": target, "target_name": target_name, "tau": tau, "figure_alt": alt,
               "model_output": float(model_targets(task, model_out)[0, target]),
               "interpreter_output": float(model_targets(task, theta_out)[0, target]),
               "selected": [int(k) for k in chosen],
               "relevance": {int(k): float(r[k]) for k in chosen},
               "component_files": {kk: f"component_{kk}.wav" for kk in comps}}
    io.write_json(out / "explanation.json", payload)
    return payload


FREQ_TICKS_HZ: tuple[float, ...] = (20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
"""Where the L2I figure's log-frequency axis is labelled (those inside its range)."""

FIGURE_FMIN_HZ = 20.0
"""The L2I figure's lowest frequency (the front end's ``fmin``: nothing below reaches a model)."""


def _pool_frames(img: np.ndarray, most: int) -> tuple[np.ndarray, np.ndarray]:
    """Means over blocks of consecutive frames so that at most ``most`` columns remain, and the
    blocks' edges in frame units (a panel is ~260 pixels wide: more columns are not seen)."""
    T = img.shape[0]
    k = max(1, -(-T // most))
    starts = np.arange(0, T, k)
    sums = np.add.reduceat(img, starts, axis=0)
    sizes = np.diff(np.append(starts, T))
    return sums / sizes[:, None], np.append(starts, T) - 0.5


def log_frequency_bands(img: np.ndarray, bin_hz: float, fmin: float = FIGURE_FMIN_HZ,
                        n_bands: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """``img (T, F)`` over linear FFT bins (bin ``k`` at ``k · bin_hz``) on ``n_bands``
    geometrically spaced bands from ``fmin`` to the top bin: each band the mean of the bins whose
    centre falls inside it, or the nearest bin where a low band is narrower than a bin. Returns
    ``(T, n_bands)`` and the ``n_bands + 1`` band edges in Hz. For drawing only: a mesh of
    F = 1024 rows per panel takes seconds to draw, and a panel is ~200 pixels high anyway."""
    T, F = img.shape
    top = (F - 0.5) * bin_hz
    edges = np.geomspace(max(fmin, 0.5 * bin_hz), top, n_bands + 1)
    centres = np.arange(F) * bin_hz
    lo = np.searchsorted(centres, edges[:-1], side="left")
    hi = np.searchsorted(centres, edges[1:], side="left")
    cs = np.concatenate([np.zeros((T, 1)), np.cumsum(img, axis=1)], axis=1)
    count = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (cs[:, hi] - cs[:, lo]) / np.where(count > 0, count, 1)
    nearest = np.clip(np.rint(np.sqrt(edges[:-1] * edges[1:]) / bin_hz).astype(int), 0, F - 1)
    out = np.where(count[None, :] > 0, mean, img[:, nearest])
    return out, edges


def _hz_label(f: float) -> str:
    return f"{f / 1000:g}k" if f >= 1000 else f"{f:g}"


def l2i_figure(X: torch.Tensor | np.ndarray, parts: torch.Tensor | np.ndarray, comps: list[int],
               r: torch.Tensor | np.ndarray, tau: float, *, sample_rate: float,
               frame_size: int, title: str = "", per_row: int = 4) -> Any:
    """The L2I figure of one clip as a matplotlib ``Figure`` (no pyplot): the input's
    log-magnitude STFT ``X (T, F)`` and each selected component's part ``parts[k] (T, F)`` on a
    log-frequency axis in Hz from 20 Hz (bin ``k`` sits at ``k · sample_rate / frame_size``;
    drawn as ``log_frequency_bands``), so the low bands where music's energy lives are not
    squeezed into the bottom fifth as on the linear bin axis; and the relevance of the
    20 most relevant components as horizontal bars, one labelled row each (labels cannot
    overlap), selected ones (r > τ) in orange. ``figure_alt(fig)`` describes it."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator

    from robustmer.explain.plots import set_alt

    Xn = np.asarray(X.detach().cpu() if isinstance(X, torch.Tensor) else X, dtype=np.float64)
    P = np.asarray(parts.detach().cpu() if isinstance(parts, torch.Tensor) else parts,
                   dtype=np.float64)
    rr = np.asarray(r.detach().cpu() if isinstance(r, torch.Tensor) else r, dtype=np.float64)
    df = float(sample_rate) / float(frame_size)
    panels = [(f"input {title}".strip(), Xn)] + [
        (f"component {k} (r = {rr[k]:.2f})", P[k]) for k in comps]
    ncols = min(per_row, len(panels))
    nrows = -(-len(panels) // ncols)
    order = np.argsort(-rr, kind="stable")[:20]
    height = max(2.9 * nrows, 0.22 * len(order) + 1.2)
    fig = Figure(figsize=(2.9 * ncols + 3.0, height))
    grid = fig.add_gridspec(nrows, ncols + 1, width_ratios=[1.0] * ncols + [0.9])
    vmax = float(np.nanmax(Xn)) if np.isfinite(Xn).any() else 1.0
    first = None
    for i, (name, img) in enumerate(panels):
        ax = fig.add_subplot(grid[i // ncols, i % ncols], sharex=first, sharey=first)
        first = first or ax
        bands, f_edges = log_frequency_bands(img, df)
        pooled, t_edges = _pool_frames(bands, 160)
        ax.pcolormesh(t_edges, f_edges, pooled.T, cmap="magma", vmin=0.0, vmax=vmax or 1.0,
                      shading="flat", rasterized=True)
        ax.set_yscale("log")
        ticks = [f for f in FREQ_TICKS_HZ if f_edges[0] <= f <= f_edges[-1]]
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.set_yticks(ticks, [_hz_label(f) for f in ticks])
        ax.yaxis.set_minor_locator(NullLocator())  # log minor ticks: slow to draw, no label
        ax.set_ylim(f_edges[0], f_edges[-1])
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("frame", fontsize=7)
        if i % ncols == 0:
            ax.set_ylabel("frequency (Hz, log scale)", fontsize=7)
    bar = fig.add_subplot(grid[:, -1])
    ypos = np.arange(len(order))
    bar.barh(ypos, rr[order], color=["C1" if rr[o] > tau else "C0" for o in order])
    bar.set_yticks(ypos, [f"comp. {int(o)}" for o in order], fontsize=7)
    bar.invert_yaxis()
    bar.axvline(tau, color="k", lw=0.8, ls="--")
    bar.set_xlabel("relevance r", fontsize=7)
    bar.tick_params(axis="x", labelsize=7)
    bar.set_title(f"relevance (τ = {tau:g}; orange: selected)", fontsize=8)
    fig.tight_layout()
    n_sel = int((rr > tau).sum())
    return set_alt(fig, f"Log-frequency spectrogram of the input{' for ' + title if title else ''}"
                   f" and of {len(comps)} selected component(s), beside the relevance of the "
                   f"{len(order)} most relevant of {len(rr)} components ({n_sel} above τ = "
                   f"{tau:g}).")


def _figure(X: torch.Tensor, parts: torch.Tensor, comps: list[int], r: torch.Tensor,
            tau: float, path: Path, title: str, *, sample_rate: float = 22050.0,
            frame_size: int = 2048) -> str:
    """Draw ``l2i_figure`` and write it atomically to ``path``; returns its alt text."""
    from robustmer import io
    from robustmer.explain.plots import figure_alt

    fig = l2i_figure(X, parts, comps, r, tau, sample_rate=sample_rate, frame_size=frame_size,
                     title=title)
    with io.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    return figure_alt(fig)
