"""Robustness curves over the attack budget ε: per setting and model type the mean over seeds
with its interval (``curve_points``), and a curve's summary number, the area under ΔMAE(log10 ε)
(``auc_log_eps``) per run (``run_auc``), per clip (``clip_auc``) and per model type
(``auc_table``), with the older Bonferroni tests on the areas (``robustness_curves``).

A curve is an attack and domain with two or more bounded budgets (``curve_groups``); the other
settings are shown on their own (``off_curve_settings``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from robustmer.errors import ConfigError
from robustmer.evaluate.attack_settings import Setting, select_setting, settings
from robustmer.evaluate.clip_stats import (
    boot_keys,
    clip_intervals,
    clip_mae,
    done_clips,
    done_ids,
    no_interval,
)
from robustmer.evaluate.intervals import cluster_bootstrap_ci
from robustmer.evaluate.paired_tests import (
    DEFAULT_COMPARISONS,
    Comparison,
    corrected_comparisons,
    pair_tests,
)
from robustmer.evaluate.resampling import DEFAULT_N_BOOT
from robustmer.evaluate.store import order_model_types
from robustmer.evaluate.summary import summarize_runs

CURVE_METRICS: tuple[str, ...] = ("delta_mae", "adv_mean_r")
"""The per-run numbers the robustness curves show against ε."""


def mean_ci(values: Sequence[float] | np.ndarray, level: float = 0.95
            ) -> tuple[float, float, float]:
    """Mean and the two-sided ``level`` t-interval of the mean, ``mean ± t(n-1) · sd / √n``
    (sd with ddof=1), over the finite values; the interval is NaN with fewer than 2 values."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    if len(v) < 2:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return m, m - half, m + half


def auc_log_eps(eps: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray
                ) -> float:
    """Area under ``values(ε)`` by the trapezoid rule over log10 ε, from the smallest to the
    largest budget (units: value x decades of ε). Each decade of budget weighs the same, so a
    geometric grid (1e-4, 1e-3, 1e-2, ...) is not dominated by its largest budget, as it would
    be with the area over ε itself. NaN when a value is NaN or fewer than 2 budgets are given.
    """
    e = np.asarray(eps, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if e.shape != y.shape or e.ndim != 1:
        raise ConfigError(f"eps and values must be equal-length vectors, got {e.shape}, "
                          f"{y.shape}")
    if not (np.isfinite(e).all() and (e > 0).all()):
        raise ConfigError(f"eps must be positive, finite budgets, got {e.tolist()}")
    if len(np.unique(e)) != len(e):
        raise ConfigError(f"eps must not repeat a budget, got {e.tolist()}")
    if len(e) < 2 or not np.isfinite(y).all():
        return float("nan")
    order = np.argsort(e)
    return float(np.trapezoid(y[order], np.log10(e[order])))


def curve_label(attack: str, domain: str, budgets: Sequence[float]) -> str:
    """``bim (spectrogram), eps 0.0001 to 0.01 (5 budgets)``: a curve's attack, domain and
    budget range."""
    bud = sorted(budgets)
    return f"{attack} ({domain}), eps {bud[0]:g} to {bud[-1]:g} ({len(bud)} budgets)"


@dataclass
class Curve:
    """The robustness curve of one attack and domain over its bounded budgets: per run the area
    under ΔMAE(ε) (``run_auc``), per model type its mean over seeds (``table``), and the paired
    tests between model types on the per-clip area (``tests``)."""

    attack: str
    domain: str
    budgets: list[float]
    run_auc: pd.DataFrame
    table: pd.DataFrame
    tests: list[Comparison]

    @property
    def label(self) -> str:
        """``bim (spectrogram), eps 0.0001 to 0.01 (5 budgets)``."""
        return curve_label(self.attack, self.domain, self.budgets)

    @property
    def decades(self) -> float:
        """The width of the curve's budget range in decades, log10(ε_max / ε_min)."""
        return float(np.log10(self.budgets[-1] / self.budgets[0]))


def curve_groups(frame: pd.DataFrame) -> list[tuple[str, str, list[float]]]:
    """``(attack, domain, budgets)`` of every attack and domain with at least two distinct
    finite budgets in ``frame`` (a curve); settings order."""
    by: dict[tuple[str, str], list[float]] = {}
    for attack, domain, eps in settings(frame):
        if np.isfinite(eps):
            by.setdefault((attack, domain), []).append(eps)
    return [(a, d, sorted(e)) for (a, d), e in by.items() if len(e) >= 2]


def off_curve_settings(frame: pd.DataFrame) -> list[Setting]:
    """The settings on no curve: presets without a bound (ε NaN) and any budget that is the only
    one of its attack and domain. The report shows them on their own, beside the curves."""
    on = {(a, d) for a, d, _ in curve_groups(frame)}
    return [st for st in settings(frame) if not (np.isfinite(st[2]) and st[:2] in on)]


def curve_points(per_run: pd.DataFrame, clips: pd.DataFrame, level: float = 0.95, *,
                 n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Per setting and model type: ``n`` runs (seeds) and, for each of ``CURVE_METRICS``, the
    mean over seeds (``<m>_mean``, from the ``done`` rows of ``per_run``, ``summarize_runs``)
    and its ``level`` interval from the clips of those runs (``<m>_lo``, ``<m>_hi``;
    ``clip_intervals``: ΔMAE by the seed-clustered bootstrap over clips, attacked mean r by
    recomputing r in every replicate, so inside [-1, 1]), with ``n_seeds`` and ``n_clips``."""
    done = per_run[per_run["status"] == "done"]
    clips_done = clips[clips["run_id"].astype(str).isin(done_ids(per_run))]
    rows = []
    for st in settings(done):
        sel = select_setting(done, st)
        c_st = select_setting(clips_done, st)
        for t in order_model_types(sel["model_type"]):
            one = sel[sel["model_type"] == t]
            ct = c_st[c_st["model_type"] == t]
            ivs = clip_intervals(ct, CURVE_METRICS, level=level, n_boot=n_boot, seed=seed)
            row: dict[str, object] = {"attack": st[0], "domain": st[1], "eps": st[2],
                                      "model_type": t, "n": len(one),
                                      "n_seeds": int(ct["seed"].nunique()),
                                      "n_clips": len(ct)}
            for m in CURVE_METRICS:
                v = one[m].to_numpy(np.float64)
                v = v[np.isfinite(v)]
                row[f"{m}_mean"] = float(v.mean()) if len(v) else float("nan")
                row[f"{m}_lo"], row[f"{m}_hi"] = ivs[m].low, ivs[m].high
            rows.append(row)
    cols = ["attack", "domain", "eps", "model_type", "n", "n_seeds", "n_clips"] + [
        f"{m}_{s}" for m in CURVE_METRICS for s in ("mean", "lo", "hi")]
    return pd.DataFrame(rows, columns=cols)


def run_auc(per_run: pd.DataFrame, attack: str, domain: str, budgets: Sequence[float]
            ) -> pd.DataFrame:
    """Per ``done`` run: the area under its ΔMAE(ε) curve over ``budgets`` (``auc_log_eps``)
    and ``mean_delta_mae`` = area / decades (the log-ε average of ΔMAE). A run without a finite
    ΔMAE at every budget gets NaN and a note (it leaves every AUC statistic)."""
    done = per_run[(per_run["status"] == "done") & (per_run["attack"] == attack)
                   & (per_run["domain"] == domain)]
    bud = np.asarray(sorted(budgets), dtype=np.float64)
    decades = float(np.log10(bud[-1] / bud[0]))
    rows = []
    for run_id, g in done.groupby("run_id", sort=False):
        vals = []
        for e in bud:
            hit = g[np.isclose(g["eps"].to_numpy(np.float64), e, rtol=1e-12, atol=0.0)]
            vals.append(float(hit["delta_mae"].iloc[0]) if len(hit) else float("nan"))
        missing = [f"{e:g}" for e, v in zip(bud, vals, strict=True) if not np.isfinite(v)]
        area = auc_log_eps(bud, np.asarray(vals))
        rows.append({"run_id": str(run_id), "model_type": str(g["model_type"].iloc[0]),
                     "seed": int(g["seed"].iloc[0]), "auc": area,
                     "mean_delta_mae": area / decades if decades > 0 else float("nan"),
                     "note": f"no ΔMAE at eps {', '.join(missing)}" if missing else ""})
    return pd.DataFrame(rows, columns=["run_id", "model_type", "seed", "auc", "mean_delta_mae",
                                       "note"])


def auc_table(per_run_auc: pd.DataFrame, level: float = 0.95,
              clip_values: pd.DataFrame | None = None, *, n_boot: int = DEFAULT_N_BOOT,
              seed: int = 0) -> pd.DataFrame:
    """Per model type: runs with an area, its mean and s.d. (ddof=1, a description) over seeds,
    the mean log-ε average ΔMAE, and (with ``clip_values``, the per-clip areas of ``clip_auc``)
    the ``level`` interval of the area by the seed-clustered bootstrap over clips
    (``auc_lo``, ``auc_hi``) with ``n_clips`` and ``n_seeds``; NaN bounds without them."""
    rows = []
    for t in order_model_types(per_run_auc["model_type"]) if len(per_run_auc) else []:
        v = per_run_auc.loc[per_run_auc["model_type"] == t, "auc"].to_numpy(np.float64)
        ok = v[np.isfinite(v)]
        iv = no_interval(level, "no per-clip areas")
        n_seeds = 0
        if clip_values is not None and len(clip_values):
            cv = clip_values[clip_values["model_type"] == t]
            cl, items = boot_keys(cv)
            iv = cluster_bootstrap_ci(cv["value"].to_numpy(np.float64), cl, items=items,
                                      n_boot=n_boot, level=level, seed=seed)
            n_seeds = int(cv["seed"].nunique())
        mean_d = per_run_auc.loc[per_run_auc["model_type"] == t, "mean_delta_mae"]
        rows.append({"model_type": t, "n_runs": len(ok), "n_left_out": int(len(v) - len(ok)),
                     "auc_mean": float(ok.mean()) if len(ok) else float("nan"),
                     "auc_std": float(ok.std(ddof=1)) if len(ok) > 1 else float("nan"),
                     "auc_lo": iv.low, "auc_hi": iv.high, "n_clips": iv.n, "n_seeds": n_seeds,
                     "mean_delta_mae": mean_ci(mean_d)[0]})
    return pd.DataFrame(rows, columns=["model_type", "n_runs", "n_left_out", "auc_mean",
                                       "auc_std", "auc_lo", "auc_hi", "n_clips", "n_seeds",
                                       "mean_delta_mae"])


def clip_auc(clips: pd.DataFrame, attack: str, domain: str, budgets: Sequence[float]
             ) -> pd.DataFrame:
    """Per run and clip: the area under the clip's ΔMAE(ε) = MAE_adv − MAE_clean (both
    ``per_sample_mae``) over ``budgets``, columns ``run_id, model_type, seed, clip_id, value``.
    A clip without a row at every budget is left out. Since a run's ΔMAE is the mean of its
    clips' ΔMAE and the area is linear in the values, a run's area is the mean of its clips'."""
    cols = ["run_id", "model_type", "seed", "clip_id", "value"]
    sel = clips[(clips["attack"] == attack) & (clips["domain"] == domain)]
    bud = np.asarray(sorted(budgets), dtype=np.float64)
    eps = sel["eps"].to_numpy(np.float64)
    idx = np.full(len(sel), -1)
    for k, e in enumerate(bud):
        idx[np.isclose(eps, e, rtol=1e-12, atol=0.0)] = k
    sel = sel[idx >= 0]
    if len(sel) == 0:
        return pd.DataFrame(columns=cols)
    frame = pd.DataFrame({"run_id": sel["run_id"].astype(str).to_numpy(),
                          "model_type": sel["model_type"].astype(str).to_numpy(),
                          "seed": sel["seed"].to_numpy(),
                          "clip_id": sel["clip_id"].astype(str).to_numpy(),
                          "k": idx[idx >= 0],
                          "d": clip_mae(sel, "adv") - clip_mae(sel, "clean")})
    wide = frame.pivot_table(index=["run_id", "model_type", "seed", "clip_id"], columns="k",
                             values="d", aggfunc="first")
    wide = wide.reindex(columns=range(len(bud))).dropna()
    logs = np.log10(bud)
    values = np.trapezoid(wide.to_numpy(np.float64), logs, axis=1)
    out = wide.index.to_frame(index=False)
    out["value"] = values
    return out[cols]


def robustness_curves(
    runs: pd.DataFrame | None,
    clips: pd.DataFrame,
    comparisons: Sequence[tuple[str, str]] = DEFAULT_COMPARISONS,
    *,
    alpha: float = 0.05,
    level: float = 0.95,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
) -> list[Curve]:
    """Every curve of a store (``curve_groups``): per run its area under ΔMAE(ε), per model
    type the mean over seeds with the clip-bootstrap interval (``auc_table``), and two-sided
    paired t-tests between model types of the per-clip area (``clip_auc``), paired by
    ``(seed, clip_id)`` as the per-ε tests are, Bonferroni over comparisons x curves (the
    report shows these tests inside ``planned_family`` instead). Empty when no attack has two
    bounded budgets."""
    clips = done_clips(clips, runs)
    per_run = summarize_runs(clips, runs)
    groups = curve_groups(clips)
    raw, parts = [], []
    for attack, domain, budgets in groups:
        ra = run_auc(per_run, attack, domain, budgets)
        values = clip_auc(clips, attack, domain, budgets)
        raw.append(pair_tests(values, comparisons, "(seed, clip) areas"))
        parts.append((attack, domain, budgets, ra, values))
    corrected = corrected_comparisons(raw, alpha)
    return [Curve(a, d, b, ra, auc_table(ra, level, values, n_boot=n_boot, seed=seed), tests)
            for (a, d, b, ra, values), tests in zip(parts, corrected, strict=True)]
