"""Figures of explanations (matplotlib ``Figure`` objects, no pyplot, so no GUI backend is ever
touched): an attribution map over its spectrogram excerpt with the segment grid (for a waveform
model: over its log-magnitude STFT, or along its samples), and a concept contribution bar
chart. The CLI and the report both use them; saving is the caller's job.

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
from typing import Any

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


def _maps(base: torch.Tensor | np.ndarray, attribution: torch.Tensor | np.ndarray,
          segments: torch.Tensor | np.ndarray | None, scores: Any,
          names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None,
                                           np.ndarray | None]:
    """A figure's inputs as arrays, checked: the base map and the attribution (one ``(T, F)``
    shape), the segment map (same shape, int) and the segment scores; ``names``: how the
    errors call the base map and what the segment map must match."""
    arr = _2d(base, names[0])
    attr = _2d(attribution, "attribution")
    if arr.shape != attr.shape:
        raise ConfigError(f"{names[0]} {arr.shape} and attribution {attr.shape} differ")
    seg = None if segments is None else _2d(segments, "segments").astype(np.int64)
    if seg is not None and seg.shape != arr.shape:
        raise ConfigError(f"segment map {seg.shape} does not match {names[1]} {arr.shape}")
    sc = None if scores is None else np.asarray(
        scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores, dtype=float)
    return arr, attr, seg, sc


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
    """Each segment's id (and score, scaled by ``score_scale``) at its centre (with ``log_f``:
    the geometric middle of its frequency range, where it sits on a log axis), on a white box
    so it reads over any colour."""
    scaled = None if scores is None else score_scale(scores)[0]
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
        text = str(s) if scaled is None else f"{s}\n{scaled[s]:.2f}"
        ax.text(float(tc[t].mean()), y, text, ha="center", va="center",  # type: ignore[attr-defined]
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
    spec, attr, seg, sc = _maps(spectrogram, attribution, segments, scores,
                                ("spectrogram", "the excerpt"))
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


def _log_magnitude(magnitude: np.ndarray, floor_db: float = 80.0) -> np.ndarray:
    """``20·log10 |M|`` in dB, floored ``floor_db`` below the maximum (silence stays finite)."""
    db = 20.0 * np.log10(np.maximum(np.abs(magnitude), 1e-12))
    return np.asarray(np.maximum(db, float(db.max()) - floor_db))


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
    mag, attr, seg, sc = _maps(magnitude, attribution, segments, scores,
                               ("magnitude", "the STFT"))
    te, tc, fe, fc, _ = _stft_axes(mag.shape, sample_rate, hop, n_fft)
    db = _log_magnitude(mag)
    fig = Figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 2, sharey=True)
    m0 = _stft_panel(axes[0], db, te, fe)
    fig.colorbar(m0, ax=axes[0], fraction=0.046, pad=0.02, label="dB")
    axes[0].set_title("input: STFT magnitude (log)")
    scale = colour_scale(attr)
    _stft_panel(axes[1], db, te, fe, cmap="gray", alpha=0.35)
    m1 = axes[1].pcolormesh(te, fe, attr.T, cmap=scale.cmap, shading="flat", vmin=scale.vmin,
                            vmax=scale.vmax, alpha=0.8, rasterized=True)
    colourbar(fig, m1, axes[1], scale)
    exp = score_scale(sc)[1] if sc is not None else 0
    axes[1].set_title("attribution" + ("" if sc is None else " (segment scores" + (
        f" in units of 1e{exp:+03d}" if exp else "") + ")"))
    if seg is not None:
        for ax in axes:
            _segment_edges(ax, seg, te, fe)
        _label_segments(axes[1], seg, sc, tc, fc, log_f=True)
    axes[0].set_ylabel("frequency (Hz)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return set_alt(fig, "Log-magnitude STFT of the clip (log frequency axis) beside the "
                   "attribution map over it" + (f" with {int(seg.max()) + 1} segments"
                                                 if seg is not None else "")
                   + (f"; {title}" if title else "") + ".")


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
    te, _, fe, _, _ = _stft_axes(mag.shape, sample_rate, hop, n_fft)
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
                         fontsize=7, transform=axes[1].get_xaxis_transform())
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return set_alt(fig, "Log-magnitude STFT of the clip beside the attribution of each audio "
                   "sample over time" + (f"; {title}" if title else "") + ".")


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
