"""Reader of the Mid-level Perceptual Features dataset (Aljanaki & Soleymani, 2018).

Published format: ``metadata.csv`` separated by ``;`` with (at least) the columns ``song id``,
``Source`` and ``ID at file source``; ``annotations.csv`` separated by ``,`` with ``song_id`` and
the 7 concept ratings on a 1-10 scale, divided by 10 here. Soundtracks clips are the rows whose
``Source`` is ``soundtracks``; their ``ID at file source`` names the Soundtracks file (an
extension is stripped and numeric ids are zero-padded to 3 digits, e.g. ``'1.mp3'`` -> ``'001'``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from robustmer import CONCEPTS
from robustmer.data.table import (
    Problem,
    csv_line,
    normalise_clip_id,
    parse_ratings,
    raise_problems,
    read_csv_table,
)

METADATA_FILE = "metadata.csv"
ANNOTATIONS_FILE = "annotations.csv"
META_ID, META_SOURCE, META_SOURCE_ID = "song id", "Source", "ID at file source"
ANNOT_ID = "song_id"
SOUNDTRACKS_SOURCE = "soundtracks"
CONCEPT_SCALE = (1.0, 10.0)


def _song_key(raw: object) -> str:
    """Song ids compare as integers where numeric ('0042' == '42'), else as stripped text."""
    text = str(raw).strip()
    try:
        as_float = float(text)
    except ValueError:
        return text
    return str(int(as_float)) if as_float.is_integer() else text


@dataclass
class MidLevelScan:
    """What a scan of a Mid-level folder found, including every problem (nothing raised)."""

    root: Path
    concepts: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=list(CONCEPTS), dtype=float))
    soundtracks_ids: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def scan_midlevel(root: str | Path) -> MidLevelScan:
    """Read metadata and annotations, collecting every problem (file and line)."""
    root = Path(root)
    scan = MidLevelScan(root=root)
    problems = scan.problems
    if not root.is_dir():
        problems.append(Problem(root, None, "mid-level folder not found", "missing_file"))
        return scan
    meta_path, annot_path = root / METADATA_FILE, root / ANNOTATIONS_FILE
    meta = read_csv_table(meta_path, sep=";", required=(META_ID, META_SOURCE, META_SOURCE_ID),
                          problems=problems)
    annot = read_csv_table(annot_path, sep=",", required=(ANNOT_ID, *CONCEPTS),
                           problems=problems)

    if annot is not None:
        values = parse_ratings(annot, CONCEPTS, annot_path, *CONCEPT_SCALE, problems=problems)
        seen: dict[str, int] = {}
        rows: dict[str, np.ndarray] = {}
        for i, raw in enumerate(annot[ANNOT_ID].tolist()):
            key = _song_key(raw)
            if not key:
                problems.append(Problem(annot_path, csv_line(i), f"empty {ANNOT_ID!r}",
                                        "missing_id"))
            elif key in seen:
                problems.append(Problem(annot_path, csv_line(i), f"duplicate {ANNOT_ID} "
                                        f"{key!r} (first on line {seen[key]})", "duplicate_id"))
            else:
                seen[key] = csv_line(i)
                rows[key] = values[i] / 10.0
        scan.concepts = pd.DataFrame.from_dict(rows, orient="index", columns=list(CONCEPTS))
        scan.concepts.index.name = ANNOT_ID

    if meta is not None:
        first_line: dict[str, int] = {}
        for i, (song, source, source_id) in enumerate(zip(
                meta[META_ID].tolist(), meta[META_SOURCE].tolist(),
                meta[META_SOURCE_ID].tolist(), strict=True)):
            if str(source).strip().lower() != SOUNDTRACKS_SOURCE:
                continue
            clip_id = normalise_clip_id(source_id)
            key = _song_key(song)
            if not clip_id or not key:
                problems.append(Problem(meta_path, csv_line(i), f"soundtracks row without "
                                        f"{META_ID!r} or {META_SOURCE_ID!r}", "missing_id"))
            elif clip_id in first_line:
                problems.append(Problem(meta_path, csv_line(i), f"soundtracks clip {clip_id!r} "
                                        f"listed twice (first on line {first_line[clip_id]})",
                                        "duplicate_id"))
            else:
                first_line[clip_id] = csv_line(i)
                scan.soundtracks_ids[clip_id] = key
    return scan


class MidLevel:
    """A validated Mid-level folder: concept ratings (/10) per song id and the Soundtracks join.

    Raises ``DatasetError`` naming file and line for malformed input.
    """

    def __init__(self, root: str | Path) -> None:
        scan = scan_midlevel(root)
        raise_problems(scan.problems, f"Mid-level dataset at {scan.root}")
        self.root = scan.root
        self.concepts: pd.DataFrame = scan.concepts
        self.soundtracks_ids: dict[str, str] = scan.soundtracks_ids

    def soundtracks_concepts(self) -> pd.DataFrame:
        """Concepts of the annotated Soundtracks clips, indexed by Soundtracks clip id."""
        pairs = [(clip, song) for clip, song in self.soundtracks_ids.items()
                 if song in self.concepts.index]
        frame = pd.DataFrame([self.concepts.loc[song].to_numpy() for _, song in pairs],
                             index=pd.Index([clip for clip, _ in pairs], name="id"),
                             columns=list(CONCEPTS), dtype=float)
        return frame
