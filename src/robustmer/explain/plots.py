"""Figures of explanations (matplotlib ``Figure`` objects, no pyplot, so no GUI backend is ever
touched): an attribution map over its spectrogram excerpt with the segment grid, and a concept
contribution bar chart. The CLI and the report both use them; saving is the caller's job.

Colour rules (issue 22), in ``colour_scale``: a non-negative map (the magnitude baseline's δ²,
saliency's |gradient|) gets a sequential perceptual map starting at 0; a signed map a diverging
map symmetric around 0. Both scale to a robust percentile of |map| (99th by default), not to its
maximum, because one extreme pixel otherwise leaves the rest of a saliency map nearly blank; the
colour-bar label says so. Each figure carries a one-sentence description for an ``<img alt>``
(``figure_alt(fig)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from robustmer.errors import ConfigError

ALT_ATTRIBUTE = "robustmer_alt"
"""The attribute of a ``Figure`` drawn here that holds its one-sentence description."""

PERCENTILE = 99.0
"""Attribution colour scales end at this percentile of |map| (values beyond are saturated)."""


def set_alt(fig: Figure, text: str) -> Figure:
    """Attach a one-sentence description (for ``<img alt>``) to ``fig``; returns ``fig``."""
    setattr(fig, ALT_ATTRIBUTE, text)
    return fig


def figure_alt(fig: Figure, default: str = "figure") -> str:
    """The description attached with ``set_alt`` (every figure drawn here has one)."""
    return str(getattr(fig, ALT_ATTRIBUTE, "") or default)


@dataclass(frozen=True)
class ColourScale:
    """How to colour a map: ``cmap``, ``vmin``, ``vmax``, the colour-bar ``label`` and the power
    of ten ``exponent`` its tick values are shown in (see ``colourbar``)."""

    cmap: str
    vmin: float
    vmax: float
    label: str
    signed: bool
    exponent: int = 0


def colour_scale(values: np.ndarray, name: str = "attribution",
                 percentile: float | None = PERCENTILE) -> ColourScale:
    """The colour scale of a map: sequential ``magma`` from 0 when no finite value is negative,
    else diverging ``RdBu_r`` symmetric around 0; the upper end is the ``percentile`` of |map|
    (None: the maximum), named in the label so a reader knows brighter values are saturated;
    values of ~1e-6 get their power of ten in the label instead of a tiny offset text."""
    a = np.asarray(values, dtype=np.float64)
    fin = np.abs(a[np.isfinite(a)])
    signed = bool(np.any(a[np.isfinite(a)] < 0))
    top = float(np.max(fin)) if fin.size else 0.0
    lim = float(np.percentile(fin, percentile)) if fin.size and percentile is not None else top
    if not lim > 0:
        lim = top if top > 0 else 1.0
    exp = score_scale(np.array([lim]))[1]
    unit = f" in units of 1e{exp:+03d}" if exp else ""
    clipped = percentile is not None and lim < top
    note = f"\nscale ends at the {percentile:g}th pct. of |{name}|" if clipped else ""
    if signed:
        return ColourScale("RdBu_r", -lim, lim, f"{name}{unit}, 0 = white{note}", True, exp)
    return ColourScale("magma", 0.0, lim, f"{name}{unit}, ≥ 0{note}", False, exp)


def colourbar(fig: Figure, image: object, ax: object, scale: ColourScale) -> object:
    """A colour bar for ``image`` drawn with ``scale``: ticks divided by ``10**exponent`` (the
    power of ten is in the label), the label at a readable size."""
    from matplotlib.ticker import FuncFormatter

    cb = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)  # type: ignore[arg-type]
    factor = 10.0 ** scale.exponent
    cb.formatter = FuncFormatter(lambda v, _pos: f"{v / factor:.3g}")
    cb.update_ticks()
    cb.set_label(scale.label, fontsize=8)
    return cb


def score_scale(scores: np.ndarray) -> tuple[np.ndarray, int]:
    """Scores and a power of ten ``e`` such that ``scores / 10**e`` reads with two decimals
    (``e = 0`` unless the largest |score| is below 0.01 or at least 1000)."""
    s = np.asarray(scores, dtype=np.float64)
    top = float(np.nanmax(np.abs(s))) if np.isfinite(s).any() else 0.0
    e = int(np.floor(np.log10(top))) if top > 0 and not 1e-2 <= top < 1e3 else 0
    return s / 10.0 ** e, e


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
    """Each segment's id (and score, scaled by ``score_scale``) at its centre, on a white box so
    it reads over any colour."""
    scaled = None if scores is None else score_scale(scores)[0]
    for s in range(int(segments.max()) + 1):
        t, f = np.nonzero(segments == s)
        if t.size == 0:
            continue
        text = str(s) if scaled is None else f"{s}\n{scaled[s]:.2f}"
        ax.text(t.mean(), f.mean(), text, ha="center", va="center",  # type: ignore[attr-defined]
                fontsize=7, color="k", linespacing=1.0,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7})


def attribution_figure(spectrogram: torch.Tensor | np.ndarray,
                       attribution: torch.Tensor | np.ndarray,
                       segments: torch.Tensor | np.ndarray | None = None,
                       scores: Sequence[float] | torch.Tensor | None = None,
                       title: str = "", alt: str | None = None) -> Figure:
    """Two panels over a ``(T, F)`` excerpt (time on x, frequency bin on y): the spectrogram,
    and the attribution over a faint copy of it, coloured by ``colour_scale`` (sequential from
    0 for a non-negative map, diverging around 0 for a signed one, scaled to the 99th
    percentile of |attribution|); with a segment map, its boundaries and each segment's id (and
    score, with its power of ten in the title) are drawn. ``figure_alt(fig)`` describes it."""
    spec = _2d(spectrogram, "spectrogram")
    attr = _2d(attribution, "attribution")
    if spec.shape != attr.shape:
        raise ConfigError(f"spectrogram {spec.shape} and attribution {attr.shape} differ")
    seg = None if segments is None else _2d(segments, "segments").astype(np.int64)
    if seg is not None and seg.shape != spec.shape:
        raise ConfigError(f"segment map {seg.shape} does not match the excerpt {spec.shape}")
    sc = None if scores is None else np.asarray(
        scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores, dtype=float)
    fig = Figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2, sharey=True)
    extent = (-0.5, spec.shape[0] - 0.5, -0.5, spec.shape[1] - 0.5)
    im0 = axes[0].imshow(spec.T, origin="lower", aspect="auto", cmap="viridis", extent=extent)
    fig.colorbar(im0, ax=axes[0], fraction=0.046, pad=0.02, label="standardised value")
    axes[0].set_title("input excerpt (standardised)")
    scale = colour_scale(attr)
    axes[1].imshow(spec.T, origin="lower", aspect="auto", cmap="gray", extent=extent,
                   alpha=0.35)
    im1 = axes[1].imshow(attr.T, origin="lower", aspect="auto", cmap=scale.cmap, extent=extent,
                         vmin=scale.vmin, vmax=scale.vmax, alpha=0.85)
    colourbar(fig, im1, axes[1], scale)
    exp = score_scale(sc)[1] if sc is not None else 0
    axes[1].set_title("attribution" + ("" if sc is None else " (segment scores" + (
        f" in units of 1e{exp:+03d}" if exp else "") + ")"))
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
    kind = "signed, blue negative and red positive" if scale.signed else "non-negative"
    return set_alt(fig, alt or (
        f"Input excerpt of {spec.shape[0]} frames and {spec.shape[1]} bins beside its "
        f"attribution map ({kind})" + (f" with {int(seg.max()) + 1} segments" if seg is not None
                                       else "") + (f"; {title}" if title else "") + "."))


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
    return set_alt(fig, f"Bar charts of each concept's contribution to {len(names)} output(s) "
                   f"({', '.join(map(str, names))}) for clip {clip}, red positive and blue "
                   "negative.")
