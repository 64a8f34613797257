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
from robustmer.evaluate.store import order_model_types, setting_key, setting_label
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


CURVE_LABELS: dict[str, str] = {
    "delta_mae": "ΔMAE (after − before attack)",
    "adv_mean_r": "attacked mean r",
}


def _type_colours(types: Sequence[str]) -> dict[str, object]:
    cmap = plt.get_cmap("tab10")
    return {t: cmap(i % 10) for i, t in enumerate(types)}


def robustness_curves(
    points: pd.DataFrame,
    path: str | os.PathLike[str] | None = None,
    title: str = "",
    metrics: Sequence[str] = ("delta_mae", "adv_mean_r"),
) -> bytes:
    """ΔMAE and attacked mean r (rows) against the attack budget ε on a log axis, one column per
    attack and domain with at least two bounded budgets: per model type the mean over seeds
    (line and markers) and its 95 % interval (band). Settings on no curve (presets without a
    bound, a lone budget) get a last column of their own with categorical x positions, so an
    unbounded preset never sits on the ε axis. ``points`` is ``stats.curve_points``."""
    if len(points) == 0:
        return placeholder_png("Robustness curves: no finished runs", path)
    eps = points["eps"].to_numpy(np.float64)
    counts = (points[np.isfinite(eps)].groupby(["attack", "domain"])["eps"].nunique())
    groups = [k for k, n in counts.items() if n >= 2]
    on = points.apply(lambda r: np.isfinite(r["eps"]) and (r["attack"], r["domain"]) in groups,
                      axis=1).to_numpy(bool)
    off = points[~on]
    if not groups:
        return placeholder_png("Robustness curves: no attack with two bounded budgets", path)
    types = order_model_types(points["model_type"])
    colours = _type_colours(types)
    off_settings = list({setting_key(st): st for st in zip(
        off["attack"].astype(str), off["domain"].astype(str), off["eps"].astype(float),
        strict=True)}.values())  # keyed NaN-safely: NaN != NaN
    ncols = len(groups) + (1 if off_settings else 0)
    widths = [3.0] * len(groups) + ([0.9 + 0.6 * len(off_settings)] if off_settings else [])
    fig, axes = plt.subplots(len(metrics), ncols, figsize=(sum(widths) + 1.5,
                                                           3.2 * len(metrics)),
                             squeeze=False, gridspec_kw={"width_ratios": widths})
    for i, m in enumerate(metrics):
        for j, (attack, domain) in enumerate(groups):
            ax = axes[i][j]
            sel = points[(points["attack"] == attack) & (points["domain"] == domain)
                         & np.isfinite(points["eps"].to_numpy(np.float64))]
            for t in types:
                one = sel[sel["model_type"] == t].sort_values("eps")
                if len(one) == 0:
                    continue
                x = one["eps"].to_numpy(np.float64)
                ax.plot(x, one[f"{m}_mean"], marker="o", ms=4, color=colours[t], label=t)
                lo, hi = one[f"{m}_lo"].to_numpy(np.float64), one[f"{m}_hi"].to_numpy(np.float64)
                if np.isfinite(lo).any():
                    ax.fill_between(x, lo, hi, color=colours[t], alpha=0.18, lw=0)
            ax.set_xscale("log")
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(f"{attack} ({domain})")
            if i == len(metrics) - 1:
                ax.set_xlabel("attack budget ε (log scale)")
            if j == 0:
                ax.set_ylabel(CURVE_LABELS.get(m, m))
        if off_settings:
            ax = axes[i][-1]
            k = len(types)
            for pos, st in enumerate(off_settings):
                one = off[(off["attack"] == st[0]) & (off["domain"] == st[1])
                          & (off["eps"].isna() if np.isnan(st[2])
                             else np.isclose(off["eps"], st[2]))]
                for q, t in enumerate(types):
                    r = one[one["model_type"] == t]
                    if len(r) == 0:
                        continue
                    mean = float(r[f"{m}_mean"].iloc[0])
                    lo, hi = float(r[f"{m}_lo"].iloc[0]), float(r[f"{m}_hi"].iloc[0])
                    err = ([[mean - lo], [hi - mean]] if np.isfinite(lo) else None)
                    ax.errorbar(pos + (q - (k - 1) / 2) * 0.12, mean, yerr=err, fmt="D", ms=5,
                                color=colours[t], capsize=3)
            ax.set_xticks(range(len(off_settings)))
            ax.set_xticklabels([setting_label(st).replace(" (", "\n(") for st in off_settings],
                               fontsize=7)
            ax.set_xlim(-0.6, len(off_settings) - 0.4)
            ax.grid(axis="y", alpha=0.3)
            if i == 0:
                ax.set_title("on their own (no ε axis)", fontsize=9)
    axes[0][0].legend(fontsize=8, loc="best")
    fig.suptitle(title or "Robustness against the attack budget (mean and 95 % interval "
                 "over seeds)", fontsize=10)
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
