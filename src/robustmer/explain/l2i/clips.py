"""The clips L2I explains: a clip's waveform segment under the model's fixed window, and the path
from that segment to the model's input (:class:`InputPath`) and to ``X = log1p(|STFT|)``.

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
S}``, see :class:`InputPath`) has its own window: a clip is the front end's segment (at its
rate ``fe_sr``, ``robustmer.audio.SAMPLE_RATE`` = 22.05 kHz by default) covering the same
seconds as the model's fixed ``S``-second evaluation window at ``SR`` (``round(S * fe_sr)``
samples from ``round(i0 * fe_sr / SR)``, where ``i0`` is the window's first sample at ``SR``).
``X`` is the STFT of that segment and the model's input is the segment resampled to ``SR``
(soxr): both sides see the same seconds of audio, and Ψ maps the model's time axis onto the
frames of ``X``. A resynthesised segment is resampled the same way before the model sees it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import soxr
import torch

from robustmer.audio.load import RESAMPLE_QUALITY
from robustmer.errors import ConfigError
from robustmer.explain.l2i.signal import log_magnitude
from robustmer.features import EXCERPT_FRAMES, LogFilteredSpectrogram


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
        ``round(seconds * fe_sr)`` (the model's excerpt, in the front end's samples) else."""
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
    out: torch.Tensor = standardizer.transform(frontend(wave))[None, None].float()
    return out


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

