"""The training loop: the reference recipe and optional adversarial training with any attack
(``robustmer.protocols.AttackLike``: ``attack(model, x, y) -> AttackResult``).

Does not import ``robustmer.data`` or ``robustmer.attacks``: it takes any torch ``Dataset`` whose
items are the dicts documented in docs/ARCHITECTURE.md and any attack. Its parts live beside it:
where a run executes (:mod:`~robustmer.train.runtime`), validation
(:mod:`~robustmer.train.evaluation`), early stopping (:mod:`~robustmer.train.early_stopping`) and
the run folder (:mod:`~robustmer.train.runfolder`); their public names are re-exported here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from robustmer import io
from robustmer.errors import CheckpointError, ConfigError
from robustmer.models.types import ModelType, get_type
from robustmer.protocols import AttackLike
from robustmer.train import checkpoint as ck
from robustmer.train.config import TrainConfig
from robustmer.train.early_stopping import EarlyStopping
from robustmer.train.evaluation import (
    dataset_names,
    evaluate_model,
    output_sizes,
    validation_score,
)
from robustmer.train.options import (
    RatedModel,
    TargetScaler,
    fit_target_scaler,
    rated_copy,
    scheduled_lr,
)
from robustmer.train.runfolder import (
    HISTORY_COLUMNS,
    TrainResult,
    attack_record,
    finish_run,
    load_last,
    open_tensorboard,
    save_epoch,
    write_history,
    write_run_files,
)
from robustmer.train.runtime import (
    deterministic_cudnn,
    epoch_generator,
    mixed_precision,
    preserved_global_state,
    resolve_device,
    seed_everything,
    to_device,
)

__all__ = [
    "HISTORY_COLUMNS", "EpochCallback", "TrainResult", "attack_reference", "dataset_names",
    "epoch_generator", "epoch_record", "evaluate_model", "mixed_precision", "output_sizes",
    "seed_everything", "solo_loss", "train_run", "validation_score",
]

EpochCallback = Callable[[int, dict[str, Any]], None]
"""``cb(epoch, history_record)``, called after the epoch's checkpoint is on disk."""


def solo_loss(model_type: ModelType, out: Mapping[str, torch.Tensor | None],
              batch: Mapping[str, Any], target_weight: float = 0.5) -> torch.Tensor:
    """The training loss of one model: ``model_type.loss`` (written for S stacked seeds) with
    S = 1, as a scalar."""
    stacked = {k: None if v is None else v[None] for k, v in out.items()}
    one = {k: v[None] for k, v in batch.items() if isinstance(v, torch.Tensor)}
    loss: torch.Tensor = model_type.loss(stacked, one, target_weight).sum()
    return loss


def attack_reference(model_type: ModelType, batch: Mapping[str, Any]) -> torch.Tensor:
    """What an attack is measured against: the class labels (classification) or the targets."""
    reference: torch.Tensor = batch["label" if model_type.task == "classification" else "targets"]
    return reference


def epoch_record(model_type: ModelType, epoch: int, train_loss: float, ev: Mapping[str, Any],
                 score: float, es: EarlyStopping, *, adv_loss: float | None = None,
                 attack_time: float = 0.0, seconds: float = 0.0) -> dict[str, Any]:
    """One ``history`` row (see :data:`HISTORY_COLUMNS`) from an epoch's validation result."""
    record: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss}
    record.update(model_type.history(ev))
    record.update(val_score=score, best_epoch=es.best_epoch, adv_loss=adv_loss,
                  attack_time_s=attack_time, time_s=seconds)
    return record


@dataclass
class _SoloRun:
    """One run between epochs: the model, its optimiser and everything ``last/`` records."""

    run: Path
    config: TrainConfig
    model_type: ModelType
    device: torch.device
    model: torch.nn.Module
    model_config: dict[str, Any]
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    autocast: Callable[[], Any]
    es: EarlyStopping
    meta: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    tscale: TargetScaler | None = None
    start: int = 1

    def step(self, batch: Mapping[str, Any], x: torch.Tensor, lr: float) -> float:
        """One optimiser step on ``x`` with the (possibly standardised) targets of ``batch``."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            loss = solo_loss(self.model_type, self.model_type.forward(self.model, x), batch,
                             self.config.emotion_weight)
        self.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach())


def _start_run(train_set: Dataset[Any], run: Path, mtype: ModelType, device: torch.device,
               model_settings: Mapping[str, Any] | None, config: TrainConfig, *, resume: bool,
               data_description: dict[str, Any] | None, extra_config: dict[str, Any] | None,
               attack: AttackLike | None) -> _SoloRun:
    """Build the model (seeded), then continue ``last/`` (checked against the asked model,
    settings and data) or start the run folder fresh."""
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
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    autocast, scaler = mixed_precision(device, config.amp)
    st = _SoloRun(run, config, mtype, device, model, model_config,
                  torch.optim.Adam(model.parameters(), lr=config.lr), scaler, autocast,
                  EarlyStopping(config.patience))
    if resuming:
        last = load_last(run, model_config, config, data_description)
        model.load_state_dict(last.model_state)
        opt_state = last.optimizer_state or {}
        st.optimizer.load_state_dict(opt_state["optimizer"])
        scaler.load_state_dict(opt_state.get("scaler") or {})
        st.history = list(last.history)
        st.es.load_state_dict(last.state["early_stopping"])
        st.start = int(last.state["epoch"]) + 1
        if last.state.get("target_scaler") is not None:
            st.tscale = TargetScaler.from_dict(last.state["target_scaler"])
        assert last.rng is not None
        ck.restore_rng(last.rng)
        st.meta = last.meta
    else:
        if config.standardize_targets:
            st.tscale = fit_target_scaler(train_set, mtype, model)
        st.meta = io.run_meta(seed=config.seed, model=model_config)
        write_run_files(run, st.meta, model_config, config, data_description, extra_config,
                        attack_record(attack))
    if st.history:
        write_history(run, st.history)
    return st


def _train_epoch(st: _SoloRun, train_set: Dataset[Any], epoch: int, attack: AttackLike | None,
                 progress: bool) -> tuple[float, float | None, float]:
    """One epoch of steps on ``epoch``'s data order (adversarial every n-th epoch: after the
    clean step on a batch, a second step on the batch attacked in eval mode). Returns the mean
    training loss, the mean adversarial loss (None when the epoch was clean) and the seconds
    spent attacking."""
    config, mtype = st.config, st.model_type
    if hasattr(train_set, "set_epoch"):
        train_set.set_epoch(epoch)
    loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True,
                        generator=epoch_generator(config.seed, epoch), num_workers=0)
    adversarial = config.adversarial_every > 0 and epoch % config.adversarial_every == 0
    st.model.train()
    total = adv_total = attack_time = 0.0
    n_batches = 0
    bar = tqdm(loader, desc=f"epoch {epoch}/{config.max_epochs}", leave=False,
               disable=not progress)
    for i_batch, raw in enumerate(bar):
        batch = to_device(raw, st.device, config.channels_last)
        target = batch if st.tscale is None else st.tscale.standardize(batch)
        lr = scheduled_lr(config, epoch, i_batch, len(loader))
        total += st.step(target, batch["x"], lr)
        n_batches += 1
        if adversarial:
            assert attack is not None
            st.model.eval()
            ta = time.perf_counter()
            seen = st.model if st.tscale is None else RatedModel(st.model, st.tscale)
            x_adv = attack(seen, batch["x"], attack_reference(mtype, batch)).x_adv.detach()
            attack_time += time.perf_counter() - ta
            st.model.train()
            adv_total += st.step(target, x_adv, lr)
        bar.set_postfix(loss=f"{total / n_batches:.4f}")
    bar.close()
    adv_loss = adv_total / n_batches if adversarial and n_batches else None
    return total / max(n_batches, 1), adv_loss, attack_time


def _end_epoch(st: _SoloRun, val_set: Dataset[Any], epoch: int,
               losses: tuple[float, float | None, float], t0: float,
               normaliser: dict[str, Any] | None, data_description: dict[str, Any] | None,
               writer: Any) -> dict[str, Any]:
    """Validate, update early stopping and write the epoch (``last/``, ``best/`` if it
    improved, the history); returns its history record."""
    config, mtype = st.config, st.model_type
    ev = evaluate_model(rated_copy(st.model, st.tscale), val_set, st.device,
                        batch_size=max(config.batch_size, 32), model_type=mtype)
    score = validation_score(mtype, ev)
    improved = st.es.update(score, epoch)
    train_loss, adv_loss, attack_time = losses
    record = epoch_record(mtype, epoch, train_loss, ev, score, st.es, adv_loss=adv_loss,
                          attack_time=attack_time, seconds=time.perf_counter() - t0)
    st.history.append(record)
    save_epoch(st.run, ck.Checkpoint(
        model_state=st.model.state_dict(),
        state={"epoch": epoch, "early_stopping": st.es.state_dict(),
               "target_scaler": None if st.tscale is None else st.tscale.to_dict()},
        model_config=st.model_config, train_config=config.to_dict(), data=data_description,
        normaliser=normaliser, history=st.history, meta=st.meta,
        optimizer_state={"optimizer": st.optimizer.state_dict(),
                         "scaler": st.scaler.state_dict()},
        rng=ck.capture_rng()), improved, writer)
    return record


def train_run(train_set: Dataset[Any], val_set: Dataset[Any], run_dir: str | Path, *,
              model_type: ModelType | str, model_settings: Mapping[str, Any] | None = None,
              config: TrainConfig | None = None, data_description: dict[str, Any] | None = None,
              normaliser: dict[str, Any] | None = None, attack: AttackLike | None = None,
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
    The caller's global RNG states and cudnn flags are as they were when it returns.

    Examples:
        >>> import tempfile, torch
        >>> from robustmer.train import TrainConfig
        >>> class Toy(torch.utils.data.Dataset):  # items as data/ gives them
        ...     def __len__(self):
        ...         return 8
        ...     def __getitem__(self, i):
        ...         g = torch.Generator().manual_seed(i)
        ...         return {"id": str(i), "x": torch.randn(1, 24, 16, generator=g),
        ...                 "targets": torch.rand(3, generator=g)}
        >>> res = train_run(Toy(), Toy(), tempfile.mkdtemp(), model_type="A2E",
        ...                 model_settings={"width": 0.05},
        ...                 config=TrainConfig(max_epochs=2, batch_size=4), progress=False)
        >>> res.last_epoch, len(res.history), res.model(torch.zeros(2, 1, 24, 16)).shape
        (2, 2, torch.Size([2, 3]))
        >>> sorted(p.name for p in res.run_dir.iterdir())
        ['best', 'config.yaml', 'history.csv', 'history.json', 'last', 'meta.json']
    """
    config = config or TrainConfig()
    mtype = get_type(model_type) if isinstance(model_type, str) else model_type
    run = Path(run_dir)
    if config.adversarial_every > 0 and attack is None:
        raise ConfigError("TrainConfig.adversarial_every > 0 needs an attack callable")
    if not mtype.trainable:
        raise ConfigError(f"model type {mtype.name} is pretrained (train: false); write its run "
                          f"folder with robustmer.train.write_pretrained instead")
    device = resolve_device(config.device)
    with preserved_global_state():
        deterministic_cudnn(device)
        st = _start_run(train_set, run, mtype, device, model_settings, config, resume=resume,
                        data_description=data_description, extra_config=extra_config,
                        attack=attack)
        writer = open_tensorboard(config, run)
        epochs_bar = tqdm(total=config.max_epochs, initial=st.start - 1, desc="train",
                          unit="epoch", disable=not progress)
        for epoch in range(st.start, config.max_epochs + 1):
            if st.es.stopped:
                break
            t0 = time.perf_counter()
            losses = _train_epoch(st, train_set, epoch, attack, progress)
            record = _end_epoch(st, val_set, epoch, losses, t0, normaliser, data_description,
                                writer)
            epochs_bar.update(1)
            shown = {k: f"{record[k]:.3f}" for k in ("val_mean_r", "val_mae", "val_accuracy")
                     if k in record and record[k] is not None and math.isfinite(record[k])}
            epochs_bar.set_postfix(**shown, best=f"{st.es.best_score:.3f}@{st.es.best_epoch}")
            for cb in callbacks:
                cb(epoch, record)
        epochs_bar.close()
        if writer is not None:
            writer.close()
        return finish_run(run, config, train_set, device, st.history, st.es)
