"""The report's tables as HTML fragments (Table 1, perceptibility with its clip accounting, the
curves' numbers and areas, runs, outputs), for one results source or several side by side (one
column group per source), and the cell helpers every page's tables are built with (``esc``,
``fmt``, ``fmt_p``, ``ci_span``, ``td``, ``table``). The family table is ``report.family_tables``.

Hand-written rather than ``DataFrame.to_html`` because the tables need column groups spanning
sources and interval cells; every value from the data is HTML-escaped. Every table has a
``<caption>`` stating its N, and every interval is a ``<span class="ci">`` with machine-readable
``data-quantity``, ``data-estimate``, ``data-low`` and ``data-high`` (the browser test checks
that no correlation's interval leaves [-1, 1]).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from robustmer.evaluate.attack_settings import REFERENCE_SETTING, setting_label, settings
from robustmer.evaluate.clip_stats import INTERVAL_SHORT, INTERVAL_WORDS
from robustmer.evaluate.curves import Curve
from robustmer.evaluate.store import order_model_types
from robustmer.evaluate.study_tables import TABLE1_METRICS

TABLE1_LABELS: dict[str, str] = {
    "clean_mean_r": "clean mean r",
    "clean_mae": "clean MAE",
    "adv_mae": "attacked MAE",
    "delta_mae": "ΔMAE",
}

QUANTITY: dict[str, str] = {"clean_mean_r": "r", "adv_mean_r": "r", "clean_mae": "mae",
                            "adv_mae": "mae", "delta_mae": "delta_mae"}
"""``data-quantity`` of each metric's interval (``r``: a correlation, inside [-1, 1])."""

CONVERGED_WORDS = ("converged = the attack passed its stopping rule's final threshold (the "
                   "corr rule: a per-clip correlation of −1; the mse rule: the MSE limit) before "
                   "its iterations ran out. A budget-limited attack rarely does: with a small ε "
                   "0 % is expected and does not mean the attack failed; ΔMAE says how much it "
                   "did.")
"""The explanation printed beside every "converged" column."""


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


def ci_span(estimate: object, low: object, high: object, quantity: str, digits: int = 3
            ) -> str:
    """``0.141 [0.123, 0.161]`` as a ``<span class="ci">`` whose ``data-*`` attributes carry
    the numbers (``data-quantity``: ``r`` for a correlation, ``mae``, ``diff``, ...); the
    estimate alone (and no ``data-low``) when the interval is undefined."""
    def num(x: object) -> float:
        try:
            return float(x)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return float("nan")

    est, lo, hi = num(estimate), num(low), num(high)
    if not math.isfinite(est):
        return "–"
    attrs = f'class="ci" data-quantity="{esc(quantity)}" data-estimate="{est!r}"'
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"<span {attrs}>{fmt(est, digits)}</span>"
    return (f'<span {attrs} data-low="{lo!r}" data-high="{hi!r}">{fmt(est, digits)} '
            f"[{fmt(lo, digits)}, {fmt(hi, digits)}]</span>")


def table(head: Sequence[str], rows: Sequence[Sequence[str]], css: str = "",
          caption: str = "") -> str:
    """Assemble a table from already-escaped header rows (``<tr>...</tr>``) and cell rows, with
    an already-escaped ``caption`` (which states the table's N)."""
    body = "\n".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    cls = f' class="{esc(css)}"' if css else ""
    cap = f"<caption>{caption}</caption>\n" if caption else ""
    return (f"<table{cls}>\n{cap}<thead>\n{''.join(head)}\n</thead>\n<tbody>\n{body}\n"
            "</tbody>\n</table>")


def td(text: str, numeric: bool = True) -> str:
    """One cell of already-escaped ``text``, right-aligned as a number unless ``numeric`` is
    False."""
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


def head_row(names: Sequence[str]) -> list[str]:
    """One header row of plain (unescaped) column ``names``, as :func:`table` takes it."""
    return ["<tr>" + "".join(f"<th>{esc(n)}</th>" for n in names) + "</tr>"]


def n_range(values: Sequence[object]) -> str:
    """``24`` or ``20-24``: the N of a column of counts."""
    nums = sorted({int(float(v)) for v in values  # type: ignore[arg-type]
                   if v is not None and not pd.isna(v)})
    if not nums:
        return "0"
    return str(nums[0]) if len(nums) == 1 else f"{nums[0]}–{nums[-1]}"


def _t1_cells(rec: Mapping[str, object]) -> list[str]:
    return [td(ci_span(rec[f"{m}_mean"], rec.get(f"{m}_lo"), rec.get(f"{m}_hi"),
                        QUANTITY[m])) for m in TABLE1_METRICS]


def _t1_runs(rec: Mapping[str, object]) -> str:
    return f"{rec['n_runs']}" + (f" (+{rec['n_not_done']} not done)" if rec["n_not_done"]
                                 else "")


def table1_caption(t1: pd.DataFrame, level: float = 0.95) -> str:
    """What Table 1's cells are, with N (escaped HTML)."""
    if len(t1) == 0:
        return "Table 1: no model type with results (N = 0 runs)."
    excl = int(t1["n_excluded"].sum()) if "n_excluded" in t1 else 0
    return esc(
        f"N per row: runs (seeds) and clip rows (here {n_range(t1['n_clips'])} clip rows over "
        f"{n_range(t1['n_seeds'])} seeds). Each cell: mean over seeds of each run's value "
        f"[{100 * level:g} % interval: {INTERVAL_SHORT}; for mean r the Pearson r is recomputed "
        "in every replicate, so it stays inside [−1, 1]]."
        + (f" {excl} clip rows with a non-finite value left out." if excl else ""))


def table1_html(t1: pd.DataFrame) -> str:
    """Table 1 of one source: runs (seeds), N clips, and each of ``TABLE1_METRICS`` as the mean
    over seeds with its clip-bootstrap interval (``study_tables.table1``)."""
    head = ["<tr><th>model type</th><th>runs (seeds)</th><th>N clips</th>"
            + "".join(f"<th>{esc(TABLE1_LABELS[m])} [95 % interval]</th>"
                      for m in TABLE1_METRICS) + "</tr>"]
    rows = []
    for rec in t1.to_dict("records"):
        rows.append([td(esc(rec["model_type"]), False), td(esc(_t1_runs(rec))),
                     td(esc(rec.get("n_clips", "–"))), *_t1_cells(rec)])
    return table(head, rows, "table1", table1_caption(t1))


def table1_side_by_side_html(tables: Mapping[str, pd.DataFrame]) -> str:
    """Table 1 of several sources: one column group per source, rows = union of model types."""
    names = list(tables)
    types = order_model_types(t for df in tables.values() for t in df["model_type"])
    ncol = len(TABLE1_METRICS) + 2
    head = [
        "<tr><th rowspan=\"2\">model type</th>"
        + "".join(f'<th colspan="{ncol}" class="group">{esc(n)}</th>' for n in names) + "</tr>",
        "<tr>" + "".join("<th>runs</th><th>N clips</th>" + "".join(
            f"<th>{esc(TABLE1_LABELS[m])}</th>" for m in TABLE1_METRICS) for _ in names)
        + "</tr>",
    ]
    rows = []
    for t in types:
        cells = [td(esc(t), False)]
        for n in names:
            sel = tables[n][tables[n]["model_type"] == t]
            if len(sel) == 0:
                cells += [td("–")] * ncol
                continue
            rec = sel.iloc[0].to_dict()
            cells += [td(esc(rec["n_runs"])), td(esc(rec.get("n_clips", "–")))]
            cells += _t1_cells(rec)
        rows.append(cells)
    caption = esc("N per source and row: runs (seeds) and clip rows. Each cell: mean over "
                  f"seeds [95 % interval: {INTERVAL_SHORT}].")
    return table(head, rows, "table1 compare", caption)


def curve_points_html(points: pd.DataFrame, metric: str = "delta_mae") -> str:
    """The numbers behind the curve figure: per model type (rows) and setting (columns), the
    mean over seeds of ``metric`` with its clip-bootstrap interval (``curves.curve_points``)."""
    found = settings(points)
    types = order_model_types(points["model_type"]) if len(points) else []
    head = ["<tr><th>model type</th>" + "".join(f"<th>{esc(setting_label(st))}</th>"
                                                for st in found) + "</tr>"]
    rows = []
    for t in types:
        cells = [td(esc(t), False)]
        for st in found:
            e = points["eps"].to_numpy(float)
            same = (np.isnan(e) if math.isnan(st[2]) else np.isclose(e, st[2], rtol=1e-12,
                                                                      atol=0.0))
            sel = points[(points["model_type"] == t) & (points["attack"] == st[0])
                         & (points["domain"] == st[1]) & same]
            if len(sel) == 0:
                cells.append(td("–"))
                continue
            r = sel.iloc[0]
            cells.append(td(ci_span(r[f"{metric}_mean"], r[f"{metric}_lo"], r[f"{metric}_hi"],
                                     "r" if metric.endswith("mean_r") else metric)))
        rows.append(cells)
    caption = esc(f"N per cell: {n_range(points['n_clips'])} clip rows over "
                  f"{n_range(points['n_seeds'])} seeds. Mean over seeds [95 % interval: "
                  f"{INTERVAL_SHORT}].") if len(points) else esc("No points (N = 0).")
    return table(head, rows, "curve-points", caption)


def auc_html(curve: Curve) -> str:
    """Per model type: the area under ΔMAE(ε) over the curve's budgets, mean over seeds with
    its clip-bootstrap interval, the s.d. over seeds (a description), and the log-ε average
    ΔMAE (area / decades)."""
    head = ["<tr><th>model type</th><th>runs (seeds)</th><th>N clips</th>"
            "<th>area under ΔMAE(ε) [95 % interval]</th><th>s.d. over seeds</th>"
            "<th>mean ΔMAE over log ε</th></tr>"]
    rows = []
    for rec in curve.table.to_dict("records"):
        n = f"{rec['n_runs']}" + (f" (+{rec['n_left_out']} left out)" if rec["n_left_out"]
                                  else "")
        rows.append([td(esc(rec["model_type"]), False), td(esc(n)), td(esc(rec["n_clips"])),
                     td(ci_span(rec["auc_mean"], rec["auc_lo"], rec["auc_hi"], "area", 4)),
                     td(fmt(rec["auc_std"], 4)), td(fmt(rec["mean_delta_mae"], 4))])
    notes = [f"{r.run_id}: {r.note}" for r in curve.run_auc.itertuples() if r.note]
    caption = esc(
        f"N per row: runs with an area and the per-clip areas behind the interval. Area by the "
        f"trapezoid rule over log10 ε between ε = {curve.budgets[0]:g} and "
        f"{curve.budgets[-1]:g} ({fmt(curve.decades, 2)} decades; budgets "
        f"{', '.join(f'{e:g}' for e in curve.budgets)}), one area per run; mean over seeds "
        f"[95 % interval: {INTERVAL_SHORT}, of the per-clip areas]; s.d. over seeds describes "
        "the spread between runs, it is not an interval. Mean ΔMAE over log ε = area / decades."
        + (f" Left out: {'; '.join(notes)}." if notes else ""))
    return table(head, rows, "auc", caption)


def snr_html(snr: pd.DataFrame) -> str:
    """Perceptibility per model type: mean SNR over the clips with a finite SNR with its
    interval, every clip accounted for (δ = 0, no SNR), norms, iterations, converged."""
    head = ["<tr><th>model type</th><th>runs</th><th>N clips</th><th>N in SNR</th>"
            "<th>SNR (dB) [95 % interval]</th><th>left out of SNR</th>"
            "<th>mean ‖δ‖₂</th><th>mean ‖δ‖∞</th><th>mean iterations</th>"
            "<th>converged*</th></tr>"]
    rows = []
    for rec in snr.to_dict("records"):
        rows.append([td(esc(rec["model_type"]), False), td(esc(rec["n_runs"])),
                     td(esc(rec["n_clips"])), td(esc(rec["n_snr"])),
                     td(ci_span(rec["snr_db_mean"], rec["snr_db_lo"], rec["snr_db_hi"],
                                 "snr_db", 2)),
                     td(esc(_left_out(rec)), False),
                     td(fmt(rec["delta_l2_mean"], 4)), td(fmt(rec["delta_linf_mean"], 5)),
                     td(fmt(rec["iterations_mean"], 1)),
                     td(f"{100 * rec['converged_frac']:.0f} %")])
    caption = esc(
        f"N = clips of done runs per model type ({n_range(snr['n_clips'])}); the SNR is the mean "
        f"over the N in SNR clips with a finite SNR [95 % interval: {INTERVAL_SHORT}]; every "
        "other clip is counted under 'left out of SNR' with its reason. *" + CONVERGED_WORDS
    ) if len(snr) else esc("No clips (N = 0).")
    return table(head, rows, "snr", caption)


def _left_out(rec: Mapping[str, object]) -> str:
    parts = []
    if rec.get("n_zero_delta"):
        parts.append(f"{rec['n_zero_delta']} with δ = 0 (infinite SNR)")
    if rec.get("n_snr_missing"):
        parts.append(f"{rec['n_snr_missing']} without an SNR recorded")
    return "; ".join(parts) or "none"


def accounting_lines(snr: pd.DataFrame, zero: pd.DataFrame, attack: str = "",
                     max_listed: int = 6) -> list[str]:
    """Every clip accounted for, in sentences (plain text) for beside the SNR table: the clips
    left out of the SNR mean and why, the δ = 0 clips whose logged error still rose (with the
    reason: the reference preset logs the prediction at the last evaluated δ), and the
    zero-gradient starts. ``snr``: ``study_tables.snr_table``; ``zero``:
    ``study_tables.zero_delta_clips`` of the same setting; ``attack``: its attack name."""
    if len(snr) == 0:
        return []
    out = []
    n_zero = int(snr["n_zero_delta"].sum())
    n_rose = int(snr["n_zero_delta_rose"].sum())
    n_missing = int(snr["n_snr_missing"].sum())
    n_zg = int(snr["n_zero_grad_start"].sum())
    total = int(snr["n_clips"].sum())
    if n_zero:
        per = ", ".join(f"{r['model_type']} {r['n_zero_delta']}" for r in snr.to_dict("records")
                        if r["n_zero_delta"])
        out.append(f"{n_zero} of {total} clips have δ = 0: the attack returned the clean input, "
                   f"so their SNR is infinite and they are left out of the SNR mean ({per}). "
                   "They stay in Table 1 and the tests with their logged predictions.")
    if n_rose and len(zero):
        rose = zero[zero["error_rose"]]
        listed = "; ".join(f"{r.model_type} seed {r.seed} clip {r.clip_id}: "
                           f"{r.mae_clean:.3f} → {r.mae_adv:.3f}"
                           for r in rose.head(max_listed).itertuples())
        more = f"; and {len(rose) - max_listed} more" if len(rose) > max_listed else ""
        if attack == REFERENCE_SETTING[0]:
            why = ("the reference preset logs the prediction at the last evaluated δ, not at "
                   "the returned δ = 0 (log_prediction = \"last_evaluated\", as the reference "
                   "implementation does; docs/attacks.md, \"The reference preset\"): the "
                   "attacked MAE counted for these clips is that of the last δ the attack "
                   "tried, which it then discarded")
        else:
            why = ("the logged attacked prediction is not the one at the returned δ (see the "
                   "attack's log_prediction option in docs/attacks.md)")
        out.append(f"{n_rose} of these δ = 0 clips still show a higher error after the attack "
                   f"(MAE clean → attacked: {listed}{more}): {why}.")
    if n_missing:
        out.append(f"{n_missing} clips have no SNR recorded (the source did not log one) and "
                   "are left out of the SNR mean only.")
    if n_zg:
        per = ", ".join(f"{r['model_type']} {r['n_zero_grad_start']}"
                        for r in snr.to_dict("records") if r["n_zero_grad_start"])
        out.append(f"{n_zg} clips had a zero gradient at the clean input, so their attack "
                   f"started from a seeded random point inside the budget instead ({per}); "
                   "they count in every statistic.")
    if not out:
        out.append(f"All {total} attacked clips (test clips × runs) are in every statistic "
                   "(none with δ = 0 or without an SNR).")
    return out


def accounting_html(snr: pd.DataFrame, zero: pd.DataFrame, attack: str = "") -> str:
    """``accounting_lines`` as the caption paragraph beside the SNR table."""
    lines = accounting_lines(snr, zero, attack)
    if not lines:
        return ""
    return ('<p class="caption accounting">Clips accounted for: '
            + " ".join(esc(x) for x in lines) + "</p>")


def intervals_statement(n_boot: int, level: float = 0.95) -> str:
    """How every interval of the report is made, in one paragraph of plain text."""
    return (f"Every interval is a {100 * level:g} % interval shown as estimate [low, high], "
            "with its N beside it. MAE, ΔMAE, SNR, the area under ΔMAE(ε) and the mean "
            f"differences: the percentile {INTERVAL_WORDS} ({n_boot} replicates, seeded). "
            "Correlations (mean r): the same bootstrap of the "
            "mean-over-outputs Pearson r, recomputed in every replicate, so the interval stays "
            "inside [−1, 1]. No t interval over seeds is shown: with 2 or 3 seeds it has 1-2 "
            "degrees of freedom and is many standard errors wide. Where a spread over seeds is "
            "shown (± s.d., or an 's.d. over seeds' column) it describes the runs; it is not an "
            "interval.")


def snr_side_by_side_html(tables: Mapping[str, pd.DataFrame]) -> str:
    """Mean SNR (dB) per model type with its interval, one column per source."""
    names = list(tables)
    types = order_model_types(t for df in tables.values() for t in df["model_type"])
    head = ["<tr><th>model type</th>" + "".join(f"<th>{esc(n)}: SNR (dB) [95 % interval] "
                                                "(N in SNR)</th>" for n in names) + "</tr>"]
    rows = []
    for t in types:
        cells = [td(esc(t), False)]
        for n in names:
            sel = tables[n][tables[n]["model_type"] == t]
            if len(sel) == 0:
                cells.append(td("–"))
                continue
            r = sel.iloc[0]
            cells.append(td(ci_span(r["snr_db_mean"], r["snr_db_lo"], r["snr_db_hi"], "snr_db",
                                     2) + f" ({int(r['n_snr'])})"))
        rows.append(cells)
    caption = esc("N in SNR = clips with a finite SNR (δ = 0 clips are counted in each "
                  "source's own table).")
    return table(head, rows, "snr compare", caption)


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
        st = ([td(esc(setting_label((rec["attack"], rec["domain"], rec["eps"]))
                       if named else "–"), False)] if multi else [])
        rows.append([td(esc(rec["run_id"]), False), td(esc(rec["model_type"]), False),
                     td(esc(rec["seed"])), *st, td(esc(rec["status"]), False),
                     td(fmt(rec["clean_mean_r"])), td(fmt(rec["clean_mae"])),
                     td(fmt(rec["adv_mae"])), td(fmt(rec["delta_mae"])),
                     td(fmt(rec["mean_snr_db"], 2)),
                     td(fmt(rec.get("clean_concept_mean_r"))), td(esc(rec["message"]), False)])
    caption = esc(f"N = {len(per_run)} rows (one per run and attack setting; runs that are "
                  "not done have one row without a setting). Each run's own numbers, "
                  "recomputed from clips.csv.")
    return table(head, rows, "runs", caption)


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
        cells = [td(esc(t), False), td(str(len(sel)))]
        for o in outputs:
            vals = sel[f"r_{o}"].to_numpy(dtype=float) if f"r_{o}" in sel else np.array([])
            ok = vals[np.isfinite(vals)]
            text = mean_std(float(ok.mean()), float(ok.std(ddof=1)) if len(ok) > 1
                            else float("nan")) if len(ok) else "undefined"
            if 0 < len(ok) < len(vals):
                text += f" ({len(vals) - len(ok)} undefined)"
            cells.append(td(text))
        rows.append(cells)
    caption = esc(f"Clean test Pearson r per output: mean ± s.d. over runs (the s.d. describes "
                  f"the spread between seeds; it is not an interval); N = runs per row"
                  f"{'; targets ' + units if units else ''}.")
    return table(head, rows, "outputs", caption)
