"""Batched seeds: S seeds of one model kind trained as one :class:`StackedModel`, so that one
kernel launch serves all of them (docs/training.md, "Batched seeds").

Each seed is the solo run of :func:`robustmer.train.train_run` with ``config.replace(seed=s)``:

- the same initial weights (seeded and built exactly as ``train_run`` does);
- the same data order (``epoch_generator(seed, epoch)``) and excerpt windows;
- the same dropout masks: seed ``s``'s masks are drawn from its own generator, which carries the
  RNG state that the solo run's global RNG would have (``models.stacked.SeedDropout2d``);
- exactly its own gradient: the loss is the sum of the seeds' losses, and seed ``s``'s weights
  only reach seed ``s``'s loss; Adam is elementwise and the recipe has no weight decay or global
  gradient clipping, so each seed's optimiser state is the solo run's;
- its own early stopping and best checkpoint; a seed that stopped is dropped from the stack and
  its run folder is not written again.

What differs is only the order of float summations (a grouped convolution, ``baddbmm`` for the
linear layers, :func:`stacked_loss` for the loss), so a seed's weights agree with the solo run's
to float rounding (about 1e-7 after a step; docs/training.md gives the measured tolerance and how
Adam and early stopping can grow it).

Each run folder is a solo run folder (``last/``, ``best/``, ``history.csv``, ``config.yaml``,
``meta.json``) whose checkpoints hold the solo optimiser and RNG state, so ``load_run``,
``evaluate``, the attacks and even ``train_run(resume=True)`` read it unchanged;
``config.yaml`` and ``meta.json`` say ``batched: {seeds, n_seeds}``. Resume restarts every seed
from its own ``last/``; a seed that is an epoch behind (a kill between two seeds' checkpoints)
trains alone until it has caught up.

Refused with ``ConfigError``: adversarial training (the attack runs per model and would serialise
the seeds again) and ``amp`` (its loss scaler is global over all parameters: one seed's overflow
would skip every seed's step).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from robustmer import io
from robustmer.errors import CheckpointError, ConfigError
from robustmer.models import MERModel
from robustmer.models.stacked import StackedModel
from robustmer.models.types import ModelType, get_type
from robustmer.train import checkpoint as ck
from robustmer.train import runfolder as rf
from robustmer.train import runtime as rt
from robustmer.train.config import TrainConfig
from robustmer.train.early_stopping import EarlyStopping
from robustmer.train.evaluation import evaluate_model, output_sizes, validation_score
from robustmer.train.options import TargetScaler, fit_target_scaler, rated_copy, scheduled_lr
from robustmer.train.stacked_state import (
    seed_generator,
    solo_cpu_rng,
    stack_optimizer_states,
    store_generator,
    unstack_optimizer_state,
)
from robustmer.train.trainer import epoch_record

__all__ = ["SeedCallback", "stack_optimizer_states", "train_runs_batched",
           "unstack_optimizer_state"]

SeedCallback = Callable[[int, int, dict[str, Any]], None]
"""``cb(seed, epoch, history_record)``, called after that seed's epoch checkpoint is on disk."""


@dataclass
class _Seed:
    """One seed's run, between epochs: everything its ``last/`` checkpoint holds."""

    seed: int
    run: Path
    config: TrainConfig
    shell: MERModel  # a solo model the stacked weights are copied into (validation, saving)
    model_state: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None
    rng: dict[str, Any]
    es: EarlyStopping
    history: list[dict[str, Any]]
    meta: dict[str, Any]
    tscale: TargetScaler | None
    next_epoch: int
    writer: Any = None
    data: Any = None  # the seed's training set


def _check_request(seeds: Sequence[int], run_dirs: Sequence[str | Path],
                   config: TrainConfig) -> None:
    if len(seeds) < 2:
        raise ConfigError(f"seeds: batched training needs at least 2 seeds, found "
                          f"{list(seeds)} (train one seed with train_run)")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: each seed may appear once, found {list(seeds)}")
    if any(int(s) < 0 for s in seeds):
        raise ConfigError(f"seeds: must be >= 0, found {list(seeds)}")
    if len(run_dirs) != len(seeds):
        raise ConfigError(f"run_dirs: one folder per seed needed, found {len(run_dirs)} for "
                          f"{len(seeds)} seeds")
    if len({Path(r).resolve() for r in run_dirs}) != len(run_dirs):
        raise ConfigError(f"run_dirs: every seed needs its own folder, found {list(run_dirs)}")
    if config.adversarial_every > 0:
        raise ConfigError("TrainConfig.adversarial_every: batched seeds do not support "
                          "adversarial training (train those runs with train_run)")
    if config.amp:
        raise ConfigError("TrainConfig.amp: batched seeds do not support amp (its loss scaler "
                          "is global: one seed's overflow would skip every seed's step)")


def _open_seed(seed: int, run: Path, data: Dataset[Any], mtype: ModelType, sizes: tuple[int, int],
               model_settings: Mapping[str, Any] | None, config: TrainConfig, resume: bool,
               data_description: dict[str, Any] | None, extra_config: dict[str, Any],
               fresh_scaler: Callable[[Dataset[Any]], TargetScaler | None],
               device: torch.device) -> _Seed:
    """One seed's state entering its next epoch: built (seeded) as ``train_run`` builds it,
    then its ``last/`` resumed or its run folder started (``extra_config["batched"]``
    recorded in its ``config.yaml`` and ``meta.json``)."""
    cfg = config.replace(seed=seed)
    rt.seed_everything(seed)  # as train_run: seed, then build (the initial weights)
    shell, model_config = mtype.create(sizes[0], sizes[1], model_settings)
    if not isinstance(shell, MERModel):
        raise ConfigError(f"batched seeds stack robustmer's own networks; model type "
                          f"{mtype.name} builds a {type(shell).__name__} (train its seeds "
                          f"one by one)")
    rng = ck.capture_rng()  # the solo run's RNG state entering epoch 1
    ck.recover(run)
    if (run / ck.LAST).is_dir():
        if not resume:
            raise CheckpointError(f"{run} already holds a run (last/); resume it "
                                  f"(resume=True) or choose another folder")
        last = rf.load_last(run, model_config, cfg, data_description)
        assert last.rng is not None and last.optimizer_state is not None
        ts = last.state.get("target_scaler")
        st = _Seed(seed, run, cfg, shell, last.model_state, last.optimizer_state["optimizer"],
                   last.rng,
                   EarlyStopping(cfg.patience).load_state_dict(last.state["early_stopping"]),
                   list(last.history), last.meta,
                   None if ts is None else TargetScaler.from_dict(ts),
                   int(last.state["epoch"]) + 1)
        if st.history:
            rf.write_history(run, st.history)
    else:
        meta = io.run_meta(seed=seed, model=model_config, batched=extra_config["batched"])
        rf.write_run_files(run, meta, model_config, cfg, data_description, extra_config)
        st = _Seed(seed, run, cfg, shell, shell.state_dict(), None, rng,
                   EarlyStopping(cfg.patience), [], meta, fresh_scaler(data), 1)
    shell.to(device)
    st.data = data
    st.writer = rf.open_tensorboard(cfg, run)
    return st


def train_runs_batched(train_set: Dataset[Any] | Sequence[Dataset[Any]], val_set: Dataset[Any],
                       run_dirs: Sequence[str | Path], *, model_type: ModelType | str,
                       seeds: Sequence[int], model_settings: Mapping[str, Any] | None = None,
                       config: TrainConfig | None = None,
                       data_description: dict[str, Any] | None = None,
                       normaliser: dict[str, Any] | None = None, resume: bool = False,
                       progress: bool = True, callbacks: Iterable[SeedCallback] = (),
                       extra_config: dict[str, Any] | None = None) -> list[rf.TrainResult]:
    """Train ``seeds`` (at least 2) of one ``model_type`` (a robustmer head: a type whose
    ``build`` gives a :class:`MERModel`) with ``model_settings`` together, seed ``seeds[i]`` into
    ``run_dirs[i]``, each as ``train_run(..., config=config.replace(seed=s))`` would (see the
    module docstring); ``config.seed`` is replaced by each seed. ``train_set`` is one dataset
    for every seed, or a list or tuple of one per seed (e.g. the study's, whose random excerpt
    windows are drawn from the seed; same items and targets, as one run's). Returns one
    ``TrainResult`` per seed, in order. ``resume``, ``callbacks`` (here
    ``cb(seed, epoch, record)``) and ``extra_config`` are as in ``train_run``; the caller's
    global RNG states and cudnn flags are as they were when it returns."""
    config = config or TrainConfig()
    mtype = get_type(model_type) if isinstance(model_type, str) else model_type
    seeds = [int(s) for s in seeds]
    _check_request(seeds, run_dirs, config)
    device = rt.resolve_device(config.device)
    train_sets: list[Dataset[Any]] = (list(train_set) if isinstance(train_set, list | tuple)
                                      else [cast("Dataset[Any]", train_set)] * len(seeds))
    if len(train_sets) != len(seeds):
        raise ConfigError(f"train_set: one dataset per seed needed, found {len(train_sets)} "
                          f"for {len(seeds)} seeds")
    lengths = {len(d) for d in train_sets}  # type: ignore[arg-type]
    if len(lengths) != 1:
        raise ConfigError(f"train_set: the seeds' datasets must have one length (steps are "
                          f"taken together), found {sorted(lengths)}")
    fitted: dict[int, TargetScaler | None] = {}  # one fit per distinct dataset object

    def fresh_scaler(dataset: Dataset[Any]) -> TargetScaler | None:
        if not config.standardize_targets:
            return None
        if id(dataset) not in fitted:
            fitted[id(dataset)] = fit_target_scaler(dataset, mtype)
        return fitted[id(dataset)]

    extra = {**(extra_config or {}), "batched": {"seeds": seeds, "n_seeds": len(seeds)}}
    with rt.preserved_global_state():
        rt.deterministic_cudnn(device)
        sizes = output_sizes(mtype, train_sets[0])
        states = [_open_seed(seed, Path(run_dir), data, mtype, sizes, model_settings, config,
                             resume, data_description, extra, fresh_scaler, device)
                  for seed, run_dir, data in zip(seeds, run_dirs, train_sets, strict=True)]
        _train_epochs(states, val_set, mtype, config, device, data_description, normaliser,
                      progress, callbacks)
        results = []
        for st in states:
            if st.writer is not None:
                st.writer.close()
            results.append(rf.finish_run(st.run, st.config, st.data, device, st.history, st.es))
        return results


def _train_epochs(states: list[_Seed], val_set: Dataset[Any], mtype: ModelType, config: TrainConfig,
                  device: torch.device, data_description: dict[str, Any] | None,
                  normaliser: dict[str, Any] | None, progress: bool,
                  callbacks: Iterable[SeedCallback]) -> None:
    """The epochs: the seeds at the same epoch step together as one stacked model (rebuilt
    whenever the group changes: a seed stopped, or a seed that was behind caught up)."""
    scaler_state = rt.mixed_precision(device, False)[1].state_dict()
    solo_names = [n for n, _ in states[0].shell.named_parameters()]
    model_config = dict(states[0].shell.config)
    stacked: StackedModel | None = None
    optimizer: torch.optim.Optimizer | None = None
    gens: list[torch.Generator] = []
    group: list[_Seed] = []
    todo = [st for st in states if not st.es.stopped]
    first = min((st.next_epoch for st in todo), default=config.max_epochs + 1)
    epochs_bar = tqdm(total=config.max_epochs, initial=first - 1, desc=f"train x{len(states)}",
                      unit="epoch", disable=not progress)
    for epoch in range(first, config.max_epochs + 1):
        # Seeds ahead of this epoch (a kill between two seeds' checkpoints) wait for the rest.
        active = [st for st in states if not st.es.stopped and st.next_epoch == epoch]
        if not active:
            continue
        if [st.seed for st in active] != [st.seed for st in group]:
            group = active
            stacked, optimizer, gens = _stack(group, model_config, solo_names, config, device)
        assert stacked is not None and optimizer is not None
        t0 = time.perf_counter()
        losses = _train_epoch(stacked, optimizer, group, config, epoch, device, mtype)
        models = stacked.to_models(into=[st.shell for st in group])
        solo_opts = unstack_optimizer_state(stacked, solo_names, optimizer.state_dict())
        seconds = time.perf_counter() - t0
        for st, model, opt, loss, gen in zip(group, models, solo_opts, losses, gens,
                                             strict=True):
            _end_epoch(st, model, opt, loss, gen, epoch, seconds, val_set, device,
                       model_config, data_description, normaliser, scaler_state, callbacks,
                       mtype)
        epochs_bar.update(1)
        best = ", ".join(f"{st.seed}: {st.es.best_score:.3f}@{st.es.best_epoch}"
                         + (" stopped" if st.es.stopped else "") for st in group)
        epochs_bar.set_postfix_str(best)
    epochs_bar.close()


def _stack(group: list[_Seed], model_config: dict[str, Any], solo_names: list[str],
           config: TrainConfig, device: torch.device
           ) -> tuple[StackedModel, torch.optim.Optimizer, list[torch.Generator]]:
    """The seeds of ``group`` as one stacked model, with their optimiser states stacked and
    each seed's dropout generator in the state its solo run's global RNG has."""
    stacked = StackedModel(model_config, len(group)).to(device)
    stacked.load_solo_states([st.model_state for st in group])
    if config.channels_last:
        stacked.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.Adam(stacked.parameters(), lr=config.lr)
    if group[0].optimizer is not None:
        optimizer.load_state_dict(stack_optimizer_states(
            stacked, solo_names, [st.optimizer for st in group]))  # type: ignore[misc]
    gens = [seed_generator(st.rng, device, st.seed) for st in group]
    stacked.set_generators(gens)
    return stacked, optimizer, gens


def _train_epoch(stacked: StackedModel, optimizer: torch.optim.Optimizer, group: list[_Seed],
                 config: TrainConfig, epoch: int, device: torch.device,
                 model_type: ModelType) -> list[float]:
    """One epoch of every seed in ``group``, each on its own data order; the seeds' mean
    training losses (summed in float64 as train_run sums Python floats)."""
    for data in {id(st.data): st.data for st in group}.values():
        if hasattr(data, "set_epoch"):
            data.set_epoch(epoch)  # the windows depend on (the dataset's seed, epoch) only
    loaders = [DataLoader(st.data, batch_size=config.batch_size, shuffle=True,
                          generator=rt.epoch_generator(st.seed, epoch), num_workers=0)
               for st in group]
    stacked.train()
    total = torch.zeros(len(group), dtype=torch.float64, device=device)
    n_batches = 0
    # Each loader is wrapped in a (disabled) tqdm bar exactly as train_run wraps its loader:
    # tqdm.auto's bar calls iter(loader) once in its constructor, which draws one number from
    # the epoch generator, and that shifts the epoch's order; doing the same keeps each seed's
    # data order the solo run's, whatever tqdm version is installed.
    bars = [tqdm(loader, disable=True) for loader in loaders]
    for i_batch, raws in enumerate(zip(*bars, strict=True)):
        x, targets = _stack_batches(group, raws, device, config.channels_last)
        lr = scheduled_lr(config, epoch, i_batch, len(loaders[0]))
        for pg in optimizer.param_groups:
            pg["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        per_seed = model_type.loss(stacked.forward_all(x), targets, config.emotion_weight)
        per_seed.sum().backward()  # type: ignore[no-untyped-call]  # seed s's own gradient
        optimizer.step()
        total += per_seed.detach().double()
        n_batches += 1
    return [float(v) / max(n_batches, 1) for v in total.cpu()]


def _stack_batches(group: list[_Seed], raws: Sequence[dict[str, Any]], device: torch.device,
                   channels_last: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The seeds' batches as one input ``(B, S, T, F)`` and targets ``(S, B, ...)``, moved to
    the device with one copy per key rather than one per key and seed (host-to-device copies
    are launches too). Targets are standardised on the CPU first: elementwise float32
    ``(y - m) / s`` rounds the same on either device."""
    raws = [raw if st.tscale is None else st.tscale.standardize(raw)
            for st, raw in zip(group, raws, strict=True)]
    x = rt.to_device({"x": torch.cat([r["x"] for r in raws], dim=1)}, device, channels_last)["x"]
    keys = [k for k, v in raws[0].items() if isinstance(v, torch.Tensor) and k != "x"]
    return x, rt.to_device({k: torch.stack([r[k] for r in raws]) for k in keys}, device)


def _end_epoch(st: _Seed, model: MERModel, opt: dict[str, Any], train_loss: float,
               gen: torch.Generator, epoch: int, seconds: float, val_set: Dataset[Any],
               device: torch.device, model_config: dict[str, Any],
               data_description: dict[str, Any] | None, normaliser: dict[str, Any] | None,
               scaler_state: dict[str, Any], callbacks: Iterable[SeedCallback],
               model_type: ModelType) -> None:
    """Validate one seed, update its early stopping and write its epoch as train_run does."""
    t0 = time.perf_counter()
    store_generator(st.rng, gen, device)
    with solo_cpu_rng(st.rng):  # evaluate_model's DataLoader draws from the global CPU RNG
        ev = evaluate_model(rated_copy(model, st.tscale), val_set, device,
                            batch_size=max(st.config.batch_size, 32), model_type=model_type)
    if device.type == "cpu":
        gen.set_state(st.rng["torch_cpu"])
    score = validation_score(model_type, ev)
    improved = st.es.update(score, epoch)
    record = epoch_record(model_type, epoch, train_loss, ev, score, st.es,
                          seconds=seconds + time.perf_counter() - t0)
    st.history.append(record)
    st.model_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    st.optimizer = opt
    rf.save_epoch(st.run, ck.Checkpoint(
        model_state=st.model_state,
        state={"epoch": epoch, "early_stopping": st.es.state_dict(),
               "target_scaler": None if st.tscale is None else st.tscale.to_dict()},
        model_config=model_config, train_config=st.config.to_dict(), data=data_description,
        normaliser=normaliser, history=st.history, meta=st.meta,
        optimizer_state={"optimizer": opt, "scaler": scaler_state}, rng=st.rng),
        improved, st.writer)
    st.next_epoch = epoch + 1
    for cb in callbacks:
        cb(st.seed, epoch, record)
