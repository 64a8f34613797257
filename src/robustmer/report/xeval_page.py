"""The report page of an explainer-eval folder (written by ``robustmer explainer-eval``).

Reads the folder's tables only (``adversarial.csv``, ``flips.csv``, ``recovery.csv``,
``timings.csv``, ``maps/``, ``config.yaml``, ``meta.json``, and the standard tests' tables when
there are any) and lays out: the label-flip curves and tables (``xeval_stats``,
``xeval_figures``), the recovery histograms, the standard tests' sections (``xeval_standard``)
and a few clips' maps beside the perturbation δ. The header states the attack and its norm ball
(L2: ``‖δ‖₂ ≤ ε``, L∞: ``‖δ‖∞ ≤ ε``) from ``config.yaml``. Self-contained HTML in the style of
``report.html``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from robustmer.errors import ConfigError
from robustmer.explain.evaluation import ADVERSARIAL, FLIPS, MAPS, read_results
from robustmer.io import versions, write_text
from robustmer.report.page import CSS, FIGURES_DIR, REPORT_FILE, data_uri, dump
from robustmer.report.tables import esc, fmt, head_row, n_range, table, td
from robustmer.report.xeval_figures import (
    flip_curves_png,
    flip_direction_png,
    map_png,
    recovery_png,
)
from robustmer.report.xeval_standard import standard_html
from robustmer.report.xeval_stats import (
    class_names,
    direction_summary,
    flip_summary,
    recovery_summary,
    smallest_k,
    with_direction,
)

REGRESSION_TASKS = ("regression", "regressor")
"""A regressor's task in ``config.yaml`` (``regressor``: folders written before the tasks were
renamed)."""
NORM_BALLS = {"l2": ("L2", "‖δ‖₂ ≤ ε"), "linf": ("L∞", "‖δ‖∞ ≤ ε")}
"""How the page names an attack's norm (``config.yaml``'s ``attack.norm``) and its ball."""


def is_explainer_eval(folder: str | os.PathLike[str]) -> bool:
    """True for a folder written by ``explainer-eval`` (it holds adversarial.csv + flips.csv)."""
    p = Path(folder)
    return (p / ADVERSARIAL).is_file() and (p / FLIPS).is_file()


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
        cells = [td(esc(method), numeric=False), td(str(int(g["n"].max())))]
        for k in show_k:
            r = g[g["k"] == k]
            cells.append(td("–" if not len(r) else
                             f"{fmt(r['rate'].iloc[0], 2)} [{fmt(r['ci_low'].iloc[0], 2)}, "
                             f"{fmt(r['ci_high'].iloc[0], 2)}]"))
        cells.append(td(fmt(sec.get(method, float("nan")), 4)))
        rows.append(cells)
    n = n_range(summary.groupby("method", sort=False)["n"].max().tolist())
    return table(head_row(head), rows, caption=(
        f"Share of the successful adversarial examples whose decision the explainer's top k "
        f"segments of δ carry, with 95 % Wilson intervals; N = {n} clips per method (the "
        f"'clips' column)."))


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
        rows.append([td(esc(d["method"]), numeric=False), td(str(d["k"])),
                     td(str(d["attacked"])), td(str(d["n"])), td(fmt(d["mean_hits"], 2)),
                     *(td("" if d[c] is None or pd.isna(d[c]) else str(int(d[c])))
                       for c in hcols)])
    return table(head_row(head), rows, caption=(
        f"Per k, N = the partial adversaries (δ kept in its k largest segments that still "
        f"flip the decision: {n_range(rs['n'].tolist())}) of "
        f"{n_range(rs['attacked'].tolist())} clips attacked; the histogram columns count "
        f"them by how many of the k modified segments the method ranks in its top k."))


def _direction_table_html(dsum: pd.DataFrame, show_k: Sequence[int]) -> str:
    if not len(dsum):
        return ""
    k50, k90 = smallest_k(dsum, 0.5), smallest_k(dsum, 0.9)
    head = ["direction", "method", "clips"] + [f"k={k} [95 % CI]" for k in show_k] + [
        "smallest k ≥ 50 %", "smallest k ≥ 90 %"]
    rows = []
    for (direction, method), g in dsum.groupby(["direction", "method"], sort=False):
        cells = [td(esc(direction), numeric=False), td(esc(method), numeric=False),
                 td(str(int(g["n"].max())))]
        for k in show_k:
            r = g[g["k"] == k]
            cells.append(td("–" if not len(r) else
                             f"{fmt(r['rate'].iloc[0], 2)} [{fmt(r['ci_low'].iloc[0], 2)}, "
                             f"{fmt(r['ci_high'].iloc[0], 2)}]"))
        for series in (k50, k90):
            v = series.get((direction, method), float("nan"))
            cells.append(td("never" if not np.isfinite(v) else str(int(v))))
        rows.append(cells)
    n = n_range(dsum.groupby(["direction", "method"], sort=False)["n"].max().tolist())
    return table(head_row(head), rows, caption=(
        f"Label-flip rate per direction of the clean decision, 95 % Wilson intervals; N = {n} "
        f"clips per direction and method (the 'clips' column)."))



def attack_html(attack: Mapping[str, Any]) -> str:
    """The attack as the header states it: its name, its norm ball (L2 ``‖δ‖₂ ≤ ε`` or L∞
    ``‖δ‖∞ ≤ ε``, from the config's ``norm``: the default attack is L2, so the page never
    assumes L∞), ε, η and the iterations (escaped)."""
    norm = attack.get("norm")
    if norm is None:
        ball = "norm not recorded; "
    elif str(norm).lower() in NORM_BALLS:
        name, bound = NORM_BALLS[str(norm).lower()]
        ball = f"{name} ball {bound}: "
    else:
        ball = f"norm {esc(norm)}: "
    return (f"{esc(attack.get('attack', '?'))} ({ball}ε {esc(attack.get('eps', '?'))}, "
            f"η {esc(attack.get('eta', '?'))},\n{esc(attack.get('max_iters', '?'))} iterations)")


def _read_config(src: Path) -> tuple[Any, dict[str, Any]]:
    """The folder's ``config.yaml`` (``{}`` when absent) and ``meta.json`` (``{}``)."""
    config = yaml.safe_load((src / "config.yaml").read_text(encoding="utf-8")) \
        if (src / "config.yaml").is_file() else {}
    meta: dict[str, Any] = {}
    if (src / "meta.json").is_file():
        meta = json.loads((src / "meta.json").read_text(encoding="utf-8"))
    return config, meta


def _maps_html(src: Path, methods: Sequence[str], fig_dir: Path,
               stft: bool = False) -> list[str]:
    """One figure per kept clip (``maps/*.npz``): its maps beside δ (``stft``: a waveform
    model's STFT view)."""
    maps_html = []
    for p in sorted((src / MAPS).glob("*.npz")) if (src / MAPS).is_dir() else []:
        png = map_png(p, methods, fig_dir / f"explainer-map-{p.stem}.png", stft=stft)
        maps_html.append(f'<figure><img alt="maps of clip {esc(p.stem)}" '
                         f'src="{data_uri(png)}"></figure>')
    return maps_html


def _show_k(summary: pd.DataFrame) -> list[int]:
    """The k the tables show: 1, 3, 5 where evaluated (else the first three) and the largest."""
    ks_all = sorted(set(summary["k"].astype(int))) if len(summary) else []
    show_k = [k for k in (1, 3, 5) if k in ks_all] or ks_all[:3]
    if ks_all and ks_all[-1] not in show_k:
        show_k.append(ks_all[-1])
    return show_k


def _direction_html(src: Path, config: Any, t: Mapping[str, pd.DataFrame], show_k: Sequence[int],
                    fig_dir: Path) -> str:
    """A classifier's flip rates per direction of the decision (a figure when at most four
    directions); empty for a regressor. A classifier's folder is known by its attack targets
    (``adversarial.csv``'s ``target_class``, -1 for a regressor's clips), whichever spelling of
    the task its config uses."""
    adv = t["adversarial"]
    classifier = bool(pd.to_numeric(adv["target_class"], errors="coerce").ge(0).any())
    direction_html = ""
    if classifier and len(t["flips"]):
        names = class_names(src, config)
        dsum = direction_summary(with_direction(t["flips"], adv, names))
        if len(dsum) and dsum["direction"].nunique() <= 4:
            dpng = flip_direction_png(dsum, fig_dir / "explainer-flip-directions.png")
            direction_html = (f'<h3>By direction of the decision</h3>\n<img alt="label-flip '
                              f'curves per direction" src="{data_uri(dpng)}">\n'
                              + _direction_table_html(dsum, show_k))
        elif len(dsum):
            direction_html = ("<h3>By direction of the decision</h3>"
                              + _direction_table_html(dsum, show_k))
    return direction_html


def _smallest_html(summary: pd.DataFrame) -> str:
    """Per method the smallest k whose flip rate reaches 50 % and 90 %."""
    k50, k90 = (smallest_k(summary, v) for v in (0.5, 0.9)) if len(summary) else (
        pd.Series(dtype=float), pd.Series(dtype=float))
    if not len(summary):
        return ""
    n = n_range(summary.groupby("method", sort=False)["n"].max().tolist())
    return table(head_row(["method", "smallest k ≥ 50 %", "smallest k ≥ 90 %"]), [
        [td(esc(m), numeric=False)] + [td("never" if not np.isfinite(v.get(m, np.nan))
                                          else str(int(v[m]))) for v in (k50, k90)]
        for m in dict.fromkeys(summary["method"])],
        caption=f"The smallest k whose flip rate reaches 50 % and 90 %; N = {n} clips per "
                f"method.")


def _top_html(src: Path, config: Any, n_ok: int, n_att: int) -> str:
    """The page from its start to the navigation: title, style, what was attacked and how."""
    task = config.get("task", "?")
    rule = ("the prediction becomes the adversarial class"
            if task not in REGRESSION_TASKS else
            f"the partial perturbation reproduces at least {config.get('fraction', 0.5)} of the "
            f"full perturbation's rise in MSE")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>robustmer explainer evaluation: {esc(src.resolve().name)}</title>
<link rel="icon" href="data:,">
<style>{CSS}</style>
</head>
<body>
<h1>Explainers against adversarial ground truth</h1>
<p class="caption">Folder {esc(src.resolve())}; model task: {esc(task)}; attack
{attack_html(config.get("attack", {}))}. <b>{n_ok} of {n_att}</b> clips gave a successful
adversarial example; only those are evaluated. A clip counts as flipped when {esc(rule)}.
See docs/explainer-eval.md.</p>
<nav><a href="#flips">label-flip rate</a> <a href="#recovery">recovery</a>
<a href="#localisation">localisation</a> <a href="#sanity">sanity checks</a>
<a href="#deletion">deletion / insertion</a> <a href="#maps">maps</a></nav>"""


def render_explain_html(folder: str | os.PathLike[str],
                        out_dir: str | os.PathLike[str]) -> str:
    """The page for one explainer-eval folder (figures also saved under ``out_dir``)."""
    src = Path(folder)
    if not is_explainer_eval(src):
        raise ConfigError(f"{src}: not an explainer-eval folder (needs {ADVERSARIAL} and "
                          f"{FLIPS})")
    t = read_results(src)
    config, meta = _read_config(src)
    adv = t["adversarial"]
    n_att, n_ok = len(adv), int(adv["success"].astype(bool).sum()) if len(adv) else 0
    fig_dir = Path(out_dir) / FIGURES_DIR
    summary = flip_summary(t["flips"]) if len(t["flips"]) else pd.DataFrame(
        columns=["method", "k", "n", "flipped", "rate", "ci_low", "ci_high"])
    curves = flip_curves_png(summary, fig_dir / "explainer-flip-curves.png")
    recov = recovery_png(t["recovery"], fig_dir / "explainer-recovery.png")
    maps_html = _maps_html(src, list(dict.fromkeys(t["flips"]["method"].astype(str))), fig_dir,
                           stft=(config or {}).get("view") == "stft")
    show_k = _show_k(summary)
    direction_html = _direction_html(src, config, t, show_k, fig_dir)
    smallest_html = _smallest_html(summary)
    std_html = standard_html(src, fig_dir)
    return f"""{_top_html(src, config, n_ok, n_att)}
<section id="flips">
<h2>Label-flip rate vs k</h2>
<p class="caption">For each clip the method explains the prediction on x + δ; only the part of δ
inside its k highest-ranked segments is added to the clean input. Baselines: magnitude (the k
segments with the largest Σδ²) and random (seeded). Bands and brackets: 95 % Wilson confidence
intervals over clips.</p>
<img alt="label-flip curves" src="{data_uri(curves)}">
{_flip_table_html(summary, t["timings"], show_k)}
{smallest_html}
{direction_html}
</section>
<section id="recovery">
<h2>Recovery of localised perturbations</h2>
<p class="caption">δ kept only in its k largest-magnitude segments; on the clips where this partial
adversary still flips the decision the method explains again, and we count how many of the k
modified segments it ranks in its top k.</p>
<img alt="recovery histograms" src="{data_uri(recov)}">
{_recovery_table_html(t["recovery"])}
</section>
{std_html}
<section id="maps">
<h2>Maps beside the perturbation</h2>
<p class="caption">Clean input, δ, and each method's attribution on x + δ (white lines: the
segments; magnitude = δ²).</p>
<div class="media">{"".join(maps_html) or '<p class="caption">No maps kept.</p>'}</div>
</section>
<details><summary>Configuration (config.yaml)</summary><pre>{esc(dump(config))}</pre></details>
<details><summary>Metadata and versions (meta.json)</summary><pre>{esc(dump(meta))}</pre>
</details>
<footer>
<details><summary>Report generated with</summary><pre>{esc(dump(versions()))}</pre></details>
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
