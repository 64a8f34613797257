"""The Soundtracks Set 1 reader (Eerola & Vuoskoski, 2011) and ``load_dataset``.

Layout (real and synthetic alike): ``ROOT/Set1/NNN.<mp3|wav|flac|ogg>`` and
``ROOT/mean_ratings_set1.csv`` (UTF-8, possibly with a byte-order mark; header
``number,valence,energy,tension,anger,fear,happy,sad,tender,TARGET``). ``number`` is the
zero-padded file stem; ratings are means on a 1-9 scale and are divided by 10, as in the reference
study; ``TARGET`` is the intended emotion, kept as a class label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from robustmer import CONCEPTS, EMOTIONS
from robustmer.data.midlevel import MidLevel
from robustmer.data.table import (
    ClipTable,
    Problem,
    audio_files,
    csv_line,
    normalise_clip_id,
    parse_ratings,
    raise_problems,
    read_csv_table,
)
from robustmer.errors import DatasetError

RATINGS_FILE = "mean_ratings_set1.csv"
AUDIO_DIR = "Set1"
LABEL_COLUMN = "TARGET"
ID_COLUMN = "number"
EMOTION_SCALE = (1.0, 9.0)


@dataclass
class SoundtracksScan:
    """What a scan of a Soundtracks folder found, including every problem (nothing raised)."""

    root: Path
    ids: list[str] = field(default_factory=list)
    ratings: np.ndarray = field(default_factory=lambda: np.zeros((0, len(EMOTIONS))))
    labels: list[str | None] = field(default_factory=list)
    audio_paths: dict[str, Path] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def scan_soundtracks(root: str | Path) -> SoundtracksScan:
    """Read ratings and list audio files of a Soundtracks folder, collecting every problem."""
    root = Path(root)
    scan = SoundtracksScan(root=root)
    problems = scan.problems
    csv_path = root / RATINGS_FILE
    audio_dir = root / AUDIO_DIR
    if not root.is_dir():
        problems.append(Problem(root, None, "dataset folder not found", "missing_file"))
        return scan

    audio: dict[str, Path] = {}
    if not audio_dir.is_dir():
        problems.append(Problem(audio_dir, None, "audio folder not found (expected "
                                "ROOT/Set1/NNN.mp3 ...)", "missing_file"))
    else:
        for path in audio_files(audio_dir):
            clip_id = normalise_clip_id(path.stem)
            if clip_id in audio:
                problems.append(Problem(path, None, f"two audio files for clip {clip_id!r}: "
                                        f"{audio[clip_id].name} and {path.name}", "duplicate_id"))
                continue
            audio[clip_id] = path

    frame = read_csv_table(csv_path, sep=",", required=(ID_COLUMN, *EMOTIONS), problems=problems)
    if frame is None:
        return scan

    ratings = parse_ratings(frame, EMOTIONS, csv_path, *EMOTION_SCALE, problems=problems)
    label_col = next((c for c in frame.columns if c.upper() == LABEL_COLUMN), None)
    first_line: dict[str, int] = {}
    keep: list[int] = []
    for i, raw in enumerate(frame[ID_COLUMN].tolist()):
        line = csv_line(i)
        clip_id = normalise_clip_id(raw)
        if not clip_id:
            problems.append(Problem(csv_path, line, f"empty {ID_COLUMN!r}", "missing_id"))
            continue
        if clip_id in first_line:
            problems.append(Problem(csv_path, line, f"duplicate clip id {clip_id!r} (first on "
                                    f"line {first_line[clip_id]})", "duplicate_id"))
            continue
        first_line[clip_id] = line
        if clip_id not in audio and audio_dir.is_dir():
            problems.append(Problem(csv_path, line, f"no audio file for clip {clip_id!r} in "
                                    f"{audio_dir} (expected {clip_id}.mp3/.wav/.flac/.ogg)",
                                    "missing_audio"))
        keep.append(i)

    for clip_id, path in audio.items():
        if clip_id not in first_line:
            problems.append(Problem(path, None, f"audio file has no rating row in {csv_path}",
                                    "unrated_audio"))

    scan.ids = [normalise_clip_id(frame[ID_COLUMN].iloc[i]) for i in keep]
    scan.ratings = ratings[keep]
    if label_col is None:
        scan.labels = [None] * len(keep)
    else:
        raw_labels = [str(frame[label_col].iloc[i]).strip() for i in keep]
        scan.labels = [label or None for label in raw_labels]
    scan.audio_paths = {i: audio[i] for i in scan.ids if i in audio}
    return scan


class Soundtracks:
    """A validated Soundtracks folder: ids, ratings (/10), labels, audio paths.

    Raises ``DatasetError`` naming file and line for every malformed input (see
    ``scan_soundtracks`` for the checks).
    """

    def __init__(self, root: str | Path) -> None:
        scan = scan_soundtracks(root)
        raise_problems(scan.problems, f"Soundtracks dataset at {scan.root}")
        if not scan.ids:
            raise DatasetError(f"{scan.root / RATINGS_FILE}: no clips (the file has no data rows)")
        self.root = scan.root
        self.ids: list[str] = scan.ids
        self.emotions = pd.DataFrame(scan.ratings / 10.0, index=pd.Index(self.ids, name="id"),
                                     columns=list(EMOTIONS))
        self.labels = pd.Series(scan.labels, index=pd.Index(self.ids, name="id"),
                                name="label", dtype=object)
        self.audio_paths: dict[str, Path] = scan.audio_paths

    def __len__(self) -> int:
        return len(self.ids)


def default_midlevel_root(root: str | Path) -> Path | None:
    """``ROOT/midlevel`` when it exists, else None."""
    candidate = Path(root) / "midlevel"
    return candidate if candidate.is_dir() else None


def load_dataset(root: str | Path, midlevel_root: str | Path | None = None) -> ClipTable:
    """Load a Soundtracks folder and join the mid-level concept ratings of its clips, if any.

    ``midlevel_root`` defaults to ``ROOT/midlevel`` when that folder exists; clips without concept
    annotations get NaN concepts.
    """
    sound = Soundtracks(root)
    ml_root = Path(midlevel_root) if midlevel_root is not None else default_midlevel_root(root)
    index = pd.Index(sound.ids, name="id")
    concepts = pd.DataFrame(np.nan, index=index, columns=list(CONCEPTS))
    if ml_root is not None:
        annotated = MidLevel(ml_root).soundtracks_concepts()
        common = [i for i in sound.ids if i in annotated.index]
        concepts.loc[common, list(CONCEPTS)] = annotated.loc[common, list(CONCEPTS)].to_numpy()
    return ClipTable(root=sound.root, ids=list(sound.ids), emotions=sound.emotions,
                     concepts=concepts, labels=sound.labels, audio_paths=dict(sound.audio_paths),
                     midlevel_root=ml_root)
