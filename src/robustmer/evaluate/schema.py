"""The results store's schema, once: the column lists of ``runs.csv`` and ``clips.csv`` (one
column per output, named by the data), their dtypes, and ``validate_frame``, which every read and
write of :class:`robustmer.evaluate.store.ResultsStore` goes through (``DatasetError`` naming the
file, the line and the column)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from robustmer.errors import DatasetError
from robustmer.evaluate.attack_settings import SETTING_COLUMNS, check_settings
from robustmer.models.types import order as registry_order

RUN_STATUSES: tuple[str, ...] = ("done", "failed", "not_runnable")
"""Allowed values of ``runs.csv:status``."""

TASKS: tuple[str, ...] = ("regression", "classification")
"""A store's task (``config.yaml: task``; stores without it are regression stores)."""

RUNS_KEY_COLUMNS: tuple[str, ...] = (
    "run_id", "model_type", "seed", *SETTING_COLUMNS, "status", "message",
)
RUNS_CLEAN_COLUMNS: tuple[str, ...] = ("clean_mean_r", "clean_mae", "clean_rmse", "clean_r2")
RUNS_ADV_COLUMNS: tuple[str, ...] = (
    "adv_mean_r", "adv_mae", "delta_mae", "mean_snr_db", "mean_iterations")
RUNS_CONCEPT_COLUMNS: tuple[str, ...] = ("clean_concept_mean_r",)
"""Test-split mean Pearson r of a concept-trained bottleneck (A2M2E) against the concept ratings;
NaN for models without one. Not recomputable from ``clips.csv`` (which holds the outputs only),
so ``summarize_runs`` carries it over from ``runs.csv``; older stores without it read as NaN."""
RUNS_ACCURACY_COLUMNS: tuple[str, ...] = ("clean_accuracy", "adv_accuracy")
"""Classification stores only: accuracy on the clean and the adversarial inputs."""

CLIPS_KEY_COLUMNS: tuple[str, ...] = ("run_id", "model_type", "seed", *SETTING_COLUMNS, "clip_id")
CLIPS_STAT_COLUMNS: tuple[str, ...] = (
    "mae_clean", "mae_adv", "iterations", "converged", "final_threshold",
    "delta_linf", "delta_l2", "snr_db",
)
CLIPS_OPTIONAL_COLUMNS: tuple[str, ...] = ("zero_grad_start",)
"""Written only when some clip has it: the attack found a zero gradient at its start and began
from a seeded random point instead (``robustmer.attacks.base``)."""


def output_columns(prefix: str, names: Sequence[str]) -> tuple[str, ...]:
    """``prefix`` + each output name: ``y_valence`` ... (targets, clean and adversarial
    predictions; for classification one-hot labels and softmax probabilities per class)."""
    return tuple(f"{prefix}{n}" for n in names)


def clips_columns(names: Sequence[str]) -> tuple[str, ...]:
    """The ``clips.csv`` schema of a store whose outputs are ``names``."""
    return (*CLIPS_KEY_COLUMNS, *output_columns("y_", names), *output_columns("pred_", names),
            *output_columns("adv_", names), *CLIPS_STAT_COLUMNS)


def runs_columns(names: Sequence[str], task: str = "regression") -> tuple[str, ...]:
    """The ``runs.csv`` schema of a store whose outputs are ``names``."""
    extra = RUNS_ACCURACY_COLUMNS if task == "classification" else ()
    return (*RUNS_KEY_COLUMNS, *RUNS_CLEAN_COLUMNS, *output_columns("r_", names),
            *RUNS_ADV_COLUMNS, *RUNS_CONCEPT_COLUMNS, *extra)


def runs_metric_columns(names: Sequence[str], task: str = "regression") -> tuple[str, ...]:
    """The metric part of :func:`runs_columns` (what ``summarize_run`` computes)."""
    extra = RUNS_ACCURACY_COLUMNS if task == "classification" else ()
    return (*RUNS_CLEAN_COLUMNS, *output_columns("r_", names), *RUNS_ADV_COLUMNS, *extra)


def output_names(frame: pd.DataFrame | Sequence[str], prefix: str = "y_") -> list[str]:
    """The output names of a store table, read from its header in order (``y_*`` columns of
    ``clips.csv``, ``r_*`` of ``runs.csv``): a store names its outputs itself, so one written
    for the 8 Soundtracks emotions and one for a user's targets read the same way."""
    columns = list(frame.columns) if isinstance(frame, pd.DataFrame) else list(frame)
    return [c[len(prefix):] for c in columns if c.startswith(prefix) and len(c) > len(prefix)]


RUNS_UNIQUE: tuple[str, ...] = ("run_id", *SETTING_COLUMNS)
"""A ``runs.csv`` row is unique per run and setting."""
CLIPS_UNIQUE: tuple[str, ...] = ("run_id", "clip_id", *SETTING_COLUMNS)
"""A ``clips.csv`` row is unique per run, clip and setting."""

TEXT_COLUMNS = ("run_id", "model_type", "clip_id", "status", "message", "attack", "domain")
"""Columns read as text (``clip_id`` too: ids such as ``007`` keep their zeros)."""
_OPTIONAL_TEXT = ("message", "attack", "domain")  # may be empty (checked per table below)
_INT_COLUMNS = ("seed",)
_BOOL_COLUMNS = ("converged", "zero_grad_start")
_TRUE = {"true", "1", "1.0", "yes"}
_FALSE = {"false", "0", "0.0", "no"}


def order_model_types(types: Iterable[str]) -> list[str]:
    """Model types in reporting order: the registry's order (``robustmer.models.types``: the
    paper's five first), any others alphabetically after."""
    return registry_order(list(types))


def _line(i: int) -> int:
    """CSV line number of data row ``i`` (header is line 1)."""
    return int(i) + 2


def validate_frame(df: pd.DataFrame, columns: Sequence[str], where: str) -> pd.DataFrame:
    """Check that ``df`` has ``columns`` with valid values; return it with schema dtypes and
    schema columns first (extra columns are kept after them).

    Raises ``DatasetError`` naming ``where`` (the file), the missing column(s) or the first bad
    row and column. Text columns become ``str`` (clip ids keep leading zeros), ``seed`` becomes
    int, ``converged`` bool, every other schema column float.
    """
    if not isinstance(df, pd.DataFrame):
        raise DatasetError(f"{where}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DatasetError(f"{where}: missing column(s) {', '.join(missing)}")
    dup_cols = df.columns[df.columns.duplicated()].tolist()
    if dup_cols:
        raise DatasetError(f"{where}: duplicate column(s) {', '.join(map(str, dup_cols))}")
    out = df.reset_index(drop=True).copy()
    for col in CLIPS_OPTIONAL_COLUMNS:  # rows of runs without the flag (a concat) hold NaN
        if col in out.columns:
            out[col] = out[col].where(out[col].notna(), False)
    for col in columns:
        values = out[col]
        if col in TEXT_COLUMNS:
            if col not in _OPTIONAL_TEXT:
                bad = values.isna() | (values.astype(str).str.strip() == "")
                if bad.any():
                    i = int(np.flatnonzero(bad.to_numpy())[0])
                    raise DatasetError(f"{where}: line {_line(i)}: column {col} is empty")
            out[col] = values.map(lambda v: "" if pd.isna(v) else str(v)).astype(object)
        elif col in _INT_COLUMNS:
            num = pd.to_numeric(values, errors="coerce")
            bad = num.isna() | (num != np.round(num))
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise DatasetError(
                    f"{where}: line {_line(i)}: column {col} must be an integer, "
                    f"found {values.iloc[i]!r}"
                )
            out[col] = num.astype(np.int64)
        elif col in _BOOL_COLUMNS:
            out[col] = [_to_bool(v, where, i, col) for i, v in enumerate(values)]
            out[col] = out[col].astype(bool)
        else:
            num = pd.to_numeric(values, errors="coerce")
            bad = num.isna() & ~_is_blank(values)
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise DatasetError(
                    f"{where}: line {_line(i)}: column {col} must be a number, "
                    f"found {values.iloc[i]!r}"
                )
            out[col] = num.astype(np.float64)
    if "status" in columns:
        bad = ~out["status"].isin(RUN_STATUSES)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DatasetError(
                f"{where}: line {_line(i)}: status {out['status'].iloc[i]!r} is not one of "
                f"{', '.join(RUN_STATUSES)}"
            )
    if "attack" in columns:
        check_settings(out, where, need_all="clip_id" in columns)
    extras = [c for c in out.columns if c not in columns]
    return out[[*columns, *extras]]


def _is_blank(values: pd.Series) -> pd.Series:
    return values.isna() | (values.astype(str).str.strip().isin(["", "nan", "NaN"]))


def _to_bool(v: Any, where: str, i: int, col: str) -> bool:
    if isinstance(v, bool | np.bool_):
        return bool(v)
    text = str(v).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise DatasetError(f"{where}: line {_line(i)}: column {col} must be True/False, found {v!r}")


def check_unique(df: pd.DataFrame, key: Sequence[str], where: str) -> None:
    """``DatasetError`` naming the file and line of the first row whose ``key`` repeats."""
    dup = df.duplicated(subset=list(key), keep="first")
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        vals = ", ".join(f"{k}={df[k].iloc[i]}" for k in key)
        raise DatasetError(f"{where}: line {_line(i)}: duplicate row for {vals}")
