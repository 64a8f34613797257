"""What the concepts of the embedded dataset mean: seeded concept values, the documented linear
map from concepts to the 8 emotion ratings, the rating noise, the TARGET label rule, and the audio
parameter and cues each concept sets (the rules ``generating_map.json`` records).

Nothing here renders audio or writes files (:mod:`robustmer.data.synth.render`,
:mod:`robustmer.data.synth.dataset`); docs/synthetic-data.md documents the map and the rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from robustmer import CONCEPTS, EMOTIONS
from robustmer.errors import ConfigError

CLASSES: tuple[str, ...] = (
    "ANGER", "FEAR", "HAPPY", "SAD", "SURPRISE", "TENDER",
    "HIGH ENERGY", "LOW ENERGY", "HIGH TENSION", "LOW TENSION", "HIGH VALENCE", "LOW VALENCE",
)
"""The 12 Soundtracks TARGET classes, in the tie-breaking order of :func:`label_from_emotions`."""

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


def audio_parameter(name: str, value: float) -> float:
    """The audio parameter of concept ``name`` at concept value ``value`` (linear)."""
    p = AUDIO_PARAMETERS[name]
    return float(p["at_0"] + (p["at_1"] - p["at_0"]) * value)


def cue(name: str, value: float) -> float:
    """An energy cue (of ``drive``), a mode cue (of minorness) or a format-3 concept cue,
    linear in ``value``."""
    p = {**ENERGY_CUES, **MODE_CUES, **CONCEPT_CUES}[name]
    return float(p["at_0"] + (p["at_1"] - p["at_0"]) * value)


@dataclass(frozen=True)
class Annotations:
    """Ratings of N clips as written: concepts (N, 7) on 1-10, emotions (N, 8) on 1-9, labels."""

    concept_ratings: np.ndarray
    emotion_ratings: np.ndarray
    labels: list[str]


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


def concept_values(concepts: Mapping[str, float] | Sequence[float] | np.ndarray
                   ) -> dict[str, float]:
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
