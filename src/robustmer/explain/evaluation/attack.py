"""The attack of the explainer evaluation: the default attacks, the target of a classifier's
attack, regression success, and attacking one batch of clips (its row of ``adversarial.csv`` and
its ``examples/<clip>.npz``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from robustmer.attacks import AttackLike, norms, per_sample_mse
from robustmer.attacks.spec import TASK_ALIASES, AttackSpec
from robustmer.errors import ConfigError
from robustmer.explain.evaluation.files import CONTEXT, EXAMPLES
from robustmer.explain.evaluation.metrics import TASKS, predict
from robustmer.io import safe_name, stable_hash, write_npz
from robustmer.protocols import AttackResult

TARGET_RULES: tuple[str, ...] = ("runner_up", "random")
"""How a classifier's attack target is chosen: the clean runner-up class, or a random other one."""

ModelFactory = Callable[[list[dict[str, np.ndarray]]], nn.Module]
"""``model_for(contexts) -> nn.Module``: the module for one batch of clips, built from their
``context`` arrays (in batch order); see :func:`evaluate_explainers`."""

DEFAULT_ATTACKS: dict[str, dict[str, Any]] = {
    "classification": {"name": "targeted_pgd", "norm": "l2", "eps": 10.0, "eta": 0.05,
                       "max_iters": 1000, "confidence": 0.99},
    "regression": {"name": "bim", "norm": "l2", "eps": 10.0, "eta": 0.05, "max_iters": 100,
                   "stop": "none"},
}
"""The default attacks (``robustmer.attacks.spec`` descriptions; docs/explainer-eval.md, "The
attacks", for the budget search that chose them). Classifiers: targeted PGD with L2 steps
``η·g/‖g‖₂`` (which put δ where the gradient is, unlike L∞ sign steps that spread it evenly
over every pixel), stopping when the target class has a softmax probability of 0.99 (a decision
moved past the boundary by a margin, so that a part of δ can carry it), ‖δ‖₂ <= 10.
Regressors: the regression BIM with the same L2 steps for a fixed 100 iterations (no stopping
rule), judged by :data:`DEFAULT_MIN_RISE`."""
DEFAULT_MIN_RISE = 0.1
"""Regressors: an attack succeeds when it raises the clip's RMSE against its targets by at least
this share of the targets' range (``min_rise = 0.1 × range``; the CLI takes the range of the
training targets)."""


def default_attack(task: str, max_iters: int | None = None) -> AttackLike:
    """The default attack of ``task`` (:data:`DEFAULT_ATTACKS`), with ``max_iters`` if given."""
    task = TASK_ALIASES.get(task, task)
    if task not in DEFAULT_ATTACKS:
        raise ConfigError(f"task must be one of {list(TASKS)}, got {task!r}")
    raw = dict(DEFAULT_ATTACKS[task])
    if max_iters is not None:
        raw["max_iters"] = int(max_iters)
    return AttackSpec.from_dict(raw, where="default_attack").build()


def attack_targets(logits: torch.Tensor, rule: str, clip_ids: Sequence[str],
                   seed: int) -> torch.Tensor:
    """Target class per clip: the clean runner-up (``runner_up``) or a seeded random class other
    than the predicted one (``random``)."""
    pred = logits.argmax(dim=1)
    C = logits.shape[1]
    if rule == "runner_up":
        return logits.masked_fill(torch.nn.functional.one_hot(pred, C).bool(),
                                  -math.inf).argmax(dim=1)
    if rule == "random":
        out = []
        for cid, p in zip(clip_ids, pred.tolist(), strict=True):
            key = int(stable_hash([str(cid), "target"], length=12), 16)
            r = int(np.random.default_rng([int(seed), key]).integers(C - 1))
            out.append(r if r < p else r + 1)
        return torch.as_tensor(out, dtype=torch.int64)
    raise ConfigError(f"target_rule must be one of {list(TARGET_RULES)}, got {rule!r}")


def contexts(batch: Sequence[Mapping[str, Any]]) -> list[dict[str, np.ndarray]]:
    """Each item's ``context`` (name -> array), ``{}`` where it has none."""
    return [{str(k): np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v)
             for k, v in (it.get("context") or {}).items()} for it in batch]


def batch_model(model: nn.Module, model_for: ModelFactory | None,
                 contexts: list[dict[str, np.ndarray]], device: torch.device) -> nn.Module:
    """The module for one batch: ``model``, or ``model_for(contexts)`` on ``device``."""
    if model_for is None:
        return model
    return model_for(contexts).to(device).eval()


def regression_success(attack: AttackLike, result: AttackResult, mse_clean: torch.Tensor,
                       mse_adv: torch.Tensor, min_rise: float | None) -> torch.Tensor:
    """Which regression attacks succeeded. With ``min_rise``: the clip's RMSE against its
    targets rose by at least ``min_rise`` (target units). Without: the attack passed at least
    one threshold of its stopping rule (any, with ``stop="none"``) and the MSE rose."""
    if min_rise is not None:
        return (mse_adv.sqrt() - mse_clean.sqrt()) >= float(min_rise)
    thresholds = attack.config().get("stop", "corr") != "none"
    reached = (result.converged | torch.isfinite(result.last_passed)) if thresholds else \
        torch.ones(len(mse_clean), dtype=torch.bool)
    return reached & (mse_adv > mse_clean)


def attack_batch(model: nn.Module, batch: list[dict[str, Any]], attack: AttackLike, task: str,
                  target_rule: str, seed: int, device: torch.device, out: Path,
                  batch_size: int, model_for: ModelFactory | None = None,
                  min_rise: float | None = None) -> list[dict[str, Any]]:
    ids = [str(it["id"]) for it in batch]
    ctx = contexts(batch)
    model = batch_model(model, model_for, ctx, device)
    x = torch.stack([torch.as_tensor(it["x"], dtype=torch.float32) for it in batch]).to(device)
    clean = predict(model, x, batch_size)
    rows: list[dict[str, Any]] = []
    if task == "classification":
        if clean.ndim != 2 or clean.shape[1] < 2:
            raise ConfigError(f"task 'classification' needs (B, C>=2) logits, got "
                              f"{tuple(clean.shape)}")
        target = attack_targets(clean, target_rule, ids, seed)
        res = attack(model, x, target.to(device))
        adv = predict(model, res.x_adv, batch_size)
        success = adv.argmax(dim=1) == target
        explained = target
        y = clean
        mse0 = mse1 = torch.full((len(ids),), math.nan, dtype=torch.float64)
        clean_class = clean.argmax(dim=1)
    else:
        y = torch.stack([torch.as_tensor(it["y"], dtype=torch.float32) if it.get("y") is not None
                         else clean[i].float() for i, it in enumerate(batch)]).to(device)
        res = attack(model, x, y)
        adv = predict(model, res.x_adv, batch_size)
        mse0 = per_sample_mse(clean, y.double().cpu())
        mse1 = per_sample_mse(adv, y.double().cpu())
        success = regression_success(attack, res, mse0, mse1, min_rise)
        explained = (adv - clean).abs().argmax(dim=1)
        target = clean_class = torch.full((len(ids),), -1, dtype=torch.int64)
        y = y.double().cpu()
    d_linf, d_l2 = norms.linf(res.delta).double().cpu(), norms.l2(res.delta).double().cpu()
    for i, cid in enumerate(ids):
        rows.append({"clip_id": cid, "success": bool(success[i]),
                     "clean_class": int(clean_class[i]), "target_class": int(target[i]),
                     "explained": int(explained[i]), "iterations": int(res.iterations[i]),
                     "delta_linf": float(d_linf[i]), "delta_l2": float(d_l2[i]),
                     "mse_clean": float(mse0[i]), "mse_adv": float(mse1[i])})
        if bool(success[i]):
            write_npz(out / EXAMPLES / f"{safe_name(cid)}.npz",
                      x=x[i].cpu().numpy(), delta=res.delta[i].cpu().numpy(),
                      y=y[i].numpy(), **{CONTEXT + k: v for k, v in ctx[i].items()})
    return rows

