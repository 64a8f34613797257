"""The report's section on the checks against gradient masking and unconverged attacks, from
``checks.csv`` of a results store alone: one table per model type (each check's number,
pass/flag and the rule) and two figures (ΔMAE over attack iterations; transferred vs white-box
ΔMAE). A store without ``checks.csv`` gets no section.
"""

from __future__ import annotations

import base64
import math
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from robustmer.evaluate.checks_table import CHECK_NAMES, read_checks
from robustmer.evaluate.store import order_model_types
from robustmer.report.figures import finish, placeholder_png
from robustmer.report.tables import esc, mean_std, table, td

CHECK_LABELS: dict[str, str] = {
    "convergence": "convergence in iterations",
    "restarts": "random restarts",
    "unbounded": "unbounded limit",
    "transfer": "transfer",
    "gradient_free": "gradient-free (Square)",
    "apgd": "APGD (stronger gradient attack)",
}


def _type_of(run_id: str, known: dict[str, str]) -> str:
    return known.get(run_id, run_id.rsplit("_seed", 1)[0])


def summary(checks: pd.DataFrame) -> pd.DataFrame:
    """One row per model type x check x setting (seeds pooled): mean ± std of ``value`` and
    ``reference`` over runs, runs flagged / judged, and the rule. Transfer settings name model
    types (``A2E -> A2M2E``, ``A2E -> A2E (other seed)``) instead of runs."""
    cols = ["model_type", "check", "setting", "eps", "metric", "value_mean", "value_std",
            "reference_mean", "reference_std", "runs", "flagged", "judged", "rule"]
    if checks.empty:
        return pd.DataFrame(columns=cols)
    df = checks.copy()
    known = dict(zip(df["run_id"], df["model_type"], strict=True))
    tr = df["check"] == "transfer"
    if tr.any():
        def group(s: str) -> str:
            src, _, tgt = s.partition(" -> ")
            a, b = _type_of(src.strip(), known), _type_of(tgt.strip(), known)
            return f"{a} -> {b}" + (" (other seed)" if a == b else "")
        df.loc[tr, "setting"] = df.loc[tr, "setting"].map(group)
    df["eps_key"] = df["eps"].fillna(-1.0)
    rows = []
    order = {c: i for i, c in enumerate(CHECK_NAMES)}
    for (mt, check, setting, _), g in df.groupby(["model_type", "check", "setting", "eps_key"],
                                                 sort=False):
        judged = g["status"].isin(["pass", "flag"])
        rows.append({
            "model_type": mt, "check": check, "setting": setting, "eps": g["eps"].iloc[0],
            "metric": g["metric"].iloc[0], "value_mean": g["value"].mean(),
            "value_std": g["value"].std(ddof=1) if len(g) > 1 else math.nan,
            "reference_mean": g["reference"].mean(),
            "reference_std": g["reference"].std(ddof=1) if len(g) > 1 else math.nan,
            "runs": len(g), "flagged": int((g["status"] == "flag").sum()),
            "judged": int(judged.sum()), "rule": g["rule"].iloc[0],
            "_o": order.get(check, 99), "_i": float(g["iters"].iloc[0]),
        })
    out = pd.DataFrame(rows)
    types = {t: i for i, t in enumerate(order_model_types(out["model_type"]))}
    out["_t"] = out["model_type"].map(types)
    out = out.sort_values(["_t", "_o", "eps", "_i", "setting"], kind="stable")
    return out[cols].reset_index(drop=True)


def _verdict(r: pd.Series) -> str:
    if r["judged"] == 0:
        return "(curve point)"
    if r["flagged"] == 0:
        return f"pass ({r['judged']}/{r['judged']})"
    return f"<b>FLAG</b> ({r['flagged']} of {r['judged']} runs)"


def tables_html(summ: pd.DataFrame) -> str:
    """One table per model type."""
    parts = []
    head = ["<tr><th>check</th><th>setting</th><th>ε</th><th>number</th><th>value</th>"
            "<th>compared with</th><th>verdict</th><th>rule</th></tr>"]
    for mt in order_model_types(summ["model_type"]):
        g = summ[summ["model_type"] == mt]
        rows = []
        for _, r in g.iterrows():
            rows.append([
                td(esc(CHECK_LABELS.get(r["check"], r["check"])), False),
                td(esc(r["setting"]), False),
                td("none" if not math.isfinite(float(r["eps"])) else f"{float(r['eps']):g}"),
                td(esc(r["metric"]), False),
                td(mean_std(r["value_mean"], r["value_std"], 4)),
                td(mean_std(r["reference_mean"], r["reference_std"], 4)),
                td(_verdict(r), False), td(esc(r["rule"]), False)])
        n_flag = int(g["flagged"].sum())
        runs = sorted({int(x) for x in g["runs"]})
        caption = esc(f"N = {'–'.join(str(x) for x in dict.fromkeys([runs[0], runs[-1]]))} "
                      "runs (seeds) per check; value and reference: mean ± s.d. over them.")
        parts.append(f"<h4>{esc(mt)}: {'no flags' if n_flag == 0 else f'{n_flag} flag(s)'}"
                     f"</h4>\n{table(head, rows, caption=caption)}")
    return "\n".join(parts)


def convergence_figure(checks: pd.DataFrame, path: str | os.PathLike[str] | None = None
                       ) -> bytes:
    """ΔMAE after k attack iterations, per model type (mean over seeds), one panel per ε."""
    c = checks[checks["check"] == "convergence"]
    if c.empty:
        return placeholder_png("no convergence check in checks.csv", path)
    budgets = sorted(c["eps"].dropna().unique())
    fig, axes = plt.subplots(1, len(budgets), figsize=(4.5 * len(budgets), 3.4), squeeze=False)
    for ax, eps in zip(axes[0], budgets, strict=True):
        ce = c[c["eps"] == eps]
        for mt in order_model_types(ce["model_type"]):
            m = ce[ce["model_type"] == mt].groupby("iters")["value"].mean()
            ax.plot(m.index, m.to_numpy(), marker="o", label=mt)
        ax.set_xscale("log")
        ax.set_xlabel("attack iterations")
        ax.set_ylabel("ΔMAE")
        ax.set_title(f"ε = {eps:g}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Convergence: ΔMAE over iterations (mean over seeds)")
    fig.tight_layout()
    return finish(fig, path)


def transfer_figure(summ: pd.DataFrame, path: str | os.PathLike[str] | None = None) -> bytes:
    """Transferred ΔMAE vs the white-box ΔMAE on the target, per (source -> target) pair."""
    t = summ[summ["check"] == "transfer"]
    if t.empty:
        return placeholder_png("no transfer check in checks.csv", path)
    labels = [f"{s}\nε={e:g}" for s, e in zip(t["setting"], t["eps"], strict=True)]
    pos = np.arange(len(t))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(t)), 3.6))
    ax.bar(pos - 0.2, t["value_mean"], 0.4, label="transferred δ")
    ax.bar(pos + 0.2, t["reference_mean"], 0.4, label="white-box on target")
    ax.set_xticks(pos, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("ΔMAE on the target")
    ax.set_title("Transfer: δ from the source applied to the target")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return finish(fig, path)


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def checks_section(store_path: str | os.PathLike[str], fig_dir: str | os.PathLike[str],
                   slug: str) -> str:
    """The HTML section for a store's ``checks.csv`` ("" when it has none)."""
    checks = read_checks(store_path)
    if checks.empty:
        return ""
    summ = summary(checks)
    fig_dir = Path(fig_dir)
    conv = convergence_figure(checks, fig_dir / f"{slug}-checks-convergence.png")
    trans = transfer_figure(summ, fig_dir / f"{slug}-checks-transfer.png")
    n_clips = int(checks["clips"].max())
    return f"""
<h3 id="{esc(slug)}-checks">Checks: gradient masking and unconverged attacks</h3>
<p class="caption">From checks.csv ({len(checks)} rows; up to {n_clips} test clips per run,
spectrogram domain). Each check's number is the mean ± std over the runs (seeds) of a model type;
the verdict counts the runs the rule flagged. A flag means the study's attack may under- or
misstate that model's weakness (see docs/attacks.md, "Checks against gradient masking").
Rows flagged: {int((checks['status'] == 'flag').sum())} of
{int(checks['status'].isin(['pass', 'flag']).sum())} verdicts.</p>
{tables_html(summ)}
<img alt="ΔMAE over attack iterations" src="{_uri(conv)}">
<img alt="transferred vs white-box ΔMAE" src="{_uri(trans)}">
"""
