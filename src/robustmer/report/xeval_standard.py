"""The standard tests' sections of an explainer-eval page (``explain.standard``: localisation
against a planted region, the sanity checks of Adebayo et al. 2018, deletion / insertion
curves): their figures, tables and the HTML of the three sections (:func:`standard_html`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from robustmer.report import figures
from robustmer.report.page import data_uri
from robustmer.report.tables import esc, fmt, head_row, n_range, table, td
from robustmer.report.xeval_figures import BASELINE_STYLE, explainer_colors
from robustmer.report.xeval_stats import localisation_summary


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
    return figures.finish(fig, path)


def _localisation_table_html(summary: pd.DataFrame) -> str:
    if not len(summary):
        return "<p class=\"caption\">No clip with a planted region.</p>"
    head = ["method", "clips", "mass share [95 % CI]", "region share (chance)",
            "pointing game, pixel [95 % CI]", "pointing game, segment [95 % CI]",
            "segment chance"]
    rows = []
    for r in summary.to_dict("records"):
        rows.append([td(esc(r["method"]), numeric=False), td(str(r["n"])),
                     td(f"{fmt(r['mass_share'], 3)} [{fmt(r['mass_low'], 3)}, "
                         f"{fmt(r['mass_high'], 3)}]"), td(fmt(r["region_share"], 3)),
                     td(f"{fmt(r['pointing_pixel'], 2)} [{fmt(r['pointing_pixel_low'], 2)}, "
                         f"{fmt(r['pointing_pixel_high'], 2)}]"),
                     td(f"{fmt(r['pointing_segment'], 2)} "
                         f"[{fmt(r['pointing_segment_low'], 2)}, "
                         f"{fmt(r['pointing_segment_high'], 2)}]"),
                     td(fmt(r["pointing_segment_chance"], 2))])
    return table(head_row(head), rows, caption=(
        f"Clean clips with a planted region; N = {n_range(summary['n'].tolist())} clips per "
        f"method (the 'clips' column); 95 % intervals."))


def sanity_png(cascade: pd.DataFrame, path: str | os.PathLike[str] | None = None) -> bytes:
    """Median Spearman correlation of |map| with the trained model's, per cascade step (the top
    k layers re-initialised), with the interquartile range, one line per method."""
    if not len(cascade):
        return figures.placeholder_png("no sanity checks in this folder", path)
    fig, ax = plt.subplots(figsize=(8, 4.4))
    methods = list(dict.fromkeys(cascade["method"].astype(str)))
    colors = explainer_colors(methods)
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
    return figures.finish(fig, path)


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
    return figures.finish(fig, out, f"Attribution maps of clip {clip} for {len(methods)} "
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
        rows.append([td(esc(r["method"]), numeric=False),
                     td(str(int(r.get("cascade_n", 0) or 0))),
                     td(fmt(r.get("cascade_median", float("nan")), 3)),
                     td(_verdict(r.get("cascade_passed")), numeric=False),
                     td(fmt(r.get("data_median", float("nan")), 3)),
                     td(_verdict(r.get("data_passed")), numeric=False)])
    n = n_range([int(r.get("cascade_n", 0) or 0) for r in summary.to_dict("records")])
    return table(head_row(head), rows, caption=(
        f"Spearman r of |map| with the trained model's map; a method fails when the median is "
        f"above 0.5; N = {n} clips per method (the 'clips' column)."))


def deletion_png(curves: pd.DataFrame, path: str | os.PathLike[str] | None = None) -> bytes:
    """Mean deletion and insertion curves per method (the random order dotted)."""
    if not len(curves):
        return figures.placeholder_png("no deletion curves in this folder", path)
    modes = [m for m in ("deletion", "insertion") if (curves["mode"] == m).any()]
    fig, axes = plt.subplots(1, len(modes), figsize=(6.2 * len(modes), 4.2), squeeze=False,
                             sharey=True)
    methods = list(dict.fromkeys(curves["method"].astype(str)))
    colors = explainer_colors(methods)
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
    axes[0][0].set_ylabel("score of the explained output\n(a classifier: its probability)")
    axes[0][-1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return figures.finish(fig, path)


def _deletion_table_html(auc: pd.DataFrame) -> str:
    from robustmer.evaluate.intervals import t_interval

    if not len(auc):
        return ""
    head = ["method", "clips", "deletion AUC [95 % CI] (lower is better)",
            "insertion AUC [95 % CI] (higher is better)"]
    rows = []
    for m, g in auc.groupby("method", sort=False):
        cells = [td(esc(m), numeric=False), td(str(int(g["clip_id"].nunique())))]
        for mode in ("deletion", "insertion"):
            iv = t_interval(g[g["mode"] == mode]["auc"].to_numpy(dtype=float))
            cells.append(td("–" if iv.n == 0 else iv.format(3)))
        rows.append(cells)
    n = n_range(auc.groupby("method", sort=False)["clip_id"].nunique().tolist())
    return table(head_row(head), rows, caption=(
        f"Area under the deletion and insertion curves, 95 % t-intervals over clips; N = {n} "
        f"clips per method (the 'clips' column)."))


def standard_html(src: Path, fig_dir: Path) -> str:
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
                   f'src="{data_uri(png)}">'
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
<img alt="localisation per method" src="{data_uri(loc_png)}">
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
<img alt="cascading randomisation curves" src="{data_uri(san_png)}">
{_sanity_table_html(summ)}
{maps}
</section>
<section id="deletion">
<h2>Deletion and insertion curves</h2>
<p class="caption">Segments removed (replaced by the clip's mean) or put back in each method's
order; the score is the probability of the explained class (a regressor: the explained
output). The random order (dotted) averages several seeded orders.</p>
<img alt="deletion and insertion curves" src="{data_uri(del_png)}">
{_deletion_table_html(std["deletion_auc"])}
</section>"""

