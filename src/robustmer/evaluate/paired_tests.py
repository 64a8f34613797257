"""Paired t-tests of per-clip MAE between model types, Bonferroni-corrected: the older
per-setting functions (``compare_model_types``, ``compare_by_setting``; also the area tests of
``curves.Curve.tests``), kept for callers of the library, and the pairing by ``(seed, clip_id)``
that the report's one family of planned comparisons (``evaluate.planned``) uses as well.

The t-test itself is ``scipy.stats.ttest_rel``; Cohen's d_z = t / sqrt(n).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from robustmer.errors import ConfigError, DatasetError
from robustmer.evaluate.attack_settings import Setting, select_setting, settings
from robustmer.evaluate.clip_stats import clip_mae, clip_values, done_clips, require_one_setting
from robustmer.models.types import PAPER_COMPARISONS

DEFAULT_COMPARISONS: tuple[tuple[str, str], ...] = PAPER_COMPARISONS
"""The paper's planned comparisons of per-clip adversarial MAE (``models.types``); a store
whose ``config.yaml`` names its own (``comparisons``) uses those (``planned.store_comparisons``)."""


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


RawTest = tuple[str, str, PairedTest | None, str, float, float]
"""One test before the correction: ``(a, b, test or None when skipped, note, mean a, mean b)``
(``pair_tests``; ``corrected_comparisons`` turns them into ``Comparison``)."""


def pair_values(values: pd.DataFrame, a: str, b: str, unit: str
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


def pair_tests(values: pd.DataFrame, comparisons: Sequence[tuple[str, str]], unit: str
               ) -> list[RawTest]:
    """Paired t-tests on ``values`` (columns ``model_type, seed, clip_id, value``), pairing
    rows of two model types by ``(seed, clip_id)``; a missing type or < 2 pairs is a skip."""
    raw: list[RawTest] = []
    for a, b in comparisons:
        pairs, note = pair_values(values, a, b, unit)
        if pairs is None:
            raw.append((a, b, None, note, float("nan"), float("nan")))
            continue
        raw.append((a, b, paired_ttest(pairs["a"], pairs["b"]), note,
                    float(pairs["a"].mean()), float(pairs["b"].mean())))
    return raw


def corrected_comparisons(groups: Sequence[Sequence[RawTest]], alpha: float
                          ) -> list[list[Comparison]]:
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
    require_one_setting(clips, "compare_model_types")
    clips = done_clips(clips, runs)
    raw = pair_tests(clip_values(clips, which), comparisons, "clip rows")
    return corrected_comparisons([raw], alpha)[0]


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
    clips = done_clips(clips, runs)
    groups = [(st, pair_tests(clip_values(select_setting(clips, st), which), comparisons,
                              "clip rows"))
              for st in found]
    corrected = corrected_comparisons([g for _, g in groups], alpha)
    return [(st, c) for (st, _), c in zip(groups, corrected, strict=True)]
