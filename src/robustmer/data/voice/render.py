"""The voice alone: where its phrases go in a clip (:func:`plan_spans`) and how they sound
(:func:`render_voice`: a harmonic source on a note contour, through vowel formant filters, under
a syllable envelope; or the instrumental decoy)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import signal

from robustmer.data.synth import SAMPLE_RATE
from robustmer.data.voice.parameters import DECOY_PARAMETERS, VOICE_PARAMETERS, VOWELS
from robustmer.errors import ConfigError


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



def draw_uniform(rng: np.random.Generator, pair: Sequence[float],
                 size: int | None = None) -> Any:
    """``rng.uniform`` over the range ``pair`` (low, high); ``size=None`` draws one float."""
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
    lengths = draw_uniform(rng, p["span_seconds"], hi)
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
    out: np.ndarray = signal.oaconvolve(padded, kernel.reshape((-1,) + (1,) * (x.ndim - 1)),
                                        mode="valid", axes=0)
    return out


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
    durations = draw_uniform(rng, p["syllable_seconds"], 64)
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
    levels = draw_uniform(rng, p["syllable_level"], 64)[:n_syl]
    dips = draw_uniform(rng, p["syllable_dip"], 64)[: max(n_syl - 1, 0)]
    rate = draw_uniform(rng, p["vibrato_hz"])
    depth = draw_uniform(rng, p["vibrato_semitones"])
    vib_phase = rng.uniform(0.0, 2 * np.pi)
    step = float(p["jitter_step_seconds"])
    knots = rng.standard_normal(int(np.ceil(n / sr / step)) + 2) * p["jitter_semitones_sd"]
    phase0 = rng.uniform(0.0, 2 * np.pi)

    decay = draw_uniform(rng, DECOY_PARAMETERS["decay_seconds"])

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

