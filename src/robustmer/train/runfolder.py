"""The run folder of a training run: what is written when it starts (``config.yaml``,
``meta.json``), after each epoch (``last/``, ``best/``, ``history.{json,csv}``, tensorboard) and at
its end, and what is read to resume it (``last/``, checked against the asked model, settings and
data). The checkpoint format itself is :mod:`robustmer.train.checkpoint`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import Dataset

from robustmer import io
from robustmer.errors import CheckpointError
from robustmer.folders import settings_diff
from robustmer.models.types import rebuild
from robustmer.protocols import AttackLike
from robustmer.train import checkpoint as ck
from robustmer.train.config import RESUMABLE_CHANGES, TrainConfig
from robustmer.train.early_stopping import EarlyStopping
from robustmer.train.options import recalibrate_batchnorm

HISTORY_COLUMNS: tuple[str, ...] = (
    "epoch", "train_loss", "val_mean_r", "val_mae", "val_concept_mean_r", "val_accuracy",
    "val_score", "best_epoch", "adv_loss", "attack_time_s", "time_s")
"""Column order of ``history.csv`` (other keys follow, sorted): JSON storage sorts the keys of
each record, so the order is set here rather than taken from the records."""


@dataclass
class TrainResult:
    """What :func:`train_run` returns; ``model`` holds the best checkpoint's weights (eval mode)."""

    model: torch.nn.Module
    run_dir: Path
    history: list[dict[str, Any]]
    best_epoch: int
    best_score: float
    last_epoch: int
    stopped_early: bool


def check_resume(ckpt: ck.Checkpoint, model_config: dict[str, Any], config: TrainConfig,
                  data_description: dict[str, Any] | None, run_dir: Path) -> None:
    stored_split = (ckpt.data or {}).get("split_id")
    asked_split = (data_description or {}).get("split_id")
    if stored_split is not None and asked_split is not None and stored_split != asked_split:
        raise CheckpointError(f"{run_dir}: cannot resume on another split (stored split_id "
                              f"{stored_split!r}, asked {asked_split!r})")
    stored_data = (ckpt.data or {}).get("content_id")
    asked_data = (data_description or {}).get("content_id")
    if stored_data and asked_data and stored_data != asked_data:
        raise CheckpointError(f"{run_dir}: cannot resume on other data (the run's dataset has "
                              f"content id {stored_data!r}, the given one {asked_data!r})")
    diff = settings_diff(ckpt.model_config, model_config)
    if diff:
        raise CheckpointError(f"{run_dir}: cannot resume with another model: " + "; ".join(
            f"{k}: stored {a!r}, asked {b!r}" for k, a, b in diff))
    stored = TrainConfig.from_dict(ckpt.train_config).to_dict()
    asked = config.to_dict()
    free = RESUMABLE_CHANGES if config.lr_schedule == "constant" else (
        RESUMABLE_CHANGES - {"max_epochs"})  # the schedule spans max_epochs
    changed = sorted(k for k in asked if asked[k] != stored[k] and k not in free)
    if changed:
        raise CheckpointError(f"{run_dir}: cannot resume with changed training settings "
                              + ", ".join(f"{k}: stored {stored[k]!r}, asked {asked[k]!r}"
                                          for k in changed))


def recalibrate_best(run: Path, train_set: Dataset[Any], device: torch.device,
                      batch_size: int) -> None:
    """``TrainConfig.bn_recalibrate``: recompute ``best/``'s BatchNorm statistics on the training
    excerpts of its epoch (dropout off) and mark it done in its ``state.json``. Deterministic
    and idempotent, so a run killed before or during it just does it again."""
    best = ck.read_checkpoint(run, ck.BEST)
    if best.state.get("bn_recalibrated"):
        return
    model = rebuild(best.model_config)
    model.load_state_dict(best.model_state)
    model.to(device)
    if hasattr(train_set, "set_epoch"):
        train_set.set_epoch(int(best.state["epoch"]))
    recalibrate_batchnorm(model, train_set, device, batch_size=batch_size)
    best.model_state = model.state_dict()
    best.state = {**best.state, "bn_recalibrated": True}
    ck.save_checkpoint(run, ck.BEST, best)


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    io.write_json(run_dir / "history.json", history)
    frame = pd.DataFrame(history)
    known = [c for c in HISTORY_COLUMNS if c in frame.columns]
    io.write_csv(run_dir / "history.csv",
                 frame[known + sorted(c for c in frame.columns if c not in known)])


def open_tensorboard(config: TrainConfig, run_dir: Path) -> Any:
    if not config.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn("tensorboard is not installed; TrainConfig.tensorboard ignored",
                      stacklevel=3)
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


def attack_record(attack: AttackLike | None) -> Any:
    """What ``config.yaml`` records of the training attack: its spec (``attacks.spec``) when it
    carries one, else its ``config()``, else its class name; None without an attack."""
    if attack is None:
        return None
    spec = getattr(attack, "spec", None)
    if spec is not None and hasattr(spec, "to_dict"):
        return spec.to_dict()
    config = getattr(attack, "config", None)
    return config() if callable(config) else type(attack).__name__


def load_last(run: Path, model_config: dict[str, Any], config: TrainConfig,
              data_description: dict[str, Any] | None) -> ck.Checkpoint:
    """Read ``last/`` to resume it: checks that the model, settings and data are the run's own
    (``CheckpointError`` otherwise) and redoes a ``best/`` copy that a kill interrupted."""
    last = ck.read_checkpoint(run, ck.LAST, for_resume=True)
    check_resume(last, model_config, config, data_description, run)
    es = last.state["early_stopping"]
    best_ok = (run / ck.BEST / ck.STATE_FILE).is_file() and int(
        io.read_json(run / ck.BEST / ck.STATE_FILE)["epoch"]) == es["best_epoch"]
    if es["best_epoch"] == last.state["epoch"] and not best_ok:  # killed before best/ copy
        ck.copy_checkpoint(run, ck.LAST, ck.BEST)
    return last


def write_run_files(run: Path, meta: dict[str, Any], model_config: dict[str, Any],
                     config: TrainConfig, data_description: dict[str, Any] | None,
                     extra_config: dict[str, Any] | None, attack_record: Any = None) -> None:
    """A fresh run folder's ``config.yaml`` (what was asked) and ``meta.json``."""
    run.mkdir(parents=True, exist_ok=True)
    io.write_yaml(run / "config.yaml", {
        **(extra_config or {}), "model": model_config, "train": config.to_dict(),
        "adversarial_attack": attack_record, "data": data_description})
    io.write_json(run / "meta.json", meta)


def save_epoch(run: Path, ckpt: ck.Checkpoint, improved: bool, writer: Any = None) -> None:
    """An epoch's end on disk: ``last/`` written, copied to ``best/`` if it improved, the
    history files rewritten, the record sent to tensorboard."""
    ck.save_checkpoint(run, ck.LAST, ckpt)
    if improved:
        ck.copy_checkpoint(run, ck.LAST, ck.BEST)
    write_history(run, ckpt.history)
    if writer is not None:
        record = ckpt.history[-1]
        for key, val in record.items():
            if isinstance(val, int | float) and key != "epoch" and math.isfinite(val):
                writer.add_scalar(key, val, int(record["epoch"]))


def finish_run(run: Path, config: TrainConfig, train_set: Dataset[Any], device: torch.device,
               history: list[dict[str, Any]], es: EarlyStopping) -> TrainResult:
    """The end of a run: refuse one without a best checkpoint, recalibrate ``best/``'s
    BatchNorm when asked, and load it into a :class:`TrainResult`."""
    if not (run / ck.BEST).is_dir():
        raise CheckpointError(f"{run}: no epoch was trained (max_epochs={config.max_epochs} "
                              f"<= the last finished epoch?)")
    if config.bn_recalibrate:
        recalibrate_best(run, train_set, device, max(config.batch_size, 32))
    best = ck.load_run(run, ck.BEST, device=str(device))
    last_epoch = int(history[-1]["epoch"]) if history else 0
    return TrainResult(model=best.model, run_dir=run, history=history,
                       best_epoch=int(es.best_epoch), best_score=float(es.best_score),
                       last_epoch=last_epoch, stopped_early=bool(es.stopped))
