"""The self-contained HTML report of one or more results stores.

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
from robustmer.evaluate.store import ResultsStore, order_model_types
from robustmer.evaluate.summary import summarize_runs
from robustmer.io import versions, write_text
from robustmer.report import figures, tables
from robustmer.report.checks import checks_section
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
class SourceResults:
    """Everything the report shows for one results store."""

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
        for run_id in runs.sort_values(["seed", "run_id"])["run_id"]:
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
    emotions: Sequence[str] = figures.FIG4_EMOTIONS,
    comparisons: Sequence[tuple[str, str]] = stats.DEFAULT_COMPARISONS,
    alpha: float = 0.05,
    media_clips: int = 2,
    taken: set[str] | None = None,
) -> SourceResults:
    """Read one results store and compute every table, test and figure of its report section."""
    store = ResultsStore(path)
    if not store.path.is_dir():
        raise ConfigError(f"RESULTS_DIR {store.path}: not a folder")
    runs = store.read_runs()
    clips = store.read_clips()
    for e in emotions:
        if e not in EMOTIONS:
            raise ConfigError(f"--emotion {e!r}: expected one of {', '.join(EMOTIONS)}")
    config, meta = store.read_config(), store.read_meta()
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
    res = SourceResults(
        name=name, slug=slug, store=store, per_run=per_run, clips=done_clips,
        table1=stats.table1(runs, clips),
        ttests=stats.compare_model_types(clips, comparisons, alpha=alpha, runs=runs),
        snr=stats.snr_table(runs, clips), config=config, meta=meta,
    )
    fig_dir = Path(out_dir) / FIGURES_DIR
    res.figure3 = figures.delta_mae_boxplot(
        per_run[per_run["status"] == "done"], fig_dir / f"{slug}-figure3.png",
        title=f"ΔMAE per model type: {name}")
    res.figure4 = figures.prediction_scatter(
        done_clips, emotions, figures.FIG4_MODEL_TYPES, fig_dir / f"{slug}-figure4.png",
        title=f"True vs predicted, clean (x) and adversarial (o): {name}")
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


def _source_html(r: SourceResults, alpha: float) -> str:
    not_done = r.per_run[r.per_run["status"] != "done"]
    notes = ""
    if len(not_done):
        notes = ("<p class=\"caption\">Runs not done (left out of every statistic): "
                 + "; ".join(f"{esc(x.run_id)} ({esc(x.model_type)}, seed {x.seed}): "
                             f"{esc(x.status)} {esc(x.message)}"
                             for x in not_done.itertuples()) + "</p>")
    s = r.slug
    return f"""
<section id="source-{s}">
<h2>{esc(r.name)}</h2>
<p class="caption">Results store: {esc(r.store.path.resolve())}; {len(r.per_run)} runs,
{len(r.clips)} clip rows of finished runs.</p>
<h3 id="{s}-table1">Table 1: clean and attacked performance (mean ± std over seeds)</h3>
{tables.table1_html(r.table1)}
{notes}
<h3 id="{s}-figure3">Figure 3: ΔMAE per model type</h3>
<img alt="Figure 3 for {esc(r.name)}" src="{_data_uri(r.figure3)}">
<h3 id="{s}-figure4">Figure 4: true annotation vs prediction</h3>
<img alt="Figure 4 for {esc(r.name)}" src="{_data_uri(r.figure4)}">
<h3 id="{s}-ttests">Significance: paired t-tests</h3>
{tables.ttests_html(r.ttests, alpha)}
<h3 id="{s}-snr">Perceptibility: SNR of the perturbations</h3>
{tables.snr_html(r.snr)}
{r.checks}
<h3 id="{s}-media">Listen: clean and adversarial clips</h3>
{_media_html(r.media)}
<details><summary>Every run</summary>
{tables.runs_html(r.per_run)}
</details>
<details><summary>Configuration (config.yaml)</summary><pre>{esc(_dump(r.config))}</pre></details>
<details><summary>Metadata and versions (meta.json)</summary><pre>{esc(_dump(r.meta))}</pre>
</details>
</section>"""


def render_html(sources: Sequence[SourceResults], alpha: float = 0.05) -> str:
    """The whole page for one or more analysed sources (the first is the main one)."""
    if not sources:
        raise ConfigError("no results store to report")
    nav = " ".join(f'<a href="#source-{r.slug}">{esc(r.name)}</a>' for r in sources)
    compare = ""
    if len(sources) > 1:
        compare = f"""
<section id="side-by-side">
<h2>Side by side</h2>
<h3>Table 1</h3>
{tables.table1_side_by_side_html({r.name: r.table1 for r in sources})}
<h3>Paired t-tests (adversarial MAE)</h3>
{tables.ttests_side_by_side_html({r.name: r.ttests for r in sources})}
<h3>Perceptibility</h3>
{tables.snr_side_by_side_html({r.name: r.snr for r in sources})}
</section>"""
        nav = '<a href="#side-by-side">side by side</a> ' + nav
    body = "\n".join(_source_html(r, alpha) for r in sources)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>robustmer report: {esc(sources[0].name)}</title>
<link rel="icon" href="data:,">
<style>{_CSS}</style>
</head>
<body>
<h1>robustmer report</h1>
<p class="caption">Robustness of music emotion recognition models: clean and attacked
performance, statistics and listening examples, computed from the results store(s) alone
(clips.csv + runs.csv). See docs/report.md for how each number is computed.</p>
<nav>{nav}</nav>
{compare}
{body}
<footer>
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
    emotions: Sequence[str] = figures.FIG4_EMOTIONS,
    comparisons: Sequence[tuple[str, str]] = stats.DEFAULT_COMPARISONS,
    alpha: float = 0.05,
    media_clips: int = 2,
) -> Path:
    """Write the HTML report of ``results_dir`` (and of each ``compare`` store side by side) to
    ``out`` (default ``results_dir/report.html``) atomically; figures also go to
    ``report-figures/`` beside it. Returns the page's path."""
    out_path = Path(out) if out is not None else Path(results_dir) / REPORT_FILE
    if out_path.exists() and out_path.is_dir():
        raise ConfigError(f"--out {out_path}: is a folder, expected a file name")
    out_dir = out_path.parent
    taken: set[str] = set()
    sources = [analyse_store(p, out_dir, emotions=emotions, comparisons=comparisons,
                             alpha=alpha, media_clips=media_clips, taken=taken)
               for p in (results_dir, *compare)]
    write_text(out_path, render_html(sources, alpha))
    return out_path
