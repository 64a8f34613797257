"""The HTML report of one or more results stores (figures embedded; audio beside it in media/).

Reads the results store(s) only (never study/ or train/): ``report.analysis`` recomputes the
tables and statistics from ``clips.csv`` + ``runs.csv`` and draws the figures (also saved as PNG
beside the page); this module lays them out as one page, figures embedded as base64 PNG data
URIs, audio players referencing ``media/`` by relative path so the page opens from disk without
a server.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robustmer.errors import ConfigError
from robustmer.evaluate.attack_settings import setting_key
from robustmer.evaluate.clip_stats import INTERVAL_SHORT
from robustmer.evaluate.resampling import DEFAULT_N_BOOT
from robustmer.io import versions, write_text
from robustmer.report import family_tables, figures, tables
from robustmer.report.analysis import MediaItem, SettingPart, SourceResults, analyse_store
from robustmer.report.l2i import find_l2i, l2i_section_html
from robustmer.report.page import CSS, REPORT_FILE, data_uri, dump
from robustmer.report.study_xeval import explainer_eval_section
from robustmer.report.tables import esc

_PICK_JS = """
document.querySelectorAll('select[data-pick]').forEach(function (s) {
  function show() {
    document.querySelectorAll('#' + s.dataset.pick + ' > figure[data-output]').forEach(
      function (f) { f.hidden = f.dataset.output !== s.value; });
  }
  s.addEventListener('change', show);
  show();
});
"""
"""Switches Figure 4 between outputs: one ``<figure data-output>`` per output, the one named by
the ``<select data-pick>`` shown. Without JavaScript every figure shows, one under another."""


def _media_html(items: Sequence[MediaItem], setting: str = "") -> str:
    if not items:
        return "<p class=\"caption\">No media in this results store.</p>"
    where = (f"adversarial audio from the attack setting {setting}" if setting else
             "attack setting of the adversarial audio not recorded in config.yaml")
    parts = []
    for m in items:
        inner = [f"<figcaption>{esc(m.model_type)} · run {esc(m.run_id)} · clip "
                 f"{esc(m.clip_id)}</figcaption>"]
        if m.clean_src and m.adv_src:
            inner.append(f'<div><span>clean</span><audio controls preload="metadata" '
                         f'src="{esc(m.clean_src)}"></audio></div>')
            inner.append(f'<div><span>adversarial, {esc(setting or "setting not recorded")}'
                         f'</span><audio controls preload="metadata" src="{esc(m.adv_src)}">'
                         "</audio></div>")
        if m.delta_src:
            inner.append(f'<img alt="perturbation δ of clip {esc(m.clip_id)} ({esc(m.model_type)}'
                         f', run {esc(m.run_id)}; {esc(where)})" src="{m.delta_src}">')
        parts.append("<figure>" + "".join(inner) + "</figure>")
    return '<div class="media">' + "\n".join(parts) + "</div>"


def _flat(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts as ``(a.b, value)`` rows."""
    if isinstance(obj, dict):
        return [row for k, v in obj.items() for row in _flat(v, f"{prefix}{k}.")]
    return [(prefix.rstrip("."), str(obj))]


def info_table(obj: dict[str, Any], what: str) -> str:
    """A small two-column table (name, value) of a (nested) dict, e.g. the versions the report
    ran with, instead of a dict dump."""
    rows = _flat(obj)
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return (f'<table class="info"><caption>{esc(what)} (N = {len(rows)} entries)</caption>'
            f"<tbody>{body}</tbody></table>")


def _alt(what: str, png: bytes) -> str:
    """``what: <the figure's own description>`` (``figures.alt_text``) for ``<img alt>``."""
    own = figures.alt_text(png, "")
    return f"{what}: {own}" if own else what


def _default_output(outputs: Sequence[str]) -> str:
    paper = [o for o in figures.FIG4_EMOTIONS if o in outputs]
    return paper[0] if paper else outputs[0]


def _figure4_html(p: SettingPart, name: str) -> str:
    """Figure 4: one figure per output (every model type in each), a ``<select>`` to pick."""
    if not p.figure4:
        return '<p class="caption">Figure 4: no outputs to show.</p>'
    outs = list(p.figure4)
    chosen = _default_output(outs)
    target = f"{p.slug}-fig4"
    options = "".join(f'<option value="{esc(o)}"{" selected" if o == chosen else ""}>{esc(o)}'
                      "</option>" for o in outs)
    figs = "\n".join(
        f'<figure data-output="{esc(o)}"><img alt="{esc(_alt(f"Figure 4 for {name}, {o}", png))}"'
        f' src="{data_uri(png)}"></figure>' for o, png in p.figure4.items())
    return (f'<div class="pick"><label>output: <select data-pick="{esc(target)}">{options}'
            f"</select></label> ({len(outs)} outputs; every model type in each figure)"
            f'<div id="{esc(target)}">\n{figs}\n</div></div>')


def _part_html(p: SettingPart, name: str, h: str = "h3", notes: str = "",
               family_link: str = "") -> str:
    """Table 1, Figures 3-4 and SNR with its clip accounting of one setting."""
    s = p.slug
    attack = p.setting[0] if p.setting is not None else ""
    n_tests = sum(not t.skipped for t in p.tests)
    link = (f'<p class="caption">The planned comparisons at this setting ({n_tests} tests) are '
            f'in the family table: <a href="#{family_link}">planned comparisons</a>.</p>'
            if family_link else "")
    return f"""
<{h} id="{s}-table1">Table 1: clean and attacked performance (mean over seeds, 95 % interval,
N)</{h}>
{tables.table1_html(p.table1)}
{notes}
{link}
<{h} id="{s}-figure3">Figure 3: ΔMAE per model type</{h}>
<img alt="{esc(_alt("Figure 3 for " + name, p.figure3))}" src="{data_uri(p.figure3)}">
<{h} id="{s}-figure4">Figure 4: true annotation vs prediction</{h}>
{_figure4_html(p, name)}
<{h} id="{s}-snr">Perceptibility: SNR of the perturbations</{h}>
{tables.snr_html(p.snr)}
{tables.accounting_html(p.snr, p.zero, attack)}"""


def _curves_html(r: SourceResults) -> str:
    """The robustness-curve section: the figure, its numbers and the area table."""
    s = r.slug
    alt = esc(_alt("Robustness curves for " + r.name, r.curve_figure))
    parts = [f"""
<h3 id="{s}-curves">Robustness curves: ΔMAE and attacked mean r against the budget ε</h3>
<img alt="{alt}" src="{data_uri(r.curve_figure)}">
<p class="caption">Mean over seeds and its 95 % interval ({esc(INTERVAL_SHORT)}; for the
attacked mean r the correlation is recomputed in every replicate, so the interval stays inside
[−1, 1]), per model type, on a log ε axis: a line and band over 3 or more budgets, points with
error bars over fewer. Settings on no curve (an attack without an effective bound, or a lone
budget) are drawn on their own at the right, not on the ε axis.</p>
<details><summary>The numbers behind the curves: ΔMAE and attacked mean r per setting (mean
[95 % interval], N)</summary>
<p class="caption">ΔMAE</p>
{tables.curve_points_html(r.curve_points, "delta_mae")}
<p class="caption">attacked mean r</p>
{tables.curve_points_html(r.curve_points, "adv_mean_r")}
</details>"""]
    for c in r.curves:
        parts.append(f"""
<h4>Area under ΔMAE(ε): {esc(c.label)}</h4>
{tables.auc_html(c)}
<p class="caption">The paired tests on the area are in the family table.</p>""")
    return "\n".join(parts)


def _statement_html(r: SourceResults) -> str:
    """How to read the section's numbers, stated once: the intervals and the family."""
    return f"""
<h3 id="{r.slug}-statistics">Statistics: how to read the numbers</h3>
<div class="statement" id="{r.slug}-statement">
<p><strong>Intervals.</strong> {esc(tables.intervals_statement(r.family.n_boot))}</p>
<p><strong>Tests.</strong> {esc(r.family.statement())}</p>
<p><strong>Clips.</strong> Only runs whose status is done count; the others are listed below.
Every clip of a done run is in Table 1 and the tests; a clip left out of a statistic (δ = 0
gives an infinite SNR; a non-finite value; a clip without a partner in a pair) is counted beside
that statistic with the reason.</p>
</div>"""


def _family_html(r: SourceResults) -> str:
    return f"""
<h3 id="{r.slug}-family">Significance: the planned comparisons (one family)</h3>
{family_tables.family_html(r.family)}"""


def _source_html(r: SourceResults) -> str:
    not_done = r.per_run[r.per_run["status"] != "done"]
    not_done = not_done.drop_duplicates(subset=["run_id"])
    notes = ""
    if len(not_done):
        notes = ("<p class=\"caption\">Runs not done (left out of every statistic): "
                 + "; ".join(f"{esc(x.run_id)} ({esc(x.model_type)}, seed {x.seed}): "
                             f"{esc(x.status)} {esc(x.message)}"
                             for x in not_done.itertuples()) + "</p>")
    s = r.slug
    family = f"{s}-family"
    if len(r.parts) == 1:
        body = (_statement_html(r) + notes + _family_html(r)
                + _part_html(r.parts[0], r.name))
    else:
        labels = ", ".join(esc(p.label) for p in r.parts)
        body = (f'<p class="caption">Attack settings ({len(r.parts)}): {labels}. Table 1, '
                "Figures 3-4 and the SNR table are given per setting; the tests form one family "
                "over every setting and curve.</p>\n" + _statement_html(r) + notes
                + (_curves_html(r) if r.curves else "") + _family_html(r)
                + "".join(f"""
<section id="{p.slug}">
<h3>Setting: {esc(p.label)}</h3>
{_part_html(p, f"{r.name}, {p.label}", "h4", family_link=family)}
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
with the page (keeping their relative places) if you move it. The adversarial examples come
from {esc(r.media_setting or "an attack setting the store does not record")}.</p>
{_media_html(r.media, r.media_setting)}
<details><summary>Every run</summary>
{tables.runs_html(r.per_run)}
</details>
<details><summary>Configuration (config.yaml)</summary><pre>{esc(dump(r.config))}</pre></details>
<details><summary>Metadata and versions (meta.json)</summary><pre>{esc(dump(r.meta))}</pre>
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
    ("converged", "the attack passed its stopping rule's final threshold (correlation −1, or "
     "the MSE limit) before its iterations ran out; a budget-limited attack rarely does, so 0 % "
     "under a small ε is expected"),
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
    return (f"<details><summary>Glossary of the columns</summary><table class=\"info\">"
            f"<caption>clips.csv columns (N = {len(GLOSSARY)} entries)</caption><tbody>{rows}"
            f"</tbody></table></details>")


def settings_warnings(sources: Sequence[SourceResults]) -> list[str]:
    """What differs between the attack settings of the stores compared: attacks, domains,
    budgets (each named with its stores); empty when all stores used the same settings."""
    if len(sources) < 2:
        return []
    out = []

    def fmt_eps(e: Any) -> str:
        return "no bound" if np.isnan(e) else f"{e:g}"

    def eps_order(e: Any) -> tuple[bool, float]:
        return (bool(np.isnan(e)), 0.0 if np.isnan(e) else float(e))

    orders: tuple[tuple[int, str, Callable[[Any], Any]], ...] = (
        (0, "attacks", str), (1, "domains", str), (2, "budgets", eps_order))
    for i, what, order in orders:
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
<h3>Planned comparisons (each store's own family)</h3>
{family_tables.family_side_by_side_html({r.name: r.family for r in sources})}
<h3>Perceptibility</h3>
{tables.snr_side_by_side_html({key(r, p): p.snr for r, p in parts})}
</section>"""
        nav = '<a href="#side-by-side">side by side</a> ' + nav
    body = "\n".join([*(_source_html(r) for r in sources), *extra])
    title = sources[0].name if sources else "L2I"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>robustmer report: {esc(title)}</title>
<link rel="icon" href="data:,">
<style>{CSS}</style>
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
<details><summary>Report generated with</summary>
{info_table(versions(), "Versions the report ran with")}</details>
</footer>
<script>{_PICK_JS}</script>
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
    n_boot: int = DEFAULT_N_BOOT,
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
    if not main_is_l2i_only:  # the study's explainer_eval: block, when it ran
        extra += [s for s in [explainer_eval_section(results_dir, out_dir)] if s]
    stores = ([] if main_is_l2i_only else [results_dir]) + list(compare)
    sources = [analyse_store(p, out_dir, emotions=emotions, comparisons=comparisons,
                             alpha=alpha, media_clips=media_clips, taken=taken, n_boot=n_boot)
               for p in stores]
    write_text(out_path, render_html(sources, alpha, extra))
    return out_path
