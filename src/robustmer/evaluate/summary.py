"""From per-clip results to per-run summaries: the code that fills ``clips.csv`` and ``runs.csv``.

The study runner and the import of published logs both build their tables here, and the report
recomputes every run summary from ``clips.csv`` with the same functions, so all numbers go
through ``evaluate.metrics.regression_metrics`` exactly once per definition.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from robustmer.errors import DatasetError
from robustmer.evaluate.attack_settings import (
    DEFAULT_SETTING,
    SETTING_COLUMNS,
    Setting,
    setting_key,
    settings,
)
from robustmer.evaluate.metrics import per_sample_mae, regression_metrics
from robustmer.evaluate.store import (
    CLIPS_OPTIONAL_COLUMNS,
    clips_columns,
    order_model_types,
    output_columns,
    output_names,
    runs_columns,
    runs_metric_columns,
)


def _col(values: Any, n: int, name: str, fill: float = np.nan) -> np.ndarray:
    if values is None:
        return np.full(n, fill, dtype=np.float64)
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.shape[0] != n:
        raise DatasetError(f"{name}: expected {n} values (one per clip), got {arr.shape[0]}")
    return arr


def clips_frame(
    run_id: str,
    model_type: str,
    seed: int,
    clip_ids: Sequence[str],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    y_adv: np.ndarray,
    *,
    names: Sequence[str],
    zero_grad_start: Sequence[bool] | np.ndarray | None = None,
    iterations: Sequence[int] | np.ndarray | None = None,
    converged: Sequence[bool] | np.ndarray | None = None,
    final_threshold: Sequence[float] | np.ndarray | None = None,
    delta_linf: Sequence[float] | np.ndarray | None = None,
    delta_l2: Sequence[float] | np.ndarray | None = None,
    snr_db: Sequence[float] | np.ndarray | None = None,
    attack: str = "bim",
    domain: str = "spectrogram",
    eps: float = float("nan"),
) -> pd.DataFrame:
    """The ``clips.csv`` rows of one run under one attack setting ``(attack, domain, eps)``
    (default: ``attack_settings.DEFAULT_SETTING``): targets, clean and adversarial predictions
    ``(N, K)`` of the outputs ``names`` (for classification: one-hot labels and softmax
    probabilities per class), per-clip MAEs (``per_sample_mae``) and the attack's per-clip
    stats (NaN / False where a source does not provide them); ``zero_grad_start`` adds its
    optional column when some clip has it."""
    n = len(clip_ids)
    k = len(names)
    arrays = {}
    for name, arr in (("y_true", y_true), ("y_pred", y_pred), ("y_adv", y_adv)):
        a = np.asarray(arr, dtype=np.float64)
        if a.shape != (n, k):
            raise DatasetError(f"run {run_id}: {name} must have shape ({n}, {k}), got {a.shape}")
        arrays[name] = a
    data: dict[str, Any] = {
        "run_id": [str(run_id)] * n,
        "model_type": [str(model_type)] * n,
        "seed": [int(seed)] * n,
        "attack": [str(attack)] * n,
        "domain": [str(domain)] * n,
        "eps": np.full(n, float(eps), dtype=np.float64),
        "clip_id": [str(c) for c in clip_ids],
    }
    for prefix, a in (("y_", arrays["y_true"]), ("pred_", arrays["y_pred"]),
                      ("adv_", arrays["y_adv"])):
        for j, col in enumerate(output_columns(prefix, names)):
            data[col] = a[:, j]
    data["mae_clean"] = per_sample_mae(arrays["y_true"], arrays["y_pred"])
    data["mae_adv"] = per_sample_mae(arrays["y_true"], arrays["y_adv"])
    data["iterations"] = _col(iterations, n, f"run {run_id}: iterations")
    data["converged"] = (np.zeros(n, dtype=bool) if converged is None
                         else np.asarray(converged, dtype=bool).reshape(-1))
    if len(data["converged"]) != n:
        raise DatasetError(f"run {run_id}: converged: expected {n} values")
    data["final_threshold"] = _col(final_threshold, n, f"run {run_id}: final_threshold")
    data["delta_linf"] = _col(delta_linf, n, f"run {run_id}: delta_linf")
    data["delta_l2"] = _col(delta_l2, n, f"run {run_id}: delta_l2")
    data["snr_db"] = _col(snr_db, n, f"run {run_id}: snr_db")
    columns = list(clips_columns(names))
    if zero_grad_start is not None and np.asarray(zero_grad_start, dtype=bool).any():
        data["zero_grad_start"] = np.asarray(zero_grad_start, dtype=bool).reshape(-1)
        columns += list(CLIPS_OPTIONAL_COLUMNS)
    return pd.DataFrame(data, columns=columns)


def clips_from_attack_table(table: pd.DataFrame, run_id: str, model_type: str, seed: int,
                            setting: Setting) -> pd.DataFrame:
    """The ``clips.csv`` rows of one run from an attack folder's ``attack.csv`` table (the study
    and the report of a single attack folder both go through here)."""
    attack, domain, eps = setting
    names = output_names(table, "y_")
    return clips_frame(
        run_id, model_type, seed, table["clip_id"].astype(str).tolist(),
        table[list(output_columns("y_", names))].to_numpy(),
        table[list(output_columns("pred_", names))].to_numpy(),
        table[list(output_columns("adv_", names))].to_numpy(), names=names,
        zero_grad_start=table.get("zero_grad_start"),
        iterations=table["iterations"], converged=table["converged"],
        final_threshold=table["final_threshold"], delta_linf=table["delta_linf"],
        delta_l2=table["delta_l2"], snr_db=table["snr_db"],
        attack=attack, domain=domain, eps=eps)


def _nanmean(values: pd.Series) -> float:
    """Mean of the finite values (NaN if none): a clip whose returned δ is 0 has an infinite
    SNR (the reference preset can return the clean input), which is left out as the report's
    SNR table does."""
    arr = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if len(arr) else float("nan")


def summarize_run(clips: pd.DataFrame, names: Sequence[str] | None = None,
                  task: str = "regression") -> dict[str, float]:
    """The ``runs.csv`` metric columns of one run, from its ``clips.csv`` rows.

    Clean metrics compare ``y_*`` with ``pred_*``, adversarial ones ``y_*`` with ``adv_*``
    (both via ``regression_metrics`` over the run's clips; ``names``: the outputs, default
    from the header); ``delta_mae = adv_mae - clean_mae`` (equal to the mean over clips of
    ``mae_adv - mae_clean``); SNR and iterations are means over the clips that report them (NaN
    when none does). Classification adds the accuracy of the clean and adversarial
    predictions (argmax of ``pred_*`` / ``adv_*`` against the labelled class of ``y_*``).
    """
    names = list(names) if names is not None else output_names(clips, "y_")
    if len(clips) == 0:
        return {c: float("nan") for c in runs_metric_columns(names, task)}
    y = clips[list(output_columns("y_", names))].to_numpy(dtype=np.float64)
    p = clips[list(output_columns("pred_", names))].to_numpy(dtype=np.float64)
    a = clips[list(output_columns("adv_", names))].to_numpy(dtype=np.float64)
    clean = regression_metrics(y, p, names)
    adv = regression_metrics(y, a, names)
    out: dict[str, float] = {
        "clean_mean_r": clean["mean_r"],
        "clean_mae": clean["mae"],
        "clean_rmse": clean["rmse"],
        "clean_r2": clean["r2"],
    }
    for e in names:
        out[f"r_{e}"] = clean["r"][e]
    out["adv_mean_r"] = adv["mean_r"]
    out["adv_mae"] = adv["mae"]
    out["delta_mae"] = adv["mae"] - clean["mae"]
    out["mean_snr_db"] = _nanmean(clips["snr_db"]) if "snr_db" in clips else float("nan")
    out["mean_iterations"] = (_nanmean(clips["iterations"]) if "iterations" in clips
                              else float("nan"))
    if task == "classification":
        label = y.argmax(axis=1)
        out["clean_accuracy"] = float((p.argmax(axis=1) == label).mean())
        out["adv_accuracy"] = float((a.argmax(axis=1) == label).mean())
    return out


def run_row(run_id: str, model_type: str, seed: int, status: str = "done", message: str = "",
            clips: pd.DataFrame | None = None, *, setting: Setting | None = None,
            concept_mean_r: float = float("nan"), names: Sequence[str] | None = None,
            task: str = "regression") -> dict[str, Any]:
    """One ``runs.csv`` row: identity, attack setting, status, and the metrics of ``clips``
    (NaN when None, e.g. for a failed or not-runnable run); ``concept_mean_r`` is the test
    concept r of a concept-trained bottleneck (``clean_concept_mean_r``, NaN for other models).
    ``names``: the outputs (default: those of ``clips``; needed without clips).

    The setting is ``setting`` when given, else the one setting of ``clips`` (an error when
    they hold several), else ``DEFAULT_SETTING`` for a ``done`` row and empty for the others
    (a run that failed before any attack has no setting)."""
    if setting is None and clips is not None and len(clips):
        found = settings(clips)
        if len(found) > 1:
            raise DatasetError(f"run {run_id}: its clips hold {len(found)} attack settings; "
                               "give one row per setting")
        setting = found[0] if found else None
    if setting is None:
        setting = DEFAULT_SETTING if status == "done" else ("", "", float("nan"))
    row: dict[str, Any] = {"run_id": str(run_id), "model_type": str(model_type),
                           "seed": int(seed), "attack": str(setting[0]),
                           "domain": str(setting[1]), "eps": float(setting[2]),
                           "status": status, "message": message}
    if names is None:
        if clips is None:
            raise DatasetError(f"run {run_id}: a row without clips needs the output names")
        names = output_names(clips, "y_")
    metrics = (summarize_run(clips, names, task) if clips is not None
               else {c: float("nan") for c in runs_metric_columns(names, task)})
    row.update(metrics)
    row["clean_concept_mean_r"] = float(concept_mean_r)
    return {c: row[c] for c in runs_columns(names, task)}


def _setting_of(rec: dict[str, Any]) -> Setting | None:
    if any(c not in rec for c in SETTING_COLUMNS):
        return None
    attack = "" if pd.isna(rec["attack"]) else str(rec["attack"])
    if not attack.strip():
        return None
    return (attack, str(rec["domain"]), float(rec["eps"]))


def summarize_runs(clips: pd.DataFrame, runs: pd.DataFrame | None = None,
                   task: str = "regression") -> pd.DataFrame:
    """Per-(run, setting) summaries recomputed from ``clips.csv`` (outputs named by its
    header, or by ``runs.csv``'s when there are no clips).

    Without ``runs`` every (run, setting) in ``clips`` is ``done``. With ``runs``
    (``runs.csv``), its identity, setting, status and message are kept, rows that are not
    ``done`` keep NaN metrics, and a ``done`` row without clips gets NaN metrics too. Rows come
    in model-type order, then seed, run and setting (ε ascending, no bound last).
    """
    names = output_names(clips, "y_")
    if not names and runs is not None:
        names = output_names(runs, "r_")
    rows: list[dict[str, Any]] = []
    groups: dict[tuple[str, str, str, str], pd.DataFrame] = {}
    for (run_id, *_), g in (clips.groupby(["run_id", *SETTING_COLUMNS], sort=False,
                                          dropna=False) if len(clips) else []):
        key = (str(g["attack"].iloc[0]), str(g["domain"].iloc[0]), float(g["eps"].iloc[0]))
        groups[(str(run_id), *setting_key(key))] = g
    if runs is None:
        for g in groups.values():
            rows.append(run_row(g["run_id"].iloc[0], g["model_type"].iloc[0],
                                int(g["seed"].iloc[0]), clips=g, names=names, task=task))
    else:
        for rec in runs.to_dict("records"):
            run_id = str(rec["run_id"])
            st = _setting_of(rec)
            g = (groups.get((run_id, *setting_key(st)))
                 if rec["status"] == "done" and st is not None else None)
            concept = rec.get("clean_concept_mean_r", float("nan"))
            rows.append(run_row(run_id, rec["model_type"], int(rec["seed"]), rec["status"],
                                "" if pd.isna(rec.get("message")) else str(rec["message"]),
                                clips=g, setting=st,
                                concept_mean_r=float("nan") if g is None or pd.isna(concept)
                                else float(concept), names=names, task=task))
    df = pd.DataFrame(rows, columns=list(runs_columns(names, task)))
    if len(df) == 0:
        return df
    order = {t: i for i, t in enumerate(order_model_types(df["model_type"]))}
    df["_o"] = df["model_type"].map(order)
    df["_nan"] = df["eps"].isna()
    return df.sort_values(["_o", "seed", "run_id", "attack", "domain", "_nan", "eps"],
                          kind="stable").drop(columns=["_o", "_nan"]).reset_index(drop=True)
