"""``check_dataset``: list every problem of a dataset folder, with file and line, without raising.

Covers what the loaders reject (missing files and columns, duplicate ids, missing or unrated
audio, non-numeric or out-of-range ratings) and, in addition, decodes every audio file.
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from robustmer.audio import load_audio
from robustmer.data.midlevel import scan_midlevel
from robustmer.data.soundtracks import default_midlevel_root, scan_soundtracks
from robustmer.data.table import Problem, audio_files
from robustmer.errors import AudioError

__all__ = ["Problem", "check_dataset"]


def check_dataset(root: str | Path, midlevel_root: str | Path | None = None, *,
                  decode: bool = True, progress: bool | None = None) -> list[Problem]:
    """Every problem of the dataset at ``root`` (and its mid-level annotations), in file order.

    ``midlevel_root`` defaults to ``ROOT/midlevel`` when it exists. With ``decode`` every audio
    file is decoded with ``load_audio``; failures are reported as problems, not raised.
    """
    scan = scan_soundtracks(root)
    problems = list(scan.problems)
    ml_root = Path(midlevel_root) if midlevel_root is not None else default_midlevel_root(root)
    if ml_root is not None:
        problems.extend(scan_midlevel(ml_root).problems)
    if decode:
        audio_dir = Path(root) / "Set1"
        files = audio_files(audio_dir) if audio_dir.is_dir() else []
        show = len(files) >= 20 if progress is None else progress
        for path in tqdm(files, disable=not show, desc="decoding", unit="file"):
            try:
                load_audio(path)
            except AudioError as err:
                problems.append(Problem(path, None, f"cannot be used as audio: {err}",
                                        "undecodable"))
    return problems
