"""The study page's section on its runs' explainer evaluations (a study's ``explainer_eval:``
block writes ``runs/<run>/explainer-eval/``): each folder gets its own page
(``build_explain_report``) and the study page one table of label-flip rates with links to them,
so a reader of the study sees the explanations' test beside the robustness results."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from robustmer.explain.evaluation import headline_k, read_results
from robustmer.report.tables import esc, fmt, head_row, n_range, table, td
from robustmer.report.xeval_page import build_explain_report, is_explainer_eval
from robustmer.report.xeval_stats import flip_summary

FOLDER = "explainer-eval"
"""The folder name a study gives a run's explainer evaluation (``study.layout``)."""


def find_explainer_evals(store_dir: str | os.PathLike[str]) -> list[Path]:
    """The finished or partial explainer-eval folders of a study's runs, in run order."""
    runs = Path(store_dir) / "runs"
    return sorted(p for p in runs.glob(f"*/{FOLDER}") if is_explainer_eval(p)) \
        if runs.is_dir() else []


def explainer_eval_section(store_dir: str | os.PathLike[str],
                           page_dir: str | os.PathLike[str]) -> str:
    """One ``<section>`` (empty string without explainer evaluations): per run, how many
    attacks succeeded and each method's label-flip rate at k = 3 with its 95 % Wilson interval,
    linking the run's own page (written here, links relative to ``page_dir``)."""
    folders = find_explainer_evals(store_dir)
    if not folders:
        return ""
    rows_data = []
    for folder in folders:
        page = build_explain_report(folder)
        t = read_results(folder)
        adv = t["adversarial"]
        ok = int(adv["success"].astype(bool).sum()) if len(adv) else 0
        summary = flip_summary(t["flips"]) if len(t["flips"]) else pd.DataFrame()
        at_k = summary[summary["k"] == headline_k(summary["k"])] if len(summary) else summary
        rows_data.append((folder, page, ok, len(adv), at_k))
    methods = list(dict.fromkeys(m for *_, at_k in rows_data if len(at_k)
                                 for m in at_k["method"].astype(str)))
    rows, ks = [], set()
    for folder, page, ok, attacked, at_k in rows_data:
        rel = os.path.relpath(page, page_dir)
        cells = [td(f'<a href="{esc(rel)}">{esc(folder.parent.name)}</a>', numeric=False),
                 td(f"{ok} / {attacked}")]
        for m in methods:
            r = at_k[at_k["method"] == m] if len(at_k) else at_k
            cells.append(td("–" if not len(r) else f"{fmt(r['rate'].iloc[0], 2)} "
                            f"[{fmt(r['ci_low'].iloc[0], 2)}, {fmt(r['ci_high'].iloc[0], 2)}]"))
        ks |= set(at_k["k"].astype(int)) if len(at_k) else set()
        rows.append(cells)
    k_text = ", ".join(str(k) for k in sorted(ks)) or "–"
    caption = (f"Label-flip rate at k = {k_text} of each method and baseline, with 95 % Wilson "
               f"intervals; N = the successful adversarial examples of each run "
               f"({n_range([r[2] for r in rows_data])}; the 'successful / attacked' column). "
               f"Each run's name links its own page.")
    return ('<section id="explainer-eval"><h2>Explainer evaluations of the runs</h2>\n'
            '<p class="caption">The study\'s <code>explainer_eval:</code> block '
            "(docs/explainer-eval.md): an explainer is tested against adversarial ground "
            "truth: does the part of δ in its top k segments carry the adversarial "
            "decision? The magnitude baseline ranks segments by δ itself (an oracle), "
            "random by chance.</p>\n"
            + table(head_row(["run", "successful / attacked", *methods]), rows, caption=caption)
            + "\n</section>")
