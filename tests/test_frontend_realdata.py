"""Featurise every real Soundtracks Set 1 clip: load_audio + LogFilteredSpectrogram."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from robustmer.audio import SAMPLE_RATE, load_audio
from robustmer.features import EXCERPT_FRAMES, LogFilteredSpectrogram


@pytest.mark.realdata
@pytest.mark.slow
def test_all_real_clips_featurise(shared_dir: Path) -> None:
    files = sorted((shared_dir / "data" / "soundtracks" / "Set1").glob("*.mp3"))
    assert len(files) == 360
    module = LogFilteredSpectrogram().eval()
    t_load = t_spec = 0.0
    lengths = []
    for path in files:
        t0 = time.perf_counter()
        wave = load_audio(path)
        t1 = time.perf_counter()
        with torch.no_grad():
            spec = module(torch.from_numpy(wave))
        t_spec += time.perf_counter() - t1
        t_load += t1 - t0
        assert spec.shape == (module.num_frames(len(wave)), 149), path.name
        assert spec.shape[0] >= EXCERPT_FRAMES, path.name
        assert torch.isfinite(spec).all() and (spec >= 0).all(), path.name
        assert np.max(np.abs(wave)) <= 1.0
        lengths.append(len(wave) / SAMPLE_RATE)
    # the README's description of the set: 10-37 s, mean 17.4 s
    assert min(lengths) >= 9.5 and max(lengths) <= 38 and abs(np.mean(lengths) - 17.4) < 0.5
    n = len(files)
    print(f"\n{n} clips: load_audio {1e3 * t_load / n:.1f} ms/clip, spectrogram "
          f"{1e3 * t_spec / n:.1f} ms/clip, total {t_load + t_spec:.1f} s")
