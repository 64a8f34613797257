"""Differentiable front end (madmom-exact log filtered spectrogram), standardisation, excerpts."""

from robustmer.features.config import DOMAINS, FrontEndConfig
from robustmer.features.normalize import EXCERPT_FRAMES, Standardizer, excerpt, excerpt_indices
from robustmer.features.spectrogram import LogFilteredSpectrogram, compute_spectrogram

__all__ = [
    "DOMAINS",
    "EXCERPT_FRAMES",
    "FrontEndConfig",
    "LogFilteredSpectrogram",
    "Standardizer",
    "compute_spectrogram",
    "excerpt",
    "excerpt_indices",
]
