"""Writing the voice dataset: :func:`synthesize_voice` renders every clip and writes its audio,
ground truth, the tables and ``voice.json`` (atomic, resumable, byte-identical for a seed)."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

from robustmer.data.synth import AUDIO_FORMATS, SAMPLE_RATE, draw_concepts
from robustmer.data.synth.dataset import check_clips_seed_format
from robustmer.data.voice.clip import render_voice_clip
from robustmer.data.voice.folder import (
    AUDIO_DIR,
    CLIP_COLUMNS,
    CLIPS_CSV,
    SETTINGS_JSON,
    SPAN_COLUMNS,
    SPANS_CSV,
    TRUTH_DIR,
    read_truth,
    write_npz,
)
from robustmer.data.voice.parameters import (
    ACCOMPANIMENT_VERSION,
    DECOY_PARAMETERS,
    DEFAULT_MASK_DB,
    DEFAULT_P_DECOY,
    DEFAULT_P_VOICE,
    DEFAULT_SNR_DB,
    LABEL_RULES,
    LABELS,
    MIN_DURATION,
    VOICE_FORMAT_VERSION,
    VOICE_PARAMETERS,
    VOWELS,
)
from robustmer.errors import ConfigError, DatasetError
from robustmer.features import FrontEndConfig
from robustmer.io import atomic_path, read_json, write_csv, write_json, write_text

_TMP_NAME = re.compile(r"^\.[^/]+\.tmp$")
MARKER_JSON = ".voice-parameters.json"
"""Written first and removed last: a folder holding it is partial (resumed by the next run)."""

_README = """Voice detection dataset written by robustmer.data.voice (format version {version}).

{clips} clips of {duration:g} s (seed {seed}): the embedded concept dataset's accompaniment
(format {acc}) with a sung-vowel-like voice in some time spans of some clips, at an SNR of
{lo:g} to {hi:g} dB, and an instrumental decoy (a plucked lead in the voice's register) in
some spans of some clips.
  {audio}/NNN.{ext:<4}   22050 Hz mono mixes
  clips.csv          file,id,label,voice_fraction,n_spans,snr_db,n_decoy_spans,n_frames
                     (label: any voice)
  spans.csv          id,span,start_s,end_s,start_frame,end_frame,f0_mean
  {truth}/NNN.npz    per-frame labels, (T, 149) voice masks, f0 per frame, spans, decoy spans
  voice.json         generator settings, label rules, front-end settings, format version
Frames are the front end's (31.3 fps, frame 2048; a frame is voiced when its centre is in a span).
Not real singing. See docs/synthetic-data.md in the robustmer repository.
"""


@dataclass(frozen=True)
class VoiceInfo:
    """What :func:`synthesize_voice` produced."""

    root: Path
    clips: int
    seconds: float
    settings: dict[str, Any] = field(repr=False)
    reused: bool = False


def _check_voice_args(clips: int, seed: int, duration: float, audio_format: str,
                      p_voice: float, p_decoy: float, snr_db: Sequence[float],
                      mask_db: float) -> None:
    check_clips_seed_format(clips, seed, audio_format, min_clips=1, formats=("flac", "wav"))
    if isinstance(duration, bool) or not isinstance(duration, int | float) \
            or not duration >= MIN_DURATION:
        raise ConfigError(f"duration: expected seconds >= {MIN_DURATION}, got {duration!r}")
    for name, prob in (("p_voice", p_voice), ("p_decoy", p_decoy)):
        if isinstance(prob, bool) or not isinstance(prob, int | float) or not 0.0 <= prob <= 1.0:
            raise ConfigError(f"{name}: expected a probability in [0, 1], got {prob!r}")
    try:
        lo, hi = (float(v) for v in snr_db)
    except (TypeError, ValueError):
        raise ConfigError(f"snr_db: expected two numbers (low, high) in dB, got {snr_db!r}"
                          ) from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
        raise ConfigError(f"snr_db: expected finite low <= high, got {snr_db!r}")
    if isinstance(mask_db, bool) or not isinstance(mask_db, int | float) or not mask_db > 0:
        raise ConfigError(f"mask_db: expected a positive number of dB, got {mask_db!r}")


def voice_settings(clips: int, seed: int, duration: float, audio_format: str, p_voice: float,
                   p_decoy: float, snr_db: Sequence[float], mask_db: float,
                   config: FrontEndConfig | None = None) -> dict[str, Any]:
    """The content of ``voice.json``: parameters, renderer settings, label rules, front end."""
    cfg = config if config is not None else FrontEndConfig()
    return {
        "format_version": VOICE_FORMAT_VERSION,
        "generator": "robustmer.data.voice",
        "parameters": {"clips": int(clips), "seed": int(seed), "duration": float(duration),
                       "audio_format": audio_format, "p_voice": float(p_voice),
                       "p_decoy": float(p_decoy),
                       "snr_db": [float(v) for v in snr_db], "mask_db": float(mask_db),
                       "sample_rate": SAMPLE_RATE},
        "accompaniment": {"generator": "robustmer.data.synth.render_clip",
                          "format_version": ACCOMPANIMENT_VERSION,
                          "concepts": "draw_concepts(clips, seed), clip k rendered with seed "
                                      "(seed, 1000 + k)"},
        "voice_seed": "clip k: spans and SNR from (seed, 3000 + k), the voice from "
                      "(seed, 4000 + k); the decoy's spans and level from (seed, 5000 + k), its "
                      "sound from (seed, 6000 + k)",
        "labels": list(LABELS),
        "label_rules": LABEL_RULES,
        "vowels": VOWELS,
        "voice_parameters": VOICE_PARAMETERS,
        "decoy_parameters": DECOY_PARAMETERS,
        "frontend": cfg.to_dict(),
    }



def _readable(audio: Path, truth: Path) -> bool:
    """Whether a clip's audio and ground truth on disk can be read (else it is rendered again)."""
    try:
        read_truth(truth)
        return bool(sf.info(str(audio)).frames > 0)
    except (sf.LibsndfileError, RuntimeError, OSError, DatasetError):
        return False


def _check_folder(root: Path, settings: dict[str, Any], done: list[Path]) -> bool:
    """Whether ``root`` already holds the complete dataset of ``settings`` (to be reused);
    ``ConfigError`` when it is a file, holds another voice dataset or anything else."""
    final, marker = root / SETTINGS_JSON, root / MARKER_JSON
    if root.exists() and not root.is_dir():
        raise ConfigError(f"out: {root} exists and is not a folder")
    if final.exists() or marker.exists():
        found = read_json(final if final.exists() else marker)
        if found.get("format_version") != VOICE_FORMAT_VERSION or found.get(
                "parameters") != settings["parameters"]:
            raise ConfigError(
                f"out: {root} already holds a voice dataset with other parameters "
                f"({found.get('parameters')}, format {found.get('format_version')}); remove it "
                f"or choose another folder")
        return final.exists() and all(p.exists() for p in done)
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"out: {root} is not empty and holds no voice dataset; choose an "
                          f"empty or new folder")
    return False


def _write_clips(root: Path, audio_paths: list[Path], truth_paths: list[Path],
                 settings: dict[str, Any], config: FrontEndConfig) -> None:
    """Render and write every clip's audio and ground truth that is not on disk (readable)
    yet, after removing the temporaries of a killed run."""
    par = settings["parameters"]
    for folder in (root / AUDIO_DIR, root / TRUTH_DIR):
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.iterdir():  # temporaries of a killed run (atomic_path's naming)
            if _TMP_NAME.match(stale.name):
                stale.unlink()
    fmt, subtype = AUDIO_FORMATS[par["audio_format"]]
    concepts = draw_concepts(par["clips"], par["seed"])
    for k, (apath, tpath) in enumerate(zip(audio_paths, truth_paths, strict=True)):
        if apath.exists() and tpath.exists() and _readable(apath, tpath):
            continue
        clip = render_voice_clip(concepts[k], duration=par["duration"], seed=(par["seed"], k),
                                 p_voice=par["p_voice"], p_decoy=par["p_decoy"],
                                 snr_db=tuple(par["snr_db"]), mask_db=par["mask_db"],
                                 config=config)
        with atomic_path(apath) as tmp:
            sf.write(str(tmp), clip.audio, SAMPLE_RATE, format=fmt, subtype=subtype)
        write_npz(tpath, {"labels": clip.labels, "mask": clip.mask, "dominant": clip.dominant,
                          "f0": clip.f0, "spans": clip.spans, "span_frames": clip.span_frames,
                          "span_f0": clip.span_f0, "snr_db": np.float64(clip.snr_db),
                          "decoy_spans": clip.decoy_spans})


def _write_tables(root: Path, ids: list[str], audio_paths: list[Path],
                  truth_paths: list[Path]) -> None:
    """``clips.csv`` and ``spans.csv`` (:data:`CLIP_COLUMNS`, :data:`SPAN_COLUMNS`), from the
    ground truth on disk."""
    rows, span_rows = [], []
    for cid, apath, tpath in zip(ids, audio_paths, truth_paths, strict=True):
        truth = read_truth(tpath)
        n_spans = int(truth["spans"].shape[0])
        rows.append({"file": apath.relative_to(root).as_posix(), "id": cid,
                     "label": LABELS[int(n_spans > 0)],
                     "voice_fraction": round(float(truth["labels"].mean()), 6),
                     "n_spans": n_spans,
                     "snr_db": round(float(truth["snr_db"]), 4) if n_spans else None,
                     "n_decoy_spans": int(truth["decoy_spans"].shape[0]),
                     "n_frames": int(truth["labels"].size)})
        for j in range(n_spans):
            s0, s1 = (int(v) for v in truth["spans"][j])
            f0, f1 = (int(v) for v in truth["span_frames"][j])
            span_rows.append({"id": cid, "span": j, "start_s": round(s0 / SAMPLE_RATE, 6),
                              "end_s": round(s1 / SAMPLE_RATE, 6), "start_frame": f0,
                              "end_frame": f1, "f0_mean": round(float(truth["span_f0"][j]), 3)})
    write_csv(root / CLIPS_CSV, pd.DataFrame(rows, columns=list(CLIP_COLUMNS)))
    write_csv(root / SPANS_CSV, pd.DataFrame(span_rows, columns=list(SPAN_COLUMNS)))


def synthesize_voice(out: str | Path, clips: int = 120, seed: int = 0, duration: float = 12.0,
                     audio_format: str = "flac", p_voice: float = DEFAULT_P_VOICE,
                     p_decoy: float = DEFAULT_P_DECOY,
                     snr_db: tuple[float, float] = DEFAULT_SNR_DB,
                     mask_db: float = DEFAULT_MASK_DB) -> VoiceInfo:
    """Write the voice detection dataset to ``out`` (layout in docs/synthetic-data.md).

    Deterministic: the same arguments give byte-identical files. Atomic and resumable like
    :func:`robustmer.data.synth.synthesize`: a hidden ``.voice-parameters.json`` is written
    first and ``voice.json`` last; a complete folder with the same settings is returned as is
    (``reused``), a partial one is completed (clips already on disk are kept), and a folder
    holding anything else raises ``ConfigError``.

    Examples:
        >>> import tempfile
        >>> from robustmer.data.voice import load_voice_dataset, synthesize_voice
        >>> info = synthesize_voice(tempfile.mkdtemp() + "/voice", clips=2, duration=4.0,
        ...                         audio_format="wav", p_voice=1.0)  # about a second
        >>> info.clips, info.reused, sorted(p.name for p in info.root.iterdir())
        (2, False, ['README.txt', 'audio', 'clips.csv', 'spans.csv', 'truth', 'voice.json'])
        >>> data = load_voice_dataset(info.root)
        >>> data.ids, list(data.clips["label"])
        (['001', '002'], ['voice', 'voice'])
        >>> truth = data.truth("001")
        >>> truth["labels"].shape == truth["f0"].shape, bool(truth["mask"].any())
        (True, True)
        >>> synthesize_voice(info.root, clips=2, duration=4.0, audio_format="wav",
        ...                  p_voice=1.0).reused  # a complete folder is reused
        True
    """
    _check_voice_args(clips, seed, duration, audio_format, p_voice, p_decoy, snr_db, mask_db)
    start = time.perf_counter()
    clips, seed, duration = int(clips), int(seed), float(duration)
    cfg = FrontEndConfig()
    settings = voice_settings(clips, seed, duration, audio_format, p_voice, p_decoy, snr_db,
                              mask_db, cfg)
    root = Path(out)
    ids = [f"{k:03d}" for k in range(1, clips + 1)]
    audio_paths = [root / AUDIO_DIR / f"{cid}.{audio_format}" for cid in ids]
    truth_paths = [root / TRUTH_DIR / f"{cid}.npz" for cid in ids]
    done = [root / CLIPS_CSV, root / SPANS_CSV, root / "README.txt", *audio_paths, *truth_paths]
    if _check_folder(root, settings, done):
        return VoiceInfo(root=root, clips=clips, seconds=time.perf_counter() - start,
                         settings=settings, reused=True)
    marker = root / MARKER_JSON
    write_json(marker, {"format_version": VOICE_FORMAT_VERSION,
                        "parameters": settings["parameters"]})
    _write_clips(root, audio_paths, truth_paths, settings, cfg)
    _write_tables(root, ids, audio_paths, truth_paths)
    lo, hi = (float(v) for v in snr_db)
    write_text(root / "README.txt", _README.format(
        version=VOICE_FORMAT_VERSION, clips=clips, duration=duration, seed=seed,
        acc=ACCOMPANIMENT_VERSION, lo=lo, hi=hi, audio=AUDIO_DIR, truth=TRUTH_DIR,
        ext=audio_format))
    write_json(root / SETTINGS_JSON, settings)
    marker.unlink()
    return VoiceInfo(root=root, clips=clips, seconds=time.perf_counter() - start,
                     settings=settings)
