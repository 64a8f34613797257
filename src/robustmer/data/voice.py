"""The voice detection dataset: sung-vowel-like phrases over the embedded accompaniment.

An analogue of singing-voice detection (Schlüter's 50-frame excerpt detector) with a planted
ground truth of *where* the voice is, so explanations of a voice detector can be checked against
it (localisation, docs/synthetic-data.md "The voice detection task"). Each clip is the format-3
accompaniment of the concept dataset (:func:`robustmer.data.synth.render_clip`, unchanged, with
the same per-clip concepts and render seed as ``synthesize`` with the same ``seed``) plus, in some
time spans of some clips, a voice-like source:

- a band-limited harmonic source (amplitudes ``h ** -tilt``: a glottal pulse train's roll-off
  after lip radiation) whose f0 follows a note contour in the accompaniment's key (singing range
  about 155-590 Hz, notes glide into each other), with vibrato (5-6 Hz, 0.3-0.7 semitone) that
  grows into every note, and jitter (slow random f0 wobble);
- through the formant filters of a vowel per syllable (F1/F2/F3 from Peterson & Barney's female
  averages, scipy's ``iirpeak`` resonators in parallel), cross-faded between syllables;
- under a syllable-like amplitude envelope (a dip at every syllable boundary, a level per
  syllable, fades at the phrase's ends) that is exactly zero outside the span.

An instrumental decoy (:data:`DECOY_PARAMETERS`) plays in some spans of some clips,
independently of the voice: the same kind of notes and source in the same register, but a
steady pitch, one static timbre and plucked notes. It keeps the task from being solved by band
energies alone (without it, the voice was the only source of harmonics between about 2 and
7 kHz). The voice's level is set per clip by an SNR drawn from ``snr_db`` (voice power over
the power of everything else, both measured over the voiced samples).

Labels and ground truth are computed at the front end's frame rate
(:class:`robustmer.features.FrontEndConfig`, 31.3 fps): a frame is labelled voiced when its
window centre lies inside a span; its ``mask`` holds the bands of the 149-band log-filtered
spectrogram where the voice alone (as mixed) is within ``mask_db`` of its loudest band of the
clip, and ``dominant`` those of them where the voice is also louder than everything else.
"""

from __future__ import annotations

import io
import re
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf
import torch
from scipy import signal

from robustmer.data.synth import AUDIO_FORMATS, SAMPLE_RATE, draw_concepts, render_clip
from robustmer.errors import ConfigError, DatasetError
from robustmer.features import FrontEndConfig, LogFilteredSpectrogram
from robustmer.io import atomic_path, read_json, write_csv, write_json, write_text

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


# --------------------------------------------------------------------------------------------
# Labels


def frame_centres(n_samples: int, config: FrontEndConfig | None = None) -> np.ndarray:
    """int64 centre sample of every front-end frame: ``int(i * hop) + frame_size // 2``."""
    cfg = config if config is not None else FrontEndConfig()
    return cfg.frame_starts(n_samples) + cfg.frame_size // 2


def span_frames(spans: np.ndarray, n_samples: int,
                config: FrontEndConfig | None = None) -> np.ndarray:
    """``(n, 2)`` int64 ``[start_frame, end_frame)`` of sample spans ``(n, 2)`` ``[s0, s1)``:
    the first frame whose centre is >= ``s0`` and the first whose centre is >= ``s1``."""
    centres = frame_centres(n_samples, config)
    s = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    return np.searchsorted(centres, s, side="left").astype(np.int64)


def frame_labels(spans: np.ndarray, n_samples: int,
                 config: FrontEndConfig | None = None) -> np.ndarray:
    """``(T,)`` bool: frame ``i`` is voiced when its centre lies in a sample span ``[s0, s1)``
    (``T = config.num_frames(n_samples)``, the front end's frame count)."""
    cfg = config if config is not None else FrontEndConfig()
    labels = np.zeros(cfg.num_frames(n_samples), dtype=bool)
    for a, b in span_frames(spans, n_samples, cfg):
        labels[a:b] = True
    return labels


def excerpt_labels(frame_labels: np.ndarray, frames: int = 50, hop: int = 1,
                   rule: str = "center") -> tuple[np.ndarray, np.ndarray]:
    """Start frames and labels of the ``frames``-long excerpts of a clip, every ``hop`` frames.

    Returns ``(starts, labels)``, int64 arrays of equal length: excerpt ``k`` is
    ``spec[starts[k]:starts[k] + frames]``. ``rule="center"`` (Schlüter's detector) labels it with
    its central frame ``start + frames // 2`` (for an even ``frames`` the later of the two
    middle frames); ``"majority"`` with the majority of its frames (a tie counts as voiced). A
    clip shorter than ``frames`` has no excerpts.
    """
    lab = np.asarray(frame_labels)
    if lab.ndim != 1:
        raise ConfigError(f"frame_labels: expected a 1-D array, got shape {lab.shape}")
    for name, val in (("frames", frames), ("hop", hop)):
        if isinstance(val, bool) or not isinstance(val, int | np.integer) or val < 1:
            raise ConfigError(f"{name}: expected a positive integer, got {val!r}")
    if rule not in EXCERPT_RULES:
        raise ConfigError(f"rule: expected one of {list(EXCERPT_RULES)}, got {rule!r}")
    lab = lab.astype(bool)
    starts = np.arange(0, max(lab.size - frames + 1, 0), hop, dtype=np.int64)
    if rule == "center":
        out = lab[starts + frames // 2]
    else:
        counts = np.concatenate([[0], np.cumsum(lab, dtype=np.int64)])
        out = 2 * (counts[starts + frames] - counts[starts]) >= frames
    return starts, out.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Rendering


@dataclass(frozen=True)
class VoiceTrack:
    """The voice alone (before its level is set): float32 audio, exactly zero outside the spans,
    the per-sample f0 in Hz (0 outside), the spans in samples ``(n, 2)`` and each span's mean
    f0 and syllable count."""

    audio: np.ndarray
    f0: np.ndarray
    spans: np.ndarray
    span_f0: np.ndarray
    syllables: np.ndarray


@dataclass(frozen=True)
class VoiceClip:
    """One clip of the voice dataset: the mix and its parts (as mixed, float32; ``accompaniment``
    includes the decoy), labels and the ground truth (see :data:`LABEL_RULES`). ``spans`` and
    ``decoy_spans`` in samples, ``span_frames`` in frames (``[start, end)``), ``f0`` the voice's
    f0 at each frame centre (0 where unvoiced)."""

    audio: np.ndarray
    voice: np.ndarray
    accompaniment: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    dominant: np.ndarray
    f0: np.ndarray
    spans: np.ndarray
    span_frames: np.ndarray
    span_f0: np.ndarray
    snr_db: float
    decoy_spans: np.ndarray
    concepts: dict[str, float]
    sample_rate: int = SAMPLE_RATE


def _uniform(rng: np.random.Generator, pair: Sequence[float], size: int | None = None) -> Any:
    return rng.uniform(float(pair[0]), float(pair[1]), size)


def plan_spans(rng: np.random.Generator, duration: float, p_voice: float,
               sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``(n, 2)`` int64 sample spans ``[s0, s1)`` of one clip, sorted and non-overlapping.

    With probability ``p_voice`` the clip gets 1-3 spans of 1.5-5 s (shortened together when
    they do not fit), at least ``min_gap_seconds`` apart and ``edge_seconds`` from the clip's
    ends; the free time is shared out at random. Draw sizes do not depend on the outcome.
    """
    p = VOICE_PARAMETERS
    u_voice = rng.random()
    lo, hi = p["spans_per_voiced_clip"]
    count = int(rng.integers(lo, hi + 1))
    lengths = _uniform(rng, p["span_seconds"], hi)
    cuts = rng.random(hi + 1)
    if u_voice >= p_voice:
        return np.zeros((0, 2), dtype=np.int64)
    gap, edge = float(p["min_gap_seconds"]), float(p["edge_seconds"])
    room = duration - 2 * edge - (count - 1) * gap
    length = lengths[:count]
    if length.sum() > room:
        length = length * (room / length.sum())
    share = cuts[: count + 1] / cuts[: count + 1].sum() * (room - length.sum())
    starts = edge + np.cumsum(share[:count]) + np.concatenate([[0.0], np.cumsum(length + gap)[
        :-1]])
    spans = np.stack([starts, starts + length], axis=1)
    return np.round(spans * sample_rate).astype(np.int64)


def _hann_smooth(x: np.ndarray, seconds: float, sample_rate: int) -> np.ndarray:
    """``x`` convolved with a unit-sum Hann window of ``seconds`` (edges held), so a partition
    of unity stays one and steps become raised-cosine glides."""
    n = max(3, round(seconds * sample_rate) | 1)
    kernel = np.hanning(n + 2)[1:-1]
    kernel /= kernel.sum()
    padded = np.pad(x, ((n // 2, n // 2),) + ((0, 0),) * (x.ndim - 1), mode="edge")
    return signal.oaconvolve(padded, kernel.reshape((-1,) + (1,) * (x.ndim - 1)), mode="valid",
                             axes=0)


def _formant_filters(sample_rate: int) -> dict[str, list[np.ndarray]]:
    """Per vowel, its three resonators as second-order sections (``scipy.signal.iirpeak``)."""
    bw = VOICE_PARAMETERS["formant_bandwidths_hz"]
    return {v: [signal.tf2sos(*signal.iirpeak(f, f / b, fs=sample_rate))
                for f, b in zip(fs, bw, strict=True)] for v, fs in VOWELS.items()}


def _render_span(n: int, rng: np.random.Generator, tonic_pc: int, sample_rate: int,
                 decoy: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """One phrase of ``n`` samples: (audio, f0 per sample, syllable count).

    ``decoy``: the instrument that is not a voice (:data:`DECOY_PARAMETERS`): the same notes
    and source, but a steady pitch, one static timbre and plucked note envelopes.
    """
    p = VOICE_PARAMETERS
    sr = sample_rate
    t = np.arange(n) / sr
    # syllables (one note and one vowel each); the last one ends with the span
    durations = _uniform(rng, p["syllable_seconds"], 64)
    bounds = np.round(np.cumsum(durations) * sr).astype(np.int64)
    bounds = bounds[bounds < n - round(0.1 * sr)]
    starts = np.concatenate([[0], bounds])
    n_syl = starts.size
    syl = np.repeat(np.arange(n_syl), np.diff(np.append(starts, n)))
    # notes: a walk over the key's major scale around a register centre
    lo_midi, hi_midi = p["midi_range"]
    centre = int(rng.integers(p["register_centre_midi"][0], p["register_centre_midi"][1] + 1))
    scale = np.array([m for m in range(lo_midi, hi_midi + 1)
                      if (m - tonic_pc) % 12 in (0, 2, 4, 5, 7, 9, 11) and abs(m - centre) <= 6])
    steps = rng.integers(-2, 3, size=64)
    walk = np.clip(int(np.argmin(np.abs(scale - centre))) + np.cumsum(steps), 0, scale.size - 1)
    notes = scale[np.clip(walk, 0, scale.size - 1)][:n_syl].astype(np.float64)
    vowels = np.array(list(VOWELS))[rng.integers(len(VOWELS), size=64)][:n_syl]
    levels = _uniform(rng, p["syllable_level"], 64)[:n_syl]
    dips = _uniform(rng, p["syllable_dip"], 64)[: max(n_syl - 1, 0)]
    rate = _uniform(rng, p["vibrato_hz"])
    depth = _uniform(rng, p["vibrato_semitones"])
    vib_phase = rng.uniform(0.0, 2 * np.pi)
    step = float(p["jitter_step_seconds"])
    knots = rng.standard_normal(int(np.ceil(n / sr / step)) + 2) * p["jitter_semitones_sd"]
    phase0 = rng.uniform(0.0, 2 * np.pi)

    decay = _uniform(rng, DECOY_PARAMETERS["decay_seconds"])

    since_onset = t - starts[syl] / sr
    vibrato = depth * np.sin(2 * np.pi * rate * t + vib_phase) * np.minimum(
        since_onset / p["vibrato_onset_seconds"], 1.0)
    jitter = np.interp(t, np.arange(knots.size) * step, knots)
    midi = _hann_smooth(notes[syl], p["glide_seconds"], sr)
    if not decoy:
        midi = midi + vibrato + jitter
    f0 = 440.0 * 2.0 ** ((midi - 69.0) / 12.0)
    phase = phase0 + 2 * np.pi * np.cumsum(f0 / sr)
    # band-limited harmonic source with a spectral tilt
    fade_lo, fade_hi = p["max_harmonic_hz"]
    source = np.zeros(n, dtype=np.float64)
    for h in range(1, int(fade_hi // f0.min()) + 1):
        taper = np.clip((fade_hi - h * f0) / (fade_hi - fade_lo), 0.0, 1.0)
        source += h ** -p["source_tilt"] * taper * np.sin(h * phase)
    # vowels: parallel formant resonators, cross-faded from syllable to syllable
    filters = _formant_filters(sr)
    onehot = np.zeros((n, n_syl))
    onehot[np.arange(n), syl] = 1.0
    weights = _hann_smooth(onehot, p["syllable_crossfade_seconds"], sr)
    out = np.zeros(n, dtype=np.float64)
    for v in (VOWELS if decoy else np.unique(vowels)):
        y = sum(g * signal.sosfilt(sos, source)
                for g, sos in zip(p["formant_gains"], filters[v], strict=True))
        out += y / len(VOWELS) if decoy else weights[:, vowels == v].sum(axis=1) * y
    # envelope: a level per syllable, a dip at each boundary, fades that end at the span's ends
    env = weights @ levels
    if decoy:  # plucked: a fast attack and a decay per note, re-struck at each boundary
        q = DECOY_PARAMETERS
        env = env * np.minimum(since_onset / q["attack_seconds"], 1.0) * np.exp(
            -since_onset / decay)
        dips = np.full(dips.size, q["restrike_dip"])
    width = float(p["syllable_dip_seconds"] if not decoy else DECOY_PARAMETERS[
        "restrike_seconds"])
    for b, d in zip(starts[1:], dips, strict=True):
        env *= 1.0 - d * np.exp(-0.5 * ((t - b / sr) / (width / 4)) ** 2)
    fade_in = np.clip(t / p["fade_in_seconds"], 0.0, 1.0)
    fade_out = np.clip((n - 1 - np.arange(n)) / sr / p["fade_out_seconds"], 0.0, 1.0)
    env *= np.sin(0.5 * np.pi * fade_in) ** 2 * np.sin(0.5 * np.pi * fade_out) ** 2
    return (out * env).astype(np.float32), f0, n_syl


def render_voice(n_samples: int, spans: np.ndarray, *, tonic_pc: int, seed: int | Sequence[int],
                 sample_rate: int = SAMPLE_RATE, decoy: bool = False) -> VoiceTrack:
    """Render the voice alone in sample ``spans`` ``(n, 2)`` of an ``n_samples`` clip, in the
    major key of ``tonic_pc``; deterministic for the same arguments. Peak 1 where voiced.
    ``decoy=True`` renders the instrumental decoy instead (:data:`DECOY_PARAMETERS`)."""
    rng = np.random.default_rng(seed)
    audio = np.zeros(n_samples, dtype=np.float32)
    f0 = np.zeros(n_samples, dtype=np.float64)
    span_f0, syllables = [], []
    end = 0
    for s0, s1 in np.asarray(spans, dtype=np.int64).reshape(-1, 2):
        if not end <= s0 < s1 <= n_samples:
            raise ConfigError(f"spans: [{s0}, {s1}) is not inside the clip's {n_samples} samples "
                              f"after the previous span (spans must be sorted, not overlapping)")
        end = int(s1)
        a, f, k = _render_span(int(s1 - s0), rng, int(tonic_pc), sample_rate, decoy)
        audio[s0:s1], f0[s0:s1] = a, f
        span_f0.append(float(f.mean()))
        syllables.append(k)
    peak = float(np.abs(audio).max())
    if peak > 0:
        audio /= np.float32(peak)
    return VoiceTrack(audio=audio, f0=f0, spans=np.asarray(spans, dtype=np.int64).reshape(-1, 2),
                      span_f0=np.array(span_f0), syllables=np.array(syllables, dtype=np.int64))


def _filtered(audio: np.ndarray, frontend: LogFilteredSpectrogram) -> np.ndarray:
    """The front end's filtered magnitude (before the log), ``(T, bands)`` float64."""
    with torch.no_grad():
        return frontend.filtered(torch.from_numpy(audio.astype(np.float64))).numpy()


def _level(signal_: np.ndarray, reference: np.ndarray, spans: np.ndarray,
           snr: float) -> np.ndarray:
    """``signal_`` scaled so its power over ``spans`` is ``snr`` dB above ``reference``'s."""
    on = np.zeros(signal_.size, dtype=bool)
    for s0, s1 in spans:
        on[s0:s1] = True
    gain = np.sqrt(np.mean(reference[on].astype(np.float64) ** 2)
                   / np.mean(signal_[on].astype(np.float64) ** 2) * 10 ** (snr / 10))
    return (signal_ * np.float32(gain)).astype(np.float32)


def render_voice_clip(concepts: np.ndarray, *, duration: float = 12.0,
                      seed: tuple[int, int] = (0, 0), p_voice: float = DEFAULT_P_VOICE,
                      p_decoy: float = DEFAULT_P_DECOY,
                      snr_db: tuple[float, float] = DEFAULT_SNR_DB,
                      mask_db: float = DEFAULT_MASK_DB,
                      config: FrontEndConfig | None = None) -> VoiceClip:
    """One clip: the accompaniment of ``concepts`` (7 values in [0, 1]), the decoy instrument
    (with probability ``p_decoy``) and the voice (with probability ``p_voice``).

    ``seed = (dataset seed, clip index k)``: the concept accompaniment is rendered with the
    concept dataset's seed ``(seed, 1000 + k)``; the voice's spans and SNR draw from
    ``(seed, 3000 + k)``, its sound from ``(seed, 4000 + k)``, the decoy's from ``(seed, 5000 +
    k)`` and ``(seed, 6000 + k)``. The decoy's level is set against the concept accompaniment,
    the voice's against the accompaniment with the decoy (everything that is not voice, which
    :attr:`VoiceClip.accompaniment` holds). See :data:`LABEL_RULES` for labels and masks.
    """
    cfg = config if config is not None else FrontEndConfig(sample_rate=SAMPLE_RATE)
    if cfg.sample_rate != SAMPLE_RATE:
        raise ConfigError(f"config.sample_rate: expected {SAMPLE_RATE}, got {cfg.sample_rate}")
    base, k = (int(s) for s in seed)
    acc = render_clip(concepts, duration=duration, seed=(base, 1000 + k),
                      version=ACCOMPANIMENT_VERSION)
    n = acc.audio.size
    rng = np.random.default_rng([base, 3000 + k])
    spans = plan_spans(rng, duration, p_voice)
    snr = float(_uniform(rng, snr_db))
    track = render_voice(n, spans, tonic_pc=acc.score.tonic_pc, seed=[base, 4000 + k])
    decoy_rng = np.random.default_rng([base, 5000 + k])
    decoy_spans = plan_spans(decoy_rng, duration, p_decoy)
    decoy_snr = float(_uniform(decoy_rng, snr_db))
    accompaniment = acc.audio.astype(np.float32)
    if decoy_spans.size:
        decoy = render_voice(n, decoy_spans, tonic_pc=acc.score.tonic_pc, seed=[base, 6000 + k],
                             decoy=True)
        accompaniment = accompaniment + _level(decoy.audio, accompaniment, decoy_spans,
                                               decoy_snr)
    voice = np.zeros(n, dtype=np.float32)
    if spans.size:
        voice = _level(track.audio, accompaniment, spans, snr)
    if spans.size or decoy_spans.size:
        # keep the concept accompaniment's peak level (the loaders peak-normalise anyway)
        scale = np.float32(np.abs(acc.audio).max() / np.abs(accompaniment + voice).max())
        voice, accompaniment = voice * scale, accompaniment * scale
    mix = (accompaniment + voice).astype(np.float32)
    labels = frame_labels(spans, n, cfg)
    frames = span_frames(spans, n, cfg)
    frontend = LogFilteredSpectrogram(cfg, dtype=torch.float64)
    mask = np.zeros((labels.size, frontend.num_bands), dtype=bool)
    dominant = mask.copy()
    if spans.size:
        v_mag = _filtered(voice, frontend)
        a_mag = _filtered(accompaniment, frontend)
        mask = labels[:, None] & (v_mag >= v_mag.max() * 10 ** (-float(mask_db) / 20))
        dominant = mask & (v_mag > a_mag)
    centres = np.minimum(frame_centres(n, cfg), n - 1)
    f0 = np.where(labels, track.f0[centres], 0.0).astype(np.float32)
    return VoiceClip(audio=mix, voice=voice, accompaniment=accompaniment, labels=labels,
                     mask=mask, dominant=dominant, f0=f0, spans=spans, span_frames=frames,
                     span_f0=track.span_f0, snr_db=snr if spans.size else float("nan"),
                     decoy_spans=decoy_spans, concepts=acc.concepts)


# --------------------------------------------------------------------------------------------
# The dataset on disk

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
_TMP_NAME = re.compile(r"^\.[^/]+\.tmp$")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

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
    if isinstance(clips, bool) or not isinstance(clips, int | np.integer) or not 1 <= clips <= 999:
        raise ConfigError(f"clips: expected an integer from 1 to 999 (3-digit ids), got {clips!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed: expected a non-negative integer, got {seed!r}")
    if isinstance(duration, bool) or not isinstance(duration, int | float) \
            or not duration >= MIN_DURATION:
        raise ConfigError(f"duration: expected seconds >= {MIN_DURATION}, got {duration!r}")
    if audio_format not in ("flac", "wav"):
        raise ConfigError(f"audio_format: expected 'flac' or 'wav', got {audio_format!r}")
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


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
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


def _readable(audio: Path, truth: Path) -> bool:
    try:
        read_truth(truth)
        return sf.info(str(audio)).frames > 0
    except (sf.LibsndfileError, RuntimeError, OSError, DatasetError):
        return False


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
    final = root / SETTINGS_JSON
    marker = root / ".voice-parameters.json"
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
        done = [root / CLIPS_CSV, root / SPANS_CSV, root / "README.txt", *audio_paths,
                *truth_paths]
        if final.exists() and all(p.exists() for p in done):
            return VoiceInfo(root=root, clips=clips, seconds=time.perf_counter() - start,
                             settings=settings, reused=True)
    elif root.exists() and any(root.iterdir()):
        raise ConfigError(f"out: {root} is not empty and holds no voice dataset; choose an "
                          f"empty or new folder")

    write_json(marker, {"format_version": VOICE_FORMAT_VERSION,
                        "parameters": settings["parameters"]})
    for folder in (root / AUDIO_DIR, root / TRUTH_DIR):
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.iterdir():  # temporaries of a killed run (atomic_path's naming)
            if _TMP_NAME.match(stale.name):
                stale.unlink()
    fmt, subtype = AUDIO_FORMATS[audio_format]
    concepts = draw_concepts(clips, seed)
    for k, (apath, tpath) in enumerate(zip(audio_paths, truth_paths, strict=True)):
        if apath.exists() and tpath.exists() and _readable(apath, tpath):
            continue
        clip = render_voice_clip(concepts[k], duration=duration, seed=(seed, k), p_voice=p_voice,
                                 p_decoy=p_decoy, snr_db=tuple(snr_db), mask_db=mask_db,
                                 config=cfg)
        with atomic_path(apath) as tmp:
            sf.write(str(tmp), clip.audio, SAMPLE_RATE, format=fmt, subtype=subtype)
        _write_npz(tpath, {"labels": clip.labels, "mask": clip.mask, "dominant": clip.dominant,
                           "f0": clip.f0, "spans": clip.spans, "span_frames": clip.span_frames,
                           "span_f0": clip.span_f0, "snr_db": np.float64(clip.snr_db),
                           "decoy_spans": clip.decoy_spans})

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
    lo, hi = (float(v) for v in snr_db)
    write_text(root / "README.txt", _README.format(
        version=VOICE_FORMAT_VERSION, clips=clips, duration=duration, seed=seed,
        acc=ACCOMPANIMENT_VERSION, lo=lo, hi=hi, audio=AUDIO_DIR, truth=TRUTH_DIR,
        ext=audio_format))
    write_json(final, settings)
    marker.unlink()
    return VoiceInfo(root=root, clips=clips, seconds=time.perf_counter() - start,
                     settings=settings)


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
