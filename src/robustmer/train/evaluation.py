"""Validation of a model on a dataset: predictions, metrics and the early-stopping score, and the
output sizes a model type needs for a dataset (the names come from the data)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from robustmer.errors import ConfigError
from robustmer.evaluate.metrics import regression_metrics
from robustmer.models.types import ModelType, for_config
from robustmer.train.runtime import to_device


def dataset_names(data: Dataset[Any] | DataLoader[Any]) -> dict[str, tuple[str, ...] | None]:
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
def evaluate_model(model: torch.nn.Module, data: Dataset[Any] | DataLoader[Any],
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
            b = to_device(batch, dev)
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


def output_sizes(model_type: ModelType, dataset: Dataset[Any]) -> tuple[int, int]:
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

