"""The front-end settings of the reference study, named once, with derived quantities."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from robustmer.audio.load import SAMPLE_RATE
from robustmer.errors import ConfigError
from robustmer.features.filterbank import log_filterbank
from robustmer.io import stable_hash

DOMAINS: tuple[str, ...] = ("spectrogram", "waveform")
"""The two representations an input comes in: the front end's log-filtered spectrogram, or the
audio samples it is computed from. They are the domains an attack perturbs (``attacks``, the
study's ``attack.domain``, the results store's ``domain`` column) and a model type's input kinds
(``models.types.INPUT_KINDS``): named here once."""


@dataclass(frozen=True)
class FrontEndConfig:
    """madmom's LogarithmicFilteredSpectrogram as the study ran it (frame 2048, fps 31.3, ...).

    ``hop_size`` is the float ``sample_rate / fps`` (704.47...): madmom ignores the integer hop
    the study passed and frames with this float hop (FACTS.md §2).
    """

    sample_rate: int = SAMPLE_RATE
    frame_size: int = 2048
    fps: float = 31.3
    bands_per_octave: int = 24
    fmin: float = 20.0
    fmax: float = 16000.0
    fref: float = 440.0

    def __post_init__(self) -> None:
        # Coerce types so equal settings always hash to the same key (20 vs 20.0).
        for name, kind in (("sample_rate", int), ("frame_size", int), ("fps", float),
                           ("bands_per_octave", int), ("fmin", float), ("fmax", float),
                           ("fref", float)):
            value = getattr(self, name)
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and (
                math.isfinite(value) and float(value) > 0
                and (kind is float or float(value).is_integer()))
            if not ok:
                what = "a positive integer" if kind is int else "a positive number"
                raise ConfigError(f"FrontEndConfig.{name}: expected {what}, got {value!r}")
            object.__setattr__(self, name, kind(value))
        if self.frame_size % 2:
            raise ConfigError(f"FrontEndConfig.frame_size: expected an even size, "
                              f"got {self.frame_size}")
        if self.fmin >= self.fmax:
            raise ConfigError(f"FrontEndConfig.fmin/fmax: expected fmin < fmax, "
                              f"got {self.fmin} >= {self.fmax}")

    @property
    def hop_size(self) -> float:
        """Samples between frame starts, a float (frame i starts at ``int(i * hop_size)``)."""
        return self.sample_rate / float(self.fps)

    @property
    def num_fft_bins(self) -> int:
        """FFT bins kept per frame: DC .. Nyquist - 1."""
        return self.frame_size // 2

    def num_frames(self, n_samples: int) -> int:
        """madmom's frame count for ``n_samples`` samples: ``ceil(n_samples / hop_size)``."""
        return math.ceil(n_samples / self.hop_size)

    def frame_starts(self, n_samples: int) -> np.ndarray:
        """int64 first sample of every frame: ``int(i * hop_size)`` (truncated in float64)."""
        return (np.arange(self.num_frames(n_samples), dtype=np.float64)
                * self.hop_size).astype(np.int64)

    def filterbank(self) -> np.ndarray:
        """The (num_fft_bins, bands) float32 logarithmic filterbank, (1024, 149) by default."""
        return self.filterbank_and_bins()[0]

    def filterbank_and_bins(self) -> tuple[np.ndarray, np.ndarray]:
        """The filterbank and the unique FFT bins its triangles are built on."""
        return log_filterbank(self.frame_size, self.sample_rate, self.bands_per_octave,
                              self.fmin, self.fmax, self.fref)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the settings (JSON/YAML-able)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrontEndConfig:
        """Rebuild from :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"FrontEndConfig: unknown keys {sorted(unknown)}")
        return cls(**d)

    def key(self) -> str:
        """Short stable hash of the settings, used to key feature caches."""
        return stable_hash(self.to_dict())
