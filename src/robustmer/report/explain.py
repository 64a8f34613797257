"""The report page of an explainer-eval folder (written by ``robustmer explainer-eval``).

Reads the folder's tables only (``adversarial.csv``, ``flips.csv``, ``recovery.csv``,
``timings.csv``, ``maps/``, ``config.yaml``, ``meta.json``) and draws: the label-flip curves
(each explainer against the magnitude and random baselines, with 95 % Wilson confidence intervals
over clips, from ``scipy.stats.binomtest``), the recovery histograms, and a few clips' maps side
by side with the perturbation δ. Self-contained HTML in the style of ``report.html``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml
from matplotlib.ticker import MaxNLocator
from scipy import stats as sps

from robustmer.errors import ConfigError, DatasetError
from robustmer.explain.evaluation import ADVERSARIAL, FLIPS, MAPS, TASK_ALIASES, read_results
from robustmer.explain.plots import ColourScale, colour_scale, colourbar
from robustmer.io import versions, write_text
from robustmer.report import figures
from robustmer.report.html import _CSS, FIGURES_DIR, REPORT_FILE, _data_uri, _dump
from robustmer.report.tables import _table, _td, esc, fmt

BASELINE_STYLE: dict[str, dict[str, Any]] = {
    "magnitude": {"color": "black", "ls": "--"},
    "random": {"color": "grey", "ls": ":"},
}


def is_explainer_eval(folder: str | os.PathLike[str]) -> bool:
    """True for a folder written by ``explainer-eval`` (it holds adversarial.csv + flips.csv)."""
    p = Path(folder)
    return (p / ADVERSARIAL).is_file() and (p / FLIPS).is_file()


def wilson(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (scipy); NaNs when ``n == 0``."""
    if n <= 0:
        return float("nan"), float("nan")
    ci = sps.binomtest(int(successes), int(n)).proportion_ci(confidence_level=level,
                                                             method="wilson")
    return float(ci.low), float(ci.high)


def flip_summary(flips: pd.DataFrame) -> pd.DataFrame:
    """One row per method × k: ``n`` clips, ``flipped`` count, ``rate``, ``ci_low``, ``ci_high``
    (methods in table order)."""
    rows = []
    for (method, k), g in flips.groupby(["method", "k"], sort=False):
        n, s = len(g), int(g["flipped"].astype(bool).sum())
        lo, hi = wilson(s, n)
        rows.append({"method": method, "k": int(k), "n": n, "flipped": s,
                     "rate": s / n if n else float("nan"), "ci_low": lo, "ci_high": hi})
    cols = ["method", "k", "n", "flipped", "rate", "ci_low", "ci_high"]
    return pd.DataFrame(rows, columns=cols).sort_values(["method", "k"], kind="stable",
                                                        key=_method_key(flips))


def _method_key(frame: pd.DataFrame) -> Any:
    order = {m: i for i, m in enumerate(dict.fromkeys(frame["method"].astype(str)))}

    def key(col: pd.Series) -> pd.Series:
        return col.map(order) if col.name == "method" else col

    return key


def recovery_summary(recovery: pd.DataFrame) -> pd.DataFrame:
    """One row per method × k: ``n`` (clips whose partial adversary flipped), ``mean_hits`` and
    ``h0 .. hk``: how many of those clips had 0..k of the k modified segments in the top k."""
    rows = []
    kmax = int(recovery["k"].max()) if len(recovery) else 0
    for (method, k), g in recovery.groupby(["method", "k"], sort=False):
        ok = g[g["partial_flipped"].astype(bool)]
        hits = ok["hits"].astype(int).to_numpy()
        row: dict[str, Any] = {"method": method, "k": int(k), "attacked": len(g),
                               "n": len(ok),
                               "mean_hits": float(hits.mean()) if len(hits) else float("nan")}
        for h in range(kmax + 1):
            row[f"h{h}"] = int((hits == h).sum()) if h <= int(k) else None
        rows.append(row)
    return pd.DataFrame(rows)


def _explainer_colors(methods: Sequence[str]) -> dict[str, Any]:
    """A distinct colour per explainer, never the baselines' black or grey."""
    palette = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7]  # 7 = grey
    palette += list(plt.get_cmap("Dark2").colors)
    names = [m for m in methods if m not in BASELINE_STYLE]
    return {m: palette[i % len(palette)] for i, m in enumerate(names)}


def flip_curves_png(summary: pd.DataFrame, path: str | os.PathLike[str] | None = None,
                    title: str = "") -> bytes:
    """Label-flip rate vs k, one line per method (baselines dashed/dotted), 95 % CI bands."""
    if not len(summary):
        return figures.placeholder_png("no successful adversarial examples to evaluate", path)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = _explainer_colors(list(dict.fromkeys(summary["method"].astype(str))))
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
    return figures._finish(fig, path)


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
    colors = _explainer_colors(methods)
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
    return figures._finish(fig, path)


def _edges(ax: Any, seg: np.ndarray) -> None:
    """Outline the segments (the map is shown as frequency x time)."""
    s = seg.T
    ax.contour(s, levels=np.unique(s)[:-1] + 0.5, colors="white", linewidths=0.4, alpha=0.7)


def map_png(path_npz: Path, methods: Sequence[str], out: str | os.PathLike[str] | None = None,
            top: int = 3) -> bytes:
    """One clip: the clean input, δ, and each method's attribution (its top segments listed).
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
                                         "standardised value", False)),
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
        ax.set_ylabel("band", fontsize=7)
        ax.tick_params(labelsize=7)
        cb = colourbar(fig, im, ax, scale)
        cb.ax.tick_params(labelsize=7)  # type: ignore[attr-defined]
        cb.set_label(scale.label, fontsize=7)  # type: ignore[attr-defined]
    clip = str(arrays.get("clip_id", path_npz.stem))
    fig.suptitle(f"clip {clip}", fontsize=9)
    fig.tight_layout()
    alt = (f"Clip {clip}: the clean input, the perturbation δ and the attribution maps of "
           f"{', '.join(methods) if methods else 'no method'}.")
    return figures._finish(fig, out, alt)


def _head(names: Sequence[str]) -> list[str]:
    return ["<tr>" + "".join(f"<th>{esc(n)}</th>" for n in names) + "</tr>"]


def _flip_table_html(summary: pd.DataFrame, timings: pd.DataFrame,
                     show_k: Sequence[int]) -> str:
    if not len(summary):
        return "<p class=\"caption\">No successful adversarial examples.</p>"
    sec = (timings[timings["stage"] == "adversarial"].groupby("method")["seconds"].mean()
           if len(timings) else pd.Series(dtype=float))
    head = ["method", "clips"] + [f"flip rate k={k} [95 % CI]" for k in show_k] + [
        "s per explained clip"]
    rows = []
    for method, g in summary.groupby("method", sort=False):
        cells = [_td(esc(method), numeric=False), _td(str(int(g["n"].max())))]
        for k in show_k:
            r = g[g["k"] == k]
            cells.append(_td("–" if not len(r) else
                             f"{fmt(r['rate'].iloc[0], 2)} [{fmt(r['ci_low'].iloc[0], 2)}, "
                             f"{fmt(r['ci_high'].iloc[0], 2)}]"))
        cells.append(_td(fmt(sec.get(method, float("nan")), 4)))
        rows.append(cells)
    return _table(_head(head), rows)


def _recovery_table_html(recovery: pd.DataFrame) -> str:
    rs = recovery_summary(recovery)
    if not len(rs):
        return "<p class=\"caption\">No recovery rows.</p>"
    hcols = [c for c in rs.columns if c.startswith("h") and c[1:].isdigit()]
    head = ["method", "k", "clips attacked", "partial adversary flips", "mean recovered",
            *(f"{c[1:]} recovered" for c in hcols)]
    rows = []
    for r in rs.itertuples(index=False):
        d = r._asdict()
        rows.append([_td(esc(d["method"]), numeric=False), _td(str(d["k"])),
                     _td(str(d["attacked"])), _td(str(d["n"])), _td(fmt(d["mean_hits"], 2)),
                     *(_td("" if d[c] is None or pd.isna(d[c]) else str(int(d[c])))
                       for c in hcols)])
    return _table(_head(head), rows)


# -- directions, smallest k --------------------------------------------------------------------

def class_names(folder: str | os.PathLike[str], config: dict[str, Any]) -> list[str] | None:
    """The classifier's class names, from the evaluated run's ``best/data.json`` (None when the
    run folder is not at hand or records none; the report then says ``class i``)."""
    import json

    run_dir = config.get("run_dir")
    if not run_dir:
        return None
    path = Path(run_dir) / "best" / "data.json"
    if not path.is_file():
        return None
    try:
        classes = json.loads(path.read_text(encoding="utf-8")).get("classes")
    except (OSError, ValueError):
        return None
    return [str(c) for c in classes] if classes else None


def with_direction(flips: pd.DataFrame, adversarial: pd.DataFrame,
                   names: Sequence[str] | None = None) -> pd.DataFrame:
    """``flips`` (or ``recovery``) with a ``direction`` column: ``clean → target`` class of
    the clip's attack (classifiers; names where known)."""
    adv = adversarial[["clip_id", "clean_class", "target_class"]].copy()
    adv["clip_id"] = adv["clip_id"].astype(str)

    def name(i: Any) -> str:
        i = int(i)
        return names[i] if names is not None and 0 <= i < len(names) else f"class {i}"

    adv["direction"] = [f"{name(a)} → {name(b)}" for a, b in
                        zip(adv["clean_class"], adv["target_class"], strict=True)]
    out = flips.copy()
    out["clip_id"] = out["clip_id"].astype(str)
    return out.merge(adv[["clip_id", "direction"]], on="clip_id", how="left")


def direction_summary(flips: pd.DataFrame) -> pd.DataFrame:
    """:func:`flip_summary` per ``direction`` (a column of the result)."""
    parts = []
    for direction, g in flips.groupby("direction", sort=True):
        s = flip_summary(g.drop(columns=["direction"]))
        s.insert(0, "direction", direction)
        parts.append(s)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def smallest_k(summary: pd.DataFrame, level: float) -> pd.Series:
    """Per method (and direction, when the summary has one): the smallest k whose flip rate
    reaches ``level`` (NaN where no k does)."""
    keys: Any = ["direction", "method"] if "direction" in summary.columns else "method"
    out = {}
    for key, g in summary.groupby(keys, sort=False):
        hit = g[g["rate"] >= level - 1e-12]
        out[key] = float(hit["k"].min()) if len(hit) else float("nan")
    return pd.Series(out, dtype=float)


def flip_direction_png(summary: pd.DataFrame, path: str | os.PathLike[str] | None = None
                       ) -> bytes:
    """Label-flip rate vs k, one panel per direction of the decision, 95 % Wilson bands."""
    directions = list(dict.fromkeys(summary["direction"]))
    fig, axes = plt.subplots(1, len(directions), figsize=(6.2 * len(directions), 4.2),
                             squeeze=False, sharey=True)
    colors = _explainer_colors(list(dict.fromkeys(summary["method"].astype(str))))
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
    return figures._finish(fig, path, alt)


def _direction_table_html(dsum: pd.DataFrame, show_k: Sequence[int]) -> str:
    if not len(dsum):
        return ""
    k50, k90 = smallest_k(dsum, 0.5), smallest_k(dsum, 0.9)
    head = ["direction", "method", "clips"] + [f"k={k} [95 % CI]" for k in show_k] + [
        "smallest k ≥ 50 %", "smallest k ≥ 90 %"]
    rows = []
    for (direction, method), g in dsum.groupby(["direction", "method"], sort=False):
        cells = [_td(esc(direction), numeric=False), _td(esc(method), numeric=False),
                 _td(str(int(g["n"].max())))]
        for k in show_k:
            r = g[g["k"] == k]
            cells.append(_td("–" if not len(r) else
                             f"{fmt(r['rate'].iloc[0], 2)} [{fmt(r['ci_low'].iloc[0], 2)}, "
                             f"{fmt(r['ci_high'].iloc[0], 2)}]"))
        for series in (k50, k90):
            v = series.get((direction, method), float("nan"))
            cells.append(_td("never" if not np.isfinite(v) else str(int(v))))
        rows.append(cells)
    return _table(_head(head), rows)


# -- localisation, sanity, deletion ---------------------------------------------------------------

def localisation_summary(loc: pd.DataFrame) -> pd.DataFrame:
    """Per method: mean mass share with a 95 % t interval, the pixel and segment pointing-game
    hit rates with Wilson intervals, their chance levels (mean region share, mean segment
    chance) and N clips."""
    from robustmer.evaluate.intervals import t_interval

    rows = []
    for method, g in loc.groupby("method", sort=False):
        ms = t_interval(g["mass_share"].to_numpy(dtype=float))
        row: dict[str, Any] = {"method": method, "n": int(ms.n), "mass_share": ms.estimate,
                               "mass_low": ms.low, "mass_high": ms.high,
                               "region_share": float(g["region_share"].mean())}
        for col, chance in (("pointing_pixel", "region_share"),
                            ("pointing_segment", "segment_chance")):
            v = g[col].to_numpy(dtype=float)
            v = v[np.isfinite(v)]
            hits = float(v.sum())
            lo, hi = wilson(round(hits), len(v))
            row.update({col: hits / len(v) if len(v) else float("nan"), f"{col}_low": lo,
                        f"{col}_high": hi, f"{col}_chance": float(g[chance].mean())})
        rows.append(row)
    return pd.DataFrame(rows)


def localisation_png(summary: pd.DataFrame, path: str | os.PathLike[str] | None = None
                     ) -> bytes:
    """Mass share in the region and the two pointing games per method, with 95 % intervals
    and the chance levels (dashed)."""
    if not len(summary):
        return figures.placeholder_png("no clip with a planted region", path)
    fig, axes = plt.subplots(1, 3, figsize=(15, 0.32 * len(summary) + 1.8), sharey=True)
    y = np.arange(len(summary))
    panels = (("mass_share", "mass_low", "mass_high", "region_share",
               "share of |attribution| in the region"),
              ("pointing_pixel", "pointing_pixel_low", "pointing_pixel_high",
               "pointing_pixel_chance", "pointing game: top pixel in the region"),
              ("pointing_segment", "pointing_segment_low", "pointing_segment_high",
               "pointing_segment_chance", "pointing game: top segment in the region"))
    for ax, (col, lo, hi, chance, title) in zip(axes, panels, strict=True):
        v = summary[col].to_numpy(dtype=float)
        err = np.vstack([v - summary[lo].to_numpy(dtype=float),
                         summary[hi].to_numpy(dtype=float) - v])
        ax.barh(y, v, xerr=np.nan_to_num(err), color="tab:blue", alpha=0.7,
                error_kw={"elinewidth": 0.8, "capsize": 2})
        ax.axvline(float(summary[chance].mean()), color="black", ls="--", lw=1,
                   label=f"chance {float(summary[chance].mean()):.3f}")
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_yticks(y)
    axes[0].set_yticklabels(summary["method"], fontsize=8)
    axes[0].invert_yaxis()
    n = int(summary["n"].max())
    fig.suptitle(f"Localisation against the planted region on clean inputs ({n} clips; 95 % "
                 f"intervals)", fontsize=10)
    fig.tight_layout()
    return figures._finish(fig, path)


def _localisation_table_html(summary: pd.DataFrame) -> str:
    if not len(summary):
        return "<p class=\"caption\">No clip with a planted region.</p>"
    head = ["method", "clips", "mass share [95 % CI]", "region share (chance)",
            "pointing game, pixel [95 % CI]", "pointing game, segment [95 % CI]",
            "segment chance"]
    rows = []
    for r in summary.to_dict("records"):
        rows.append([_td(esc(r["method"]), numeric=False), _td(str(r["n"])),
                     _td(f"{fmt(r['mass_share'], 3)} [{fmt(r['mass_low'], 3)}, "
                         f"{fmt(r['mass_high'], 3)}]"), _td(fmt(r["region_share"], 3)),
                     _td(f"{fmt(r['pointing_pixel'], 2)} [{fmt(r['pointing_pixel_low'], 2)}, "
                         f"{fmt(r['pointing_pixel_high'], 2)}]"),
                     _td(f"{fmt(r['pointing_segment'], 2)} "
                         f"[{fmt(r['pointing_segment_low'], 2)}, "
                         f"{fmt(r['pointing_segment_high'], 2)}]"),
                     _td(fmt(r["pointing_segment_chance"], 2))])
    return _table(_head(head), rows)


def sanity_png(cascade: pd.DataFrame, path: str | os.PathLike[str] | None = None) -> bytes:
    """Median Spearman correlation of |map| with the trained model's, per cascade step (the top
    k layers re-initialised), with the interquartile range, one line per method."""
    if not len(cascade):
        return figures.placeholder_png("no sanity checks in this folder", path)
    fig, ax = plt.subplots(figsize=(8, 4.4))
    methods = list(dict.fromkeys(cascade["method"].astype(str)))
    colors = _explainer_colors(methods)
    layers = (cascade.drop_duplicates("step").sort_values("step")[["step", "layer"]])
    for m in methods:
        g = cascade[cascade["method"] == m].groupby("step")["spearman_abs"]
        med, q1, q3 = g.median(), g.quantile(0.25), g.quantile(0.75)
        style = ({"color": "black", "ls": "--"} if m == "input"
                 else {"color": colors.get(m, "tab:blue"), "ls": "-"})
        ax.plot(med.index, med.to_numpy(), marker="o", ms=3, label=m, **style)
        ax.fill_between(med.index, q1.to_numpy(), q3.to_numpy(), color=style["color"],
                        alpha=0.06)
    ax.axhline(0.5, color="grey", ls=":", lw=1, label="verdict threshold 0.5")
    ax.set_xticks(layers["step"].to_numpy())
    ax.set_xticklabels([str(v).replace("backbone.features.", "conv ") for v in layers["layer"]],
                       rotation=45, ha="right", fontsize=7)
    ax.set_xlabel("layers re-initialised, from the top (cumulative)")
    ax.set_ylabel("Spearman r of |map| with the trained model's")
    ax.set_ylim(-0.3, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    n = int(cascade["clip"].nunique())
    ax.set_title(f"Cascading parameter randomisation ({n} clips; median and quartiles)",
                 fontsize=10)
    fig.tight_layout()
    return figures._finish(fig, path)


def sanity_maps_png(path_npz: Path, out: str | os.PathLike[str] | None = None,
                    max_steps: int = 7) -> bytes:
    """One clip's maps as the layers are re-initialised: a row per method, columns at the
    trained model and at some cascade steps (the last = every layer random); each panel is
    scaled to its own 99th percentile of |map| (the pattern matters, not the scale)."""
    with np.load(path_npz, allow_pickle=False) as z:
        arrays = {k: np.asarray(z[k]) for k in z.files}
    methods = list(dict.fromkeys(k.split("/")[0] for k in arrays if "/" in k))
    if not methods:
        return figures.placeholder_png("no maps kept", out)
    layers = [str(v) for v in arrays.get(f"{methods[0]}/layers", np.asarray([]))]
    n_steps = len(layers)
    steps = sorted({0, *np.unique(np.linspace(1, n_steps, min(max_steps - 1, n_steps))
                                  .round().astype(int)).tolist()}) if n_steps else [0]
    fig, axes = plt.subplots(len(methods), len(steps),
                             figsize=(1.9 * len(steps) + 1.2, 1.25 * len(methods) + 0.8),
                             squeeze=False)
    for i, m in enumerate(methods):
        for j, s in enumerate(steps):
            ax = axes[i][j]
            a = np.abs(arrays[f"{m}/step{s}"].squeeze())
            top = float(np.percentile(a, 99)) or 1.0
            ax.imshow((a / top).T, origin="lower", aspect="auto", cmap="magma", vmin=0,
                      vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                label = "trained" if s == 0 else (
                    f"top {s}: {layers[s - 1].replace('backbone.features.', 'conv ')}")
                ax.set_title(label, fontsize=6)
            if j == 0:
                ax.set_ylabel(m, fontsize=6, rotation=0, ha="right", va="center")
    clip = str(arrays.get("clip_id", path_npz.stem))
    fig.suptitle(f"clip {clip}: |map| as the layers are re-initialised from the top (each "
                 f"panel scaled to its own 99th percentile)", fontsize=8)
    fig.tight_layout()
    return figures._finish(fig, out, f"Attribution maps of clip {clip} for {len(methods)} "
                                     f"methods as the model's layers are re-initialised.")


def _verdict(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return "passes" if bool(value) else "FAILS"


def _sanity_table_html(summary: pd.DataFrame) -> str:
    if not len(summary):
        return "<p class=\"caption\">No sanity checks in this folder.</p>"
    head = ["method", "clips", "cascade: median r, all layers random", "verdict",
            "data randomisation: median r", "verdict"]
    rows = []
    for r in summary.to_dict("records"):
        rows.append([_td(esc(r["method"]), numeric=False),
                     _td(str(int(r.get("cascade_n", 0) or 0))),
                     _td(fmt(r.get("cascade_median", float("nan")), 3)),
                     _td(_verdict(r.get("cascade_passed")), numeric=False),
                     _td(fmt(r.get("data_median", float("nan")), 3)),
                     _td(_verdict(r.get("data_passed")), numeric=False)])
    return _table(_head(head), rows)


def deletion_png(curves: pd.DataFrame, path: str | os.PathLike[str] | None = None) -> bytes:
    """Mean deletion and insertion curves per method (the random order dotted)."""
    if not len(curves):
        return figures.placeholder_png("no deletion curves in this folder", path)
    modes = [m for m in ("deletion", "insertion") if (curves["mode"] == m).any()]
    fig, axes = plt.subplots(1, len(modes), figsize=(6.2 * len(modes), 4.2), squeeze=False,
                             sharey=True)
    methods = list(dict.fromkeys(curves["method"].astype(str)))
    colors = _explainer_colors(methods)
    for ax, mode in zip(axes[0], modes, strict=True):
        sel = curves[curves["mode"] == mode]
        for m in methods:
            g = sel[sel["method"] == m].groupby("fraction")["score"].mean()
            style = (BASELINE_STYLE["random"] if m == "random"
                     else {"color": colors.get(m, "tab:blue"), "ls": "-"})
            ax.plot(g.index, g.to_numpy(), lw=1.2, label=m, **style)
        ax.set_title(f"{mode} ({int(sel['clip_id'].nunique())} clips)", fontsize=10)
        ax.set_xlabel("fraction of segments " + ("removed" if mode == "deletion" else
                                                  "put back"))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("score of the explained output (probability)")
    axes[0][-1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return figures._finish(fig, path)


def _deletion_table_html(auc: pd.DataFrame) -> str:
    from robustmer.evaluate.intervals import t_interval

    if not len(auc):
        return ""
    head = ["method", "clips", "deletion AUC [95 % CI] (lower is better)",
            "insertion AUC [95 % CI] (higher is better)"]
    rows = []
    for m, g in auc.groupby("method", sort=False):
        cells = [_td(esc(m), numeric=False), _td(str(int(g["clip_id"].nunique())))]
        for mode in ("deletion", "insertion"):
            iv = t_interval(g[g["mode"] == mode]["auc"].to_numpy(dtype=float))
            cells.append(_td("–" if iv.n == 0 else iv.format(3)))
        rows.append(cells)
    return _table(_head(head), rows)


def render_explain_html(folder: str | os.PathLike[str],
                        out_dir: str | os.PathLike[str]) -> str:
    """The page for one explainer-eval folder (figures also saved under ``out_dir``)."""
    src = Path(folder)
    if not is_explainer_eval(src):
        raise ConfigError(f"{src}: not an explainer-eval folder (needs {ADVERSARIAL} and "
                          f"{FLIPS})")
    t = read_results(src)
    config = yaml.safe_load((src / "config.yaml").read_text(encoding="utf-8")) \
        if (src / "config.yaml").is_file() else {}
    meta: dict[str, Any] = {}
    if (src / "meta.json").is_file():
        import json

        meta = json.loads((src / "meta.json").read_text(encoding="utf-8"))
    adv = t["adversarial"]
    n_att, n_ok = len(adv), int(adv["success"].astype(bool).sum()) if len(adv) else 0
    fig_dir = Path(out_dir) / FIGURES_DIR
    summary = flip_summary(t["flips"]) if len(t["flips"]) else pd.DataFrame(
        columns=["method", "k", "n", "flipped", "rate", "ci_low", "ci_high"])
    curves = flip_curves_png(summary, fig_dir / "explainer-flip-curves.png")
    recov = recovery_png(t["recovery"], fig_dir / "explainer-recovery.png")
    methods = list(dict.fromkeys(t["flips"]["method"].astype(str)))
    maps_html = []
    for p in sorted((src / MAPS).glob("*.npz")) if (src / MAPS).is_dir() else []:
        png = map_png(p, methods, fig_dir / f"explainer-map-{p.stem}.png")
        maps_html.append(f'<figure><img alt="maps of clip {esc(p.stem)}" '
                         f'src="{_data_uri(png)}"></figure>')
    ks_all = sorted(set(summary["k"].astype(int))) if len(summary) else []
    show_k = [k for k in (1, 3, 5) if k in ks_all] or ks_all[:3]
    if ks_all and ks_all[-1] not in show_k:
        show_k.append(ks_all[-1])
    task = config.get("task", "?")
    direction_html = ""
    if TASK_ALIASES.get(task, task) == "classification" and len(t["flips"]):
        names = class_names(src, config)
        dsum = direction_summary(with_direction(t["flips"], adv, names))
        if len(dsum) and dsum["direction"].nunique() <= 4:
            dpng = flip_direction_png(dsum, fig_dir / "explainer-flip-directions.png")
            direction_html = (f'<h3>By direction of the decision</h3>\n<img alt="label-flip '
                              f'curves per direction" src="{_data_uri(dpng)}">\n'
                              + _direction_table_html(dsum, show_k))
        elif len(dsum):
            direction_html = ("<h3>By direction of the decision</h3>"
                              + _direction_table_html(dsum, show_k))
    k50, k90 = (smallest_k(summary, v) for v in (0.5, 0.9)) if len(summary) else (
        pd.Series(dtype=float), pd.Series(dtype=float))
    smallest_html = _table(_head(["method", "smallest k ≥ 50 %", "smallest k ≥ 90 %"]), [
        [_td(esc(m), numeric=False)] + [_td("never" if not np.isfinite(v.get(m, np.nan))
                                            else str(int(v[m]))) for v in (k50, k90)]
        for m in dict.fromkeys(summary["method"])]) if len(summary) else ""
    std_html = _standard_html(src, fig_dir)
    attack = config.get("attack", {})
    rule = ("the prediction becomes the adversarial class"
            if task not in ("regression", "regressor") else
            f"the partial perturbation reproduces at least {config.get('fraction', 0.5)} of the "
            f"full perturbation's rise in MSE")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>robustmer explainer evaluation: {esc(src.resolve().name)}</title>
<link rel="icon" href="data:,">
<style>{_CSS}</style>
</head>
<body>
<h1>Explainers against adversarial ground truth</h1>
<p class="caption">Folder {esc(src.resolve())}; model task: {esc(task)}; attack
{esc(attack.get('attack', '?'))} (ε {esc(attack.get('eps', '?'))}, η {esc(attack.get('eta', '?'))},
{esc(attack.get('max_iters', '?'))} iterations). <b>{n_ok} of {n_att}</b> clips gave a successful
adversarial example; only those are evaluated. A clip counts as flipped when {esc(rule)}.
See docs/explainer-eval.md.</p>
<nav><a href="#flips">label-flip rate</a> <a href="#recovery">recovery</a>
<a href="#localisation">localisation</a> <a href="#sanity">sanity checks</a>
<a href="#deletion">deletion / insertion</a> <a href="#maps">maps</a></nav>
<section id="flips">
<h2>Label-flip rate vs k</h2>
<p class="caption">For each clip the method explains the prediction on x + δ; only the part of δ
inside its k highest-ranked segments is added to the clean input. Baselines: magnitude (the k
segments with the largest Σδ²) and random (seeded). Bands and brackets: 95 % Wilson confidence
intervals over clips.</p>
<img alt="label-flip curves" src="{_data_uri(curves)}">
{_flip_table_html(summary, t["timings"], show_k)}
{smallest_html}
{direction_html}
</section>
<section id="recovery">
<h2>Recovery of localised perturbations</h2>
<p class="caption">δ kept only in its k largest-magnitude segments; on the clips where this partial
adversary still flips the decision the method explains again, and we count how many of the k
modified segments it ranks in its top k.</p>
<img alt="recovery histograms" src="{_data_uri(recov)}">
{_recovery_table_html(t["recovery"])}
</section>
{std_html}
<section id="maps">
<h2>Maps beside the perturbation</h2>
<p class="caption">Clean input, δ, and each method's attribution on x + δ (white lines: the
segments; magnitude = δ²).</p>
<div class="media">{"".join(maps_html) or '<p class="caption">No maps kept.</p>'}</div>
</section>
<details><summary>Configuration (config.yaml)</summary><pre>{esc(_dump(config))}</pre></details>
<details><summary>Metadata and versions (meta.json)</summary><pre>{esc(_dump(meta))}</pre>
</details>
<footer>
<details><summary>Report generated with</summary><pre>{esc(_dump(versions()))}</pre></details>
</footer>
</body>
</html>
"""


def _standard_html(src: Path, fig_dir: Path) -> str:
    """The sections of the standard tests (localisation, sanity checks, deletion / insertion)
    when the folder holds them (``explain.standard``)."""
    from robustmer.explain.standard import SANITY_MAPS, read_standard, sanity_summary

    std = read_standard(src)
    if not any(len(v) for v in std.values()):
        return ('<section id="localisation"><h2>Standard tests</h2><p class="caption">Not run '
                'for this folder (explainer-eval --standard).</p></section>')
    loc = localisation_summary(std["localisation"]) if len(std["localisation"]) else \
        pd.DataFrame()
    loc_png = localisation_png(loc, fig_dir / "explainer-localisation.png")
    san_png = sanity_png(std["cascade"], fig_dir / "explainer-sanity.png")
    maps = ""
    if (src / SANITY_MAPS).is_dir():
        for p in sorted((src / SANITY_MAPS).glob("*.npz"))[:1]:
            png = sanity_maps_png(p, fig_dir / f"explainer-sanity-maps-{p.stem}.png")
            maps = f'<img alt="maps of clip {esc(p.stem)} as layers are randomised" ' \
                   f'src="{_data_uri(png)}">'
    del_png = deletion_png(std["deletion_curves"], fig_dir / "explainer-deletion.png")
    summ = sanity_summary(std["cascade"], std["data_randomisation"])
    return f"""<section id="localisation">
<h2>Localisation against the planted ground truth (clean inputs)</h2>
<p class="caption">Each method explains the clean input for the class the model predicts; where
the data planted a region (the voice's time-frequency mask on clips the detector calls voice),
we measure the share of |attribution| inside it, whether the top pixel and the top segment lie
in it (a segment counts as in the region when enough of its bins are), against the chance
levels (dashed: the region's area share, the share of segments in the region) and a seeded
random map. Intervals: t (mass share), Wilson (pointing games).</p>
<img alt="localisation per method" src="{_data_uri(loc_png)}">
{_localisation_table_html(loc)}
</section>
<section id="sanity">
<h2>Sanity checks (Adebayo et al. 2018)</h2>
<p class="caption">Cascading model-parameter randomisation: the layers are re-initialised from
the top down, one more per step, and each method's map of the same clips is compared with the
trained model's (Spearman r of |map|). Data randomisation: the same comparison with a model
trained on shuffled labels. A method whose maps barely change (median r above 0.5 with every
layer random, or after data randomisation) fails; the reference "input" (the map is the input
itself) ignores the model and must fail.</p>
<img alt="cascading randomisation curves" src="{_data_uri(san_png)}">
{_sanity_table_html(summ)}
{maps}
</section>
<section id="deletion">
<h2>Deletion and insertion curves</h2>
<p class="caption">Segments removed (replaced by the clip's mean) or put back in each method's
order; the score is the probability of the explained class (a regressor: the explained
output). The random order (dotted) averages several seeded orders.</p>
<img alt="deletion and insertion curves" src="{_data_uri(del_png)}">
{_deletion_table_html(std["deletion_auc"])}
</section>"""


def build_explain_report(folder: str | os.PathLike[str],
                         out: str | os.PathLike[str] | None = None) -> Path:
    """Write the explainer-eval page (default ``FOLDER/report.html``) atomically."""
    out_path = Path(out) if out is not None else Path(folder) / REPORT_FILE
    if out_path.exists() and out_path.is_dir():
        raise ConfigError(f"--out {out_path}: is a folder, expected a file name")
    write_text(out_path, render_explain_html(folder, out_path.parent))
    return out_path
