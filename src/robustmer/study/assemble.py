"""From finished runs to the results store's tables and the study's log: one ``runs.csv`` row per
run and attack setting, the log line that summarises it, and the media the report plays
(``media/<run_id>/``)."""

from __future__ import annotations

import filecmp
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from robustmer.evaluate.store import ResultsStore
from robustmer.evaluate.summary import run_row
from robustmer.study.config import StudyConfig


def same_eps(values: pd.Series, eps: float) -> pd.Series:
    """``values == eps`` with NaN equal to NaN (an unbounded setting)."""
    v = values.astype(float)
    return v.isna() if eps != eps else v == eps


def setting_rows(config: StudyConfig, run_id: str, model_type: str, seed: int,
                 clips: pd.DataFrame, names: list[str],
                 concept: float = float("nan")) -> list[dict[str, Any]]:
    """One ``runs.csv`` row per attack setting of a finished run."""
    rows = []
    for setting in config.attack.settings:
        sel = clips[(clips["attack"] == setting.key[0]) & (clips["domain"] == setting.key[1])
                    & same_eps(clips["eps"], setting.key[2])]
        rows.append(run_row(run_id, model_type, seed, clips=sel, setting=setting.key,
                            concept_mean_r=concept, names=names, task=config.task))
    return rows


def summary_line(row: dict[str, Any]) -> str:
    """One run x setting in the study's log: clean and attacked MAE (and accuracy)."""
    text = (f"clean r {row['clean_mean_r']:.3f} MAE {row['clean_mae']:.3f} -> attacked MAE "
            f"{row['adv_mae']:.3f} (ΔMAE {row['delta_mae']:+.3f}, "
            f"{row['mean_iterations']:.0f} it)")
    if "clean_accuracy" in row:
        text = (f"accuracy {row['clean_accuracy']:.3f} -> {row['adv_accuracy']:.3f}; "
                f"probability error (MAE) {row['clean_mae']:.3f} -> {row['adv_mae']:.3f} "
                f"({row['mean_iterations']:.0f} it)")
    return text


def not_runnable(model_type: str) -> str:
    """Why a concept-trained type cannot run on data without every training clip's concepts."""
    return (f"not runnable: {model_type} learns concepts and needs the concept "
            f"ratings of every training clip (Soundtracks: give data.midlevel, the "
            f"Mid-level Perceptual Features folder; a manifest: concept columns)")


def copy_media(config: StudyConfig, store: ResultsStore, run_id: str, attack_dir: Path,
               clip_ids: list[str]) -> None:
    """Put the first ``media_clips`` clips' listenable/visible perturbations where the report
    looks for them (``media/<run_id>/``; from the block's first setting). A hard link where
    the file system allows it, so the store does not hold the audio twice."""
    for clip in clip_ids[: config.media_clips]:
        sources = {"clean.wav": attack_dir / "audio" / f"{clip}_clean.wav",
                   "adv.wav": attack_dir / "audio" / f"{clip}_adv.wav",
                   "delta.npz": attack_dir / "examples" / f"{clip}.npz"}
        if config.attack.settings[0].domain == "waveform":
            sources.pop("delta.npz")  # listenable audio instead of a delta image
        for kind, src in sources.items():
            if src.exists():
                dest = store.media_path(run_id, clip, kind)
                dest.parent.mkdir(parents=True, exist_ok=True)
                if kind == "clean.wav":
                    share_equal_file(src, store.path / "media", f"{clip}_clean.wav")
                link_or_copy(src, dest)


def share_equal_file(src: Path, media: Path, name: str) -> None:
    """Make ``src`` a hard link to a byte-equal ``media/<run>/<name>`` of another run, if there
    is one: every run's clean excerpt of a clip is the same audio (``write_wav`` writes equal
    samples as equal bytes), so the study keeps it once. Nothing changes where links fail."""
    if not media.is_dir():
        return
    for other in sorted(media.glob(f"*/{name}")):
        try:
            if os.path.samefile(other, src):
                return
            if other.stat().st_size != src.stat().st_size or not filecmp.cmp(other, src,
                                                                                 shallow=False):
                continue
            tmp = src.with_name(f".{src.name}.link")
            if tmp.exists():
                tmp.unlink()
            os.link(other, tmp)
            os.replace(tmp, src)  # atomic: readers see the old file or the equal one
        except OSError:
            return
        return


def link_or_copy(src: Path, dest: Path) -> None:
    """``dest`` as a hard link to ``src`` (replacing it), or a copy where links fail."""
    if dest.exists() or dest.is_symlink():
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)
