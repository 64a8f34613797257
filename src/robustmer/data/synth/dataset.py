"""The embedded dataset on disk: :func:`synthesize` writes the rendered clips and their ratings in
the layouts of Soundtracks Set 1 and the Mid-level dataset, plus ``generating_map.json``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

import robustmer.data.synth.concepts as cp
from robustmer import CONCEPTS, EMOTIONS
from robustmer.audio import SAMPLE_RATE
from robustmer.data.synth.render import (
    FORMAT_VERSION,
    check_version,
    render_clip,
)
from robustmer.errors import ConfigError
from robustmer.io import atomic_path, read_json, write_json, write_text

AUDIO_FORMATS: dict[str, tuple[str, str]] = {
    "flac": ("FLAC", "PCM_16"),
    "wav": ("WAV", "PCM_16"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
"""File extension -> (libsndfile format, subtype)."""

MIN_CLIPS = 10
MIN_DURATION = 10.5
"""A clip must hold the 313-frame (10 s at 31.3 fps) excerpt plus margin for trimmed silence."""

@dataclass(frozen=True)
class SynthInfo:
    """What :func:`synthesize` produced: folder, clip count, seconds taken, bytes, the map."""

    root: Path
    clips: int
    seconds: float
    bytes: int
    map: dict[str, Any] = field(repr=False)
    reused: bool = False


def generating_map(clips: int, seed: int, duration: float, audio_format: str,
                   version: int = FORMAT_VERSION) -> dict[str, Any]:
    """The content of ``generating_map.json``: parameters, the emotion map and audio rules.

    Besides the map on the concept values in [0, 1], it gives the same map on the scales the
    loaders return (ratings / 10), ignoring noise: emotion/10 = b' + W' (concept rating / 10),
    with W' = W / 9 and b' = (b - W @ 1 / 9) / 10.
    """
    w, b = cp.EMOTION_WEIGHTS, cp.EMOTION_BIASES
    return {
        "format_version": check_version(version),
        "generator": "robustmer.data.synth",
        "parameters": {"clips": clips, "seed": seed, "duration": float(duration),
                       "audio_format": audio_format, "sample_rate": SAMPLE_RATE},
        "concepts": list(CONCEPTS),
        "emotions": list(EMOTIONS),
        "weights": w.tolist(),
        "biases": b.tolist(),
        "emotion_scale": [1.0, 9.0],
        "emotion_noise_sd": cp.EMOTION_NOISE_SD,
        "concept_scale": [1.0, 10.0],
        "concept_noise_sd": cp.CONCEPT_NOISE_SD,
        "rule": "concept_rating = clip(1 + 9 c + N(0, concept_noise_sd), 1, 10); "
                "emotion_rating = clip(biases + weights @ c + N(0, emotion_noise_sd), 1, 9); "
                "c in [0, 1] drawn uniformly per clip; both rounded to 2 decimals",
        "scaled_map": {
            "meaning": "emotion_rating/10 = biases + weights @ (concept_rating/10), noise-free",
            "weights": (w / 9.0).tolist(),
            "biases": ((b - w.sum(axis=1) / 9.0) / 10.0).tolist(),
        },
        "label_rule": cp.LABEL_RULE,
        "label_means": cp.LABEL_MEANS.tolist(),
        "label_sds": cp.LABEL_SDS.tolist(),
        "classes": list(cp.CLASSES),
        "audio_parameters": cp.AUDIO_PARAMETERS,
        "energy_cues": cp.ENERGY_CUES,
        "mode_cues": cp.MODE_CUES,
        **({"concept_cues": cp.CONCEPT_CUES} if version >= 3 else {}),
        "midlevel_song_id": "1000 + clip number",
    }


def _ratings_csv(ids: list[str], ann: cp.Annotations) -> str:
    """Soundtracks ``mean_ratings_set1.csv`` text, including the byte-order mark."""
    lines = [",".join(["number", *EMOTIONS, "TARGET"])]
    for k, cid in enumerate(ids):
        vals = ",".join(f"{v:.2f}" for v in ann.emotion_ratings[k])
        lines.append(f"{cid},{vals},{ann.labels[k]}")
    return "\ufeff" + "\n".join(lines) + "\n"


def _midlevel_csvs(ids: list[str], ann: cp.Annotations) -> tuple[str, str]:
    """Mid-level ``metadata.csv`` (';'-separated) and ``annotations.csv`` text."""
    meta = ["song id;Source;ID at file source"]
    notes = [",".join(["song_id", *CONCEPTS])]
    for k, cid in enumerate(ids):
        song = 1000 + int(cid)
        meta.append(f"{song};soundtracks;{cid}")
        notes.append(f"{song}," + ",".join(f"{v:.2f}" for v in ann.concept_ratings[k]))
    return "\n".join(meta) + "\n", "\n".join(notes) + "\n"


_README = """Synthetic concept dataset written by robustmer.data.synth (format version {version}).

{clips} music-like clips of {duration:g} s, rendered with numpy from seven known mid-level concept
values per clip (seed {seed}). Layout and file formats follow Soundtracks Set 1 and the Mid-level
Perceptual Features dataset:
  Set1/NNN.{ext:<4}                audio, 22050 Hz mono
  mean_ratings_set1.csv        8 emotion ratings (1-9) + TARGET class, UTF-8 with BOM
  midlevel/metadata.csv        ';'-separated: song id;Source;ID at file source
  midlevel/annotations.csv     song_id + 7 concept ratings (1-10)
  generating_map.json          the linear concept->emotion map, noise levels, audio rules
The emotions are a known linear map of the concepts plus noise, so a concept-bottleneck model
trained on this data can be checked against generating_map.json. Not real music; not real ratings.
See docs/synthetic-data.md in the robustmer repository.
"""

_TEXT_OUTPUTS = ("mean_ratings_set1.csv", "midlevel/metadata.csv", "midlevel/annotations.csv",
                 "README.txt")
_TMP_NAME = re.compile(r"^\.[^/]+\.tmp$")


def check_clips_seed_format(clips: int, seed: int, audio_format: str,
                            min_clips: int = MIN_CLIPS,
                            formats: Collection[str] = tuple(AUDIO_FORMATS)) -> None:
    """The arguments every generated dataset shares (the embedded one and the voice task):
    a clip count with 3-digit ids, a non-negative seed, an audio format of ``formats``
    (default: every one of ``AUDIO_FORMATS``); a ``ConfigError`` names the parameter."""
    if isinstance(clips, bool) or not isinstance(clips, int | np.integer) or clips < min_clips:
        raise ConfigError(f"clips: expected an integer >= {min_clips}, got {clips!r}")
    if clips > 999:
        raise ConfigError(f"clips: expected at most 999 (3-digit ids like '001'), got {clips}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed: expected a non-negative integer, got {seed!r}")
    if audio_format not in formats:
        raise ConfigError(f"audio_format: expected one of {sorted(formats)}, "
                          f"got {audio_format!r}")


def _check_args(clips: int, seed: int, duration: float, audio_format: str) -> None:
    check_clips_seed_format(clips, seed, audio_format)
    if not isinstance(duration, int | float) or not duration >= MIN_DURATION:
        raise ConfigError(f"duration: expected seconds >= {MIN_DURATION} so the 10 s excerpt "
                          f"fits, got {duration!r}")


def _folder_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _readable(path: Path) -> bool:
    try:
        return bool(sf.info(str(path)).frames > 0)
    except (sf.LibsndfileError, RuntimeError, OSError):
        return False


def synthesize(out: Path, clips: int = 120, seed: int = 0, duration: float = 12.0,
               audio_format: str = "flac", version: int = FORMAT_VERSION) -> SynthInfo:
    """Write the synthetic concept dataset to ``out`` (Soundtracks + Mid-level formats).

    Deterministic: the same (clips, seed, duration, audio_format, version) give byte-identical
    annotation files and identical audio samples (``version``: one of :data:`FORMAT_VERSIONS`).
    A complete dataset with the same parameters is returned as is; a partially written one
    (``generating_map.json`` is written last) is completed. A folder holding anything else, or
    a dataset with other parameters or version, raises ``ConfigError``.
    """
    _check_args(clips, seed, duration, audio_format)
    version = check_version(version)
    clips, seed, duration = int(clips), int(seed), float(duration)
    start = time.perf_counter()
    root = Path(out)
    gmap = generating_map(clips, seed, duration, audio_format, version)
    ids = [f"{k:03d}" for k in range(1, clips + 1)]
    set1 = root / "Set1"
    audio_paths = [set1 / f"{cid}.{audio_format}" for cid in ids]
    map_path = root / "generating_map.json"
    marker = root / ".synth-parameters.json"  # written first, so a partial folder is ours

    if root.exists() and not root.is_dir():
        raise ConfigError(f"out: {root} exists and is not a folder")
    if map_path.exists() or marker.exists():
        found = read_json(map_path if map_path.exists() else marker)
        if found.get("format_version") != version or found.get("parameters") != gmap[
                "parameters"]:
            raise ConfigError(
                f"out: {root} already holds a synthetic dataset with other parameters "
                f"({found.get('parameters')}, format {found.get('format_version')}); "
                f"remove it or choose another folder")
        outputs = [root / name for name in _TEXT_OUTPUTS]
        if map_path.exists() and all(p.exists() for p in [*audio_paths, *outputs]):
            return SynthInfo(root=root, clips=clips, seconds=time.perf_counter() - start,
                             bytes=_folder_size(root), map=gmap, reused=True)
    elif root.exists() and any(root.iterdir()):
        raise ConfigError(f"out: {root} is not empty and holds no synthetic dataset; "
                          f"choose an empty or new folder")

    write_json(marker, {"format_version": version, "parameters": gmap["parameters"]})
    set1.mkdir(parents=True, exist_ok=True)
    for stale in set1.iterdir():  # temporaries left by a killed run (atomic_path's naming)
        if _TMP_NAME.match(stale.name):
            stale.unlink()
    fmt, subtype = AUDIO_FORMATS[audio_format]
    concepts = cp.draw_concepts(clips, seed)
    for k, path in enumerate(audio_paths):
        if path.exists() and _readable(path):
            continue
        clip = render_clip(concepts[k], duration=duration, seed=(seed, 1000 + k), version=version)
        with atomic_path(path) as tmp:
            sf.write(str(tmp), clip.audio, SAMPLE_RATE, format=fmt, subtype=subtype)

    ann = cp.annotate(concepts, seed)
    write_text(root / "mean_ratings_set1.csv", _ratings_csv(ids, ann))
    meta, notes = _midlevel_csvs(ids, ann)
    write_text(root / "midlevel" / "metadata.csv", meta)
    write_text(root / "midlevel" / "annotations.csv", notes)
    write_text(root / "README.txt", _README.format(version=version, clips=clips,
                                                   duration=duration, seed=seed,
                                                   ext=audio_format))
    write_json(map_path, gmap)
    marker.unlink()
    return SynthInfo(root=root, clips=clips, seconds=time.perf_counter() - start,
                     bytes=_folder_size(root), map=gmap)
