"""Adversarial perturbations as ground truth for explainers (Praher, Hoedt et al.).

An attack gives each clip a perturbation ``δ`` that provably changes the model's decision, so the
input regions that matter are known: a good explainer of the prediction on ``x + δ`` should rank
the segments carrying ``δ`` first. Two tests, for any ``nn.Module`` on any 2-D input
``x (B, 1, T, F)`` with an integer segment map ``(T, F)`` (ids ``0..S-1``):

- **Label-flip rate vs k**: explain the prediction on ``x + δ`` (for the class the attack reached),
  keep only the part of ``δ`` inside the explainer's top-k segments, add it to the clean ``x`` and
  ask whether the decision becomes the adversarial one. Baselines: ``magnitude`` (the k segments
  with the largest ``Σδ²``: what an oracle that knows ``δ`` would pick) and ``random`` (a seeded
  random order per clip).
- **Recovery of localised perturbations**: for ``k`` in ``recovery_ks`` keep ``δ`` only in its k
  largest-magnitude segments; on the clips where that partial adversary still flips the decision,
  explain again and count how many of the k modified segments the explainer ranks in its top k.

Regressors have no decision to flip. Their analogue (docs/explainer-eval.md): the attack is the
untargeted regression attack; the explained output is the one the attack moved most,
``argmax_j |f_j(x+δ) − f_j(x)|``; a partial perturbation "flips" when it reproduces at least
``fraction`` (default half) of the full perturbation's rise in MSE against the targets ``y``,
``(MSE(x+δ_k) − MSE(x)) ≥ fraction·(MSE(x+δ) − MSE(x))``; the table's ``effect`` column holds the
ratio itself. A clip whose targets are unknown is judged against the clean prediction.

Results go to one folder (:func:`evaluate_explainers`): ``adversarial.csv`` (one row per clip:
the attack's outcome), ``flips.csv`` (clip × method × k), ``recovery.csv`` (clip × method × k),
``timings.csv`` (seconds per explained clip), ``examples/<clip>.npz`` (``x``, ``δ``),
``maps/<clip>.npz`` (a few clips' attribution maps), ``config.yaml`` and ``meta.json``. Every
table is rewritten atomically after each batch; ``resume=True`` skips the clips already attacked
and the (clip, method) pairs already evaluated. Imports only attacks/, models/, evaluate/ and
explain/ (never train/, data/, study/ or the CLI).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from robustmer.attacks import Attack, norms, per_sample_mse
from robustmer.attacks.base import Subsettable
from robustmer.attacks.runner import batches
from robustmer.attacks.spec import TASK_ALIASES
from robustmer.errors import ConfigError
from robustmer.io import (
    plain,
    read_json,
    read_npz,
    run_meta,
    safe_name,
    stable_hash,
    write_csv,
    write_json,
    write_npz,
    write_yaml,
)

TASKS: tuple[str, ...] = ("classification", "regression")
"""What the explained model does (a model type's task); ``classifier`` / ``regressor`` are
accepted as the older spellings (``attacks.spec.TASK_ALIASES``)."""
BASELINES: tuple[str, ...] = ("magnitude", "random")
"""Reference rankings computed from ``δ`` itself (``magnitude``) or by chance (``random``)."""
TARGET_RULES: tuple[str, ...] = ("runner_up", "random")
"""How a classifier's attack target is chosen: the clean runner-up class, or a random other one."""

ADVERSARIAL, FLIPS, RECOVERY, TIMINGS = ("adversarial.csv", "flips.csv", "recovery.csv",
                                         "timings.csv")
EXAMPLES, MAPS = "examples", "maps"
CONTEXT = "context_"
"""Prefix of an item's ``context`` arrays in ``examples/<clip>.npz``."""

ModelFactory = Callable[[list[dict[str, np.ndarray]]], nn.Module]
"""``model_for(contexts) -> nn.Module``: the module for one batch of clips, built from their
``context`` arrays (in batch order); see :func:`evaluate_explainers`."""

ADV_COLUMNS: tuple[str, ...] = (
    "clip_id", "success", "clean_class", "target_class", "explained", "iterations",
    "delta_linf", "delta_l2", "mse_clean", "mse_adv")
"""``adversarial.csv``: ``success`` (the attack reached its goal; only these clips are
evaluated), ``clean_class`` / ``target_class`` (classifier; -1 for regressors), ``explained``
(the output index every explainer explains: the target class, or the output moved most),
``iterations``, ``δ`` norms, and for regressors the MSE against ``y`` before and after."""
FLIP_COLUMNS: tuple[str, ...] = ("clip_id", "method", "k", "flipped", "effect")
"""``flips.csv``: ``flipped`` (x + δ restricted to the method's top-k segments gives the
adversarial decision), ``effect`` (classifier: softmax probability of the adversarial class;
regressor: the partial MSE rise divided by the full one)."""
RECOVERY_COLUMNS: tuple[str, ...] = ("clip_id", "method", "k", "partial_flipped", "hits")
"""``recovery.csv``: ``partial_flipped`` (the δ kept in its k largest segments still flips; only
those clips are explained), ``hits`` (how many of those k segments the method ranks in its top
k; empty where ``partial_flipped`` is false)."""
TIMING_COLUMNS: tuple[str, ...] = ("clip_id", "method", "stage", "seconds")
"""``timings.csv``: wall seconds per explained clip (a batch's time divided by its clips);
``stage`` is ``adversarial`` or ``recovery_k<k>``."""


class ExplanationLike(Protocol):
    """What the evaluation reads from an explainer's result (``robustmer.explain.Explanation``):
    one score per segment, higher = more important."""

    attribution: torch.Tensor
    segment_scores: torch.Tensor | None


class ExplainerLike(Protocol):
    """The explainer interface (``robustmer.explain.Explainer``)."""

    name: str

    def __call__(self, model: nn.Module, x: torch.Tensor, target: int | torch.Tensor,
                 segments: torch.Tensor | None = None) -> ExplanationLike:
        """Explain ``model`` at ``x`` for output ``target``."""
        ...

    def config(self) -> dict[str, Any]:
        """JSON-able settings."""
        ...


# -- segment arithmetic -------------------------------------------------------------------------

def n_segments(segments: torch.Tensor) -> int:
    """Number of segments ``S`` of an integer map with ids ``0..S-1``."""
    return int(segments.max()) + 1


def check_segments(segments: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Validate a ``(T, F)`` integer segment map for inputs of shape ``(..., T, F)``."""
    seg = torch.as_tensor(segments)
    if seg.dtype.is_floating_point or seg.dtype == torch.bool:
        raise ConfigError(f"segments must be an integer map, got dtype {seg.dtype}")
    if seg.ndim != 2 or tuple(seg.shape) != tuple(shape[-2:]):
        raise ConfigError(f"segments must have shape (T, F) = {tuple(shape[-2:])}, got "
                          f"{tuple(seg.shape)}")
    seg = seg.long()
    ids = torch.unique(seg)
    if int(ids.min()) != 0 or len(ids) != int(ids.max()) + 1:
        raise ConfigError(f"segment ids must be 0..S-1 with none missing, got {ids.tolist()[:10]}"
                          f"{'...' if len(ids) > 10 else ''}")
    return seg


def segment_energy(delta: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """``Σδ²`` inside each segment, ``(B, S)`` float64; ``delta`` is ``(B, ..., T, F)`` (leading
    channel axes are summed) and ``segments`` a ``(T, F)`` map."""
    seg = segments.to(delta.device).long()
    S = n_segments(seg)
    d2 = (delta.detach().double() ** 2).reshape(delta.shape[0], -1, *seg.shape).sum(dim=1)
    flat = d2.reshape(delta.shape[0], -1)
    out = torch.zeros(delta.shape[0], S, dtype=torch.float64, device=delta.device)
    out.scatter_add_(1, seg.reshape(1, -1).expand(delta.shape[0], -1), flat)
    return out.cpu()


def rank_segments(scores: torch.Tensor) -> torch.Tensor:
    """Segment ids ``(B, S)`` ordered by score, highest first; ties go to the lower id and NaN /
    -inf rank last (the order of ``Explanation.top_k``)."""
    s = scores.detach().double().cpu()
    s = torch.where(torch.isnan(s), torch.full_like(s, -math.inf), s)
    return torch.sort(-s, dim=1, stable=True).indices


def keep_segments(delta: torch.Tensor, segments: torch.Tensor,
                  ids: torch.Tensor) -> torch.Tensor:
    """``δ`` with everything outside the segments ``ids (B, k)`` set to zero."""
    seg = segments.to(delta.device).long()
    S = n_segments(seg)
    keep = torch.zeros(delta.shape[0], S, dtype=torch.bool, device=delta.device)
    if ids.numel():
        keep.scatter_(1, ids.to(delta.device).long(), True)
    pix = keep[:, seg.reshape(-1)].reshape(delta.shape[0], *seg.shape)  # (B, T, F)
    shape = (delta.shape[0],) + (1,) * (delta.ndim - 3) + tuple(seg.shape)
    return delta * pix.reshape(shape).to(delta.dtype)


def recovery_hits(ranking: torch.Tensor, modified: torch.Tensor, k: int) -> torch.Tensor:
    """How many of the ``modified (B, k)`` segment ids are among the first ``k`` of ``ranking``
    ``(B, S)``, per clip ``(B,)`` int64."""
    top = ranking[:, :k].cpu()
    mod = modified.cpu()
    return (top[:, :, None] == mod[:, None, :]).any(dim=2).sum(dim=1)


def random_ranking(clip_ids: Sequence[str], S: int, seed: int, stage: str) -> torch.Tensor:
    """A seeded random segment order per clip ``(B, S)``, drawn from ``(seed, clip id, stage)``
    so that it does not depend on the batch a clip lands in (resume gives the same table)."""
    rows = []
    for cid in clip_ids:
        key = int(stable_hash([str(cid), stage], length=12), 16)
        rows.append(np.random.default_rng([int(seed), key]).permutation(S))
    return torch.as_tensor(np.stack(rows), dtype=torch.int64)


# -- judging a (partial) perturbation -----------------------------------------------------------

@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """``model(x)`` in chunks, no gradients, on the CPU as float64. A model with per-clip state
    (``Subsettable``, e.g. a waveform model's STFT view holding each clip's phase) is narrowed
    to each chunk's rows, so the rows of ``x`` must be its clips, in order."""
    outs = []
    for i in range(0, len(x), batch_size):
        rows = torch.arange(i, min(i + batch_size, len(x)))
        m = model.subset(rows) if isinstance(model, Subsettable) else model
        outs.append(m(x[i:i + batch_size]).double().cpu())
    return torch.cat(outs) if outs else torch.zeros(0)


def rows_model(model: nn.Module, rows: torch.Tensor, n_rows: int) -> nn.Module:
    """``model`` for the batch ``rows`` of its ``n_rows`` clips (``subset`` when it holds
    per-clip state and ``rows`` is not the whole batch)."""
    if isinstance(model, Subsettable) and len(rows) != n_rows:
        return model.subset(rows)
    return model


@dataclass
class Judge:
    """Decides whether an input is adversarial for each clip.

    Classifier: adversarial ⇔ ``argmax f = target``; ``effect`` = softmax probability of the
    target. Regressor: ``effect`` = ``(MSE(f, y) − mse_clean) / (mse_adv − mse_clean)``;
    adversarial ⇔ ``effect ≥ fraction``. ``target`` ``(B,)`` int64, ``y`` ``(B, K)``,
    ``mse_clean`` / ``mse_adv`` ``(B,)`` float64 (regressor only).
    """

    task: str
    target: torch.Tensor
    y: torch.Tensor | None = None
    mse_clean: torch.Tensor | None = None
    mse_adv: torch.Tensor | None = None
    fraction: float = 0.5

    def __call__(self, out: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(adversarial, effect)`` for outputs ``out`` of the clips ``rows`` (batch indices)."""
        out = out.double().cpu()
        rows = rows.cpu()
        if self.task == "classification":
            t = self.target[rows]
            p = torch.softmax(out, dim=1).gather(1, t[:, None]).squeeze(1)
            return out.argmax(dim=1) == t, p
        assert self.y is not None and self.mse_clean is not None and self.mse_adv is not None
        mse = per_sample_mse(out, self.y[rows].double())
        rise = self.mse_adv[rows] - self.mse_clean[rows]
        effect = (mse - self.mse_clean[rows]) / rise
        return effect >= self.fraction, effect


def flip_curve(model: nn.Module, x: torch.Tensor, delta: torch.Tensor, segments: torch.Tensor,
               ranking: torch.Tensor, ks: Sequence[int], judge: Judge,
               batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """For each clip and each ``k`` in ``ks``: is ``x + δ`` restricted to the first ``k``
    segments of ``ranking`` adversarial? Returns ``(flipped, effect)``, ``(B, len(ks))`` each."""
    B = x.shape[0]
    # one k at a time, so each call's rows are the batch's clips (a model with per-clip state)
    outs = [predict(model, x + keep_segments(delta, segments, ranking[:, :k]), batch_size)
            for k in ks]
    rows = torch.arange(B).repeat(len(ks))
    flipped, effect = judge(torch.cat(outs), rows)
    return flipped.reshape(len(ks), B).T, effect.reshape(len(ks), B).T


# -- the attack ---------------------------------------------------------------------------------

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


def default_attack(task: str, max_iters: int | None = None) -> Attack:
    """The default attack of ``task`` (:data:`DEFAULT_ATTACKS`), with ``max_iters`` if given."""
    from robustmer.attacks.spec import AttackSpec

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


def _contexts(batch: Sequence[Mapping[str, Any]]) -> list[dict[str, np.ndarray]]:
    """Each item's ``context`` (name -> array), ``{}`` where it has none."""
    return [{str(k): np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v)
             for k, v in (it.get("context") or {}).items()} for it in batch]


def _batch_model(model: nn.Module, model_for: ModelFactory | None,
                 contexts: list[dict[str, np.ndarray]], device: torch.device) -> nn.Module:
    """The module for one batch: ``model``, or ``model_for(contexts)`` on ``device``."""
    if model_for is None:
        return model
    return model_for(contexts).to(device).eval()


def regression_success(attack: Attack, result: Any, mse_clean: torch.Tensor,
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


def _attack_batch(model: nn.Module, batch: list[dict[str, Any]], attack: Attack, task: str,
                  target_rule: str, seed: int, device: torch.device, out: Path,
                  batch_size: int, model_for: ModelFactory | None = None,
                  min_rise: float | None = None) -> list[dict[str, Any]]:
    ids = [str(it["id"]) for it in batch]
    contexts = _contexts(batch)
    model = _batch_model(model, model_for, contexts, device)
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
                      y=y[i].numpy(), **{CONTEXT + k: v for k, v in contexts[i].items()})
    return rows


# -- files --------------------------------------------------------------------------------------

def _read(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype="object" if c in ("clip_id", "method", "stage")
                                          else "float64") for c in columns})
    return pd.read_csv(path, dtype={"clip_id": str, "method": str})


def read_results(out_dir: str | Path) -> dict[str, pd.DataFrame]:
    """The tables of an explainer-eval folder (empty tables where a file is missing)."""
    out = Path(out_dir)
    return {"adversarial": _read(out / ADVERSARIAL, ADV_COLUMNS),
            "flips": _read(out / FLIPS, FLIP_COLUMNS),
            "recovery": _read(out / RECOVERY, RECOVERY_COLUMNS),
            "timings": _read(out / TIMINGS, TIMING_COLUMNS)}


def _prepare_out(out: Path, config: dict[str, Any], resume: bool) -> None:
    import yaml

    cfg_path = out / "config.yaml"
    if (out / ADVERSARIAL).exists() and not resume:
        raise ConfigError(f"{out / ADVERSARIAL} exists; pass resume=True (--resume) to continue "
                          f"it or choose another output folder")
    if resume and cfg_path.exists():
        stored = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
        if "task" in stored:  # folders written before the tasks took the model types' words
            stored["task"] = TASK_ALIASES.get(stored["task"], stored["task"])
        asked = yaml.safe_load(yaml.safe_dump(plain(config), sort_keys=False))
        # methods may be added on resume; everything else must match
        a = {k: v for k, v in stored.items() if k not in ("methods", "explainers")}
        b = {k: v for k, v in asked.items() if k not in ("methods", "explainers")}
        if a != b:
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            raise ConfigError(f"{cfg_path} holds different settings; cannot resume with these "
                              f"(differences in {diff}): choose another output folder")
        stored_ex = stored.get("explainers") or {}
        for name, cfg in (asked.get("explainers") or {}).items():
            if name in stored_ex and stored_ex[name] != cfg:
                raise ConfigError(f"{cfg_path}: method {name!r} was run with {stored_ex[name]}, "
                                  f"not {cfg}; choose another output folder")
        merged = dict(asked)
        merged["explainers"] = {**stored_ex, **(asked.get("explainers") or {})}
        merged["methods"] = list(dict.fromkeys([*(stored.get("methods") or []),
                                                *(asked.get("methods") or [])]))
        config = merged
    write_yaml(cfg_path, config)


def _ordered(frame: pd.DataFrame, columns: Sequence[str], clip_order: dict[str, int],
             methods: Sequence[str]) -> pd.DataFrame:
    """Rows in a fixed order (clip order of the attack, method order, k), so that a resumed run
    writes the same table as an uninterrupted one."""
    if not len(frame):
        return frame.reindex(columns=list(columns))
    m_order = {m: i for i, m in enumerate(methods)}
    keys = [frame["clip_id"].map(clip_order).fillna(len(clip_order)),
            frame["method"].map(m_order).fillna(len(m_order))]
    sort = pd.DataFrame({"_c": keys[0].to_numpy(), "_m": keys[1].to_numpy()})
    by = ["_c", "_m"]
    if "k" in frame.columns:
        sort["_k"] = frame["k"].to_numpy()
        by.append("_k")
    if "stage" in frame.columns:
        sort["_s"] = frame["stage"].astype(str).to_numpy()
        by.append("_s")
    idx = sort.sort_values(by, kind="stable").index
    return frame.iloc[idx].reset_index(drop=True).reindex(columns=list(columns))




# -- the evaluation -----------------------------------------------------------------------------

@dataclass
class EvalResult:
    """The tables of one evaluation (also on disk in ``out_dir``)."""

    adversarial: pd.DataFrame
    flips: pd.DataFrame
    recovery: pd.DataFrame
    timings: pd.DataFrame
    out_dir: Path

    @property
    def n_attacked(self) -> int:
        """Clips attacked."""
        return len(self.adversarial)

    @property
    def n_successful(self) -> int:
        """Successful adversarial examples (the clips evaluated)."""
        return int(self.adversarial["success"].astype(bool).sum()) if len(self.adversarial) else 0

    def flip_rate(self, k: int) -> pd.Series:
        """Label-flip rate at ``k`` per method (over the successful clips)."""
        sel = self.flips[self.flips["k"] == k]
        return sel.groupby("method", sort=False)["flipped"].mean()


def _explain_scores(explainer: Any, model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                    segments: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(model, Subsettable) and x.shape[0] > 1:
        # per-clip state: explainers evaluate one clip's perturbed copies in batches of their
        # own, which only a one-clip model can follow; so explain one clip at a time
        parts = [_explain_scores(explainer, model.subset(torch.tensor([i])), x[i:i + 1],
                                 target[i:i + 1], segments, name) for i in range(x.shape[0])]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    expl = explainer(model, x, target, segments)
    scores = getattr(expl, "segment_scores", None)
    if scores is None:
        raise ConfigError(f"explainer {name!r} returned no segment scores although a segment map "
                          f"was given")
    scores = scores.detach().cpu()
    S = n_segments(segments)
    if tuple(scores.shape) != (x.shape[0], S):
        raise ConfigError(f"explainer {name!r} returned segment scores of shape "
                          f"{tuple(scores.shape)}, expected {(x.shape[0], S)}")
    return scores, expl.attribution.detach().float().cpu()


def evaluate_explainers(
    model: nn.Module,
    items: Iterable[dict[str, Any]],
    segments: torch.Tensor,
    explainers: Mapping[str, Any],
    out_dir: str | Path,
    *,
    task: str,
    attack: Attack | None = None,
    ks: Sequence[int] | None = None,
    recovery_ks: Sequence[int] = (1, 3, 5),
    baselines: Sequence[str] = BASELINES,
    fraction: float = 0.5,
    target_rule: str = "runner_up",
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    resume: bool = False,
    seed: int = 0,
    n_maps: int = 3,
    progress: bool = False,
    total: int | None = None,
    config: dict[str, Any] | None = None,
    model_for: ModelFactory | None = None,
    min_rise: float | None = None,
) -> EvalResult:
    """Attack ``items`` and test every explainer (and baseline) against the perturbations.

    ``items``: dicts ``{"id", "x" (1, T, F), "y" (K,) optional, "context" optional}`` (``y``:
    regression targets; missing = the clean prediction). ``explainers``: name -> callable
    ``(model, x, target, segments) -> Explanation`` with ``segment_scores (B, S)``. ``ks``: the
    k of the label-flip curve (default ``1..S``). ``attack``: default :func:`default_attack`.

    ``model_for``: for a model with per-clip state (a waveform model's STFT view needs each
    clip's phase): ``model_for(contexts)`` builds the module for a batch from its items'
    ``context`` dicts of arrays (kept in ``examples/<clip>.npz``, so a resumed run rebuilds
    it); ``model`` is then the module it wraps (moved to ``device``, put in eval mode). Such a
    module implements ``subset(rows)`` (``attacks.base.Subsettable``) and is explained one clip
    at a time. ``min_rise`` (regressors): success = the clip's RMSE rose by at least this much
    (:func:`regression_success`; the CLI's default is :data:`DEFAULT_MIN_RISE` × the targets'
    range). Writes the folder described in the module docstring and returns its tables.
    """
    task = TASK_ALIASES.get(task, task)
    if task not in TASKS:
        raise ConfigError(f"task must be one of {list(TASKS)}, got {task!r}")
    if target_rule not in TARGET_RULES:
        raise ConfigError(f"target_rule must be one of {list(TARGET_RULES)}, got {target_rule!r}")
    if not 0 < fraction <= 1:
        raise ConfigError(f"fraction must lie in (0, 1], got {fraction!r}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    for b in baselines:
        if b not in BASELINES:
            raise ConfigError(f"unknown baseline {b!r}; expected some of {list(BASELINES)}")
    clash = set(explainers) & set(BASELINES)
    if clash:
        raise ConfigError(f"explainer name(s) {sorted(clash)} are reserved for the baselines")
    seg = torch.as_tensor(segments)
    if seg.ndim != 2:
        raise ConfigError(f"segments must be a (T, F) map, got shape {tuple(seg.shape)}")
    seg = check_segments(seg, seg.shape)
    S = n_segments(seg)
    ks = list(range(1, S + 1)) if ks is None else sorted({int(k) for k in ks})
    bad = [k for k in [*ks, *recovery_ks] if not 1 <= int(k) <= S]
    if bad:
        raise ConfigError(f"k must lie in 1..{S} (the number of segments), got {bad}")
    recovery_ks = sorted({int(k) for k in recovery_ks})
    attack = attack if attack is not None else default_attack(task)
    methods = [*baselines, *explainers]
    dev = torch.device(device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    full_config = {
        "task": task, "attack": attack.config(), "segments": {"n_segments": S,
                                                              "shape": list(seg.shape)},
        "ks": ks, "recovery_ks": recovery_ks, "baselines": list(baselines),
        "fraction": float(fraction), "target_rule": target_rule, "seed": int(seed),
        "batch_size": int(batch_size), "methods": methods,
        **({} if min_rise is None else {"min_rise": float(min_rise)}),
        "explainers": {n: (e.config() if hasattr(e, "config") else {})
                       for n, e in explainers.items()},
        **(config or {}),
    }
    _prepare_out(out, full_config, resume)
    tables = read_results(out)
    t0 = time.perf_counter()
    model = model.to(dev)
    was_training = model.training
    model.eval()
    try:
        adv_rows = tables["adversarial"].to_dict("records")
        done = {str(r["clip_id"]) for r in adv_rows}
        todo = (it for it in items if str(it["id"]) not in done)
        n_b = None if total is None else -(-max(total - len(done), 0) // batch_size)
        for batch in tqdm(batches(todo, batch_size), total=n_b, desc="attack",
                          disable=not progress, leave=False):
            adv_rows.extend(_attack_batch(model, batch, attack, task, target_rule, seed, dev,
                                          out, batch_size, model_for, min_rise))
            write_csv(out / ADVERSARIAL, pd.DataFrame(adv_rows, columns=list(ADV_COLUMNS)))
        adversarial = pd.DataFrame(adv_rows, columns=list(ADV_COLUMNS))
        if not (out / ADVERSARIAL).exists():
            write_csv(out / ADVERSARIAL, adversarial)
        ok = adversarial[adversarial["success"].astype(bool)]
        clip_ids = [str(c) for c in ok["clip_id"]]
        clip_order = {c: i for i, c in enumerate(adversarial["clip_id"].astype(str))}
        explained = dict(zip(clip_ids, ok["explained"].astype(int), strict=True))
        frames = {k: tables[k].to_dict("records") for k in ("flips", "recovery", "timings")}
        all_methods = list(dict.fromkeys([*methods, *tables["flips"]["method"].astype(str)]))
        map_clips = set(clip_ids[:max(0, int(n_maps))])
        for method in methods:
            have_f = {(str(r["clip_id"]), str(r["method"])) for r in frames["flips"]}
            have_r = {(str(r["clip_id"]), str(r["method"])) for r in frames["recovery"]}
            pending = [c for c in clip_ids if (c, method) not in have_f or
                       (c, method) not in have_r]
            redo = set(pending)  # drop half-written rows of a killed run
            frames = {k: [r for r in v if not (str(r["method"]) == method and
                                                str(r["clip_id"]) in redo)]
                      for k, v in frames.items()}
            for batch_ids in tqdm(list(batches(pending, batch_size)), desc=method,
                                  disable=not progress, leave=False):
                f_rows, r_rows, t_rows = _evaluate_batch(
                    model, batch_ids, method, explainers.get(method), out, seg, explained,
                    task, ks, recovery_ks, fraction, seed, dev, batch_size, map_clips,
                    model_for)
                frames["flips"].extend(f_rows)
                frames["recovery"].extend(r_rows)
                frames["timings"].extend(t_rows)
                for key, name, cols in (("flips", FLIPS, FLIP_COLUMNS),
                                        ("recovery", RECOVERY, RECOVERY_COLUMNS),
                                        ("timings", TIMINGS, TIMING_COLUMNS)):
                    write_csv(out / name, _ordered(pd.DataFrame(frames[key], columns=list(cols)),
                                                   cols, clip_order, all_methods))
    finally:
        model.train(was_training)
    result = {}
    for key, name, cols in (("flips", FLIPS, FLIP_COLUMNS), ("recovery", RECOVERY,
                                                             RECOVERY_COLUMNS),
                            ("timings", TIMINGS, TIMING_COLUMNS)):
        result[key] = _ordered(pd.DataFrame(frames[key], columns=list(cols)), cols, clip_order,
                               all_methods)
        if not (out / name).exists():
            write_csv(out / name, result[key])
    meta_path = out / "meta.json"
    seconds = time.perf_counter() - t0
    if meta_path.exists():
        seconds += float(read_json(meta_path).get("seconds", 0.0))
    write_json(meta_path, run_meta(seconds=seconds, clips=len(adversarial),
                                   successful=len(ok), device=str(device)))
    return EvalResult(adversarial=adversarial, flips=result["flips"],
                      recovery=result["recovery"], timings=result["timings"], out_dir=out)


def _evaluate_batch(model: nn.Module, clip_ids: list[str], method: str, explainer: Any,
                    out: Path, seg: torch.Tensor, explained: Mapping[str, int], task: str,
                    ks: Sequence[int], recovery_ks: Sequence[int], fraction: float, seed: int,
                    dev: torch.device, batch_size: int, map_clips: set[str],
                    model_for: ModelFactory | None = None,
                    ) -> tuple[list[dict], list[dict], list[dict]]:
    arrays = [read_npz(out / EXAMPLES / f"{safe_name(c)}.npz") for c in clip_ids]
    contexts = [{k[len(CONTEXT):]: v for k, v in a.items() if k.startswith(CONTEXT)}
                for a in arrays]
    model = _batch_model(model, model_for, contexts, dev)
    x = torch.stack([torch.as_tensor(a["x"]) for a in arrays]).to(dev)
    delta = torch.stack([torch.as_tensor(a["delta"]) for a in arrays]).to(dev)
    y = torch.stack([torch.as_tensor(a["y"]) for a in arrays]).double()
    target = torch.as_tensor([explained[c] for c in clip_ids], dtype=torch.int64)
    judge = Judge(task, target, fraction=fraction)
    if task == "regression":
        judge.y = y
        judge.mse_clean = per_sample_mse(predict(model, x, batch_size), y)
        judge.mse_adv = per_sample_mse(predict(model, x + delta, batch_size), y)
    S = n_segments(seg)
    B = len(clip_ids)
    seg_d = seg.to(dev)
    t_rows: list[dict[str, Any]] = []

    def rank(stage: str, xin: torch.Tensor, d: torch.Tensor,
             rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        ids = [clip_ids[int(i)] for i in rows]
        t = time.perf_counter()
        attr = None
        if method == "magnitude":
            scores = segment_energy(d, seg_d)
            ranking = rank_segments(scores)
            attr = (d.detach().float().cpu() ** 2)
        elif method == "random":
            ranking = random_ranking(ids, S, seed, stage)
        else:
            scores, attr = _explain_scores(explainer, rows_model(model, rows.to(dev), B), xin,
                                           target[rows].to(dev), seg_d, method)
            ranking = rank_segments(scores)
        per_clip = (time.perf_counter() - t) / max(1, len(ids))
        t_rows.extend({"clip_id": c, "method": method, "stage": stage, "seconds": per_clip}
                      for c in ids)
        return ranking, attr

    all_rows = torch.arange(B)
    ranking, attr = rank("adversarial", x + delta, delta, all_rows)
    flipped, effect = flip_curve(model, x, delta, seg_d, ranking, ks, judge, batch_size)
    f_rows = [{"clip_id": c, "method": method, "k": int(k), "flipped": bool(flipped[i, j]),
               "effect": float(effect[i, j])}
              for i, c in enumerate(clip_ids) for j, k in enumerate(ks)]
    for i, c in enumerate(clip_ids):
        if c in map_clips:
            _add_map(out, c, method, ranking[i], attr[i] if attr is not None else None, seg)
    # recovery: partial adversaries from the k largest-magnitude segments of δ
    mag_rank = rank_segments(segment_energy(delta, seg_d))
    r_rows: list[dict[str, Any]] = []
    for k in recovery_ks:
        modified = mag_rank[:, :k]
        d_k = keep_segments(delta, seg_d, modified)
        adv, _ = judge(predict(model, x + d_k, batch_size), all_rows)
        hits = torch.full((B,), -1, dtype=torch.int64)
        rows = adv.nonzero().squeeze(1)
        if len(rows):
            r_rank, _ = rank(f"recovery_k{k}", (x + d_k)[rows.to(dev)], d_k[rows.to(dev)], rows)
            hits[rows] = recovery_hits(r_rank, modified[rows], k)
        r_rows.extend({"clip_id": c, "method": method, "k": int(k), "partial_flipped": bool(adv[i]),
                       "hits": int(hits[i]) if bool(adv[i]) else None}
                      for i, c in enumerate(clip_ids))
    return f_rows, r_rows, t_rows


def _add_map(out: Path, clip_id: str, method: str, ranking: torch.Tensor,
             attribution: torch.Tensor | None, seg: torch.Tensor) -> None:
    """Keep one clip's map for the report: ``maps/<clip>.npz`` gains ``rank_<method>`` (and
    ``attr_<method>``, the pixel map); ``x``, ``delta`` and ``segments`` come along once."""
    path = out / MAPS / f"{safe_name(clip_id)}.npz"
    arrays = read_npz(path) if path.exists() else {}
    if "x" not in arrays:
        ex = read_npz(out / EXAMPLES / f"{safe_name(clip_id)}.npz")
        arrays.update(x=ex["x"], delta=ex["delta"], segments=seg.cpu().numpy(),
                      clip_id=np.asarray(clip_id))
    arrays[f"rank_{method}"] = ranking.cpu().numpy()
    if attribution is not None:
        arrays[f"attr_{method}"] = attribution.numpy().astype(np.float32)
    write_npz(path, **arrays)
