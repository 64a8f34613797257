"""Figures of explanations (matplotlib ``Figure`` objects, no pyplot, so no GUI backend is ever
touched): an attribution map over its spectrogram excerpt with the segment grid, and a concept
contribution bar chart. The CLI and the report both use them; saving is the caller's job."""

from __future__ import annotations

from collections.abc import Sequence

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


def _segment_edges(ax: object, segments: np.ndarray) -> None:
    """Draw the boundaries between segments (between neighbouring pixels of different ids) as
    one ``LineCollection``."""
    from matplotlib.collections import LineCollection

    dt = np.argwhere(segments[1:, :] != segments[:-1, :])  # between frames t and t+1
    df = np.argwhere(segments[:, 1:] != segments[:, :-1])  # between bins f and f+1
    lines = [((t + 0.5, f - 0.5), (t + 0.5, f + 0.5)) for t, f in dt]
    lines += [((t - 0.5, f + 0.5), (t + 0.5, f + 0.5)) for t, f in df]
    if lines:
        ax.add_collection(LineCollection(lines, colors="k", linewidths=0.6))  # type: ignore[attr-defined]


def _label_segments(ax: object, segments: np.ndarray, scores: np.ndarray | None) -> None:
    for s in range(int(segments.max()) + 1):
        t, f = np.nonzero(segments == s)
        if t.size == 0:
            continue
        text = str(s) if scores is None else f"{s}\n{scores[s]:.2g}"
        ax.text(t.mean(), f.mean(), text, ha="center", va="center",  # type: ignore[attr-defined]
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
