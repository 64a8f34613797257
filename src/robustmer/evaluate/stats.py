"""Statistics of a study, from the results store alone: Table 1 (mean ± std over seeds),
paired t-tests with Bonferroni correction and Cohen's d_z, and the perceptibility (SNR) table.

The per-run numbers are recomputed from ``clips.csv`` with ``evaluate.summary`` (hence with
``regression_metrics``), the per-clip adversarial MAE with ``per_sample_mae``; the t-test itself
is ``scipy.stats.ttest_rel``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from robustmer.errors import ConfigError, DatasetError
from robustmer.evaluate.metrics import per_sample_mae
from robustmer.evaluate.store import ADV_COLUMNS, PRED_COLUMNS, Y_COLUMNS, order_model_types
from robustmer.evaluate.summary import summarize_runs

DEFAULT_COMPARISONS: tuple[tuple[str, str], ...] = (("A2E", "A2M2E"), ("A2B2E", "A2M2E"))
"""The study's planned comparisons of per-clip adversarial MAE."""

TABLE1_METRICS: tuple[str, ...] = ("clean_mean_r", "clean_mae", "adv_mae", "delta_mae")
"""The per-run numbers Table 1 aggregates over seeds."""


def done_runs(runs: pd.DataFrame | None, clips: pd.DataFrame) -> pd.DataFrame:
    """Per-run summaries (recomputed from ``clips``) of the runs whose status is ``done``."""
    per_run = summarize_runs(clips, runs)
    return per_run[per_run["status"] == "done"].reset_index(drop=True)


def table1(runs: pd.DataFrame | None, clips: pd.DataFrame) -> pd.DataFrame:
    """Table 1: one row per model type (reporting order) with ``n_runs`` and, for each of
    ``TABLE1_METRICS``, ``<metric>_mean`` and ``<metric>_std`` over the ``done`` runs (seeds).

    std is the sample standard deviation (ddof=1; NaN with a single run). Runs listed in
    ``runs`` but not ``done`` are counted in ``n_not_done``.
    """
    per_run = summarize_runs(clips, runs)
    types = order_model_types(per_run["model_type"]) if len(per_run) else []
    rows = []
    for t in types:
        sel = per_run[per_run["model_type"] == t]
        done = sel[sel["status"] == "done"]
        row: dict[str, object] = {"model_type": t, "n_runs": len(done),
                                  "n_not_done": int(len(sel) - len(done))}
        for m in TABLE1_METRICS:
            vals = done[m].to_numpy(dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            row[f"{m}_mean"] = float(vals.mean()) if len(vals) else float("nan")
            row[f"{m}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")
        rows.append(row)
    cols = ["model_type", "n_runs", "n_not_done"] + [
        f"{m}_{s}" for m in TABLE1_METRICS for s in ("mean", "std")]
    return pd.DataFrame(rows, columns=cols)


def clip_mae(clips: pd.DataFrame, which: str = "adv") -> np.ndarray:
    """Per-clip MAE of the clean (``which="clean"``) or adversarial predictions, recomputed from
    the ``y_*`` and ``pred_*`` / ``adv_*`` columns with ``per_sample_mae``."""
    cols = {"adv": ADV_COLUMNS, "clean": PRED_COLUMNS}.get(which)
    if cols is None:
        raise ConfigError(f"which={which!r}: expected 'adv' or 'clean'")
    return per_sample_mae(clips[list(Y_COLUMNS)].to_numpy(np.float64),
                          clips[list(cols)].to_numpy(np.float64))


@dataclass(frozen=True)
class PairedTest:
    """A two-sided paired t-test of ``a - b`` with Cohen's d_z."""

    n: int
    t: float
    df: int
    p: float
    mean_diff: float
    d_z: float

    @property
    def formatted(self) -> str:
        """``t(df)=t.tt`` as reported in the paper."""
        return f"t({self.df})={self.t:.2f}"


def paired_ttest(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> PairedTest:
    """Two-sided paired t-test (``scipy.stats.ttest_rel``) of ``a`` against ``b``, with the
    paired effect size Cohen's d_z = mean(a - b) / sd(a - b) (ddof=1), which equals t / sqrt(n).
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ConfigError(f"paired samples must be equal-length vectors, got {x.shape}, {y.shape}")
    if len(x) < 2:
        raise ConfigError(f"a paired t-test needs at least 2 pairs, got {len(x)}")
    res = stats.ttest_rel(x, y)
    diff = x - y
    sd = diff.std(ddof=1)
    d_z = float(diff.mean() / sd) if sd > 0 else float("nan")
    return PairedTest(n=len(x), t=float(res.statistic), df=len(x) - 1, p=float(res.pvalue),
                      mean_diff=float(diff.mean()), d_z=d_z)


def bonferroni(p_values: Sequence[float], alpha: float = 0.05) -> tuple[float, list[bool]]:
    """Bonferroni correction: the per-test level ``alpha / m`` and, per p-value, whether it is
    significant at that level (``p < alpha / m``; NaN p-values are never significant)."""
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha={alpha}: expected a level in (0, 1)")
    m = len(p_values)
    if m == 0:
        return alpha, []
    level = alpha / m
    return level, [bool(np.isfinite(p) and p < level) for p in p_values]


@dataclass(frozen=True)
class Comparison:
    """One planned comparison of per-clip adversarial MAE between two model types."""

    a: str
    b: str
    n: int
    t: float
    df: int
    p: float
    mean_a: float
    mean_b: float
    d_z: float
    alpha_corrected: float
    significant: bool
    note: str = ""

    @property
    def skipped(self) -> bool:
        """True when the comparison could not be run (see ``note``)."""
        return not np.isfinite(self.t)

    @property
    def formatted(self) -> str:
        """``t(df)=t.tt`` or ``n/a``."""
        return "n/a" if self.skipped else f"t({self.df})={self.t:.2f}"

    def to_dict(self) -> dict[str, object]:
        """Plain dict (for JSON / tables)."""
        d = asdict(self)
        d["formatted"] = self.formatted
        return d


def paired_clip_values(clips: pd.DataFrame, a: str, b: str, which: str = "adv"
                       ) -> pd.DataFrame:
    """Per-clip MAE of model types ``a`` and ``b`` paired by ``(seed, clip_id)`` (inner join);
    columns ``seed, clip_id, a, b``. Raises ``DatasetError`` when a model type has two runs with
    the same seed (the pairing would be ambiguous)."""
    frames = []
    for t in (a, b):
        sel = clips[clips["model_type"] == t]
        dup = sel.duplicated(subset=["seed", "clip_id"])
        if dup.any():
            i = int(np.flatnonzero(dup.to_numpy())[0])
            raise DatasetError(
                f"clips.csv: model type {t} has more than one row for seed "
                f"{sel['seed'].iloc[i]}, clip {sel['clip_id'].iloc[i]}: cannot pair by "
                "(seed, clip_id)"
            )
        frames.append(pd.DataFrame({"seed": sel["seed"].to_numpy(),
                                    "clip_id": sel["clip_id"].astype(str).to_numpy(),
                                    t: clip_mae(sel, which) if len(sel) else np.array([])}))
    merged = frames[0].merge(frames[1], on=["seed", "clip_id"], how="inner",
                             suffixes=("_a", "_b"))
    if a == b:  # degenerate but well defined: identical columns
        merged = merged.rename(columns={f"{a}_a": "a", f"{b}_b": "b"})
    else:
        merged = merged.rename(columns={a: "a", b: "b"})
    return merged.sort_values(["seed", "clip_id"]).reset_index(drop=True)


def compare_model_types(
    clips: pd.DataFrame,
    comparisons: Sequence[tuple[str, str]] = DEFAULT_COMPARISONS,
    *,
    alpha: float = 0.05,
    which: str = "adv",
    runs: pd.DataFrame | None = None,
) -> list[Comparison]:
    """Two-sided paired t-tests of per-clip MAE (adversarial by default) pooled over seeds,
    pairing rows by ``(seed, clip_id)``, Bonferroni-corrected over the comparisons that could be
    run. A comparison whose model type is missing (or with fewer than 2 pairs) is skipped with a
    note. With ``runs``, only clips of ``done`` runs are used.
    """
    if runs is not None and len(clips):
        done = set(runs.loc[runs["status"] == "done", "run_id"].astype(str))
        clips = clips[clips["run_id"].astype(str).isin(done)]
    present = set(clips["model_type"]) if len(clips) else set()
    raw: list[tuple[str, str, PairedTest | None, str, float, float]] = []
    for a, b in comparisons:
        missing = [t for t in (a, b) if t not in present]
        if missing:
            raw.append((a, b, None, f"skipped: no results for {', '.join(missing)}",
                        float("nan"), float("nan")))
            continue
        pairs = paired_clip_values(clips, a, b, which)
        if len(pairs) < 2:
            raw.append((a, b, None, f"skipped: only {len(pairs)} (seed, clip) pairs in common",
                        float("nan"), float("nan")))
            continue
        n_a = int((clips["model_type"] == a).sum())
        n_b = int((clips["model_type"] == b).sum())
        note = ""
        if len(pairs) < max(n_a, n_b):
            note = (f"{max(n_a, n_b) - len(pairs)} clip rows without a partner left out "
                    f"({a}: {n_a}, {b}: {n_b} rows)")
        raw.append((a, b, paired_ttest(pairs["a"], pairs["b"]), note,
                    float(pairs["a"].mean()), float(pairs["b"].mean())))
    run_p = [r[2].p for r in raw if r[2] is not None]
    level, decisions = bonferroni(run_p, alpha)
    it = iter(decisions)
    out = []
    for a, b, test, note, ma, mb in raw:
        if test is None:
            out.append(Comparison(a, b, 0, float("nan"), 0, float("nan"), ma, mb, float("nan"),
                                  level, False, note))
        else:
            out.append(Comparison(a, b, test.n, test.t, test.df, test.p, ma, mb, test.d_z,
                                  level, next(it), note))
    return out


def snr_table(runs: pd.DataFrame | None, clips: pd.DataFrame) -> pd.DataFrame:
    """Perceptibility per model type: mean SNR (dB) of the perturbations pooled over clips of
    ``done`` runs, the std of the per-run mean SNR over seeds, and mean L2 / L∞ norms,
    iterations and the fraction of clips where the attack converged."""
    if runs is not None and len(clips):
        done = set(runs.loc[runs["status"] == "done", "run_id"].astype(str))
        clips = clips[clips["run_id"].astype(str).isin(done)]
    rows = []
    types = order_model_types(clips["model_type"]) if len(clips) else []
    for t in types:
        sel = clips[clips["model_type"] == t]
        per_run = sel.groupby("run_id")["snr_db"].mean().to_numpy(np.float64)
        per_run = per_run[np.isfinite(per_run)]

        def m(col: str, sel: pd.DataFrame = sel) -> float:
            v = sel[col].to_numpy(np.float64)
            v = v[np.isfinite(v)]
            return float(v.mean()) if len(v) else float("nan")

        rows.append({
            "model_type": t, "n_runs": int(sel["run_id"].nunique()), "n_clips": len(sel),
            "snr_db_mean": m("snr_db"),
            "snr_db_std": float(per_run.std(ddof=1)) if len(per_run) > 1 else float("nan"),
            "delta_l2_mean": m("delta_l2"), "delta_linf_mean": m("delta_linf"),
            "iterations_mean": m("iterations"),
            "converged_frac": float(sel["converged"].astype(bool).mean()),
        })
    cols = ["model_type", "n_runs", "n_clips", "snr_db_mean", "snr_db_std", "delta_l2_mean",
            "delta_linf_mean", "iterations_mean", "converged_frac"]
    return pd.DataFrame(rows, columns=cols)
