"""The explainer evaluation itself (:func:`evaluate_explainers`): attack the clips, then rank
segments with every explainer and baseline and judge the partial perturbations; resumable
(see the package docstring for the folder it writes)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from robustmer.attacks import AttackLike, per_sample_mse
from robustmer.attacks.runner import batches
from robustmer.attacks.spec import TASK_ALIASES
from robustmer.errors import ConfigError
from robustmer.explain.base import Explainer
from robustmer.explain.evaluation.attack import (
    TARGET_RULES,
    ModelFactory,
    attack_batch,
    batch_model,
    default_attack,
)
from robustmer.explain.evaluation.files import (
    ADV_COLUMNS,
    ADVERSARIAL,
    CONTEXT,
    EXAMPLES,
    FLIP_COLUMNS,
    FLIPS,
    RECOVERY,
    RECOVERY_COLUMNS,
    TIMING_COLUMNS,
    TIMINGS,
    add_map,
    ordered,
    prepare_out,
    read_results,
)
from robustmer.explain.evaluation.metrics import (
    TASKS,
    Judge,
    explain_segments,
    flip_curve,
    keep_segments,
    n_segments,
    predict,
    random_ranking,
    rank_segments,
    recovery_hits,
    rows_model,
    segment_energy,
)
from robustmer.explain.segments import check_segments
from robustmer.io import read_json, read_npz, run_meta, safe_name, write_csv, write_json

BASELINES: tuple[str, ...] = ("magnitude", "random")
"""Reference rankings computed from ``δ`` itself (``magnitude``) or by chance (``random``)."""
HEADLINE_K = 3
"""The k a summary reports (the study's "top 3 of 20 segments")."""


def headline_k(ks: Iterable[int]) -> int:
    """:data:`HEADLINE_K` where it was evaluated, else the smallest k evaluated."""
    ks = {int(k) for k in ks}
    return HEADLINE_K if HEADLINE_K in ks else min(ks)


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


_TABLES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("flips", FLIPS, FLIP_COLUMNS), ("recovery", RECOVERY, RECOVERY_COLUMNS),
    ("timings", TIMINGS, TIMING_COLUMNS))
"""The per-method tables: key in :func:`read_results`, file name, columns."""

Rows = list[dict[str, Any]]


@dataclass
class _Run:
    """The settings every batch of one evaluation shares."""

    out: Path
    task: str
    seg: torch.Tensor
    ks: list[int]
    recovery_ks: list[int]
    fraction: float
    seed: int
    device: torch.device
    batch_size: int
    model_for: ModelFactory | None
    map_clips: set[str]


def evaluate_explainers(
    model: nn.Module,
    items: Iterable[dict[str, Any]],
    segments: torch.Tensor,
    explainers: Mapping[str, Explainer],
    out_dir: str | Path,
    *,
    task: str,
    attack: AttackLike | None = None,
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
    regression targets; missing = the clean prediction). ``explainers``: name -> explainer
    (``robustmer.explain.base.Explainer``: any object called ``(model, x, target, segments)``
    that returns an explanation with ``segment_scores (B, S)`` and ``attribution``; its
    ``config()``, if it has one, is stored). ``ks``: the k of the label-flip curve (default
    ``1..S``). ``attack``: default :func:`default_attack`.

    ``model_for``: for a model with per-clip state (a waveform model's STFT view needs each
    clip's phase): ``model_for(contexts)`` builds the module for a batch from its items'
    ``context`` dicts of arrays (kept in ``examples/<clip>.npz``, so a resumed run rebuilds
    it); ``model`` is then the module it wraps (moved to ``device``, put in eval mode). Such a
    module implements ``subset(rows)`` (``attacks.base.Subsettable``) and is explained one clip
    at a time. ``min_rise`` (regressors): success = the clip's RMSE rose by at least this much
    (:func:`regression_success`; the CLI's default is :data:`DEFAULT_MIN_RISE` × the targets'
    range). Writes the folder described in the package docstring and returns its tables.

    Examples:
        A linear classifier on 4 x 4 inputs cut into 4 segments, attacked by the default
        targeted PGD (50 steps at most), with the baselines only (an explainer is any
        ``Explainer``, e.g. ``make_explainer("ig")``):

        >>> import tempfile, torch
        >>> from robustmer.explain.segments import grid_segments
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> items = [{"id": f"c{i}", "x": torch.randn(1, 4, 4)} for i in range(4)]
        >>> res = evaluate_explainers(
        ...     model, items, grid_segments((4, 4), 2, 2), {}, tempfile.mkdtemp(),
        ...     task="classification", attack=default_attack("classification", max_iters=50),
        ...     ks=[1, 4], recovery_ks=[1])
        >>> res.n_attacked, res.n_successful
        (4, 4)
        >>> res.flip_rate(4).to_dict()  # all of δ flips every successful clip
        {'magnitude': 1.0, 'random': 1.0}
        >>> res.flip_rate(1).to_dict()  # δ's largest segment alone does it here, chance not
        {'magnitude': 1.0, 'random': 0.0}
    """
    task = TASK_ALIASES.get(task, task)
    _check_options(task, target_rule, fraction, batch_size, baselines, explainers)
    seg, ks_, recovery_ks_ = _check_grid(segments, ks, recovery_ks)
    attack = attack if attack is not None else default_attack(task)
    methods = [*baselines, *explainers]
    dev = torch.device(device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = _Run(out, task, seg, ks_, recovery_ks_, fraction, seed, dev, batch_size, model_for,
               set())
    prepare_out(out, _settings(run, attack, baselines, methods, target_rule, min_rise,
                               explainers, config), resume)
    tables = read_results(out)
    t0 = time.perf_counter()
    model = model.to(dev)
    was_training = model.training
    model.eval()
    try:
        adversarial = _attack_all(model, items, attack, run, tables["adversarial"], target_rule,
                                  min_rise, total, progress)
        ok = adversarial[adversarial["success"].astype(bool)]
        frames, clip_order, all_methods = _evaluate_methods(
            model, adversarial, methods, explainers, tables, run, n_maps, progress)
    finally:
        model.train(was_training)
    result = {}
    for key, name, cols in _TABLES:
        result[key] = ordered(pd.DataFrame(frames[key], columns=list(cols)), cols, clip_order,
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


def _settings(run: _Run, attack: AttackLike, baselines: Sequence[str], methods: list[str],
              target_rule: str, min_rise: float | None, explainers: Mapping[str, Explainer],
              config: dict[str, Any] | None) -> dict[str, Any]:
    """The evaluation's ``config.yaml`` (a resumed run must ask for the same)."""
    return {
        "task": run.task, "attack": attack.config(),
        "segments": {"n_segments": n_segments(run.seg), "shape": list(run.seg.shape)},
        "ks": run.ks, "recovery_ks": run.recovery_ks, "baselines": list(baselines),
        "fraction": float(run.fraction), "target_rule": target_rule, "seed": int(run.seed),
        "batch_size": int(run.batch_size), "methods": methods,
        **({} if min_rise is None else {"min_rise": float(min_rise)}),
        "explainers": {n: (e.config() if hasattr(e, "config") else {})
                       for n, e in explainers.items()},
        **(config or {}),
    }


def _check_options(task: str, target_rule: str, fraction: float, batch_size: int,
                   baselines: Sequence[str], explainers: Mapping[str, Explainer]) -> None:
    """The settings of :func:`evaluate_explainers` that need no data (a ``ConfigError`` names
    the one that is wrong)."""
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


def _check_grid(segments: torch.Tensor, ks: Sequence[int] | None,
                recovery_ks: Sequence[int]) -> tuple[torch.Tensor, list[int], list[int]]:
    """The ``(T, F)`` segment map (int64) and the sorted k of both tests, each in ``1..S``."""
    seg = torch.as_tensor(segments)
    if seg.ndim != 2:
        raise ConfigError(f"segments must be a (T, F) map, got shape {tuple(seg.shape)}")
    seg, S = check_segments(seg, tuple(seg.shape), shared=True)
    ks_ = list(range(1, S + 1)) if ks is None else sorted({int(k) for k in ks})
    bad = [k for k in [*ks_, *recovery_ks] if not 1 <= int(k) <= S]
    if bad:
        raise ConfigError(f"k must lie in 1..{S} (the number of segments), got {bad}")
    return seg, ks_, sorted({int(k) for k in recovery_ks})


def _attack_all(model: nn.Module, items: Iterable[dict[str, Any]], attack: AttackLike, run: _Run,
                done_table: pd.DataFrame, target_rule: str, min_rise: float | None,
                total: int | None, progress: bool) -> pd.DataFrame:
    """Attack the clips not yet in ``adversarial.csv`` (rewritten after each batch); returns the
    whole table."""
    adv_rows = done_table.to_dict("records")
    done = {str(r["clip_id"]) for r in adv_rows}
    todo = (it for it in items if str(it["id"]) not in done)
    n_b = None if total is None else -(-max(total - len(done), 0) // run.batch_size)
    for batch in tqdm(batches(todo, run.batch_size), total=n_b, desc="attack",
                      disable=not progress, leave=False):
        adv_rows.extend(attack_batch(model, batch, attack, run.task, target_rule, run.seed,
                                     run.device, run.out, run.batch_size, run.model_for,
                                     min_rise))
        write_csv(run.out / ADVERSARIAL, pd.DataFrame(adv_rows, columns=list(ADV_COLUMNS)))
    adversarial = pd.DataFrame(adv_rows, columns=list(ADV_COLUMNS))
    if not (run.out / ADVERSARIAL).exists():
        write_csv(run.out / ADVERSARIAL, adversarial)
    return adversarial


def _evaluate_methods(model: nn.Module, adversarial: pd.DataFrame, methods: list[str],
                      explainers: Mapping[str, Explainer], tables: dict[str, pd.DataFrame],
                      run: _Run, n_maps: int, progress: bool
                      ) -> tuple[dict[str, Rows], dict[str, int], list[str]]:
    """Evaluate every method on the successful clips it has not been evaluated on (the tables
    rewritten after each batch). Returns the rows of :data:`_TABLES`, the clips' order and
    the methods' order (those of this run, then those only in the stored tables)."""
    ok = adversarial[adversarial["success"].astype(bool)]
    clip_ids = [str(c) for c in ok["clip_id"]]
    clip_order = {c: i for i, c in enumerate(adversarial["clip_id"].astype(str))}
    explained = dict(zip(clip_ids, ok["explained"].astype(int), strict=True))
    frames: dict[str, Rows] = {k: tables[k].to_dict("records") for k, _, _ in _TABLES}
    all_methods = list(dict.fromkeys([*methods, *tables["flips"]["method"].astype(str)]))
    run.map_clips = set(clip_ids[:max(0, int(n_maps))])
    for method in methods:
        have_f = {(str(r["clip_id"]), str(r["method"])) for r in frames["flips"]}
        have_r = {(str(r["clip_id"]), str(r["method"])) for r in frames["recovery"]}
        pending = [c for c in clip_ids if (c, method) not in have_f or
                   (c, method) not in have_r]
        redo = set(pending)  # drop half-written rows of a killed run
        frames = {k: [r for r in v if not (str(r["method"]) == method and
                                            str(r["clip_id"]) in redo)]
                  for k, v in frames.items()}
        for batch_ids in tqdm(list(batches(pending, run.batch_size)), desc=method,
                              disable=not progress, leave=False):
            new = _evaluate_batch(model, batch_ids, method, explainers.get(method), explained,
                                  run)
            for (key, _, _), rows in zip(_TABLES, new, strict=True):
                frames[key].extend(rows)
            for key, name, cols in _TABLES:
                write_csv(run.out / name, ordered(pd.DataFrame(frames[key], columns=list(cols)),
                                                  cols, clip_order, all_methods))
    return frames, clip_order, all_methods


def _evaluate_batch(model: nn.Module, clip_ids: list[str], method: str,
                    explainer: Explainer | None, explained: Mapping[str, int], run: _Run,
                    ) -> tuple[Rows, Rows, Rows]:
    """One batch of successful clips with one method: its flip, recovery and timing rows."""
    arrays = [read_npz(run.out / EXAMPLES / f"{safe_name(c)}.npz") for c in clip_ids]
    contexts = [{k[len(CONTEXT):]: v for k, v in a.items() if k.startswith(CONTEXT)}
                for a in arrays]
    dev = run.device
    model = batch_model(model, run.model_for, contexts, dev)
    x = torch.stack([torch.as_tensor(a["x"]) for a in arrays]).to(dev)
    delta = torch.stack([torch.as_tensor(a["delta"]) for a in arrays]).to(dev)
    y = torch.stack([torch.as_tensor(a["y"]) for a in arrays]).double()
    target = torch.as_tensor([explained[c] for c in clip_ids], dtype=torch.int64)
    judge = Judge(run.task, target, fraction=run.fraction)
    if run.task == "regression":
        judge.y = y
        judge.mse_clean = per_sample_mse(predict(model, x, run.batch_size), y)
        judge.mse_adv = per_sample_mse(predict(model, x + delta, run.batch_size), y)
    S = n_segments(run.seg)
    B = len(clip_ids)
    seg_d = run.seg.to(dev)
    t_rows: Rows = []

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
            ranking = random_ranking(ids, S, run.seed, stage)
        else:
            assert explainer is not None
            scores, attr = explain_segments(explainer, rows_model(model, rows.to(dev), B), xin,
                                            target[rows].to(dev), seg_d, method)
            ranking = rank_segments(scores)
        per_clip = (time.perf_counter() - t) / max(1, len(ids))
        t_rows.extend({"clip_id": c, "method": method, "stage": stage, "seconds": per_clip}
                      for c in ids)
        return ranking, attr

    all_rows = torch.arange(B)
    ranking, attr = rank("adversarial", x + delta, delta, all_rows)
    flipped, effect = flip_curve(model, x, delta, seg_d, ranking, run.ks, judge, run.batch_size)
    f_rows = [{"clip_id": c, "method": method, "k": int(k), "flipped": bool(flipped[i, j]),
               "effect": float(effect[i, j])}
              for i, c in enumerate(clip_ids) for j, k in enumerate(run.ks)]
    for i, c in enumerate(clip_ids):
        if c in run.map_clips:
            add_map(run.out, c, method, ranking[i], attr[i] if attr is not None else None,
                    run.seg)
    # recovery: partial adversaries from the k largest-magnitude segments of δ
    mag_rank = rank_segments(segment_energy(delta, seg_d))
    r_rows: Rows = []
    for k in run.recovery_ks:
        modified = mag_rank[:, :k]
        d_k = keep_segments(delta, seg_d, modified)
        adv, _ = judge(predict(model, x + d_k, run.batch_size), all_rows)
        hits = torch.full((B,), -1, dtype=torch.int64)
        rows = adv.nonzero().squeeze(1)
        if len(rows):
            r_rank, _ = rank(f"recovery_k{k}", (x + d_k)[rows.to(dev)], d_k[rows.to(dev)], rows)
            hits[rows] = recovery_hits(r_rank, modified[rows], k)
        r_rows.extend({"clip_id": c, "method": method, "k": int(k), "partial_flipped": bool(adv[i]),
                       "hits": int(hits[i]) if bool(adv[i]) else None}
                      for i, c in enumerate(clip_ids))
    return f_rows, r_rows, t_rows
