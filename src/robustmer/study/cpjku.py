"""Import of the published per-sample attack logs of the reference study (CP-JKU, SMC 2025)
into a robustmer results store, so that the report computes the same tables, figures and tests
for the published models as for our own runs.

Layout read (see shared/README.md): ``LOG_DIR/runs.json`` maps each run folder to
``{"model_type", "seed"}``; each run folder holds ``hparams.yaml`` and ``log.csv`` with columns
``file`` (``['146.mp3.spec']``), ``epoch`` (iterations), ``db`` (approximate SNR), ``norm`` (L2
norm of the perturbation), ``converged``, ``true-label``, ``orig-pred``, ``new-pred`` (numpy's
printed 1x8 arrays, possibly wrapped over two lines) and ``adv-target`` (the random correlation
target of the ``corr`` stopping rule, stored as ``final_threshold``).
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from robustmer import EMOTIONS
from robustmer.errors import ConfigError, DatasetError
from robustmer.evaluate.attack_settings import REFERENCE_SETTING
from robustmer.evaluate.store import ResultsStore
from robustmer.evaluate.summary import clips_frame, summarize_runs
from robustmer.folders import replace_folder
from robustmer.io import read_json, run_meta

IMPORT_KIND = "store"
"""The folder kind of an imported results store (see robustmer.folders)."""

LOG_COLUMNS: tuple[str, ...] = (
    "file", "epoch", "db", "norm", "converged", "true-label", "orig-pred", "new-pred",
    "adv-target",
)
ARRAY_COLUMNS: tuple[str, ...] = ("true-label", "orig-pred", "new-pred")

# numpy prints a 1x8 float array as "[[a b c ...]]" (possibly wrapped, possibly in scientific
# notation); no library parses that printed form, and eval() is not an option, so a strict regex
# over the float tokens is the parser.
_FLOAT = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_ARRAY_RE = re.compile(r"\s*\[\[\s*((?:" + _FLOAT + r"\s+)*" + _FLOAT + r")?\s*\]\]\s*")
_FLOAT_RE = re.compile(_FLOAT)
_FILE_RE = re.compile(r"\s*\[\s*'([^'\[\]]+)'\s*\]\s*")
_INT_RE = re.compile(r"\s*\d+\s*")


def parse_array(text: str, *, where: str, n: int = len(EMOTIONS)) -> np.ndarray:
    """Parse numpy's printed ``[[v1 v2 ... vn]]`` strictly: exactly ``n`` finite floats.

    ``where`` names the file, row and column for the ``DatasetError`` raised otherwise.
    """
    m = _ARRAY_RE.fullmatch(text)
    if m is None:
        raise DatasetError(f"{where}: expected a printed 1x{n} array like '[[0.1 0.2 ...]]', "
                           f"found {text!r}")
    values = [float(tok) for tok in _FLOAT_RE.findall(m.group(1) or "")]
    if len(values) != n:
        raise DatasetError(f"{where}: expected exactly {n} values, found {len(values)}")
    arr = np.asarray(values, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise DatasetError(f"{where}: non-finite value in {text!r}")
    return arr


def parse_clip_id(text: str, *, where: str) -> str:
    """``['146.mp3.spec']`` -> ``146`` (the file stem, robustmer's clip id)."""
    m = _FILE_RE.fullmatch(text)
    if m is None:
        raise DatasetError(f"{where}: expected a file entry like \"['146.mp3.spec']\", "
                           f"found {text!r}")
    name = Path(m.group(1)).name
    stem = name.split(".", 1)[0]
    if not stem:
        raise DatasetError(f"{where}: cannot read a clip id from {text!r}")
    return stem


def _parse_float(text: str, where: str) -> float:
    if not re.fullmatch(r"\s*" + _FLOAT + r"\s*", text):
        raise DatasetError(f"{where}: expected a number, found {text!r}")
    return float(text)


def _parse_bool(text: str, where: str) -> bool:
    t = text.strip()
    if t in ("True", "true", "1"):
        return True
    if t in ("False", "false", "0"):
        return False
    raise DatasetError(f"{where}: expected True or False, found {text!r}")


def read_log(path: str | os.PathLike[str], run_id: str, model_type: str, seed: int
             ) -> pd.DataFrame:
    """One published ``log.csv`` -> the run's ``clips.csv`` rows, under the setting
    ``REFERENCE_SETTING`` (attack ``reference``, spectrogram domain, nominal ε = 0.001: the
    published clip never took effect, so the budget is the one they asked for, not one that held).

    Strict: a missing column, a wrong field count, a malformed array or number raises
    ``DatasetError`` naming the file, the data row (1-based) and the column.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: attack log not found")
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise DatasetError(f"{path}: empty file, expected a header "
                               f"{','.join(LOG_COLUMNS)}") from None
        header = [h.strip() for h in header]
        missing = [c for c in LOG_COLUMNS if c not in header]
        if missing:
            raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}")
        idx = {c: header.index(c) for c in LOG_COLUMNS}
        ids: list[str] = []
        arrays: dict[str, list[np.ndarray]] = {c: [] for c in ARRAY_COLUMNS}
        epochs: list[int] = []
        dbs: list[float] = []
        norms: list[float] = []
        conv: list[bool] = []
        targets: list[float] = []
        for i, fields in enumerate(reader, start=1):
            if not fields or all(not f.strip() for f in fields):
                continue
            where = f"{path}: row {i} (line {reader.line_num})"
            if len(fields) != len(header):
                raise DatasetError(f"{where}: expected {len(header)} fields, found {len(fields)}")
            clip = parse_clip_id(fields[idx["file"]], where=f"{where}, column file")
            if clip in ids:
                raise DatasetError(f"{where}: clip {clip} appears twice")
            ids.append(clip)
            for c in ARRAY_COLUMNS:
                arrays[c].append(parse_array(fields[idx[c]], where=f"{where}, column {c}"))
            ep = fields[idx["epoch"]]
            if not _INT_RE.fullmatch(ep):
                raise DatasetError(f"{where}, column epoch: expected an integer, found {ep!r}")
            epochs.append(int(ep))
            dbs.append(_parse_float(fields[idx["db"]], f"{where}, column db"))
            norms.append(_parse_float(fields[idx["norm"]], f"{where}, column norm"))
            conv.append(_parse_bool(fields[idx["converged"]], f"{where}, column converged"))
            targets.append(_parse_float(fields[idx["adv-target"]], f"{where}, column adv-target"))
    if not ids:
        raise DatasetError(f"{path}: no data rows")
    n = len(ids)
    shape = (n, len(EMOTIONS))
    return clips_frame(
        run_id, model_type, seed, ids,
        np.vstack(arrays["true-label"]).reshape(shape),
        np.vstack(arrays["orig-pred"]).reshape(shape),
        np.vstack(arrays["new-pred"]).reshape(shape), names=EMOTIONS,
        iterations=epochs, converged=conv, final_threshold=targets,
        delta_linf=None, delta_l2=norms, snr_db=dbs,
        attack=REFERENCE_SETTING[0], domain=REFERENCE_SETTING[1], eps=REFERENCE_SETTING[2],
    )


def read_runs_json(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """``runs.json``: run folder -> ``{"model_type": str, "seed": int}`` (validated)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--runs {path}: file not found")
    try:
        data = read_json(path)
    except ValueError as err:
        raise DatasetError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict) or not data:
        raise DatasetError(f"{path}: expected a non-empty object mapping run folder -> "
                           "{model_type, seed}")
    out: dict[str, dict[str, Any]] = {}
    for folder, spec in data.items():
        if not isinstance(spec, dict) or "model_type" not in spec or "seed" not in spec:
            raise DatasetError(f"{path}: entry {folder!r}: expected keys model_type and seed")
        mt, seed = spec["model_type"], spec["seed"]
        if not isinstance(mt, str) or not mt:
            raise DatasetError(f"{path}: entry {folder!r}: model_type must be a non-empty string")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise DatasetError(f"{path}: entry {folder!r}: seed must be an integer, found "
                               f"{seed!r}")
        if Path(folder).name != folder or folder in ("", ".", ".."):
            raise DatasetError(f"{path}: entry {folder!r}: must be a plain folder name")
        out[folder] = {"model_type": mt, "seed": seed}
    return out


def _read_hparams(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise DatasetError(f"{path}: not valid YAML ({err})") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a mapping of hyper-parameters")
    return data


def import_cpjku(
    log_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    runs_json: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
) -> ResultsStore:
    """Import every run listed in ``runs_json`` (default ``LOG_DIR/runs.json``) into the results
    store at ``out``: ``clips.csv``, ``runs.csv`` (via ``summarize_runs``), ``config.yaml`` (the
    hparams of each run) and ``meta.json`` (``source: cpjku``). Returns the store.

    ``out`` must be empty, missing or an earlier import (replaced whole); any other folder, such
    as a study's store, is refused unless ``overwrite`` (``--overwrite``).
    """
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        raise ConfigError(f"LOG_DIR {log_dir}: not a folder")
    runs_path = Path(runs_json) if runs_json is not None else log_dir / "runs.json"
    spec = read_runs_json(runs_path)
    frames = []
    hparams: dict[str, Any] = {}
    for folder in sorted(spec, key=lambda f: (spec[f]["model_type"], spec[f]["seed"], f)):
        run_dir = log_dir / folder
        if not run_dir.is_dir():
            raise DatasetError(f"{runs_path}: run folder {folder} not found in {log_dir}")
        mt, seed = spec[folder]["model_type"], spec[folder]["seed"]
        frames.append(read_log(run_dir / "log.csv", folder, mt, seed))
        hparams[folder] = {"model_type": mt, "seed": seed,
                           "hparams": _read_hparams(run_dir / "hparams.yaml")}
    clips = pd.concat(frames, ignore_index=True)
    runs = summarize_runs(clips)
    unlisted = sorted(p.name for p in log_dir.iterdir()
                      if p.is_dir() and p.name not in spec)
    with replace_folder(out, IMPORT_KIND, overwrite=overwrite) as tmp:
        store = ResultsStore(tmp)
        store.write_clips(clips)
        store.write_runs(runs)
        attack, domain, eps = REFERENCE_SETTING
        store.write_config({"source": "cpjku", "log_dir": str(log_dir.resolve()),
                            "runs_json": str(runs_path.resolve()),
                            "attack": {"name": attack, "domain": domain, "eps": eps,
                                       "nominal_eps": 0.001,
                                       "note": "the published clip to the nominal budget "
                                               "never took effect: no bound"},
                            "runs": hparams})
        store.write_meta(run_meta(source="cpjku", log_dir=str(log_dir.resolve()),
                                  n_runs=len(runs), n_clips=len(clips),
                                  unlisted_folders=unlisted))
    return ResultsStore(out)
