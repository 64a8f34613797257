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
from scipy import stats as sps

from robustmer.errors import ConfigError, DatasetError
from robustmer.explain.evaluation import ADVERSARIAL, FLIPS, MAPS, read_results
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
<a href="#maps">maps</a></nav>
<section id="flips">
<h2>Label-flip rate vs k</h2>
<p class="caption">For each clip the method explains the prediction on x + δ; only the part of δ
inside its k highest-ranked segments is added to the clean input. Baselines: magnitude (the k
segments with the largest Σδ²) and random (seeded). Bands and brackets: 95 % Wilson confidence
intervals over clips.</p>
<img alt="label-flip curves" src="{_data_uri(curves)}">
{_flip_table_html(summary, t["timings"], show_k)}
</section>
<section id="recovery">
<h2>Recovery of localised perturbations</h2>
<p class="caption">δ kept only in its k largest-magnitude segments; on the clips where this partial
adversary still flips the decision the method explains again, and we count how many of the k
modified segments it ranks in its top k.</p>
<img alt="recovery histograms" src="{_data_uri(recov)}">
{_recovery_table_html(t["recovery"])}
</section>
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


def build_explain_report(folder: str | os.PathLike[str],
                         out: str | os.PathLike[str] | None = None) -> Path:
    """Write the explainer-eval page (default ``FOLDER/report.html``) atomically."""
    out_path = Path(out) if out is not None else Path(folder) / REPORT_FILE
    if out_path.exists() and out_path.is_dir():
        raise ConfigError(f"--out {out_path}: is a folder, expected a file name")
    write_text(out_path, render_explain_html(folder, out_path.parent))
    return out_path
