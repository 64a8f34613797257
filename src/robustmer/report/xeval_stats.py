"""The numbers of an explainer-eval page (``robustmer explainer-eval`` folders), from its tables
only: label-flip rates per method and k with 95 % Wilson intervals (``scipy.stats.binomtest``),
the recovery histograms' counts, the flip rates per direction of a classifier's decision, the
smallest k reaching a rate, and the localisation summary of the standard tests."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps


def wilson(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (scipy); NaNs when ``n == 0``."""
    if n <= 0:
        return float("nan"), float("nan")
    ci = sps.binomtest(int(successes), int(n)).proportion_ci(confidence_level=level,
                                                             method="wilson")
    return float(ci.low), float(ci.high)


def flip_summary(flips: pd.DataFrame) -> pd.DataFrame:
    """One row per method × k: ``n`` clips, ``flipped`` count, ``rate``, ``ci_low``, ``ci_high``
    (methods in table order)."""
    rows = []
    for (method, k), g in flips.groupby(["method", "k"], sort=False):
        n, s = len(g), int(g["flipped"].astype(bool).sum())
        lo, hi = wilson(s, n)
        rows.append({"method": method, "k": int(k), "n": n, "flipped": s,
                     "rate": s / n if n else float("nan"), "ci_low": lo, "ci_high": hi})
    cols = ["method", "k", "n", "flipped", "rate", "ci_low", "ci_high"]
    return pd.DataFrame(rows, columns=cols).sort_values(["method", "k"], kind="stable",
                                                        key=_method_key(flips))


def _method_key(frame: pd.DataFrame) -> Any:
    order = {m: i for i, m in enumerate(dict.fromkeys(frame["method"].astype(str)))}

    def key(col: pd.Series) -> pd.Series:
        return col.map(order) if col.name == "method" else col

    return key


def recovery_summary(recovery: pd.DataFrame) -> pd.DataFrame:
    """One row per method × k: ``n`` (clips whose partial adversary flipped), ``mean_hits`` and
    ``h0 .. hk``: how many of those clips had 0..k of the k modified segments in the top k."""
    rows = []
    kmax = int(recovery["k"].max()) if len(recovery) else 0
    for (method, k), g in recovery.groupby(["method", "k"], sort=False):
        ok = g[g["partial_flipped"].astype(bool)]
        hits = ok["hits"].astype(int).to_numpy()
        row: dict[str, Any] = {"method": method, "k": int(k), "attacked": len(g),
                               "n": len(ok),
                               "mean_hits": float(hits.mean()) if len(hits) else float("nan")}
        for h in range(kmax + 1):
            row[f"h{h}"] = int((hits == h).sum()) if h <= int(k) else None
        rows.append(row)
    return pd.DataFrame(rows)


# -- directions, smallest k --------------------------------------------------------------------

def class_names(folder: str | os.PathLike[str], config: dict[str, Any]) -> list[str] | None:
    """The classifier's class names, from the evaluated run's ``best/data.json`` (None when the
    run folder is not at hand or records none; the report then says ``class i``)."""
    import json

    run_dir = config.get("run_dir")
    if not run_dir:
        return None
    path = Path(run_dir) / "best" / "data.json"
    if not path.is_file():
        return None
    try:
        classes = json.loads(path.read_text(encoding="utf-8")).get("classes")
    except (OSError, ValueError):
        return None
    return [str(c) for c in classes] if classes else None


def with_direction(flips: pd.DataFrame, adversarial: pd.DataFrame,
                   names: Sequence[str] | None = None) -> pd.DataFrame:
    """``flips`` (or ``recovery``) with a ``direction`` column: ``clean → target`` class of
    the clip's attack (classifiers; names where known)."""
    adv = adversarial[["clip_id", "clean_class", "target_class"]].copy()
    adv["clip_id"] = adv["clip_id"].astype(str)

    def name(i: Any) -> str:
        i = int(i)
        return names[i] if names is not None and 0 <= i < len(names) else f"class {i}"

    adv["direction"] = [f"{name(a)} → {name(b)}" for a, b in
                        zip(adv["clean_class"], adv["target_class"], strict=True)]
    out = flips.copy()
    out["clip_id"] = out["clip_id"].astype(str)
    return out.merge(adv[["clip_id", "direction"]], on="clip_id", how="left")


def direction_summary(flips: pd.DataFrame) -> pd.DataFrame:
    """:func:`flip_summary` per ``direction`` (a column of the result)."""
    parts = []
    for direction, g in flips.groupby("direction", sort=True):
        s = flip_summary(g.drop(columns=["direction"]))
        s.insert(0, "direction", direction)
        parts.append(s)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def smallest_k(summary: pd.DataFrame, level: float) -> pd.Series:
    """Per method (and direction, when the summary has one): the smallest k whose flip rate
    reaches ``level`` (NaN where no k does)."""
    keys: Any = ["direction", "method"] if "direction" in summary.columns else "method"
    out = {}
    for key, g in summary.groupby(keys, sort=False):
        hit = g[g["rate"] >= level - 1e-12]
        out[key] = float(hit["k"].min()) if len(hit) else float("nan")
    return pd.Series(out, dtype=float)


# -- localisation (the standard tests) -------------------------------------------------------

def localisation_summary(loc: pd.DataFrame) -> pd.DataFrame:
    """Per method: mean mass share with a 95 % t interval, the pixel and segment pointing-game
    hit rates with Wilson intervals, their chance levels (mean region share, mean segment
    chance) and N clips."""
    from robustmer.evaluate.intervals import t_interval

    rows = []
    for method, g in loc.groupby("method", sort=False):
        ms = t_interval(g["mass_share"].to_numpy(dtype=float))
        row: dict[str, Any] = {"method": method, "n": int(ms.n), "mass_share": ms.estimate,
                               "mass_low": ms.low, "mass_high": ms.high,
                               "region_share": float(g["region_share"].mean())}
        for col, chance in (("pointing_pixel", "region_share"),
                            ("pointing_segment", "segment_chance")):
            v = g[col].to_numpy(dtype=float)
            v = v[np.isfinite(v)]
            hits = float(v.sum())
            lo, hi = wilson(round(hits), len(v))
            row.update({col: hits / len(v) if len(v) else float("nan"), f"{col}_low": lo,
                        f"{col}_high": hi, f"{col}_chance": float(g[chance].mean())})
        rows.append(row)
    return pd.DataFrame(rows)

