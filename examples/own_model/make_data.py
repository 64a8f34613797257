"""Writes the example's dataset in a user's own layout: 40 audio clips and a manifest with two
targets on a 1-9 scale (examples/own_model.yaml names this as ``data.make``; robustmer calls
``make(folder)`` on the study's first run).

The audio comes from robustmer's concept synthesiser (``robustmer.data.synth.render_clip``), the
ratings from its documented emotion map: arousal is the synthesiser's energy rating and valence
its valence rating, with rating noise. Any folder of audio files with such a CSV works the same
way: see docs/own-model.md.
"""

from __future__ import annotations

import csv
from pathlib import Path

import soundfile as sf

from robustmer import EMOTIONS
from robustmer.data.synth import annotate, draw_concepts, render_clip

CLIPS = 40
SECONDS = 10.5
SPLIT = ["train"] * 28 + ["val"] * 6 + ["test"] * 6


def make(folder: str | Path, seed: int = 7) -> Path:
    """Write ``folder/audio/clip_NN.wav``, ``folder/clips.csv`` (``file, arousal, valence,
    split``) and ``folder/dataset.yaml``; return the dataset description's path."""
    root = Path(folder)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    concepts = draw_concepts(CLIPS, seed=seed)
    ratings = annotate(concepts, seed=seed).emotion_ratings
    rows = []
    for i in range(CLIPS):
        clip = render_clip(concepts[i], duration=SECONDS, seed=(seed, i))
        name = f"audio/clip_{i:02d}.wav"
        sf.write(root / name, clip.audio, clip.sample_rate, subtype="PCM_16")
        rows.append({"file": name,
                     "arousal": f"{ratings[i, EMOTIONS.index('energy')]:.2f}",
                     "valence": f"{ratings[i, EMOTIONS.index('valence')]:.2f}",
                     "split": SPLIT[i]})
    with open(root / "clips.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (root / "dataset.yaml").write_text(
        "manifest: clips.csv       # one row per clip; file is relative to this folder\n"
        "targets: [arousal, valence]\n"
        "scale: [1, 9]             # the ratings' scale: checked, recorded, shown\n"
        "split: split              # train / val / test per clip\n", encoding="utf-8")
    return root / "dataset.yaml"
