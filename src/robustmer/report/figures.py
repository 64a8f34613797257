"""The report's figures, drawn with matplotlib's Agg backend from results-store tables only.

Each function takes tables, draws one figure and returns its PNG bytes (written atomically to
``path`` as well when one is given), so the HTML page can embed it as a data URI. The bytes are a
``FigurePNG``: ``bytes`` with an ``alt`` attribute, a one-sentence description of the figure for
the page's ``<img alt=...>`` (``alt_text(png)``); every function takes ``alt=`` to set it and
writes a description from its data otherwise.

Rules every figure here follows (issue 22): an ε axis has plain decimal tick labels at the
budgets actually present, thinned or rotated until none overlaps; a curve joins points only over
three or more budgets (fewer: points with error bars); a box plot only for five or more values
(fewer: the points themselves, with n under the label).
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
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from robustmer.errors import ConfigError
from robustmer.evaluate.attack_settings import setting_key, setting_label
from robustmer.evaluate.store import order_model_types
from robustmer.io import atomic_open
from robustmer.report.eps_axis import declutter_ticks, eps_axis

FIG4_EMOTIONS: tuple[str, ...] = ("tension", "tender")
"""The paper's Figure 4 emotions (``prediction_scatter`` shows every output found unless the
caller passes a selection such as this one)."""

MIN_CURVE_BUDGETS = 3
"""Fewer budgets than this: points with error bars, no connecting line and no band."""

MIN_BOX_VALUES = 5
"""Fewer values than this per group: the points alone, no box."""

_DPI = 100


class FigurePNG(bytes):
    """PNG bytes with ``alt``: a one-sentence description of the figure for ``<img alt>``.
    Behaves as ``bytes`` everywhere else (base64, writing, comparison)."""

    alt: str

    def __new__(cls, data: bytes, alt: str = "") -> FigurePNG:
        obj = super().__new__(cls, data)
        obj.alt = alt
        return obj


def alt_text(png: bytes, default: str = "figure") -> str:
    """The alt text of a figure returned here (``FigurePNG.alt``), else ``default``."""
    return getattr(png, "alt", "") or default


def _auto_alt(fig: Figure) -> str:
    """A description from the figure's titles, for figures drawn without an explicit alt."""
    sup = fig.get_suptitle() if hasattr(fig, "get_suptitle") else ""
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    text = sup or "; ".join(dict.fromkeys(titles))
    return f"Figure: {text}." if text else "Figure."


def finish(fig: Figure, path: str | os.PathLike[str] | None, alt: str | None = None
           ) -> FigurePNG:
    """Close ``fig`` and return its PNG bytes (reproducible: no software or date metadata) with
    ``alt`` (default: a description made from the figure) as their alt text; written atomically
    to ``path`` too when one is given. Every figure of every page ends here."""
    buf = io.BytesIO()
    description = alt or _auto_alt(fig)
    # metadata without the Software/date keys keeps the bytes reproducible for a given input
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight",
                metadata={"Software": None})
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        with atomic_open(path, "wb") as fh:
            fh.write(data)
    return FigurePNG(data, description)


def placeholder_png(text: str, path: str | os.PathLike[str] | None = None) -> FigurePNG:
    """A small figure that states why a real one could not be drawn (e.g. no runs)."""
    fig, ax = plt.subplots(figsize=(5, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    return finish(fig, path, f"No figure: {text}.")


def delta_mae_boxplot(per_run: pd.DataFrame, path: str | os.PathLike[str] | None = None,
                      title: str = "", alt: str | None = None) -> FigurePNG:
    """Figure 3: ΔMAE (MAE after − before attack) per model type over seeds, one point per run
    (``per_run`` has ``model_type`` and ``delta_mae``, one row per run); a box only where a type
    has at least ``MIN_BOX_VALUES`` runs (a box of 3 values draws quartiles that are not
    there), the points always, and n under each type's name."""
    df = per_run[np.isfinite(per_run["delta_mae"].to_numpy(np.float64))]
    if len(df) == 0:
        return placeholder_png("Figure 3: no finished runs with ΔMAE", path)
    types = order_model_types(df["model_type"])
    data = [df.loc[df["model_type"] == t, "delta_mae"].to_numpy(np.float64) for t in types]
    fig, ax = plt.subplots(figsize=(1.3 * len(types) + 2.5, 4))
    boxed = [i for i, v in enumerate(data) if len(v) >= MIN_BOX_VALUES]
    if boxed:
        ax.boxplot([data[i] for i in boxed], positions=[i + 1 for i in boxed], widths=0.5,
                   showfliers=False, manage_ticks=False)
    rng = np.random.default_rng(0)  # fixed jitter: the figure is reproducible
    for i, vals in enumerate(data, start=1):
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(vals)), vals, s=16, alpha=0.75,
                   color="tab:blue", zorder=3)
    ax.set_xticks(range(1, len(types) + 1),
                  [f"{t}\n(n = {len(v)})" for t, v in zip(types, data, strict=True)])
    ax.set_xlim(0.4, len(types) + 0.6)
    ax.set_ylabel("ΔMAE (after − before attack)")
    ax.set_xlabel("model type (n = runs)")
    ax.set_title(title or "ΔMAE per model type (one point per seed)")
    ax.grid(axis="y", alpha=0.3)
    if alt is None:
        alt = (f"ΔMAE after minus before the attack for {len(types)} model types "
               f"({', '.join(f'{t}: {len(v)} runs' for t, v in zip(types, data, strict=True))}),"
               " one point per run" + (f", boxes for the types with at least {MIN_BOX_VALUES}"
                                      if boxed else "") + ".")
    return finish(fig, path, alt)


def outputs_in(clips: pd.DataFrame) -> list[str]:
    """The outputs of a clips table: every ``NAME`` with ``y_NAME``, ``pred_NAME`` and
    ``adv_NAME`` columns, in column order."""
    cols = set(clips.columns)
    return [c[2:] for c in clips.columns
            if c.startswith("y_") and f"pred_{c[2:]}" in cols and f"adv_{c[2:]}" in cols]


def prediction_scatter(
    clips: pd.DataFrame,
    emotions: Sequence[str] | None = None,
    model_types: Sequence[str] | None = None,
    path: str | os.PathLike[str] | None = None,
    title: str = "",
    alt: str | None = None,
) -> FigurePNG:
    """Figure 4: true annotation (x axis) vs prediction (y axis) per output (rows) and model
    type (columns), clean as ``x`` and adversarial as ``o``, with the identity line. Every
    panel of a row shares its axes (the same output on the same scale). ``emotions``: the
    outputs to show (default: every output of ``clips``, ``outputs_in``); ``model_types``: the
    types to show, those absent from ``clips`` skipped (default: every type present, in
    reporting order)."""
    outputs = outputs_in(clips) if emotions is None else list(emotions)
    for e in outputs:
        for c in (f"y_{e}", f"pred_{e}", f"adv_{e}"):
            if c not in clips.columns:
                raise ConfigError(f"output {e!r}: no column {c} in clips.csv")
    present = order_model_types(clips["model_type"]) if len(clips) else []
    types = present if model_types is None else [t for t in model_types if t in present]
    if not types or not outputs:
        wanted = ", ".join(model_types) if model_types is not None else "any model type"
        return placeholder_png(f"Figure 4: none of {wanted} in the results"
                               if not types else "Figure 4: no outputs to show", path)
    nr, nc = len(outputs), len(types)
    side = 3.6 if nr * nc <= 6 else 2.8
    fig, axes = plt.subplots(nr, nc, figsize=(side * nc + 0.6, side * nr), squeeze=False,
                             sharex="row", sharey="row")
    for i, e in enumerate(outputs):
        lo, hi = np.inf, -np.inf
        for j, t in enumerate(types):
            ax = axes[i][j]
            sel = clips[clips["model_type"] == t]
            y = sel[f"y_{e}"].to_numpy(np.float64)
            clean = sel[f"pred_{e}"].to_numpy(np.float64)
            adv = sel[f"adv_{e}"].to_numpy(np.float64)
            ax.scatter(y, adv, marker="o", s=12, facecolors="none", edgecolors="tab:red",
                       alpha=0.6, label="adversarial")
            ax.scatter(y, clean, marker="x", s=12, color="tab:blue", alpha=0.7, label="clean")
            vals = np.concatenate([y, clean, adv])
            vals = vals[np.isfinite(vals)]
            if len(vals):
                lo, hi = min(lo, float(vals.min())), max(hi, float(vals.max()))
            ax.set_title(f"{t}: {e} (n = {len(sel)})", fontsize=9)
            ax.set_xlabel(f"true {e}")
            if j == 0:
                ax.set_ylabel(f"predicted {e}")
            ax.grid(alpha=0.25)
        if np.isfinite(lo):
            pad = 0.04 * max(hi - lo, 1e-6)
            ident = (lo - pad, hi + pad)
            for ax in axes[i]:
                ax.plot(ident, ident, color="grey", lw=0.8, ls="--", zorder=1)
            axes[i][0].set_xlim(*ident)
            axes[i][0].set_ylim(*ident)
    axes[0][0].legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if alt is None:
        alt = (f"Scatter plots of true against predicted values, clean and adversarial, for "
               f"{nr} output(s) ({', '.join(outputs)}) and {nc} model type(s) "
               f"({', '.join(types)}).")
    return finish(fig, path, alt)


CURVE_LABELS: dict[str, str] = {
    "delta_mae": "ΔMAE (after − before attack)",
    "adv_mean_r": "attacked mean r",
}


def _type_colours(types: Sequence[str]) -> dict[str, object]:
    cmap = plt.get_cmap("tab10")
    return {t: cmap(i % 10) for i, t in enumerate(types)}


def _budget_panel(ax: Axes, sel: pd.DataFrame, m: str, types: Sequence[str],
                  colours: dict[str, object]) -> tuple[list[float], bool]:
    """One attack's panel of ``robustness_curves`` for metric ``m``: a line and band per type
    over ``MIN_CURVE_BUDGETS`` or more budgets, else dodged points with error bars. Returns the
    budgets and whether they were drawn as curves."""
    budgets = sorted(set(sel["eps"].astype(float)))
    curve = len(budgets) >= MIN_CURVE_BUDGETS
    span = float(np.log10(budgets[-1] / budgets[0]))
    dodge = 0.05 * span  # decades between neighbouring types' error bars
    for q, t in enumerate(types):
        one = sel[sel["model_type"] == t].sort_values("eps")
        if len(one) == 0:
            continue
        x = one["eps"].to_numpy(np.float64)
        mean = one[f"{m}_mean"].to_numpy(np.float64)
        lo = one[f"{m}_lo"].to_numpy(np.float64)
        hi = one[f"{m}_hi"].to_numpy(np.float64)
        if curve:
            ax.plot(x, mean, marker="o", ms=4, color=colours[t], label=t)
            if np.isfinite(lo).any():
                ax.fill_between(x, lo, hi, color=colours[t], alpha=0.18, lw=0)
        else:
            # dodge the types multiplicatively (log axis) so their bars stay apart
            xs = x * 10 ** (dodge * (q - (len(types) - 1) / 2))
            err = np.vstack([mean - lo, hi - mean])
            ax.errorbar(xs, mean, yerr=np.where(np.isfinite(err), err, 0.0), fmt="o",
                        ms=5, color=colours[t], capsize=3, ls="none", label=t)
    return budgets, curve


def _unbounded_panel(ax: Axes, off: pd.DataFrame, off_settings: Sequence[tuple[str, str, float]],
                     m: str, types: Sequence[str], colours: dict[str, object]) -> None:
    """The last panel of ``robustness_curves``: settings on no curve (no bound, a lone budget)
    at categorical x positions, one dodged point with its interval per type."""
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
                        color=colours[t], capsize=3, ls="none")
    ax.set_xticks(range(len(off_settings)))
    ax.set_xticklabels([setting_label(st).replace(" (", "\n(") for st in off_settings],
                       fontsize=7)
    ax.set_xlim(-0.6, len(off_settings) - 0.4)
    ax.grid(axis="y", alpha=0.3)


def robustness_curves(
    points: pd.DataFrame,
    path: str | os.PathLike[str] | None = None,
    title: str = "",
    metrics: Sequence[str] = ("delta_mae", "adv_mean_r"),
    alt: str | None = None,
) -> FigurePNG:
    """ΔMAE and attacked mean r (rows) against the attack budget ε on a log axis, one column per
    attack and domain with at least two bounded budgets: per model type the mean over seeds and
    its interval (``<m>_lo``/``<m>_hi``). Over ``MIN_CURVE_BUDGETS`` or more budgets a line with
    markers and a band; over fewer, points with error bars and no line (two points joined by a
    line suggest a curve nobody measured). The ε axis is labelled at the budgets present as
    plain decimals (``eps_axis``, ``declutter_ticks``). Settings on no curve (presets without a
    bound, a lone budget) get a last column of their own with categorical x positions, so an
    unbounded preset never sits on the ε axis. ``points`` is ``curves.curve_points``."""
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
    widths = [3.2] * len(groups) + ([0.9 + 0.6 * len(off_settings)] if off_settings else [])
    fig, axes = plt.subplots(len(metrics), ncols, figsize=(sum(widths) + 1.5,
                                                           3.3 * len(metrics)),
                             squeeze=False, gridspec_kw={"width_ratios": widths})
    eps_axes: list[Axes] = []
    shapes: list[str] = []
    for i, m in enumerate(metrics):
        for j, (attack, domain) in enumerate(groups):
            ax = axes[i][j]
            sel = points[(points["attack"] == attack) & (points["domain"] == domain)
                         & np.isfinite(points["eps"].to_numpy(np.float64))]
            budgets, curve = _budget_panel(ax, sel, m, types, colours)
            if i == 0:
                shapes.append(f"{attack} ({domain}): {len(budgets)} budgets, "
                              + ("curves" if curve else "points"))
            eps_axis(ax, budgets, 0.08 if curve else 0.12 + 0.05 * (len(types) - 1) / 2)
            eps_axes.append(ax)
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(f"{attack} ({domain})")
            if i == len(metrics) - 1:
                ax.set_xlabel("attack budget ε (log scale)")
            if j == 0:
                ax.set_ylabel(CURVE_LABELS.get(m, m))
        if off_settings:
            _unbounded_panel(axes[i][-1], off, off_settings, m, types, colours)
            if i == 0:
                axes[i][-1].set_title("on their own (no ε axis)", fontsize=9)
    axes[0][0].legend(fontsize=8, loc="best")
    fig.suptitle(title or "Robustness against the attack budget (mean and 95 % interval "
                 "over seeds)", fontsize=10)
    fig.tight_layout()
    for _ in range(2):  # rotated labels grow taller: lay out again, then check again
        declutter_ticks(fig, eps_axes)
        fig.tight_layout()
    if alt is None:
        alt = (f"{' and '.join(CURVE_LABELS.get(m, m) for m in metrics)} against the attack "
               f"budget on a log scale for {len(types)} model type(s) ({', '.join(types)}); "
               + "; ".join(shapes)
               + (f"; {len(off_settings)} setting(s) without a budget shown apart"
                  if off_settings else "") + ".")
    return finish(fig, path, alt)


def delta_image(delta: np.ndarray, path: str | os.PathLike[str] | None = None,
                title: str = "δ", alt: str | None = None) -> FigurePNG:
    """An image of a spectrogram-domain perturbation δ (frames x bands, any leading singleton
    axes squeezed): signed, so a diverging colour map symmetric around 0 over its full range."""
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
    fig.colorbar(im, ax=ax, label="δ (0 = white)")
    return finish(fig, path, alt or f"Perturbation δ over {d.shape[0]} frames and "
                   f"{d.shape[1]} bands, red positive and blue negative, largest |δ| {lim:.3g}.")


def save_png(data: bytes, path: str | os.PathLike[str]) -> Path:
    """Write PNG bytes atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)
