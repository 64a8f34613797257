"""The clip table every later stage reads, plus the plumbing the annotation readers share.

A ``Problem`` names one defect of a dataset folder (file, row, what was expected). Readers collect
every problem they find, so ``robustmer data check`` can list them all at once, and the loaders
turn the list into one ``DatasetError``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustmer.errors import DatasetError

AUDIO_EXTENSIONS: tuple[str, ...] = (".mp3", ".wav", ".flac", ".ogg")
"""Audio file types accepted in ``ROOT/Set1`` (anything libsndfile decodes)."""

_MAX_LISTED = 10


@dataclass(frozen=True)
class Problem:
    """One defect of a dataset folder: where it is (file, CSV line) and what is wrong.

    ``line`` is the 1-based line number in the file (the header is line 1), or None when the
    problem concerns the whole file (missing file, missing column, undecodable audio).
    """

    file: Path
    line: int | None
    message: str
    kind: str = "invalid"

    def __str__(self) -> str:
        where = f"{self.file}" if self.line is None else f"{self.file}, line {self.line}"
        return f"{where}: {self.message}"


def raise_problems(problems: Sequence[Problem], what: str) -> None:
    """Raise one ``DatasetError`` listing the first problems, if there are any."""
    if not problems:
        return
    shown = "\n  ".join(str(p) for p in problems[:_MAX_LISTED])
    more = len(problems) - _MAX_LISTED
    tail = f"\n  ... and {more} more" if more > 0 else ""
    raise DatasetError(
        f"{what}: {len(problems)} problem(s):\n  {shown}{tail}\n"
        "Run `robustmer data check ROOT` to list them all."
    )


def audio_files(folder: Path) -> list[Path]:
    """The audio files of a folder (accepted extensions, hidden and temporary files skipped)."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in AUDIO_EXTENSIONS)


def normalise_clip_id(raw: object) -> str:
    """Canonical clip id: strip whitespace and an audio/feature extension, zero-pad numbers to 3.

    ``'1'``, ``'001'``, ``'001.mp3'`` and ``1`` all become ``'001'``, the stem of the audio file.
    """
    text = str(raw).strip()
    # Strip any trailing extensions (e.g. '146.mp3' or the reference logs' '146.mp3.spec').
    text = re.sub(r"(\.[A-Za-z][A-Za-z0-9]{0,4})+$", "", text)
    if re.fullmatch(r"\d+", text):
        return text.zfill(3)
    if re.fullmatch(r"\d+\.0+", text):  # a numeric id that went through a float column
        return text.split(".")[0].zfill(3)
    return text


def read_csv_table(path: Path, *, sep: str, required: Iterable[str],
                   problems: list[Problem]) -> pd.DataFrame | None:
    """Read a CSV as strings with normalised header names; record missing file / columns.

    Column names are stripped of whitespace and a byte-order mark. Returns None (and records a
    problem) when the file is missing, unreadable or lacks a required column.
    """
    if not path.is_file():
        problems.append(Problem(path, None, "file not found", "missing_file"))
        return None
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False,
                            encoding="utf-8-sig", encoding_errors="replace",
                            skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        problems.append(Problem(path, None, f"cannot parse as CSV (sep {sep!r}): {err}",
                                "unreadable"))
        return None
    frame.columns = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        problems.append(Problem(
            path, 1, f"missing column(s) {missing}; found {list(frame.columns)}",
            "missing_column"))
        return None
    return frame


def csv_line(row_position: int) -> int:
    """File line of the ``row_position``-th data row (0-based); line 1 is the header."""
    return row_position + 2


def parse_ratings(frame: pd.DataFrame, columns: Sequence[str], path: Path,
                  low: float, high: float, problems: list[Problem]) -> np.ndarray:
    """Parse rating columns as floats in [low, high]; bad cells become NaN and a problem each."""
    out = np.full((len(frame), len(columns)), np.nan, dtype=np.float64)
    for j, col in enumerate(columns):
        for i, raw in enumerate(frame[col].tolist()):
            text = str(raw).strip()
            try:
                value = float(text)
            except ValueError:
                problems.append(Problem(path, csv_line(i),
                                        f"{col} = {text!r} is not a number", "non_numeric"))
                continue
            if not np.isfinite(value):
                problems.append(Problem(path, csv_line(i),
                                        f"{col} = {text!r} is not a finite number",
                                        "non_numeric"))
            elif not low <= value <= high:
                problems.append(Problem(
                    path, csv_line(i), f"{col} = {value:g} is outside the rating scale "
                    f"[{low:g}, {high:g}]", "out_of_range"))
            else:
                out[i, j] = value
    return out


@dataclass
class ClipTable:
    """Everything known about the clips of one dataset, indexed by clip id.

    Names come from the data: ``targets`` holds the regression targets (columns
    :attr:`target_names`; Soundtracks: its 8 ratings divided by 10), ``concepts`` the concept
    ratings (columns :attr:`concept_names`, NaN where unknown; may have no columns), ``labels``
    the class label per clip (None where unknown) and ``classes`` the sorted label names.
    ``target_info`` records the targets' scale and units (shown beside every table);
    ``split_column`` the split a manifest prescribes (clip id -> ``train``/``val``/``test``), or
    None when the split is drawn with a seed.
    """

    root: Path
    ids: list[str]
    targets: pd.DataFrame
    concepts: pd.DataFrame
    labels: pd.Series
    audio_paths: dict[str, Path]
    midlevel_root: Path | None = None
    classes: list[str] = field(default_factory=list)
    target_info: dict[str, Any] = field(default_factory=dict)
    split_column: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if not self.classes:
            self.classes = sorted({str(v) for v in self.labels.tolist() if v is not None})

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def target_names(self) -> tuple[str, ...]:
        """The regression targets' names, in the order every model outputs them."""
        return tuple(str(c) for c in self.targets.columns)

    @property
    def concept_names(self) -> tuple[str, ...]:
        """The concepts' names, in the order a concept bottleneck outputs them."""
        return tuple(str(c) for c in self.concepts.columns)

    def label_index(self, clip_id: str) -> int:
        """Index of the clip's label in ``classes``; -1 where the label is unknown."""
        label = self.labels.get(clip_id)
        if label is None or (isinstance(label, float) and np.isnan(label)):
            return -1
        return self.classes.index(str(label))

    def has_concepts(self, clip_id: str) -> bool:
        """Whether every concept rating of the clip is known (False when there are none)."""
        if not len(self.concepts.columns):
            return False
        return bool(self.concepts.loc[clip_id].notna().all())

    def check_ids(self, ids: Iterable[str], source: str) -> None:
        """Raise ``DatasetError`` naming ``source`` if any id is not a clip of this table."""
        known = set(self.ids)
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise DatasetError(
                f"{source}: {len(unknown)} clip id(s) not in the dataset at {self.root}: "
                f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''}; was the split made for "
                "another dataset? Delete it to make a new one.")

    def describe(self) -> dict[str, Any]:
        """The names and scales a run, an attack folder and a results store record."""
        return {"targets": list(self.target_names), "concepts": list(self.concept_names),
                "classes": list(self.classes), "target_info": dict(self.target_info)}
