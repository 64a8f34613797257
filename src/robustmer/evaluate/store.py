"""The results store: the folder the study (and the import of published logs) writes and the
report reads. Its schema lives here, once, as column lists (see docs/ARCHITECTURE.md, "The
results store").

A store is a folder with ``runs.csv`` (one row per trained model x attack setting),
``clips.csv`` (one row per model x attack setting x test clip; a setting is ``(attack, domain,
eps)``, see docs/attacks.md), ``config.yaml`` (what was asked), ``meta.json`` (versions, git commit,
timings, source) and optional ``media/<run_id>/<clip_id>_{clean,adv}.wav`` or
``media/<run_id>/<clip_id>_delta.{png,npz}``. Every write is atomic; every read validates the
columns and values and raises ``DatasetError`` naming the file, the row and the column.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from robustmer import EMOTIONS
from robustmer.errors import ConfigError, DatasetError
from robustmer.io import read_json, write_csv, write_json, write_yaml

RUNS_FILE = "runs.csv"
CLIPS_FILE = "clips.csv"
CONFIG_FILE = "config.yaml"
META_FILE = "meta.json"
MEDIA_DIR = "media"

RUN_STATUSES: tuple[str, ...] = ("done", "failed", "not_runnable")
"""Allowed values of ``runs.csv:status``."""

MODEL_TYPE_ORDER: tuple[str, ...] = ("A2E", "A2B2E", "A2M2E", "aA2E", "aA2B2E")
"""The study's model types in reporting order; other types follow alphabetically."""

SETTING_COLUMNS: tuple[str, ...] = ("attack", "domain", "eps")
"""One attack setting: spec name, ``spectrogram``/``waveform``, enforced budget (NaN: none)."""
DEFAULT_SETTING: tuple[str, str, float] = ("bim", "spectrogram", float("nan"))
"""The setting of an old store whose tables and config do not say."""

RUNS_KEY_COLUMNS: tuple[str, ...] = ("run_id", "model_type", "seed", *SETTING_COLUMNS,
                                     "status", "message")
R_COLUMNS: tuple[str, ...] = tuple(f"r_{e}" for e in EMOTIONS)
RUNS_METRIC_COLUMNS: tuple[str, ...] = (
    "clean_mean_r", "clean_mae", "clean_rmse", "clean_r2", *R_COLUMNS,
    "adv_mean_r", "adv_mae", "delta_mae", "mean_snr_db", "mean_iterations",
)
RUNS_COLUMNS: tuple[str, ...] = (*RUNS_KEY_COLUMNS, *RUNS_METRIC_COLUMNS)

CLIPS_KEY_COLUMNS: tuple[str, ...] = ("run_id", "model_type", "seed", *SETTING_COLUMNS,
                                      "clip_id")
Y_COLUMNS: tuple[str, ...] = tuple(f"y_{e}" for e in EMOTIONS)
PRED_COLUMNS: tuple[str, ...] = tuple(f"pred_{e}" for e in EMOTIONS)
ADV_COLUMNS: tuple[str, ...] = tuple(f"adv_{e}" for e in EMOTIONS)
CLIPS_STAT_COLUMNS: tuple[str, ...] = (
    "mae_clean", "mae_adv", "iterations", "converged", "final_threshold",
    "delta_linf", "delta_l2", "snr_db",
)
CLIPS_COLUMNS: tuple[str, ...] = (
    *CLIPS_KEY_COLUMNS, *Y_COLUMNS, *PRED_COLUMNS, *ADV_COLUMNS, *CLIPS_STAT_COLUMNS,
)

_TEXT_COLUMNS = ("run_id", "model_type", "clip_id", "status", "message", "attack", "domain")
_OPTIONAL_TEXT = ("message", "attack", "domain")  # may be empty (a failed run has no setting)
_INT_COLUMNS = ("seed",)
_BOOL_COLUMNS = ("converged",)
_TRUE = {"true", "1", "1.0", "yes"}
_FALSE = {"false", "0", "0.0", "no"}


def order_model_types(types: Iterable[str]) -> list[str]:
    """Model types in reporting order: the study's five first, any others alphabetically after."""
    uniq = list(dict.fromkeys(str(t) for t in types))
    known = [t for t in MODEL_TYPE_ORDER if t in uniq]
    return known + sorted(t for t in uniq if t not in MODEL_TYPE_ORDER)


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
    for col in columns:
        values = out[col]
        if col in _TEXT_COLUMNS:
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


def _check_unique(df: pd.DataFrame, key: Sequence[str], where: str) -> None:
    dup = df.duplicated(subset=list(key), keep="first")
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        vals = ", ".join(f"{k}={df[k].iloc[i]}" for k in key)
        raise DatasetError(f"{where}: line {_line(i)}: duplicate row for {vals}")


class ResultsStore:
    """A results folder: ``runs.csv``, ``clips.csv``, ``config.yaml``, ``meta.json``, ``media/``.

    Reading validates the schema (``DatasetError`` naming the file and column or row); writing
    validates first and then replaces the file atomically, so a reader never sees half a table.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"results store {self.path} exists and is not a folder")

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.path)!r})"

    @property
    def runs_path(self) -> Path:
        """``runs.csv``."""
        return self.path / RUNS_FILE

    @property
    def clips_path(self) -> Path:
        """``clips.csv``."""
        return self.path / CLIPS_FILE

    @property
    def config_path(self) -> Path:
        """``config.yaml``."""
        return self.path / CONFIG_FILE

    @property
    def meta_path(self) -> Path:
        """``meta.json``."""
        return self.path / META_FILE

    @property
    def media_dir(self) -> Path:
        """``media/`` (audio and delta images per run)."""
        return self.path / MEDIA_DIR

    def media_path(self, run_id: str, clip_id: str, kind: str) -> Path:
        """``media/<run_id>/<clip_id>_<kind>``; ``kind`` is ``clean.wav``, ``adv.wav``,
        ``delta.png`` or ``delta.npz``."""
        allowed = ("clean.wav", "adv.wav", "delta.png", "delta.npz")
        if kind not in allowed:
            raise ConfigError(f"media kind {kind!r} is not one of {', '.join(allowed)}")
        return self.media_dir / str(run_id) / f"{clip_id}_{kind}"

    def exists(self) -> bool:
        """Whether both tables are present."""
        return self.runs_path.is_file() and self.clips_path.is_file()

    # --- reading -------------------------------------------------------------------------
    def _read(self, path: Path, columns: Sequence[str]) -> pd.DataFrame:
        if not path.is_file():
            raise DatasetError(f"{path}: results table not found (is {self.path} a results store?)")
        try:
            df = pd.read_csv(path, dtype={c: str for c in _TEXT_COLUMNS}, keep_default_na=True)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise DatasetError(f"{path}: not a readable CSV table ({err})") from err
        if not any(c in df.columns for c in SETTING_COLUMNS):
            df = fill_settings(df, self.config_setting(), runs=path == self.runs_path)
        return validate_frame(df, columns, str(path))

    def config_setting(self) -> tuple[str, str, float]:
        """The one setting of an old store: from ``config.yaml``'s attack block (``attack:
        {domain, eps, ...}``), else :data:`DEFAULT_SETTING`."""
        block = self.read_config().get("attack")
        if not isinstance(block, dict):
            return DEFAULT_SETTING
        domain = block.get("domain", "spectrogram")
        eps = block.get("eps")
        try:
            eps_f = float(eps) if not isinstance(eps, list) else float("nan")
        except (TypeError, ValueError):
            eps_f = float("nan")
        return (str(block.get("name", "bim")), str(domain), eps_f)

    def read_runs(self) -> pd.DataFrame:
        """``runs.csv`` validated (unique ``(run_id, attack, domain, eps)``); an old store without
        the setting columns gets them from :meth:`config_setting`."""
        df = self._read(self.runs_path, RUNS_COLUMNS)
        _check_unique(df, ("run_id", *SETTING_COLUMNS), str(self.runs_path))
        return df

    def read_clips(self) -> pd.DataFrame:
        """``clips.csv`` validated (unique ``(run_id, attack, domain, eps, clip_id)``); an old
        store without the setting columns gets them from :meth:`config_setting`."""
        df = self._read(self.clips_path, CLIPS_COLUMNS)
        _check_unique(df, ("run_id", *SETTING_COLUMNS, "clip_id"), str(self.clips_path))
        return df

    def read_config(self) -> dict[str, Any]:
        """``config.yaml`` as a dict (empty when absent)."""
        if not self.config_path.is_file():
            return {}
        try:
            data = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise DatasetError(f"{self.config_path}: not valid YAML ({err})") from err
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise DatasetError(f"{self.config_path}: expected a mapping at the top level")
        return data

    def read_meta(self) -> dict[str, Any]:
        """``meta.json`` as a dict (empty when absent)."""
        if not self.meta_path.is_file():
            return {}
        try:
            data = read_json(self.meta_path)
        except ValueError as err:
            raise DatasetError(f"{self.meta_path}: not valid JSON ({err})") from err
        if not isinstance(data, dict):
            raise DatasetError(f"{self.meta_path}: expected a JSON object at the top level")
        return data

    # --- writing -------------------------------------------------------------------------
    def write_runs(self, df: pd.DataFrame) -> None:
        """Validate and atomically (re)write ``runs.csv``."""
        clean = validate_frame(df, RUNS_COLUMNS, str(self.runs_path))
        _check_unique(clean, ("run_id", *SETTING_COLUMNS), str(self.runs_path))
        write_csv(self.runs_path, clean)

    def write_clips(self, df: pd.DataFrame) -> None:
        """Validate and atomically (re)write ``clips.csv``."""
        clean = validate_frame(df, CLIPS_COLUMNS, str(self.clips_path))
        _check_unique(clean, ("run_id", *SETTING_COLUMNS, "clip_id"), str(self.clips_path))
        write_csv(self.clips_path, clean)

    def append_clips(self, df: pd.DataFrame) -> None:
        """Add the clip rows of one or more runs to ``clips.csv`` (created when absent).

        Rows already stored for a ``run_id`` present in ``df`` are replaced, so a run that is
        resumed after a crash never leaves duplicates.
        """
        new = validate_frame(df, CLIPS_COLUMNS, str(self.clips_path))
        if self.clips_path.is_file():
            old = self.read_clips()
            old = old[~old["run_id"].isin(set(new["run_id"]))]
            new = pd.concat([old, new], ignore_index=True)
        self.write_clips(new)

    def append_runs(self, df: pd.DataFrame) -> None:
        """Add rows to ``runs.csv`` (created when absent), replacing rows of the same ``run_id``."""
        new = validate_frame(df, RUNS_COLUMNS, str(self.runs_path))
        if self.runs_path.is_file():
            old = self.read_runs()
            old = old[~old["run_id"].isin(set(new["run_id"]))]
            new = pd.concat([old, new], ignore_index=True)
        self.write_runs(new)

    def write_config(self, config: dict[str, Any]) -> None:
        """Atomically write ``config.yaml``."""
        write_yaml(self.config_path, config)

    def write_meta(self, meta: dict[str, Any]) -> None:
        """Atomically write ``meta.json``."""
        write_json(self.meta_path, meta)


def fill_settings(df: pd.DataFrame, setting: tuple[str, str, float],
                  runs: bool = False) -> pd.DataFrame:
    """Insert ``attack, domain, eps`` after ``seed`` (an old table: one setting). In ``runs`` a
    run that is not ``done`` keeps them empty, as the contract says."""
    out = df.copy()
    at = list(out.columns).index("seed") + 1 if "seed" in out.columns else len(out.columns)
    for k, (col, val) in enumerate(zip(SETTING_COLUMNS, setting, strict=True)):
        values = pd.Series([val] * len(out), index=out.index, dtype=object)
        if runs and "status" in out.columns:
            values[out["status"].astype(str) != "done"] = np.nan
        out.insert(at + k, col, values)
    return out


def settings(frame: pd.DataFrame) -> list[tuple[str, str, float]]:
    """The distinct ``(attack, domain, eps)`` settings of a table, sorted by attack, domain,
    eps with NaN last; rows without a setting (failed runs) are skipped."""
    if len(frame) == 0 or not all(c in frame.columns for c in SETTING_COLUMNS):
        return []
    sub = frame[list(SETTING_COLUMNS)]
    keys = {(str(a), str(d), float(e)) for a, d, e in sub.itertuples(index=False)
            if isinstance(a, str) and a and not pd.isna(a)}
    return sorted(keys, key=lambda k: (k[0], k[1], np.isnan(k[2]), 0.0 if np.isnan(k[2])
                                       else k[2]))


def empty_frame(columns: Sequence[str]) -> pd.DataFrame:
    """An empty table with the given schema columns (for stores with no rows yet)."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
