"""Audio rendering of the embedded dataset: a score composed from seven concept values, played
by wavetable voices with numpy (:func:`render_clip`).

Each concept sets one audio parameter (:data:`AUDIO_PARAMETERS`) plus the cues of
:data:`ENERGY_CUES`, :data:`MODE_CUES` and (format 3) :data:`CONCEPT_CUES`; every random draw has
a size that does not depend on the concept values, so two clips rendered with the same seed
differ only in the aspects whose concepts differ (docs/synthetic-data.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from robustmer.audio import SAMPLE_RATE
from robustmer.data.synth.concepts import audio_parameter, concept_values, cue
from robustmer.errors import ConfigError

FORMAT_VERSION = 3
"""Bumped whenever a change to the generator changes what it writes for the same parameters.
The newest is the default; older versions stay renderable (``version=``), so the dataset that
results were measured on can be written again."""

FORMAT_VERSIONS: tuple[int, ...] = (2, 3)
"""Versions :func:`synthesize` and :func:`render_clip` can write (1 is gone)."""

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
        return np.asarray(self.voice == VOICES.index(name))


@dataclass(frozen=True)
class SynthClip:
    """One rendered clip: float32 mono audio at ``sample_rate`` and the score it was played from."""

    audio: np.ndarray
    score: Score
    concepts: dict[str, float]
    sample_rate: int = SAMPLE_RATE


def check_version(version: int) -> int:
    """``version`` as an int if it is one of :data:`FORMAT_VERSIONS`; ``ConfigError`` else."""
    if isinstance(version, bool) or version not in FORMAT_VERSIONS:
        raise ConfigError(f"version: expected a synthetic-data format version in "
                          f"{list(FORMAT_VERSIONS)}, got {version!r}")
    return int(version)


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
    return np.asarray(table / np.abs(table).max())


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



@dataclass(frozen=True)
class _Rhythm:
    """The time grid of one clip: tempo, key, and the jittered onsets of each layer (in beats
    for the grids, seconds for the onsets); ``max_notes`` is the fixed size of every per-note
    draw."""

    bpm: float
    beat: float
    tonic: int
    n_beats: int
    n_bars: int
    max_notes: int
    mel_grid: np.ndarray
    acc_grid: np.ndarray
    bass_grid: np.ndarray
    mel_on: np.ndarray
    acc_on: np.ndarray
    bass_on: np.ndarray


def _rhythm(c: dict[str, float], duration: float, rng: np.random.Generator) -> _Rhythm:
    """Tempo (from the energy drive), key and register, the 2-bar rhythm pattern and every
    layer's jittered onsets (the first draws of a clip)."""
    drive = 0.6 * c["articulation"] + 0.4 * c["rhythm_complexity"]
    bpm = cue("tempo_bpm", drive)
    beat = 60.0 / bpm
    key_pc = int(rng.integers(12))
    tonic = 48 + key_pc - round(cue("register_drop_semitones", c["minorness"]))
    n_beats = int(np.ceil(duration / beat)) + 1
    n_bars = int(np.ceil(n_beats / 4))
    # Rhythm: a 2-bar pattern of per-beat subdivisions, repeated over the clip.
    mixed = rng.random(8) < audio_parameter("rhythm_complexity", c["rhythm_complexity"])
    choice = rng.integers(len(_SUBDIVISIONS), size=8)
    pattern = [_SUBDIVISIONS[k] if m else (0.0, 0.5) for m, k in zip(mixed, choice, strict=True)]
    mel_grid = np.array([b + off for b in range(n_beats) for off in pattern[b % 8]])
    acc_grid = np.arange(n_beats, dtype=np.float64)  # chords on every beat
    bass_grid = np.arange(0, n_beats, 2, dtype=np.float64)  # bass on beats 1 and 3

    jitter_sd = audio_parameter("rhythm_stability", c["rhythm_stability"])
    max_notes = 4 * n_beats + 4

    def jittered(grid: np.ndarray) -> np.ndarray:
        noise = rng.standard_normal(max_notes)[: grid.size]
        on = grid + np.clip(noise * jitter_sd, -0.12, 0.12)
        return np.maximum(on * beat, 0.0)

    mel_on, acc_on, bass_on = jittered(mel_grid), jittered(acc_grid), jittered(bass_grid)
    return _Rhythm(bpm, beat, tonic, n_beats, n_bars, max_notes, mel_grid, acc_grid, bass_grid,
                   mel_on, acc_on, bass_on)


def _melody(c: dict[str, float], r: _Rhythm,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The melody (a random walk on scale degrees, steps vs leaps, reflected into a two-octave
    range, some notes moved out of key) and the harmony note under each melody note
    (consonant or dissonant). Returns ``(melody pitch, out of key, harmony pitch,
    dissonant)``."""
    n_mel, max_notes, tonic = r.mel_grid.size, r.max_notes, r.tonic
    u_step = rng.random(max_notes)[:n_mel]
    leap = rng.integers(3, 8, size=max_notes)[:n_mel]
    sign = np.where(rng.random(max_notes)[:n_mel] < 0.5, -1, 1)
    moves = sign * np.where(u_step < audio_parameter("melodiousness", c["melodiousness"]), 1, leap)
    degree = np.empty(n_mel, dtype=np.int64)
    d = 10
    for i, mv in enumerate(moves):  # a short sequential walk (tens of notes); reflection rule
        d = d + mv if 7 <= d + mv <= 20 else d - mv
        d = min(max(d, 7), 20)
        degree[i] = d
    mel_minor = rng.random(max_notes)[:n_mel] < audio_parameter("minorness", c["minorness"])
    mel_pitch = _scale_pitch(degree, mel_minor, tonic)
    p_out = audio_parameter("tonal_stability", c["tonal_stability"])
    mel_out = rng.random(max_notes)[:n_mel] < p_out
    up = rng.random(max_notes)[:n_mel] < 0.5
    mel_pitch = np.where(mel_out, _chromatic_shift(mel_pitch, mel_minor, tonic, up), mel_pitch)

    # Harmony: a note under every melody note, consonant (diatonic 3rd/6th/octave) or dissonant.
    below = np.array([2, 5, 7])[rng.integers(3, size=max_notes)[:n_mel]]
    consonant = _scale_pitch(degree - below, mel_minor, tonic) + (mel_pitch - _scale_pitch(
        degree, mel_minor, tonic))
    dissonant = mel_pitch - np.array([1, 2, 6, 11, 13])[rng.integers(5, size=max_notes)[:n_mel]]
    is_dis = rng.random(max_notes)[:n_mel] < audio_parameter("dissonance", c["dissonance"])
    return mel_pitch, mel_out, np.where(is_dis, dissonant, consonant), is_dis


def _chords(c: dict[str, float], r: _Rhythm,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One triad per bar from a diatonic progression, or a chromatic major triad; a dissonant
    clip's fifth may become a cluster. Returns ``(root, third, fifth, chromatic)`` per bar."""
    tonic, n_bars = r.tonic, r.n_bars
    p_out = audio_parameter("tonal_stability", c["tonal_stability"])
    prog = np.array(_PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))])
    bar_deg = prog[np.arange(n_bars) % 4]
    bar_minor = rng.random(n_bars) < audio_parameter("minorness", c["minorness"])
    bar_chromatic = rng.random(n_bars) < min(1.0, 1.3 * p_out)
    chroma_root = tonic + np.array([1, 3, 6, 8, 10])[rng.integers(5, size=n_bars)]
    root = np.where(bar_chromatic, chroma_root, _scale_pitch(bar_deg, bar_minor, tonic))
    third = np.where(bar_chromatic, chroma_root + 4, _scale_pitch(bar_deg + 2, bar_minor, tonic))
    fifth = np.where(bar_chromatic, chroma_root + 7, _scale_pitch(bar_deg + 4, bar_minor, tonic))
    cluster = root + np.where(rng.random(n_bars) < 0.5, 1, 6)
    p_dis = audio_parameter("dissonance", c["dissonance"])
    fifth = np.where(rng.random(n_bars) < p_dis, cluster, fifth)
    return root, third, fifth, bar_chromatic


def _score(c: dict[str, float], duration: float, rng: np.random.Generator) -> Score:
    """Compose the notes of one clip from concept values.

    Every random draw has a fixed size that does not depend on the concept values, and the
    concepts only threshold or scale those draws, so two clips rendered with the same seed differ
    only in the aspects whose concepts differ. The draws come in a fixed order: rhythm, melody,
    harmony, chords, accents.
    """
    r = _rhythm(c, duration, rng)
    mel_pitch, mel_out, har_pitch, is_dis = _melody(c, r, rng)
    root, third, fifth, bar_chromatic = _chords(c, r, rng)
    mel_grid, acc_grid, bass_grid = r.mel_grid, r.acc_grid, r.bass_grid
    acc_bar = (acc_grid // 4).astype(np.int64)
    bass_bar = (bass_grid // 4).astype(np.int64)
    accent_mel = np.where(mel_grid % 1 == 0, 1.0, 0.8) * (
        0.9 + 0.1 * rng.random(r.max_notes)[:mel_grid.size])
    accent_acc = np.where(acc_grid % 4 == 0, 1.0, 0.85)
    end = float(r.n_beats)

    def gates(grid: np.ndarray) -> np.ndarray:
        ioi = np.diff(np.append(grid, end)) * r.beat
        return ioi * audio_parameter("articulation", c["articulation"])

    parts = [
        (r.mel_on, gates(mel_grid), mel_grid, mel_pitch, accent_mel, 0, mel_out),
        (r.mel_on, gates(mel_grid), mel_grid, har_pitch, accent_mel, 1, mel_out & ~is_dis),
        (r.acc_on, gates(acc_grid), acc_grid, root[acc_bar], accent_acc, 2,
         bar_chromatic[acc_bar]),
        (r.acc_on, gates(acc_grid), acc_grid, third[acc_bar], accent_acc, 3,
         bar_chromatic[acc_bar]),
        (r.acc_on, gates(acc_grid), acc_grid, fifth[acc_bar], accent_acc, 4,
         bar_chromatic[acc_bar]),
        (r.bass_on, gates(bass_grid), bass_grid, root[bass_bar] - 12,
         np.ones(bass_grid.size), 5, bar_chromatic[bass_bar]),
    ]
    cat = [np.concatenate([np.broadcast_to(np.asarray(p[k], dtype=np.float64), p[0].shape)
                           for p in parts]) for k in range(5)]
    voice = np.concatenate([np.full(p[0].size, p[5], dtype=np.int64) for p in parts])
    out = np.concatenate([np.asarray(p[6], dtype=bool) for p in parts])
    return Score(onset=cat[0], gate=cat[1], grid=cat[2] * r.beat, pitch=cat[3],
                 velocity=cat[4], voice=voice, out_of_key=out, tonic_pc=r.tonic % 12,
                 tempo_bpm=r.bpm)


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
    pulse = np.float32(0.5 * ref * cue("pulse_level", c["rhythm_stability"])) * env * noise
    tonic = 48 + score.tonic_pc  # a pedal in the chords' octave, whatever the register drop
    level = cue("drone_level", c["tonal_stability"]) * ref / 2.0
    drone = _render_layer(n, sample_rate, np.zeros(1), np.full(1, n / sample_rate), np.ones(1),
                          [np.full(1, float(tonic)), np.full(1, float(tonic + 7))],
                          [level, level], _wavetable(3.0, 4), 1e6)
    return np.asarray(pulse + drone)


def render_clip(concepts: Mapping[str, float] | Sequence[float] | np.ndarray, *,
                duration: float = 12.0, seed: int | Sequence[int] = 0,
                sample_rate: int = SAMPLE_RATE, version: int = FORMAT_VERSION) -> SynthClip:
    """Render one clip from 7 concept values in [0, 1] (a mapping by name or CONCEPTS order).

    Deterministic for the same (concepts, duration, seed, sample_rate, version); exposed so
    tests and users can check that each concept changes what is heard. ``version`` 3 adds the
    cues of :data:`CONCEPT_CUES` to the notes that version 2 plays.
    """
    c = concept_values(concepts)
    version = check_version(version)
    if not duration > 0:
        raise ConfigError(f"duration: expected a positive number of seconds, got {duration}")
    rng = np.random.default_rng(seed)
    score = _score(c, duration, rng)
    n = round(duration * sample_rate)
    drive = 0.6 * c["articulation"] + 0.4 * c["rhythm_complexity"]
    tables = {
        "lead": _wavetable(cue("brightness_rolloff", drive)
                           + cue("lead_rolloff_add", c["minorness"]), 8),
        "chord": _wavetable(2.5, 6),
        "bass": _wavetable(1.5, 6),
    }
    mix = np.zeros(n, dtype=np.float32)
    v3 = version >= 3
    lead_gain = cue("lead_gain", c["melodiousness"]) if v3 else 1.0
    for voices, kind, decay, gain in (((0, 1), "lead", 0.9, lead_gain),
                                      ((2, 3, 4), "chord", 0.7, 1.0), ((5,), "bass", 0.6, 1.0)):
        m = score.voice == voices[0]  # the voices of a layer share onsets, gates, velocities
        layer = _render_layer(n, sample_rate, score.onset[m], score.gate[m], score.velocity[m],
                              [score.pitch[score.voice == v] for v in voices],
                              [gain * float(_VOICE_GAIN[v]) for v in voices], tables[kind], decay)
        if v3 and kind == "chord":  # harshness: intermodulation of the chord notes
            g = np.float32(1.0 + cue("rough_drive", c["dissonance"]))
            layer = np.tanh(g * layer) / np.tanh(g)
        mix += layer
    if v3:
        mix += _stability_cues(c, score, n, sample_rate, rng)
    fade = min(n, round(0.01 * sample_rate))
    mix[n - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    peak = float(np.abs(mix).max())
    if not np.isfinite(peak) or peak == 0.0:  # cannot happen for valid concepts; guard anyway
        raise ConfigError(f"render_clip: rendering produced silent or non-finite audio for {c}")
    audio = (mix * (cue("peak", drive) / peak)).astype(np.float32)
    return SynthClip(audio=audio, score=score, concepts=c, sample_rate=sample_rate)

