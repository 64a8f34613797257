"""Schema of ``checks.csv`` in the results store: the gradient-masking / convergence checks
(``attacks/checks.py``), one row per run x check x setting, written by ``study/checks.py`` and
read by ``report/checks.py``. Kept here (not in attacks/) because the report may not import
attacks/.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from robustmer.errors import DatasetError

CHECKS_FILE = "checks.csv"
CHECK_NAMES: tuple[str, ...] = ("convergence", "restarts", "unbounded", "transfer",
                                "gradient_free", "apgd")
"""The checks in reporting order (the same names as ``attacks.checks.CHECKS``)."""
STATUSES: tuple[str, ...] = ("pass", "flag", "info")
CHECKS_COLUMNS: tuple[str, ...] = (
    "run_id", "model_type", "seed", "clips", "check", "setting", "eps", "iters", "metric",
    "value", "reference", "status", "rule",
)
"""Columns of ``checks.csv``; transfer rows belong to the target run (``setting`` names the
source and target runs)."""

_TEXT = ("run_id", "model_type", "check", "setting", "metric", "status", "rule")
_FLOAT = ("eps", "iters", "value", "reference")


def empty_checks() -> pd.DataFrame:
    """A checks table with no rows."""
    return pd.DataFrame({c: pd.Series(dtype=object if c in _TEXT else "float64")
                         for c in CHECKS_COLUMNS})


def read_checks(path: str | os.PathLike[str]) -> pd.DataFrame:
    """``checks.csv`` of a results store folder (or the file itself), validated; an empty table
    when the store has none. Raises ``DatasetError`` naming the file, line and column."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKS_FILE
    if not p.exists():
        return empty_checks()
    try:
        df = pd.read_csv(p, dtype={"run_id": str, "model_type": str, "setting": str})
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise DatasetError(f"{p}: not a readable CSV ({err})") from err
    missing = [c for c in CHECKS_COLUMNS if c not in df.columns]
    if missing:
        raise DatasetError(f"{p}: missing column(s) {', '.join(missing)}")
    for col in (*_FLOAT, "seed", "clips"):
        num = pd.to_numeric(df[col], errors="coerce")
        bad = num.isna() & df[col].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DatasetError(f"{p}: line {i + 2}: column {col} must be a number, "
                               f"found {df[col].iloc[i]!r}")
        df[col] = num
    bad_status = ~df["status"].isin(STATUSES)
    if bad_status.any():
        i = int(np.flatnonzero(bad_status.to_numpy())[0])
        raise DatasetError(f"{p}: line {i + 2}: column status must be one of {list(STATUSES)}, "
                           f"found {df['status'].iloc[i]!r}")
    df["seed"] = df["seed"].astype(np.int64)
    df["clips"] = df["clips"].astype(np.int64)
    for col in _TEXT:
        df[col] = df[col].map(lambda v: "" if pd.isna(v) else str(v)).astype(object)
    return df[list(CHECKS_COLUMNS)].reset_index(drop=True)
