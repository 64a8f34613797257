"""Decode, downmix, resample, peak-normalise and trim audio the way the reference study did.

The study fed every file to madmom's ``SignalProcessor(num_channels=1, sample_rate=22050,
norm=True)`` followed by ``np.trim_zeros`` (see shared/fixtures/madmom/FACTS.md, §1 and §7):

* a WAV file already at 22 050 Hz is read in its native sample type (16-bit PCM -> int16,
  float WAV -> float), channels are averaged and cast back to that type;
* any other file (mp3, ogg, flac, WAV at another rate) is decoded by ffmpeg to mono int16 at
  22 050 Hz;
* the signal is peak-normalised (``x / max|x|``; for integer samples the quotient is truncated
  toward zero, so the peak becomes the type's maximum or one less) and exact zeros are trimmed
  at both ends.

We decode with soundfile and resample with soxr instead of ffmpeg (ffmpeg's decoder and resampler
cannot be reproduced bit-exactly), but keep the int16 quantisation and its consequences for
normalisation and trimming. Integer signals are returned as ``int / iinfo.max`` in float32, which
is what madmom's STFT effectively sees (it divides its window by ``iinfo.max`` for int input).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from robustmer.errors import AudioError

SAMPLE_RATE = 22050
"""The sample rate every waveform is brought to (the reference study's setting)."""

RESAMPLE_QUALITY = "HQ"
"""soxr quality recipe used when a file's sample rate differs from :data:`SAMPLE_RATE`."""

# WAV subtypes that madmom (through scipy.io.wavfile) reads as native integers, and the numpy
# type soundfile gives for them (24-bit is left-justified into int32, as scipy does).
_NATIVE_INT_SUBTYPES: dict[str, type[np.generic]] = {
    "PCM_16": np.int16, "PCM_24": np.int32, "PCM_32": np.int32}
_NATIVE_FLOAT_SUBTYPES: dict[str, type[np.generic]] = {"FLOAT": np.float32, "DOUBLE": np.float64}
_WAV_FORMATS = {"WAV", "WAVEX", "RF64"}


def normalize_and_trim(x: np.ndarray, source: str = "array") -> np.ndarray:
    """Peak-normalise ``x`` and trim exact zeros at both ends, exactly as madmom + np.trim_zeros.

    Float input: ``x / max|x|`` computed in the input's float type (the peak becomes exactly
    +-1). Integer input: ``asarray(x / (max|x| / iinfo.max), dtype)``, i.e. the float64 quotient
    truncated toward zero, so the peak becomes +-iinfo.max (or one less when the float quotient
    lands just below it, as in madmom). The dtype is kept. ``source`` names
    the file in error messages. Raises :class:`AudioError` for empty, all-zero or non-finite input.
    """
    x = np.asarray(x)
    if x.ndim != 1:
        raise AudioError(f"{source}: expected a mono 1-D signal, got shape {x.shape}")
    if x.size == 0:
        raise AudioError(f"{source}: the audio has zero length (no samples)")
    if np.issubdtype(x.dtype, np.integer):
        # Peak in int64: np.abs on int16 wraps -32768 to itself (madmom inherits that quirk; we
        # take the true magnitude so a full-scale negative sample maps to -iinfo.max).
        peak = int(np.max(np.abs(x.astype(np.int64))))
        if peak == 0:
            raise AudioError(f"{source}: the audio is silent (all samples are zero)")
        info = np.iinfo(x.dtype)
        scaling = float(peak) / info.max
        y = np.clip(x / scaling, info.min, info.max).astype(x.dtype)  # astype truncates
    elif np.issubdtype(x.dtype, np.floating):
        if not np.all(np.isfinite(x)):
            bad = int(np.count_nonzero(~np.isfinite(x)))
            raise AudioError(f"{source}: the audio holds {bad} NaN/Inf samples")
        peak = x.dtype.type(np.max(np.abs(x)))
        if peak == 0:
            raise AudioError(f"{source}: the audio is silent (all samples are zero)")
        y = (x / peak).astype(x.dtype)
    else:
        raise AudioError(f"{source}: expected float or integer samples, got dtype {x.dtype}")
    return np.trim_zeros(y)


def to_float32(x: np.ndarray) -> np.ndarray:
    """Integer samples -> ``x / iinfo.max`` as float32 (madmom's int path); floats -> float32."""
    if np.issubdtype(x.dtype, np.integer):
        return (x.astype(np.float64) / np.iinfo(x.dtype).max).astype(np.float32)
    return x.astype(np.float32, copy=False)


def quantize_pcm16(x: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] -> int16 the way ffmpeg's ``s16`` output does it.

    libswresample converts float to s16 as ``clip(lrintf(x * 32768))`` (round half to even).
    """
    return np.clip(np.rint(x.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def _downmix(data: np.ndarray) -> np.ndarray:
    """(n, channels) -> (n,) by averaging channels, cast back to the input type like madmom."""
    if data.ndim == 1:
        return data
    if data.shape[1] == 1:
        return data[:, 0]
    return np.mean(data, axis=1, dtype=np.float64).astype(data.dtype)


def load_audio(path: str | os.PathLike[str], *, pcm16: bool | None = None) -> np.ndarray:
    """Load an audio file as float32 mono at 22 050 Hz, peak-normalised and zero-trimmed.

    ``pcm16`` picks the sample path: ``None`` (default) does what the reference pipeline did
    (native samples for a WAV already at 22 050 Hz, int16 quantisation after decoding and
    resampling for anything else); ``True`` always quantises to int16; ``False`` never does.
    Raises :class:`AudioError` naming the file for a missing, unreadable, empty, silent or
    non-finite file.
    """
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: audio file not found")
    if not p.is_file():
        raise AudioError(f"{p}: not a regular file")
    try:
        info = sf.info(str(p))
        native: type[np.generic] | None = None
        if pcm16 is None and info.format in _WAV_FORMATS and info.samplerate == SAMPLE_RATE:
            native = _NATIVE_INT_SUBTYPES.get(info.subtype) or _NATIVE_FLOAT_SUBTYPES.get(
                info.subtype)
        # Native samples are read as they are; everything else is decoded to float first (for
        # a 16-bit file, float = int / 32768, so quantize_pcm16 gives the int16 samples back).
        dtype = np.dtype(native).name if native is not None else "float32"
        data, rate = sf.read(str(p), dtype=dtype, always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OSError, EOFError) as err:
        raise AudioError(f"{p}: cannot decode audio ({type(err).__name__}: {err})") from err
    if data.shape[0] == 0:
        raise AudioError(f"{p}: the audio has zero length (no samples)")
    mono = _downmix(data)
    if native is None:
        if not np.all(np.isfinite(mono)):
            bad = int(np.count_nonzero(~np.isfinite(mono)))
            raise AudioError(f"{p}: the audio holds {bad} NaN/Inf samples")
        if rate != SAMPLE_RATE:
            mono = soxr.resample(mono, rate, SAMPLE_RATE, quality=RESAMPLE_QUALITY)
        if pcm16 is not False:
            mono = quantize_pcm16(mono)
    return to_float32(normalize_and_trim(mono, source=str(p)))
