"""The figures of an explainer-eval page about the adversarial ground truth: the label-flip
curves (each explainer against the magnitude and random baselines, with 95 % Wilson bands), the
same per direction of a classifier's decision, the recovery histograms, and one clip's maps
beside its perturbation δ. Each returns the PNG bytes (``report.figures.finish``), written to
``path`` too when one is given."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from robustmer.errors import DatasetError
from robustmer.explain.plots import ColourScale, colour_scale, colourbar
from robustmer.report import figures
from robustmer.report.xeval_stats import recovery_summary

BASELINE_STYLE: dict[str, dict[str, Any]] = {
    "magnitude": {"color": "black", "ls": "--"},
    "random": {"color": "grey", "ls": ":"},
}
"""How the baselines' lines are drawn (explainers get the colours of :func:`explainer_colors`)."""


def explainer_colors(methods: Sequence[str]) -> dict[str, Any]:
    """A distinct colour per explainer, never the baselines' black or grey."""
    palette = [c for i, c in enumerate(matplotlib.color_sequences["tab10"]) if i != 7]  # grey
    palette += matplotlib.color_sequences["Dark2"]
    names = [m for m in methods if m not in BASELINE_STYLE]
    return {m: palette[i % len(palette)] for i, m in enumerate(names)}


def flip_curves_png(summary: pd.DataFrame, path: str | os.PathLike[str] | None = None,
                    title: str = "") -> bytes:
    """Label-flip rate vs k, one line per method (baselines dashed/dotted), 95 % CI bands."""
    if not len(summary):
        return figures.placeholder_png("no successful adversarial examples to evaluate", path)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = explainer_colors(list(dict.fromkeys(summary["method"].astype(str))))
    for method, g in summary.groupby("method", sort=False):
        style = BASELINE_STYLE.get(str(method)) or {"color": colors[str(method)], "ls": "-"}
        ax.plot(g["k"], g["rate"], marker="o", ms=3, label=f"{method}", **style)
        ax.fill_between(g["k"], g["ci_low"], g["ci_high"], color=style["color"], alpha=0.07)
    ax.set_xlabel("k (segments of δ kept, from the method's ranking)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("label-flip rate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    n = int(summary["n"].max())
    ax.set_title(title or f"Label-flip rate vs k ({n} clips; bands: 95 % Wilson CI)")
    return figures.finish(fig, path)


def recovery_png(recovery: pd.DataFrame, path: str | os.PathLike[str] | None = None) -> bytes:
    """Histograms of recovered segments (0..k), one panel per k, grouped bars per method."""
    rs = recovery_summary(recovery)
    rs = rs[rs["n"] > 0] if len(rs) else rs
    if not len(rs):
        return figures.placeholder_png("no partial adversary flipped the decision", path)
    ks = sorted(rs["k"].unique())
    fig, axes = plt.subplots(1, len(ks), figsize=(4.2 * len(ks), 3.4), squeeze=False)
    methods = list(dict.fromkeys(rs["method"]))
    width = 0.8 / max(1, len(methods))
    colors = explainer_colors(methods)
    for ax, k in zip(axes[0], ks, strict=True):
        sel = rs[rs["k"] == k]
        for j, m in enumerate(methods):
            row = sel[sel["method"] == m]
            if not len(row):
                continue
            r = row.iloc[0]
            counts = np.array([r[f"h{h}"] for h in range(k + 1)], dtype=float)
            frac = counts / r["n"]
            style = BASELINE_STYLE.get(m, {"color": colors.get(m, "tab:blue")})
            ax.bar(np.arange(k + 1) + (j - (len(methods) - 1) / 2) * width, frac, width,
                   label=m, color=style["color"], alpha=0.8)
        n = int(sel["n"].max())
        ax.set_title(f"k = {k} ({n} clips whose partial adversary flips)", fontsize=9)
        ax.set_xticks(range(k + 1))
        ax.set_xlabel(f"modified segments in the top {k}")
        ax.set_ylabel("share of clips")
        ax.set_ylim(0, 1.02)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return figures.finish(fig, path)


def _edges(ax: Any, seg: np.ndarray) -> None:
    """Outline the segments (the map is shown as frequency x time)."""
    s = seg.T
    ax.contour(s, levels=np.unique(s)[:-1] + 0.5, colors="white", linewidths=0.4, alpha=0.7)


def map_png(path_npz: Path, methods: Sequence[str], out: str | os.PathLike[str] | None = None,
            top: int = 3, stft: bool = False) -> bytes:
    """One clip: the clean input, δ, and each method's attribution (its top segments listed);
    ``stft``: the input is a waveform model's STFT magnitude (axes and colour bar say so).
    δ is signed: diverging colours over its full range. Each attribution is coloured by
    ``explain.plots.colour_scale``: the magnitude baseline's δ² (non-negative) sequential from
    0, a signed map diverging around 0, both scaled to the 99th percentile of |map| (said in
    the colour-bar label) so a saliency map is not left blank by a few extreme pixels."""
    try:
        with np.load(path_npz, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path_npz}: not a readable map file ({err})") from err
    x, d, seg = arrays["x"].squeeze(), arrays["delta"].squeeze(), arrays["segments"]
    dlim = float(np.nanmax(np.abs(d))) or 1.0
    panels: list[tuple[str, np.ndarray, ColourScale]] = [
        ("clean input x", x, ColourScale("viridis", float(np.nanmin(x)), float(np.nanmax(x)),
                                         "STFT magnitude" if stft else "standardised value",
                                         False)),
        ("perturbation δ", d, ColourScale("RdBu_r", -dlim, dlim, "δ, 0 = white", True))]
    for m in methods:
        rank = arrays.get(f"rank_{m}")
        label = f"{m}: top {top} = {list(map(int, rank[:top]))}" if rank is not None else m
        if f"attr_{m}" in arrays:
            a = arrays[f"attr_{m}"].squeeze()
            panels.append((label, a, colour_scale(a, "δ²" if m == "magnitude" else m)))
    n = len(panels)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax, (title, a, scale) in zip(axes.ravel(), panels, strict=False):
        a = np.asarray(a, dtype=np.float64)
        im = ax.imshow(a.T, origin="lower", aspect="auto", cmap=scale.cmap, vmin=scale.vmin,
                       vmax=scale.vmax, interpolation="nearest")
        _edges(ax, seg)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("frame", fontsize=7)
        ax.set_ylabel("STFT bin" if stft else "band", fontsize=7)
        ax.tick_params(labelsize=7)
        cb = colourbar(fig, im, ax, scale)
        cb.ax.tick_params(labelsize=7)  # type: ignore[attr-defined]
        cb.set_label(scale.label, fontsize=7)  # type: ignore[attr-defined]
    clip = str(arrays.get("clip_id", path_npz.stem))
    fig.suptitle(f"clip {clip}", fontsize=9)
    fig.tight_layout()
    alt = (f"Clip {clip}: the clean input, the perturbation δ and the attribution maps of "
           f"{', '.join(methods) if methods else 'no method'}.")
    return figures.finish(fig, out, alt)


def flip_direction_png(summary: pd.DataFrame, path: str | os.PathLike[str] | None = None
                       ) -> bytes:
    """Label-flip rate vs k, one panel per direction of the decision, 95 % Wilson bands."""
    directions = list(dict.fromkeys(summary["direction"]))
    fig, axes = plt.subplots(1, len(directions), figsize=(6.2 * len(directions), 4.2),
                             squeeze=False, sharey=True)
    colors = explainer_colors(list(dict.fromkeys(summary["method"].astype(str))))
    for ax, direction in zip(axes[0], directions, strict=True):
        sel = summary[summary["direction"] == direction]
        for method, g in sel.groupby("method", sort=False):
            style = BASELINE_STYLE.get(str(method)) or {"color": colors[str(method)], "ls": "-"}
            ax.plot(g["k"], g["rate"], marker="o", ms=2.5, lw=1.2, label=str(method), **style)
            ax.fill_between(g["k"], g["ci_low"], g["ci_high"], color=style["color"], alpha=0.06)
        ax.set_title(f"{direction} ({int(sel['n'].max())} clips)", fontsize=10)
        ax.set_xlabel("k (segments of δ kept, from the method's ranking)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("label-flip rate")
    axes[0][-1].legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()
    alt = ("Label-flip rate against k for every method in each direction of the decision: "
           + "; ".join(directions) + ".")
    return figures.finish(fig, path, alt)

