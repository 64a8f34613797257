"""A user's own model for robustmer: a small CNN on raw audio (examples/own_model.yaml).

Nothing here imports robustmer. robustmer calls ``build(n_outputs=K, **settings)`` and
trains, attacks, explains and reports the returned ``torch.nn.Module``, whose input is mono
audio ``(batch, samples)`` in [-1, 1] at the sample rate the study YAML declares, and whose
output is ``(batch, K)``: one value per target of the data.
"""

from __future__ import annotations

import torch
from torch import nn


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(c_in, c_out, 5, padding=2), nn.BatchNorm1d(c_out),
                         nn.ReLU(), nn.MaxPool1d(4))


class WaveCNN(nn.Module):
    """A learnable filterbank (64-sample kernels, hop 16) with log compression, three
    convolution blocks, global average pooling and a linear head."""

    def __init__(self, n_outputs: int, channels: int = 16) -> None:
        super().__init__()
        self.filterbank = nn.Conv1d(1, channels, 64, stride=16, padding=32)
        self.block1 = _block(channels, channels)
        self.block2 = _block(channels, 2 * channels)
        self.block3 = _block(2 * channels, 2 * channels)
        self.head = nn.Linear(2 * channels, n_outputs)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, samples)`` -> ``(B, n_outputs)``."""
        h = torch.log1p(10.0 * self.filterbank(wave[:, None]).abs())
        h = self.block3(self.block2(self.block1(h)))
        return self.head(h.mean(dim=-1))


def build(n_outputs: int, channels: int = 16) -> nn.Module:
    """The factory the study YAML names (``factory: examples/own_model/model.py:build``)."""
    return WaveCNN(n_outputs, channels)
