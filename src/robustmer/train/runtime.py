"""Where and how a run executes: the device, moving batches to it, mixed precision, seeding, the
data order of an epoch, and leaving the caller's global state as it was found.

Shared by the solo trainer (:mod:`robustmer.train.trainer`), batched seeds
(:mod:`robustmer.train.batched`) and pretrained run folders (:mod:`robustmer.train.pretrained`).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from robustmer.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """The torch device ``name`` (``cpu``, ``cuda``, ``cuda:1``); ``ConfigError`` when CUDA is
    asked for and not available."""
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available; use --device cpu")
    return dev


def to_device(batch: Mapping[str, Any], device: torch.device,
              channels_last: bool = False) -> dict[str, Any]:
    """A batch dict with its tensors on ``device`` (``x`` in channels-last layout when asked);
    other values (clip ids) as they are."""
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


def deterministic_cudnn(device: torch.device) -> None:
    """On CUDA, cudnn's deterministic kernels and no autotuning (the run must repeat)."""
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


@contextlib.contextmanager
def preserved_global_state() -> Iterator[None]:
    """Run the block and then put back the caller's global RNG states (python, numpy, torch CPU
    and every CUDA device) and cudnn flags (``deterministic``, ``benchmark``), whatever the
    block did to them: training seeds and draws from them, and a caller's own draws after a
    ``train_run`` must not depend on it (as with any library call)."""
    py_state, np_state, cpu_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    flags = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(cpu_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags
