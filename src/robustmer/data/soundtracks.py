"""The Soundtracks Set 1 reader (Eerola & Vuoskoski, 2011) and ``load_dataset``.

Layout (real and synthetic alike): ``ROOT/Set1/NNN.<mp3|wav|flac|ogg>`` and
``ROOT/mean_ratings_set1.csv`` (UTF-8, possibly with a byte-order mark; header
``number,valence,energy,tension,anger,fear,happy,sad,tender,TARGET``). ``number`` is the
zero-padded file stem; ratings are means on a 1-9 scale and are divided by 10, as in the reference
study; ``TARGET`` is the intended emotion, kept as a class label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from robustmer import CONCEPTS, EMOTIONS
from robustmer.data.manifest import (
    ManifestScan,
    ManifestSpec,
    is_manifest,
    load_manifest,
    manifest_spec,
    scan_manifest,
)
from robustmer.data.midlevel import MidLevel
from robustmer.data.table import ClipTable, Problem
from robustmer.errors import ConfigError, DatasetError

RATINGS_FILE = "mean_ratings_set1.csv"
AUDIO_DIR = "Set1"
LABEL_COLUMN = "TARGET"
ID_COLUMN = "number"
EMOTION_SCALE = (1.0, 9.0)
RATING_DIVISOR = 10.0
"""The reference study divides the 1-9 ratings by 10."""


def soundtracks_spec(root: str | Path) -> ManifestSpec:
    """Soundtracks Set 1 as an instance of the one manifest reader: ids in ``number``, audio
    found by id in ``Set1/``, the 8 emotions (1-9) divided by 10, ``TARGET`` an optional label."""
    root = Path(root)
    return ManifestSpec(csv=root / RATINGS_FILE, audio_dir=root / AUDIO_DIR, file_column=None,
                        id_column=ID_COLUMN, targets=EMOTIONS, label=LABEL_COLUMN,
                        label_required=False, scale=EMOTION_SCALE, divisor=RATING_DIVISOR,
                        source="soundtracks", soundtracks_ids=True)


def is_soundtracks(root: str | Path) -> bool:
    """Whether ``root`` is a folder in the Soundtracks layout (``Set1/`` or the ratings CSV)."""
    p = Path(root)
    return p.is_dir() and ((p / RATINGS_FILE).is_file() or (p / AUDIO_DIR).is_dir())


def scan_soundtracks(root: str | Path) -> ManifestScan:
    """Read ratings and list audio files of a Soundtracks folder, collecting every problem."""
    root = Path(root)
    if not root.is_dir():
        scan = ManifestScan(spec=soundtracks_spec(root))
        scan.problems.append(Problem(root, None, "dataset folder not found", "missing_file"))
        return scan
    return scan_manifest(soundtracks_spec(root))


def default_midlevel_root(root: str | Path) -> Path | None:
    """``ROOT/midlevel`` when it exists, else None."""
    candidate = Path(root) / "midlevel"
    return candidate if candidate.is_dir() else None


def load_dataset(root: str | Path, midlevel_root: str | Path | None = None) -> ClipTable:
    """Load a dataset: a user manifest (a CSV, a ``dataset.yaml`` or a folder holding either;
    see ``robustmer.data.manifest``) or a Soundtracks folder, whose clips get the mid-level
    concept ratings when there are any.

    ``midlevel_root`` defaults to ``ROOT/midlevel`` when that folder exists; clips without
    concept annotations get NaN concepts.
    """
    if is_manifest(root) and not is_soundtracks(root):
        if midlevel_root is not None:
            raise ConfigError(f"--midlevel applies to the Soundtracks layout; {root} is a "
                              "manifest: give concept columns in its dataset.yaml instead")
        return load_manifest(manifest_spec(root))
    table = load_manifest(soundtracks_spec(root)) if Path(root).is_dir() else None
    if table is None:
        raise DatasetError(f"{root}: dataset folder not found (expected a Soundtracks folder "
                           f"with {AUDIO_DIR}/ and {RATINGS_FILE}, or a manifest: a CSV, a "
                           f"dataset.yaml, or a folder holding one)")
    table.root = Path(root)
    ml_root = Path(midlevel_root) if midlevel_root is not None else default_midlevel_root(root)
    concepts = pd.DataFrame(np.nan, index=pd.Index(table.ids, name="id"), columns=list(CONCEPTS))
    if ml_root is not None:
        annotated = MidLevel(ml_root).soundtracks_concepts()
        common = [i for i in table.ids if i in annotated.index]
        concepts.loc[common, list(CONCEPTS)] = annotated.loc[common, list(CONCEPTS)].to_numpy()
    table.concepts = concepts
    table.midlevel_root = ml_root
    return table
