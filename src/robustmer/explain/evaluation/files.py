"""The files of an explainer-eval folder: their names and columns, reading the tables, the
settings check of a resumed run, the fixed row order that makes a resumed table equal an
uninterrupted one, and the few clips' attribution maps kept for the report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from robustmer.attacks.spec import TASK_ALIASES
from robustmer.errors import ConfigError
from robustmer.io import plain, read_npz, safe_name, write_npz, write_yaml

ADVERSARIAL, FLIPS, RECOVERY, TIMINGS = ("adversarial.csv", "flips.csv", "recovery.csv",
                                         "timings.csv")
EXAMPLES, MAPS = "examples", "maps"
CONTEXT = "context_"
"""Prefix of an item's ``context`` arrays in ``examples/<clip>.npz``."""

ADV_COLUMNS: tuple[str, ...] = (
    "clip_id", "success", "clean_class", "target_class", "explained", "iterations",
    "delta_linf", "delta_l2", "mse_clean", "mse_adv")
"""``adversarial.csv``: ``success`` (the attack reached its goal; only these clips are
evaluated), ``clean_class`` / ``target_class`` (classifier; -1 for regressors), ``explained``
(the output index every explainer explains: the target class, or the output moved most),
``iterations``, ``δ`` norms, and for regressors the MSE against ``y`` before and after."""
FLIP_COLUMNS: tuple[str, ...] = ("clip_id", "method", "k", "flipped", "effect")
"""``flips.csv``: ``flipped`` (x + δ restricted to the method's top-k segments gives the
adversarial decision), ``effect`` (classifier: softmax probability of the adversarial class;
regressor: the partial MSE rise divided by the full one)."""
RECOVERY_COLUMNS: tuple[str, ...] = ("clip_id", "method", "k", "partial_flipped", "hits")
"""``recovery.csv``: ``partial_flipped`` (the δ kept in its k largest segments still flips; only
those clips are explained), ``hits`` (how many of those k segments the method ranks in its top
k; empty where ``partial_flipped`` is false)."""
TIMING_COLUMNS: tuple[str, ...] = ("clip_id", "method", "stage", "seconds")
"""``timings.csv``: wall seconds per explained clip (a batch's time divided by its clips);
``stage`` is ``adversarial`` or ``recovery_k<k>``."""


def read_table(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """One table of the folder (ids as text), or an empty one with ``columns`` if missing."""
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype="object" if c in ("clip_id", "method", "stage")
                                          else "float64") for c in columns})
    return pd.read_csv(path, dtype={"clip_id": str, "method": str})


def read_results(out_dir: str | Path) -> dict[str, pd.DataFrame]:
    """The tables of an explainer-eval folder (empty tables where a file is missing)."""
    out = Path(out_dir)
    return {"adversarial": read_table(out / ADVERSARIAL, ADV_COLUMNS),
            "flips": read_table(out / FLIPS, FLIP_COLUMNS),
            "recovery": read_table(out / RECOVERY, RECOVERY_COLUMNS),
            "timings": read_table(out / TIMINGS, TIMING_COLUMNS)}


def prepare_out(out: Path, config: dict[str, Any], resume: bool) -> None:
    cfg_path = out / "config.yaml"
    if (out / ADVERSARIAL).exists() and not resume:
        raise ConfigError(f"{out / ADVERSARIAL} exists; pass resume=True (--resume) to continue "
                          f"it or choose another output folder")
    if resume and cfg_path.exists():
        stored = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
        if "task" in stored:  # folders written before the tasks took the model types' words
            stored["task"] = TASK_ALIASES.get(stored["task"], stored["task"])
        asked = yaml.safe_load(yaml.safe_dump(plain(config), sort_keys=False))
        # methods may be added on resume; everything else must match
        a = {k: v for k, v in stored.items() if k not in ("methods", "explainers")}
        b = {k: v for k, v in asked.items() if k not in ("methods", "explainers")}
        if a != b:
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            raise ConfigError(f"{cfg_path} holds different settings; cannot resume with these "
                              f"(differences in {diff}): choose another output folder")
        stored_ex = stored.get("explainers") or {}
        for name, cfg in (asked.get("explainers") or {}).items():
            if name in stored_ex and stored_ex[name] != cfg:
                raise ConfigError(f"{cfg_path}: method {name!r} was run with {stored_ex[name]}, "
                                  f"not {cfg}; choose another output folder")
        merged = dict(asked)
        merged["explainers"] = {**stored_ex, **(asked.get("explainers") or {})}
        merged["methods"] = list(dict.fromkeys([*(stored.get("methods") or []),
                                                *(asked.get("methods") or [])]))
        config = merged
    write_yaml(cfg_path, config)


def ordered(frame: pd.DataFrame, columns: Sequence[str], clip_order: dict[str, int],
             methods: Sequence[str]) -> pd.DataFrame:
    """Rows in a fixed order (clip order of the attack, method order, k), so that a resumed run
    writes the same table as an uninterrupted one."""
    if not len(frame):
        return frame.reindex(columns=list(columns))
    m_order = {m: i for i, m in enumerate(methods)}
    keys = [frame["clip_id"].map(clip_order).fillna(len(clip_order)),
            frame["method"].map(m_order).fillna(len(m_order))]
    sort = pd.DataFrame({"_c": keys[0].to_numpy(), "_m": keys[1].to_numpy()})
    by = ["_c", "_m"]
    if "k" in frame.columns:
        sort["_k"] = frame["k"].to_numpy()
        by.append("_k")
    if "stage" in frame.columns:
        sort["_s"] = frame["stage"].astype(str).to_numpy()
        by.append("_s")
    idx = sort.sort_values(by, kind="stable").index
    return frame.iloc[idx].reset_index(drop=True).reindex(columns=list(columns))




def add_map(out: Path, clip_id: str, method: str, ranking: torch.Tensor,
             attribution: torch.Tensor | None, seg: torch.Tensor) -> None:
    """Keep one clip's map for the report: ``maps/<clip>.npz`` gains ``rank_<method>`` (and
    ``attr_<method>``, the pixel map); ``x``, ``delta`` and ``segments`` come along once."""
    path = out / MAPS / f"{safe_name(clip_id)}.npz"
    arrays = read_npz(path) if path.exists() else {}
    if "x" not in arrays:
        ex = read_npz(out / EXAMPLES / f"{safe_name(clip_id)}.npz")
        arrays.update(x=ex["x"], delta=ex["delta"], segments=seg.cpu().numpy(),
                      clip_id=np.asarray(clip_id))
    arrays[f"rank_{method}"] = ranking.cpu().numpy()
    if attribution is not None:
        arrays[f"attr_{method}"] = attribution.numpy().astype(np.float32)
    write_npz(path, **arrays)
