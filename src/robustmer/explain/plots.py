"""Figures of explanations (matplotlib ``Figure`` objects, no pyplot, so no GUI backend is ever
touched): an attribution map over its spectrogram excerpt with the segment grid (for a waveform
model: over its log-magnitude STFT, or along its samples), and a concept contribution bar
chart. The CLI and the report both use them; saving is the caller's job."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from robustmer.errors import ConfigError


def _2d(a: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    arr = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    arr = np.squeeze(arr)
    if arr.ndim != 2:
        raise ConfigError(f"{name} must be one (T, F) map, got shape {arr.shape}")
    return arr.astype(np.float64)


def _segment_edges(ax: object, segments: np.ndarray, t_edges: np.ndarray | None = None,
                   f_edges: np.ndarray | None = None) -> None:
    """Draw the boundaries between segments (between neighbouring pixels of different ids) as
    one ``LineCollection``; pixel ``(t, f)`` spans ``t_edges[t:t+2] x f_edges[f:f+2]`` (default:
    unit pixels centred on the indices)."""
    from matplotlib.collections import LineCollection

    T, F = segments.shape
    te = np.arange(T + 1) - 0.5 if t_edges is None else np.asarray(t_edges, dtype=float)
    fe = np.arange(F + 1) - 0.5 if f_edges is None else np.asarray(f_edges, dtype=float)
    dt = np.argwhere(segments[1:, :] != segments[:-1, :])  # between frames t and t+1
    df = np.argwhere(segments[:, 1:] != segments[:, :-1])  # between bins f and f+1
    lines = [((te[t + 1], fe[f]), (te[t + 1], fe[f + 1])) for t, f in dt]
    lines += [((te[t], fe[f + 1]), (te[t + 1], fe[f + 1])) for t, f in df]
    if lines:
        ax.add_collection(LineCollection(lines, colors="k", linewidths=0.6))  # type: ignore[attr-defined]


def _label_segments(ax: object, segments: np.ndarray, scores: np.ndarray | None,
                    t_centres: np.ndarray | None = None, f_centres: np.ndarray | None = None,
                    log_f: bool = False) -> None:
    """Each segment's id (and score) at its centre (with ``log_f``: the geometric middle of its
    frequency range, where it sits on a log axis)."""
    tc = np.arange(segments.shape[0]) if t_centres is None else np.asarray(t_centres, float)
    fc = np.arange(segments.shape[1]) if f_centres is None else np.asarray(f_centres, float)
    for s in range(int(segments.max()) + 1):
        t, f = np.nonzero(segments == s)
        if t.size == 0:
            continue
        if log_f:
            lo, hi = fc[f].min(), fc[f].max()
            y = float(np.sqrt(lo * hi))
        else:
            y = float(fc[f].mean())
        text = str(s) if scores is None else f"{s}\n{scores[s]:.2g}"
        ax.text(float(tc[t].mean()), y, text, ha="center", va="center",  # type: ignore[attr-defined]
                fontsize=6, color="k")


def attribution_figure(spectrogram: torch.Tensor | np.ndarray,
                       attribution: torch.Tensor | np.ndarray,
                       segments: torch.Tensor | np.ndarray | None = None,
                       scores: Sequence[float] | torch.Tensor | None = None,
                       title: str = "") -> Figure:
    """Two panels over a ``(T, F)`` excerpt (time on x, frequency bin on y): the spectrogram,
    and the attribution (diverging colours centred on 0) over a faint copy of it; with a
    segment map, its boundaries and each segment's id (and score) are drawn on both."""
    spec = _2d(spectrogram, "spectrogram")
    attr = _2d(attribution, "attribution")
    if spec.shape != attr.shape:
        raise ConfigError(f"spectrogram {spec.shape} and attribution {attr.shape} differ")
    seg = None if segments is None else _2d(segments, "segments").astype(np.int64)
    if seg is not None and seg.shape != spec.shape:
        raise ConfigError(f"segment map {seg.shape} does not match the excerpt {spec.shape}")
    sc = None if scores is None else np.asarray(
        scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores, dtype=float)
    fig = Figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 2, sharey=True)
    extent = (-0.5, spec.shape[0] - 0.5, -0.5, spec.shape[1] - 0.5)
    im0 = axes[0].imshow(spec.T, origin="lower", aspect="auto", cmap="magma", extent=extent)
    fig.colorbar(im0, ax=axes[0], fraction=0.046, pad=0.02)
    axes[0].set_title("input excerpt (standardised)")
    lim = float(np.nanmax(np.abs(attr[np.isfinite(attr)]))) if np.isfinite(attr).any() else 1.0
    axes[1].imshow(spec.T, origin="lower", aspect="auto", cmap="gray", extent=extent,
                   alpha=0.35)
    im1 = axes[1].imshow(attr.T, origin="lower", aspect="auto", cmap="RdBu_r", extent=extent,
                         vmin=-(lim or 1.0), vmax=lim or 1.0, alpha=0.8)
    fig.colorbar(im1, ax=axes[1], fraction=0.046, pad=0.02)
    axes[1].set_title("attribution")
    for ax in axes:
        ax.set_xlabel("frame")
        if seg is not None:
            _segment_edges(ax, seg)
    if seg is not None:
        _label_segments(axes[1], seg, sc)
    axes[0].set_ylabel("frequency bin")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _log_magnitude(magnitude: np.ndarray, floor_db: float = 80.0) -> np.ndarray:
    """``20·log10 |M|`` in dB, floored ``floor_db`` below the maximum (silence stays finite)."""
    db = 20.0 * np.log10(np.maximum(np.abs(magnitude), 1e-12))
    return np.maximum(db, float(db.max()) - floor_db)


def _stft_axes(shape: tuple[int, int], sample_rate: int, hop: int,
               n_fft: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Pixel edges and centres of an STFT: time in seconds, frequency in Hz; the lowest edge is
    raised to the plot's floor (20 Hz, or half a bin if bins are wider) for the log axis."""
    T, F = shape
    df = float(sample_rate) / n_fft
    floor = max(20.0, df / 2)
    t_edges = (np.arange(T + 1) - 0.5) * hop / sample_rate
    t_centres = np.arange(T) * hop / sample_rate
    f_edges = np.clip((np.arange(F + 1) - 0.5) * df, floor, None)
    f_centres = np.clip(np.arange(F) * df, floor, None)
    return t_edges, t_centres, f_edges, f_centres, floor


def _stft_panel(ax: Any, db: np.ndarray, t_edges: np.ndarray,
                f_edges: np.ndarray, cmap: str = "magma", alpha: float = 1.0) -> Any:
    mesh = ax.pcolormesh(t_edges, f_edges, db.T, cmap=cmap, shading="flat", alpha=alpha,
                         rasterized=True)
    ax.set_yscale("log")
    ax.set_ylim(f_edges[0], f_edges[-1])
    ax.set_xlabel("time (s)")
    return mesh


def stft_attribution_figure(magnitude: torch.Tensor | np.ndarray,
                            attribution: torch.Tensor | np.ndarray,
                            segments: torch.Tensor | np.ndarray | None = None,
                            scores: Sequence[float] | torch.Tensor | None = None, *,
                            sample_rate: int, hop: int, n_fft: int, title: str = "") -> Figure:
    """:func:`attribution_figure` for a waveform model's STFT view: over a ``(T, F)`` STFT
    magnitude (time in seconds on x, frequency in Hz on a log axis), the log-magnitude
    spectrogram, and the attribution (diverging colours centred on 0) over a faint copy of it,
    with the segment grid and each segment's id (and score)."""
    mag = _2d(magnitude, "magnitude")
    attr = _2d(attribution, "attribution")
    if mag.shape != attr.shape:
        raise ConfigError(f"magnitude {mag.shape} and attribution {attr.shape} differ")
    seg = None if segments is None else _2d(segments, "segments").astype(np.int64)
    if seg is not None and seg.shape != mag.shape:
        raise ConfigError(f"segment map {seg.shape} does not match the STFT {mag.shape}")
    sc = None if scores is None else np.asarray(
        scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores, dtype=float)
    te, tc, fe, fc, _ = _stft_axes(mag.shape, sample_rate, hop, n_fft)  # type: ignore[arg-type]
    db = _log_magnitude(mag)
    fig = Figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 2, sharey=True)
    m0 = _stft_panel(axes[0], db, te, fe)
    fig.colorbar(m0, ax=axes[0], fraction=0.046, pad=0.02, label="dB")
    axes[0].set_title("input: STFT magnitude (log)")
    lim = float(np.nanmax(np.abs(attr[np.isfinite(attr)]))) if np.isfinite(attr).any() else 1.0
    _stft_panel(axes[1], db, te, fe, cmap="gray", alpha=0.35)
    m1 = axes[1].pcolormesh(te, fe, attr.T, cmap="RdBu_r", shading="flat", vmin=-(lim or 1.0),
                            vmax=lim or 1.0, alpha=0.8, rasterized=True)
    fig.colorbar(m1, ax=axes[1], fraction=0.046, pad=0.02)
    axes[1].set_title("attribution")
    if seg is not None:
        for ax in axes:
            _segment_edges(ax, seg, te, fe)
        _label_segments(axes[1], seg, sc, tc, fc, log_f=True)
    axes[0].set_ylabel("frequency (Hz)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def wave_attribution_figure(wave: torch.Tensor | np.ndarray,
                            attribution: torch.Tensor | np.ndarray,
                            magnitude: torch.Tensor | np.ndarray,
                            segments: torch.Tensor | np.ndarray | None = None,
                            scores: Sequence[float] | torch.Tensor | None = None, *,
                            sample_rate: int, hop: int, n_fft: int, title: str = "") -> Figure:
    """A waveform model's input view: the clip's log-magnitude STFT (``magnitude`` ``(T, F)``,
    to see what is where) and the per-sample attribution of ``wave`` ``(S,)`` over time, with
    the time blocks of ``segments`` (``(S,)`` / ``(S, 1)`` ids) outlined and shaded by their
    score on both panels."""
    w = np.asarray(wave.detach().cpu() if isinstance(wave, torch.Tensor) else wave,
                   dtype=float).reshape(-1)
    attr = np.asarray(attribution.detach().cpu() if isinstance(attribution, torch.Tensor)
                      else attribution, dtype=float).reshape(-1)
    if w.shape != attr.shape:
        raise ConfigError(f"wave {w.shape} and attribution {attr.shape} differ")
    mag = _2d(magnitude, "magnitude")
    te, _, fe, _, _ = _stft_axes(mag.shape, sample_rate, hop, n_fft)  # type: ignore[arg-type]
    times = np.arange(w.size) / sample_rate
    seg = None
    if segments is not None:
        seg = np.asarray(segments.detach().cpu() if isinstance(segments, torch.Tensor)
                         else segments).reshape(-1).astype(np.int64)
        if seg.shape != w.shape:
            raise ConfigError(f"segment map {seg.shape} does not match the clip {w.shape}")
    sc = None if scores is None else np.asarray(
        scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores, dtype=float)
    fig = Figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 2, sharex=True)
    m0 = _stft_panel(axes[0], _log_magnitude(mag), te, fe)
    fig.colorbar(m0, ax=axes[0], fraction=0.046, pad=0.02, label="dB")
    axes[0].set_title("input: STFT magnitude (log)")
    axes[0].set_ylabel("frequency (Hz)")
    axes[1].plot(times, attr, color="k", lw=0.4)
    axes[1].set_xlim(times[0], times[-1])
    axes[1].set_xlabel("time (s)")
    axes[1].set_title("attribution per sample")
    if seg is not None:
        import matplotlib as mpl

        starts = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
        ends = np.r_[starts[1:], seg.size]
        finite = sc[np.isfinite(sc)] if sc is not None else np.zeros(0)
        lim = float(np.abs(finite).max()) if finite.size else 1.0
        norm = mpl.colors.Normalize(vmin=-(lim or 1.0), vmax=lim or 1.0)
        cmap = mpl.colormaps["RdBu_r"]
        for a, b in zip(starts, ends, strict=True):
            sid = int(seg[a])
            for ax in axes:
                ax.axvline(times[a], color="k", lw=0.6)
            colour = cmap(norm(sc[sid])) if sc is not None and np.isfinite(sc[sid]) else "none"
            axes[1].axvspan(times[a], times[b - 1], color=colour, alpha=0.35, lw=0)
            text = str(sid) if sc is None else f"{sid}\n{sc[sid]:.2g}"
            axes[1].text((times[a] + times[b - 1]) / 2, 0.95, text, ha="center", va="top",
                         fontsize=6, transform=axes[1].get_xaxis_transform())
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def concept_figure(table: pd.DataFrame, clip_id: str | None = None,
                   emotions: Sequence[str] | None = None) -> Figure:
    """Bar chart of each concept's contribution to each emotion for one clip of a
    :func:`robustmer.explain.concept_table` (one panel per emotion; the title gives the
    prediction and the bias)."""
    if table.empty:
        raise ConfigError("concept table is empty")
    clip = str(table["clip_id"].iloc[0]) if clip_id is None else str(clip_id)
    rows = table[table["clip_id"].astype(str) == clip]
    if rows.empty:
        raise ConfigError(f"clip {clip!r} is not in the concept table")
    names = list(dict.fromkeys(rows["emotion"])) if emotions is None else list(emotions)
    missing = sorted(set(names) - set(rows["emotion"]))
    if missing:
        raise ConfigError(f"emotion(s) {missing} are not in the concept table")
    ncol = min(4, len(names))
    nrow = -(-len(names) // ncol)
    fig = Figure(figsize=(3.2 * ncol, 2.8 * nrow))
    axes = np.atleast_1d(fig.subplots(nrow, ncol, sharex=True, squeeze=False)).ravel()
    lim = float(rows["contribution"].abs().max()) or 1.0
    for ax, emo in zip(axes, names, strict=False):
        r = rows[rows["emotion"] == emo]
        vals = r["contribution"].to_numpy()
        ax.barh(np.arange(len(r)), vals, color=np.where(vals >= 0, "tab:red", "tab:blue"))
        ax.set_yticks(np.arange(len(r)), r["concept"].tolist(), fontsize=7)
        ax.axvline(0, color="k", lw=0.6)
        ax.set_xlim(-1.1 * lim, 1.1 * lim)
        ax.set_title(f"{emo}: {r['prediction'].iloc[0]:.2f} (bias {r['bias'].iloc[0]:+.2f})",
                     fontsize=8)
        ax.invert_yaxis()
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"clip {clip}: concept contributions to each emotion", fontsize=10)
    fig.tight_layout()
    return fig
