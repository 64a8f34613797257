"""The voice dataset's folder layout: its file names and columns, the deterministic ground-truth
npz writer, and reading a written folder back (:func:`load_voice_dataset`)."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustmer.data.voice.parameters import VOICE_FORMAT_VERSION
from robustmer.errors import DatasetError
from robustmer.io import atomic_path, read_json

CLIPS_CSV, SPANS_CSV, SETTINGS_JSON = "clips.csv", "spans.csv", "voice.json"
AUDIO_DIR, TRUTH_DIR = "audio", "truth"
CLIP_COLUMNS: tuple[str, ...] = ("file", "id", "label", "voice_fraction", "n_spans", "snr_db",
                                 "n_decoy_spans", "n_frames")
"""``clips.csv``: ``file`` (relative path), ``id`` (3 digits), ``label`` (:data:`LABELS`, any
voice), ``voice_fraction`` (share of voiced frames), ``n_spans``, ``snr_db`` (empty without
voice), ``n_decoy_spans`` (spans of the instrumental decoy), ``n_frames`` (front-end frames)."""
SPAN_COLUMNS: tuple[str, ...] = ("id", "span", "start_s", "end_s", "start_frame", "end_frame",
                                 "f0_mean")
"""``spans.csv``: one row per span; seconds ``[start_s, end_s)`` (exact sample positions / sr),
frames ``[start_frame, end_frame)`` (the voiced frames), the span's mean f0 in Hz."""
TRUTH_ARRAYS: tuple[str, ...] = ("labels", "mask", "dominant", "f0", "spans", "span_frames",
                                 "span_f0", "snr_db", "decoy_spans")
"""Arrays of ``truth/<id>.npz``: ``labels (T,)`` bool, ``mask``/``dominant`` ``(T, 149)`` bool,
``f0 (T,)`` float32, ``spans (n, 2)`` int64 samples, ``span_frames (n, 2)`` int64, ``span_f0
(n,)`` float64, ``snr_db ()`` float64 (NaN without voice), ``decoy_spans (m, 2)`` int64
samples (where the instrumental decoy plays)."""
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def write_npz(path: Path, arrays: dict[str, np.ndarray | np.generic]) -> None:
    """A compressed npz with fixed zip timestamps, written atomically.

    Hand-written because ``np.savez_compressed`` stamps each member with the current time, and
    the same seed must give the same bytes; ``np.load`` reads the result as usual.
    """
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def read_truth(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of one ``truth/<id>.npz`` (:data:`TRUTH_ARRAYS`); ``DatasetError`` naming the
    file when it is missing, unreadable or incomplete."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            out = {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{p}: cannot read the voice ground truth ({exc})") from exc
    missing = [k for k in TRUTH_ARRAYS if k not in out]
    if missing:
        raise DatasetError(f"{p}: missing arrays {missing}")
    return out



@dataclass(frozen=True)
class VoiceDataset:
    """A voice dataset folder read back: ``clips`` and ``spans`` tables (``id`` as text), the
    settings of ``voice.json``; :meth:`audio_path` and :meth:`truth` per clip id."""

    root: Path
    clips: pd.DataFrame
    spans: pd.DataFrame
    settings: dict[str, Any]

    @property
    def ids(self) -> list[str]:
        """Clip ids in file order."""
        return list(self.clips["id"])

    def audio_path(self, clip_id: str) -> Path:
        """The clip's audio file."""
        row = self.clips.loc[self.clips["id"] == str(clip_id)]
        if row.empty:
            raise DatasetError(f"{self.root / CLIPS_CSV}: no clip {clip_id!r}")
        return self.root / str(row["file"].iloc[0])

    def truth(self, clip_id: str) -> dict[str, np.ndarray]:
        """The clip's ground truth arrays (:data:`TRUTH_ARRAYS`)."""
        return read_truth(self.root / TRUTH_DIR / f"{clip_id}.npz")


def load_voice_dataset(root: str | Path) -> VoiceDataset:
    """Read a folder written by :func:`synthesize_voice`; ``DatasetError`` naming the file when
    it is incomplete (no ``voice.json``: still being written or killed) or malformed."""
    r = Path(root)
    final = r / SETTINGS_JSON
    if not final.exists():
        raise DatasetError(f"{final}: missing; {r} is not a complete voice dataset (run "
                           f"synthesize_voice again to complete it)")
    settings = read_json(final)
    if settings.get("format_version") != VOICE_FORMAT_VERSION:
        raise DatasetError(f"{final}: format version {settings.get('format_version')}, this "
                           f"robustmer reads {VOICE_FORMAT_VERSION}")
    tables = {}
    for name, cols in ((CLIPS_CSV, CLIP_COLUMNS), (SPANS_CSV, SPAN_COLUMNS)):
        frame = pd.read_csv(r / name, dtype={"id": str})
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise DatasetError(f"{r / name}: missing columns {missing}")
        tables[name] = frame
    return VoiceDataset(root=r, clips=tables[CLIPS_CSV], spans=tables[SPANS_CSV],
                        settings=settings)
