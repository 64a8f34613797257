"""Checkpoints: a run folder holds ``last/`` (resume point) and ``best/`` (early-stopping pick).

Each checkpoint folder is self-contained::

    model.safetensors    weights + buffers (safetensors)
    optimizer.pt         optimizer (+ AMP scaler) state, torch.save; read with weights_only=True
    rng.safetensors      torch CPU (and CUDA) RNG states as uint8 tensors
    rng.json             numpy and python RNG states
    state.json           epoch, early-stopping state
    model_config.json    robustmer.models.rebuild(config) rebuilds the network
    train_config.json    TrainConfig.to_dict()
    data.json            the caller's data description (e.g. PreparedData.to_dict())
    normaliser.json      the input standardiser (or null)
    history.json         one record per finished epoch
    meta.json            robustmer.io.run_meta()

A checkpoint is written into a temporary folder and swapped in with renames, so a run killed at
any moment leaves either the previous or the new checkpoint, never a mixture.
"""

from __future__ import annotations

import random
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from robustmer import io
from robustmer.errors import CheckpointError
from robustmer.models.types import ModelType, for_config, rebuild
from robustmer.train.config import TrainConfig

LAST = "last"
BEST = "best"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
RNG_TENSORS = "rng.safetensors"
RNG_JSON = "rng.json"
STATE_FILE = "state.json"
JSON_FILES = ("model_config", "train_config", "data", "normaliser", "history", "meta")
REQUIRED_TO_LOAD = (MODEL_FILE, STATE_FILE, "model_config.json", "train_config.json",
                    "data.json", "normaliser.json", "history.json")
REQUIRED_TO_RESUME = (*REQUIRED_TO_LOAD, OPTIMIZER_FILE, RNG_TENSORS, RNG_JSON)


@dataclass
class Checkpoint:
    """Everything a checkpoint folder holds, as Python objects."""

    model_state: dict[str, torch.Tensor]
    state: dict[str, Any]
    model_config: dict[str, Any]
    train_config: dict[str, Any]
    data: dict[str, Any] | None
    normaliser: dict[str, Any] | None
    history: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)
    optimizer_state: dict[str, Any] | None = None
    rng: dict[str, Any] | None = None


def capture_rng() -> dict[str, Any]:
    """The torch (CPU + every CUDA device), numpy and python RNG states."""
    np_state: Any = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch_cpu": torch.get_rng_state(),
        "torch_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], np.asarray(np_state[1]).tolist(), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def restore_rng(rng: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng` (CUDA states are restored only where CUDA is present)."""
    torch.set_rng_state(rng["torch_cpu"])
    if rng.get("torch_cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["torch_cuda"])
    n = rng["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    p = rng["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


def _write_folder(folder: Path, ckpt: Checkpoint) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in ckpt.model_state.items()}
    with io.atomic_path(folder / MODEL_FILE) as tmp:
        save_file(state, str(tmp))
    if ckpt.optimizer_state is not None:
        with io.atomic_path(folder / OPTIMIZER_FILE) as tmp:
            torch.save(ckpt.optimizer_state, tmp)
    if ckpt.rng is not None:
        tensors = {"torch_cpu": ckpt.rng["torch_cpu"]}
        tensors.update({f"torch_cuda_{i}": s for i, s in enumerate(ckpt.rng["torch_cuda"])})
        with io.atomic_path(folder / RNG_TENSORS) as tmp:
            save_file(tensors, str(tmp))
        io.write_json(folder / RNG_JSON, {"numpy": ckpt.rng["numpy"],
                                          "python": ckpt.rng["python"]})
    for name in JSON_FILES:
        io.write_json(folder / f"{name}.json", getattr(ckpt, name))
    io.write_json(folder / STATE_FILE, ckpt.state)  # last: its presence marks a whole checkpoint


def _swap_in(tmp: Path, dest: Path) -> None:
    """Replace folder ``dest`` by ``tmp`` with renames (dest is never half-written)."""
    old = dest.with_name(f".{dest.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    if old.exists():
        shutil.rmtree(old)


def recover(run_dir: str | Path) -> None:
    """Undo the effect of a kill during a swap: restore ``.last.old`` if ``last`` is missing,
    and drop stale temporary folders."""
    run = Path(run_dir)
    if not run.is_dir():
        return
    for which in (LAST, BEST):
        old = run / f".{which}.old"
        if old.is_dir() and not (run / which).exists():
            old.rename(run / which)
    for stale in run.glob(".*.tmp-*"):
        if stale.is_dir():
            shutil.rmtree(stale)


def save_checkpoint(run_dir: str | Path, which: str, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` as ``run_dir/which`` atomically (temp folder + rename); returns the path."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    # uuid (OS entropy), not the random module: saving must not advance the RNGs it records.
    tmp = run / f".{which}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _write_folder(tmp, ckpt)
        _swap_in(tmp, run / which)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return run / which


def copy_checkpoint(run_dir: str | Path, src: str, dest: str) -> Path:
    """Copy checkpoint ``src`` to ``dest`` (e.g. ``last`` -> ``best``) atomically."""
    run = Path(run_dir)
    tmp = run / f".{dest}.tmp-copy"
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(run / src, tmp)
    _swap_in(tmp, run / dest)
    return run / dest


def _missing(folder: Path, required: tuple[str, ...]) -> list[str]:
    return [name for name in required if not (folder / name).is_file()]


def read_checkpoint(run_dir: str | Path, which: str = LAST, *,
                    for_resume: bool = False) -> Checkpoint:
    """Read ``run_dir/which``; raises ``CheckpointError`` naming the folder and missing files."""
    if which not in (LAST, BEST):
        raise CheckpointError(f"checkpoint must be {LAST!r} or {BEST!r}, found {which!r}")
    folder = Path(run_dir) / which
    if not folder.is_dir():
        raise CheckpointError(f"no checkpoint folder {folder} (is {run_dir} a training run?)")
    missing = _missing(folder, REQUIRED_TO_RESUME if for_resume else REQUIRED_TO_LOAD)
    if missing:
        raise CheckpointError(f"checkpoint {folder} is incomplete: missing {', '.join(missing)}")
    try:
        model_state = load_file(str(folder / MODEL_FILE))
        js = {name: io.read_json(folder / f"{name}.json")
              for name in JSON_FILES if (folder / f"{name}.json").is_file()}
        state = io.read_json(folder / STATE_FILE)
        opt = rng = None
        if for_resume:
            opt = torch.load(folder / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
            tensors = load_file(str(folder / RNG_TENSORS))
            rng = io.read_json(folder / RNG_JSON)
            rng["torch_cpu"] = tensors["torch_cpu"]
            rng["torch_cuda"] = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    except Exception as err:  # safetensors' own error type is not an OSError
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"checkpoint {folder} is unreadable (truncated or not a "
                              f"checkpoint?): {type(err).__name__}: {err}") from err
    return Checkpoint(model_state=model_state, state=state, model_config=js["model_config"],
                      train_config=js["train_config"], data=js["data"],
                      normaliser=js["normaliser"], history=js["history"],
                      meta=js.get("meta", {}), optimizer_state=opt, rng=rng)


@dataclass
class LoadedRun:
    """A trained model (eval mode), its type and what it was trained with."""

    model: torch.nn.Module
    model_config: dict[str, Any]
    train_config: TrainConfig
    data: dict[str, Any] | None
    normaliser: dict[str, Any] | None
    history: list[dict[str, Any]]
    epoch: int
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    model_type: ModelType | None = None

    @property
    def task(self) -> str:
        """``regression`` or ``classification``."""
        return (self.model_type or for_config(self.model_config)).task

    def output_names(self) -> list[str]:
        """The names of the model's outputs as recorded with its data: the targets, or the
        classes for classification (indices where the run recorded none)."""
        data = self.data or {}
        key = "classes" if self.task == "classification" else "targets"
        names = data.get(key)
        n = int(self.model_config.get("n_classes") or self.model_config.get("n_outputs") or 0)
        if names and (not n or len(names) == n):
            return [str(v) for v in names]
        if key == "targets" and n == 8:  # runs recorded before names came from the data
            from robustmer import EMOTIONS

            return list(EMOTIONS)
        return [f"output{i}" for i in range(n)]


def load_run(run_dir: str | Path, which: str = BEST, device: str = "cpu") -> LoadedRun:
    """Load checkpoint ``which`` (``best`` or ``last``) of a run; the model is in eval mode."""
    ckpt = read_checkpoint(run_dir, which)
    model = rebuild(ckpt.model_config)
    try:
        model.load_state_dict(ckpt.model_state)
    except RuntimeError as err:
        raise CheckpointError(f"{Path(run_dir) / which}/{MODEL_FILE} does not fit "
                              f"model_config.json: {err}") from err
    if ckpt.state.get("target_scaler") is not None:  # trained on standardised targets
        from robustmer.train.options import TargetScaler, fold_targets

        fold_targets(model, TargetScaler.from_dict(ckpt.state["target_scaler"]))
    model.to(device).eval()
    return LoadedRun(model=model, model_config=ckpt.model_config,
                     train_config=TrainConfig.from_dict(ckpt.train_config), data=ckpt.data,
                     normaliser=ckpt.normaliser, history=ckpt.history,
                     epoch=int(ckpt.state["epoch"]), path=Path(run_dir) / which, meta=ckpt.meta,
                     model_type=for_config(ckpt.model_config))
