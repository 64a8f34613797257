"""Explain one clip of a trained model into a folder: attribution maps (PNG over the
spectrogram, with the segment grid), segment scores (JSON), the raw maps (NPZ), settings and
versions; for A2M2E also the concept contributions (CSV + bar chart).

``data`` is any object with the ``PreparedData`` interface (``.split.part(name)``,
``.dataset(part, mode="fixed")`` whose items hold ``x``; duck-typed, so this module does not
import ``robustmer.data``). Every file is written atomically.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from robustmer.errors import ConfigError
from robustmer.explain import concepts as concept_mod
from robustmer.explain import make_explainer
from robustmer.explain.base import eval_mode
from robustmer.explain.plots import attribution_figure, concept_figure
from robustmer.explain.segments import grid_segments
from robustmer.io import atomic_open, run_meta, write_csv, write_json, write_yaml

PARTS: tuple[str, ...] = ("train", "val", "test")


def find_clip(data: Any, clip_id: str,
              model_input: Mapping[str, Any] | None = None) -> tuple[str, torch.Tensor]:
    """``(split part, x (1, ...))`` of a clip: its fixed (evaluation) excerpt in the model's
    input (``model_input``: its input contract; None: robustmer's spectrogram)."""
    for part in PARTS:
        if clip_id in data.split.part(part):
            ds = data.dataset_for(model_input, part, mode="fixed")
            return part, ds[list(ds.ids).index(clip_id)]["x"][None]
    raise ConfigError(f"--clip {clip_id!r} is in no split of the data (ids look like "
                      f"{list(data.split.part('test'))[:3]})")


def resolve_targets(model: nn.Module, x: torch.Tensor, target: str | None, *,
                    task: str = "regression", names: Sequence[str] | None = None,
                    concepts: Sequence[str] = ()) -> tuple[nn.Module, list[int], list[str]]:
    """The module to explain, the output indices and their names for a target NAME.

    Classification: a class name (default: the predicted class). Regression: an output name
    (default: every output), or for a model with a bottleneck a concept name (explained
    through ``BottleneckOutput``). ``names``: the outputs (the targets or classes the run was
    trained on); ``concepts``: the bottleneck's. Names match case-insensitively.
    """
    from robustmer.models import BottleneckOutput

    with torch.no_grad(), eval_mode(model):
        out = model(x)
    n = out.shape[1]
    names = list(names) if names is not None and len(names) == n else [
        f"output{i}" for i in range(n)]
    lower = [str(v).lower() for v in names]
    if task == "classification":
        if target is None:
            k = int(out[0].argmax())
            return model, [k], [names[k]]
        if target.lower() not in lower:
            raise ConfigError(f"--target {target!r} is not a class of this classifier; "
                              f"choose from {names}")
        k = lower.index(target.lower())
        return model, [k], [names[k]]
    if target is None:
        return model, list(range(n)), names
    if target.lower() in lower:
        k = lower.index(target.lower())
        return model, [k], [names[k]]
    concept_lower = [str(c).lower() for c in concepts]
    if target.lower() in concept_lower:
        if not getattr(model, "has_bottleneck", False):
            raise ConfigError(f"--target {target!r} is a concept, but this model has no "
                              f"bottleneck")
        k = concept_lower.index(target.lower())
        return BottleneckOutput(model), [k], [list(concepts)[k]]  # type: ignore[arg-type]
    raise ConfigError(f"--target {target!r} is neither an output {names}"
                      + (f" nor a concept {list(concepts)}" if concepts else ""))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _save_figure(fig: Any, path: Path) -> None:
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100, metadata={"Software": None})


def explain_clip(model: nn.Module, data: Any, clip_id: str, method: str, out_dir: str | Path,
                 *, target: str | None = None, grid: tuple[int, int] = (4, 5),
                 params: dict[str, Any] | None = None, task: str = "regression",
                 names: Sequence[str] | None = None, concepts: Sequence[str] = (),
                 device: str = "cpu", run_dir: str | None = None) -> dict[str, Any]:
    """Explain ``clip_id`` with ``method`` (``params`` passed to :func:`make_explainer`) for
    ``target`` (see :func:`resolve_targets`: ``task``, output ``names``, ``concepts``) on a
    ``grid`` = (frequency bands, time blocks) segmentation; write the folder and return the
    summary that ``explanation.json`` holds."""
    out = Path(out_dir)
    explainer = make_explainer(method, **(params or {}))
    part, x = find_clip(data, str(clip_id))
    x = x.to(device)
    outputs = names
    module, targets, names = resolve_targets(model, x, target, task=task, names=outputs,
                                             concepts=concepts)
    seg = grid_segments(tuple(x.shape[-2:]), *grid)  # type: ignore[arg-type]
    xb = x.expand(len(targets), *x.shape[1:]).contiguous()
    ex = explainer(module, xb, torch.tensor(targets, dtype=torch.int64), seg.to(device))
    with torch.no_grad(), eval_mode(module):
        values = module(x)[0].detach().cpu()
    assert ex.segment_scores is not None
    order = ex.top_k(ex.segment_scores.shape[1])
    spec = x[0, 0].detach().cpu()
    rows = []
    for j, (k, name) in enumerate(zip(targets, names, strict=True)):
        png = out / f"{_safe(str(clip_id))}_{_safe(explainer.name)}_{_safe(name)}.png"
        fig = attribution_figure(spec, ex.attribution[j, 0], seg, ex.segment_scores[j],
                                 title=f"clip {clip_id}: {explainer.name} for {name} "
                                       f"(output {float(values[k]):.3f})")
        _save_figure(fig, png)
        row: dict[str, Any] = {"target": name, "index": k, "output": float(values[k]),
                               "segment_scores": [float(v) for v in ex.segment_scores[j]],
                               "ranking": order[j].tolist(), "figure": png.name}
        if "r2" in ex.extra:
            row["r2"] = float(ex.extra["r2"][j])
        rows.append(row)
    with atomic_open(out / "attribution.npz", "wb") as fh:
        np.savez_compressed(fh, attribution=ex.attribution.numpy(), input=spec.numpy(),
                            segments=seg.numpy(), targets=np.asarray(targets))
    summary: dict[str, Any] = {
        "clip_id": str(clip_id), "split": part, "method": explainer.name,
        "task": task, "grid": {"n_freq": grid[0], "n_time": grid[1]},
        "segment_ids": "time block i, frequency band j -> i * n_freq + j",
        "explainer": explainer.config(), "targets": rows}
    if concepts and getattr(model, "has_bottleneck", False) and task == "regression":
        table = concept_mod.concept_table(model, x, [str(clip_id)], emotions=outputs,
                                          concepts=concepts)
        write_csv(out / "concepts.csv", table, index=False)
        _save_figure(concept_figure(table, str(clip_id)), out / "concepts.png")
        summary["concepts"] = {"table": "concepts.csv", "figure": "concepts.png"}
    write_json(out / "explanation.json", summary)
    write_yaml(out / "config.yaml", {"run_dir": run_dir, "clip": str(clip_id),
                                     "method": explainer.name, "target": target,
                                     "grid": list(grid), "explainer": explainer.config()})
    write_json(out / "meta.json", run_meta(split_id=getattr(data.split, "split_id", None)))
    return summary
