"""The report's tables as HTML fragments (Table 1, t-tests, perceptibility, runs), for one
results source or several side by side (one column group per source).

Hand-written rather than ``DataFrame.to_html`` because the tables need column groups spanning
sources and ``mean ± std`` cells; every value from the data is HTML-escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from robustmer.evaluate.stats import TABLE1_METRICS, Comparison, Curve
from robustmer.evaluate.store import order_model_types, setting_label, settings

TABLE1_LABELS: dict[str, str] = {
    "clean_mean_r": "clean mean r",
    "clean_mae": "clean MAE",
    "adv_mae": "attacked MAE",
    "delta_mae": "ΔMAE",
}


def esc(value: object) -> str:
    """HTML-escape any value."""
    return html.escape(str(value), quote=True)


def fmt(x: object, digits: int = 3) -> str:
    """A number with ``digits`` decimals; ``–`` for NaN / None."""
    if x is None:
        return "–"
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return esc(x)
    if math.isnan(v):
        return "–"
    return f"{v:.{digits}f}"


def fmt_p(p: float) -> str:
    """A p-value: 3 significant digits, scientific below 0.001."""
    if p is None or not math.isfinite(p):
        return "–"
    return f"{p:.3g}" if p >= 1e-3 else f"{p:.2e}"


def mean_std(mean: float, std: float, digits: int = 3) -> str:
    """``mean ± std`` (std omitted when undefined, e.g. a single seed)."""
    if mean is None or not math.isfinite(float(mean)):
        return "–"
    if std is None or not math.isfinite(float(std)):
        return fmt(mean, digits)
    return f"{fmt(mean, digits)} ± {fmt(std, digits)}"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], css: str = "") -> str:
    """Assemble a table from already-escaped header rows (``<tr>...</tr>``) and cell rows."""
    body = "\n".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    cls = f' class="{esc(css)}"' if css else ""
    return f"<table{cls}>\n<thead>\n{''.join(head)}\n</thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _td(text: str, numeric: bool = True) -> str:
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


def table1_html(t1: pd.DataFrame) -> str:
    """Table 1 of one source: runs, and mean ± std over seeds of each ``TABLE1_METRICS``."""
    head = ["<tr><th>model type</th><th>runs</th>"
            + "".join(f"<th>{esc(TABLE1_LABELS[m])}</th>" for m in TABLE1_METRICS) + "</tr>"]
    rows = []
    for rec in t1.to_dict("records"):
        n = f"{rec['n_runs']}" + (f" (+{rec['n_not_done']} not done)" if rec["n_not_done"]
                                  else "")
        rows.append([_td(esc(rec["model_type"]), False), _td(esc(n))]
                    + [_td(mean_std(rec[f"{m}_mean"], rec[f"{m}_std"])) for m in TABLE1_METRICS])
    return _table(head, rows, "table1")


def table1_side_by_side_html(tables: Mapping[str, pd.DataFrame]) -> str:
    """Table 1 of several sources: one column group per source, rows = union of model types."""
    names = list(tables)
    types = order_model_types(t for df in tables.values() for t in df["model_type"])
    ncol = len(TABLE1_METRICS) + 1
    head = [
        "<tr><th rowspan=\"2\">model type</th>"
        + "".join(f'<th colspan="{ncol}" class="group">{esc(n)}</th>' for n in names) + "</tr>",
        "<tr>" + "".join("<th>runs</th>" + "".join(f"<th>{esc(TABLE1_LABELS[m])}</th>"
                                                     for m in TABLE1_METRICS)
                         for _ in names) + "</tr>",
    ]
    rows = []
    for t in types:
        cells = [_td(esc(t), False)]
        for n in names:
            sel = tables[n][tables[n]["model_type"] == t]
            if len(sel) == 0:
                cells += [_td("–")] * ncol
                continue
            rec = sel.iloc[0]
            cells.append(_td(esc(rec["n_runs"])))
            cells += [_td(mean_std(rec[f"{m}_mean"], rec[f"{m}_std"])) for m in TABLE1_METRICS]
        rows.append(cells)
    return _table(head, rows, "table1 compare")


def _ttest_cells(c: Comparison) -> list[str]:
    if c.skipped:
        return [_td("–")] * 6
    return [_td(esc(c.n)), _td(esc(c.formatted)), _td(fmt_p(c.p)), _td(fmt(c.d_z, 2)),
            _td(f"{fmt(c.mean_a)} vs {fmt(c.mean_b)}"),
            _td("significant" if c.significant else "not significant", False)]


_TTEST_HEAD = ("pairs", "t(df)", "p", "Cohen's d_z", "mean MAE_adv (a vs b)",
               "Bonferroni decision")


_TESTED = {
    "adv": ("mean MAE_adv (a vs b)", "per-clip adversarial MAE"),
    "auc": ("mean area (a vs b)", "the per-clip area under ΔMAE(ε) (log10 ε)"),
}


def ttests_html(comparisons: Sequence[Comparison], alpha: float = 0.05, what: str = "adv"
                ) -> str:
    """The paired t-tests of one source, with the Bonferroni level and any skip notes;
    ``what`` is ``adv`` (per-clip adversarial MAE) or ``auc`` (per-clip area under ΔMAE(ε))."""
    column, tested = _TESTED[what]
    heads = (*_TTEST_HEAD[:4], column, _TTEST_HEAD[5])
    head = ["<tr><th>comparison</th>" + "".join(f"<th>{esc(h)}</th>" for h in heads)
            + "<th>note</th></tr>"]
    rows = [[_td(f"{esc(c.a)} vs {esc(c.b)}", False), *_ttest_cells(c), _td(esc(c.note), False)]
            for c in comparisons]
    ran = [c for c in comparisons if not c.skipped]
    level = ran[0].alpha_corrected if ran else float("nan")
    m = round(alpha / level) if ran and level > 0 else 0
    family = "" if m == len(ran) else f" (m = {m}: every test of the family, over all settings)"
    caption = (f"<p class=\"caption\">Two-sided paired t-tests (scipy.stats.ttest_rel) of "
               f"{tested} pooled over seeds, paired by (seed, clip). "
               f"Bonferroni: α = {fmt(alpha, 2)} / {m} = {fmt(level, 4)}{family}.</p>"
               if ran else "<p class=\"caption\">No comparison could be run.</p>")
    return _table(head, rows, "ttests") + "\n" + caption


def curve_points_html(points: pd.DataFrame, metric: str = "delta_mae") -> str:
    """The numbers behind the curve figure: per model type (rows) and setting (columns), the
    mean over seeds of ``metric`` with its 95 % interval."""
    found = settings(points)
    types = order_model_types(points["model_type"]) if len(points) else []
    head = ["<tr><th>model type</th>" + "".join(f"<th>{esc(setting_label(st))}</th>"
                                                for st in found) + "</tr>"]
    rows = []
    for t in types:
        cells = [_td(esc(t), False)]
        for st in found:
            e = points["eps"].to_numpy(float)
            same = (np.isnan(e) if math.isnan(st[2]) else np.isclose(e, st[2], rtol=1e-12,
                                                                      atol=0.0))
            sel = points[(points["model_type"] == t) & (points["attack"] == st[0])
                         & (points["domain"] == st[1]) & same]
            if len(sel) == 0:
                cells.append(_td("–"))
                continue
            r = sel.iloc[0]
            ci = (f" [{fmt(r[f'{metric}_lo'])}, {fmt(r[f'{metric}_hi'])}]"
                  if math.isfinite(r[f"{metric}_lo"]) else "")
            cells.append(_td(f"{fmt(r[f'{metric}_mean'])}{ci}"))
        rows.append(cells)
    return _table(head, rows, "curve-points")


def auc_html(curve: Curve) -> str:
    """Per model type: the area under ΔMAE(ε) over the curve's budgets, mean ± std over seeds
    with its 95 % interval, and the log-ε average ΔMAE (area / decades)."""
    head = ["<tr><th>model type</th><th>runs</th><th>area under ΔMAE(ε)</th>"
            "<th>95 % interval</th><th>mean ΔMAE over log ε</th></tr>"]
    rows = []
    for rec in curve.table.to_dict("records"):
        n = f"{rec['n_runs']}" + (f" (+{rec['n_left_out']} left out)" if rec["n_left_out"]
                                  else "")
        ci = (f"{fmt(rec['auc_lo'], 4)} to {fmt(rec['auc_hi'], 4)}"
              if math.isfinite(rec["auc_lo"]) else "–")
        rows.append([_td(esc(rec["model_type"]), False), _td(esc(n)),
                     _td(mean_std(rec["auc_mean"], rec["auc_std"], 4)), _td(ci),
                     _td(fmt(rec["mean_delta_mae"], 4))])
    notes = [f"{r.run_id}: {r.note}" for r in curve.run_auc.itertuples() if r.note]
    caption = (f"<p class=\"caption\">Area by the trapezoid rule over log10 ε between "
               f"ε = {curve.budgets[0]:g} and {curve.budgets[-1]:g} "
               f"({fmt(curve.decades, 2)} decades; budgets "
               f"{', '.join(f'{e:g}' for e in curve.budgets)}), one area per run (seed); "
               "mean ± std (ddof = 1) and t-interval over seeds. Mean ΔMAE over log ε = area / "
               "decades." + (f" Left out: {esc('; '.join(notes))}." if notes else "") + "</p>")
    return _table(head, rows, "auc") + "\n" + caption


def ttests_side_by_side_html(results: Mapping[str, Sequence[Comparison]]) -> str:
    """t-tests of several sources: one column group (t(df), p, d_z, decision) per source."""
    names = list(results)
    keys = list(dict.fromkeys((c.a, c.b) for cs in results.values() for c in cs))
    sub = ("t(df)", "p", "d_z", "decision")
    head = [
        "<tr><th rowspan=\"2\">comparison</th>"
        + "".join(f'<th colspan="{len(sub)}" class="group">{esc(n)}</th>' for n in names)
        + "</tr>",
        "<tr>" + "".join(f"<th>{esc(s)}</th>" for _ in names for s in sub) + "</tr>",
    ]
    rows = []
    for a, b in keys:
        cells = [_td(f"{esc(a)} vs {esc(b)}", False)]
        for n in names:
            c = next((c for c in results[n] if (c.a, c.b) == (a, b)), None)
            if c is None or c.skipped:
                cells += [_td("–")] * len(sub)
            else:
                cells += [_td(esc(c.formatted)), _td(fmt_p(c.p)), _td(fmt(c.d_z, 2)),
                          _td("sig." if c.significant else "n.s.", False)]
        rows.append(cells)
    return _table(head, rows, "ttests compare")


def snr_html(snr: pd.DataFrame) -> str:
    """Perceptibility per model type: mean SNR (± std over seeds), norms, iterations."""
    head = ["<tr><th>model type</th><th>runs</th><th>clips</th><th>SNR (dB)</th>"
            "<th>mean ‖δ‖₂</th><th>mean ‖δ‖∞</th><th>mean iterations</th>"
            "<th>converged</th></tr>"]
    rows = []
    for rec in snr.to_dict("records"):
        rows.append([_td(esc(rec["model_type"]), False), _td(esc(rec["n_runs"])),
                     _td(esc(rec["n_clips"])),
                     _td(mean_std(rec["snr_db_mean"], rec["snr_db_std"], 2)),
                     _td(fmt(rec["delta_l2_mean"], 4)), _td(fmt(rec["delta_linf_mean"], 5)),
                     _td(fmt(rec["iterations_mean"], 1)),
                     _td(f"{100 * rec['converged_frac']:.0f} %")])
    return _table(head, rows, "snr")


def snr_side_by_side_html(tables: Mapping[str, pd.DataFrame]) -> str:
    """Mean SNR (dB) per model type, one column per source."""
    names = list(tables)
    types = order_model_types(t for df in tables.values() for t in df["model_type"])
    head = ["<tr><th>model type</th>" + "".join(f"<th>{esc(n)}: SNR (dB)</th>" for n in names)
            + "</tr>"]
    rows = []
    for t in types:
        cells = [_td(esc(t), False)]
        for n in names:
            sel = tables[n][tables[n]["model_type"] == t]
            cells.append(_td(mean_std(sel["snr_db_mean"].iloc[0], sel["snr_db_std"].iloc[0], 2)
                             if len(sel) else "–"))
        rows.append(cells)
    return _table(head, rows, "snr compare")


def runs_html(per_run: pd.DataFrame) -> str:
    """Every run (and attack setting, when a store has several) with its status, message and
    recomputed clean / attacked metrics, and the test concept r of a concept-trained bottleneck
    (``–`` for other models)."""
    multi = len(settings(per_run)) > 1
    head = ["<tr><th>run</th><th>model type</th><th>seed</th>"
            + ("<th>attack setting</th>" if multi else "") + "<th>status</th><th>clean r</th>"
            "<th>clean MAE</th><th>attacked MAE</th><th>ΔMAE</th><th>SNR (dB)</th>"
            "<th>concept r</th><th>message</th></tr>"]
    rows = []
    for rec in per_run.to_dict("records"):
        named = str(rec.get("attack", "") or "").strip() not in ("", "nan")
        st = ([_td(esc(setting_label((rec["attack"], rec["domain"], rec["eps"]))
                       if named else "–"), False)] if multi else [])
        rows.append([_td(esc(rec["run_id"]), False), _td(esc(rec["model_type"]), False),
                     _td(esc(rec["seed"])), *st, _td(esc(rec["status"]), False),
                     _td(fmt(rec["clean_mean_r"])), _td(fmt(rec["clean_mae"])),
                     _td(fmt(rec["adv_mae"])), _td(fmt(rec["delta_mae"])),
                     _td(fmt(rec["mean_snr_db"], 2)),
                     _td(fmt(rec.get("clean_concept_mean_r"))), _td(esc(rec["message"]), False)])
    return _table(head, rows, "runs")


def outputs_html(per_run: pd.DataFrame, outputs: Sequence[str], units: str = "") -> str:
    """Clean test Pearson r per output (the data's targets, named as in the data), per model
    type: mean ± s.d. over its done runs, N runs. An output whose r is undefined in a run (a
    constant target or prediction) is counted apart, not averaged in."""
    done = per_run[per_run["status"] == "done"].drop_duplicates(subset=["run_id"])
    head = ["<tr><th>model type</th><th>runs (N)</th>"
            + "".join(f"<th>r {esc(o)}</th>" for o in outputs) + "</tr>"]
    rows = []
    for t in order_model_types(done["model_type"]):
        sel = done[done["model_type"] == t]
        cells = [_td(esc(t), False), _td(str(len(sel)))]
        for o in outputs:
            vals = sel[f"r_{o}"].to_numpy(dtype=float) if f"r_{o}" in sel else np.array([])
            ok = vals[np.isfinite(vals)]
            text = mean_std(float(ok.mean()), float(ok.std(ddof=1)) if len(ok) > 1
                            else float("nan")) if len(ok) else "undefined"
            if 0 < len(ok) < len(vals):
                text += f" ({len(vals) - len(ok)} undefined)"
            cells.append(_td(text))
        rows.append(cells)
    caption = (f'<p class="caption">Clean test Pearson r per output, mean ± s.d. over runs'
               f'{"; targets " + esc(units) if units else ""}.</p>')
    return caption + _table(head, rows, "outputs")
