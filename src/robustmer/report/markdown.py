"""The numbers of a results store as Markdown: how the intervals and the tests are made (stated
once), the one family of planned comparisons, Table 1 and the SNR table per attack setting with
every clip accounted for, the robustness curves' area table, and the checks' summary. For
pasting into a paper or a results page (docs/results.md is written from it); no figures, no
audio.

Every number comes from the same functions as the HTML report (``evaluate.study_tables``,
``.curves``, ``.planned``, ``report.checks.summary``) and the same sentences (``report.tables``),
so the two never disagree.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from robustmer.errors import ConfigError
from robustmer.evaluate.attack_settings import select_setting, setting_label, settings
from robustmer.evaluate.checks_table import read_checks
from robustmer.evaluate.curves import Curve, robustness_curves
from robustmer.evaluate.planned import PLANNED, PlannedFamily, planned_family, store_comparisons
from robustmer.evaluate.resampling import DEFAULT_N_BOOT
from robustmer.evaluate.store import ResultsStore
from robustmer.evaluate.study_tables import snr_table, table1, zero_delta_clips
from robustmer.io import write_text
from robustmer.report.checks import CHECK_LABELS, summary
from robustmer.report.family_tables import tested_on
from robustmer.report.tables import CONVERGED_WORDS, accounting_lines, intervals_statement

CHECKS_FILE = "checks.csv"


def _num(x: object, digits: int = 4) -> str:
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(v):
        return "–"
    return f"{v:.{digits}f}"


def _pm(mean: object, std: object, digits: int = 4) -> str:  # the checks' mean ± s.d.
    s = _num(std, digits)
    return _num(mean, digits) if s == "–" else f"{_num(mean, digits)} ± {s}"


def _p(p: float) -> str:
    return "–" if not math.isfinite(p) else f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table ('|' in cells escaped)."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(header), line(["---"] * len(header))] + [line(r) for r in rows])


def _ci(est: object, lo: object, hi: object, digits: int = 4) -> str:
    """``est [lo, hi]`` (the estimate alone when the interval is undefined)."""
    e, a, b = _num(est, digits), _num(lo, digits), _num(hi, digits)
    return e if "–" in (a, b) or e == "–" else f"{e} [{a}, {b}]"


def table1_md(t1: pd.DataFrame) -> str:
    """Table 1: runs, N clips; clean r and MAE, attacked MAE, ΔMAE as mean over seeds [95 %
    interval] (``study_tables.table1``)."""
    rows = [[r["model_type"], f"{int(r['n_runs'])}", f"{int(r['n_clips'])}",
             _ci(r["clean_mean_r_mean"], r["clean_mean_r_lo"], r["clean_mean_r_hi"], 3),
             _ci(r["clean_mae_mean"], r["clean_mae_lo"], r["clean_mae_hi"]),
             _ci(r["adv_mae_mean"], r["adv_mae_lo"], r["adv_mae_hi"]),
             _ci(r["delta_mae_mean"], r["delta_mae_lo"], r["delta_mae_hi"])]
            for _, r in t1.iterrows()]
    return md_table(["model", "runs (seeds)", "N clips", "clean mean r [95 % CI]",
                     "clean MAE [95 % CI]", "attacked MAE [95 % CI]", "ΔMAE [95 % CI]"], rows)


def family_md(family: PlannedFamily) -> str:
    """The family's tests: per comparison and what it is tested on, N pairs (seeds), the mean
    difference and d_z with their intervals, t, p, the adjusted p and the decision."""
    rows = []
    for t in family.tests:
        what = tested_on(t)
        name = f"{t.a} vs {t.b}" + (" (adv. training)" if t.why != PLANNED else "")
        e = t.effect
        if e is None:
            rows.append([name, what, "–", "–", "–", "–", "–", "–", t.note or "skipped"])
            continue
        md, dz = e.mean_diff_bootstrap, e.d_z_bootstrap
        decision = "yes" if t.significant else "no"
        if not t.agrees:
            decision += " (bootstrap interval of a − b " + (
                "includes 0)" if t.significant else "excludes 0)")
        rows.append([name, what, f"{e.n} ({e.n_clusters})", _ci(md.estimate, md.low, md.high),
                     _ci(dz.estimate, dz.low, dz.high, 2), f"t({e.df}) = {e.t:.2f}", _p(e.p),
                     _p(t.p_adjusted), decision + (f"; {t.note}" if t.note else "")])
    return md_table(["comparison", "tested on", "N pairs (seeds)", "a − b [95 % CI]",
                     "d_z [95 % CI]", "t", "p", f"p ({family.method})", "significant"], rows)


def snr_md(snr: pd.DataFrame) -> str:
    """Perceptibility: N clips, SNR over the clips with a finite SNR [95 % interval], the clips
    left out of it, ‖δ‖∞, iterations, share of clips that converged."""
    rows = [[r["model_type"], f"{int(r['n_clips'])}", f"{int(r['n_snr'])}",
             _ci(r["snr_db_mean"], r["snr_db_lo"], r["snr_db_hi"], 1),
             f"{int(r['n_zero_delta'])}", _num(r["delta_linf_mean"]),
             _num(r["iterations_mean"], 1), _num(r["converged_frac"], 2)]
            for _, r in snr.iterrows()]
    return md_table(["model", "N clips", "N in SNR", "SNR dB [95 % CI]", "δ = 0 (left out)",
                     "mean ‖δ‖∞", "iterations", "converged*"], rows)


def curves_md(curves: Sequence[Curve]) -> str:
    """Per curve: the area under ΔMAE(log10 ε) per model type (the tests on it are in the
    family)."""
    parts = []
    for c in curves:
        rows = [[r["model_type"], f"{int(r['n_runs'])}", f"{int(r['n_clips'])}",
                 _ci(r["auc_mean"], r["auc_lo"], r["auc_hi"]), _num(r["auc_std"]),
                 _num(r["mean_delta_mae"])]
                for _, r in c.table.iterrows()]
        parts.append(f"#### Robustness curve: {c.label}\n\nArea under ΔMAE over log10 ε "
                     f"({c.decades:.2f} decades; smaller = more robust; mean over seeds [95 % "
                     "interval over seeds and clips]; the s.d. over seeds is a description). "
                     "The paired tests on the area are in the family above.\n\n"
                     + md_table(["model", "runs (seeds)", "N clips", "area [95 % CI]",
                                 "s.d. over seeds", "mean ΔMAE"], rows))
    return "\n\n".join(parts)


def checks_md(checks: pd.DataFrame) -> str:
    """The checks' summary: per model type and check, the number, its reference, the verdict."""
    summ = summary(checks)
    if summ.empty:
        return ""
    rows = []
    for _, r in summ.iterrows():
        verdict = ("(curve point)" if r["judged"] == 0 else
                   f"pass ({r['judged']}/{r['judged']})" if r["flagged"] == 0 else
                   f"**FLAG** ({r['flagged']} of {r['judged']})")
        eps = float(r["eps"])
        rows.append([r["model_type"], CHECK_LABELS.get(r["check"], r["check"]), r["setting"],
                     "none" if not math.isfinite(eps) else f"{eps:g}", r["metric"],
                     _pm(r["value_mean"], r["value_std"]),
                     _pm(r["reference_mean"], r["reference_std"]), verdict])
    return md_table(["model", "check", "setting", "ε", "number", "value", "compared with",
                     "verdict"], rows)


def markdown_summary(results_dir: str | os.PathLike[str], *,
                     comparisons: Sequence[tuple[str, str]] | None = None,
                     alpha: float = 0.05, n_boot: int = DEFAULT_N_BOOT) -> str:
    """Every table of the store at ``results_dir`` as one Markdown text (``comparisons``:
    default the store's planned ones; the family adds adversarially trained vs plain)."""
    store = ResultsStore(results_dir)
    if not (store.path / "clips.csv").is_file():
        raise ConfigError(f"RESULTS_DIR {store.path}: no clips.csv (not a results store)")
    runs, clips = store.read_runs(), store.read_clips()
    if comparisons is None:
        comparisons = store_comparisons(store.read_config(),
                                              list(dict.fromkeys(runs["model_type"])))
    found = settings(clips)
    family = planned_family(clips, runs, comparisons, alpha=alpha, n_boot=n_boot)
    out = [f"# Results: {store.path.name}\n",
           f"**Intervals.** {intervals_statement(n_boot)}",
           f"**Tests.** {family.statement()}",
           "## Planned comparisons (one family)", family_md(family)]
    not_done = runs[runs["status"] != "done"].drop_duplicates(subset=["run_id"])
    if len(not_done):
        out.append("Runs not done (left out of every statistic): " + "; ".join(
            f"{r.run_id} ({r.model_type}, seed {r.seed}): {r.status}"
            for r in not_done.itertuples()) + ".")
    for st in found:
        r_sel, c_sel = select_setting(runs, st, keep_unset=True), select_setting(clips, st)
        snr = snr_table(r_sel, c_sel, n_boot=n_boot)
        zero = zero_delta_clips(c_sel, r_sel)
        out += [f"## {setting_label(st)}", table1_md(table1(r_sel, c_sel, n_boot=n_boot)),
                snr_md(snr), " ".join(["Clips accounted for:",
                                       *accounting_lines(snr, zero, st[0])])
                + f"\n\n\\*{CONVERGED_WORDS}"]
    curves = robustness_curves(runs, clips, comparisons, alpha=alpha, n_boot=n_boot)
    if curves:
        out += ["## Robustness curves", curves_md(curves)]
    checks_path = store.path / CHECKS_FILE
    if checks_path.is_file():
        text = checks_md(read_checks(checks_path))
        if text:
            out += ["## Checks against gradient masking and unconverged attacks", text]
    return "\n\n".join(out) + "\n"


def write_markdown(results_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                   *, alpha: float = 0.05) -> Path:
    """Write ``markdown_summary`` to ``out`` (default RESULTS_DIR/report.md) atomically."""
    path = Path(out) if out is not None else Path(results_dir) / "report.md"
    write_text(path, markdown_summary(results_dir, alpha=alpha))
    return path
