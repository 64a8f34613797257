"""``check_dataset``: list every problem of a dataset, with file, line and column, without
raising; ``dataset_warnings``: what does not stop a study but a reader should know.

Covers what the loaders reject (missing files and columns, duplicate ids, missing or unrated
audio, non-numeric or out-of-range ratings, empty class labels, bad split values) and, in
addition, decodes every audio file. Works on both layouts the loader reads: a Soundtracks
folder (with its Mid-level annotations) and a user manifest (``robustmer.data.manifest``).
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from robustmer.audio import load_audio
from robustmer.data.manifest import (
    MIN_SCORED,
    ManifestScan,
    is_manifest,
    manifest_spec,
    scan_manifest,
    split_warning,
)
from robustmer.data.midlevel import scan_midlevel
from robustmer.data.soundtracks import default_midlevel_root, is_soundtracks, scan_soundtracks
from robustmer.data.split import make_split
from robustmer.data.table import Problem
from robustmer.errors import AudioError

__all__ = ["Problem", "check_dataset", "dataset_warnings", "scan_dataset"]


def scan_dataset(root: str | Path) -> ManifestScan:
    """The scan of a user manifest or of a Soundtracks folder (by the layout found)."""
    if is_manifest(root) and not is_soundtracks(root):
        return scan_manifest(manifest_spec(root))
    return scan_soundtracks(root)


def check_dataset(root: str | Path, midlevel_root: str | Path | None = None, *,
                  decode: bool = True, progress: bool | None = None) -> list[Problem]:
    """Every problem of the dataset at ``root`` (and its mid-level annotations), in file order.

    ``midlevel_root`` defaults to ``ROOT/midlevel`` when it exists (Soundtracks layout). With
    ``decode`` every audio file is decoded with ``load_audio``; failures are reported as
    problems, not raised.
    """
    scan = scan_dataset(root)
    problems = list(scan.problems)
    if scan.spec.source == "soundtracks":
        ml_root = (Path(midlevel_root) if midlevel_root is not None
                   else default_midlevel_root(root))
        if ml_root is not None:
            problems.extend(scan_midlevel(ml_root).problems)
    if decode:
        files = sorted(set(scan.audio_paths.values()))
        show = len(files) >= 20 if progress is None else progress
        for path in tqdm(files, disable=not show, desc="decoding", unit="file"):
            try:
                load_audio(path)
            except AudioError as err:
                problems.append(Problem(path, None, f"cannot be used as audio: {err}",
                                        "undecodable"))
    return problems


def dataset_warnings(root: str | Path, split_seed: int = 0) -> list[Problem]:
    """Warnings of a readable dataset: constant targets, and a validation or test split (the
    manifest's, or the seeded one a study would draw) too small to score."""
    scan = scan_dataset(root)
    out = list(scan.warnings)
    if scan.split is None and scan.ids:
        split = make_split(scan.ids, seed=split_seed)
        for part in ("val", "test"):
            n = len(split.part(part))
            if n < MIN_SCORED:
                out.append(split_warning(scan.spec.csv, part, n))
    return out
