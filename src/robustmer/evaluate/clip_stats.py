"""Per-clip values of a results store and their intervals: the ground that Table 1, the
perceptibility table, the robustness curves and the paired tests stand on.

``clip_mae`` recomputes a clip's MAE from ``clips.csv`` (``per_sample_mae``); ``clip_intervals``
gives the report's interval of a per-clip quantity (the crossed bootstrap over seeds and clips,
``INTERVAL_WORDS``). The small helpers below it (the clips of done runs, one setting per table,
the bootstrap's clusters and items) are shared by ``study_tables``, ``curves``, ``paired_tests``
and ``planned``, which is why they live here and are public.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from robustmer.errors import ConfigError
from robustmer.evaluate.attack_settings import setting_label, settings
from robustmer.evaluate.correlations import bootstrap_correlation_ci
from robustmer.evaluate.intervals import cluster_bootstrap_ci
from robustmer.evaluate.metrics import per_sample_mae
from robustmer.evaluate.resampling import DEFAULT_N_BOOT, Interval
from robustmer.evaluate.store import output_columns, output_names

INTERVAL_WORDS = ("crossed bootstrap over seeds and clips, which draws seeds and clip ids "
                  "independently with replacement since every seed is tested on the same clips")
"""How the report's intervals of a per-clip quantity are made, in words (``clip_intervals``)."""

INTERVAL_SHORT = "crossed bootstrap over seeds and clips"
"""``INTERVAL_WORDS`` for a table's caption (the statement above the tables has the long form)."""

CLIP_QUANTITIES: tuple[str, ...] = ("clean_mean_r", "adv_mean_r", "clean_mae", "adv_mae",
                                    "delta_mae", "snr_db")
"""The quantities ``clip_intervals`` knows; the ``*_mean_r`` ones are correlations."""


def require_one_setting(frame: pd.DataFrame | None, what: str) -> None:
    """Refuse a frame that mixes attack settings: its rows would be pooled silently."""
    if frame is None:
        return
    found = settings(frame)
    if len(found) > 1:
        raise ConfigError(
            f"{what}: the table holds {len(found)} attack settings "
            f"({'; '.join(setting_label(x) for x in found)}); select one with "
            "attack_settings.select_setting or use the *_by_setting functions")


def done_clips(clips: pd.DataFrame, runs: pd.DataFrame | None) -> pd.DataFrame:
    """The clip rows of the runs whose status is ``done`` in ``runs`` (all rows without
    ``runs``)."""
    if runs is not None and len(clips):
        done = set(runs.loc[runs["status"] == "done", "run_id"].astype(str))
        clips = clips[clips["run_id"].astype(str).isin(done)]
    return clips


def done_ids(per_run: pd.DataFrame) -> set[str]:
    """The ``run_id`` of every ``done`` row of a runs table (``summarize_runs``)."""
    return set(per_run.loc[per_run["status"] == "done", "run_id"].astype(str))


def boot_keys(clips: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """Clusters (seeds) and items (clip ids) for the bootstrap: the crossed scheme needs one
    row per (seed, clip); two runs of a type with one seed fall back to the two-stage scheme."""
    seeds = clips["seed"].to_numpy()
    ids = clips["clip_id"].astype(str).to_numpy()
    if clips.duplicated(subset=["seed", "clip_id"]).any():
        return seeds, None
    return seeds, ids


def no_interval(level: float, why: str) -> Interval:
    """An undefined interval (NaN estimate and bounds, N = 0) whose method says ``why``."""
    return Interval(float("nan"), float("nan"), float("nan"), 0, 0, why, level)


def clip_mae(clips: pd.DataFrame, which: str = "adv") -> np.ndarray:
    """Per-clip MAE of the clean (``which="clean"``) or adversarial predictions, recomputed from
    the ``y_*`` and ``pred_*`` / ``adv_*`` columns with ``per_sample_mae``."""
    prefix = {"adv": "adv_", "clean": "pred_"}.get(which)
    if prefix is None:
        raise ConfigError(f"which={which!r}: expected 'adv' or 'clean'")
    names = output_names(clips, "y_")
    return per_sample_mae(clips[list(output_columns("y_", names))].to_numpy(np.float64),
                          clips[list(output_columns(prefix, names))].to_numpy(np.float64))


def clip_values(clips: pd.DataFrame, which: str) -> pd.DataFrame:
    """Per clip row: ``model_type, seed, clip_id, value`` with ``value`` the clip's clean or
    adversarial MAE (``clip_mae``), the frame the paired tests pair by ``(seed, clip_id)``."""
    return pd.DataFrame({"model_type": clips["model_type"].astype(str).to_numpy(),
                         "seed": clips["seed"].to_numpy(),
                         "clip_id": clips["clip_id"].astype(str).to_numpy(),
                         "value": clip_mae(clips, which) if len(clips) else np.array([])})


def clip_intervals(clips: pd.DataFrame, quantities: Sequence[str] = CLIP_QUANTITIES, *,
                   level: float = 0.95, n_boot: int = DEFAULT_N_BOOT, seed: int = 0
                   ) -> dict[str, Interval]:
    """The interval of each of ``quantities`` (``CLIP_QUANTITIES``) from the clip rows of one
    model type at one attack setting, resampling clips with the seeds as clusters (the crossed
    bootstrap of ``evaluate.resampling``; ``INTERVAL_WORDS``), each with its N clips and N seeds.

    MAE, ΔMAE (per clip: ``per_sample_mae`` after minus before) and SNR: the mean of the
    per-clip values (SNR over the clips with a finite SNR: δ = 0 gives +inf, left out and
    counted in ``n_excluded``). Mean r: the mean-over-outputs Pearson r recomputed in every
    replicate (``bootstrap_correlation_ci``), so its interval stays inside [-1, 1]; its
    estimate is the mean over seeds of each seed's r, as Table 1 averages runs."""
    unknown = [q for q in quantities if q not in CLIP_QUANTITIES]
    if unknown:
        raise ConfigError(f"quantities {unknown}: expected some of {', '.join(CLIP_QUANTITIES)}")
    if len(clips) == 0:
        return {q: no_interval(level, "no clips") for q in quantities}
    cl, items = boot_keys(clips)
    boot: dict[str, Any] = {"items": items, "n_boot": n_boot, "level": level, "seed": seed}
    names = output_names(clips, "y_")
    y = clips[list(output_columns("y_", names))].to_numpy(np.float64)
    out: dict[str, Interval] = {}
    for q in quantities:
        if q.endswith("_mean_r"):
            prefix = "pred_" if q.startswith("clean") else "adv_"
            pred = clips[list(output_columns(prefix, names))].to_numpy(np.float64)
            out[q] = bootstrap_correlation_ci(y, pred, cl, **boot)
            continue
        if q == "snr_db":
            v = clips["snr_db"].to_numpy(np.float64)
        elif q == "delta_mae":
            v = clip_mae(clips, "adv") - clip_mae(clips, "clean")
        else:
            v = clip_mae(clips, "clean" if q == "clean_mae" else "adv")
        out[q] = cluster_bootstrap_ci(v, cl, **boot)
    return out
