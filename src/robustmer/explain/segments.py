"""Segment maps over a (time x frequency) excerpt and aggregation of attributions to segments.

A segment map is an integer tensor, ``(T, F)`` shared by the batch or ``(B, T, F)`` per clip,
with ids ``0..S-1`` (every id used). :func:`grid_segments` builds SoundLIME's rectangles (default
4 frequency bands x 5 time blocks = 20); :func:`log_band_segments` the same grid on an STFT with
log-spaced frequency bands (a waveform model's STFT view, ``explain/audio.py``).
"""

from __future__ import annotations

import re

import numpy as np
import torch

from robustmer.errors import ConfigError

AGGREGATIONS: tuple[str, ...] = ("mean", "mean_abs", "mean_pos")


def grid_segments(shape: tuple[int, int], n_freq: int = 4, n_time: int = 5) -> torch.Tensor:
    """``(T, F)`` int64 map of ``n_freq`` frequency bands x ``n_time`` time blocks.

    Blocks are as equal as possible (frame ``t`` is in block ``t * n_time // T``); the id of
    time block ``i`` and frequency band ``j`` is ``i * n_freq + j`` (time-major, so ids run along
    the frequency axis first: left to right in time, bottom to top in frequency).
    """
    if len(shape) != 2:
        raise ConfigError(f"grid_segments: shape must be (T, F), got {tuple(shape)}")
    T, F = (int(s) for s in shape)
    for name, n, size in (("n_time", n_time, T), ("n_freq", n_freq, F)):
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= size:
            raise ConfigError(f"grid_segments: {name} must be an int in 1..{size} for shape "
                              f"{(T, F)}, got {n!r}")
    t_block = torch.arange(T) * n_time // T
    f_band = torch.arange(F) * n_freq // F
    return (t_block[:, None] * n_freq + f_band[None, :]).to(torch.int64)


LOG_BAND_FMIN = 40.0
"""Lowest band edge (Hz) of :func:`log_band_segments` (the first band reaches down to 0 Hz)."""


def log_band_edges(n_freq: int, sample_rate: int, fmin: float = LOG_BAND_FMIN) -> np.ndarray:
    """``n_freq + 1`` band edges in Hz: ``0``, then ``fmin · (nyquist / fmin)^(j / n_freq)`` for
    ``j = 1..n_freq`` (geometric steps from ``fmin`` to the Nyquist frequency, the lowest band
    widened down to 0 Hz)."""
    nyquist = float(sample_rate) / 2
    if not isinstance(n_freq, int) or isinstance(n_freq, bool) or n_freq < 1:
        raise ConfigError(f"log_band_segments: n_freq must be a positive int, got {n_freq!r}")
    if not 0 < float(fmin) < nyquist:
        raise ConfigError(f"log_band_segments: fmin must lie in (0, {nyquist:g}) Hz (the Nyquist "
                          f"frequency of {sample_rate} Hz), got {fmin!r}")
    steps = np.arange(1, n_freq + 1) / n_freq
    return np.concatenate([[0.0], float(fmin) * (nyquist / float(fmin)) ** steps])


def log_band_segments(shape: tuple[int, int], n_freq: int = 4, n_time: int = 5, *,
                      sample_rate: int, n_fft: int,
                      fmin: float = LOG_BAND_FMIN) -> torch.Tensor:
    """``(T, F)`` int64 map of an STFT (``F = n_fft // 2 + 1`` bins of ``sample_rate / n_fft``
    Hz) in ``n_freq`` log-spaced frequency bands x ``n_time`` time blocks.

    The bands' edges are :func:`log_band_edges` (bin ``k`` at ``k · sample_rate / n_fft`` Hz
    is in band ``j`` when ``edge_j <= f_k < edge_{j+1}``; the Nyquist bin is in the top band),
    so a grid like ``4x5`` splits the frequency axis as it does on robustmer's log-filtered
    spectrogram (24 bands per octave, uniform in log frequency). Time blocks and ids follow
    :func:`grid_segments`: time block ``i``, band ``j`` -> ``i * n_freq + j``. A band with no
    bin (too many bands for the resolution) is a :class:`ConfigError`.
    """
    if len(shape) != 2:
        raise ConfigError(f"log_band_segments: shape must be (T, F), got {tuple(shape)}")
    T, F = (int(s) for s in shape)
    if int(n_fft) // 2 + 1 != F:
        raise ConfigError(f"log_band_segments: F = {F} bins do not match n_fft {n_fft} "
                          f"(expected {int(n_fft) // 2 + 1})")
    if not isinstance(n_time, int) or isinstance(n_time, bool) or not 1 <= n_time <= T:
        raise ConfigError(f"log_band_segments: n_time must be an int in 1..{T}, got {n_time!r}")
    edges = log_band_edges(n_freq, sample_rate, fmin)
    freqs = np.arange(F) * float(sample_rate) / int(n_fft)
    band = np.clip(np.searchsorted(edges, freqs, side="right") - 1, 0, n_freq - 1)
    empty = sorted(set(range(n_freq)) - set(band.tolist()))
    if empty:
        raise ConfigError(f"log_band_segments: band(s) {empty} ({edges[empty[0]]:.1f}-"
                          f"{edges[empty[0] + 1]:.1f} Hz) hold no STFT bin at {sample_rate} Hz / "
                          f"n_fft {n_fft}; use fewer frequency bands or a larger fmin")
    t_block = torch.arange(T) * n_time // T
    return (t_block[:, None] * n_freq + torch.as_tensor(band)[None, :]).to(torch.int64)


def parse_grid(spec: str) -> tuple[int, int]:
    """``"4x5"`` -> ``(n_freq=4, n_time=5)`` (frequency bands x time blocks)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(spec))
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ConfigError(f"segment grid must look like 4x5 (frequency bands x time blocks), "
                          f"got {spec!r}")
    return int(m.group(1)), int(m.group(2))


def check_segments(segments: torch.Tensor, shape: tuple[int, ...], *,
                   shared: bool = False) -> tuple[torch.Tensor, int]:
    """Validate a segment map for inputs of ``shape`` ``(B, ..., T, F)``; returns the map as
    ``(B, T, F)`` int64 (expanded if shared) and the number of segments ``S``. With
    ``shared=True`` the map must be one ``(T, F)`` map for the whole batch (the segment
    arithmetic of the explainer evaluation and the deletion test) and comes back as ``(T, F)``.

    Raises :class:`ConfigError` for a non-integer map, a wrong shape, negative ids, or ids that
    do not cover ``0..S-1`` (an unused id would be an empty segment with no score).
    """
    if not isinstance(segments, torch.Tensor):
        raise ConfigError(f"segments must be an integer tensor, got {type(segments).__name__}")
    if segments.dtype.is_floating_point or segments.dtype.is_complex or \
            segments.dtype == torch.bool:
        raise ConfigError(f"segments must be an integer tensor, got dtype {segments.dtype}")
    B, T, F = 1 if shared else shape[0], shape[-2], shape[-1]
    if shared and segments.shape != (T, F):
        raise ConfigError(f"segments must be one (T, F) = {(T, F)} map shared by the batch, "
                          f"got shape {tuple(segments.shape)}")
    if segments.shape == (T, F):
        seg = segments.to(torch.int64)[None].expand(B, T, F)
    elif segments.shape == (B, T, F):
        seg = segments.to(torch.int64)
    else:
        raise ConfigError(f"segments must have shape (T, F) = {(T, F)} or (B, T, F) = "
                          f"{(B, T, F)} for input {tuple(shape)}, got {tuple(segments.shape)}")
    if int(seg.min()) < 0:
        raise ConfigError(f"segment ids must be >= 0, found {int(seg.min())}")
    n_seg = int(seg.max()) + 1
    flat = seg.reshape(seg.shape[0], -1)
    for b in range(1 if segments.ndim == 2 else seg.shape[0]):
        used = torch.bincount(flat[b], minlength=n_seg)
        if bool((used == 0).any()):
            missing = torch.nonzero(used == 0).flatten().tolist()[:10]
            where = "" if segments.ndim == 2 else f" (clip {b})"
            raise ConfigError(f"segment ids must cover 0..{n_seg - 1}; unused id(s) "
                              f"{missing}{where}")
    return (seg[0], n_seg) if shared else (seg, n_seg)


def aggregate(attribution: torch.Tensor, segments: torch.Tensor,
              how: str = "mean") -> torch.Tensor:
    """``(B, ..., T, F)`` attribution + ``(T, F)`` or ``(B, T, F)`` map -> ``(B, S)`` scores.

    ``mean``: mean attribution over the segment's pixels; ``mean_abs``: mean of absolute values;
    ``mean_pos``: mean of the positive values (a segment with none gets ``-inf`` so it ranks
    last). Pixels of extra leading dims (channels) at ``(t, f)`` belong to segment ``map[t, f]``.
    """
    if how not in AGGREGATIONS:
        raise ConfigError(f"aggregation must be one of {list(AGGREGATIONS)}, got {how!r}")
    if not isinstance(attribution, torch.Tensor) or attribution.ndim < 3:
        raise ConfigError(f"attribution must be a (B, ..., T, F) tensor, got "
                          f"{getattr(attribution, 'shape', type(attribution).__name__)}")
    seg, n_seg = check_segments(segments.to(attribution.device), tuple(attribution.shape))
    B = attribution.shape[0]
    a = attribution.detach().double().reshape(B, -1, *attribution.shape[-2:])
    idx = seg[:, None].expand_as(a).reshape(B, -1)
    vals = a.reshape(B, -1)
    if how == "mean_abs":
        vals = vals.abs()
    weight = torch.ones_like(vals)
    if how == "mean_pos":
        weight = (vals > 0).double()
        vals = vals * weight
    total = torch.zeros(B, n_seg, dtype=torch.float64, device=a.device).scatter_add_(1, idx, vals)
    count = torch.zeros(B, n_seg, dtype=torch.float64, device=a.device).scatter_add_(
        1, idx, weight)
    out = total / count.clamp(min=1)
    if how == "mean_pos":
        out = torch.where(count > 0, out, torch.full_like(out, -torch.inf))
    return out.to(torch.float32)


def paint(scores: torch.Tensor, segments: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Segment scores ``(B, S)`` painted onto their pixels: a ``shape`` ``(B, ..., T, F)`` map."""
    seg, _ = check_segments(segments.to(scores.device), shape)
    painted = torch.gather(scores, 1, seg.reshape(seg.shape[0], -1)).reshape(seg.shape)
    extra = shape[1:-2]
    return painted.reshape(shape[0], *([1] * len(extra)), *shape[-2:]).expand(shape).contiguous()
