"""Grid search over (ε, η, iterations) and the robustness curve ΔMAE(ε), on tensors.

Selection rule (stated, deterministic): maximise ``score = ΔMAE − mean r after the attack``
(a stronger attack raises the MAE and destroys the correlation); ties go to the smaller ε,
then the smaller η, then fewer iterations. ``mean r`` is the study's metric: the mean over the
8 emotions of the Pearson r across clips (``evaluate.metrics.regression_metrics``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from robustmer.attacks.base import Attack, Subsettable
from robustmer.attacks.bim import BIM
from robustmer.errors import ConfigError
from robustmer.evaluate.metrics import regression_metrics
from robustmer.io import atomic_path

AttackFactory = Callable[[float, float, int], Attack]


def _rows(model: nn.Module, i: int, j: int) -> nn.Module:
    """The model for batch rows ``i:j`` (a model with per-sample state, such as the waveform
    domain's excerpt windows, is restricted to those rows)."""
    if isinstance(model, Subsettable):
        return model.subset(torch.arange(i, j))
    return model


def _predict_batched(model: nn.Module, x: torch.Tensor, batch_size: int) -> np.ndarray:
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.cat([_rows(model, i, min(i + batch_size, len(x)))(x[i:i + batch_size])
                              for i in range(0, len(x), batch_size)]).double().cpu().numpy()
    finally:
        model.train(was)


def evaluate_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack,
                    batch_size: int = 8, mask: torch.Tensor | None = None) -> dict[str, float]:
    """Clean vs attacked MAE and mean r of ``model`` on ``(x, y)`` under ``attack``; ``mask``
    marks perturbable positions (e.g. the valid samples of zero-padded audio)."""
    if len(x) < 2:
        raise ConfigError("evaluate_attack needs at least 2 clips (correlation across clips)")
    names = [str(i) for i in range(y.shape[1])]
    clean = _predict_batched(model, x, batch_size)
    x_adv, iters = [], []
    for i in range(0, len(x), batch_size):
        j = min(i + batch_size, len(x))
        res = attack(_rows(model, i, j), x[i:j], y[i:j],
                     mask=None if mask is None else mask[i:j])
        x_adv.append(res.x_adv)
        iters.append(res.iterations)
    adv = _predict_batched(model, torch.cat(x_adv), batch_size)
    t = y.double().cpu().numpy()
    mc, ma = regression_metrics(t, clean, names), regression_metrics(t, adv, names)
    return {"mae_clean": mc["mae"], "mae_adv": ma["mae"], "delta_mae": ma["mae"] - mc["mae"],
            "mean_r_clean": mc["mean_r"], "mean_r_adv": ma["mean_r"],
            "mean_iterations": float(torch.cat(iters).double().mean())}


def _default_factory(**kw: Any) -> AttackFactory:
    return lambda eps, eta, iters: BIM(eps=eps, eta=eta, max_iters=iters, **kw)


def grid_search(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Sequence[float],
                eta: Sequence[float], iters: Sequence[int], *,
                make_attack: AttackFactory | None = None, batch_size: int = 8,
                mask: torch.Tensor | None = None, **attack_kwargs: Any) -> pd.DataFrame:
    """One row per (ε, η, iterations): clean/attacked MAE and mean r, ΔMAE, ``score`` and
    ``chosen`` (the row :func:`choose_setting` picks). ``make_attack(eps, eta, iters)``
    defaults to :class:`BIM` with ``attack_kwargs``."""
    if not (eps and eta and iters):
        raise ConfigError("grid_search needs at least one value each of eps, eta and iters")
    make = make_attack or _default_factory(**attack_kwargs)
    rows = []
    for e, h, n in itertools.product(eps, eta, iters):
        rows.append({"eps": float(e), "eta": float(h), "iters": int(n),
                     **evaluate_attack(model, x, y, make(float(e), float(h), int(n)),
                                       batch_size, mask)})
    table = pd.DataFrame(rows)
    table["score"] = table["delta_mae"] - table["mean_r_adv"].fillna(0.0)
    table["chosen"] = False
    table.loc[choose_setting(table).name, "chosen"] = True
    return table


def choose_setting(table: pd.DataFrame) -> pd.Series:
    """The row maximising ``delta_mae - mean_r_adv``; ties: smaller ε, η, then iterations."""
    score = table["delta_mae"] - table["mean_r_adv"].fillna(0.0)
    order = table.assign(_s=-score).sort_values(["_s", "eps", "eta", "iters"], kind="stable")
    return table.loc[order.index[0]]


def robustness_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Sequence[float],
                     *, eta: float | None = None, iters: int = 1000, batch_size: int = 8,
                     make_attack: AttackFactory | None = None, mask: torch.Tensor | None = None,
                     **attack_kwargs: Any) -> pd.DataFrame:
    """ΔMAE (and attacked MAE / mean r) as a function of ε (sorted); η defaults to 2ε (the
    study's ratio η/ε = 2). ε = 0 is allowed and gives the ΔMAE = 0 baseline."""
    if not eps:
        raise ConfigError("robustness_curve needs at least one eps value")
    make = make_attack or _default_factory(**attack_kwargs)
    rows = []
    for e in sorted(float(v) for v in eps):
        h = 2.0 * e if eta is None else float(eta)
        h = h if h > 0 else 1.0  # ε = 0: any step is projected back to δ = 0 (the baseline)
        rows.append({"eps": e, "eta": h, "iters": int(iters),
                     **evaluate_attack(model, x, y, make(e, h, int(iters)), batch_size, mask)})
    return pd.DataFrame(rows)


def plot_robustness_curve(table: pd.DataFrame, path: str | os.PathLike[str],
                          title: str = "") -> None:
    """ΔMAE vs ε (log x axis when all ε > 0) as a PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(table["eps"], table["delta_mae"], marker="o")
    if (table["eps"] > 0).all():
        ax.set_xscale("log")
    ax.set_xlabel("ε (L∞ bound on the perturbation)")
    ax.set_ylabel("ΔMAE (attacked − clean)")
    ax.set_title(title or "Robustness curve")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
