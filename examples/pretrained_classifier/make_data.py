"""Writes the pretrained-classifier example's dataset in a user's own layout: 40 audio clips and
a manifest with a class label (``bright`` / ``dark``) and a split (examples/
pretrained_classifier.yaml names this as ``data.make``).

The audio comes from robustmer's concept synthesiser (``robustmer.data.synth.render_clip``); a
clip is ``bright`` when its articulation concept (which opens the lead's spectral roll-off and
sharpens its attacks) is above 0.5, else ``dark``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

from robustmer import CONCEPTS
from robustmer.data.synth import draw_concepts, render_clip

CLIPS = 40
SECONDS = 10.5
SPLIT = ["train"] * 28 + ["val"] * 6 + ["test"] * 6


def labels(concepts: np.ndarray) -> list[str]:
    """``bright`` where the articulation concept is above 0.5, else ``dark``."""
    a = np.asarray(concepts)[:, CONCEPTS.index("articulation")]
    return ["bright" if v > 0.5 else "dark" for v in a]


def make(folder: str | Path, seed: int = 11, clips: int = CLIPS,
         split: list[str] | None = None) -> Path:
    """Write ``folder/audio/clip_NNN.wav`` and ``folder/clips.csv`` (``file, label, split``);
    return the manifest's path."""
    root = Path(folder)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    concepts = draw_concepts(clips, seed=seed)
    names = labels(concepts)
    parts = split or SPLIT
    rows = []
    for i in range(clips):
        clip = render_clip(concepts[i], duration=SECONDS, seed=(seed, i))
        name = f"audio/clip_{i:03d}.wav"
        sf.write(root / name, clip.audio, clip.sample_rate, subtype="PCM_16")
        rows.append({"file": name, "label": names[i], "split": parts[i % len(parts)]})
    with open(root / "clips.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root / "clips.csv"
