"""The embedded concept dataset: music-like clips rendered from seven known concept values.

Real Mid-level concept annotations are not redistributable, so the concept-bottleneck models are
exercised on this synthetic dataset instead. Every clip is rendered with numpy from seven concept
values in [0, 1] (drawn per clip from a seeded RNG) that really change what is heard; concept
ratings are those values on the 1-10 scale plus noise, and the 8 emotion ratings are a fixed,
documented linear map of the concepts plus noise (``generating_map.json`` records it, so a later
check can test whether a concept-bottleneck model recovers it). The files follow the on-disk
formats of Soundtracks Set 1 and the Mid-level dataset exactly, so the same loaders read both.
See docs/synthetic-data.md for the rendering rules, the emotion map and the label rule.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from robustmer import CONCEPTS, EMOTIONS
from robustmer.errors import ConfigError
from robustmer.io import atomic_path, read_json, write_json, write_text

SAMPLE_RATE = 22050
"""Sample rate of the written clips (the front end's rate, so no resampling is needed)."""

FORMAT_VERSION = 3
"""Bumped whenever a change to the generator changes what it writes for the same parameters.
The newest is the default; older versions stay renderable (``version=``), so the dataset that
results were measured on can be written again."""

FORMAT_VERSIONS: tuple[int, ...] = (2, 3)
"""Versions :func:`synthesize` and :func:`render_clip` can write (1 is gone)."""

AUDIO_FORMATS: dict[str, tuple[str, str]] = {
    "flac": ("FLAC", "PCM_16"),
    "wav": ("WAV", "PCM_16"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
"""File extension -> (libsndfile format, subtype)."""

CLASSES: tuple[str, ...] = (
    "ANGER", "FEAR", "HAPPY", "SAD", "SURPRISE", "TENDER",
    "HIGH ENERGY", "LOW ENERGY", "HIGH TENSION", "LOW TENSION", "HIGH VALENCE", "LOW VALENCE",
)
"""The 12 Soundtracks TARGET classes, in the tie-breaking order of :func:`label_from_emotions`."""

MIN_CLIPS = 10
MIN_DURATION = 10.5
"""A clip must hold the 313-frame (10 s at 31.3 fps) excerpt plus margin for trimmed silence."""

# The emotion map: rating (1-9 scale) = bias + weights @ c + N(0, EMOTION_NOISE_SD), clipped to
# [1, 9], with c the 7 concept values in [0, 1]. Rows follow EMOTIONS, columns follow CONCEPTS:
#              melod  artic  rcomp  rstab  disso  tonal  minor
_WEIGHTS = (
    (+1.5, +0.0, +0.0, +0.5, -1.5, +1.0, -2.5),  # valence
    (+0.0, +3.0, +2.0, +0.5, +1.0, +0.0, -0.5),  # energy
    (-0.5, +0.5, +1.0, -0.5, +3.0, -1.0, +1.0),  # tension
    (-0.5, +1.5, +0.5, +0.0, +3.0, -0.5, +0.5),  # anger
    (-0.5, +0.0, +0.5, -1.0, +2.5, -0.5, +2.0),  # fear
    (+1.5, +1.0, +0.5, +0.5, -1.0, +0.5, -2.5),  # happy
    (+1.0, -2.0, -0.5, +0.0, +0.0, +0.0, +3.0),  # sad
    (+2.0, -2.0, -0.5, +0.5, -1.5, +0.5, +0.0),  # tender
)
# Each bias puts the lowest noise-free rating at exactly 1.0, so the map spans the scale.
_BIASES = (5.0, 1.5, 3.0, 2.0, 3.0, 4.5, 3.5, 5.0)
EMOTION_WEIGHTS = np.array(_WEIGHTS, dtype=np.float64)
EMOTION_WEIGHTS.setflags(write=False)
EMOTION_BIASES = np.array(_BIASES, dtype=np.float64)
EMOTION_BIASES.setflags(write=False)
EMOTION_NOISE_SD = 0.3
"""Standard deviation of the rating noise added to each emotion (1-9 scale)."""
CONCEPT_NOISE_SD = 0.4
"""Standard deviation of the rating noise added to each concept rating (1-10 scale)."""

AUDIO_PARAMETERS: dict[str, dict[str, Any]] = {
    "melodiousness": {
        "parameter": "p_step: probability that a melody move is one scale degree (else a leap "
                     "of 3-7 degrees)", "at_0": 0.1, "at_1": 0.95},
    "articulation": {
        "parameter": "gate: sounding length of every note as a fraction of its inter-onset "
                     "interval (legato -> staccato)", "at_0": 0.95, "at_1": 0.15},
    "rhythm_complexity": {
        "parameter": "p_mixed: probability that a beat of the 2-bar rhythm pattern uses a "
                     "subdivision other than straight eighths (quarter, triplet, sixteenths, "
                     "dotted, syncopated)", "at_0": 0.0, "at_1": 0.9},
    "rhythm_stability": {
        "parameter": "jitter: standard deviation of every onset's timing error in beats "
                     "(clipped to +-0.12 beats)", "at_0": 0.08, "at_1": 0.0},
    "dissonance": {
        "parameter": "p_dissonant: probability that the note sounding under a melody note is "
                     "at 1, 2, 6, 11 or 13 semitones (else a diatonic third, sixth or octave), "
                     "and that a chord's fifth becomes a minor second or tritone",
        "at_0": 0.0, "at_1": 1.0},
    "tonal_stability": {
        "parameter": "p_out: probability that a melody note is moved a semitone out of the "
                     "scale; chords are chromatic with probability 1.3 * p_out",
        "at_0": 0.45, "at_1": 0.0},
    "minorness": {
        "parameter": "p_minor: probability that each occurrence of scale degrees 3, 6, 7 (in "
                     "melody and chords) takes its minor form", "at_0": 0.0, "at_1": 1.0},
}
"""Concept -> the audio parameter it sets, linear from ``at_0`` (concept 0) to ``at_1`` (1)."""

ENERGY_CUES: dict[str, Any] = {
    "drive": "0.6 * articulation + 0.4 * rhythm_complexity",
    "tempo_bpm": {"at_0": 72.0, "at_1": 156.0},
    "brightness_rolloff": {"at_0": 1.8, "at_1": 0.8,
                           "meaning": "harmonic h has amplitude h ** -rolloff"},
    "peak": {"at_0": 0.5, "at_1": 0.8},
}
"""Cues of the energy-driving concepts beyond their own rendering: tempo, brightness, level."""

MODE_CUES: dict[str, Any] = {
    "register_drop_semitones": {"at_0": 0.0, "at_1": 12.0,
                                "meaning": "every voice is transposed down by round(value)"},
    "lead_rolloff_add": {"at_0": 0.0, "at_1": 0.8,
                         "meaning": "added to the lead's brightness roll-off (darker timbre)"},
}
"""Cues of minorness beyond the mode itself: minor clips are played lower and darker.

A minor third is a two-bin pattern on a 24-bands-per-octave axis that a thin CNN trained on a
few hundred clips does not pick up (format version 1 had only the mode, and a ridge regression on
clip statistics found no trace of minorness); register and timbre are what listeners also hear
in sad film music, and they make the concept with the largest emotion weights learnable.
"""

CONCEPT_CUES: dict[str, Any] = {
    "pulse_level": {"at_0": 0.0, "at_1": 1.5, "concept": "rhythm_stability",
                    "meaning": "a short bright noise hit (hi-hat) on every beat and half beat "
                               "(jittered like the chords), at this fraction of the chord level"},
    "drone_level": {"at_0": 0.0, "at_1": 0.6, "concept": "tonal_stability",
                    "meaning": "a sustained tonic + fifth pedal under the whole clip, at this "
                               "fraction of the chord level"},
    "rough_drive": {"at_0": 0.0, "at_1": 6.0, "concept": "dissonance",
                    "meaning": "the chords pass through tanh(g x) / tanh(g) with g = 1 + this "
                               "value: intermodulation between the chord notes (harshness)"},
    "lead_gain": {"at_0": 0.3, "at_1": 2.0, "concept": "melodiousness",
                  "meaning": "gain of the melody and its harmony voice (a singable line in "
                             "front of the accompaniment)"},
}
"""Cues beyond each concept's own rendering for the four concepts that format version 2 left
hard to hear (format version 3; each follows the ``concept`` named, linear from ``at_0``).

In version 2 rhythm stability was only an onset jitter of at most 0.08 beats (about one
spectrogram frame), tonal stability only semitone shifts, dissonance only interval choices and
melodiousness only steps against leaps; even the 200-epoch recipe learned the two stability
concepts with test r 0.06-0.29 (docs/results.md). A steady pulse, a tonic pedal, roughness and a
prominent melody are what listeners also hear in these concepts, and they are global enough for
a thin CNN to learn from a hundred clips (docs/synthetic-data.md).
"""

_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
_MINOR = np.array([0, 2, 3, 5, 7, 8, 10])
VOICES: tuple[str, ...] = ("melody", "harmony", "chord_root", "chord_third", "chord_fifth", "bass")
"""Voice names of :class:`Score` (``Score.voice`` holds indices into this tuple)."""
_VOICE_GAIN = np.array([1.0, 0.6, 0.35, 0.35, 0.35, 0.6])
# Beat subdivisions (onset offsets within one beat) a complex rhythm mixes in.
_SUBDIVISIONS = ((0.0,), (0.0, 1 / 3, 2 / 3), (0.0, 0.25, 0.5, 0.75), (0.0, 0.75),
                 (0.0, 0.25, 0.75), (0.5,))
_PROGRESSIONS = ((0, 3, 4, 0), (0, 5, 3, 4), (0, 4, 5, 3))
_TABLE_SIZE = 4096


def _param(name: str, value: float) -> float:
    """The audio parameter of concept ``name`` at concept value ``value`` (linear)."""
    p = AUDIO_PARAMETERS[name]
    return float(p["at_0"] + (p["at_1"] - p["at_0"]) * value)


def _cue(name: str, value: float) -> float:
    """An energy cue (of ``drive``), a mode cue (of minorness) or a format-3 concept cue,
    linear in ``value``."""
    p = {**ENERGY_CUES, **MODE_CUES, **CONCEPT_CUES}[name]
    return float(p["at_0"] + (p["at_1"] - p["at_0"]) * value)


@dataclass(frozen=True)
class Score:
    """The notes of one rendered clip, one entry per note (all arrays of equal length).

    ``onset``/``gate`` in seconds, ``grid`` the onset before jitter, ``pitch`` MIDI numbers,
    ``voice`` indices into :data:`VOICES`, ``out_of_key`` marks chromatic notes.
    """

    onset: np.ndarray
    gate: np.ndarray
    grid: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    voice: np.ndarray
    out_of_key: np.ndarray
    tonic_pc: int
    tempo_bpm: float

    def voice_mask(self, name: str) -> np.ndarray:
        """Boolean mask of the notes of voice ``name``."""
        return self.voice == VOICES.index(name)


@dataclass(frozen=True)
class SynthClip:
    """One rendered clip: float32 mono audio at ``sample_rate`` and the score it was played from."""

    audio: np.ndarray
    score: Score
    concepts: dict[str, float]
    sample_rate: int = SAMPLE_RATE


@dataclass(frozen=True)
class Annotations:
    """Ratings of N clips as written: concepts (N, 7) on 1-10, emotions (N, 8) on 1-9, labels."""

    concept_ratings: np.ndarray
    emotion_ratings: np.ndarray
    labels: list[str]


@dataclass(frozen=True)
class SynthInfo:
    """What :func:`synthesize` produced: folder, clip count, seconds taken, bytes, the map."""

    root: Path
    clips: int
    seconds: float
    bytes: int
    map: dict[str, Any] = field(repr=False)
    reused: bool = False


# --------------------------------------------------------------------------------------------
# Concepts and annotations


def _streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent RNG streams, so the first k clips do not depend on the total clip count."""
    return {name: np.random.default_rng([seed, i])
            for i, name in enumerate(("concepts", "concept_noise", "emotion_noise"))}


def draw_concepts(clips: int, seed: int = 0) -> np.ndarray:
    """The (clips, 7) concept values in [0, 1] of the dataset with this seed (CONCEPTS order)."""
    return _streams(seed)["concepts"].random((clips, len(CONCEPTS)))


def emotion_map(concepts: np.ndarray) -> np.ndarray:
    """Noise-free emotion ratings (N, 8) on the 1-9 scale: biases + weights @ concepts."""
    c = np.asarray(concepts, dtype=np.float64)
    return EMOTION_BIASES + c @ EMOTION_WEIGHTS.T


def _two_decimals(x: np.ndarray) -> np.ndarray:
    """Round exactly as the CSV writes (``'%.2f'``), so labels are recomputable from the files."""
    return np.array([[float(f"{v:.2f}") for v in row] for row in x], dtype=np.float64)


# Each emotion's mean and standard deviation under uniform concepts (noise-free); the label rule
# compares emotions on this common z scale, so no emotion wins just by having a wider range.
LABEL_MEANS = EMOTION_BIASES + 0.5 * EMOTION_WEIGHTS.sum(axis=1)
LABEL_SDS = np.sqrt((EMOTION_WEIGHTS**2).sum(axis=1) / 12.0)
SURPRISE_OFFSET = 0.6
"""Chosen so each of the 12 classes takes 5-11 % of clips (measured on 5000 draws)."""

LABEL_RULE = (
    "TARGET = the class with the highest score, computed from the written (2-decimal) ratings: "
    "z_X = (rating_X - label_means_X) / label_sds_X with label_means = biases + weights @ 0.5 and "
    "label_sds = sqrt(sum(weights**2, axis=1) / 12) (each emotion's mean and sd under uniform "
    "concepts). ANGER, FEAR, HAPPY, SAD, TENDER score z of their emotion; HIGH X scores z_X and "
    "LOW X scores -z_X for X in energy, tension, valence; SURPRISE (aroused and tense but neither "
    "positive nor negative) scores (z_energy + z_tension) / 2 - |z_valence| + 0.6; ties go to "
    "the class listed first in CLASSES."
)
"""How :func:`label_from_emotions` derives the TARGET class (also in generating_map.json)."""


def label_from_emotions(emotions: np.ndarray) -> list[str]:
    """TARGET per row of (N, 8) emotion ratings: the most extreme class (see LABEL_RULE)."""
    e = np.atleast_2d(np.asarray(emotions, dtype=np.float64))
    z = (e - LABEL_MEANS) / LABEL_SDS
    col = {name: z[:, i] for i, name in enumerate(EMOTIONS)}
    scores = np.stack([
        col["anger"], col["fear"], col["happy"], col["sad"],
        (col["energy"] + col["tension"]) / 2.0 - np.abs(col["valence"]) + SURPRISE_OFFSET,
        col["tender"],
        col["energy"], -col["energy"], col["tension"], -col["tension"],
        col["valence"], -col["valence"],
    ], axis=1)
    return [CLASSES[i] for i in np.argmax(scores, axis=1)]


def annotate(concepts: np.ndarray, seed: int = 0) -> Annotations:
    """Concept and emotion ratings (rounded to 2 decimals) and labels for (N, 7) concept values.

    Concept rating = 1 + 9 c + N(0, 0.4) clipped to [1, 10]; emotion rating = the linear map of
    the noise-free concepts + N(0, 0.3) clipped to [1, 9]. Noise comes from ``seed``'s streams.
    """
    c = np.asarray(concepts, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != len(CONCEPTS):
        raise ConfigError(f"concepts: expected shape (N, {len(CONCEPTS)}), got {c.shape}")
    streams = _streams(seed)
    n = c.shape[0]
    cr = 1.0 + 9.0 * c + streams["concept_noise"].normal(0.0, CONCEPT_NOISE_SD, (n, c.shape[1]))
    er = emotion_map(c) + streams["emotion_noise"].normal(0.0, EMOTION_NOISE_SD,
                                                          (n, len(EMOTIONS)))
    cr = _two_decimals(np.clip(cr, 1.0, 10.0))
    er = _two_decimals(np.clip(er, 1.0, 9.0))
    return Annotations(concept_ratings=cr, emotion_ratings=er, labels=label_from_emotions(er))


# --------------------------------------------------------------------------------------------
# Rendering


def _concept_dict(concepts: Mapping[str, float] | Sequence[float] | np.ndarray) -> dict[str, float]:
    """Validate concept values (mapping by name or 7 values in CONCEPTS order) into a dict."""
    if isinstance(concepts, Mapping):
        missing = [n for n in CONCEPTS if n not in concepts]
        extra = [n for n in concepts if n not in CONCEPTS]
        if missing or extra:
            raise ConfigError(f"concepts: expected exactly {list(CONCEPTS)}; "
                              f"missing {missing}, unknown {extra}")
        values = {n: float(concepts[n]) for n in CONCEPTS}
    else:
        arr = np.asarray(concepts, dtype=np.float64).ravel()
        if arr.size != len(CONCEPTS):
            raise ConfigError(f"concepts: expected {len(CONCEPTS)} values in the order "
                              f"{list(CONCEPTS)}, got {arr.size}")
        values = dict(zip(CONCEPTS, arr.tolist(), strict=True))
    for name, v in values.items():
        if not 0.0 <= v <= 1.0:  # also rejects NaN
            raise ConfigError(f"concept {name!r}: expected a value in [0, 1], got {v}")
    return values


def _scale_pitch(degree: np.ndarray, minor: np.ndarray, tonic: int) -> np.ndarray:
    """MIDI pitch of scale-degree indices (0 = tonic, 7 = octave up) in major or minor form."""
    octave, step = np.divmod(degree, 7)
    return tonic + 12 * octave + np.where(minor, _MINOR[step], _MAJOR[step])


def _chromatic_shift(pitch: np.ndarray, minor: np.ndarray, tonic: int,
                     up: np.ndarray) -> np.ndarray:
    """Move each pitch one semitone out of its own scale (direction ``up`` where both work).

    A diatonic scale never has three semitone-adjacent notes, so one direction always works.
    """
    def in_scale(p: np.ndarray) -> np.ndarray:
        pc = (p - tonic) % 12
        return np.where(minor, np.isin(pc, _MINOR), np.isin(pc, _MAJOR))

    up_ok = ~in_scale(pitch + 1)
    down_ok = ~in_scale(pitch - 1)
    go_up = up_ok & (up | ~down_ok)
    return np.where(go_up, pitch + 1, pitch - 1)


def _wavetable(rolloff: float, harmonics: int) -> np.ndarray:
    """One period of a harmonic tone (amplitudes h ** -rolloff), plus a wrap-around sample."""
    phase = np.arange(_TABLE_SIZE + 1) / _TABLE_SIZE * 2.0 * np.pi
    h = np.arange(1, harmonics + 1)
    table = (h[:, None] ** -rolloff * np.sin(h[:, None] * phase)).sum(axis=0)
    return table / np.abs(table).max()


def _render_layer(n: int, sr: int, onset: np.ndarray, gate: np.ndarray, velocity: np.ndarray,
                  pitches: Sequence[np.ndarray], gains: Sequence[float], table: np.ndarray,
                  decay: float) -> np.ndarray:
    """Render voices that share onsets and gates: wavetable oscillators under one envelope.

    Vectorised over samples (no per-note Python loop): each sample gets the index of the note
    sounding at its time (``np.repeat`` over the note spans), then oscillators and the
    attack/decay/release envelope are evaluated for all samples at once; each oscillator's phase
    is continuous across notes, so note changes do not click.
    """
    out = np.zeros(n, dtype=np.float32)
    if onset.size == 0:
        return out
    start = np.minimum(np.round(onset * sr).astype(np.int64), n)
    idx = np.repeat(np.arange(onset.size), np.diff(np.append(start, n)))
    first = int(start[0])
    dt = ((np.arange(first, n) - start[idx]) / sr).astype(np.float32)
    release = np.maximum(dt - gate.astype(np.float32)[idx], np.float32(0.0))
    env = (np.minimum(dt * np.float32(200.0), np.float32(1.0))
           * np.exp(-dt / np.float32(decay) - release / np.float32(0.012))
           * velocity.astype(np.float32)[idx])
    env[release > 0.1] = 0.0
    table32 = table.astype(np.float32)
    mix = np.zeros(n - first, dtype=np.float32)
    for pitch, gain in zip(pitches, gains, strict=True):
        cycles = np.cumsum((440.0 * 2.0 ** ((pitch - 69.0) / 12.0) / sr)[idx])  # float64 phase
        pos = (cycles - np.floor(cycles)) * _TABLE_SIZE  # < _TABLE_SIZE exactly (power of 2)
        i0 = pos.astype(np.int32)
        frac = (pos - i0).astype(np.float32)
        mix += np.float32(gain) * (table32[i0] + (table32[i0 + 1] - table32[i0]) * frac)
    out[first:] = mix * env
    return out


def _score(c: dict[str, float], duration: float, rng: np.random.Generator) -> Score:
    """Compose the notes of one clip from concept values.

    Every random draw has a fixed size that does not depend on the concept values, and the
    concepts only threshold or scale those draws, so two clips rendered with the same seed differ
    only in the aspects whose concepts differ.
    """
    drive = 0.6 * c["articulation"] + 0.4 * c["rhythm_complexity"]
    bpm = _cue("tempo_bpm", drive)
    beat = 60.0 / bpm
    key_pc = int(rng.integers(12))
    tonic = 48 + key_pc - round(_cue("register_drop_semitones", c["minorness"]))
    tonic_pc = tonic % 12
    n_beats = int(np.ceil(duration / beat)) + 1
    n_bars = int(np.ceil(n_beats / 4))
    # Rhythm: a 2-bar pattern of per-beat subdivisions, repeated over the clip.
    mixed = rng.random(8) < _param("rhythm_complexity", c["rhythm_complexity"])
    choice = rng.integers(len(_SUBDIVISIONS), size=8)
    pattern = [_SUBDIVISIONS[k] if m else (0.0, 0.5) for m, k in zip(mixed, choice, strict=True)]
    mel_grid = np.array([b + off for b in range(n_beats) for off in pattern[b % 8]])
    acc_grid = np.arange(n_beats, dtype=np.float64)  # chords on every beat
    bass_grid = np.arange(0, n_beats, 2, dtype=np.float64)  # bass on beats 1 and 3

    jitter_sd = _param("rhythm_stability", c["rhythm_stability"])
    max_notes = 4 * n_beats + 4

    def jittered(grid: np.ndarray) -> np.ndarray:
        noise = rng.standard_normal(max_notes)[: grid.size]
        on = grid + np.clip(noise * jitter_sd, -0.12, 0.12)
        return np.maximum(on * beat, 0.0)

    mel_on, acc_on, bass_on = jittered(mel_grid), jittered(acc_grid), jittered(bass_grid)

    def gates(grid: np.ndarray, spacing_end: float) -> np.ndarray:
        ioi = np.diff(np.append(grid, spacing_end)) * beat
        return ioi * _param("articulation", c["articulation"])

    # Melody: random walk on scale degrees, steps vs leaps, reflected into a two-octave range.
    n_mel = mel_grid.size
    u_step = rng.random(max_notes)[:n_mel]
    leap = rng.integers(3, 8, size=max_notes)[:n_mel]
    sign = np.where(rng.random(max_notes)[:n_mel] < 0.5, -1, 1)
    moves = sign * np.where(u_step < _param("melodiousness", c["melodiousness"]), 1, leap)
    degree = np.empty(n_mel, dtype=np.int64)
    d = 10
    for i, mv in enumerate(moves):  # a short sequential walk (tens of notes); reflection rule
        d = d + mv if 7 <= d + mv <= 20 else d - mv
        d = min(max(d, 7), 20)
        degree[i] = d
    p_minor = _param("minorness", c["minorness"])
    p_out = _param("tonal_stability", c["tonal_stability"])
    p_dis = _param("dissonance", c["dissonance"])
    mel_minor = rng.random(max_notes)[:n_mel] < p_minor
    mel_pitch = _scale_pitch(degree, mel_minor, tonic)
    mel_out = rng.random(max_notes)[:n_mel] < p_out
    up = rng.random(max_notes)[:n_mel] < 0.5
    mel_pitch = np.where(mel_out, _chromatic_shift(mel_pitch, mel_minor, tonic, up), mel_pitch)

    # Harmony: a note under every melody note, consonant (diatonic 3rd/6th/octave) or dissonant.
    below = np.array([2, 5, 7])[rng.integers(3, size=max_notes)[:n_mel]]
    consonant = _scale_pitch(degree - below, mel_minor, tonic) + (mel_pitch - _scale_pitch(
        degree, mel_minor, tonic))
    dissonant = mel_pitch - np.array([1, 2, 6, 11, 13])[rng.integers(5, size=max_notes)[:n_mel]]
    is_dis = rng.random(max_notes)[:n_mel] < p_dis
    har_pitch = np.where(is_dis, dissonant, consonant)

    # Chords: one triad per bar from a diatonic progression, or a chromatic major triad.
    prog = np.array(_PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))])
    bar_deg = prog[np.arange(n_bars) % 4]
    bar_minor = rng.random(n_bars) < p_minor
    bar_chromatic = rng.random(n_bars) < min(1.0, 1.3 * p_out)
    chroma_root = tonic + np.array([1, 3, 6, 8, 10])[rng.integers(5, size=n_bars)]
    root = np.where(bar_chromatic, chroma_root, _scale_pitch(bar_deg, bar_minor, tonic))
    third = np.where(bar_chromatic, chroma_root + 4, _scale_pitch(bar_deg + 2, bar_minor, tonic))
    fifth = np.where(bar_chromatic, chroma_root + 7, _scale_pitch(bar_deg + 4, bar_minor, tonic))
    cluster = root + np.where(rng.random(n_bars) < 0.5, 1, 6)
    fifth = np.where(rng.random(n_bars) < p_dis, cluster, fifth)
    acc_bar = (acc_grid // 4).astype(np.int64)
    bass_bar = (bass_grid // 4).astype(np.int64)

    accent_mel = np.where(mel_grid % 1 == 0, 1.0, 0.8) * (0.9 + 0.1 * rng.random(max_notes)[:n_mel])
    accent_acc = np.where(acc_grid % 4 == 0, 1.0, 0.85)
    end = float(n_beats)
    parts = [
        (mel_on, gates(mel_grid, end), mel_grid, mel_pitch, accent_mel, 0, mel_out),
        (mel_on, gates(mel_grid, end), mel_grid, har_pitch, accent_mel, 1,
         mel_out & ~is_dis),
        (acc_on, gates(acc_grid, end), acc_grid, root[acc_bar], accent_acc, 2,
         bar_chromatic[acc_bar]),
        (acc_on, gates(acc_grid, end), acc_grid, third[acc_bar], accent_acc, 3,
         bar_chromatic[acc_bar]),
        (acc_on, gates(acc_grid, end), acc_grid, fifth[acc_bar], accent_acc, 4,
         bar_chromatic[acc_bar]),
        (bass_on, gates(bass_grid, end), bass_grid, root[bass_bar] - 12,
         np.ones(bass_grid.size), 5, bar_chromatic[bass_bar]),
    ]
    cat = [np.concatenate([np.broadcast_to(np.asarray(p[k], dtype=np.float64), p[0].shape)
                           for p in parts]) for k in range(5)]
    voice = np.concatenate([np.full(p[0].size, p[5], dtype=np.int64) for p in parts])
    out = np.concatenate([np.asarray(p[6], dtype=bool) for p in parts])
    return Score(onset=cat[0], gate=cat[1], grid=cat[2] * beat, pitch=cat[3], velocity=cat[4],
                 voice=voice, out_of_key=out, tonic_pc=tonic_pc, tempo_bpm=bpm)


def _check_version(version: int) -> int:
    if isinstance(version, bool) or version not in FORMAT_VERSIONS:
        raise ConfigError(f"version: expected a synthetic-data format version in "
                          f"{list(FORMAT_VERSIONS)}, got {version!r}")
    return int(version)


def _stability_cues(c: dict[str, float], score: Score, n: int, sample_rate: int,
                    rng: np.random.Generator) -> np.ndarray:
    """The format-3 pulse and pedal (:data:`CONCEPT_CUES`) as one signal of ``n`` samples.

    The click noise is drawn after the score with a size that does not depend on the concepts,
    so the notes of a clip are the same in versions 2 and 3.
    """
    ref = float(_VOICE_GAIN[2:5].sum())  # the chord layer's level
    noise = np.diff(rng.standard_normal(n + 1)).astype(np.float32)  # bright (high-passed) noise
    noise /= np.float32(noise.std())
    env = np.zeros(n, dtype=np.float32)
    length = round(0.1 * sample_rate)
    shape = np.exp(-np.arange(length) / (0.025 * sample_rate)).astype(np.float32)
    beats = score.onset[score.voice_mask("chord_root")]
    for t in np.concatenate([beats, (beats[:-1] + beats[1:]) / 2.0]):
        i = round(t * sample_rate)
        if i < n:
            env[i:i + length] += shape[: n - i]
    pulse = np.float32(0.5 * ref * _cue("pulse_level", c["rhythm_stability"])) * env * noise
    tonic = 48 + score.tonic_pc  # a pedal in the chords' octave, whatever the register drop
    level = _cue("drone_level", c["tonal_stability"]) * ref / 2.0
    drone = _render_layer(n, sample_rate, np.zeros(1), np.full(1, n / sample_rate), np.ones(1),
                          [np.full(1, float(tonic)), np.full(1, float(tonic + 7))],
                          [level, level], _wavetable(3.0, 4), 1e6)
    return pulse + drone


def render_clip(concepts: Mapping[str, float] | Sequence[float] | np.ndarray, *,
                duration: float = 12.0, seed: int | Sequence[int] = 0,
                sample_rate: int = SAMPLE_RATE, version: int = FORMAT_VERSION) -> SynthClip:
    """Render one clip from 7 concept values in [0, 1] (a mapping by name or CONCEPTS order).

    Deterministic for the same (concepts, duration, seed, sample_rate, version); exposed so
    tests and users can check that each concept changes what is heard. ``version`` 3 adds the
    cues of :data:`CONCEPT_CUES` to the notes that version 2 plays.
    """
    c = _concept_dict(concepts)
    version = _check_version(version)
    if not duration > 0:
        raise ConfigError(f"duration: expected a positive number of seconds, got {duration}")
    rng = np.random.default_rng(seed)
    score = _score(c, duration, rng)
    n = round(duration * sample_rate)
    drive = 0.6 * c["articulation"] + 0.4 * c["rhythm_complexity"]
    tables = {
        "lead": _wavetable(_cue("brightness_rolloff", drive)
                           + _cue("lead_rolloff_add", c["minorness"]), 8),
        "chord": _wavetable(2.5, 6),
        "bass": _wavetable(1.5, 6),
    }
    mix = np.zeros(n, dtype=np.float32)
    v3 = version >= 3
    lead_gain = _cue("lead_gain", c["melodiousness"]) if v3 else 1.0
    for voices, kind, decay, gain in (((0, 1), "lead", 0.9, lead_gain),
                                      ((2, 3, 4), "chord", 0.7, 1.0), ((5,), "bass", 0.6, 1.0)):
        m = score.voice == voices[0]  # the voices of a layer share onsets, gates, velocities
        layer = _render_layer(n, sample_rate, score.onset[m], score.gate[m], score.velocity[m],
                              [score.pitch[score.voice == v] for v in voices],
                              [gain * float(_VOICE_GAIN[v]) for v in voices], tables[kind], decay)
        if v3 and kind == "chord":  # harshness: intermodulation of the chord notes
            g = np.float32(1.0 + _cue("rough_drive", c["dissonance"]))
            layer = np.tanh(g * layer) / np.tanh(g)
        mix += layer
    if v3:
        mix += _stability_cues(c, score, n, sample_rate, rng)
    fade = min(n, round(0.01 * sample_rate))
    mix[n - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    peak = float(np.abs(mix).max())
    if not np.isfinite(peak) or peak == 0.0:  # cannot happen for valid concepts; guard anyway
        raise ConfigError(f"render_clip: rendering produced silent or non-finite audio for {c}")
    audio = (mix * (_cue("peak", drive) / peak)).astype(np.float32)
    return SynthClip(audio=audio, score=score, concepts=c, sample_rate=sample_rate)


# --------------------------------------------------------------------------------------------
# The dataset on disk


def generating_map(clips: int, seed: int, duration: float, audio_format: str,
                   version: int = FORMAT_VERSION) -> dict[str, Any]:
    """The content of ``generating_map.json``: parameters, the emotion map and audio rules.

    Besides the map on the concept values in [0, 1], it gives the same map on the scales the
    loaders return (ratings / 10), ignoring noise: emotion/10 = b' + W' (concept rating / 10),
    with W' = W / 9 and b' = (b - W @ 1 / 9) / 10.
    """
    w, b = EMOTION_WEIGHTS, EMOTION_BIASES
    return {
        "format_version": _check_version(version),
        "generator": "robustmer.data.synth",
        "parameters": {"clips": clips, "seed": seed, "duration": float(duration),
                       "audio_format": audio_format, "sample_rate": SAMPLE_RATE},
        "concepts": list(CONCEPTS),
        "emotions": list(EMOTIONS),
        "weights": w.tolist(),
        "biases": b.tolist(),
        "emotion_scale": [1.0, 9.0],
        "emotion_noise_sd": EMOTION_NOISE_SD,
        "concept_scale": [1.0, 10.0],
        "concept_noise_sd": CONCEPT_NOISE_SD,
        "rule": "concept_rating = clip(1 + 9 c + N(0, concept_noise_sd), 1, 10); "
                "emotion_rating = clip(biases + weights @ c + N(0, emotion_noise_sd), 1, 9); "
                "c in [0, 1] drawn uniformly per clip; both rounded to 2 decimals",
        "scaled_map": {
            "meaning": "emotion_rating/10 = biases + weights @ (concept_rating/10), noise-free",
            "weights": (w / 9.0).tolist(),
            "biases": ((b - w.sum(axis=1) / 9.0) / 10.0).tolist(),
        },
        "label_rule": LABEL_RULE,
        "label_means": LABEL_MEANS.tolist(),
        "label_sds": LABEL_SDS.tolist(),
        "classes": list(CLASSES),
        "audio_parameters": AUDIO_PARAMETERS,
        "energy_cues": ENERGY_CUES,
        "mode_cues": MODE_CUES,
        **({"concept_cues": CONCEPT_CUES} if version >= 3 else {}),
        "midlevel_song_id": "1000 + clip number",
    }


def _ratings_csv(ids: list[str], ann: Annotations) -> str:
    """Soundtracks ``mean_ratings_set1.csv`` text, including the byte-order mark."""
    lines = [",".join(["number", *EMOTIONS, "TARGET"])]
    for k, cid in enumerate(ids):
        vals = ",".join(f"{v:.2f}" for v in ann.emotion_ratings[k])
        lines.append(f"{cid},{vals},{ann.labels[k]}")
    return "\ufeff" + "\n".join(lines) + "\n"


def _midlevel_csvs(ids: list[str], ann: Annotations) -> tuple[str, str]:
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


def _check_args(clips: int, seed: int, duration: float, audio_format: str) -> None:
    if isinstance(clips, bool) or not isinstance(clips, int | np.integer) or clips < MIN_CLIPS:
        raise ConfigError(f"clips: expected an integer >= {MIN_CLIPS}, got {clips!r}")
    if clips > 999:
        raise ConfigError(f"clips: expected at most 999 (3-digit ids like '001'), got {clips}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed: expected a non-negative integer, got {seed!r}")
    if not isinstance(duration, int | float) or not duration >= MIN_DURATION:
        raise ConfigError(f"duration: expected seconds >= {MIN_DURATION} so the 10 s excerpt "
                          f"fits, got {duration!r}")
    if audio_format not in AUDIO_FORMATS:
        raise ConfigError(f"audio_format: expected one of {sorted(AUDIO_FORMATS)}, "
                          f"got {audio_format!r}")


def _folder_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _readable(path: Path) -> bool:
    try:
        return sf.info(str(path)).frames > 0
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
    version = _check_version(version)
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
    concepts = draw_concepts(clips, seed)
    for k, path in enumerate(audio_paths):
        if path.exists() and _readable(path):
            continue
        clip = render_clip(concepts[k], duration=duration, seed=(seed, 1000 + k), version=version)
        with atomic_path(path) as tmp:
            sf.write(str(tmp), clip.audio, SAMPLE_RATE, format=fmt, subtype=subtype)

    ann = annotate(concepts, seed)
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
