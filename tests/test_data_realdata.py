"""The loaders and the checker on the real Soundtracks Set 1 in shared/ (360 MP3s)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robustmer import EMOTIONS
from robustmer.data import check_dataset, load_dataset, make_split

pytestmark = pytest.mark.realdata


def test_load_real_soundtracks(shared_dir: Path) -> None:
    root = shared_dir / "data" / "soundtracks"
    table = load_dataset(root)
    assert len(table) == 360 and table.ids[0] == "001" and table.ids[-1] == "360"
    assert len(table.classes) == 12
    assert table.labels.value_counts().tolist() == [30] * 12
    values = table.targets[list(EMOTIONS)].to_numpy()
    assert np.isfinite(values).all()
    assert values.min() >= 0.1 and values.max() <= 0.9
    assert table.concepts.isna().all().all()  # no Mid-level annotations on this machine
    assert all(table.audio_paths[i] == root / "Set1" / f"{i}.mp3" for i in table.ids)
    split = make_split(table.ids, seed=0)
    assert (len(split.train), len(split.val), len(split.test)) == (288, 36, 36)


def test_check_real_soundtracks(shared_dir: Path) -> None:
    """Decodes all 360 MP3s (about 20 s on one core)."""
    assert check_dataset(shared_dir / "data" / "soundtracks", progress=False) == []
