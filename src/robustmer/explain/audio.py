"""Explaining a waveform model (input: mono audio ``(B, samples)``) with the same explainers,
segment maps and evaluation as robustmer's spectrogram models (docs/explain.md, "Waveform
models").

Two views turn the audio into the ``(B, 1, T, F)`` input every explainer takes:

- :class:`STFTView` (the default): the input is the magnitude ``M`` of the clip's STFT, and the
  module puts each clip's own phase back and inverts the STFT before calling the model,
  ``view(M) = model(istft(M · e^{iφ}))``. With ``M = |STFT(wave)|`` this is ``model(wave)`` to
  float rounding (the Hann window at hop ``n_fft/4`` satisfies the NOLA condition, so the
  inverse is exact), and gradients flow through ``torch.istft``. A pixel is a time-frequency bin,
  so gradient maps, LIME rectangles (switched off = zero magnitude = silence in that rectangle)
  and attacks work on time-frequency regions of the audio; :func:`log_band_segments` gives the
  segment grid with log-spaced frequency bands, as on the log-filtered spectrogram.
- :class:`InputView`: the model's own input, the samples, seen as ``(B, 1, S, 1)`` (time x one
  "frequency"), so a sample attribution is exactly the explainer's result on the model's input;
  segments are time blocks (:func:`input_segments`).

The STFT is ``torch.stft`` / ``torch.istft`` (``normalized=True``: each frame's DFT is scaled by
``n_fft^-1/2``, so magnitudes are on the scale of sample amplitudes and a perturbation's L2 norm
in ``M`` is close to its L2 norm in the audio; docs/explainer-eval.md). Imports only torch and
explain/; never data/ or train/.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from robustmer.errors import ConfigError
from robustmer.explain.segments import grid_segments, log_band_edges, log_band_segments

VIEWS: tuple[str, ...] = ("stft", "input")
"""How a waveform model is explained: on its STFT magnitude (default) or on its samples."""
WINDOW_SECONDS = 0.064
"""The STFT frame covers at least this long: ``n_fft`` is the smallest power of two with
``n_fft >= 64 ms · sample_rate`` (1024 at 16 kHz, 2048 at 22.05 kHz, 4096 at 44.1 kHz), about
robustmer's own front end (2048 samples = 93 ms at 22.05 kHz)."""


def default_n_fft(sample_rate: int) -> int:
    """The smallest power of two covering :data:`WINDOW_SECONDS` at ``sample_rate``."""
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate < 1:
        raise ConfigError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    need = -(-int(sample_rate) * round(WINDOW_SECONDS * 1000) // 1000)  # ceil, in integers
    return 1 << max(0, need - 1).bit_length()


@dataclass(frozen=True)
class STFTSettings:
    """One STFT: ``n_fft``-sample periodic Hann frames every ``hop = n_fft // 4`` samples,
    centred (``center=True``, reflect padding), one-sided, ``normalized=True``."""

    sample_rate: int
    n_fft: int
    hop: int

    @classmethod
    def for_rate(cls, sample_rate: int, n_fft: int | None = None) -> STFTSettings:
        """The settings at ``sample_rate`` (``n_fft``: default :func:`default_n_fft`)."""
        n = default_n_fft(sample_rate) if n_fft is None else n_fft
        if isinstance(n, bool) or int(n) != n or n < 8 or n % 4:
            raise ConfigError(f"n_fft must be an integer >= 8 divisible by 4, got {n_fft!r}")
        return cls(sample_rate=int(sample_rate), n_fft=int(n), hop=int(n) // 4)

    @property
    def n_bins(self) -> int:
        """Frequency bins ``F = n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    def n_frames(self, n_samples: int) -> int:
        """Frames ``T = 1 + n_samples // hop`` of a centred STFT."""
        return 1 + int(n_samples) // self.hop

    def frequencies(self) -> np.ndarray:
        """Centre frequency of each bin in Hz, ``(F,)``."""
        return np.arange(self.n_bins) * self.sample_rate / self.n_fft

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (recorded beside explanations)."""
        return {**asdict(self), "window": "hann (periodic)", "center": True,
                "normalized": True, "onesided": True}


def _window(n_fft: int, like: torch.Tensor) -> torch.Tensor:
    return torch.hann_window(n_fft, periodic=True, dtype=like.dtype, device=like.device)


def stft(waves: torch.Tensor, settings: STFTSettings) -> torch.Tensor:
    """``(B, S)`` audio -> complex STFT ``(B, T, F)`` (time before frequency, as the views)."""
    if not isinstance(waves, torch.Tensor) or waves.ndim != 2 or not waves.is_floating_point():
        raise ConfigError(f"waves must be a floating (B, samples) tensor, got "
                          f"{getattr(waves, 'shape', type(waves).__name__)}")
    if waves.shape[1] < settings.n_fft // 2 + 1:
        raise ConfigError(f"clips of {waves.shape[1]} samples are too short for an STFT with "
                          f"n_fft {settings.n_fft} (need > n_fft/2 samples)")
    spec = torch.stft(waves, settings.n_fft, settings.hop, window=_window(settings.n_fft, waves),
                      center=True, normalized=True, onesided=True, return_complex=True)
    return spec.transpose(-1, -2)


def istft(spec: torch.Tensor, settings: STFTSettings, length: int) -> torch.Tensor:
    """The inverse of :func:`stft`: complex ``(B, T, F)`` -> ``(B, length)`` audio."""
    real = spec.real
    return torch.istft(spec.transpose(-1, -2), settings.n_fft, settings.hop,
                       window=_window(settings.n_fft, real), center=True, normalized=True,
                       onesided=True, length=int(length))


def stft_input(waves: torch.Tensor, sample_rate: int,
               n_fft: int | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """The STFT view's input for ``waves`` ``(B, S)``: ``(M (B, 1, T, F), kwargs)`` with
    ``STFTView(model, **kwargs)`` the module that explains on it (``kwargs``: each clip's
    ``phase`` ``(B, T, F)``, the ``settings`` and the output ``length``)."""
    settings = STFTSettings.for_rate(sample_rate, n_fft)
    spec = stft(waves, settings)
    return spec.abs()[:, None].contiguous(), {"phase": spec.angle(), "settings": settings,
                                              "length": int(waves.shape[1])}


class STFTView(nn.Module):
    """``view(M) = model(istft(M · e^{iφ}))``: a waveform model seen on STFT magnitudes.

    ``phase``: each clip's STFT phase ``(P, T, F)`` (or ``(T, F)``); an input of ``N`` rows
    takes row ``n``'s phase from clip ``n`` when ``N == P`` and the one clip's phase for every
    row when ``P == 1`` (the explainers evaluate one clip's perturbed copies in batches, so a
    single-clip view serves any batch). ``subset(rows)`` (the attack loop's ``Subsettable``)
    keeps the phases of batch ``rows``. Negative "magnitudes" (a perturbation may push ``M``
    below 0) are used as given: ``-m · e^{iφ}`` is the bin with its phase turned by π.
    """

    phase: torch.Tensor  # a buffer (moves with the module)

    def __init__(self, model: nn.Module, phase: torch.Tensor, settings: STFTSettings,
                 length: int) -> None:
        super().__init__()
        ph = torch.as_tensor(phase)
        if ph.ndim == 2:
            ph = ph[None]
        if ph.ndim != 3 or ph.shape[-1] != settings.n_bins or ph.is_complex():
            raise ConfigError(f"phase must be a real (P, T, {settings.n_bins}) tensor for "
                              f"n_fft {settings.n_fft}, got {tuple(ph.shape)} {ph.dtype}")
        if ph.shape[1] != settings.n_frames(length):
            raise ConfigError(f"phase has {ph.shape[1]} frames but {length} samples give "
                              f"{settings.n_frames(length)} at hop {settings.hop}")
        self.model = model
        self.settings = settings
        self.length = int(length)
        self.register_buffer("phase", ph.detach().float(), persistent=False)
        # a new module starts in training mode; take the wrapped model's mode instead
        self.train(model.training)

    @property
    def n_clips(self) -> int:
        """``P``: how many clips' phases the view holds."""
        return int(self.phase.shape[0])

    def waves(self, m: torch.Tensor) -> torch.Tensor:
        """``(N, 1, T, F)`` magnitudes -> ``(N, length)`` audio (each row with its clip's phase)."""
        if m.ndim != 4 or m.shape[1] != 1 or tuple(m.shape[2:]) != tuple(self.phase.shape[1:]):
            raise ConfigError(f"STFTView expects (N, 1, {self.phase.shape[1]}, "
                              f"{self.phase.shape[2]}) magnitudes, got {tuple(m.shape)}")
        n, p = m.shape[0], self.n_clips
        if p not in (1, n):
            raise ConfigError(f"STFTView holds the phases of {p} clips but got {n} rows; "
                              f"use view.subset(rows) (or a one-clip view) for other batches")
        phase = self.phase.to(device=m.device, dtype=m.dtype)
        mag = m[:, 0]
        spec = torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))
        return istft(spec, self.settings, self.length)

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        """The model's output on the audio these magnitudes (and the held phases) give."""
        out: torch.Tensor = self.model(self.waves(m))
        return out

    def subset(self, index: torch.Tensor) -> STFTView:
        """The same model with the phases of batch rows ``index`` (a one-clip view is kept)."""
        if self.n_clips == 1:
            return self
        idx = torch.as_tensor(index, dtype=torch.int64).reshape(-1).to(self.phase.device)
        return STFTView(self.model, self.phase[idx], self.settings, self.length)


class InputView(nn.Module):
    """``view(x) = model(x[:, 0, :, 0])``: a waveform model's samples ``(B, S)`` seen as a
    ``(B, 1, S, 1)`` "spectrogram" of ``S`` frames and one bin, so every explainer attributes to
    the samples themselves (:func:`to_input` / :func:`from_input` convert)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Model output on the samples ``x (N, 1, S, 1)``."""
        out: torch.Tensor = self.model(from_input(x))
        return out


def to_input(waves: torch.Tensor) -> torch.Tensor:
    """``(B, S)`` audio -> the input view's ``(B, 1, S, 1)``."""
    if not isinstance(waves, torch.Tensor) or waves.ndim != 2:
        raise ConfigError(f"waves must be a (B, samples) tensor, got "
                          f"{getattr(waves, 'shape', type(waves).__name__)}")
    return waves[:, None, :, None]


def from_input(x: torch.Tensor) -> torch.Tensor:
    """The input view's ``(B, 1, S, 1)`` -> ``(B, S)`` audio."""
    if x.ndim != 4 or x.shape[1] != 1 or x.shape[3] != 1:
        raise ConfigError(f"InputView expects (N, 1, samples, 1), got {tuple(x.shape)}")
    return x[:, 0, :, 0]


def input_segments(n_samples: int, n_time: int) -> torch.Tensor:
    """``(S, 1)`` map of ``n_time`` equal time blocks of the samples (ids ``0..n_time-1``,
    sample ``s`` in block ``s * n_time // S``): the input view's segments."""
    return grid_segments((int(n_samples), 1), n_freq=1, n_time=n_time)


@dataclass
class STFTEvaluation:
    """A waveform model's explainer evaluation in the STFT view (the arguments of
    ``robustmer.explain.evaluation.evaluate_explainers``): ``items`` ``{"id", "x": M (1, T, F),
    "y", "context": {"phase": (T, F)}}``, the log-band ``segments`` ``(T, F)``, ``model_for``
    (an :class:`STFTView` holding a batch's phases), the STFT ``settings`` and the band edges."""

    items: Iterator[dict[str, Any]]
    segments: torch.Tensor
    model_for: Callable[[list[dict[str, np.ndarray]]], nn.Module]
    settings: STFTSettings
    band_edges_hz: list[float]


def stft_evaluation_inputs(model: nn.Module, dataset: Any, n: int, sample_rate: int,
                           grid: tuple[int, int], ids: Sequence[str] | None = None,
                           ) -> STFTEvaluation:
    """The first ``n`` clips of ``dataset`` (items ``{"x": (samples,) audio, "targets"}``, e.g.
    the model's fixed excerpts; ids from ``ids`` or ``dataset.ids``) in the STFT view at
    ``sample_rate``, with a ``grid`` = (log-spaced bands, time blocks) segment map. Items are
    computed lazily, one clip at a time."""
    clip_ids = list(dataset.ids if ids is None else ids)
    length = int(torch.as_tensor(dataset[0]["x"]).shape[-1])
    settings = STFTSettings.for_rate(sample_rate)
    segments = log_band_segments((settings.n_frames(length), settings.n_bins), *grid,
                                 sample_rate=sample_rate, n_fft=settings.n_fft)

    def items() -> Iterator[dict[str, Any]]:
        for i in range(n):
            item = dataset[i]
            mag, kw = stft_input(torch.as_tensor(item["x"], dtype=torch.float32)[None],
                                 sample_rate)
            yield {"id": str(clip_ids[i]), "x": mag[0], "y": item.get("targets"),
                   "context": {"phase": kw["phase"][0].numpy()}}

    def model_for(contexts: list[dict[str, np.ndarray]]) -> nn.Module:
        phase = torch.as_tensor(np.stack([c["phase"] for c in contexts]))
        return STFTView(model, phase, settings, length)

    return STFTEvaluation(items=items(), segments=segments, model_for=model_for,
                          settings=settings,
                          band_edges_hz=[round(float(e), 3)
                                         for e in log_band_edges(grid[0], sample_rate)])
