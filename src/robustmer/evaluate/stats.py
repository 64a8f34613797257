"""Statistics of a study, from the results store alone: Table 1 (mean ± std over seeds),
paired t-tests with Bonferroni correction and Cohen's d_z, and the perceptibility (SNR) table,
each per attack setting; and the robustness curves over the attack budget ε with their summary
number, the area under the ΔMAE(ε) curve (``auc_log_eps``), and paired tests on it.

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
from robustmer.evaluate.store import (
    Setting,
    order_model_types,
    output_columns,
    output_names,
    select_setting,
    setting_label,
    settings,
)
from robustmer.evaluate.summary import summarize_runs
from robustmer.models.types import PAPER_COMPARISONS, default_comparisons

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
            "store.select_setting or use the *_by_setting functions")


def done_runs(runs: pd.DataFrame | None, clips: pd.DataFrame) -> pd.DataFrame:
    """Per-run summaries (recomputed from ``clips``) of the runs whose status is ``done``."""
    per_run = summarize_runs(clips, runs)
    return per_run[per_run["status"] == "done"].reset_index(drop=True)


def table1(runs: pd.DataFrame | None, clips: pd.DataFrame) -> pd.DataFrame:
    """Table 1: one row per model type (reporting order) with ``n_runs`` and, for each of
    ``TABLE1_METRICS``, ``<metric>_mean`` and ``<metric>_std`` over the ``done`` runs (seeds).

    std is the sample standard deviation (ddof=1; NaN with a single run). Runs listed in
    ``runs`` but not ``done`` are counted in ``n_not_done``. ``clips`` and ``runs`` hold one
    attack setting (see ``table1_by_setting``).
    """
    _one_setting(clips, "table1")
    _one_setting(runs, "table1")
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


def _pair_tests(values: pd.DataFrame, comparisons: Sequence[tuple[str, str]], unit: str
                ) -> list[_Raw]:
    """Paired t-tests on ``values`` (columns ``model_type, seed, clip_id, value``), pairing
    rows of two model types by ``(seed, clip_id)``; a missing type or < 2 pairs is a skip."""
    present = set(values["model_type"]) if len(values) else set()
    raw: list[_Raw] = []
    for a, b in comparisons:
        missing = [t for t in (a, b) if t not in present]
        if missing:
            raw.append((a, b, None, f"skipped: no results for {', '.join(missing)}",
                        float("nan"), float("nan")))
            continue
        frames = []
        for t in (a, b):
            sel = values[values["model_type"] == t]
            _check_pairable(sel, t)
            frames.append(sel[["seed", "clip_id", "value"]].rename(columns={"value": t}))
        pairs = frames[0].merge(frames[1], on=["seed", "clip_id"], how="inner",
                                suffixes=("_a", "_b"))
        col_a, col_b = (f"{a}_a", f"{b}_b") if a == b else (a, b)
        if len(pairs) < 2:
            raw.append((a, b, None, f"skipped: only {len(pairs)} (seed, clip) pairs in common",
                        float("nan"), float("nan")))
            continue
        n_a = int((values["model_type"] == a).sum())
        n_b = int((values["model_type"] == b).sum())
        note = ""
        if len(pairs) < max(n_a, n_b):
            note = (f"{max(n_a, n_b) - len(pairs)} {unit} without a partner left out "
                    f"({a}: {n_a}, {b}: {n_b} rows)")
        raw.append((a, b, paired_ttest(pairs[col_a], pairs[col_b]), note,
                    float(pairs[col_a].mean()), float(pairs[col_b].mean())))
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
    """``compare_model_types`` at every attack setting (``store.settings`` order), with one
    Bonferroni family over comparisons x settings: each test is significant when
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


def snr_table(runs: pd.DataFrame | None, clips: pd.DataFrame) -> pd.DataFrame:
    """Perceptibility per model type: mean SNR (dB) of the perturbations pooled over clips of
    ``done`` runs, the std of the per-run mean SNR over seeds, and mean L2 / L∞ norms,
    iterations and the fraction of clips where the attack converged. One attack setting."""
    _one_setting(clips, "snr_table")
    clips = _done_clips(clips, runs)
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
        return (f"{self.attack} ({self.domain}), eps {self.budgets[0]:g} to "
                f"{self.budgets[-1]:g} ({len(self.budgets)} budgets)")

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


def curve_points(per_run: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Per setting and model type: ``n`` runs (seeds) and, for each of ``CURVE_METRICS``, the
    mean over seeds and its ``level`` t-interval (``<m>_mean``, ``<m>_lo``, ``<m>_hi``), from
    the ``done`` rows of ``per_run`` (``summarize_runs``)."""
    done = per_run[per_run["status"] == "done"]
    rows = []
    for st in settings(done):
        sel = select_setting(done, st)
        for t in order_model_types(sel["model_type"]):
            one = sel[sel["model_type"] == t]
            row: dict[str, object] = {"attack": st[0], "domain": st[1], "eps": st[2],
                                      "model_type": t, "n": len(one)}
            for m in CURVE_METRICS:
                row[f"{m}_mean"], row[f"{m}_lo"], row[f"{m}_hi"] = mean_ci(one[m], level)
            rows.append(row)
    cols = ["attack", "domain", "eps", "model_type", "n"] + [
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


def auc_table(per_run_auc: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Per model type: runs with an area, its mean ± std (ddof=1) and ``level`` interval over
    seeds, and the mean log-ε average ΔMAE."""
    rows = []
    for t in order_model_types(per_run_auc["model_type"]) if len(per_run_auc) else []:
        v = per_run_auc.loc[per_run_auc["model_type"] == t, "auc"].to_numpy(np.float64)
        ok = v[np.isfinite(v)]
        m, lo, hi = mean_ci(ok, level)
        mean_d = per_run_auc.loc[per_run_auc["model_type"] == t, "mean_delta_mae"]
        rows.append({"model_type": t, "n_runs": len(ok), "n_left_out": int(len(v) - len(ok)),
                     "auc_mean": m, "auc_std": float(ok.std(ddof=1)) if len(ok) > 1
                     else float("nan"), "auc_lo": lo, "auc_hi": hi,
                     "mean_delta_mae": mean_ci(mean_d)[0]})
    return pd.DataFrame(rows, columns=["model_type", "n_runs", "n_left_out", "auc_mean",
                                       "auc_std", "auc_lo", "auc_hi", "mean_delta_mae"])


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
) -> list[Curve]:
    """Every curve of a store (``curve_groups``): per run its area under ΔMAE(ε), per model
    type the mean over seeds, and two-sided paired t-tests between model types of the per-clip
    area (``clip_auc``), paired by ``(seed, clip_id)`` as the per-ε tests are, Bonferroni over
    comparisons x curves. Empty when no attack has two bounded budgets."""
    clips = _done_clips(clips, runs)
    per_run = summarize_runs(clips, runs)
    groups = curve_groups(clips)
    raw, parts = [], []
    for attack, domain, budgets in groups:
        ra = run_auc(per_run, attack, domain, budgets)
        values = clip_auc(clips, attack, domain, budgets)
        raw.append(_pair_tests(values, comparisons, "(seed, clip) areas"))
        parts.append((attack, domain, budgets, ra))
    corrected = _corrected(raw, alpha)
    return [Curve(a, d, b, ra, auc_table(ra), tests)
            for (a, d, b, ra), tests in zip(parts, corrected, strict=True)]
