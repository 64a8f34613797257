"""The standard explainer tests on clean inputs, beside the adversarial test of ``evaluation.py``.

For any ``nn.Module`` on 2-D inputs ``x (B, 1, T, F)`` with a segment map ``(T, F)``, per
explainer (:func:`standard_tests`):

- **localisation** against a planted ground truth (items with a ``region (T, F)`` bool, e.g. where
  the voice detection task put the voice): the share of attribution mass inside the region, the
  pixel and segment pointing games, beside their chance levels and a seeded random map
  (``localisation.py``);
- **deletion / insertion** curves and their areas over the fraction of segments removed (or put
  back) in the explainer's order, beside a random order (``deletion.py``);
- **sanity checks** (Adebayo et al. 2018) on the first ``sanity_clips`` items: cascading
  model-parameter randomisation (the top layer first) and, given a model trained on shuffled
  labels, data randomisation; per clip the Spearman rank correlation of the maps before and
  after (``sanity.py``); one clip's maps at every cascade step are kept for the report. The
  reference ``input`` (the map is the input itself: it ignores the model) is checked the same
  way and must fail.

Every explainer explains the item's ``target`` (default: the class the model predicts on the
clean input, or for a regressor the output furthest from its mean over the items). Results go to
``out_dir``: ``localisation.csv``, ``deletion_curves.csv``, ``deletion_auc.csv``,
``sanity_cascade.csv``, ``sanity_data.csv``, ``standard_timings.csv``, ``sanity_maps/<clip>.npz``
and ``standard.yaml`` (settings); every table is rewritten atomically after each method and a
resumed call skips the methods already done (a changed setting is refused). Never imports
train/, data/, study/ or the CLI.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from robustmer.attacks.base import Subsettable
from robustmer.attacks.spec import TASK_ALIASES
from robustmer.errors import ConfigError
from robustmer.explain.base import Explainer
from robustmer.explain.deletion import AUC_COLUMNS, CURVE_COLUMNS, RANDOM, deletion_table
from robustmer.explain.evaluation.metrics import (
    TASKS,
    clip_batches,
    explain_segments,
    predict,
    rank_segments,
    rows_model,
)
from robustmer.explain.localisation import COLUMNS as LOC_COLUMNS
from robustmer.explain.localisation import localisation_table
from robustmer.explain.sanity import (
    CASCADE_COLUMNS,
    INPUT,
    InputExplainer,
    cascading_randomisation,
    map_similarity,
)
from robustmer.explain.sanity import sanity_summary as sanity_summary  # its former home
from robustmer.explain.segments import check_segments
from robustmer.io import (
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

LOCALISATION, DELETION_CURVES, DELETION_AUC = ("localisation.csv", "deletion_curves.csv",
                                               "deletion_auc.csv")
SANITY_CASCADE, SANITY_DATA, STANDARD_TIMINGS = ("sanity_cascade.csv", "sanity_data.csv",
                                                 "standard_timings.csv")
SANITY_MAPS, STANDARD_CONFIG = "sanity_maps", "standard.yaml"
RANDOM_MAP = "random"
"""Localisation of a seeded random map (uniform noise): the empirical chance level."""

LOC_TABLE_COLUMNS: tuple[str, ...] = ("method", *LOC_COLUMNS)
CASCADE_TABLE_COLUMNS: tuple[str, ...] = ("method", *CASCADE_COLUMNS)
DATA_TABLE_COLUMNS: tuple[str, ...] = ("method", "clip", "spearman_abs", "spearman_signed")
TIMING_TABLE_COLUMNS: tuple[str, ...] = ("method", "clips", "seconds_per_clip")


@dataclass
class StandardResult:
    """The tables of :func:`standard_tests` (also on disk)."""

    localisation: pd.DataFrame
    deletion_curves: pd.DataFrame
    deletion_auc: pd.DataFrame
    cascade: pd.DataFrame
    data_randomisation: pd.DataFrame
    timings: pd.DataFrame
    out_dir: Path


def _read(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame(columns=list(columns))
    return pd.read_csv(path, dtype={"clip_id": str, "clip": str, "method": str})


def read_standard(out_dir: str | Path) -> dict[str, pd.DataFrame]:
    """The tables of a folder (empty ones where a file is missing)."""
    out = Path(out_dir)
    return {"localisation": _read(out / LOCALISATION, LOC_TABLE_COLUMNS),
            "deletion_curves": _read(out / DELETION_CURVES, CURVE_COLUMNS),
            "deletion_auc": _read(out / DELETION_AUC, AUC_COLUMNS),
            "cascade": _read(out / SANITY_CASCADE, CASCADE_TABLE_COLUMNS),
            "data_randomisation": _read(out / SANITY_DATA, DATA_TABLE_COLUMNS),
            "timings": _read(out / STANDARD_TIMINGS, TIMING_TABLE_COLUMNS)}


def default_targets(model: nn.Module, x: torch.Tensor, task: str,
                    batch_size: int = 32) -> torch.Tensor:
    """``(B,)`` the output each clip's explanation is for: the predicted class, or (regression)
    the output furthest from its mean over these clips (what the model says most clearly)."""
    out = predict(model, x, batch_size)
    if task == "classification":
        return out.argmax(dim=1)
    return (out - out.mean(dim=0, keepdim=True)).abs().argmax(dim=1)


def _check_config(out: Path, config: dict[str, Any], resume: bool) -> None:
    import yaml

    path = out / STANDARD_CONFIG
    if path.exists():
        if not resume:
            raise ConfigError(f"{path} exists; pass resume=True (--resume) to continue the "
                              f"standard tests there or choose another folder")
        stored = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        a = {k: v for k, v in stored.items() if k not in ("methods", "explainers")}
        b = {k: v for k, v in yaml.safe_load(yaml.safe_dump(config)).items()
             if k not in ("methods", "explainers")}
        if a != b:
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            raise ConfigError(f"{path} holds different settings (differences in {diff}); "
                              f"cannot resume with these: choose another folder")
        config = {**config, "methods": list(dict.fromkeys(
            [*(stored.get("methods") or []), *config["methods"]])),
            "explainers": {**(stored.get("explainers") or {}), **config["explainers"]}}
    write_yaml(path, config)


def _attribution(explainer: Explainer, model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                 seg: torch.Tensor) -> torch.Tensor:
    return torch.cat([explainer(m, x[rows], target[rows], seg).attribution.detach().float().cpu()
                      for rows, m in clip_batches(model, x.shape[0], x.shape[0])])


def _write(out: Path, frames: Mapping[str, list[dict[str, Any]]]) -> None:
    for key, name, cols in (("localisation", LOCALISATION, LOC_TABLE_COLUMNS),
                            ("deletion_curves", DELETION_CURVES, CURVE_COLUMNS),
                            ("deletion_auc", DELETION_AUC, AUC_COLUMNS),
                            ("cascade", SANITY_CASCADE, CASCADE_TABLE_COLUMNS),
                            ("data_randomisation", SANITY_DATA, DATA_TABLE_COLUMNS),
                            ("timings", STANDARD_TIMINGS, TIMING_TABLE_COLUMNS)):
        write_csv(out / name, pd.DataFrame(frames[key], columns=list(cols)))


def standard_tests(
    model: nn.Module,
    items: Sequence[Mapping[str, Any]],
    segments: torch.Tensor,
    explainers: Mapping[str, Explainer],
    out_dir: str | Path,
    *,
    task: str,
    shuffled_model: nn.Module | None = None,
    sanity_clips: int = 8,
    sanity_layers: int | None = None,
    deletion: bool = True,
    fill: str | float = "mean",
    n_random: int = 3,
    min_overlap: float = 0.5,
    seed: int = 0,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    resume: bool = False,
    config: dict[str, Any] | None = None,
    progress: bool = False,
) -> StandardResult:
    """Run the standard tests (module docstring) for every explainer (and the ``input``
    reference in the sanity checks) and return their tables.

    ``items``: dicts ``{"id", "x" (1, T, F), "region" (T, F) bool (optional), "target" (int,
    optional)}``; localisation uses the items with a non-empty region. ``shuffled_model``: the
    same architecture trained on shuffled labels (the data-randomisation test; skipped without
    it). ``sanity_layers``: how many layers the cascade re-initialises (default all).
    ``min_overlap``: a segment is *in* the region (segment pointing game) when at least this
    share of its pixels is (``localisation.segment_pointing_game``).
    """
    task = TASK_ALIASES.get(task, task)
    _check_args(task, explainers, sanity_clips, items)
    dev = torch.device(device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x = torch.stack([torch.as_tensor(it["x"], dtype=torch.float32) for it in items]).to(dev)
    seg, S = check_segments(torch.as_tensor(segments), tuple(x.shape), shared=True)
    ids = [str(it["id"]) for it in items]
    if len(set(ids)) != len(ids):
        raise ConfigError("standard_tests: item ids must be unique")
    model = model.to(dev).eval()
    target = _targets(model, x, items, task, batch_size)
    regions = [it.get("region") for it in items]
    loc_rows = [i for i, r in enumerate(regions) if r is not None and bool(np.asarray(r).any())]
    n_sanity = min(int(sanity_clips), len(items))
    full_config = {
        "task": task, "clips": ids, "targets": target.tolist(),
        "segments": {"n_segments": S, "shape": list(seg.shape)},
        "localisation_clips": len(loc_rows), "sanity_clips": n_sanity,
        "sanity_layers": sanity_layers, "data_randomisation": shuffled_model is not None,
        "deletion": bool(deletion), "fill": fill, "n_random": int(n_random), "seed": int(seed),
        "min_overlap": float(min_overlap),
        "methods": list(explainers),
        "explainers": {n: (e.config() if hasattr(e, "config") else {})
                       for n, e in explainers.items()},
        **(config or {}),
    }
    full_config["clips_hash"] = stable_hash(ids, length=12)
    del full_config["clips"]
    _check_config(out, full_config, resume)
    tables = read_standard(out)
    frames = {k: v.to_dict("records") for k, v in tables.items()}
    done = set(tables["timings"]["method"].astype(str)) if len(tables["timings"]) else set()
    run = _Run(
        out=out, task=task, ids=ids, x=x, target=target, seg=seg, seg_d=seg.to(dev),
        loc_rows=loc_rows, loc_ids=[ids[i] for i in loc_rows], n_sanity=n_sanity,
        region=(torch.as_tensor(np.stack([np.asarray(regions[i], dtype=bool)
                                          for i in loc_rows])) if loc_rows else None),
        deletion=deletion, fill=fill, n_random=n_random, min_overlap=min_overlap, seed=seed,
        batch_size=batch_size, sanity_layers=sanity_layers, shuffled_model=shuffled_model)
    t0 = time.perf_counter()
    if RANDOM_MAP not in done:
        _references(model, run, frames)
    refs: dict[str, Explainer] = {INPUT: InputExplainer()}
    for name, explainer in [*explainers.items(), *refs.items()]:
        if name in done:
            continue
        t = time.perf_counter()
        per_clip = 0.0 if name == INPUT else _clean_tests(model, name, explainer, run, frames)
        if n_sanity:
            _sanity_tests(model, name, explainer, run, frames)
        frames["timings"].append({"method": name, "clips": len(ids),
                                  "seconds_per_clip": per_clip})
        _write(out, frames)
        if progress:
            print(f"standard tests: {name} done ({time.perf_counter() - t:.1f} s)", flush=True)
    _write(out, frames)
    meta_path = out / "standard_meta.json"
    seconds = time.perf_counter() - t0
    if meta_path.exists():
        seconds += float(read_json(meta_path).get("seconds", 0.0))
    write_json(meta_path, run_meta(seconds=seconds, clips=len(ids), device=str(device)))
    tables = read_standard(out)
    return StandardResult(localisation=tables["localisation"],
                          deletion_curves=tables["deletion_curves"],
                          deletion_auc=tables["deletion_auc"], cascade=tables["cascade"],
                          data_randomisation=tables["data_randomisation"],
                          timings=tables["timings"], out_dir=out)


Frames = dict[str, list[dict[str, Any]]]


@dataclass
class _Run:
    """The clips (on the device; ``target`` on the CPU) and settings of one call of
    :func:`standard_tests`."""

    out: Path
    task: str
    ids: list[str]
    x: torch.Tensor
    target: torch.Tensor
    seg: torch.Tensor
    seg_d: torch.Tensor
    loc_rows: list[int]
    loc_ids: list[str]
    n_sanity: int
    region: torch.Tensor | None
    deletion: bool
    fill: str | float
    n_random: int
    min_overlap: float
    seed: int
    batch_size: int
    sanity_layers: int | None
    shuffled_model: nn.Module | None


def _targets(model: nn.Module, x: torch.Tensor, items: Sequence[Mapping[str, Any]], task: str,
             batch_size: int) -> torch.Tensor:
    """``(B,)`` int64: each item's ``target``, or :func:`default_targets` where it has none."""
    given = [it.get("target") for it in items]
    target = default_targets(model, x, task, batch_size)
    return torch.as_tensor([int(t) if g is None else int(g) for g, t in
                            zip(given, target.tolist(), strict=True)], dtype=torch.int64)


def _check_args(task: str, explainers: Mapping[str, Explainer], sanity_clips: int,
                items: Sequence[Mapping[str, Any]]) -> None:
    """The arguments of :func:`standard_tests` that need no data."""
    if task not in TASKS:
        raise ConfigError(f"task must be one of {list(TASKS)}, got {task!r}")
    reserved = {INPUT, RANDOM_MAP, RANDOM} & set(explainers)
    if reserved:
        raise ConfigError(f"explainer name(s) {sorted(reserved)} are reserved for the "
                          f"references")
    if isinstance(sanity_clips, bool) or not isinstance(sanity_clips, int) or sanity_clips < 0:
        raise ConfigError(f"sanity_clips must be an integer >= 0, got {sanity_clips!r}")
    if not items:
        raise ConfigError("standard_tests: no items to explain")


def _references(model: nn.Module, run: _Run, frames: Frames) -> None:
    """The references, once: a random map (localisation) and a random order (deletion)."""
    dev = run.x.device
    if run.region is not None:
        gen = torch.Generator().manual_seed(int(run.seed))
        noise = torch.rand((len(run.loc_rows), *run.seg.shape), generator=gen,
                           dtype=torch.float64)
        loc = localisation_table(noise, run.region, run.loc_ids, segments=run.seg.cpu(),
                                 min_overlap=run.min_overlap)
        frames["localisation"].extend({"method": RANDOM_MAP, **r}
                                      for r in loc.to_dict("records"))
    if run.deletion and run.n_random:
        curves, auc = deletion_table(model, run.x, run.target.to(dev), run.seg_d, {},
                                     clip_ids=run.ids, fill=run.fill, task=run.task,
                                     seed=run.seed, n_random=run.n_random,
                                     batch_size=max(32, run.batch_size))
        frames["deletion_curves"].extend(curves.to_dict("records"))
        frames["deletion_auc"].extend(auc.to_dict("records"))
    frames["timings"].append({"method": RANDOM_MAP, "clips": 0, "seconds_per_clip": 0.0})
    _write(run.out, frames)


def _clean_tests(model: nn.Module, name: str, explainer: Explainer, run: _Run,
                 frames: Frames) -> float:
    """Localisation and deletion of one explainer; returns its seconds per explained clip."""
    dev = run.x.device
    t = time.perf_counter()
    scores, attr = explain_segments(explainer, model, run.x, run.target.to(dev), run.seg_d,
                                    name, run.batch_size)
    scores = scores.double()
    per_clip = (time.perf_counter() - t) / len(run.ids)
    if run.region is not None:
        loc = localisation_table(attr[run.loc_rows], run.region, run.loc_ids,
                                 segments=run.seg.cpu(), segment_scores=scores[run.loc_rows],
                                 min_overlap=run.min_overlap)
        frames["localisation"].extend({"method": name, **r} for r in loc.to_dict("records"))
    if run.deletion:
        curves, auc = deletion_table(
            model, run.x, run.target.to(dev), run.seg_d, {name: rank_segments(scores)},
            clip_ids=run.ids, fill=run.fill, task=run.task, seed=run.seed, n_random=0,
            batch_size=max(32, run.batch_size))
        frames["deletion_curves"].extend(curves.to_dict("records"))
        frames["deletion_auc"].extend(auc.to_dict("records"))
    return per_clip


def _sanity_tests(model: nn.Module, name: str, explainer: Explainer, run: _Run,
                  frames: Frames) -> None:
    """The cascading randomisation (and, with a shuffled-label model, the data randomisation)
    of one explainer on the first ``n_sanity`` clips; keeps the first clip's maps."""
    dev = run.x.device
    n, total = run.n_sanity, run.x.shape[0]
    xs, ts = run.x[:n], run.target[:n].to(dev)
    model = rows_model(model, torch.arange(n), total)
    original = _attribution(explainer, model, xs, ts, run.seg_d)
    maps: dict[str, np.ndarray] = {"step0": original[0].numpy()}
    layers: list[str] = []
    # the layers' order is traced on one clip (on the n clips a per-clip view holds)
    trace = xs if isinstance(model, Subsettable) else xs[:1]
    for step, layer, randomised in cascading_randomisation(
            model, seed=run.seed, n_layers=run.sanity_layers, x=trace):
        after = _attribution(explainer, randomised.to(dev).eval(), xs, ts, run.seg_d)
        sim = map_similarity(original, after)
        frames["cascade"].extend(
            {"method": name, "layer": layer.name, "step": step, "clip": run.ids[i],
             "spearman_abs": float(sim["spearman_abs"][i]),
             "spearman_signed": float(sim["spearman_signed"][i])}
            for i in range(n))
        maps[f"step{step}"] = after[0].numpy()
        layers.append(layer.name)
    maps["layers"] = np.asarray(layers, dtype=str)
    _add_sanity_maps(run.out, run.ids[0], name, maps, xs[0].cpu().numpy(),
                     run.seg.cpu().numpy())
    if run.shuffled_model is not None:
        shuffled = rows_model(run.shuffled_model, torch.arange(n), total).to(dev).eval()
        other = _attribution(explainer, shuffled, xs, ts, run.seg_d)
        sim = map_similarity(original, other)
        frames["data_randomisation"].extend(
            {"method": name, "clip": run.ids[i],
             "spearman_abs": float(sim["spearman_abs"][i]),
             "spearman_signed": float(sim["spearman_signed"][i])}
            for i in range(n))


def _add_sanity_maps(out: Path, clip_id: str, method: str, maps: dict[str, np.ndarray],
                     x: np.ndarray, seg: np.ndarray) -> None:
    """``sanity_maps/<clip>.npz`` gains ``<method>/step<k>`` (the map with the top k layers
    re-initialised; step0 = the trained model) and ``<method>/layers``."""
    path = out / SANITY_MAPS / f"{safe_name(clip_id)}.npz"
    arrays = read_npz(path) if path.exists() else {"x": x, "segments": seg,
                                                    "clip_id": np.asarray(clip_id)}
    for key, value in maps.items():
        arrays[f"{method}/{key}"] = np.asarray(value)
    write_npz(path, **arrays)
