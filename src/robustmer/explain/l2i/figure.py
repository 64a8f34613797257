"""The L2I figure of one clip: the input's and the selected components' log-magnitude STFTs on
a log-frequency axis, beside the components' relevance (matplotlib, no pyplot)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

FREQ_TICKS_HZ: tuple[float, ...] = (20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
"""Where the L2I figure's log-frequency axis is labelled (those inside its range)."""

FIGURE_FMIN_HZ = 20.0
"""The L2I figure's lowest frequency (the front end's ``fmin``: nothing below reaches a model)."""


def _pool_frames(img: np.ndarray, most: int) -> tuple[np.ndarray, np.ndarray]:
    """Means over blocks of consecutive frames so that at most ``most`` columns remain, and the
    blocks' edges in frame units (a panel is ~260 pixels wide: more columns are not seen)."""
    T = img.shape[0]
    k = max(1, -(-T // most))
    starts = np.arange(0, T, k)
    sums = np.add.reduceat(img, starts, axis=0)
    sizes = np.diff(np.append(starts, T))
    return sums / sizes[:, None], np.append(starts, T) - 0.5


def log_frequency_bands(img: np.ndarray, bin_hz: float, fmin: float = FIGURE_FMIN_HZ,
                        n_bands: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """``img (T, F)`` over linear FFT bins (bin ``k`` at ``k · bin_hz``) on ``n_bands``
    geometrically spaced bands from ``fmin`` to the top bin: each band the mean of the bins whose
    centre falls inside it, or the nearest bin where a low band is narrower than a bin. Returns
    ``(T, n_bands)`` and the ``n_bands + 1`` band edges in Hz. For drawing only: a mesh of
    F = 1024 rows per panel takes seconds to draw, and a panel is ~200 pixels high anyway."""
    T, F = img.shape
    top = (F - 0.5) * bin_hz
    edges = np.geomspace(max(fmin, 0.5 * bin_hz), top, n_bands + 1)
    centres = np.arange(F) * bin_hz
    lo = np.searchsorted(centres, edges[:-1], side="left")
    hi = np.searchsorted(centres, edges[1:], side="left")
    cs = np.concatenate([np.zeros((T, 1)), np.cumsum(img, axis=1)], axis=1)
    count = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (cs[:, hi] - cs[:, lo]) / np.where(count > 0, count, 1)
    nearest = np.clip(np.rint(np.sqrt(edges[:-1] * edges[1:]) / bin_hz).astype(int), 0, F - 1)
    out = np.where(count[None, :] > 0, mean, img[:, nearest])
    return out, edges


def _hz_label(f: float) -> str:
    return f"{f / 1000:g}k" if f >= 1000 else f"{f:g}"


def l2i_figure(X: torch.Tensor | np.ndarray, parts: torch.Tensor | np.ndarray, comps: list[int],
               r: torch.Tensor | np.ndarray, tau: float, *, sample_rate: float,
               frame_size: int, title: str = "", per_row: int = 4) -> Any:
    """The L2I figure of one clip as a matplotlib ``Figure`` (no pyplot): the input's
    log-magnitude STFT ``X (T, F)`` and each selected component's part ``parts[k] (T, F)`` on a
    log-frequency axis in Hz from 20 Hz (bin ``k`` sits at ``k · sample_rate / frame_size``;
    drawn as ``log_frequency_bands``), so the low bands where music's energy lives are not
    squeezed into the bottom fifth as on the linear bin axis; and the relevance of the
    20 most relevant components as horizontal bars, one labelled row each (labels cannot
    overlap), selected ones (r > τ) in orange. ``figure_alt(fig)`` describes it."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator

    from robustmer.explain.plots import set_alt

    Xn = np.asarray(X.detach().cpu() if isinstance(X, torch.Tensor) else X, dtype=np.float64)
    P = np.asarray(parts.detach().cpu() if isinstance(parts, torch.Tensor) else parts,
                   dtype=np.float64)
    rr = np.asarray(r.detach().cpu() if isinstance(r, torch.Tensor) else r, dtype=np.float64)
    df = float(sample_rate) / float(frame_size)
    panels = [(f"input {title}".strip(), Xn)] + [
        (f"component {k} (r = {rr[k]:.2f})", P[k]) for k in comps]
    ncols = min(per_row, len(panels))
    nrows = -(-len(panels) // ncols)
    order = np.argsort(-rr, kind="stable")[:20]
    height = max(2.9 * nrows, 0.22 * len(order) + 1.2)
    fig = Figure(figsize=(2.9 * ncols + 3.0, height))
    grid = fig.add_gridspec(nrows, ncols + 1, width_ratios=[1.0] * ncols + [0.9])
    vmax = float(np.nanmax(Xn)) if np.isfinite(Xn).any() else 1.0
    first = None
    for i, (name, img) in enumerate(panels):
        ax = fig.add_subplot(grid[i // ncols, i % ncols], sharex=first, sharey=first)
        first = first or ax
        bands, f_edges = log_frequency_bands(img, df)
        pooled, t_edges = _pool_frames(bands, 160)
        ax.pcolormesh(t_edges, f_edges, pooled.T, cmap="magma", vmin=0.0, vmax=vmax or 1.0,
                      shading="flat", rasterized=True)
        ax.set_yscale("log")
        ticks = [f for f in FREQ_TICKS_HZ if f_edges[0] <= f <= f_edges[-1]]
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.set_yticks(ticks, [_hz_label(f) for f in ticks])
        ax.yaxis.set_minor_locator(NullLocator())  # log minor ticks: slow to draw, no label
        ax.set_ylim(f_edges[0], f_edges[-1])
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("frame", fontsize=7)
        if i % ncols == 0:
            ax.set_ylabel("frequency (Hz, log scale)", fontsize=7)
    bar = fig.add_subplot(grid[:, -1])
    ypos = np.arange(len(order))
    bar.barh(ypos, rr[order], color=["C1" if rr[o] > tau else "C0" for o in order])
    bar.set_yticks(ypos, [f"comp. {int(o)}" for o in order], fontsize=7)
    bar.invert_yaxis()
    bar.axvline(tau, color="k", lw=0.8, ls="--")
    bar.set_xlabel("relevance r", fontsize=7)
    bar.tick_params(axis="x", labelsize=7)
    bar.set_title(f"relevance (τ = {tau:g}; orange: selected)", fontsize=8)
    fig.tight_layout()
    n_sel = int((rr > tau).sum())
    return set_alt(fig, f"Log-frequency spectrogram of the input{' for ' + title if title else ''}"
                   f" and of {len(comps)} selected component(s), beside the relevance of the "
                   f"{len(order)} most relevant of {len(rr)} components ({n_sel} above τ = "
                   f"{tau:g}).")


def write_figure(X: torch.Tensor, parts: torch.Tensor, comps: list[int], r: torch.Tensor,
                 tau: float, path: Path, title: str, *, sample_rate: float,
                 frame_size: int) -> str:
    """Draw ``l2i_figure`` and write it atomically to ``path``; returns its alt text."""
    from robustmer import io
    from robustmer.explain.plots import figure_alt

    fig = l2i_figure(X, parts, comps, r, tau, sample_rate=sample_rate, frame_size=frame_size,
                     title=title)
    with io.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    return figure_alt(fig)
