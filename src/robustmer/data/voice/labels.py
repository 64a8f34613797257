"""Labels at the front end's frame rate: which frames a sample span voices, and the labels of a
clip's fixed-length excerpts (:data:`~robustmer.data.voice.parameters.LABEL_RULES`)."""

from __future__ import annotations

import numpy as np

from robustmer.data.voice.parameters import EXCERPT_RULES
from robustmer.errors import ConfigError
from robustmer.features import FrontEndConfig


def frame_centres(n_samples: int, config: FrontEndConfig | None = None) -> np.ndarray:
    """int64 centre sample of every front-end frame: ``int(i * hop) + frame_size // 2``."""
    cfg = config if config is not None else FrontEndConfig()
    return cfg.frame_starts(n_samples) + cfg.frame_size // 2


def span_frames(spans: np.ndarray, n_samples: int,
                config: FrontEndConfig | None = None) -> np.ndarray:
    """``(n, 2)`` int64 ``[start_frame, end_frame)`` of sample spans ``(n, 2)`` ``[s0, s1)``:
    the first frame whose centre is >= ``s0`` and the first whose centre is >= ``s1``."""
    centres = frame_centres(n_samples, config)
    s = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    return np.searchsorted(centres, s, side="left").astype(np.int64)


def frame_labels(spans: np.ndarray, n_samples: int,
                 config: FrontEndConfig | None = None) -> np.ndarray:
    """``(T,)`` bool: frame ``i`` is voiced when its centre lies in a sample span ``[s0, s1)``
    (``T = config.num_frames(n_samples)``, the front end's frame count)."""
    cfg = config if config is not None else FrontEndConfig()
    labels = np.zeros(cfg.num_frames(n_samples), dtype=bool)
    for a, b in span_frames(spans, n_samples, cfg):
        labels[a:b] = True
    return labels


def excerpt_labels(frame_labels: np.ndarray, frames: int = 50, hop: int = 1,
                   rule: str = "center") -> tuple[np.ndarray, np.ndarray]:
    """Start frames and labels of the ``frames``-long excerpts of a clip, every ``hop`` frames.

    Returns ``(starts, labels)``, int64 arrays of equal length: excerpt ``k`` is
    ``spec[starts[k]:starts[k] + frames]``. ``rule="center"`` (Schlüter's detector) labels it with
    its central frame ``start + frames // 2`` (for an even ``frames`` the later of the two
    middle frames); ``"majority"`` with the majority of its frames (a tie counts as voiced). A
    clip shorter than ``frames`` has no excerpts.
    """
    lab = np.asarray(frame_labels)
    if lab.ndim != 1:
        raise ConfigError(f"frame_labels: expected a 1-D array, got shape {lab.shape}")
    for name, val in (("frames", frames), ("hop", hop)):
        if isinstance(val, bool) or not isinstance(val, int | np.integer) or val < 1:
            raise ConfigError(f"{name}: expected a positive integer, got {val!r}")
    if rule not in EXCERPT_RULES:
        raise ConfigError(f"rule: expected one of {list(EXCERPT_RULES)}, got {rule!r}")
    lab = lab.astype(bool)
    starts = np.arange(0, max(lab.size - frames + 1, 0), hop, dtype=np.int64)
    if rule == "center":
        out = lab[starts + frames // 2]
    else:
        counts = np.concatenate([[0], np.cumsum(lab, dtype=np.int64)])
        out = 2 * (counts[starts + frames] - counts[starts]) >= frames
    return starts, out.astype(np.int64)
