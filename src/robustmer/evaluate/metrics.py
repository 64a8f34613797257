"""Regression metrics: the one implementation used by training, evaluation, the study and the
import of published logs, so that numbers are comparable everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def pearson_r(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Column-wise Pearson correlation of two ``(N, K)`` arrays; NaN where a column is constant."""
    a = np.asarray(y_true, dtype=np.float64)
    b = np.asarray(y_pred, dtype=np.float64)
    if a.ndim == 1:
        a, b = a[:, None], b[:, None]
    # A constant column is tested by its range: subtracting a float mean from N equal values
    # can leave rounding noise of ~1e-18 that would otherwise give a spurious r.
    constant = (np.ones(a.shape[1:], dtype=bool) if a.shape[0] == 0
                else (np.ptp(a, axis=0) == 0) | (np.ptp(b, axis=0) == 0))
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    denom = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=0) / denom
    return np.where((denom > 0) & ~constant, r, np.nan)


def rowwise_pearson_r(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Pearson r between the K targets and the K predictions of each row (per-sample r)."""
    return pearson_r(np.asarray(y_true).T, np.asarray(y_pred).T)


def regression_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Per-column Pearson r plus mean r, MAE, RMSE and R² over all columns.

    ``y_true`` and ``y_pred`` are ``(N, K)``. Returns ``{"r": {name: r}, "mean_r", "mae", "rmse",
    "r2", "mae_per": {name: mae}}``; R² is averaged over columns (scikit-learn's
    ``uniform_average``), MAE and RMSE over all N·K entries.
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape or t.ndim != 2:
        raise ValueError(
            f"y_true and y_pred must be equal (N, K) arrays, got {t.shape} and {p.shape}"
        )
    names = list(names) if names is not None else [str(i) for i in range(t.shape[1])]
    if len(names) != t.shape[1]:
        raise ValueError(f"{len(names)} names for {t.shape[1]} columns")
    r = pearson_r(t, p)
    err = p - t
    ss_res = (err**2).sum(axis=0)
    ss_tot = ((t - t.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan)
    return {
        "r": {n: float(v) for n, v in zip(names, r, strict=True)},
        "mean_r": float(np.nanmean(r)) if np.isfinite(r).any() else float("nan"),
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "r2": float(np.nanmean(r2)) if np.isfinite(r2).any() else float("nan"),
        "mae_per": {n: float(v) for n, v in zip(names, np.abs(err).mean(axis=0), strict=True)},
    }


def mean_predictor_metrics(train_targets: np.ndarray, test_targets: np.ndarray,
                           names: Sequence[str] | None = None) -> dict[str, Any]:
    """``regression_metrics`` of the baseline that predicts the training targets' mean for every
    test clip: the bar a model has to clear (its r is NaN: a constant has no correlation)."""
    train = np.asarray(train_targets, dtype=np.float64)
    test = np.asarray(test_targets, dtype=np.float64)
    return regression_metrics(test, np.broadcast_to(train.mean(axis=0), test.shape), names)


def per_sample_mae(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Mean absolute error of each row (one value per clip)."""
    err = np.abs(np.asarray(y_pred, np.float64) - np.asarray(y_true, np.float64))
    return np.asarray(err.mean(axis=1))


def classification_metrics(labels: np.ndarray, predicted: np.ndarray,
                           classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Accuracy and per-class counts of class predictions; labels ``-1`` (unknown) are skipped.

    Returns ``n`` (labelled clips), ``n_unlabelled``, ``accuracy`` (NaN with no labelled clip)
    and ``per_class``: ``{name: {n_true, n_pred, n_correct, recall}}`` (recall None for a class
    with no clip), names from ``classes`` (or the indices as strings).
    """
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    p = np.asarray(predicted, dtype=np.int64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and predictions {p.shape} differ in length")
    keep = y >= 0
    n_cls = len(classes) if classes is not None else int(max(y.max(initial=-1),
                                                             p.max(initial=-1)) + 1)
    names = [str(c) for c in classes] if classes is not None else [str(i) for i in range(n_cls)]
    per_class = {}
    for k, name in enumerate(names):
        n_true = int((y[keep] == k).sum())
        n_correct = int(((y == k) & (p == k)).sum())
        per_class[name] = {"n_true": n_true, "n_pred": int((p[keep] == k).sum()),
                           "n_correct": n_correct,
                           "recall": n_correct / n_true if n_true else None}
    return {"n": int(keep.sum()), "n_unlabelled": int((~keep).sum()),
            "accuracy": float((p[keep] == y[keep]).mean()) if keep.any() else float("nan"),
            "per_class": per_class}
