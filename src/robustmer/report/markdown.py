"""The numbers of a results store as Markdown: Table 1, the t-tests and the SNR table per attack
setting, the robustness curves' area table and tests, and the checks' summary. For pasting into
a paper or a results page (docs/results.md is written from it); no figures, no audio.

Every number comes from the same functions as the HTML report (``evaluate.stats``,
``report.checks.summary``), so the two never disagree.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from robustmer.errors import ConfigError
from robustmer.evaluate import stats
from robustmer.evaluate.checks_table import read_checks
from robustmer.evaluate.store import ResultsStore, select_setting, setting_label, settings
from robustmer.io import write_text
from robustmer.report.checks import CHECK_LABELS, summary

CHECKS_FILE = "checks.csv"


def _num(x: object, digits: int = 4) -> str:
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(v):
        return "–"
    return f"{v:.{digits}f}"


def _pm(mean: object, std: object, digits: int = 4) -> str:
    s = _num(std, digits)
    return _num(mean, digits) if s == "–" else f"{_num(mean, digits)} ± {s}"


def _p(p: float) -> str:
    return "–" if not math.isfinite(p) else f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table ('|' in cells escaped)."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(header), line(["---"] * len(header))] + [line(r) for r in rows])


def table1_md(t1: pd.DataFrame) -> str:
    """Table 1: clean r and MAE, attacked MAE, ΔMAE, mean ± s.d. over seeds."""
    rows = [[r["model_type"], f"{int(r['n_runs'])}", _pm(r["clean_mean_r_mean"],
             r["clean_mean_r_std"], 3), _pm(r["clean_mae_mean"], r["clean_mae_std"]),
             _pm(r["adv_mae_mean"], r["adv_mae_std"]), _pm(r["delta_mae_mean"],
             r["delta_mae_std"])] for _, r in t1.iterrows()]
    return md_table(["model", "runs", "clean mean r", "clean MAE", "attacked MAE", "ΔMAE"], rows)


def tests_md(tests: Sequence[stats.Comparison]) -> str:
    """The paired t-tests of per-clip attacked MAE (Bonferroni level in the table)."""
    rows = []
    for c in tests:
        if c.skipped:
            rows.append([f"{c.a} vs {c.b}", "–", "–", "–", "–", "–", "–", c.note or "skipped"])
            continue
        rows.append([f"{c.a} vs {c.b}", f"{c.n}", _num(c.mean_a), _num(c.mean_b),
                     f"t({c.df}) = {c.t:.2f}", _p(c.p), f"{c.d_z:.2f}",
                     f"{'yes' if c.significant else 'no'} (α' = {c.alpha_corrected:.4g})"])
    return md_table(["comparison", "pairs", "mean a", "mean b", "t", "p", "d_z",
                     "significant"], rows)


def snr_md(snr: pd.DataFrame) -> str:
    """Perceptibility: SNR of the perturbation, iterations, share of clips that converged."""
    rows = [[r["model_type"], _pm(r["snr_db_mean"], r["snr_db_std"], 1),
             _num(r["delta_linf_mean"]), _num(r["iterations_mean"], 1),
             _num(r["converged_frac"], 2)] for _, r in snr.iterrows()]
    return md_table(["model", "SNR dB", "mean ‖δ‖∞", "iterations", "converged"], rows)


def curves_md(curves: Sequence[stats.Curve]) -> str:
    """Per curve: the area under ΔMAE(log10 ε) per model type and the paired tests on it."""
    parts = []
    for c in curves:
        rows = [[r["model_type"], f"{int(r['n_runs'])}", _pm(r["auc_mean"], r["auc_std"]),
                 f"[{_num(r['auc_lo'])}, {_num(r['auc_hi'])}]", _num(r["mean_delta_mae"])]
                for _, r in c.table.iterrows()]
        parts.append(f"#### Robustness curve: {c.label}\n\nArea under ΔMAE over log10 ε "
                     f"({c.decades:.2f} decades; smaller = more robust):\n\n"
                     + md_table(["model", "runs", "area", "95 % interval", "mean ΔMAE"], rows)
                     + "\n\nPaired tests on the per-clip area:\n\n" + tests_md(c.tests))
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
                     alpha: float = 0.05) -> str:
    """Every table of the store at ``results_dir`` as one Markdown text (``comparisons``:
    default the store's planned ones)."""
    store = ResultsStore(results_dir)
    if not (store.path / "clips.csv").is_file():
        raise ConfigError(f"RESULTS_DIR {store.path}: no clips.csv (not a results store)")
    runs, clips = store.read_runs(), store.read_clips()
    if comparisons is None:
        comparisons = stats.store_comparisons(store.read_config(),
                                              list(dict.fromkeys(runs["model_type"])))
    found = settings(clips)
    out = [f"# Results: {store.path.name}\n",
           f"Per-clip tests: paired t-tests of attacked MAE, Bonferroni over comparisons x "
           f"settings at α = {alpha}. Mean ± s.d. over seeds."]
    tests = stats.compare_by_setting(clips, comparisons, alpha=alpha, runs=runs) if found else []
    for st, comps in tests:
        r_sel, c_sel = select_setting(runs, st, keep_unset=True), select_setting(clips, st)
        out += [f"## {setting_label(st)}", table1_md(stats.table1(r_sel, c_sel)),
                tests_md(comps), snr_md(stats.snr_table(r_sel, c_sel))]
    curves = stats.robustness_curves(runs, clips, comparisons, alpha=alpha)
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
