"""The training loop: the reference recipe, early stopping, resumable checkpoints and optional
adversarial training with any ``attack(model, x, y) -> result with .x_adv``.

Does not import ``robustmer.data`` or ``robustmer.attacks``: it takes any torch ``Dataset`` whose
items are the dicts documented in docs/ARCHITECTURE.md and any attack callable.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from robustmer import io
from robustmer.errors import CheckpointError, ConfigError
from robustmer.evaluate.metrics import regression_metrics
from robustmer.folders import settings_diff
from robustmer.models.types import ModelType, for_config, get_type, rebuild
from robustmer.train import checkpoint as ck
from robustmer.train.config import RESUMABLE_CHANGES, TrainConfig
from robustmer.train.options import (
    TargetScaler,
    fit_target_scaler,
    fold_targets,
    recalibrate_batchnorm,
    scheduled_lr,
)

Attack = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], Any]
"""Any ``attack(model, x, y)`` returning an object with ``.x_adv`` (e.g. robustmer.attacks.BIM)."""
EpochCallback = Callable[[int, dict[str, Any]], None]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator that fixes the data order of one epoch, from (seed, epoch) alone, so an
    epoch's order does not depend on what ran before it (which makes resuming exact)."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def _device(name: str) -> torch.device:
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available; use --device cpu")
    return dev


def _to_device(batch: Mapping[str, Any], device: torch.device,
               channels_last: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, val in batch.items():
        if isinstance(val, torch.Tensor):
            val = val.to(device, non_blocking=True)
            if key == "x" and channels_last:
                val = val.contiguous(memory_format=torch.channels_last)
        out[key] = val
    return out


def mixed_precision(device: torch.device, enabled: bool) -> tuple[
        Callable[[], contextlib.AbstractContextManager[Any]], torch.amp.GradScaler]:
    """The ``TrainConfig.amp`` policy: float16 autocast with loss scaling on CUDA, bfloat16
    autocast without scaling on CPU; with ``enabled=False`` a no-op context and a disabled
    scaler (whose ``scale``/``step``/``update`` pass through). Returns (context factory, scaler)."""
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler(device.type, enabled=enabled and device.type == "cuda")
    if not enabled:
        return contextlib.nullcontext, scaler
    return (lambda: torch.autocast(device.type, dtype=dtype)), scaler


def solo_loss(model_type: ModelType, out: Mapping[str, torch.Tensor | None],
              batch: Mapping[str, Any], target_weight: float = 0.5) -> torch.Tensor:
    """The training loss of one model: ``model_type.loss`` (written for S stacked seeds) with
    S = 1, as a scalar."""
    stacked = {k: None if v is None else v[None] for k, v in out.items()}
    one = {k: v[None] for k, v in batch.items() if isinstance(v, torch.Tensor)}
    return model_type.loss(stacked, one, target_weight).sum()


def dataset_names(data: Dataset | DataLoader) -> dict[str, tuple[str, ...] | None]:
    """The target, concept and class names a dataset (or a loader's dataset) carries; None
    where it does not say (a hand-made dataset: outputs are then named by index)."""
    ds = data.dataset if isinstance(data, DataLoader) else data
    return {key: (tuple(getattr(ds, key)) if getattr(ds, key, None) is not None else None)
            for key in ("target_names", "concept_names", "classes")}


def _names(given: tuple[str, ...] | None, n: int, what: str) -> list[str]:
    if given is not None and len(given) == n:
        return list(given)
    return [f"{what}{i}" for i in range(n)]


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, data: Dataset | DataLoader,
                   device: str | torch.device = "cpu", batch_size: int = 32,
                   model_type: ModelType | None = None) -> dict[str, Any]:
    """Predict a dataset (or loader) in eval mode and score it.

    Returns ``ids``, ``predictions`` / ``targets`` ``(N, K)`` arrays and ``metrics``
    (``regression_metrics`` with the dataset's target names); for bottleneck models also
    ``bottleneck`` ``(N, C)``, ``concept_targets``, ``concept_mask`` and ``concept_metrics`` over
    the annotated clips (``None`` when fewer than 2 are annotated); for classification
    ``logits``, ``labels`` and ``accuracy`` over labelled clips. ``model_type`` (default: the
    one its ``config`` records, else regression) decides the task.
    """
    if model_type is None:
        config = getattr(model, "config", None)
        model_type = for_config(config) if isinstance(config, dict) else ModelType("model")
    dev = torch.device(device)
    loader = data if isinstance(data, DataLoader) else DataLoader(
        data, batch_size=batch_size, shuffle=False, num_workers=0)
    names = dataset_names(data)
    was_training = model.training
    model.eval()
    ids: list[str] = []
    cols: dict[str, list[np.ndarray]] = {}
    classification = model_type.task == "classification"
    try:
        for batch in loader:
            b = _to_device(batch, dev)
            out = model_type.forward(model, b["x"])
            ids.extend(str(i) for i in batch["id"])
            parts = {"targets": None if classification else batch.get("targets"),
                     "predictions": None if classification else out["output"],
                     "bottleneck": out["bottleneck"], "concept_targets": batch.get("concepts"),
                     "concept_mask": batch.get("concept_mask"),
                     "logits": out["output"] if classification else None,
                     "labels": batch.get("label")}
            for key, val in parts.items():
                if val is not None:
                    cols.setdefault(key, []).append(val.detach().float().cpu().numpy()
                                                    if val.dtype.is_floating_point
                                                    else val.detach().cpu().numpy())
    finally:
        model.train(was_training)
    res: dict[str, Any] = {"ids": ids}
    res.update({k: np.concatenate(v) for k, v in cols.items()})
    if classification:
        labels = res["labels"].astype(np.int64)
        keep = labels >= 0
        pred = res["logits"].argmax(axis=1)
        res["accuracy"] = float((pred[keep] == labels[keep]).mean()) if keep.any() else math.nan
        return res
    res["metrics"] = regression_metrics(
        res["targets"], res["predictions"],
        _names(names["target_names"], res["targets"].shape[1], "output"))
    if "bottleneck" in res:
        mask = res.get("concept_mask", np.zeros(len(ids), bool)).astype(bool).reshape(-1)
        ct = res.get("concept_targets")
        res["concept_metrics"] = (
            regression_metrics(ct[mask], res["bottleneck"][mask],
                               _names(names["concept_names"], res["bottleneck"].shape[1],
                                      "concept"))
            if mask.sum() >= 2 and ct is not None and ct.shape[1] == res["bottleneck"].shape[1]
            else None)
    return res


def validation_score(model_type: ModelType, ev: Mapping[str, Any]) -> float:
    """The early-stopping score (``ModelType.score``): the targets' mean r (A2M2E: + concept
    mean r), or accuracy for classification; NaN (constant output) -> -inf."""
    return model_type.score(ev)


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


def _check_resume(ckpt: ck.Checkpoint, model_config: dict[str, Any], config: TrainConfig,
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
    diff = sorted(k for k in asked if asked[k] != stored[k] and k not in free)
    if diff:
        raise CheckpointError(f"{run_dir}: cannot resume with changed training settings "
                              + ", ".join(f"{k}: stored {stored[k]!r}, asked {asked[k]!r}"
                                          for k in diff))


HISTORY_COLUMNS: tuple[str, ...] = (
    "epoch", "train_loss", "val_mean_r", "val_mae", "val_concept_mean_r", "val_accuracy",
    "val_score", "best_epoch", "adv_loss", "attack_time_s", "time_s")
"""Column order of ``history.csv`` (other keys follow, sorted): JSON storage sorts the keys of
each record, so the order is set here rather than taken from the records."""


class _Rated(torch.nn.Module):
    """A model trained on standardised targets, seen in rating units (outputs ``s·z + m``):
    what the attack of adversarial training must see, with gradients to the same weights."""

    def __init__(self, model: torch.nn.Module, scaler: TargetScaler) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("std", torch.tensor(scaler.target_std))
        self.register_buffer("mean", torch.tensor(scaler.target_mean))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.std.to(x.device) + self.mean.to(x.device)


def _rated_copy(model: torch.nn.Module, scaler: TargetScaler | None) -> torch.nn.Module:
    """The model in rating units: itself without a scaler, else a folded copy (for validation)."""
    return model if scaler is None else fold_targets(copy.deepcopy(model), scaler)


def _recalibrate_best(run: Path, train_set: Dataset, device: torch.device,
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


def _write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    io.write_json(run_dir / "history.json", history)
    frame = pd.DataFrame(history)
    known = [c for c in HISTORY_COLUMNS if c in frame.columns]
    io.write_csv(run_dir / "history.csv",
                 frame[known + sorted(c for c in frame.columns if c not in known)])


def _open_tensorboard(config: TrainConfig, run_dir: Path) -> Any:
    if not config.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn("tensorboard is not installed; TrainConfig.tensorboard ignored",
                      stacklevel=3)
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


def _attack_record(attack: Attack | None) -> Any:
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
    _check_resume(last, model_config, config, data_description, run)
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


def update_early_stopping(es: dict[str, Any], score: float, patience: int, epoch: int) -> bool:
    """Update the early-stopping state with ``epoch``'s validation score; True if it is the new
    best. An undefined score (e.g. r over a single validation clip) is -inf; the first epoch
    still becomes "best" so that a run always has a best checkpoint."""
    improved = score > es["best_score"] or es["best_epoch"] == 0
    if improved:
        es.update(best_score=score, best_epoch=epoch, bad_epochs=0)
    else:
        es["bad_epochs"] += 1
    es["stopped"] = es["bad_epochs"] >= patience
    return bool(improved)


def output_sizes(model_type: ModelType, dataset: Dataset) -> tuple[int, int]:
    """``(n_outputs, n_concepts)`` a model of ``model_type`` needs for ``dataset``: its classes
    (classification) or target names, and its concept names; counted from the first item where
    the dataset does not name them."""
    names = dataset_names(dataset)
    first = dataset[0] if len(dataset) else {}  # type: ignore[arg-type]
    if model_type.task == "classification":
        classes = names["classes"]
        if classes is None:
            labels = [int(dataset[i]["label"]) for i in range(len(dataset))]  # type: ignore[arg-type]
            classes = tuple(str(i) for i in range(max(labels) + 1))
        if len(classes) < 2:
            raise ConfigError(f"model type {model_type.name} classifies: the data needs a class "
                              f"label column with at least 2 classes, found {list(classes)}")
        n_out = len(classes)
    else:
        targets = names["target_names"]
        n_out = len(targets) if targets is not None else int(first["targets"].shape[0])
        if n_out < 1:
            raise ConfigError(f"model type {model_type.name} regresses: the data has no target "
                              f"column")
    concepts = names["concept_names"]
    n_con = (len(concepts) if concepts is not None
             else int(first["concepts"].shape[0]) if "concepts" in first else 0)
    if model_type.needs_concepts and n_con < 1:
        raise ConfigError(f"model type {model_type.name} learns concepts through its "
                          f"bottleneck: the data has no concept columns")
    return n_out, n_con


def attack_reference(model_type: ModelType, batch: Mapping[str, Any]) -> torch.Tensor:
    """What an attack is measured against: the class labels (classification) or the targets."""
    return batch["label"] if model_type.task == "classification" else batch["targets"]


def epoch_record(model_type: ModelType, epoch: int, train_loss: float, ev: Mapping[str, Any],
                 score: float, es: Mapping[str, Any], *, adv_loss: float | None = None,
                 attack_time: float = 0.0, seconds: float = 0.0) -> dict[str, Any]:
    """One ``history`` row (see :data:`HISTORY_COLUMNS`) from an epoch's validation result."""
    record: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss}
    record.update(model_type.history(ev))
    record.update(val_score=score, best_epoch=es["best_epoch"], adv_loss=adv_loss,
                  attack_time_s=attack_time, time_s=seconds)
    return record


def save_epoch(run: Path, ckpt: ck.Checkpoint, improved: bool, writer: Any = None) -> None:
    """An epoch's end on disk: ``last/`` written, copied to ``best/`` if it improved, the
    history files rewritten, the record sent to tensorboard."""
    ck.save_checkpoint(run, ck.LAST, ckpt)
    if improved:
        ck.copy_checkpoint(run, ck.LAST, ck.BEST)
    _write_history(run, ckpt.history)
    if writer is not None:
        record = ckpt.history[-1]
        for key, val in record.items():
            if isinstance(val, int | float) and key != "epoch" and math.isfinite(val):
                writer.add_scalar(key, val, int(record["epoch"]))


def train_run(train_set: Dataset, val_set: Dataset, run_dir: str | Path, *,
              model_type: ModelType | str, model_settings: Mapping[str, Any] | None = None,
              config: TrainConfig | None = None, data_description: dict[str, Any] | None = None,
              normaliser: dict[str, Any] | None = None, attack: Attack | None = None,
              resume: bool = False, progress: bool = True,
              callbacks: Iterable[EpochCallback] = (),
              extra_config: dict[str, Any] | None = None) -> TrainResult:
    """Train one model with the recipe in ``config`` and keep ``last/`` + ``best/`` in ``run_dir``.

    The model is ``model_type`` (a registered name or a :class:`ModelType`) built with
    ``model_settings`` (e.g. ``{"width": 0.125, "dropout": 0.0}``) for the datasets' outputs
    (their target names, or classes for classification); the checkpoints record how to
    rebuild it, so ``load_run`` rebuilds a user's factory model as it rebuilds A2E.

    With ``resume=True`` a run continues from ``last/`` (or starts fresh if there is none) and
    ends with bit-identical weights to an uninterrupted run (CPU). ``callbacks`` are called as
    ``cb(epoch, history_record)`` after each epoch's checkpoint is on disk; ``extra_config`` goes
    into the run's ``config.yaml`` (e.g. the study's model-type name). ``attack`` is needed
    when ``config.adversarial_every > 0``: after the clean step on a batch of every n-th epoch,
    the batch is attacked (model in eval mode) and a second step is taken on the result.
    """
    config = config or TrainConfig()
    mtype = get_type(model_type) if isinstance(model_type, str) else model_type
    run = Path(run_dir)
    if config.adversarial_every > 0 and attack is None:
        raise ConfigError("TrainConfig.adversarial_every > 0 needs an attack callable")
    if not mtype.trainable:
        raise ConfigError(f"model type {mtype.name} is pretrained (train: false); write its run "
                          f"folder with robustmer.train.write_pretrained instead")
    device = _device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False

    n_outputs, n_concepts = output_sizes(mtype, train_set)
    seed_everything(config.seed)
    model, model_config = mtype.create(n_outputs, n_concepts, model_settings)
    ck.recover(run)
    resuming = (run / ck.LAST).is_dir()
    if resuming and not resume:
        raise CheckpointError(f"{run} already holds a run (last/); resume it (--resume) or "
                              f"choose another folder")
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    autocast, scaler = mixed_precision(device, config.amp)

    tscale: TargetScaler | None = None
    history: list[dict[str, Any]] = []
    es: dict[str, Any] = {"best_score": -math.inf, "best_epoch": 0, "bad_epochs": 0,
                          "stopped": False}
    start = 1
    if resuming:
        last = load_last(run, model_config, config, data_description)
        model.load_state_dict(last.model_state)
        opt_state = last.optimizer_state or {}
        optimizer.load_state_dict(opt_state["optimizer"])
        scaler.load_state_dict(opt_state.get("scaler") or {})
        history = list(last.history)
        es = dict(last.state["early_stopping"])
        start = int(last.state["epoch"]) + 1
        if last.state.get("target_scaler") is not None:
            tscale = TargetScaler.from_dict(last.state["target_scaler"])
        assert last.rng is not None
        ck.restore_rng(last.rng)
        meta = last.meta
    else:
        if config.standardize_targets:
            tscale = fit_target_scaler(train_set, mtype, model)
        meta = io.run_meta(seed=config.seed, model=model_config)
        write_run_files(run, meta, model_config, config, data_description, extra_config,
                         _attack_record(attack))
    if history:
        _write_history(run, history)

    writer = _open_tensorboard(config, run)
    epochs_bar = tqdm(total=config.max_epochs, initial=start - 1, desc="train", unit="epoch",
                      disable=not progress)

    def step(batch: dict[str, Any], x: torch.Tensor, lr: float) -> float:
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = solo_loss(mtype, mtype.forward(model, x), batch, config.emotion_weight)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return float(loss.detach())

    for epoch in range(start, config.max_epochs + 1):
        if es["stopped"]:
            break
        t0 = time.perf_counter()
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True,
                            generator=epoch_generator(config.seed, epoch), num_workers=0)
        adversarial = config.adversarial_every > 0 and epoch % config.adversarial_every == 0
        model.train()
        total = adv_total = attack_time = 0.0
        n_batches = 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{config.max_epochs}", leave=False,
                   disable=not progress)
        for i_batch, raw in enumerate(bar):
            batch = _to_device(raw, device, config.channels_last)
            target = batch if tscale is None else tscale.standardize(batch)
            lr = scheduled_lr(config, epoch, i_batch, len(loader))
            total += step(target, batch["x"], lr)
            n_batches += 1
            if adversarial:
                assert attack is not None
                model.eval()
                ta = time.perf_counter()
                seen = model if tscale is None else _Rated(model, tscale)
                x_adv = attack(seen, batch["x"], attack_reference(mtype, batch)).x_adv.detach()
                attack_time += time.perf_counter() - ta
                model.train()
                adv_total += step(target, x_adv, lr)
            bar.set_postfix(loss=f"{total / n_batches:.4f}")
        bar.close()

        ev = evaluate_model(_rated_copy(model, tscale), val_set, device,
                            batch_size=max(config.batch_size, 32), model_type=mtype)
        score = validation_score(mtype, ev)
        improved = update_early_stopping(es, score, config.patience, epoch)
        record = epoch_record(mtype, epoch, total / max(n_batches, 1), ev, score, es,
                              adv_loss=adv_total / n_batches if adversarial and n_batches
                              else None, attack_time=attack_time,
                              seconds=time.perf_counter() - t0)
        history.append(record)
        save_epoch(run, ck.Checkpoint(
            model_state=model.state_dict(),
            state={"epoch": epoch, "early_stopping": es,
                   "target_scaler": None if tscale is None else tscale.to_dict()},
            model_config=model_config, train_config=config.to_dict(), data=data_description,
            normaliser=normaliser, history=history, meta=meta,
            optimizer_state={"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict()},
            rng=ck.capture_rng()), improved, writer)
        epochs_bar.update(1)
        shown = {k: f"{record[k]:.3f}" for k in ("val_mean_r", "val_mae", "val_accuracy")
                 if k in record and record[k] is not None and math.isfinite(record[k])}
        epochs_bar.set_postfix(**shown, best=f"{es['best_score']:.3f}@{es['best_epoch']}")
        for cb in callbacks:
            cb(epoch, record)
    epochs_bar.close()
    if writer is not None:
        writer.close()

    return finish_run(run, config, train_set, device, history, es, mtype)


def finish_run(run: Path, config: TrainConfig, train_set: Dataset, device: torch.device,
               history: list[dict[str, Any]], es: Mapping[str, Any],
               model_type: ModelType | None = None) -> TrainResult:
    """The end of a run: refuse one without a best checkpoint, recalibrate ``best/``'s
    BatchNorm when asked, and load it into a :class:`TrainResult`."""
    if not (run / ck.BEST).is_dir():
        raise CheckpointError(f"{run}: no epoch was trained (max_epochs={config.max_epochs} "
                              f"<= the last finished epoch?)")
    if config.bn_recalibrate:
        _recalibrate_best(run, train_set, device, max(config.batch_size, 32))
    best = ck.load_run(run, ck.BEST, device=str(device))
    last_epoch = int(history[-1]["epoch"]) if history else 0
    return TrainResult(model=best.model, run_dir=run, history=history,
                       best_epoch=int(es["best_epoch"]), best_score=float(es["best_score"]),
                       last_epoch=last_epoch, stopped_early=bool(es["stopped"]))
