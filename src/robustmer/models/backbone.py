"""The VGG-style convolutional backbone of Chowdhury et al. (ISMIR 2019), with a width multiplier.

Input: a normalised log-filtered spectrogram ``(B, 1, T, F)`` (the study: ``T=313, F=149``); any
``T, F`` large enough for two 2x max-pools works, since the network ends in an adaptive average
pool. Output: ``(B, C)`` features, ``C = scaled(256, width)``.
"""

from __future__ import annotations

import torch
from torch import nn

from robustmer.errors import ConfigError

DROPOUT = 0.3
"""Dropout2d probability after each of the two max-pools (the paper's value; the default)."""


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded to an int, at least 1 (``width=1.0`` is the paper)."""
    return max(1, round(channels * width))


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    # No conv bias: every conv is followed by BatchNorm, whose shift makes a bias redundant.
    return [
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class Backbone(nn.Module):
    """conv5x5/2 -> 64, conv3x3 -> 64, pool+drop, conv3x3 -> 128, 128, pool+drop,
    conv3x3 -> 256, 256, 384, 512, conv1x1 -> 256, adaptive average pool; BN + ReLU after every
    conv. Channel counts are multiplied by ``width``; ``dropout`` is the Dropout2d probability
    (a thin network learns far faster without it: docs/demo.md)."""

    def __init__(self, width: float = 1.0, dropout: float = DROPOUT) -> None:
        super().__init__()
        if not width > 0:
            raise ConfigError(f"width must be > 0, found {width}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), found {dropout}")
        c = [scaled(n, width) for n in (64, 128, 256, 384, 512)]
        layers: list[nn.Module] = []
        layers += _conv(1, c[0], 5, stride=2)
        layers += _conv(c[0], c[0], 3)
        layers += [nn.MaxPool2d(2), nn.Dropout2d(dropout)]
        layers += _conv(c[0], c[1], 3)
        layers += _conv(c[1], c[1], 3)
        layers += [nn.MaxPool2d(2), nn.Dropout2d(dropout)]
        layers += _conv(c[1], c[2], 3)
        layers += _conv(c[2], c[2], 3)
        layers += _conv(c[2], c[3], 3)
        layers += _conv(c[3], c[4], 3)
        layers += _conv(c[4], c[2], 1)
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.out_features = c[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, T, F)`` spectrogram -> ``(B, out_features)``."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected input of shape (B, 1, T, F), got {tuple(x.shape)}")
        out: torch.Tensor = self.features(x)
        return out


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal (fan_in, ReLU) conv and linear weights, zero linear biases, BN (1, 0).

    Apply with ``model.apply(init_weights)``; the RNG is torch's global one, so a seed fixes it.
    """
    if isinstance(module, nn.Conv2d | nn.Linear):
        nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
