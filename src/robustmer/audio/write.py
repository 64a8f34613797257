"""Audio output: a mono float WAV, written atomically (``robustmer.io.atomic_path``).

Attacks (clean and adversarial clips) and Listen to Interpret (resynthesised interpretations)
both write their audio with :func:`write_wav`, so neither needs the other's package for it.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from scipy.io import wavfile

from robustmer.audio.load import SAMPLE_RATE
from robustmer.errors import AudioError
from robustmer.io import atomic_path


def write_wav(path: str | os.PathLike[str], wave: Any, sample_rate: int = SAMPLE_RATE) -> None:
    """Write a mono float WAV atomically (32-bit float, so small perturbations survive; the
    same samples always give the same bytes).

    ``wave``: a 1-D numpy array or torch tensor (detached and moved to the CPU here, so this
    module does not import torch).

    Examples:
        >>> import tempfile, numpy as np, soundfile as sf
        >>> path = tempfile.mkdtemp() + "/tone.wav"
        >>> write_wav(path, np.sin(np.linspace(0, 100, 22050)) * 0.5)
        >>> info = sf.info(path)
        >>> info.samplerate, info.frames, info.subtype
        (22050, 22050, 'FLOAT')
    """
    if hasattr(wave, "detach"):  # a torch tensor
        wave = wave.detach().cpu()
    a = np.asarray(wave, dtype=np.float32)
    if a.ndim != 1:
        raise AudioError(f"write_wav: expected a 1-D waveform for {path}, got shape {a.shape}")
    with atomic_path(path, suffix=".wav") as tmp:
        # scipy's writer, not libsndfile's: libsndfile adds a PEAK chunk with the time of
        # writing to float WAVs, so equal samples would give different files
        wavfile.write(tmp, int(sample_rate), a)
