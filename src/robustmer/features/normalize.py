"""Dataset standardisation (one scalar mean/std, as the reference) and the 313-frame excerpt."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from robustmer.errors import ConfigError, DatasetError

EXCERPT_FRAMES = 313
"""Frames per model input (about 10 s at 31.3 fps), the reference study's excerpt length."""

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class Standardizer:
    """``(x - mean) / std`` with one scalar mean and std over all frames and bins of a dataset.

    Fit it on the training split only. Works on numpy arrays and torch tensors alike; on tensors
    it is differentiable (plain arithmetic), so attacks can run through it.
    """

    mean: float
    std: float

    def __post_init__(self) -> None:
        mean, std = float(self.mean), float(self.std)
        if not math.isfinite(mean):
            raise ConfigError(f"Standardizer.mean: expected a finite number, got {self.mean!r}")
        if not (math.isfinite(std) and std > 0):
            raise ConfigError(f"Standardizer.std: expected a positive finite number, "
                              f"got {self.std!r}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def fit(cls, specs: Iterable[np.ndarray]) -> Standardizer:
        """Mean and (population) std over every value of ``specs``, streamed in float64.

        Each spectrogram's own mean and sum of squared deviations are merged with Chan et al.'s
        pairwise update, which stays accurate where a running sum of squares would cancel.
        """
        count, mean, m2 = 0, 0.0, 0.0
        for i, spec in enumerate(specs):
            a = np.asarray(spec, dtype=np.float64)
            if a.size == 0:
                continue
            if not np.all(np.isfinite(a)):
                raise DatasetError(f"Standardizer.fit: spectrogram #{i} holds NaN/Inf values")
            n_b = a.size
            mean_b = float(a.mean())
            m2_b = float(np.sum((a - mean_b) ** 2))
            total = count + n_b
            delta = mean_b - mean
            mean += delta * n_b / total
            m2 += m2_b + delta * delta * count * n_b / total
            count = total
        if count == 0:
            raise DatasetError("Standardizer.fit: no data (no spectrograms or all empty)")
        std = math.sqrt(m2 / count)
        if std == 0:
            raise DatasetError(f"Standardizer.fit: all {count} values equal {mean}; std is 0")
        return cls(mean, std)

    def transform(self, x: ArrayT) -> ArrayT:
        """Standardise a numpy array or torch tensor (dtype kept)."""
        return (x - self.mean) / self.std

    def inverse(self, x: ArrayT) -> ArrayT:
        """Undo :meth:`transform`."""
        return x * self.std + self.mean

    def to_dict(self) -> dict[str, float]:
        """``{"mean": ..., "std": ...}``."""
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Standardizer:
        """Rebuild from :meth:`to_dict`; missing keys raise :class:`ConfigError`."""
        try:
            return cls(float(d["mean"]), float(d["std"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"Standardizer.from_dict: expected numeric 'mean' and 'std', "
                              f"got {d!r}") from err


def excerpt_indices(n_frames: int, frames: int = EXCERPT_FRAMES,
                    seed: int | None = 0) -> np.ndarray:
    """int64 indices of a ``frames``-long window into a clip of ``n_frames`` frames.

    The start is drawn uniformly from ``[0, n_frames - frames]`` with
    ``np.random.default_rng(seed)``; ``seed=None`` centres the window. A clip shorter than
    ``frames`` is tiled (repeated from its start) to length, as the reference does.
    """
    if int(frames) != frames or frames < 1:
        raise ConfigError(f"excerpt: frames must be a positive integer, got {frames!r}")
    if int(n_frames) != n_frames or n_frames < 1:
        raise DatasetError(f"excerpt: the spectrogram must have at least 1 frame, "
                           f"got n_frames={n_frames!r}")
    n_frames, frames = int(n_frames), int(frames)
    if n_frames < frames:
        return np.arange(frames, dtype=np.int64) % n_frames
    if seed is None:
        start = (n_frames - frames) // 2
    else:
        start = int(np.random.default_rng(seed).integers(0, n_frames - frames + 1))
    return np.arange(start, start + frames, dtype=np.int64)


def excerpt(spec: ArrayT, frames: int = EXCERPT_FRAMES, seed: int | None = 0) -> ArrayT:
    """``spec[..., idx, :]`` with ``idx = excerpt_indices(spec.shape[-2], frames, seed)``."""
    if spec.ndim < 2:
        raise DatasetError(f"excerpt: expected (..., T, bands), got shape {tuple(spec.shape)}")
    idx = excerpt_indices(int(spec.shape[-2]), frames, seed)
    if isinstance(spec, torch.Tensor):
        return spec[..., torch.from_numpy(idx).to(spec.device), :]
    return spec[..., idx, :]
