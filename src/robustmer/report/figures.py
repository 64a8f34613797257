"""The report's figures, drawn with matplotlib's Agg backend from results-store tables only.

Each function takes tables, draws one figure and returns its PNG bytes (written atomically to
``path`` as well when one is given), so the HTML page can embed it as a data URI.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless, deterministic raster output; must precede pyplot
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from robustmer.errors import ConfigError
from robustmer.evaluate.store import order_model_types
from robustmer.io import atomic_open

FIG4_MODEL_TYPES: tuple[str, ...] = ("A2B2E", "A2M2E", "aA2B2E")
"""The model types Figure 4 shows (whichever exist)."""

FIG4_EMOTIONS: tuple[str, ...] = ("tension", "tender")
"""Figure 4's default emotions."""

_DPI = 100


def _finish(fig: Figure, path: str | os.PathLike[str] | None) -> bytes:
    buf = io.BytesIO()
    # metadata without the Software/date keys keeps the bytes reproducible for a given input
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight",
                metadata={"Software": None})
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        with atomic_open(path, "wb") as fh:
            fh.write(data)
    return data


def placeholder_png(text: str, path: str | os.PathLike[str] | None = None) -> bytes:
    """A small figure that states why a real one could not be drawn (e.g. no runs)."""
    fig, ax = plt.subplots(figsize=(5, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    return _finish(fig, path)


def delta_mae_boxplot(per_run: pd.DataFrame, path: str | os.PathLike[str] | None = None,
                      title: str = "") -> bytes:
    """Figure 3: box plot of ΔMAE (MAE after − before attack) per model type over seeds, one
    point per run (``per_run`` has ``model_type`` and ``delta_mae``, one row per run)."""
    df = per_run[np.isfinite(per_run["delta_mae"].to_numpy(np.float64))]
    if len(df) == 0:
        return placeholder_png("Figure 3: no finished runs with ΔMAE", path)
    types = order_model_types(df["model_type"])
    data = [df.loc[df["model_type"] == t, "delta_mae"].to_numpy(np.float64) for t in types]
    fig, ax = plt.subplots(figsize=(1.3 * len(types) + 2.5, 4))
    ax.boxplot(data, tick_labels=types, showfliers=False)
    rng = np.random.default_rng(0)  # fixed jitter: the figure is reproducible
    for i, vals in enumerate(data, start=1):
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(vals)), vals, s=14, alpha=0.7,
                   color="tab:blue", zorder=3)
    ax.set_ylabel("ΔMAE (after − before attack)")
    ax.set_xlabel("model type")
    ax.set_title(title or "ΔMAE per model type (one point per seed)")
    ax.grid(axis="y", alpha=0.3)
    return _finish(fig, path)


def prediction_scatter(
    clips: pd.DataFrame,
    emotions: Sequence[str] = FIG4_EMOTIONS,
    model_types: Sequence[str] = FIG4_MODEL_TYPES,
    path: str | os.PathLike[str] | None = None,
    title: str = "",
) -> bytes:
    """Figure 4: true annotation (x axis) vs prediction (y axis) per emotion (rows) and model
    type (columns), clean as ``x`` and adversarial as ``o``, with an inset zoomed to [0, 1]."""
    for e in emotions:
        if f"y_{e}" not in clips.columns:
            raise ConfigError(f"emotion {e!r}: no column y_{e} in clips.csv")
    present = set(clips["model_type"]) if len(clips) else set()
    types = [t for t in model_types if t in present]
    if not types or not emotions:
        return placeholder_png(
            f"Figure 4: none of {', '.join(model_types)} in the results", path)
    nr, nc = len(emotions), len(types)
    fig, axes = plt.subplots(nr, nc, figsize=(4.2 * nc, 3.8 * nr), squeeze=False)
    for i, e in enumerate(emotions):
        for j, t in enumerate(types):
            ax = axes[i][j]
            sel = clips[clips["model_type"] == t]
            y = sel[f"y_{e}"].to_numpy(np.float64)
            clean = sel[f"pred_{e}"].to_numpy(np.float64)
            adv = sel[f"adv_{e}"].to_numpy(np.float64)
            inset = ax.inset_axes((0.58, 0.05, 0.4, 0.4))
            for target in (ax, inset):
                target.scatter(y, adv, marker="o", s=10, facecolors="none",
                               edgecolors="tab:red", alpha=0.6, label="adversarial")
                target.scatter(y, clean, marker="x", s=10, color="tab:blue", alpha=0.7,
                               label="clean")
                target.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
            inset.set_xlim(0, 1)
            inset.set_ylim(0, 1)
            inset.tick_params(labelsize=6)
            inset.set_title("zoom [0, 1]", fontsize=7)
            ax.set_title(f"{t}: {e}")
            ax.set_xlabel(f"true {e}")
            ax.set_ylabel(f"predicted {e}")
            if i == 0 and j == 0:
                ax.legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _finish(fig, path)


def delta_image(delta: np.ndarray, path: str | os.PathLike[str] | None = None,
                title: str = "δ") -> bytes:
    """An image of a spectrogram-domain perturbation δ (frames x bands, any leading singleton
    axes squeezed), with a symmetric colour scale around 0."""
    d = np.asarray(delta, dtype=np.float64).squeeze()
    if d.ndim != 2 or d.size == 0:
        raise ConfigError(f"delta: expected a 2-d (frames, bands) array, got shape "
                          f"{np.asarray(delta).shape}")
    lim = float(np.nanmax(np.abs(d))) or 1.0
    fig, ax = plt.subplots(figsize=(5, 2.6))
    im = ax.imshow(d.T, origin="lower", aspect="auto", cmap="coolwarm", vmin=-lim, vmax=lim,
                   interpolation="nearest")
    ax.set_xlabel("frame")
    ax.set_ylabel("band")
    ax.set_title(title)
    fig.colorbar(im, ax=ax)
    return _finish(fig, path)


def save_png(data: bytes, path: str | os.PathLike[str]) -> Path:
    """Write PNG bytes atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)
