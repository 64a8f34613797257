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

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from robustmer import io
from robustmer.errors import CheckpointError, ConfigError
from robustmer.models import MERModel
from robustmer.models.stacked import StackedModel, stack_tensors, unstack_tensor
from robustmer.models.types import ModelType, get_type
from robustmer.train import checkpoint as ck
from robustmer.train.config import TrainConfig
from robustmer.train.options import TargetScaler, fit_target_scaler, scheduled_lr
from robustmer.train.trainer import (
    TrainResult,
    _device,
    _open_tensorboard,
    _rated_copy,
    _to_device,
    _write_history,
    epoch_generator,
    epoch_record,
    evaluate_model,
    finish_run,
    load_last,
    mixed_precision,
    output_sizes,
    save_epoch,
    seed_everything,
    update_early_stopping,
    validation_score,
    write_run_files,
)

SeedCallback = Callable[[int, int, dict[str, Any]], None]
"""``cb(seed, epoch, history_record)``, called after that seed's epoch checkpoint is on disk."""


def stack_optimizer_states(stacked: StackedModel, solo_names: Sequence[str],
                           states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One ``state_dict`` for an optimiser over ``stacked.parameters()`` from the S solo
    optimisers' ``state_dict()`` s (parameters indexed in ``solo_names`` order). Per-parameter
    state tensors are stacked like the parameters; scalars (Adam's ``step``) must agree."""
    names = [n for n, _ in stacked.named_parameters()]
    out: dict[int, dict[str, Any]] = {}
    for j, name in enumerate(names):
        i = solo_names.index(name)
        per = [st["state"].get(i) for st in states]
        if all(p is None for p in per):
            continue
        if any(p is None for p in per):
            raise CheckpointError(f"optimiser state of {name} exists for some seeds only")
        entry: dict[str, Any] = {}
        for key, val in per[0].items():
            if isinstance(val, torch.Tensor) and val.ndim > 0:
                entry[key] = stack_tensors(name, [p[key] for p in per])
            else:
                if any(not _same(p[key], val) for p in per[1:]):
                    raise CheckpointError(f"optimiser state {name}.{key} differs between seeds "
                                          f"(they are not at the same step)")
                entry[key] = val.clone() if isinstance(val, torch.Tensor) else val
        out[j] = entry
    group = dict(states[0]["param_groups"][0])
    group["params"] = list(range(len(names)))
    return {"state": out, "param_groups": [group]}


def _same(a: Any, b: Any) -> bool:
    return bool(torch.equal(a, b)) if isinstance(a, torch.Tensor) else a == b


def unstack_optimizer_state(stacked: StackedModel, solo_names: Sequence[str],
                            state: dict[str, Any]) -> list[dict[str, Any]]:
    """Inverse of :func:`stack_optimizer_states`: the S solo optimiser ``state_dict`` s."""
    names = [n for n, _ in stacked.named_parameters()]
    n = stacked.n_seeds
    group = dict(state["param_groups"][0])
    group["params"] = list(range(len(solo_names)))
    outs: list[dict[str, Any]] = [{"state": {}, "param_groups": [dict(group)]} for _ in range(n)]
    for j, entry in state["state"].items():
        name = names[int(j)]
        i = solo_names.index(name)
        per: list[dict[str, Any]] = [{} for _ in range(n)]
        for key, val in entry.items():
            if isinstance(val, torch.Tensor) and val.ndim > 0:
                parts = unstack_tensor(name, val.detach(), n)
            else:
                parts = [val.clone() if isinstance(val, torch.Tensor) else val] * n
            for s in range(n):
                per[s][key] = parts[s]
        for s in range(n):
            outs[s]["state"][i] = per[s]
    for out in outs:  # the solo optimiser's order: by parameter index
        out["state"] = dict(sorted(out["state"].items()))
    return outs


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
    es: dict[str, Any]
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


def _generator(rng: dict[str, Any], device: torch.device, seed: int) -> torch.Generator:
    """Seed ``s``'s dropout generator on ``device``, in the state the solo run's global RNG
    (CPU, or the CUDA device's) has at this point."""
    gen = torch.Generator(device=device)
    if device.type == "cpu":
        gen.set_state(rng["torch_cpu"])
    else:
        index = device.index if device.index is not None else torch.cuda.current_device()
        states = rng.get("torch_cuda") or []
        if index < len(states):
            gen.set_state(states[index])
        else:  # recorded without CUDA: what torch.manual_seed(seed) gives the device
            gen.manual_seed(seed)
    return gen


def _store_generator(rng: dict[str, Any], gen: torch.Generator, device: torch.device) -> None:
    if device.type == "cpu":
        rng["torch_cpu"] = gen.get_state()
        return
    index = device.index if device.index is not None else torch.cuda.current_device()
    states = list(rng.get("torch_cuda") or [])
    while len(states) <= index:
        states.append(torch.cuda.get_rng_state(len(states)))
    states[index] = gen.get_state()
    rng["torch_cuda"] = states


@contextlib.contextmanager
def _solo_cpu_rng(rng: dict[str, Any]) -> Iterator[None]:
    """Run a seed's own (non-batched) code with torch's global CPU RNG in that seed's solo
    state, and keep the state it leaves: e.g. every ``DataLoader`` without a generator draws
    its base seed from the global RNG, as it does in the solo run."""
    saved = torch.get_rng_state()
    torch.set_rng_state(rng["torch_cpu"])
    try:
        yield
    finally:
        rng["torch_cpu"] = torch.get_rng_state()
        torch.set_rng_state(saved)


def train_runs_batched(train_set: Dataset | Sequence[Dataset], val_set: Dataset,
                       run_dirs: Sequence[str | Path], *, model_type: ModelType | str,
                       seeds: Sequence[int], model_settings: Mapping[str, Any] | None = None,
                       config: TrainConfig | None = None,
                       data_description: dict[str, Any] | None = None,
                       normaliser: dict[str, Any] | None = None, resume: bool = False,
                       progress: bool = True, callbacks: Iterable[SeedCallback] = (),
                       extra_config: dict[str, Any] | None = None) -> list[TrainResult]:
    """Train ``seeds`` (at least 2) of one ``model_type`` (a robustmer head: a type whose
    ``build`` gives a :class:`MERModel`) with ``model_settings`` together, seed ``seeds[i]`` into
    ``run_dirs[i]``, each as ``train_run(..., config=config.replace(seed=s))`` would (see the
    module docstring); ``config.seed`` is replaced by each seed. ``train_set`` is one dataset
    for every seed, or a list or tuple of one per seed (e.g. the study's, whose random excerpt
    windows are drawn from the seed; same items and targets, as one run's). Returns one
    :class:`TrainResult` per seed, in order. ``resume``, ``callbacks`` (here
    ``cb(seed, epoch, record)``) and ``extra_config`` are as in ``train_run``."""
    config = config or TrainConfig()
    mtype = get_type(model_type) if isinstance(model_type, str) else model_type
    seeds = [int(s) for s in seeds]
    _check_request(seeds, run_dirs, config)
    device = _device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    scaler_state = mixed_precision(device, False)[1].state_dict()
    batched = {"seeds": seeds, "n_seeds": len(seeds)}

    train_sets = list(train_set) if isinstance(train_set, list | tuple) else (
        [train_set] * len(seeds))
    if len(train_sets) != len(seeds):
        raise ConfigError(f"train_set: one dataset per seed needed, found {len(train_sets)} "
                          f"for {len(seeds)} seeds")
    sizes = {len(d) for d in train_sets}  # type: ignore[arg-type]
    if len(sizes) != 1:
        raise ConfigError(f"train_set: the seeds' datasets must have one length (steps are "
                          f"taken together), found {sorted(sizes)}")
    fitted: dict[int, TargetScaler | None] = {}  # one fit per distinct dataset object

    def fresh_scaler(dataset: Dataset) -> TargetScaler | None:
        if not config.standardize_targets:
            return None
        if id(dataset) not in fitted:
            fitted[id(dataset)] = fit_target_scaler(dataset, mtype)
        return fitted[id(dataset)]

    n_outputs, n_concepts = output_sizes(mtype, train_sets[0])
    states: list[_Seed] = []
    for seed, run_dir, data in zip(seeds, run_dirs, train_sets, strict=True):
        cfg = config.replace(seed=seed)
        seed_everything(seed)  # as train_run: seed, then build (the initial weights)
        shell, model_config = mtype.create(n_outputs, n_concepts, model_settings)
        if not isinstance(shell, MERModel):
            raise ConfigError(f"batched seeds stack robustmer's own networks; model type "
                              f"{mtype.name} builds a {type(shell).__name__} (train its seeds "
                              f"one by one)")
        rng = ck.capture_rng()  # the solo run's RNG state entering epoch 1
        run = Path(run_dir)
        ck.recover(run)
        if (run / ck.LAST).is_dir():
            if not resume:
                raise CheckpointError(f"{run} already holds a run (last/); resume it "
                                      f"(resume=True) or choose another folder")
            last = load_last(run, model_config, cfg, data_description)
            assert last.rng is not None and last.optimizer_state is not None
            ts = last.state.get("target_scaler")
            st = _Seed(seed, run, cfg, shell, last.model_state,
                       last.optimizer_state["optimizer"], last.rng,
                       dict(last.state["early_stopping"]), list(last.history), last.meta,
                       None if ts is None else TargetScaler.from_dict(ts),
                       int(last.state["epoch"]) + 1)
            if st.history:
                _write_history(run, st.history)
        else:
            meta = io.run_meta(seed=seed, model=model_config, batched=batched)
            write_run_files(run, meta, model_config, cfg, data_description,
                             {**(extra_config or {}), "batched": batched})
            st = _Seed(seed, run, cfg, shell, shell.state_dict(), None, rng,
                       {"best_score": -math.inf, "best_epoch": 0, "bad_epochs": 0,
                        "stopped": False}, [], meta, fresh_scaler(data), 1)
        shell.to(device)
        st.data = data
        st.writer = _open_tensorboard(cfg, run)
        states.append(st)
    solo_names = [n for n, _ in states[0].shell.named_parameters()]
    model_config = dict(states[0].shell.config)

    stacked: StackedModel | None = None
    optimizer: torch.optim.Optimizer | None = None
    gens: list[torch.Generator] = []
    group: list[_Seed] = []
    todo = [st for st in states if not st.es["stopped"]]
    first = min((st.next_epoch for st in todo), default=config.max_epochs + 1)
    epochs_bar = tqdm(total=config.max_epochs, initial=first - 1, desc=f"train x{len(seeds)}",
                      unit="epoch", disable=not progress)
    for epoch in range(first, config.max_epochs + 1):
        # Seeds ahead of this epoch (a kill between two seeds' checkpoints) wait for the rest.
        active = [st for st in states if not st.es["stopped"] and st.next_epoch == epoch]
        if not active:
            continue
        if [st.seed for st in active] != [st.seed for st in group]:
            group = active
            stacked = StackedModel(model_config, len(group)).to(device)
            stacked.load_solo_states([st.model_state for st in group])
            if config.channels_last:
                stacked.to(memory_format=torch.channels_last)
            optimizer = torch.optim.Adam(stacked.parameters(), lr=config.lr)
            if group[0].optimizer is not None:
                optimizer.load_state_dict(stack_optimizer_states(
                    stacked, solo_names, [st.optimizer for st in group]))  # type: ignore[misc]
            gens = [_generator(st.rng, device, st.seed) for st in group]
            stacked.set_generators(gens)
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
        best = ", ".join(f"{st.seed}: {st.es['best_score']:.3f}@{st.es['best_epoch']}"
                         + (" stopped" if st.es["stopped"] else "") for st in group)
        epochs_bar.set_postfix_str(best)
    epochs_bar.close()
    results = []
    for st in states:
        if st.writer is not None:
            st.writer.close()
        results.append(finish_run(st.run, st.config, st.data, device, st.history, st.es,
                                  mtype))
    return results


def _train_epoch(stacked: StackedModel, optimizer: torch.optim.Optimizer, group: list[_Seed],
                 config: TrainConfig, epoch: int, device: torch.device,
                 model_type: ModelType) -> list[float]:
    """One epoch of every seed in ``group``, each on its own data order; the seeds' mean
    training losses (summed in float64 as train_run sums Python floats)."""
    for data in {id(st.data): st.data for st in group}.values():
        if hasattr(data, "set_epoch"):
            data.set_epoch(epoch)  # the windows depend on (the dataset's seed, epoch) only
    loaders = [DataLoader(st.data, batch_size=config.batch_size, shuffle=True,
                          generator=epoch_generator(st.seed, epoch), num_workers=0)
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
        per_seed.sum().backward()  # seed s's weights get exactly seed s's gradient
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
    x = _to_device({"x": torch.cat([r["x"] for r in raws], dim=1)}, device, channels_last)["x"]
    keys = [k for k, v in raws[0].items() if isinstance(v, torch.Tensor) and k != "x"]
    return x, _to_device({k: torch.stack([r[k] for r in raws]) for k in keys}, device)


def _end_epoch(st: _Seed, model: MERModel, opt: dict[str, Any], train_loss: float,
               gen: torch.Generator, epoch: int, seconds: float, val_set: Dataset,
               device: torch.device, model_config: dict[str, Any],
               data_description: dict[str, Any] | None, normaliser: dict[str, Any] | None,
               scaler_state: dict[str, Any], callbacks: Iterable[SeedCallback],
               model_type: ModelType) -> None:
    """Validate one seed, update its early stopping and write its epoch as train_run does."""
    t0 = time.perf_counter()
    _store_generator(st.rng, gen, device)
    with _solo_cpu_rng(st.rng):  # evaluate_model's DataLoader draws from the global CPU RNG
        ev = evaluate_model(_rated_copy(model, st.tscale), val_set, device,
                            batch_size=max(st.config.batch_size, 32), model_type=model_type)
    if device.type == "cpu":
        gen.set_state(st.rng["torch_cpu"])
    score = validation_score(model_type, ev)
    improved = update_early_stopping(st.es, score, st.config.patience, epoch)
    record = epoch_record(model_type, epoch, train_loss, ev, score, st.es,
                          seconds=seconds + time.perf_counter() - t0)
    st.history.append(record)
    st.model_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    st.optimizer = opt
    save_epoch(st.run, ck.Checkpoint(
        model_state=st.model_state,
        state={"epoch": epoch, "early_stopping": st.es,
               "target_scaler": None if st.tscale is None else st.tscale.to_dict()},
        model_config=model_config, train_config=st.config.to_dict(), data=data_description,
        normaliser=normaliser, history=st.history, meta=st.meta,
        optimizer_state={"optimizer": opt, "scaler": scaler_state}, rng=st.rng),
        improved, st.writer)
    st.next_epoch = epoch + 1
    for cb in callbacks:
        cb(st.seed, epoch, record)
