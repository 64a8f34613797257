"""Training options beyond the reference recipe (all off by default): targets standardised per
output, a one-cycle learning-rate schedule, and BatchNorm statistics recomputed after training.

Each is a pure function of the run's data, config and (epoch, step), so a run that uses them stays
deterministic and resumes to bit-identical weights like the plain recipe.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from robustmer.errors import ConfigError
from robustmer.models.types import ModelType
from robustmer.train.config import TrainConfig

ONECYCLE_WARMUP = 0.3
ONECYCLE_START_DIV = 25.0
ONECYCLE_END_DIV = 1e4
"""One-cycle shape (torch's ``OneCycleLR`` defaults): the first 30 % of the steps rise from
``lr/25`` to ``lr`` and the rest fall to ``lr/25/1e4``, both along a half cosine."""


def scheduled_lr(config: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) of ``epoch`` (1-based).

    Written by hand rather than with ``torch.optim.lr_scheduler.OneCycleLR`` because a pure
    function of (epoch, step) needs no scheduler state in the checkpoint, so resuming is exact.
    The schedule spans ``max_epochs``, which therefore may not change on resume (trainer checks).
    """
    if config.lr_schedule == "constant":
        return config.lr
    total = max(1, config.max_epochs * steps_per_epoch - 1)
    t = min(1.0, ((epoch - 1) * steps_per_epoch + step) / total)
    start = config.lr / ONECYCLE_START_DIV
    end = start / ONECYCLE_END_DIV

    def cos(a: float, b: float, frac: float) -> float:
        return b + (a - b) * (1.0 + math.cos(math.pi * frac)) / 2.0

    if t < ONECYCLE_WARMUP:
        return cos(start, config.lr, t / ONECYCLE_WARMUP)
    return cos(config.lr, end, (t - ONECYCLE_WARMUP) / (1.0 - ONECYCLE_WARMUP))


@dataclass(frozen=True)
class TargetScaler:
    """Per-output mean and standard deviation of the training targets (``TrainConfig.
    standardize_targets``): the network is trained on ``(y - mean) / std`` and :func:`fold_targets`
    maps it back into rating units, so a loaded model predicts ratings as usual.

    With targets of a small spread around 0.5 (ratings / 10), a freshly initialised network
    (zero output bias, unit-scale outputs) spends its first hundreds of steps moving the output
    bias; on standardised targets every output starts centred and at the right scale.
    """

    target_mean: tuple[float, ...]
    target_std: tuple[float, ...]
    concept_mean: tuple[float, ...] | None = None
    concept_std: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stored in every checkpoint's ``state.json`` as ``target_scaler``;
        the keys ``emotion_mean`` / ``emotion_std`` are the ones runs have always recorded)."""
        return {"emotion_mean": list(self.target_mean), "emotion_std": list(self.target_std),
                "concept_mean": None if self.concept_mean is None else list(self.concept_mean),
                "concept_std": None if self.concept_std is None else list(self.concept_std)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TargetScaler:
        """Inverse of :meth:`to_dict`."""
        def tup(v: Any) -> tuple[float, ...] | None:
            return None if v is None else tuple(float(x) for x in v)
        return cls(tup(d["emotion_mean"]), tup(d["emotion_std"]),  # type: ignore[arg-type]
                   tup(d.get("concept_mean")), tup(d.get("concept_std")))

    def standardize(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``batch`` with ``targets`` (and, when fitted, ``concepts``) standardised."""
        out = dict(batch)
        e = batch["targets"]
        out["targets"] = (e - e.new_tensor(self.target_mean)) / e.new_tensor(self.target_std)
        if self.concept_mean is not None and self.concept_std is not None and "concepts" in batch:
            c = batch["concepts"]
            out["concepts"] = (c - c.new_tensor(self.concept_mean)) / c.new_tensor(
                self.concept_std)
        return out


def _mean_std(values: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean = values.mean(axis=0)
    std = values.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)  # a constant output is only centred
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def fit_target_scaler(dataset: Dataset[Any], model_type: ModelType,
                      model: nn.Module | None = None) -> TargetScaler | None:
    """Fit a :class:`TargetScaler` on the targets of every training item (and, for a
    concept-trained bottleneck, the concepts of items whose ``concept_mask`` is set); None for
    classification. A concept scaling needs a model :func:`fold_targets` can fold."""
    if model_type.task == "classification":
        return None
    if model is not None and model_type.needs_concepts and not foldable(model):
        raise ConfigError(f"TrainConfig.standardize_targets: model type {model_type.name} learns "
                          "concepts, but its bottleneck is not a robustmer head to fold the "
                          "concept scaling into; train it with standardize_targets: false")
    targets: list[np.ndarray] = []
    concepts: list[np.ndarray] = []
    for i in range(len(dataset)):  # type: ignore[arg-type]
        item = dataset[i]
        targets.append(np.asarray(item["targets"], dtype=np.float64))
        if model_type.needs_concepts and bool(item.get("concept_mask", False)):
            concepts.append(np.asarray(item["concepts"], dtype=np.float64))
    em, es = _mean_std(np.stack(targets))
    if len(concepts) < 2:
        return TargetScaler(em, es)
    cm, cs = _mean_std(np.stack(concepts))
    return TargetScaler(em, es, cm, cs)


def foldable(model: nn.Module) -> bool:
    """Whether :func:`fold_targets` can fold a scaling into ``model``: a robustmer head (a
    linear ``head``, with a linear ``bottleneck`` or none)."""
    bott = getattr(model, "bottleneck", None)
    return isinstance(getattr(model, "head", None), nn.Linear) and (
        bott is None or isinstance(bott, nn.Linear))


class OutputScaling:
    """A forward hook that maps a model's standardised outputs back into target units,
    ``y = s·z + m``: how :func:`fold_targets` applies a :class:`TargetScaler` to a model whose
    last layer it cannot fold into (a user's own model). The model keeps its class, weights and
    module names (so L2I's layer names and captum see the model as written)."""

    def __init__(self, scaler: TargetScaler) -> None:
        self.std = torch.tensor(scaler.target_std)
        self.mean = torch.tensor(scaler.target_mean)

    def __call__(self, _module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return output * self.std.to(output) + self.mean.to(output)


@torch.no_grad()
def fold_targets(model: nn.Module, scaler: TargetScaler) -> nn.Module:
    """Fold the target standardisation into the model's last linear layers, in place, so that
    ``model(x)`` gives ratings again (exact up to float rounding).

    Emotions ``e = s_e·e_z + m_e``: head ``W <- s_e W``, ``b <- s_e b + m_e``. With a trained
    concept bottleneck (A2M2E) also ``c = s_c·c_z + m_c``: bottleneck ``W <- s_c W``,
    ``b <- s_c b + m_c``, and the head, which now reads concepts in rating units,
    ``W <- s_e W / s_c``, ``b <- s_e (b - W (m_c / s_c)) + m_e``. The folded network is the
    plain architecture, so explanations (``concept_contributions``) need nothing special.

    A model without a robustmer head (a user's own) gets an :class:`OutputScaling` forward
    hook instead (outputs only; a concept scaling needs a head).
    """
    if not foldable(model):
        if scaler.concept_mean is not None:
            raise ConfigError("fold_targets: a concept scaling needs a robustmer head")
        model.register_forward_hook(OutputScaling(scaler))
        return model
    head: Any = model.head  # a robustmer head: Linear layers (checked by foldable)
    dev, dt = head.weight.device, head.weight.dtype
    se = torch.tensor(scaler.target_std, device=dev, dtype=dt)
    me = torch.tensor(scaler.target_mean, device=dev, dtype=dt)
    if scaler.concept_mean is not None and scaler.concept_std is not None:
        bott: Any = model.bottleneck
        assert bott is not None
        sc = torch.tensor(scaler.concept_std, device=dev, dtype=dt)
        mc = torch.tensor(scaler.concept_mean, device=dev, dtype=dt)
        bott.weight.mul_(sc[:, None])
        bott.bias.mul_(sc).add_(mc)
        head.bias.sub_(head.weight @ (mc / sc))
        head.weight.div_(sc[None, :])
    head.weight.mul_(se[:, None])
    head.bias.mul_(se).add_(me)
    return model


class RatedModel(nn.Module):
    """A model trained on standardised targets, seen in rating units (outputs ``s·z + m``):
    what the attack of adversarial training must see, with gradients to the same weights."""

    def __init__(self, model: nn.Module, scaler: TargetScaler) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("std", torch.tensor(scaler.target_std))
        self.register_buffer("mean", torch.tensor(scaler.target_mean))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(x) * self.std.to(x.device) + self.mean.to(x.device)
        return out


def rated_copy(model: nn.Module, scaler: TargetScaler | None) -> nn.Module:
    """The model in rating units: itself without a scaler, else a folded copy (for validation)."""
    return model if scaler is None else fold_targets(copy.deepcopy(model), scaler)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, dataset: Dataset[Any], device: torch.device,
                          batch_size: int = 32) -> None:
    """Recompute every BatchNorm layer's running mean and variance as plain averages over
    ``dataset`` (the training excerpts), with dropout off (``TrainConfig.bn_recalibrate``).

    The running statistics kept during training are exponential averages of batches seen with
    dropout on, while the weights were still moving; evaluation uses them with dropout off.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    was_training = model.training
    momenta = [bn.momentum for bn in bns]
    model.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches
        bn.train()
    try:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
        for batch in loader:
            model(batch["x"].to(device))
    finally:
        for bn, m in zip(bns, momenta, strict=True):
            bn.momentum = m
        model.train(was_training)
