"""Checks against gradient masking and unconverged attacks (Carlini et al. 2019, "On Evaluating
Adversarial Robustness"; Croce & Hein 2020), on any ``nn.Module`` + tensors.

Each check attacks a set of clips ``x`` (targets ``y``) with variants of one gradient attack (the
study's :class:`~robustmer.attacks.bim.BIM`), measures the damage as ΔMAE (MAE after − before the
attack, averaged over clips and the outputs: the study's number) and returns tidy rows
(:data:`COLUMNS`): its number (``value``), what it is compared with (``reference``), a ``status``
(``pass``/``flag``, or ``info`` for a point of a curve) and the ``rule`` that decided it, in words.

"Exceeds" below means ``value > reference + max(abs_tol, rel_tol·|reference|)`` (defaults
``rel_tol=0.1``, ``abs_tol=0.001``): differences inside that margin are noise, not a verdict.

- :func:`convergence_check`: ΔMAE after 10, 100 and all iterations; flag if the last segment
  still rises by more than the margin (``rel_tol=0.05``, ``abs_tol=0.0005`` of the final ΔMAE).
- :func:`restarts_check`: best of N seeded random-start PGD runs (per clip) vs one start from
  δ = 0; flag if the best of N exceeds the single start.
- :func:`unbounded_check`: at a large, perceptible ε and with no ε at all, the MSE-rule attack
  must drive at least ``min_fraction`` of the clips to the MSE limit, with 3x and 10x the
  iterations if the first try falls short; flag otherwise.
- :func:`transfer_check`: δ crafted on ``source`` applied exactly to ``target``; flag if it hurts
  ``target`` more than the white-box attack on ``target`` (exceeds).
- :func:`gradient_free_check`: Square Attack (no gradients) at the same ε; flag if it exceeds the
  gradient attack.
- :func:`apgd_check`: APGD at the same ε and iterations; flag if it exceeds the gradient attack.

No import of train/, data/ or study/: the study (``study/checks.py``) feeds tensors in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from robustmer.attacks.apgd import APGD
from robustmer.attacks.base import Attack
from robustmer.attacks.bim import BIM, PGD
from robustmer.attacks.spec import class_parameters
from robustmer.attacks.square import Square
from robustmer.errors import ConfigError
from robustmer.evaluate.metrics import per_sample_mae

COLUMNS: tuple[str, ...] = ("check", "setting", "eps", "iters", "metric", "value", "reference",
                            "status", "rule")
"""Columns of a check's rows."""

CHECKS: tuple[str, ...] = ("convergence", "restarts", "unbounded", "transfer", "gradient_free",
                           "apgd")
"""Every check, in reporting order."""

REL_TOL, ABS_TOL = 0.1, 0.001
"""Default margin: 10 % of the reference, at least 0.001 MAE (the study's ΔMAE at ε = 0.001 is
0.004-0.006, docs/results.md: an absolute margin of 0.01 would make every check blind there)."""


@dataclass
class Outcome:
    """One attack over a set of clips: adversarial δ, predictions and per-clip MAE."""

    delta: torch.Tensor
    mae_clean: np.ndarray
    mae_adv: np.ndarray
    converged: np.ndarray

    @property
    def delta_mae(self) -> float:
        """Mean over clips of the MAE increase (= ΔMAE of ``regression_metrics``)."""
        return float(np.mean(self.mae_adv) - np.mean(self.mae_clean))


def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> np.ndarray:
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
                             ).double().cpu().numpy()
    finally:
        model.train(was)


def run_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Any,
               batch_size: int = 8) -> Outcome:
    """Attack ``x`` in batches with any ``attack(model, x, y) -> AttackResult``."""
    if len(x) < 1 or len(x) != len(y):
        raise ConfigError(f"checks need clips: x has {len(x)} rows, y {len(y)}")
    deltas, conv = [], []
    for i in range(0, len(x), batch_size):
        res = attack(model, x[i:i + batch_size], y[i:i + batch_size])
        deltas.append(res.delta.detach())
        conv.append(res.converged.cpu().numpy())
    delta = torch.cat(deltas)
    return apply_delta(model, x, y, delta, batch_size, np.concatenate(conv))


def apply_delta(model: nn.Module, x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor,
                batch_size: int = 8, converged: np.ndarray | None = None) -> Outcome:
    """The outcome of adding exactly ``delta`` to ``x`` for ``model`` (used for transfer)."""
    if delta.shape != x.shape:
        raise ConfigError(f"delta {tuple(delta.shape)} must have the shape of x {tuple(x.shape)}")
    t = y.double().cpu().numpy()
    clean = _predict(model, x, batch_size)
    adv = _predict(model, x + delta.to(x.device, x.dtype), batch_size)
    return Outcome(delta=delta, mae_clean=per_sample_mae(t, clean),
                   mae_adv=per_sample_mae(t, adv),
                   converged=(np.zeros(len(x), bool) if converged is None else converged))


def variant(attack: Attack, cls: type | None = None, **over: Any) -> Any:
    """A copy of ``attack``'s settings (its ``config()``) as ``cls`` (default: its own class)
    with ``over`` changed; keys ``cls`` does not take are dropped."""
    cls = cls or type(attack)
    cfg = {k: v for k, v in attack.config().items() if k != "attack"}
    if cfg.get("box") is not None:
        cfg["box"] = tuple(cfg["box"])
    cfg.update(over)
    params = class_parameters(cls)
    return cls(**{k: v for k, v in cfg.items() if k in params})


def exceeds(value: float, reference: float, rel_tol: float = REL_TOL,
            abs_tol: float = ABS_TOL) -> bool:
    """``value > reference + max(abs_tol, rel_tol·|reference|)`` (False when either is NaN)."""
    if not (math.isfinite(value) and math.isfinite(reference)):
        return False
    return value > reference + max(abs_tol, rel_tol * abs(reference))


def _margin(rel_tol: float, abs_tol: float) -> str:
    return f"max({abs_tol:g}, {rel_tol:g}·|reference|)"


def _row(check: str, setting: str, eps: float, iters: float, metric: str, value: float,
         reference: float, status: str, rule: str) -> dict[str, Any]:
    return {"check": check, "setting": setting, "eps": float(eps), "iters": float(iters),
            "metric": metric, "value": float(value), "reference": float(reference),
            "status": status, "rule": rule}


def frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with :data:`COLUMNS` (an empty one keeps the columns)."""
    return pd.DataFrame(list(rows), columns=list(COLUMNS))


def convergence_check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, *,
                      iters: Sequence[int] = (10, 100), rel_tol: float = 0.05,
                      abs_tol: float = 0.0005, batch_size: int = 8,
                      reference: Outcome | None = None) -> pd.DataFrame:
    """ΔMAE after each of ``iters`` (those below the attack's ``max_iters``) and after all of
    them; the last row carries the verdict (still rising at the end → flag)."""
    full = attack.max_iters
    counts = [*sorted({int(k) for k in iters if 0 < int(k) < full}), full]
    values = []
    for k in counts:
        out = reference if (k == full and reference is not None) else run_attack(
            model, x, y, variant(attack, max_iters=k), batch_size)
        values.append(out.delta_mae)
    rule = (f"flag if ΔMAE still rises over the last segment: ΔMAE(all) − ΔMAE(previous) > "
            f"max({abs_tol:g}, {rel_tol:g}·|ΔMAE(all)|)")
    rows = []
    for i, (k, v) in enumerate(zip(counts, values, strict=True)):
        if i < len(counts) - 1:
            rows.append(_row("convergence", f"{k} iterations", attack.eps, k, "delta_mae", v,
                             math.nan, "info", "a point of the iteration curve"))
            continue
        prev = values[i - 1] if i > 0 else math.nan
        rising = math.isfinite(prev) and v - prev > max(abs_tol, rel_tol * abs(v))
        rows.append(_row("convergence", f"{k} iterations (all)", attack.eps, k, "delta_mae", v,
                         prev, "flag" if rising else "pass", rule))
    return frame(rows)


def restarts_check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, *,
                   restarts: int = 5, seed: int = 0, rel_tol: float = REL_TOL,
                   abs_tol: float = ABS_TOL, batch_size: int = 8,
                   reference: Outcome | None = None) -> pd.DataFrame:
    """Best of ``restarts`` seeded random-start PGD runs (the worst case per clip) vs the single
    start from δ = 0 (``reference``, the study's attack)."""
    if restarts < 1:
        raise ConfigError(f"restarts must be >= 1, got {restarts}")
    single = reference or run_attack(model, x, y, variant(attack, random_start=False), batch_size)
    best = None
    for k in range(restarts):
        out = run_attack(model, x, y, variant(attack, cls=PGD, random_start=True, seed=seed + k),
                         batch_size)
        best = out.mae_adv if best is None else np.maximum(best, out.mae_adv)
    assert best is not None
    value = float(np.mean(best) - np.mean(single.mae_clean))
    flag = exceeds(value, single.delta_mae, rel_tol, abs_tol)
    rule = (f"flag if best-of-{restarts} random-start ΔMAE exceeds the single start's by "
            f"{_margin(rel_tol, abs_tol)}")
    return frame([_row("restarts", f"best of {restarts} starts", attack.eps, attack.max_iters,
                       "delta_mae", value, single.delta_mae, "flag" if flag else "pass", rule)])


UNBOUNDED_ESCALATE: tuple[int, ...] = (3, 10)
"""Factors of ``iters`` the unbounded check tries in turn before it flags: an adversarially
trained model climbs to the limit more slowly (docs/results.md: aA2E reached it with 300
iterations, not 100), and more iterations tell a slow climb from broken gradients."""


def unbounded_check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float = 1.0,
                    eta: float = 0.05, iters: int = 200, mse_limit: float = 1.0,
                    min_fraction: float = 0.9, norm: str = "linf", batch_size: int = 8,
                    escalate: Sequence[int] = UNBOUNDED_ESCALATE) -> pd.DataFrame:
    """The MSE-rule attack at a large ε and with no ε at all (``clip="reference_noop"``) must
    drive at least ``min_fraction`` of the clips to ``mse_limit``; value = fraction reached.
    Short of it, the attack runs again with ``iters`` times each factor of ``escalate`` (from
    δ = 0) until it gets there; the row records the iterations of its last try."""
    budgets = [int(iters)] + [int(iters) * int(f) for f in escalate]
    rows = []
    rule = (f"flag if fewer than {min_fraction:g} of the clips reach the MSE limit "
            f"{mse_limit:g} within {' / '.join(map(str, budgets))} iterations, tried in turn "
            f"(a model that resists an unbounded attack has broken gradients; one that needs "
            f"more iterations is only slower)")
    settings = ((f"eps={eps:g}", eps, "project"), ("no eps", math.nan, "reference_noop"))
    for label, e, clip in settings:
        for n in budgets:
            att = BIM(eps=eps, eta=eta, max_iters=n, norm=norm, stop="mse", mse_limit=mse_limit,
                      clip=clip)
            frac = float(np.mean(run_attack(model, x, y, att, batch_size).converged))
            if frac >= min_fraction:
                break
        rows.append(_row("unbounded", label, e, n, "fraction_at_limit", frac, min_fraction,
                         "pass" if frac >= min_fraction else "flag", rule))
    return frame(rows)


def transfer_check(source: nn.Module, target: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   attack: Attack, *, source_name: str = "source", target_name: str = "target",
                   rel_tol: float = REL_TOL, abs_tol: float = ABS_TOL, batch_size: int = 8,
                   source_outcome: Outcome | None = None,
                   reference: Outcome | None = None) -> pd.DataFrame:
    """δ crafted on ``source`` (white-box) applied exactly to ``target``, vs the white-box
    attack on ``target``."""
    src = source_outcome or run_attack(source, x, y, attack, batch_size)
    white = reference or run_attack(target, x, y, attack, batch_size)
    moved = apply_delta(target, x, y, src.delta, batch_size)
    flag = exceeds(moved.delta_mae, white.delta_mae, rel_tol, abs_tol)
    rule = (f"flag if the transferred δ's ΔMAE exceeds the white-box ΔMAE on the target by "
            f"{_margin(rel_tol, abs_tol)}")
    return frame([_row("transfer", f"{source_name} -> {target_name}", attack.eps,
                       attack.max_iters, "delta_mae", moved.delta_mae, white.delta_mae,
                       "flag" if flag else "pass", rule)])


def gradient_free_check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, *,
                        queries: int = 1000, p_init: float = 0.1, seed: int = 0,
                        rel_tol: float = REL_TOL, abs_tol: float = ABS_TOL, batch_size: int = 8,
                        reference: Outcome | None = None) -> pd.DataFrame:
    """Square Attack (L∞, no gradients) at the gradient attack's ε vs the gradient attack."""
    if attack.norm != "linf":
        raise ConfigError(f"the gradient-free check runs Square (L∞); the attack's norm is "
                          f"{attack.norm!r}")
    grad = reference or run_attack(model, x, y, attack, batch_size)
    sq = Square(eps=attack.eps, max_iters=queries, p_init=p_init, seed=seed, box=attack.box)
    out = run_attack(model, x, y, sq, batch_size)
    flag = exceeds(out.delta_mae, grad.delta_mae, rel_tol, abs_tol)
    rule = (f"flag if Square's ΔMAE ({queries} queries) exceeds the gradient attack's by "
            f"{_margin(rel_tol, abs_tol)}")
    return frame([_row("gradient_free", f"square, {queries} queries", attack.eps, queries,
                       "delta_mae", out.delta_mae, grad.delta_mae, "flag" if flag else "pass",
                       rule)])


def apgd_check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, *,
               rel_tol: float = REL_TOL, abs_tol: float = ABS_TOL, batch_size: int = 8,
               reference: Outcome | None = None) -> pd.DataFrame:
    """APGD at the same ε, iterations and stop rule vs the gradient attack."""
    grad = reference or run_attack(model, x, y, attack, batch_size)
    ap = variant(attack, cls=APGD, eta=None, update="sign", clip="project",
                 random_start=False)
    out = run_attack(model, x, y, ap, batch_size)
    flag = exceeds(out.delta_mae, grad.delta_mae, rel_tol, abs_tol)
    rule = f"flag if APGD's ΔMAE exceeds the gradient attack's by {_margin(rel_tol, abs_tol)}"
    return frame([_row("apgd", f"apgd, {attack.max_iters} iterations", attack.eps,
                       attack.max_iters, "delta_mae", out.delta_mae, grad.delta_mae,
                       "flag" if flag else "pass", rule)])


def model_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, *,
                 checks: Sequence[str] = CHECKS, iters: Sequence[int] = (10, 100),
                 restarts: int = 5, unbounded_eps: float = 1.0, unbounded_eta: float = 0.05,
                 unbounded_iters: int = 200, mse_limit: float = 1.0, min_fraction: float = 0.9,
                 queries: int = 1000, p_init: float = 0.1, seed: int = 0,
                 rel_tol: float = REL_TOL, abs_tol: float = ABS_TOL, batch_size: int = 8,
                 reference: Outcome | None = None) -> pd.DataFrame:
    """Every single-model check in ``checks`` (transfer needs two models: not here), sharing
    one run of ``attack`` as the reference; ``rel_tol``/``abs_tol`` are the margin of the
    restarts, gradient-free and APGD rules."""
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown:
        raise ConfigError(f"unknown check(s) {unknown}; choose from {list(CHECKS)}")
    ref = reference or run_attack(model, x, y, attack, batch_size)
    parts = []
    if "convergence" in checks:
        parts.append(convergence_check(model, x, y, attack, iters=iters, batch_size=batch_size,
                                       reference=ref))
    if "restarts" in checks:
        parts.append(restarts_check(model, x, y, attack, restarts=restarts, seed=seed,
                                    rel_tol=rel_tol, abs_tol=abs_tol, batch_size=batch_size,
                                    reference=ref))
    if "unbounded" in checks:
        parts.append(unbounded_check(model, x, y, eps=unbounded_eps, eta=unbounded_eta,
                                     iters=unbounded_iters, mse_limit=mse_limit,
                                     min_fraction=min_fraction, norm=attack.norm,
                                     batch_size=batch_size))
    if "gradient_free" in checks:
        parts.append(gradient_free_check(model, x, y, attack, queries=queries, p_init=p_init,
                                         seed=seed, rel_tol=rel_tol, abs_tol=abs_tol,
                                         batch_size=batch_size, reference=ref))
    if "apgd" in checks:
        parts.append(apgd_check(model, x, y, attack, rel_tol=rel_tol, abs_tol=abs_tol,
                                batch_size=batch_size, reference=ref))
    return pd.concat(parts, ignore_index=True) if parts else frame([])
