"""Statistics of a study, from the results store alone: Table 1 (mean over seeds with a
seed-clustered bootstrap interval over clips), the perceptibility (SNR) table with every clip
accounted for, each per attack setting; the robustness curves over the attack budget ε with their
summary number, the area under the ΔMAE(ε) curve (``auc_log_eps``); and the report's one family of
planned comparisons (``planned_family``: the store's pairs and adversarially trained vs plain, at
every setting and on every curve's area, Holm-corrected, with effect sizes and their intervals).

The per-run numbers are recomputed from ``clips.csv`` with ``evaluate.summary`` (hence with
``regression_metrics``), the per-clip MAE with ``per_sample_mae``; the t-test itself is
``scipy.stats.ttest_rel``; intervals, effect sizes and the Holm correction come from
``evaluate.intervals``. The older per-setting Bonferroni functions (``compare_model_types``,
``compare_by_setting``, ``Curve.tests``) are kept for callers of the library; the report shows
``planned_family``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats

from robustmer.errors import ConfigError, DatasetError
from robustmer.evaluate.attack_settings import (
    Setting,
    select_setting,
    setting_key,
    setting_label,
    settings,
)
from robustmer.evaluate.correlations import bootstrap_correlation_ci
from robustmer.evaluate.intervals import (
    PairedEffect,
    cluster_bootstrap_ci,
    family_correction,
    paired_effect,
)
from robustmer.evaluate.metrics import per_sample_mae
from robustmer.evaluate.resampling import DEFAULT_N_BOOT, Interval
from robustmer.evaluate.store import order_model_types, output_columns, output_names
from robustmer.evaluate.summary import summarize_runs
from robustmer.models.types import PAPER_COMPARISONS, REGISTRY, default_comparisons

DEFAULT_COMPARISONS: tuple[tuple[str, str], ...] = PAPER_COMPARISONS
"""The paper's planned comparisons of per-clip adversarial MAE (``models.types``); a store
whose ``config.yaml`` names its own (``comparisons``) uses those (:func:`store_comparisons`)."""


def store_comparisons(config: dict[str, object], types: Sequence[str]) -> list[tuple[str, str]]:
    """The planned comparisons of a store: its ``config.yaml``'s ``comparisons`` when it names
    them (a study writes them), else ``default_comparisons`` of the types present."""
    raw = config.get("comparisons")
    if isinstance(raw, list) and raw:
        return [(str(a), str(b)) for a, b in raw]  # type: ignore[misc]
    return default_comparisons(list(types))


TABLE1_METRICS: tuple[str, ...] = ("clean_mean_r", "clean_mae", "adv_mae", "delta_mae")
"""The per-run numbers Table 1 aggregates over seeds."""


def _one_setting(frame: pd.DataFrame | None, what: str) -> None:
    """Refuse a frame that mixes attack settings: its rows would be pooled silently."""
    if frame is None:
        return
    found = settings(frame)
    if len(found) > 1:
        raise ConfigError(
            f"{what}: the table holds {len(found)} attack settings "
            f"({'; '.join(setting_label(x) for x in found)}); select one with "
            "attack_settings.select_setting or use the *_by_setting functions")


def done_runs(runs: pd.DataFrame | None, clips: pd.DataFrame) -> pd.DataFrame:
    """Per-run summaries (recomputed from ``clips``) of the runs whose status is ``done``."""
    per_run = summarize_runs(clips, runs)
    return per_run[per_run["status"] == "done"].reset_index(drop=True)


INTERVAL_WORDS = ("crossed bootstrap over seeds and clips, which draws seeds and clip ids "
                  "independently with replacement since every seed is tested on the same clips")
"""How the report's intervals of a per-clip quantity are made, in words (``clip_intervals``)."""

INTERVAL_SHORT = "crossed bootstrap over seeds and clips"
"""``INTERVAL_WORDS`` for a table's caption (the statement above the tables has the long form)."""

CLIP_QUANTITIES: tuple[str, ...] = ("clean_mean_r", "adv_mean_r", "clean_mae", "adv_mae",
                                    "delta_mae", "snr_db")
"""The quantities ``clip_intervals`` knows; the ``*_mean_r`` ones are correlations."""


def _boot_keys(clips: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """Clusters (seeds) and items (clip ids) for the bootstrap: the crossed scheme needs one
    row per (seed, clip); two runs of a type with one seed fall back to the two-stage scheme."""
    seeds = clips["seed"].to_numpy()
    ids = clips["clip_id"].astype(str).to_numpy()
    if clips.duplicated(subset=["seed", "clip_id"]).any():
        return seeds, None
    return seeds, ids


def _no_interval(level: float, why: str) -> Interval:
    return Interval(float("nan"), float("nan"), float("nan"), 0, 0, why, level)


def clip_intervals(clips: pd.DataFrame, quantities: Sequence[str] = CLIP_QUANTITIES, *,
                   level: float = 0.95, n_boot: int = DEFAULT_N_BOOT, seed: int = 0
                   ) -> dict[str, Interval]:
    """The interval of each of ``quantities`` (``CLIP_QUANTITIES``) from the clip rows of one
    model type at one attack setting, resampling clips with the seeds as clusters (the crossed
    bootstrap of ``intervals``; ``INTERVAL_WORDS``), each with its N clips and N seeds.

    MAE, ΔMAE (per clip: ``per_sample_mae`` after minus before) and SNR: the mean of the
    per-clip values (SNR over the clips with a finite SNR: δ = 0 gives +inf, left out and
    counted in ``n_excluded``). Mean r: the mean-over-outputs Pearson r recomputed in every
    replicate (``bootstrap_correlation_ci``), so its interval stays inside [-1, 1]; its
    estimate is the mean over seeds of each seed's r, as Table 1 averages runs."""
    unknown = [q for q in quantities if q not in CLIP_QUANTITIES]
    if unknown:
        raise ConfigError(f"quantities {unknown}: expected some of {', '.join(CLIP_QUANTITIES)}")
    if len(clips) == 0:
        return {q: _no_interval(level, "no clips") for q in quantities}
    cl, items = _boot_keys(clips)
    boot = {"items": items, "n_boot": n_boot, "level": level, "seed": seed}
    names = output_names(clips, "y_")
    y = clips[list(output_columns("y_", names))].to_numpy(np.float64)
    out: dict[str, Interval] = {}
    for q in quantities:
        if q.endswith("_mean_r"):
            prefix = "pred_" if q.startswith("clean") else "adv_"
            pred = clips[list(output_columns(prefix, names))].to_numpy(np.float64)
            out[q] = bootstrap_correlation_ci(y, pred, cl, **boot)
            continue
        if q == "snr_db":
            v = clips["snr_db"].to_numpy(np.float64)
        elif q == "delta_mae":
            v = clip_mae(clips, "adv") - clip_mae(clips, "clean")
        else:
            v = clip_mae(clips, "clean" if q == "clean_mae" else "adv")
        out[q] = cluster_bootstrap_ci(v, cl, **boot)
    return out


def _done_ids(per_run: pd.DataFrame) -> set[str]:
    return set(per_run.loc[per_run["status"] == "done", "run_id"].astype(str))


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
    _one_setting(clips, "table1")
    _one_setting(runs, "table1")
    per_run = summarize_runs(clips, runs)
    types = order_model_types(per_run["model_type"]) if len(per_run) else []
    done_ids = _done_ids(per_run)
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
            ct = clips[(clips["model_type"] == t) & clips["run_id"].astype(str).isin(done_ids)]
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


def clip_mae(clips: pd.DataFrame, which: str = "adv") -> np.ndarray:
    """Per-clip MAE of the clean (``which="clean"``) or adversarial predictions, recomputed from
    the ``y_*`` and ``pred_*`` / ``adv_*`` columns with ``per_sample_mae``."""
    prefix = {"adv": "adv_", "clean": "pred_"}.get(which)
    if prefix is None:
        raise ConfigError(f"which={which!r}: expected 'adv' or 'clean'")
    names = output_names(clips, "y_")
    return per_sample_mae(clips[list(output_columns("y_", names))].to_numpy(np.float64),
                          clips[list(output_columns(prefix, names))].to_numpy(np.float64))


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


def _check_pairable(sel: pd.DataFrame, model_type: str) -> None:
    """Refuse a model type with two rows for one ``(seed, clip_id)``: the pairing would be
    ambiguous."""
    dup = sel.duplicated(subset=["seed", "clip_id"])
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise DatasetError(
            f"clips.csv: model type {model_type} has more than one row for seed "
            f"{sel['seed'].iloc[i]}, clip {sel['clip_id'].iloc[i]}: cannot pair by "
            "(seed, clip_id)")


def paired_clip_values(clips: pd.DataFrame, a: str, b: str, which: str = "adv"
                       ) -> pd.DataFrame:
    """Per-clip MAE of model types ``a`` and ``b`` paired by ``(seed, clip_id)`` (inner join);
    columns ``seed, clip_id, a, b``. Raises ``DatasetError`` when a model type has two runs with
    the same seed (the pairing would be ambiguous)."""
    frames = []
    for t in (a, b):
        sel = clips[clips["model_type"] == t]
        _check_pairable(sel, t)
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


_Raw = tuple[str, str, PairedTest | None, str, float, float]


def _done_clips(clips: pd.DataFrame, runs: pd.DataFrame | None) -> pd.DataFrame:
    if runs is not None and len(clips):
        done = set(runs.loc[runs["status"] == "done", "run_id"].astype(str))
        clips = clips[clips["run_id"].astype(str).isin(done)]
    return clips


def _paired(values: pd.DataFrame, a: str, b: str, unit: str
            ) -> tuple[pd.DataFrame | None, str]:
    """Rows of model types ``a`` and ``b`` of ``values`` (columns ``model_type, seed, clip_id,
    value``) paired by ``(seed, clip_id)``: a frame with ``seed, clip_id, a, b`` and a note on
    rows left without a partner, or ``None`` and why (a missing type, fewer than 2 pairs)."""
    present = set(values["model_type"]) if len(values) else set()
    missing = [t for t in dict.fromkeys((a, b)) if t not in present]
    if missing:
        return None, f"skipped: no results for {', '.join(missing)}"
    frames = []
    for t in (a, b):
        sel = values[values["model_type"] == t]
        _check_pairable(sel, t)
        frames.append(sel[["seed", "clip_id", "value"]].rename(columns={"value": t}))
    pairs = frames[0].merge(frames[1], on=["seed", "clip_id"], how="inner",
                            suffixes=("_a", "_b"))
    col_a, col_b = (f"{a}_a", f"{b}_b") if a == b else (a, b)
    if len(pairs) < 2:
        return None, f"skipped: only {len(pairs)} (seed, clip) pairs in common"
    n_a = int((values["model_type"] == a).sum())
    n_b = int((values["model_type"] == b).sum())
    note = ""
    if len(pairs) < max(n_a, n_b):
        note = (f"{max(n_a, n_b) - len(pairs)} {unit} without a partner left out "
                f"({a}: {n_a}, {b}: {n_b} rows)")
    pairs = pairs.rename(columns={col_a: "a", col_b: "b"})[["seed", "clip_id", "a", "b"]]
    return pairs.sort_values(["seed", "clip_id"]).reset_index(drop=True), note


def _pair_tests(values: pd.DataFrame, comparisons: Sequence[tuple[str, str]], unit: str
                ) -> list[_Raw]:
    """Paired t-tests on ``values`` (columns ``model_type, seed, clip_id, value``), pairing
    rows of two model types by ``(seed, clip_id)``; a missing type or < 2 pairs is a skip."""
    raw: list[_Raw] = []
    for a, b in comparisons:
        pairs, note = _paired(values, a, b, unit)
        if pairs is None:
            raw.append((a, b, None, note, float("nan"), float("nan")))
            continue
        raw.append((a, b, paired_ttest(pairs["a"], pairs["b"]), note,
                    float(pairs["a"].mean()), float(pairs["b"].mean())))
    return raw


def _corrected(groups: Sequence[Sequence[_Raw]], alpha: float) -> list[list[Comparison]]:
    """Bonferroni over every test that ran in all ``groups`` together (one family)."""
    run_p = [r[2].p for g in groups for r in g if r[2] is not None]
    level, decisions = bonferroni(run_p, alpha)
    it = iter(decisions)
    out: list[list[Comparison]] = []
    for g in groups:
        cur = []
        for a, b, test, note, ma, mb in g:
            if test is None:
                cur.append(Comparison(a, b, 0, float("nan"), 0, float("nan"), ma, mb,
                                      float("nan"), level, False, note))
            else:
                cur.append(Comparison(a, b, test.n, test.t, test.df, test.p, ma, mb, test.d_z,
                                      level, next(it), note))
        out.append(cur)
    return out


def _clip_values(clips: pd.DataFrame, which: str) -> pd.DataFrame:
    return pd.DataFrame({"model_type": clips["model_type"].astype(str).to_numpy(),
                         "seed": clips["seed"].to_numpy(),
                         "clip_id": clips["clip_id"].astype(str).to_numpy(),
                         "value": clip_mae(clips, which) if len(clips) else np.array([])})


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
    note. With ``runs``, only clips of ``done`` runs are used. ``clips`` holds one attack
    setting (see ``compare_by_setting``).
    """
    _one_setting(clips, "compare_model_types")
    clips = _done_clips(clips, runs)
    raw = _pair_tests(_clip_values(clips, which), comparisons, "clip rows")
    return _corrected([raw], alpha)[0]


def compare_by_setting(
    clips: pd.DataFrame,
    comparisons: Sequence[tuple[str, str]] = DEFAULT_COMPARISONS,
    *,
    alpha: float = 0.05,
    which: str = "adv",
    runs: pd.DataFrame | None = None,
) -> list[tuple[Setting, list[Comparison]]]:
    """``compare_model_types`` at every attack setting (``attack_settings.settings`` order),
    with one Bonferroni family over comparisons x settings: each test is significant when
    ``p < alpha / m``, m = the number of tests that could be run at all settings together."""
    found = settings(clips)  # before dropping runs that are not done: one entry per setting
    clips = _done_clips(clips, runs)
    groups = [(st, _pair_tests(_clip_values(select_setting(clips, st), which), comparisons,
                               "clip rows"))
              for st in found]
    corrected = _corrected([g for _, g in groups], alpha)
    return [(st, c) for (st, _), c in zip(groups, corrected, strict=True)]


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
        return v.astype(str).str.strip().str.lower().isin(("true", "1", "yes")).to_numpy()
    return v.fillna(False).astype(bool).to_numpy()


def zero_delta_clips(clips: pd.DataFrame, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The clip rows (of ``done`` runs when ``runs`` is given) with δ = 0 (``zero_delta``),
    with their recomputed clean and attacked MAE (``mae_clean``, ``mae_adv``) and
    ``error_rose``: the logged attacked error is higher than the clean one although the
    returned input is the clean one, which happens when the logged prediction is not the one at
    the returned δ (the reference preset's ``log_prediction="last_evaluated"``)."""
    clips = _done_clips(clips, runs)
    sel = clips[zero_delta(clips)]
    cols = ["run_id", "model_type", "seed", "attack", "domain", "eps", "clip_id"]
    out = sel[cols].reset_index(drop=True)
    out["mae_clean"] = clip_mae(sel, "clean") if len(sel) else np.array([])
    out["mae_adv"] = clip_mae(sel, "adv") if len(sel) else np.array([])
    out["error_rose"] = (out["mae_adv"] > out["mae_clean"] + 1e-12).astype(bool)
    return out


SNR_COLUMNS: tuple[str, ...] = (
    "model_type", "n_runs", "n_clips", "snr_db_mean", "snr_db_std", "snr_db_lo", "snr_db_hi",
    "n_seeds", "n_snr", "n_zero_delta", "n_zero_delta_rose", "n_snr_missing",
    "n_zero_grad_start", "delta_l2_mean", "delta_linf_mean", "iterations_mean",
    "converged_frac", "snr_method")
"""The perceptibility table's columns (``snr_table``)."""


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
    _one_setting(clips, "snr_table")
    clips = _done_clips(clips, runs)
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


# --- robustness curves over the attack budget ------------------------------------------------

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
    done_clips = clips[clips["run_id"].astype(str).isin(_done_ids(per_run))]
    rows = []
    for st in settings(done):
        sel = select_setting(done, st)
        c_st = select_setting(done_clips, st)
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
        iv = _no_interval(level, "no per-clip areas")
        n_seeds = 0
        if clip_values is not None and len(clip_values):
            cv = clip_values[clip_values["model_type"] == t]
            cl, items = _boot_keys(cv)
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
    clips = _done_clips(clips, runs)
    per_run = summarize_runs(clips, runs)
    groups = curve_groups(clips)
    raw, parts = [], []
    for attack, domain, budgets in groups:
        ra = run_auc(per_run, attack, domain, budgets)
        values = clip_auc(clips, attack, domain, budgets)
        raw.append(_pair_tests(values, comparisons, "(seed, clip) areas"))
        parts.append((attack, domain, budgets, ra, values))
    corrected = _corrected(raw, alpha)
    return [Curve(a, d, b, ra, auc_table(ra, level, values, n_boot=n_boot, seed=seed), tests)
            for (a, d, b, ra, values), tests in zip(parts, corrected, strict=True)]


# --- the report's one family of planned comparisons ------------------------------------------

PLANNED = "planned"
ADVERSARIAL = "adversarial training"
"""Why a pair is in the family: the store's planned comparisons, or adversarially trained vs
plain of the same head (``adversarial_comparisons``)."""

FAMILY_METHODS: tuple[str, ...] = ("holm", "bonferroni")


def adversarial_comparisons(types: Sequence[str]) -> list[tuple[str, str]]:
    """``(adversarially trained, plain)`` for every adversarially trained type among ``types``
    whose plain counterpart (the registered type with the same head ``kind`` and
    ``adversarial=False``) is also present, read from the model-type registry."""
    present = list(dict.fromkeys(str(t) for t in types))
    out = []
    for name in order_model_types(present):
        mt = REGISTRY.get(name)
        kind = getattr(mt, "kind", None)
        if mt is None or not mt.adversarial or kind is None:
            continue
        plain = next((p.name for p in REGISTRY.values()
                      if p.name in present and not p.adversarial
                      and getattr(p, "kind", None) == kind), None)
        if plain is not None:
            out.append((name, plain))
    return out


@dataclass(frozen=True)
class PlannedTest:
    """One test of the family: ``a`` vs ``b`` (``why``: ``PLANNED`` or ``ADVERSARIAL``) on the
    per-clip attacked MAE at one attack ``setting`` (``scope="setting"``) or on the per-clip area
    under ΔMAE(log10 ε) of one curve (``scope="area"``), labelled ``label``; ``effect`` is the
    paired comparison (``intervals.paired_effect``: mean difference a − b and Cohen's d_z with
    their intervals, t, df, p, N pairs and seeds), ``None`` when skipped (``note`` says why);
    ``p_adjusted`` and ``significant`` are the family's correction."""

    a: str
    b: str
    why: str
    scope: str
    label: str
    setting: Setting | None = None
    effect: PairedEffect | None = None
    note: str = ""
    p_adjusted: float = float("nan")
    significant: bool = False

    @property
    def skipped(self) -> bool:
        """True when the test could not be run (see ``note``)."""
        return self.effect is None

    @property
    def interval_excludes_zero(self) -> bool:
        """The bootstrap interval of the mean difference lies entirely above or below 0."""
        if self.effect is None:
            return False
        iv = self.effect.mean_diff_bootstrap
        return bool(np.isfinite(iv.low) and np.isfinite(iv.high) and (iv.low > 0 or iv.high < 0))

    @property
    def agrees(self) -> bool:
        """The test's decision and the seed-clustered interval tell the same story (significant
        and the interval excludes 0, or neither)."""
        return self.skipped or self.significant == self.interval_excludes_zero

    @property
    def formatted(self) -> str:
        """``t(df)=t.tt`` or ``n/a``."""
        e = self.effect
        return "n/a" if e is None else f"t({e.df})={e.t:.2f}"

    def to_dict(self) -> dict[str, object]:
        """Flat dict (for JSON / tables)."""
        d: dict[str, object] = {"a": self.a, "b": self.b, "why": self.why, "scope": self.scope,
                                "label": self.label, "note": self.note,
                                "p_adjusted": self.p_adjusted, "significant": self.significant}
        if self.effect is not None:
            d.update(self.effect.to_dict())
        return d


@dataclass(frozen=True)
class PlannedFamily:
    """The report's one family of planned comparisons (``planned_family``): its ``tests``, the
    ``pairs`` ``(a, b, why)``, the ``settings`` and ``curves`` (labels) they were run at,
    the correction ``method`` at ``alpha`` over ``m`` tests that ran, and the interval
    ``level`` and bootstrap replicates."""

    tests: list[PlannedTest]
    pairs: list[tuple[str, str, str]]
    settings: list[Setting]
    curves: list[str]
    method: str
    alpha: float
    m: int
    level: float
    n_boot: int

    def for_setting(self, setting: Setting) -> list[PlannedTest]:
        """The tests at one attack setting (NaN-safe ε match)."""
        key = setting_key(setting)
        return [t for t in self.tests
                if t.scope == "setting" and t.setting is not None
                and setting_key(t.setting) == key]

    @property
    def areas(self) -> list[PlannedTest]:
        """The tests on the curves' areas."""
        return [t for t in self.tests if t.scope == "area"]

    def statement(self) -> str:
        """The family in one paragraph of plain text: pairs, where, correction, what is shown."""
        if not self.pairs:
            return ("No planned comparison: the store has fewer than two model types to "
                    "compare.")
        method = {"holm": "Holm's step-down correction",
                  "bonferroni": "the Bonferroni correction"}[self.method]
        planned = [f"{a} vs {b}" for a, b, w in self.pairs if w == PLANNED]
        adv = [f"{a} vs {b}" for a, b, w in self.pairs if w == ADVERSARIAL]
        pairs = "; ".join(filter(None, [
            f"planned: {', '.join(planned)}" if planned else "",
            f"adversarially trained vs plain (same head): {', '.join(adv)}" if adv else ""]))
        n_st = len(self.settings)
        where = [f"the per-clip attacked MAE at {'each of the ' if n_st > 1 else 'the '}"
                 f"{n_st} attack setting{'s' if n_st > 1 else ''} "
                 f"({'; '.join(setting_label(st) for st in self.settings)})"]
        if self.curves:
            where.append("the per-clip area under ΔMAE(log10 ε) of "
                         + "; ".join(self.curves))
        ran = sum(not t.skipped for t in self.tests)
        skipped = len(self.tests) - ran
        level = f"{100 * self.level:g} %"
        if ran == 0:
            return (f"No planned comparison could be run: the pairs ({pairs}) lack results "
                    "(the reasons are in the table).")
        return (f"One family of planned comparisons: {ran} two-sided paired t-tests "
                f"(scipy.stats.ttest_rel, pairing the two model types' values by seed and "
                f"clip), {method} over all m = {self.m} at α = {self.alpha:g} (family-wise "
                f"error rate). Pairs ({len(self.pairs)}): {pairs}. Tested on "
                + " and on ".join(where) + ". "
                + (f"{skipped} test(s) could not be run and are listed with the reason; they "
                   "do not count in m. " if skipped else "")
                + f"Beside every p: the mean difference a − b with its {level} interval from "
                f"the {INTERVAL_WORDS} ({self.n_boot} replicates), Cohen's d_z = mean(a − b) / "
                "s.d.(a − b) with its interval from the same bootstrap, t, df, N pairs and "
                "N seeds. The t-test treats the (seed, clip) pairs as independent; the "
                "bootstrap interval does not, and where the two disagree the table says so.")


def planned_family(
    clips: pd.DataFrame,
    runs: pd.DataFrame | None = None,
    comparisons: Sequence[tuple[str, str]] | None = None,
    *,
    adversarial: bool = True,
    alpha: float = 0.05,
    method: str = "holm",
    level: float = 0.95,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
) -> PlannedFamily:
    """The report's one family of planned comparisons of a store.

    Pairs: ``comparisons`` (default ``default_comparisons`` of the types present; a store's own
    come from ``store_comparisons``) and, with ``adversarial``, every adversarially trained type
    vs its plain counterpart (``adversarial_comparisons``) not already among them. Each pair is
    tested on the per-clip attacked MAE at every attack setting (bounded budgets and presets)
    and on the per-clip area under ΔMAE(log10 ε) of every curve (``clip_auc``), pairing rows by
    ``(seed, clip_id)`` over the clips of ``done`` runs, with ``intervals.paired_effect`` (t-test,
    mean difference and d_z with crossed-bootstrap intervals, clusters = seeds, items = clips).
    All p-values go through one correction (``intervals.family_correction``, Holm by default):
    the area tests and the per-setting tests are one family, so no test is significant at a
    laxer level than another. A skipped test (a type missing, < 2 pairs) gets a note and does
    not count in m."""
    if method not in FAMILY_METHODS:
        raise ConfigError(f"method={method!r}: expected one of {', '.join(FAMILY_METHODS)}")
    found = settings(clips)
    done = _done_clips(clips, runs)
    types = order_model_types(list(done["model_type"].astype(str))
                              + ([] if runs is None else list(runs["model_type"].astype(str))))
    planned = (list(comparisons) if comparisons is not None
               else default_comparisons(types))
    pairs = [(str(a), str(b), PLANNED) for a, b in planned]
    seen = {frozenset((a, b)) for a, b, _ in pairs}
    if adversarial:
        for a, b in adversarial_comparisons(types):
            if frozenset((a, b)) not in seen:
                pairs.append((a, b, ADVERSARIAL))
                seen.add(frozenset((a, b)))
    tests: list[PlannedTest] = []

    def run(values: pd.DataFrame, scope: str, label: str, st: Setting | None,
            unit: str) -> None:
        for a, b, why in pairs:
            paired, note = _paired(values, a, b, unit)
            effect = None
            if paired is not None:
                try:
                    effect = paired_effect(paired["a"], paired["b"], paired["seed"], level,
                                           items=paired["clip_id"], n_boot=n_boot, seed=seed)
                except ConfigError as err:  # fewer than 2 finite pairs
                    note = f"skipped: {err}"
                if effect is not None and effect.n_excluded:
                    note = "; ".join(filter(None, [note, f"{effect.n_excluded} pairs with a "
                                                   "non-finite value left out"]))
            tests.append(PlannedTest(a, b, why, scope, label, st, effect, note))

    for st in found:
        run(_clip_values(select_setting(done, st), "adv"), "setting", setting_label(st), st,
            "clip rows")
    curves = []
    for attack, domain, budgets in curve_groups(done):
        label = curve_label(attack, domain, budgets)
        curves.append(label)
        run(clip_auc(done, attack, domain, budgets), "area", f"area: {label}", None,
            "(seed, clip) areas")
    fam = family_correction([t.effect.p if t.effect is not None else np.nan for t in tests],
                            method, alpha)
    tests = [replace(t, p_adjusted=float(fam.adjusted[i]), significant=bool(fam.reject[i]))
             for i, t in enumerate(tests)]
    return PlannedFamily(tests=tests, pairs=pairs, settings=list(found), curves=curves,
                         method=method, alpha=float(alpha), m=fam.m, level=level,
                         n_boot=n_boot)
