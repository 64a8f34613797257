"""The one dataset reader: a CSV manifest (one row per clip) plus the audio folder it points to.

A user dataset is an audio folder and a manifest with a ``file`` column (the audio file,
relative to the manifest's folder or to ``audio``), any number of named numeric targets on any
scale, and optionally a class ``label`` column, concept columns and a ``split`` column
(``train``/``val``/``test``). Column roles come from conventions or from a ``dataset.yaml``
beside the manifest (docs/own-model.md)::

    manifest: clips.csv        # the CSV (default: manifest.csv)
    audio: audio               # folder the file column is relative to (default: the CSV's)
    file: file                 # audio file column (default: file)
    id: id                     # clip id column (default: the audio file's stem)
    targets: [arousal, valence]  # default: every column not named here or reserved
    scale: [1, 9]              # the targets' rating scale: checked, recorded and shown
    label: label               # class label column (default: label, if present)
    concepts: [...]            # concept columns (default: none)
    split: split               # split column (default: split, if present)

Soundtracks Set 1 (and the embedded dataset, written in its layout) is the same reader with a
fixed spec (:func:`robustmer.data.soundtracks.soundtracks_spec`): ids in a ``number`` column,
audio found by id in ``Set1/``, the 8 emotions on a 1-9 scale divided by 10, ``TARGET`` as an
optional label. Every defect is collected as a :class:`Problem` naming the file, the CSV line
and the column, so ``robustmer data check`` lists them all; the loader raises one
``DatasetError`` with the list.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from robustmer.data.table import (
    AUDIO_EXTENSIONS,
    ClipTable,
    Problem,
    audio_files,
    csv_line,
    normalise_clip_id,
    raise_problems,
    read_csv_table,
)
from robustmer.errors import ConfigError, DatasetError

MANIFEST_FILE = "manifest.csv"
SPEC_FILE = "dataset.yaml"
RESERVED: tuple[str, ...] = ("file", "id", "split", "label")
"""Column names that are never targets by default."""
SPLIT_VALUES: tuple[str, ...] = ("train", "val", "test")
SPEC_KEYS: tuple[str, ...] = ("manifest", "audio", "file", "id", "targets", "scale", "label",
                              "concepts", "split", "sep")
MIN_SCORED = 3
"""A validation or test split with fewer clips cannot give a Pearson r worth reading."""
_BAD_NAME = re.compile(r"[,\"\n\r]")


@dataclass(frozen=True)
class ManifestSpec:
    """How to read one dataset (see the module docstring).

    ``file_column=None``: the audio is found by clip id in ``audio_dir`` (Soundtracks);
    ``id_column=None``: the id is the audio file's stem. ``targets=None``: every column not
    reserved or named elsewhere. ``divisor``: targets are divided by it (Soundtracks: 10, as the
    reference study); ``scale``: the rating scale the raw values must lie in (None: any finite
    number). ``label_required``: the label column must exist and no cell may be empty (False:
    an optional label, as Soundtracks' ``TARGET``). ``spec_file``: the ``dataset.yaml`` read.
    """

    csv: Path
    audio_dir: Path
    file_column: str | None = "file"
    id_column: str | None = None
    targets: tuple[str, ...] | None = None
    concepts: tuple[str, ...] = ()
    label: str | None = None
    label_required: bool = True
    split_column: str | None = None
    scale: tuple[float, float] | None = None
    divisor: float = 1.0
    sep: str = ","
    source: str = "manifest"
    soundtracks_ids: bool = False
    spec_file: Path | None = None

    def info(self) -> dict[str, Any]:
        """The targets' scale and units as recorded with runs and results (``target_info``)."""
        units = ("as given" if self.divisor == 1.0 else f"ratings divided by {self.divisor:g}")
        if self.scale is not None:
            lo, hi = (v / self.divisor for v in self.scale)
            units += f" (scale {lo:g}-{hi:g})"
        return {"source": self.source, "scale": None if self.scale is None else list(self.scale),
                "divisor": float(self.divisor), "units": units}


@dataclass
class ManifestScan:
    """What a scan of a manifest found, every problem included (nothing raised)."""

    spec: ManifestSpec
    ids: list[str] = field(default_factory=list)
    targets: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    target_names: tuple[str, ...] = ()
    concepts: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    labels: list[str | None] = field(default_factory=list)
    audio_paths: dict[str, Path] = field(default_factory=dict)
    split: dict[str, str] | None = None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def _names(value: Any, key: str, where: Path) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: {key} must be a list of column names, found {value!r}")
    names = tuple(v.strip() for v in value)
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: {key} names a column twice: {list(names)}")
    return names


def read_spec_file(path: str | Path) -> ManifestSpec:
    """Read a ``dataset.yaml`` (keys in the module docstring; paths relative to its folder)."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{p}: cannot read the dataset description: {err}") from err
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping of {list(SPEC_KEYS)}")
    unknown = sorted(set(raw) - set(SPEC_KEYS))
    if unknown:
        raise ConfigError(f"{p}: unknown key(s) {unknown}; allowed: {list(SPEC_KEYS)}")
    for key in ("manifest", "audio", "file", "id", "label", "split", "sep"):
        if key in raw and raw[key] is not None and not isinstance(raw[key], str):
            raise ConfigError(f"{p}: {key} must be a string, found {raw[key]!r}")
    base = p.parent
    csv = base / raw.get("manifest", MANIFEST_FILE)
    audio = base / raw["audio"] if raw.get("audio") else csv.parent
    scale = raw.get("scale")
    if scale is not None:
        if (not isinstance(scale, list) or len(scale) != 2
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in scale)
                or not scale[0] < scale[1]):
            raise ConfigError(f"{p}: scale must be [low, high] with low < high, found {scale!r}")
        scale = (float(scale[0]), float(scale[1]))
    return ManifestSpec(
        csv=csv, audio_dir=audio, file_column=raw.get("file", "file"),
        id_column=raw.get("id"),
        targets=None if raw.get("targets") is None else _names(raw["targets"], "targets", p),
        concepts=() if raw.get("concepts") is None else _names(raw["concepts"], "concepts", p),
        label=raw.get("label"), split_column=raw.get("split"), scale=scale,
        sep=raw.get("sep", ","), spec_file=p)


def manifest_spec(path: str | Path) -> ManifestSpec:
    """The spec of a user dataset given as a manifest CSV, a ``dataset.yaml``, or a folder
    holding either (``dataset.yaml`` first)."""
    p = Path(path)
    if p.is_dir():
        if (p / SPEC_FILE).is_file():
            return read_spec_file(p / SPEC_FILE)
        return ManifestSpec(csv=p / MANIFEST_FILE, audio_dir=p)
    if p.suffix.lower() in (".yaml", ".yml"):
        return read_spec_file(p)
    return ManifestSpec(csv=p, audio_dir=p.parent)


def is_manifest(path: str | Path) -> bool:
    """Whether ``path`` names a user dataset: a CSV or YAML file, or a folder with
    ``dataset.yaml`` or ``manifest.csv``."""
    p = Path(path)
    if p.is_dir():
        return (p / SPEC_FILE).is_file() or (p / MANIFEST_FILE).is_file()
    return p.suffix.lower() in (".csv", ".yaml", ".yml")


def _column(frame: pd.DataFrame, name: str) -> str | None:
    """The frame's column called ``name`` (exact, else case-insensitive), or None."""
    if name in frame.columns:
        return name
    return next((c for c in frame.columns if c.lower() == name.lower()), None)


def _resolve_columns(spec: ManifestSpec, frame: pd.DataFrame,
                     problems: list[Problem]) -> ManifestSpec | None:
    """Fix the spec's column roles against the header: declared columns must exist; the
    defaults (``label``, ``split``, the targets) are taken where present."""
    csv = spec.csv
    missing: list[str] = []

    def need(name: str | None, key: str) -> str | None:
        if name is None:
            return None
        col = _column(frame, name)
        if col is None:
            missing.append(f"{name!r} ({key})")
        return col

    file_col = need(spec.file_column, "file")
    id_col = need(spec.id_column, "id")
    if spec.label is None:
        label = _column(frame, "label")
    else:  # an optional label column (Soundtracks' TARGET) may be absent
        label = need(spec.label, "label") if spec.label_required else _column(frame, spec.label)
    split = need(spec.split_column, "split") if spec.split_column else _column(frame, "split")
    concepts = tuple(c for c in (need(n, "concepts") for n in spec.concepts) if c)
    if spec.targets is not None:
        targets = tuple(c for c in (need(n, "targets") for n in spec.targets) if c)
    else:
        used = {c for c in (file_col, id_col, label, split, *concepts) if c}
        targets = tuple(c for c in frame.columns if c not in used
                        and c.lower() not in RESERVED)
    if missing:
        problems.append(Problem(csv, 1, f"missing column(s) {', '.join(missing)}; found "
                                f"{list(frame.columns)}", "missing_column"))
        return None
    for name in (*targets, *concepts):
        if not name.strip() or _BAD_NAME.search(name):
            problems.append(Problem(csv, 1, f"column name {name!r} cannot name an output "
                                    "(empty, or holds a comma, quote or line break)",
                                    "invalid"))
    if not targets and label is None:
        problems.append(Problem(csv, 1, "no target column and no label column: nothing to "
                                "learn (name them with targets: / label: in dataset.yaml)",
                                "missing_column"))
    return replace(spec, file_column=file_col, id_column=id_col, label=label,
                   split_column=split, concepts=concepts, targets=targets)


def _numbers(frame: pd.DataFrame, columns: tuple[str, ...], spec: ManifestSpec,
             problems: list[Problem], *, scale: tuple[float, float] | None,
             missing_ok: bool) -> np.ndarray:
    """Parse columns as finite floats (in ``scale`` when given); each bad cell is one problem
    naming its line and column; empty cells are NaN where ``missing_ok``."""
    out = np.full((len(frame), len(columns)), np.nan, dtype=np.float64)
    for j, col in enumerate(columns):
        for i, raw in enumerate(frame[col].tolist()):
            text = str(raw).strip()
            if missing_ok and text == "":
                continue
            try:
                value = float(text)
            except ValueError:
                problems.append(Problem(spec.csv, csv_line(i), f"{col} = {text!r} is not a "
                                        f"number (column {col!r})", "non_numeric"))
                continue
            if not math.isfinite(value):
                problems.append(Problem(spec.csv, csv_line(i), f"{col} = {text!r} is not a "
                                        f"finite number (column {col!r})", "non_numeric"))
            elif scale is not None and not scale[0] <= value <= scale[1]:
                problems.append(Problem(spec.csv, csv_line(i), f"{col} = {value:g} is outside "
                                        f"the rating scale [{scale[0]:g}, {scale[1]:g}] "
                                        f"(column {col!r})", "out_of_range"))
            else:
                out[i, j] = value
    return out


def _audio_by_id(spec: ManifestSpec, problems: list[Problem]) -> dict[str, Path]:
    """Soundtracks: every audio file of ``audio_dir`` by its normalised stem."""
    audio: dict[str, Path] = {}
    if not spec.audio_dir.is_dir():
        problems.append(Problem(spec.audio_dir, None, "audio folder not found (expected "
                                f"{spec.audio_dir.name}/NNN.mp3 ...)", "missing_file"))
        return audio
    for path in audio_files(spec.audio_dir):
        clip_id = normalise_clip_id(path.stem)
        if clip_id in audio:
            problems.append(Problem(path, None, f"two audio files for clip {clip_id!r}: "
                                    f"{audio[clip_id].name} and {path.name}", "duplicate_id"))
            continue
        audio[clip_id] = path
    return audio


def _row_id(spec: ManifestSpec, row: Any) -> tuple[str, str]:
    """A row's clip id (its id column, else its file's stem) and file name (empty when the
    manifest names no file column)."""
    file_text = str(row[spec.file_column]).strip() if spec.file_column else ""
    if spec.id_column is not None:
        raw_id = str(row[spec.id_column]).strip()
        return (normalise_clip_id(raw_id) if spec.soundtracks_ids else raw_id), file_text
    return (Path(file_text).stem if file_text else ""), file_text


def _row_audio(spec: ManifestSpec, line: int, clip_id: str, file_text: str,
               by_id: dict[str, Path] | None, problems: list[Problem]) -> Path | None:
    """The audio file of one row: found by id in the audio folder (Soundtracks layout) or
    named in the file column; None (and the problem recorded) where there is none."""
    if by_id is not None:
        path = by_id.get(clip_id)
        if path is None and spec.audio_dir.is_dir():
            problems.append(Problem(spec.csv, line, f"no audio file for clip {clip_id!r} "
                                    f"in {spec.audio_dir} (expected {clip_id}.mp3/.wav/"
                                    ".flac/.ogg)", "missing_audio"))
        return path
    path = spec.audio_dir / file_text
    if not file_text:
        problems.append(Problem(spec.csv, line, f"empty file name (column "
                                f"{spec.file_column!r})", "missing_audio"))
        return None
    if not path.is_file():
        problems.append(Problem(spec.csv, line, f"{spec.file_column} = {file_text!r}: "
                                f"no such audio file {path} (column "
                                f"{spec.file_column!r})", "missing_audio"))
        return None
    if path.suffix.lower() not in AUDIO_EXTENSIONS:
        problems.append(Problem(spec.csv, line, f"{spec.file_column} = {file_text!r} "
                                f"is not one of {list(AUDIO_EXTENSIONS)} (column "
                                f"{spec.file_column!r})", "invalid"))
    return path


def scan_manifest(spec: ManifestSpec) -> ManifestScan:
    """Read a manifest and find its audio, collecting every problem (file, line, column) and
    warning; nothing is raised."""
    scan = ManifestScan(spec=spec)
    problems = scan.problems
    by_id: dict[str, Path] | None = None
    if spec.file_column is None:
        if not spec.csv.parent.is_dir():
            problems.append(Problem(spec.csv.parent, None, "dataset folder not found",
                                    "missing_file"))
            return scan
        by_id = _audio_by_id(spec, problems)
    # Soundtracks keeps its one message for every missing column of its fixed layout.
    required = ((spec.id_column or "", *(spec.targets or ())) if spec.soundtracks_ids else ())
    frame = read_csv_table(spec.csv, sep=spec.sep, required=required, problems=problems)
    if frame is None:
        return scan
    resolved = _resolve_columns(spec, frame, problems)
    if resolved is None:
        return scan
    spec = scan.spec = resolved
    assert spec.targets is not None
    targets = _numbers(frame, spec.targets, spec, problems, scale=spec.scale,
                       missing_ok=False) / spec.divisor
    concepts = _numbers(frame, spec.concepts, spec, problems, scale=None, missing_ok=True)
    first_line: dict[str, int] = {}
    keep: list[int] = []
    ids: list[str] = []
    paths: dict[str, Path] = {}
    labels: list[str | None] = []
    split: dict[str, str] = {}
    for i in range(len(frame)):
        line = csv_line(i)
        row = frame.iloc[i]
        clip_id, file_text = _row_id(spec, row)
        what = spec.id_column or spec.file_column or "id"
        if not clip_id:
            problems.append(Problem(spec.csv, line, f"empty {what!r} (column {what!r})",
                                    "missing_id"))
            continue
        if clip_id in first_line:
            problems.append(Problem(spec.csv, line, f"duplicate clip id {clip_id!r} (first on "
                                    f"line {first_line[clip_id]})", "duplicate_id"))
            continue
        first_line[clip_id] = line
        path = _row_audio(spec, line, clip_id, file_text, by_id, problems)
        if path is not None:
            paths[clip_id] = path
        label: str | None = None
        if spec.label is not None:
            label = str(row[spec.label]).strip() or None
            if label is None and spec.label_required:
                problems.append(Problem(spec.csv, line, f"empty class label (column "
                                        f"{spec.label!r})", "missing_label"))
        if spec.split_column is not None:
            part = str(row[spec.split_column]).strip().lower()
            if part not in SPLIT_VALUES:
                problems.append(Problem(spec.csv, line, f"{spec.split_column} = {part!r} is "
                                        f"not one of {list(SPLIT_VALUES)} (column "
                                        f"{spec.split_column!r})", "invalid"))
            split[clip_id] = part
        keep.append(i)
        ids.append(clip_id)
        labels.append(label)
    if by_id is not None:
        for clip_id, path in by_id.items():
            if clip_id not in first_line:
                problems.append(Problem(path, None, f"audio file has no rating row in "
                                        f"{spec.csv}", "unrated_audio"))
    scan.ids = ids
    scan.targets = targets[keep]
    scan.target_names = spec.targets
    scan.concepts = concepts[keep]
    scan.labels = labels
    scan.audio_paths = paths
    scan.split = split if spec.split_column is not None else None
    scan.warnings = target_warnings(spec, scan)
    return scan


def target_warnings(spec: ManifestSpec, scan: ManifestScan) -> list[Problem]:
    """Warnings that do not stop a study: a target with no variance (its r is undefined; the
    report lists it instead of averaging it in) and a prescribed split part too small to
    score."""
    out: list[Problem] = []
    for j, name in enumerate(scan.target_names):
        col = scan.targets[:, j]
        col = col[np.isfinite(col)]
        if len(col) and np.ptp(col) == 0:
            out.append(Problem(spec.csv, None, f"target column {name!r} is constant "
                               f"({col[0]:g} for every clip): its Pearson r is undefined and it "
                               "is reported apart from the mean r", "constant_target"))
    if scan.split is not None:
        for part in ("val", "test"):
            n = sum(1 for p in scan.split.values() if p == part)
            if n < MIN_SCORED:
                out.append(split_warning(spec.csv, part, n))
    return out


def split_warning(where: Path, part: str, n: int) -> Problem:
    """The warning for a validation or test split with fewer than :data:`MIN_SCORED` clips."""
    return Problem(where, None, f"the {part} split has {n} clip(s): too few to score (Pearson "
                   f"r needs at least {MIN_SCORED}); add clips or change the split",
                   "small_split")


def load_manifest(spec: ManifestSpec) -> ClipTable:
    """A validated dataset as a :class:`ClipTable` (``DatasetError`` listing every problem)."""
    scan = scan_manifest(spec)
    raise_problems(scan.problems, f"dataset {spec.spec_file or spec.csv}")
    if not scan.ids:
        raise DatasetError(f"{spec.csv}: no clips (the file has no data rows)")
    spec = scan.spec
    index = pd.Index(scan.ids, name="id")
    return ClipTable(
        root=spec.spec_file or spec.csv, ids=list(scan.ids),
        targets=pd.DataFrame(scan.targets, index=index, columns=list(scan.target_names)),
        concepts=pd.DataFrame(scan.concepts, index=index, columns=list(spec.concepts)),
        labels=pd.Series(scan.labels, index=index, name="label", dtype=object),
        audio_paths=dict(scan.audio_paths), target_info=spec.info(), split_column=scan.split)
