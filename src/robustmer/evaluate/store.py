"""The results store: the folder the study (and the import of published logs) writes and the
report reads. Its schema (the column lists, dtypes and checks) lives in
:mod:`robustmer.evaluate.schema`, once, and is re-exported here (see docs/ARCHITECTURE.md, "The
results store").

A store is a folder with ``runs.csv`` (one row per trained model x attack setting),
``clips.csv`` (one row per model x attack setting x test clip), ``config.yaml`` (what was
asked), ``meta.json`` (versions, git commit, timings, source) and optional
``media/<run_id>/<clip_id>_{clean,adv}.wav`` or ``media/<run_id>/<clip_id>_delta.{png,npz}``.
Every write is atomic; every read validates the columns and values and raises ``DatasetError``
naming the file, the row and the column. An attack *setting* is ``(attack, domain, eps)``
(``evaluate.attack_settings``); tables written before settings existed are read as one setting.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from robustmer.errors import ConfigError, DatasetError
from robustmer.evaluate.attack_settings import (
    SETTING_COLUMNS,
    config_setting,
    setting_key,
)
from robustmer.evaluate.schema import (
    CLIPS_KEY_COLUMNS,
    CLIPS_OPTIONAL_COLUMNS,
    CLIPS_STAT_COLUMNS,
    CLIPS_UNIQUE,
    RUN_STATUSES,
    RUNS_ACCURACY_COLUMNS,
    RUNS_ADV_COLUMNS,
    RUNS_CLEAN_COLUMNS,
    RUNS_CONCEPT_COLUMNS,
    RUNS_KEY_COLUMNS,
    RUNS_UNIQUE,
    TASKS,
    TEXT_COLUMNS,
    check_unique,
    clips_columns,
    order_model_types,
    output_columns,
    output_names,
    runs_columns,
    runs_metric_columns,
    validate_frame,
)
from robustmer.io import read_json, write_csv, write_json, write_yaml

RUNS_FILE = "runs.csv"
CLIPS_FILE = "clips.csv"
CONFIG_FILE = "config.yaml"
META_FILE = "meta.json"
MEDIA_DIR = "media"

__all__ = [
    "CLIPS_FILE",
    "CLIPS_KEY_COLUMNS",
    "CLIPS_OPTIONAL_COLUMNS",
    "CLIPS_STAT_COLUMNS",
    "CLIPS_UNIQUE",
    "CONFIG_FILE",
    "MEDIA_DIR",
    "META_FILE",
    "RUNS_ACCURACY_COLUMNS",
    "RUNS_ADV_COLUMNS",
    "RUNS_CLEAN_COLUMNS",
    "RUNS_CONCEPT_COLUMNS",
    "RUNS_FILE",
    "RUNS_KEY_COLUMNS",
    "RUNS_UNIQUE",
    "RUN_STATUSES",
    "TASKS",
    "TEXT_COLUMNS",
    "ResultsStore",
    "check_unique",
    "clips_columns",
    "order_model_types",
    "output_columns",
    "output_names",
    "runs_columns",
    "runs_metric_columns",
    "validate_frame",
]


class ResultsStore:
    """A results folder: ``runs.csv``, ``clips.csv``, ``config.yaml``, ``meta.json``, ``media/``.

    Reading validates the schema (``DatasetError`` naming the file and column or row); writing
    validates first and then replaces the file atomically, so a reader never sees half a table.

    Examples:
        >>> import tempfile, pandas as pd
        >>> from robustmer.evaluate.store import ResultsStore, runs_columns
        >>> store = ResultsStore(tempfile.mkdtemp())
        >>> row = {c: 0.5 for c in runs_columns(["arousal", "valence"])} | dict(
        ...     run_id="A2E_seed1", model_type="A2E", seed=1, attack="bim",
        ...     domain="spectrogram", eps=0.001, status="done", message="")
        >>> store.write_runs(pd.DataFrame([row]))
        >>> r = store.read_runs().iloc[0]
        >>> str(r["run_id"]), int(r["seed"]), float(r["eps"]), float(r["r_arousal"])
        ('A2E_seed1', 1, 0.001, 0.5)
        >>> store.write_runs(pd.DataFrame([{**row, "seed": "one"}]))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        robustmer.errors.DatasetError: ...: line 2: column seed must be an integer, found 'one'
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

    @property
    def task(self) -> str:
        """``regression`` or ``classification`` (``config.yaml: task``; regression when the
        store does not say, as every store written before classification studies)."""
        task = str(self.read_config().get("task") or "regression")
        if task not in TASKS:
            raise DatasetError(f"{self.config_path}: task must be one of {list(TASKS)}, "
                               f"found {task!r}")
        return task

    # --- reading -------------------------------------------------------------------------
    def _read(self, path: Path, which: str) -> pd.DataFrame:
        """Read and validate ``runs.csv`` or ``clips.csv``; the output names come from the
        header (``r_*`` / ``y_*``); optional columns missing from the file are NaN."""
        if not path.is_file():
            raise DatasetError(f"{path}: results table not found (is {self.path} a results store?)")
        try:
            df = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS}, keep_default_na=True)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise DatasetError(f"{path}: not a readable CSV table ({err})") from err
        columns, optional = self.schema(df, which, str(path))
        for col in optional:
            if col not in df.columns:
                df[col] = np.nan
        df = self._fill_settings(df, str(path))
        return validate_frame(df, columns, str(path))

    def schema(self, df: pd.DataFrame, which: str, where: str) -> tuple[tuple[str, ...],
                                                                        tuple[str, ...]]:
        """``(columns, optional columns)`` of a ``runs`` or ``clips`` table, for the output
        names its header carries and this store's task."""
        prefix = "r_" if which == "runs" else "y_"
        names = output_names(df, prefix)
        if not names:
            raise DatasetError(f"{where}: no {prefix}<output> column: which outputs does the "
                               "table hold?")
        if which == "runs":
            optional = RUNS_CONCEPT_COLUMNS + (RUNS_ACCURACY_COLUMNS
                                               if self.task == "classification" else ())
            return runs_columns(names, self.task), optional
        present = tuple(c for c in CLIPS_OPTIONAL_COLUMNS if c in df.columns)
        return clips_columns(names) + present, ()

    def _fill_settings(self, df: pd.DataFrame, where: str) -> pd.DataFrame:
        """An old table without ``attack, domain, eps`` gets the one setting of
        ``config_setting(config.yaml)`` (after ``seed``; empty for runs that are not done)."""
        have = [c for c in SETTING_COLUMNS if c in df.columns]
        if len(have) == len(SETTING_COLUMNS):
            return df
        if have:
            missing = [c for c in SETTING_COLUMNS if c not in df.columns]
            raise DatasetError(f"{where}: has {', '.join(have)} but is missing "
                               f"{', '.join(missing)} (the attack setting needs all three)")
        attack, domain, eps = config_setting(self.read_config())
        out = df.copy()
        pos = list(out.columns).index("seed") + 1 if "seed" in out.columns else len(out.columns)
        done = (out["status"].astype(str) == "done" if "status" in out.columns
                else pd.Series(True, index=out.index))
        out.insert(pos, "eps", np.where(done, eps, np.nan))
        out.insert(pos, "domain", np.where(done, domain, ""))
        out.insert(pos, "attack", np.where(done, attack, ""))
        return out

    def read_runs(self) -> pd.DataFrame:
        """``runs.csv`` validated (unique per ``run_id`` and setting); an old table without the
        setting columns is filled with ``config_setting(config.yaml)``, one without the concept
        column gets NaN."""
        df = self._read(self.runs_path, "runs")
        check_unique(df, RUNS_UNIQUE, str(self.runs_path))
        return df

    def read_clips(self) -> pd.DataFrame:
        """``clips.csv`` validated (unique per ``run_id``, ``clip_id`` and setting); an old
        table without the setting columns is filled with ``config_setting(config.yaml)``."""
        df = self._read(self.clips_path, "clips")
        check_unique(df, CLIPS_UNIQUE, str(self.clips_path))
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
        clean = validate_frame(df, self.schema(df, "runs", str(self.runs_path))[0],
                               str(self.runs_path))
        check_unique(clean, RUNS_UNIQUE, str(self.runs_path))
        write_csv(self.runs_path, clean)

    def write_clips(self, df: pd.DataFrame) -> None:
        """Validate and atomically (re)write ``clips.csv``."""
        clean = validate_frame(df, self.schema(df, "clips", str(self.clips_path))[0],
                               str(self.clips_path))
        check_unique(clean, CLIPS_UNIQUE, str(self.clips_path))
        write_csv(self.clips_path, clean)

    def append_clips(self, df: pd.DataFrame) -> None:
        """Add the clip rows of one or more (run, setting) pairs to ``clips.csv`` (created when
        absent).

        Rows already stored for a ``(run_id, setting)`` present in ``df`` are replaced, so a run
        that is resumed after a crash never leaves duplicates; other settings of the run stay.
        """
        new = validate_frame(df, self.schema(df, "clips", str(self.clips_path))[0],
                             str(self.clips_path))
        if self.clips_path.is_file():
            old = self.read_clips()
            old = old[~_run_setting_keys(old).isin(set(_run_setting_keys(new)))]
            new = pd.concat([old, new], ignore_index=True)
        self.write_clips(new)

    def append_runs(self, df: pd.DataFrame) -> None:
        """Add rows to ``runs.csv`` (created when absent), replacing rows of the same
        ``(run_id, setting)``. A new row without a setting (a run that failed or is not
        runnable) replaces every row of its run; a new row with a setting replaces the run's
        row without one."""
        new = validate_frame(df, self.schema(df, "runs", str(self.runs_path))[0],
                             str(self.runs_path))
        if self.runs_path.is_file():
            old = self.read_runs()
            unset_new = new["attack"].astype(str).str.strip() == ""
            unset_old = old["attack"].astype(str).str.strip() == ""
            drop = _run_setting_keys(old).isin(set(_run_setting_keys(new)))
            drop |= old["run_id"].isin(set(new.loc[unset_new, "run_id"]))
            drop |= unset_old & old["run_id"].isin(set(new["run_id"]))
            new = pd.concat([old[~drop], new], ignore_index=True)
        self.write_runs(new)

    def write_config(self, config: dict[str, Any]) -> None:
        """Atomically write ``config.yaml``."""
        write_yaml(self.config_path, config)

    def write_meta(self, meta: dict[str, Any]) -> None:
        """Atomically write ``meta.json``."""
        write_json(self.meta_path, meta)


def _run_setting_keys(df: pd.DataFrame) -> pd.Series:
    """``run_id`` + NaN-safe setting key of each row, as one string per row."""
    return pd.Series(["\x1f".join((str(r), *setting_key((a, d, e)))) for r, a, d, e in
                      df[["run_id", *SETTING_COLUMNS]].itertuples(index=False, name=None)],
                     index=df.index, dtype=object)


def empty_frame(columns: Sequence[str]) -> pd.DataFrame:
    """An empty table with the given schema columns (for stores with no rows yet)."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
