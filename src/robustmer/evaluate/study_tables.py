"""Table 1 and the perceptibility (SNR) table of a results store, per attack setting, with every
clip accounted for (``zero_delta_clips``: the clips whose attack returned the clean input).

Each table is recomputed from ``clips.csv`` (and ``runs.csv`` for the runs that are not done):
per-run numbers with ``evaluate.summary``, intervals with ``clip_stats.clip_intervals``. The
report's HTML and Markdown render these frames; they compute nothing themselves.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from robustmer.evaluate.attack_settings import Setting, select_setting, settings
from robustmer.evaluate.clip_stats import (
    clip_intervals,
    clip_mae,
    done_clips,
    done_ids,
    require_one_setting,
)
from robustmer.evaluate.resampling import DEFAULT_N_BOOT
from robustmer.evaluate.store import order_model_types
from robustmer.evaluate.summary import summarize_runs

TABLE1_METRICS: tuple[str, ...] = ("clean_mean_r", "clean_mae", "adv_mae", "delta_mae")
"""The per-run numbers Table 1 aggregates over seeds."""

SNR_COLUMNS: tuple[str, ...] = (
    "model_type", "n_runs", "n_clips", "snr_db_mean", "snr_db_std", "snr_db_lo", "snr_db_hi",
    "n_seeds", "n_snr", "n_zero_delta", "n_zero_delta_rose", "n_snr_missing",
    "n_zero_grad_start", "delta_l2_mean", "delta_linf_mean", "iterations_mean",
    "converged_frac", "snr_method")
"""The perceptibility table's columns (``snr_table``)."""


def done_runs(runs: pd.DataFrame | None, clips: pd.DataFrame) -> pd.DataFrame:
    """Per-run summaries (recomputed from ``clips``) of the runs whose status is ``done``."""
    per_run = summarize_runs(clips, runs)
    return per_run[per_run["status"] == "done"].reset_index(drop=True)


def table1(runs: pd.DataFrame | None, clips: pd.DataFrame, *, intervals: bool = True,
           level: float = 0.95, n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Table 1: one row per model type (reporting order) with ``n_runs`` and, for each of
    ``TABLE1_METRICS``, ``<metric>_mean`` and ``<metric>_std`` over the ``done`` runs (seeds),
    and (``intervals``) its ``level`` interval ``<metric>_lo`` / ``<metric>_hi`` from the clips
    (``clip_intervals``) with ``n_seeds``, ``n_clips`` (clip rows of done runs) and
    ``n_excluded`` (clip rows with a non-finite value, left out), and the methods in words
    (``mae_method``, ``r_method``).

    std is the sample standard deviation (ddof=1; NaN with a single run): a description of the
    spread between seeds, not an interval. Runs listed in ``runs`` but not ``done`` are counted
    in ``n_not_done``. ``clips`` and ``runs`` hold one attack setting (see
    ``table1_by_setting``).
    """
    require_one_setting(clips, "table1")
    require_one_setting(runs, "table1")
    per_run = summarize_runs(clips, runs)
    types = order_model_types(per_run["model_type"]) if len(per_run) else []
    ids = done_ids(per_run)
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
        if intervals:
            ct = clips[(clips["model_type"] == t) & clips["run_id"].astype(str).isin(ids)]
            ivs = clip_intervals(ct, TABLE1_METRICS, level=level, n_boot=n_boot, seed=seed)
            for m in TABLE1_METRICS:
                row[f"{m}_lo"], row[f"{m}_hi"] = ivs[m].low, ivs[m].high
            row["n_seeds"] = int(ct["seed"].nunique())
            row["n_clips"] = len(ct)
            row["n_excluded"] = max(iv.n_excluded for iv in ivs.values())
            row["mae_method"] = ivs["adv_mae"].method
            row["r_method"] = ivs["clean_mean_r"].method
        rows.append(row)
    cols = ["model_type", "n_runs", "n_not_done"] + [
        f"{m}_{s}" for m in TABLE1_METRICS for s in ("mean", "std")]
    if intervals:
        cols += [f"{m}_{s}" for m in TABLE1_METRICS for s in ("lo", "hi")] + [
            "n_seeds", "n_clips", "n_excluded", "mae_method", "r_method"]
    return pd.DataFrame(rows, columns=cols)


def table1_by_setting(runs: pd.DataFrame | None, clips: pd.DataFrame
                      ) -> list[tuple[Setting, pd.DataFrame]]:
    """Table 1 at every attack setting (runs without a setting, i.e. not done, count as
    ``n_not_done`` at each)."""
    found = settings(clips) or (settings(runs) if runs is not None else [])
    return [(st, table1(None if runs is None else select_setting(runs, st, keep_unset=True),
                        select_setting(clips, st)))
            for st in found]


def snr_by_setting(runs: pd.DataFrame | None, clips: pd.DataFrame
                   ) -> list[tuple[Setting, pd.DataFrame]]:
    """The perceptibility table at every attack setting."""
    return [(st, snr_table(None if runs is None else select_setting(runs, st, keep_unset=True),
                           select_setting(clips, st)))
            for st in settings(clips)]


def zero_delta(clips: pd.DataFrame) -> np.ndarray:
    """Per clip row: the attack returned δ = 0 (the clean input), i.e. an infinite SNR or a
    zero ‖δ‖∞ or ‖δ‖₂. The reference preset does this when no threshold after the first is
    passed (docs/attacks.md, "The reference preset")."""
    out = np.zeros(len(clips), dtype=bool)
    if "snr_db" in clips:
        out |= np.isposinf(clips["snr_db"].to_numpy(np.float64))
    for col in ("delta_linf", "delta_l2"):
        if col in clips:
            out |= clips[col].to_numpy(np.float64) == 0.0
    return out


def _flag(clips: pd.DataFrame, column: str) -> np.ndarray:
    """A boolean column that only some stores have (False where absent or empty)."""
    if column not in clips:
        return np.zeros(len(clips), dtype=bool)
    v = clips[column]
    if v.dtype == object:
        out: np.ndarray = v.astype(str).str.strip().str.lower().isin(
            ("true", "1", "yes")).to_numpy()
        return out
    flags: np.ndarray = v.fillna(False).astype(bool).to_numpy()
    return flags


def zero_delta_clips(clips: pd.DataFrame, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The clip rows (of ``done`` runs when ``runs`` is given) with δ = 0 (``zero_delta``),
    with their recomputed clean and attacked MAE (``mae_clean``, ``mae_adv``) and
    ``error_rose``: the logged attacked error is higher than the clean one although the
    returned input is the clean one, which happens when the logged prediction is not the one at
    the returned δ (the reference preset's ``log_prediction="last_evaluated"``)."""
    clips = done_clips(clips, runs)
    sel = clips[zero_delta(clips)]
    cols = ["run_id", "model_type", "seed", "attack", "domain", "eps", "clip_id"]
    out = sel[cols].reset_index(drop=True)
    out["mae_clean"] = clip_mae(sel, "clean") if len(sel) else np.array([])
    out["mae_adv"] = clip_mae(sel, "adv") if len(sel) else np.array([])
    out["error_rose"] = (out["mae_adv"] > out["mae_clean"] + 1e-12).astype(bool)
    return out


def snr_table(runs: pd.DataFrame | None, clips: pd.DataFrame, *, level: float = 0.95,
              n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Perceptibility per model type, every clip of its ``done`` runs accounted for: mean SNR
    (dB) over the ``n_snr`` clips with a finite SNR and its ``level`` interval (``snr_db_lo``,
    ``snr_db_hi``; ``clip_intervals``), the s.d. over seeds of each run's mean finite SNR (a
    description), and the clips left out of the SNR mean and why: ``n_zero_delta`` returned
    δ = 0 (infinite SNR; ``n_zero_delta_rose`` of them with a higher logged error, see
    ``zero_delta_clips``) and ``n_snr_missing`` without a recorded SNR. Also mean L2 / L∞
    norms, iterations, the fraction of clips where the attack converged, and
    ``n_zero_grad_start``: clips whose attack started from a seeded random point because the
    gradient at the clean input was zero (optional ``zero_grad_start`` column). One setting."""
    require_one_setting(clips, "snr_table")
    clips = done_clips(clips, runs)
    rows = []
    types = order_model_types(clips["model_type"]) if len(clips) else []
    for t in types:
        sel = clips[clips["model_type"] == t]
        snr = sel["snr_db"].to_numpy(np.float64)
        finite = np.isfinite(snr)
        per_run = (pd.Series(np.where(finite, snr, np.nan), index=sel.index)
                   .groupby(sel["run_id"].astype(str)).mean().to_numpy(np.float64))
        per_run = per_run[np.isfinite(per_run)]
        zero = zero_delta(sel)
        rose = zero_delta_clips(sel)["error_rose"].to_numpy(bool)
        iv = clip_intervals(sel[finite], ("snr_db",), level=level, n_boot=n_boot,
                            seed=seed)["snr_db"]

        def m(col: str, sel: pd.DataFrame = sel) -> float:
            v = sel[col].to_numpy(np.float64)
            v = v[np.isfinite(v)]
            return float(v.mean()) if len(v) else float("nan")

        rows.append({
            "model_type": t, "n_runs": int(sel["run_id"].nunique()), "n_clips": len(sel),
            "snr_db_mean": m("snr_db"),
            "snr_db_std": float(per_run.std(ddof=1)) if len(per_run) > 1 else float("nan"),
            "snr_db_lo": iv.low, "snr_db_hi": iv.high,
            "n_seeds": int(sel["seed"].nunique()), "n_snr": int(finite.sum()),
            "n_zero_delta": int(zero.sum()), "n_zero_delta_rose": int(rose.sum()),
            "n_snr_missing": int((~finite & ~zero).sum()),
            "n_zero_grad_start": int(_flag(sel, "zero_grad_start").sum()),
            "delta_l2_mean": m("delta_l2"), "delta_linf_mean": m("delta_linf"),
            "iterations_mean": m("iterations"),
            "converged_frac": float(_flag(sel, "converged").mean()),
            "snr_method": iv.method,
        })
    return pd.DataFrame(rows, columns=list(SNR_COLUMNS))
