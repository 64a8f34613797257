"""The solo state of S seeds as the state of one stacked model and back (batched seeds,
:mod:`robustmer.train.batched`): Adam's per-parameter state, and each seed's dropout generator in
the state its solo run's global RNG would have."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from robustmer.errors import CheckpointError
from robustmer.models.stacked import StackedModel, stack_tensors, unstack_tensor


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
                if any(not same_value(p[key], val) for p in per[1:]):
                    raise CheckpointError(f"optimiser state {name}.{key} differs between seeds "
                                          f"(they are not at the same step)")
                entry[key] = val.clone() if isinstance(val, torch.Tensor) else val
        out[j] = entry
    group = dict(states[0]["param_groups"][0])
    group["params"] = list(range(len(names)))
    return {"state": out, "param_groups": [group]}


def same_value(a: Any, b: Any) -> bool:
    """Equal values, tensors compared elementwise (``torch.equal``)."""
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


def seed_generator(rng: dict[str, Any], device: torch.device, seed: int) -> torch.Generator:
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


def store_generator(rng: dict[str, Any], gen: torch.Generator, device: torch.device) -> None:
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
def solo_cpu_rng(rng: dict[str, Any]) -> Iterator[None]:
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
