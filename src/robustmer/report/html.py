"""The HTML report of one or more results stores (figures embedded; audio beside it in media/).

Reads the results store(s) only (never study/ or train/): tables and statistics are recomputed
from ``clips.csv`` + ``runs.csv``, figures are embedded as base64 PNG data URIs (and saved as
PNG beside the page), audio players reference ``media/`` by relative path so the page opens
from disk without a server.
"""

from __future__ import annotations

import base64
import os
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from robustmer import EMOTIONS
from robustmer.errors import ConfigError, DatasetError
from robustmer.evaluate import stats
from robustmer.evaluate.store import (
    ResultsStore,
    Setting,
    order_model_types,
    output_names,
    select_setting,
    setting_key,
    setting_label,
    settings,
)
from robustmer.evaluate.summary import summarize_runs
from robustmer.io import versions, write_text
from robustmer.report import figures, tables
from robustmer.report.checks import checks_section
from robustmer.report.l2i import find_l2i, l2i_section_html
from robustmer.report.tables import esc

REPORT_FILE = "report.html"
FIGURES_DIR = "report-figures"


@dataclass
class MediaItem:
    """One clip's media for the page: audio paths (relative URLs) or a δ image (data URI)."""

    model_type: str
    run_id: str
    clip_id: str
    clean_src: str | None = None
    adv_src: str | None = None
    delta_src: str | None = None


@dataclass
class SettingPart:
    """Table 1, t-tests, SNR table and Figures 3-4 of one attack setting of a store."""

    setting: Setting | None
    slug: str
    table1: pd.DataFrame
    ttests: list[stats.Comparison]
    snr: pd.DataFrame
    figure3: bytes = b""
    figure4: bytes = b""

    @property
    def label(self) -> str:
        """The setting's human label (``store.setting_label``)."""
        return setting_label(self.setting) if self.setting is not None else "no attack setting"


@dataclass
class SourceResults:
    """Everything the report shows for one results store. ``table1``, ``ttests``, ``snr``,
    ``figure3`` and ``figure4`` are those of the first attack setting (the only one of a
    one-setting store); ``parts`` has them for every setting, ``curves`` the robustness curves
    (empty unless an attack has two bounded budgets)."""

    name: str
    slug: str
    store: ResultsStore
    per_run: pd.DataFrame
    clips: pd.DataFrame
    table1: pd.DataFrame
    ttests: list[stats.Comparison]
    snr: pd.DataFrame
    config: dict[str, Any]
    meta: dict[str, Any]
    figure3: bytes = b""
    figure4: bytes = b""
    media: list[MediaItem] = field(default_factory=list)
    parts: list[SettingPart] = field(default_factory=list)
    curves: list[stats.Curve] = field(default_factory=list)
    curve_points: pd.DataFrame = field(default_factory=pd.DataFrame)
    curve_figure: bytes = b""
    outputs: list[str] = field(default_factory=list)
    units: str = ""

    @property
    def settings(self) -> list[Setting]:
        """The store's attack settings (``store.settings`` order)."""
        return [p.setting for p in self.parts if p.setting is not None]
    checks: str = ""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-").lower() or "source"


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _rel_url(target: Path, base_dir: Path) -> str:
    rel = os.path.relpath(target.resolve(), base_dir.resolve())
    return urllib.parse.quote(Path(rel).as_posix())


def _source_name(store: ResultsStore, meta: dict[str, Any], config: dict[str, Any]) -> str:
    origin = meta.get("source") or config.get("source") or "robustmer"
    return f"{origin} ({store.path.resolve().name})"


def _collect_media(store: ResultsStore, per_run: pd.DataFrame, out_dir: Path,
                   per_type: int) -> list[MediaItem]:
    """Up to ``per_type`` clips with media per model type, from its lowest-seed runs first."""
    items: list[MediaItem] = []
    if per_type <= 0 or not store.media_dir.is_dir():
        return items
    for t in order_model_types(per_run["model_type"]):
        runs = per_run[(per_run["model_type"] == t) & (per_run["status"] == "done")]
        found: list[MediaItem] = []
        for run_id in runs.sort_values(["seed", "run_id"])["run_id"].drop_duplicates():
            run_dir = store.media_dir / str(run_id)
            if not run_dir.is_dir():
                continue
            clip_ids = sorted({p.name.rsplit("_", 1)[0] for p in run_dir.iterdir()
                               if re.fullmatch(r".+_(clean\.wav|adv\.wav|delta\.png|delta\.npz)",
                                               p.name)})
            for clip in clip_ids:
                item = MediaItem(t, str(run_id), clip)
                clean = store.media_path(run_id, clip, "clean.wav")
                adv = store.media_path(run_id, clip, "adv.wav")
                png = store.media_path(run_id, clip, "delta.png")
                npz = store.media_path(run_id, clip, "delta.npz")
                if clean.is_file() and adv.is_file():
                    item.clean_src = _rel_url(clean, out_dir)
                    item.adv_src = _rel_url(adv, out_dir)
                if png.is_file():
                    item.delta_src = _data_uri(png.read_bytes())
                elif npz.is_file():
                    item.delta_src = _data_uri(figures.delta_image(
                        _load_delta(npz), title=f"δ {t} run {run_id} clip {clip}"))
                if item.clean_src or item.delta_src:
                    found.append(item)
                if len(found) >= per_type:
                    break
            if len(found) >= per_type:
                break
        items.extend(found)
    return items


def _load_delta(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as z:
            key = "delta" if "delta" in z.files else (z.files[0] if z.files else None)
            if key is None:
                raise DatasetError(f"{path}: no array inside")
            return np.asarray(z[key])
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path}: not a readable .npz with a 'delta' array ({err})") from err


def analyse_store(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    emotions: Sequence[str] | None = None,
    comparisons: Sequence[tuple[str, str]] | None = None,
    alpha: float = 0.05,
    media_clips: int = 2,
    taken: set[str] | None = None,
) -> SourceResults:
    """Read one results store and compute every table, test and figure of its report section.

    ``emotions``: the outputs Figure 4 shows (default: the paper's two where the store has
    them, else its first two); ``comparisons``: the planned pairs (default: the store's own,
    else ``models.types.default_comparisons`` of its types)."""
    store = ResultsStore(path)
    if not store.path.is_dir():
        raise ConfigError(f"RESULTS_DIR {store.path}: not a folder")
    runs = store.read_runs()
    clips = store.read_clips()
    outputs = output_names(clips, "y_") or output_names(runs, "r_")
    if emotions is None:
        paper = [e for e in figures.FIG4_EMOTIONS if e in outputs]
        emotions = paper if len(paper) == len(figures.FIG4_EMOTIONS) else outputs[:2]
    for e in emotions:
        if e not in outputs:
            raise ConfigError(f"--emotion {e!r}: expected one of the store's outputs "
                              f"{', '.join(outputs)}")
    config, meta = store.read_config(), store.read_meta()
    if comparisons is None:
        comparisons = stats.store_comparisons(config, order_model_types(runs["model_type"]))
    name = _source_name(store, meta, config)
    slug = _slug(name)
    taken = taken if taken is not None else set()
    base, k = slug, 2
    while slug in taken:
        slug, k = f"{base}-{k}", k + 1
    taken.add(slug)
    per_run = summarize_runs(clips, runs)
    done_ids = set(per_run.loc[per_run["status"] == "done", "run_id"])
    done_clips = clips[clips["run_id"].isin(done_ids)]
    fig_dir = Path(out_dir) / FIGURES_DIR
    found: list[Setting | None] = list(settings(clips)) or [None]
    # one Bonferroni family over comparisons x settings
    tests = ([c for _, c in stats.compare_by_setting(clips, comparisons, alpha=alpha, runs=runs)]
             if found[0] is not None else
             [stats.compare_model_types(clips, comparisons, alpha=alpha, runs=runs)])
    parts = []
    for k, st in enumerate(found):
        c_sel = clips if st is None else select_setting(clips, st)
        r_sel = runs if st is None else select_setting(runs, st, keep_unset=True)
        label = "" if len(found) == 1 else f" ({setting_label(st)})" if st else ""
        pslug = slug if len(found) == 1 else f"{slug}-{_slug(setting_label(st))}" if st else slug
        d_sel = c_sel[c_sel["run_id"].isin(done_ids)]
        pr_sel = summarize_runs(c_sel, r_sel)
        part = SettingPart(
            setting=st, slug=pslug, table1=stats.table1(r_sel, c_sel),
            ttests=tests[k],
            snr=stats.snr_table(r_sel, c_sel))
        part.figure3 = figures.delta_mae_boxplot(
            pr_sel[pr_sel["status"] == "done"], fig_dir / f"{pslug}-figure3.png",
            title=f"ΔMAE per model type: {name}{label}")
        part.figure4 = figures.prediction_scatter(
            d_sel, emotions, None, fig_dir / f"{pslug}-figure4.png",
            title=f"True vs predicted, clean (x) and adversarial (o): {name}{label}")
        parts.append(part)
    first = parts[0]
    res = SourceResults(
        name=name, slug=slug, store=store, per_run=per_run, clips=done_clips,
        outputs=list(outputs), units=str((config.get("target_info") or {}).get("units") or (
            # stores written before units were recorded: the paper's layout, ratings / 10
            "ratings divided by 10" if outputs == list(EMOTIONS) else "")),
        table1=first.table1, ttests=first.ttests, snr=first.snr, config=config, meta=meta,
        figure3=first.figure3, figure4=first.figure4, parts=parts,
        curves=stats.robustness_curves(runs, clips, comparisons, alpha=alpha),
    )
    if res.curves:
        res.curve_points = stats.curve_points(per_run)
        res.curve_figure = figures.robustness_curves(
            res.curve_points, fig_dir / f"{slug}-curves.png",
            title=f"Robustness against the attack budget: {name} (mean and 95 % interval "
                  "over seeds)")
    res.media = _collect_media(store, per_run, Path(out_dir), media_clips)
    res.checks = checks_section(store.path, fig_dir, slug)
    return res


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;
color:#222}
table{border-collapse:collapse;margin:.5rem 0 1rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem}
th{background:#f3f3f3}
th.group{background:#e4ecf7}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
img{max-width:100%}
pre{background:#f7f7f7;padding:.5rem;overflow:auto;max-height:30rem}
.caption{font-size:.9em;color:#555}
.media{display:flex;flex-wrap:wrap;gap:1rem}
.media figure{border:1px solid #ddd;padding:.5rem;margin:0}
nav a{margin-right:1rem}
.warning{border:2px solid #c60;background:#fff4e5;padding:.5rem 1rem;margin:1rem 0}
"""


def _media_html(items: Sequence[MediaItem]) -> str:
    if not items:
        return "<p class=\"caption\">No media in this results store.</p>"
    parts = []
    for m in items:
        inner = [f"<figcaption>{esc(m.model_type)} · run {esc(m.run_id)} · clip "
                 f"{esc(m.clip_id)}</figcaption>"]
        if m.clean_src and m.adv_src:
            inner.append(f'<div>clean <audio controls preload="none" src="{esc(m.clean_src)}">'
                         "</audio></div>")
            inner.append(f'<div>adversarial <audio controls preload="none" '
                         f'src="{esc(m.adv_src)}"></audio></div>')
        if m.delta_src:
            inner.append(f'<img alt="perturbation of clip {esc(m.clip_id)}" '
                         f'src="{m.delta_src}">')
        parts.append("<figure>" + "".join(inner) + "</figure>")
    return '<div class="media">' + "\n".join(parts) + "</div>"


def _dump(obj: Any) -> str:
    try:
        return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True)
    except yaml.YAMLError:
        return repr(obj)


def _part_html(p: SettingPart, name: str, alpha: float, h: str = "h3", notes: str = "") -> str:
    """Table 1, Figures 3-4, t-tests and SNR of one setting (one-setting stores: as ever)."""
    s = p.slug
    return f"""
<{h} id="{s}-table1">Table 1: clean and attacked performance (mean ± std over seeds)</{h}>
{tables.table1_html(p.table1)}
{notes}
<{h} id="{s}-figure3">Figure 3: ΔMAE per model type</{h}>
<img alt="Figure 3 for {esc(name)}" src="{_data_uri(p.figure3)}">
<{h} id="{s}-figure4">Figure 4: true annotation vs prediction</{h}>
<img alt="Figure 4 for {esc(name)}" src="{_data_uri(p.figure4)}">
<{h} id="{s}-ttests">Significance: paired t-tests</{h}>
{tables.ttests_html(p.ttests, alpha)}
<{h} id="{s}-snr">Perceptibility: SNR of the perturbations</{h}>
{tables.snr_html(p.snr)}"""


def _curves_html(r: SourceResults, alpha: float) -> str:
    """The robustness-curve section: the figure, the AUC table and its paired tests."""
    s = r.slug
    parts = [f"""
<h3 id="{s}-curves">Robustness curves: ΔMAE and attacked mean r against the budget ε</h3>
<img alt="Robustness curves for {esc(r.name)}" src="{_data_uri(r.curve_figure)}">
<p class="caption">Mean over seeds (line) and 95 % t-interval of the mean (band), per model
type, on a log ε axis. Settings on no curve (an attack without an effective bound, or a lone
budget) are drawn on their own at the right, not on the ε axis.</p>
<details><summary>The numbers behind the curves: ΔMAE and attacked mean r per setting (mean
[95 % interval] over seeds)</summary>
<p class="caption">ΔMAE</p>
{tables.curve_points_html(r.curve_points, "delta_mae")}
<p class="caption">attacked mean r</p>
{tables.curve_points_html(r.curve_points, "adv_mean_r")}
</details>"""]
    for c in r.curves:
        parts.append(f"""
<h4>Area under ΔMAE(ε): {esc(c.label)}</h4>
{tables.auc_html(c)}
<p class="caption">Paired t-tests between model types on the area:</p>
{tables.ttests_html(c.tests, alpha, what="auc")}""")
    return "\n".join(parts)


def _source_html(r: SourceResults, alpha: float) -> str:
    not_done = r.per_run[r.per_run["status"] != "done"]
    not_done = not_done.drop_duplicates(subset=["run_id"])
    notes = ""
    if len(not_done):
        notes = ("<p class=\"caption\">Runs not done (left out of every statistic): "
                 + "; ".join(f"{esc(x.run_id)} ({esc(x.model_type)}, seed {x.seed}): "
                             f"{esc(x.status)} {esc(x.message)}"
                             for x in not_done.itertuples()) + "</p>")
    s = r.slug
    if len(r.parts) == 1:
        body = _part_html(r.parts[0], r.name, alpha, notes=notes)
    else:
        labels = ", ".join(esc(p.label) for p in r.parts)
        body = (f'<p class="caption">Attack settings ({len(r.parts)}): {labels}. Table 1 and '
                "the t-tests are given per setting; the t-tests form one Bonferroni family "
                "over comparisons × settings.</p>\n" + notes
                + (_curves_html(r, alpha) if r.curves else "")
                + "".join(f"""
<section id="{p.slug}">
<h3>Setting: {esc(p.label)}</h3>
{_part_html(p, f"{r.name}, {p.label}", alpha, "h4")}
</section>""" for p in r.parts))
    return f"""
<section id="source-{s}">
<h2>{esc(r.name)}</h2>
<p class="caption">Results store: {esc(r.store.path.resolve())}; {r.per_run["run_id"].nunique()}
runs, {len(r.clips)} clip rows of finished runs. Outputs ({len(r.outputs)}):
{esc(", ".join(r.outputs))}{"; " + esc(r.units) if r.units else ""}.</p>
<h3 id="{s}-outputs">Clean accuracy per output</h3>
{tables.outputs_html(r.per_run, r.outputs, r.units)}
{body}
{r.checks}
<h3 id="{s}-media">Listen: clean and adversarial clips</h3>
<p class="caption">Tables and figures are inside this page; the audio players read the WAV
files in {esc(r.store.media_dir.resolve())} by relative path, so copy that media/ folder along
with the page (keeping their relative places) if you move it.</p>
{_media_html(r.media)}
<details><summary>Every run</summary>
{tables.runs_html(r.per_run)}
</details>
<details><summary>Configuration (config.yaml)</summary><pre>{esc(_dump(r.config))}</pre></details>
<details><summary>Metadata and versions (meta.json)</summary><pre>{esc(_dump(r.meta))}</pre>
</details>
</section>"""


GLOSSARY: tuple[tuple[str, str], ...] = (
    ("y_*, pred_*, adv_*", "target, clean prediction and prediction on the attacked input of "
     "each output, in the data's units (Soundtracks: ratings divided by 10, the 1-9 scale "
     "becomes 0.1-0.9); for a classifier the one-hot label and the class probabilities"),
    ("mae_clean, mae_adv, ΔMAE", "mean absolute error over the outputs of one clip before "
     "and after the attack (same units; a classifier's is 2(1 − p(label))/classes); "
     "ΔMAE = attacked − clean"),
    ("iterations", "update steps the attack took on the clip"),
    ("converged", "the attack passed its final threshold (correlation −1, or the MSE limit)"),
    ("final_threshold", "the stepped threshold the attack was working towards when it stopped "
     "(the final one if converged)"),
    ("last_passed", "the last threshold the attack passed (empty if none): the returned δ is "
     "the one recorded there"),
    ("score", "the stopping metric at the returned δ: per-clip Pearson r between the clip's "
     "predictions and targets (corr rule) or their MSE (mse rule)"),
    ("delta_linf, delta_l2", "L∞ and L2 norm of the returned perturbation δ (standardised "
     "spectrogram units, or audio samples in the waveform domain)"),
    ("snr_db", "signal-to-noise ratio of the perturbation in dB (higher = less audible)"),
    ("clip_id", "the clip's file stem, always text (\"016\" stays \"016\"; read the CSVs with "
     "pandas.read_csv(path, dtype={'clip_id': str}))"),
)
"""Column glossary shown at the foot of every report (also in docs/attacks.md)."""


def _glossary_html() -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in GLOSSARY)
    return (f"<details><summary>Glossary of the columns</summary><table>{rows}</table>"
            f"</details>")


def settings_warnings(sources: Sequence[SourceResults]) -> list[str]:
    """What differs between the attack settings of the stores compared: attacks, domains,
    budgets (each named with its stores); empty when all stores used the same settings."""
    if len(sources) < 2:
        return []
    out = []

    def fmt_eps(e: float) -> str:
        return "no bound" if np.isnan(e) else f"{e:g}"

    def eps_order(e: float) -> tuple[bool, float]:
        return (bool(np.isnan(e)), 0.0 if np.isnan(e) else float(e))

    for i, what, order in ((0, "attacks", str), (1, "domains", str), (2, "budgets", eps_order)):
        text = []
        for r in sources:
            vals = {setting_key(st)[i]: st[i] for st in r.settings}  # NaN-safe de-duplication
            text.append([fmt_eps(v) if i == 2 else str(v) for v in sorted(vals.values(),
                                                                        key=order)])
        if any(x != text[0] for x in text[1:]):
            out.append(f"The stores used different {what}: " + "; ".join(
                f"{r.name}: {', '.join(x) or 'none'}" for r, x in zip(sources, text,
                                                                      strict=True)))
    return out


def _header_settings_html(sources: Sequence[SourceResults]) -> str:
    """In compare mode: every store's settings, and a visible warning when they differ."""
    if len(sources) < 2:
        return ""
    rows = "".join(f"<li>{esc(r.name)}: {esc('; '.join(p.label for p in r.parts))}</li>"
                   for r in sources)
    warn = settings_warnings(sources)
    box = ""
    if warn:
        box = ('<div class="warning" role="alert"><strong>Warning: the stores compared were '
               "attacked differently; their numbers are not directly comparable.</strong><ul>"
               + "".join(f"<li>{esc(w)}</li>" for w in warn) + "</ul></div>")
    return f'{box}<p class="caption">Attack settings per store:</p><ul class="settings">{rows}</ul>'


def render_html(sources: Sequence[SourceResults], alpha: float = 0.05,
                extra: Sequence[str] = ()) -> str:
    """The whole page for one or more analysed sources (the first is the main one), then the
    ``extra`` HTML sections (e.g. L2I). With no source, only the extra sections."""
    if not sources and not extra:
        raise ConfigError("no results store to report")
    nav = " ".join(f'<a href="#source-{r.slug}">{esc(r.name)}</a>' for r in sources)
    compare = ""
    if len(sources) > 1:
        multi = any(len(r.parts) > 1 for r in sources)

        def key(r: SourceResults, p: SettingPart) -> str:
            return f"{r.name} · {p.label}" if multi else r.name

        parts = [(r, p) for r in sources for p in r.parts]
        compare = f"""
<section id="side-by-side">
<h2>Side by side</h2>
<h3>Table 1</h3>
{tables.table1_side_by_side_html({key(r, p): p.table1 for r, p in parts})}
<h3>Paired t-tests (adversarial MAE)</h3>
{tables.ttests_side_by_side_html({key(r, p): p.ttests for r, p in parts})}
<h3>Perceptibility</h3>
{tables.snr_side_by_side_html({key(r, p): p.snr for r, p in parts})}
</section>"""
        nav = '<a href="#side-by-side">side by side</a> ' + nav
    body = "\n".join([*(_source_html(r, alpha) for r in sources), *extra])
    title = sources[0].name if sources else "L2I"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>robustmer report: {esc(title)}</title>
<link rel="icon" href="data:,">
<style>{_CSS}</style>
</head>
<body>
<h1>robustmer report</h1>
<p class="caption">Robustness of music emotion recognition models: clean and attacked
performance, statistics and listening examples, computed from the results store(s) alone
(clips.csv + runs.csv). See docs/report.md for how each number is computed.</p>
{_header_settings_html(sources)}
<nav>{nav}</nav>
{compare}
{body}
<footer>
{_glossary_html()}
<details><summary>Report generated with</summary><pre>{esc(_dump(versions()))}</pre></details>
</footer>
</body>
</html>
"""


def build_report(
    results_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    compare: Sequence[str | os.PathLike[str]] = (),
    *,
    emotions: Sequence[str] | None = None,
    comparisons: Sequence[tuple[str, str]] | None = None,
    alpha: float = 0.05,
    media_clips: int = 2,
    l2i: Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """Write the HTML report of ``results_dir`` (and of each ``compare`` store side by side) to
    ``out`` (default ``results_dir/report.html``) atomically; figures also go to
    ``report-figures/`` beside it. Returns the page's path."""
    out_path = Path(out) if out is not None else Path(results_dir) / REPORT_FILE
    if out_path.exists() and out_path.is_dir():
        raise ConfigError(f"--out {out_path}: is a folder, expected a file name")
    out_dir = out_path.parent
    taken: set[str] = set()
    # L2I sections: the --l2i run folders, and results_dir itself when it is a run folder
    # with l2i/ results rather than a results store.
    main_is_l2i_only = (not (Path(results_dir) / "clips.csv").is_file()
                        and find_l2i(results_dir) is not None)
    l2i_dirs = [find_l2i(p) for p in ([results_dir] if main_is_l2i_only else []) + list(l2i)]
    if any(x is None for x in l2i_dirs):
        raise ConfigError(f"--l2i: no L2I results (l2i/fidelity.csv or l2i/explain/) in {l2i}")
    extra = [l2i_section_html(x, out_dir) for x in l2i_dirs if x is not None]
    stores = ([] if main_is_l2i_only else [results_dir]) + list(compare)
    sources = [analyse_store(p, out_dir, emotions=emotions, comparisons=comparisons,
                             alpha=alpha, media_clips=media_clips, taken=taken)
               for p in stores]
    write_text(out_path, render_html(sources, alpha, extra))
    return out_path
