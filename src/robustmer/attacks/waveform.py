"""The waveform domain: audio samples -> LogFilteredSpectrogram -> Standardizer -> excerpt window
-> model, as one differentiable ``nn.Module``; zero-padded batches with length masks.

``write_wav`` lives in :mod:`robustmer.audio` and is re-exported here for callers that import it
from the attacks (explain/l2i does, until it imports ``robustmer.audio``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from robustmer.audio import write_wav
from robustmer.errors import AudioError, ConfigError
from robustmer.features import LogFilteredSpectrogram, Standardizer

__all__ = ["AUDIO_BOX", "WaveformModel", "pad_batch", "write_wav"]

AUDIO_BOX: tuple[float, float] = (-1.0, 1.0)
"""The range ``x + δ`` stays in for audio (float WAV full scale)."""


class WaveformModel(nn.Module):
    """``model(excerpt(standardize(frontend(wave))))``: attacks on audio samples.

    ``frame_index``: the excerpt's frame indices, ``(313,)`` shared or ``(B, 313)`` per sample
    (e.g. ``ExcerptDataset.excerpt_index(id)``). Frames of a zero-padded clip that lie inside the
    clip are identical to those of the unpadded clip (madmom pads past the end with zeros), so a
    padded batch gives each clip's own spectrogram. ``subset(rows)`` keeps per-sample windows
    aligned when the attack loop forwards only the samples still running.
    """

    frame_index: torch.Tensor

    def __init__(self, model: nn.Module, frontend: LogFilteredSpectrogram,
                 standardizer: Standardizer, frame_index: torch.Tensor | np.ndarray) -> None:
        super().__init__()
        self.model = model
        self.frontend = frontend
        self.standardizer = standardizer
        idx = torch.as_tensor(np.asarray(frame_index), dtype=torch.int64)
        if idx.ndim not in (1, 2) or idx.shape[-1] < 1 or bool((idx < 0).any()):
            raise ConfigError(f"frame_index must be non-negative (T,) or (B, T) indices, got "
                              f"shape {tuple(idx.shape)}")
        self.register_buffer("frame_index", idx, persistent=False)
        # A new nn.Module starts in training mode; take the wrapped model's mode instead, or an
        # attack that restores "the" mode afterwards would switch the model to training mode.
        self.train(model.training)

    def spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, S)`` waveform -> ``(B, 1, T_excerpt, bands)`` standardised excerpt."""
        if wave.ndim != 2:
            raise ConfigError(f"WaveformModel expects (B, S) waveforms, got {tuple(wave.shape)}")
        spec = self.standardizer.transform(self.frontend(wave))  # (B, T, F)
        idx = self.frame_index.to(spec.device)
        n_frames = spec.shape[1]
        if int(idx.max()) >= n_frames:
            raise ConfigError(f"frame_index reaches frame {int(idx.max())} but the waveform "
                              f"gives {n_frames} frames")
        if idx.ndim == 1:
            out = spec[:, idx, :]
        else:
            if idx.shape[0] != spec.shape[0]:
                raise ConfigError(f"frame_index has {idx.shape[0]} rows for a batch of "
                                  f"{spec.shape[0]}")
            out = torch.gather(spec, 1, idx[:, :, None].expand(-1, -1, spec.shape[2]))
        excerpt: torch.Tensor = out[:, None].to(wave.dtype if wave.is_floating_point()
                                                else out.dtype)
        return excerpt

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, S)`` waveform -> model output."""
        out: torch.Tensor = self.model(self.spectrogram(wave))
        return out

    def subset(self, index: torch.Tensor) -> WaveformModel:
        """The same modules with the windows of batch rows ``index``."""
        if self.frame_index.ndim == 1:
            return self
        return WaveformModel(self.model, self.frontend, self.standardizer,
                             self.frame_index[index.to(self.frame_index.device)])


def pad_batch(waves: Sequence[np.ndarray | torch.Tensor],
              dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad 1-D clips to the longest; return ``(x (B, S), mask (B, S) bool)`` where ``mask``
    is ``True`` inside each clip, so that ``δ`` stays 0 past each clip's end."""
    if not waves:
        raise AudioError("pad_batch: no waveforms")
    arrs = [torch.as_tensor(np.asarray(w)) for w in waves]
    for i, a in enumerate(arrs):
        if a.ndim != 1 or a.numel() == 0:
            raise AudioError(f"pad_batch: waveform #{i} must be non-empty 1-D, got shape "
                             f"{tuple(a.shape)}")
    n = max(a.numel() for a in arrs)
    x = torch.zeros(len(arrs), n, dtype=dtype)
    mask = torch.zeros(len(arrs), n, dtype=torch.bool)
    for i, a in enumerate(arrs):
        x[i, : a.numel()] = a.to(dtype)
        mask[i, : a.numel()] = True
    return x, mask
