"""The voice dataset's fixed settings: format versions, class names, vowel formants, the voice
and decoy renderers' parameters, the label rules and the argument defaults (all recorded in
``voice.json``)."""

from __future__ import annotations

from typing import Any

VOICE_FORMAT_VERSION = 1
"""Bumped whenever a change to this generator changes what it writes for the same parameters."""

ACCOMPANIMENT_VERSION = 3
"""The concept dataset's format the accompaniment is rendered with (pinned: a newer default of
``synth`` must not change this dataset silently)."""

LABELS: tuple[str, str] = ("no_voice", "voice")
"""Class names, index = label (0 = no voice, 1 = voice), for clips and excerpts alike."""

VOWELS: dict[str, tuple[float, float, float]] = {
    "a": (850.0, 1220.0, 2810.0),
    "e": (610.0, 2330.0, 2990.0),
    "i": (310.0, 2790.0, 3310.0),
    "o": (590.0, 920.0, 2710.0),
    "u": (370.0, 950.0, 2670.0),
}
"""F1, F2, F3 (Hz) per vowel: Peterson & Barney (1952), average female speaker."""

VOICE_PARAMETERS: dict[str, Any] = {
    "p_voice": "probability that a clip has voice (an argument of synthesize_voice)",
    "spans_per_voiced_clip": [1, 3],
    "span_seconds": [1.5, 5.0],
    "min_gap_seconds": 0.5,
    "edge_seconds": 0.25,
    "syllable_seconds": [0.18, 0.6],
    "midi_range": [51, 74],
    "register_centre_midi": [56, 69],
    "glide_seconds": 0.04,
    "vibrato_hz": [5.0, 6.0],
    "vibrato_semitones": [0.3, 0.7],
    "vibrato_onset_seconds": 0.25,
    "jitter_semitones_sd": 0.08,
    "jitter_step_seconds": 0.01,
    "source_tilt": 1.0,
    "max_harmonic_hz": [7000.0, 8000.0],
    "formant_bandwidths_hz": [90.0, 110.0, 170.0],
    "formant_gains": [1.0, 0.5, 0.3],
    "syllable_crossfade_seconds": 0.03,
    "syllable_dip": [0.3, 0.7],
    "syllable_dip_seconds": 0.06,
    "syllable_level": [0.75, 1.0],
    "fade_in_seconds": 0.03,
    "fade_out_seconds": 0.06,
}
"""Every setting of the voice renderer (``VOICE_PARAMETERS`` in ``voice.json``); pairs are
uniform ranges drawn per span (register, vibrato), per syllable (length, level, dip) or fixed
limits (``max_harmonic_hz``: harmonics fade out between the two frequencies)."""

DECOY_PARAMETERS: dict[str, Any] = {
    "p_decoy": "probability that a clip has the decoy (an argument of synthesize_voice), "
               "independent of the voice; its spans are planned like the voice's",
    "same_as_voice": "notes, register, glides, syllable (note) lengths, levels, source and "
                     "harmonic range, span lengths; level drawn from the same snr_db range "
                     "against the concept accompaniment",
    "vibrato_semitones": 0.0,
    "jitter_semitones_sd": 0.0,
    "timbre": "the mean of the five vowels' formant filters, the same for every note",
    "attack_seconds": 0.01,
    "decay_seconds": [0.3, 1.0],
    "restrike_dip": 0.95,
    "restrike_seconds": 0.03,
}
"""The instrumental decoy: a lead instrument in the voice's register and spectral range that is
not a voice (steady pitch, no formant changes, plucked notes). Without it the voice was the only
source of harmonics between about 2 and 7 kHz, and a logistic regression on each excerpt's band
means and deviations detected it almost as well as the CNN (docs/synthetic-data.md)."""

LABEL_RULES: dict[str, str] = {
    "frame": "a frame is voiced when its window centre (sample int(i * hop) + frame_size // 2, "
             "hop = sample_rate / fps) lies in a span [start, end)",
    "clip": "'voice' when the clip has at least one span (any voice), else 'no_voice'",
    "excerpt": "the label of the excerpt's central frame, start + frames // 2 (excerpt_labels "
               "rule='center'; rule='majority' takes the majority, ties voiced)",
    "mask": "voiced frames x bands where the voice alone (as mixed) has a filtered magnitude "
            ">= its clip maximum * 10 ** (-mask_db / 20)",
    "dominant": "mask bins where the voice alone is also louder than the accompaniment alone "
                "(with the decoy)",
    "snr_db": "10 log10(mean(voice ** 2) / mean(accompaniment ** 2)) over the voiced samples, "
              "the accompaniment including the decoy; the decoy's own level is set the same way "
              "against the concept accompaniment over its spans",
}
"""How labels and ground truth are derived (also in ``voice.json``)."""

DEFAULT_SNR_DB: tuple[float, float] = (-12.0, -6.0)
"""The voice's level below everything else, drawn uniformly per clip: a CNN of width 0.25 finds
it in a few CPU minutes (5.5 % excerpt error, a linear detector on band statistics 14 %;
docs/synthetic-data.md); at -6 to 0 dB (before the decoy) the task was nearly solved (2 %)."""
DEFAULT_MASK_DB = 30.0
DEFAULT_P_VOICE = 0.6
DEFAULT_P_DECOY = 0.6
EXCERPT_RULES: tuple[str, ...] = ("center", "majority")
MIN_DURATION = 4.0
"""A clip must hold a 1.5 s span plus its 0.25 s edges with room to place it, and a 50-frame
excerpt."""
