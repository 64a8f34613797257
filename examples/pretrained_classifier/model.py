"""A pretrained, frozen classifier for robustmer (examples/pretrained_classifier.yaml).

Stands in for a checkpoint you downloaded: ``build`` makes the network and loads its trained
weights from ``weights.safetensors`` beside this file (written once by ``train_weights.py``, the
script that trained it; safetensors holds plain arrays, nothing is unpickled). robustmer
evaluates, attacks, explains and reports it without training (``train: false``) and records the
weights' SHA-256. Input: mono audio ``(batch, samples)`` at 16 kHz, 4 s; output: two logits in
the order of the data's classes, ``bright``, ``dark`` (robustmer sorts class names).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

WEIGHTS = Path(__file__).with_name("weights.safetensors")
CLASSES = ("bright", "dark")


class BrightnessNet(nn.Module):
    """A learnable filterbank, log compression, two convolution blocks, a linear decision."""

    def __init__(self, n_outputs: int = 2, channels: int = 8) -> None:
        super().__init__()
        self.filterbank = nn.Conv1d(1, channels, 128, stride=32, padding=64)
        self.conv1 = nn.Conv1d(channels, channels, 5, padding=2)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv1d(channels, channels, 5, padding=2)
        self.act2 = nn.ReLU()
        self.decide = nn.Linear(channels, n_outputs)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, samples)`` -> ``(B, 2)`` logits."""
        h = torch.log1p(10.0 * self.filterbank(wave[:, None]).abs())
        h = self.act2(self.conv2(self.act1(self.conv1(h))))
        return self.decide(h.mean(dim=-1))


def build(n_outputs: int = 2) -> nn.Module:
    """The factory the study YAML names: the network with its trained weights, frozen."""
    if n_outputs != len(CLASSES):
        raise ValueError(f"this classifier tells {len(CLASSES)} classes {CLASSES}; the data "
                         f"has {n_outputs}")
    model = BrightnessNet(n_outputs)
    if not WEIGHTS.is_file():
        raise FileNotFoundError(f"{WEIGHTS} is missing: run examples/pretrained_classifier/"
                                f"train_weights.py once")
    model.load_state_dict(load_file(str(WEIGHTS)))
    for p in model.parameters():
        p.requires_grad_(False)  # frozen: robustmer never trains it
    return model.eval()
