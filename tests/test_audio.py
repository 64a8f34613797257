"""Audio input: madmom-exact normalise + trim, decoding/resampling paths, and typed errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from robustmer.audio import SAMPLE_RATE, load_audio, normalize_and_trim
from robustmer.audio.load import quantize_pcm16, to_float32
from robustmer.errors import AudioError


def _tone(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    n = np.arange(int(seconds * rate))
    return (amp * np.sin(2 * np.pi * freq * n / rate)).astype(np.float32)


def _dominant_hz(x: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


# --- normalize_and_trim ------------------------------------------------------------------------

def test_float_normalisation_divides_by_peak_and_trims_only_the_ends() -> None:
    x = np.array([0.0, -0.0, 0.25, 0.0, -0.5, 0.1, 0.0, 0.0], dtype=np.float32)
    y = normalize_and_trim(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, np.array([0.5, 0.0, -1.0, 0.2], dtype=np.float32))


def test_int16_normalisation_truncates_toward_zero() -> None:
    x = np.array([0, 3, -5, 0, 2, 0], dtype=np.int16)
    y = normalize_and_trim(x)
    assert y.dtype == np.int16
    scale = 5 / 32767
    # 3 / scale = 19660.2 -> 19660, 2 / scale = 13106.8 -> 13106 (truncation, not rounding)
    np.testing.assert_array_equal(y, np.array([int(3 / scale), -32767, 0, int(2 / scale)]))
    assert int(2 / scale) == 13106


def test_int16_full_scale_negative_peak_maps_to_minus_max() -> None:
    y = normalize_and_trim(np.array([-32768, 100, 16384], dtype=np.int16))
    assert y[0] == -32767 and np.abs(y.astype(np.int32)).max() == 32767


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 64),
                  elements=st.floats(-4, 4, width=32, allow_subnormal=False)))
def test_normalised_float_signal_has_unit_peak_and_no_zero_ends(x: np.ndarray) -> None:
    if not np.any(x):
        with pytest.raises(AudioError):
            normalize_and_trim(x)
        return
    y = normalize_and_trim(x)
    assert y.dtype == x.dtype
    assert np.max(np.abs(y)) == 1.0
    assert y[0] != 0 and y[-1] != 0
    # the kept part is the input between its first and last non-zero, scaled
    nz = np.flatnonzero(x)
    np.testing.assert_allclose(y, x[nz[0]: nz[-1] + 1] / np.max(np.abs(x)), rtol=1e-6)


def test_normalize_rejects_non_finite_and_silent_arrays() -> None:
    with pytest.raises(AudioError, match="NaN/Inf"):
        normalize_and_trim(np.array([0.1, np.nan], dtype=np.float32), source="clip.wav")
    with pytest.raises(AudioError, match="silent"):
        normalize_and_trim(np.zeros(10, dtype=np.int16))
    with pytest.raises(AudioError, match="1-D"):
        normalize_and_trim(np.ones((3, 2), dtype=np.float32))


def test_quantize_pcm16_rounds_and_clips_like_ffmpeg() -> None:
    x = np.array([0.0, 0.5, -1.0, 1.0, 1.5, 1.5 / 32768, 2.5 / 32768], dtype=np.float32)
    np.testing.assert_array_equal(quantize_pcm16(x), [0, 16384, -32768, 32767, 32767, 2, 2])


# --- load_audio: decoding paths --------------------------------------------------------------

def test_float_wav_at_22050_is_read_natively(tmp_path: Path) -> None:
    x = np.concatenate([np.zeros(100, np.float32), _tone(440, 0.5, SAMPLE_RATE, 0.3)])
    path = tmp_path / "f32.wav"
    sf.write(path, x, SAMPLE_RATE, subtype="FLOAT")
    y = load_audio(path)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, normalize_and_trim(x))


def test_int16_wav_at_22050_takes_the_int16_path(tmp_path: Path) -> None:
    x = (_tone(440, 0.5, SAMPLE_RATE, 0.3) * 32767).astype(np.int16)
    path = tmp_path / "pcm16.wav"
    sf.write(path, x, SAMPLE_RATE, subtype="PCM_16")
    y = load_audio(path)
    np.testing.assert_array_equal(y, to_float32(normalize_and_trim(x)))
    # madmom's truncation can land the peak one step below full scale (32766.99... -> 32766)
    assert np.max(np.abs(y)) >= np.float32(32766 / 32767)
    # int16 -> float is x / 32767: every sample sits on that grid
    np.testing.assert_allclose(y * 32767, np.round(y * 32767), atol=1e-3)


def test_stereo_is_averaged(tmp_path: Path) -> None:
    left = _tone(440, 0.3, SAMPLE_RATE, 0.5)
    right = _tone(1000, 0.3, SAMPLE_RATE, 0.2)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), SAMPLE_RATE, subtype="FLOAT")
    y = load_audio(path)
    mono = ((left.astype(np.float64) + right) / 2).astype(np.float32)
    np.testing.assert_array_equal(y, normalize_and_trim(mono))


@pytest.mark.parametrize(("fmt", "subtype", "ext"), [
    ("FLAC", "PCM_16", "flac"), ("OGG", "VORBIS", "ogg"), ("MP3", "MPEG_LAYER_III", "mp3"),
    ("WAV", "PCM_16", "wav"),
])
def test_other_rates_and_formats_are_resampled_and_quantised(tmp_path: Path, fmt: str,
                                                             subtype: str, ext: str) -> None:
    rate, seconds, freq = 44100, 1.0, 1000.0
    x = _tone(freq, seconds, rate, 0.4)
    path = tmp_path / f"tone.{ext}"
    sf.write(path, np.stack([x, x], axis=1), rate, format=fmt, subtype=subtype)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    # length: half the samples (mp3/ogg decoders may add or drop up to a few ms)
    assert abs(len(y) - seconds * SAMPLE_RATE) < 0.06 * SAMPLE_RATE
    assert abs(_dominant_hz(y) - freq) < 3.0
    assert np.max(np.abs(y)) >= np.float32(32766 / 32767)
    # the int16 path: samples on the 1/32767 grid
    np.testing.assert_allclose(y * 32767, np.round(y * 32767), atol=1e-3)


def test_pcm16_false_keeps_float_precision(tmp_path: Path) -> None:
    x = _tone(440, 0.5, 44100, 1e-6)  # far below one int16 step
    path = tmp_path / "quiet.wav"
    sf.write(path, x, 44100, subtype="FLOAT")
    y = load_audio(path, pcm16=False)
    assert np.max(np.abs(y)) == 1.0 and abs(_dominant_hz(y) - 440) < 3
    with pytest.raises(AudioError, match="silent"):  # quantised to int16 it is all zeros
        load_audio(path)


# --- load_audio: bad input -------------------------------------------------------------------

def _assert_audio_error(path: Path, match: str) -> None:
    with pytest.raises(AudioError, match=match) as info:
        load_audio(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    _assert_audio_error(tmp_path / "nope.mp3", "not found")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    _assert_audio_error(tmp_path, "not a regular file")


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.wav"
    path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(200)))
    _assert_audio_error(path, "cannot decode")


def test_random_bytes_mp3(tmp_path: Path) -> None:
    path = tmp_path / "garbage.mp3"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert str(path) in str(info.value)


def test_zero_length_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), SAMPLE_RATE, subtype="FLOAT")
    _assert_audio_error(path, "zero length")


def test_all_zero_file(tmp_path: Path) -> None:
    path = tmp_path / "silence.flac"
    sf.write(path, np.zeros(4000, np.int16), 44100, subtype="PCM_16")
    _assert_audio_error(path, "silent")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path: Path, bad: float) -> None:
    x = _tone(440, 0.1, SAMPLE_RATE)
    x[50] = bad
    path = tmp_path / "nonfinite.wav"
    sf.write(path, x, SAMPLE_RATE, subtype="FLOAT")
    _assert_audio_error(path, "NaN/Inf")


def test_non_finite_samples_on_the_resampling_path(tmp_path: Path) -> None:
    x = _tone(440, 0.1, 44100)
    x[50] = np.nan
    path = tmp_path / "nonfinite44.wav"
    sf.write(path, x, 44100, subtype="FLOAT")
    _assert_audio_error(path, "NaN/Inf")
