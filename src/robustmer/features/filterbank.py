"""madmom's ``LogarithmicFilterbank`` (normalised, unique-bin triangular filters), rebuilt in numpy.

Written by hand because no maintained library builds this exact matrix (librosa's and
torchaudio's filterbanks use other frequency rules); madmom itself is unmaintained and does not
install on current Python. The rules are those of shared/fixtures/madmom/FACTS.md §5; the test
compares the result with madmom's own matrix bit for bit.
"""

from __future__ import annotations

import numpy as np

from robustmer.errors import ConfigError


def fft_bin_frequencies(frame_size: int, sample_rate: float) -> np.ndarray:
    """Centre frequencies (Hz) of the ``frame_size // 2`` kept FFT bins (Nyquist dropped)."""
    return np.fft.fftfreq(frame_size, 1.0 / sample_rate)[: frame_size // 2]


def log_frequencies(bands_per_octave: int, fmin: float, fmax: float, fref: float) -> np.ndarray:
    """Frequencies spaced ``bands_per_octave`` per octave around ``fref``, within [fmin, fmax]."""
    left = np.floor(np.log2(float(fmin) / fref) * bands_per_octave)
    right = np.ceil(np.log2(float(fmax) / fref) * bands_per_octave)
    freqs = fref * 2.0 ** (np.arange(left, right) / float(bands_per_octave))
    freqs = freqs[np.searchsorted(freqs, fmin):]
    return freqs[: np.searchsorted(freqs, fmax, "right")]


def frequencies_to_bins(freqs: np.ndarray, bin_freqs: np.ndarray) -> np.ndarray:
    """Index of the nearest FFT bin for each frequency (ties go to the upper bin), unique."""
    idx = np.clip(np.searchsorted(bin_freqs, freqs), 1, len(bin_freqs) - 1)
    left = bin_freqs[idx - 1]
    right = bin_freqs[idx]
    idx -= (freqs - left < right - freqs).astype(idx.dtype)
    return np.unique(idx)


def triangular_filterbank(bins: np.ndarray, num_fft_bins: int) -> np.ndarray:
    """Area-normalised overlapping triangles on consecutive bin triples -> (num_fft_bins, bands)."""
    n_bands = len(bins) - 2
    if n_bands < 1:
        raise ConfigError(f"filterbank: the frequency range covers {len(bins)} distinct FFT "
                          "bins; at least 3 are needed for one band (widen fmin/fmax)")
    fb = np.zeros((num_fft_bins, n_bands), dtype=np.float64)
    for band in range(n_bands):
        start, center, stop = (int(b) for b in bins[band: band + 3])
        if stop - start < 2:  # madmom's guard: a one-bin filter
            center, stop = start, start + 1
        filt = np.zeros(stop - start, dtype=np.float32)
        filt[: center - start] = np.linspace(0, 1, center - start, endpoint=False)
        filt[center - start:] = np.linspace(1, 0, stop - center, endpoint=False)
        filt /= np.sum(filt)
        fb[start:stop, band] = np.maximum(filt, fb[start:stop, band])
    return fb.astype(np.float32)


def log_filterbank(frame_size: int, sample_rate: float, bands_per_octave: int, fmin: float,
                   fmax: float, fref: float) -> tuple[np.ndarray, np.ndarray]:
    """The (frame_size // 2, bands) float32 filterbank and the unique FFT bins it was built on."""
    bin_freqs = fft_bin_frequencies(frame_size, sample_rate)
    bins = frequencies_to_bins(log_frequencies(bands_per_octave, fmin, fmax, fref), bin_freqs)
    return triangular_filterbank(bins, len(bin_freqs)), bins
