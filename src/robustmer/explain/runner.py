"""Explain one clip of a trained model into a folder: attribution maps (PNG over the
spectrogram, with the segment grid), segment scores (JSON), the raw maps (NPZ), settings and
versions; for A2M2E also the concept contributions (CSV + bar chart).

``data`` is any object with the ``PreparedData`` interface (``.split.part(name)``,
``.dataset(part, mode="fixed")`` whose items hold ``x``; duck-typed, so this module does not
import ``robustmer.data``). Every file is written atomically.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from robustmer import CONCEPTS, EMOTIONS
from robustmer.errors import ConfigError
from robustmer.explain import concepts as concept_mod
from robustmer.explain import make_explainer
from robustmer.explain.base import eval_mode
from robustmer.explain.plots import attribution_figure, concept_figure
from robustmer.explain.segments import grid_segments
from robustmer.io import atomic_open, run_meta, write_csv, write_json, write_yaml

PARTS: tuple[str, ...] = ("train", "val", "test")


def find_clip(data: Any, clip_id: str) -> tuple[str, torch.Tensor]:
    """``(split part, x (1, 1, T, F))`` of a clip: its fixed (evaluation) excerpt."""
    for part in PARTS:
        if clip_id in data.split.part(part):
            ds = data.dataset(part, mode="fixed")
            return part, ds[list(ds.ids).index(clip_id)]["x"][None]
    raise ConfigError(f"clip {clip_id!r} is in no split of the data (ids look like "
                      f"{list(data.split.part('test'))[:3]})")


def resolve_targets(model: nn.Module, x: torch.Tensor, target: str | None,
                    classes: Sequence[str] | None = None) -> tuple[nn.Module, list[int],
                                                                   list[str]]:
    """The module to explain, the output indices and their names for a target NAME.

    Classifier: a class name (default: the predicted class). Regressor: an emotion name
    (default: every output), or for A2B2E / A2M2E a concept name (explained through
    ``BottleneckOutput``). Names are matched case-insensitively.
    """
    from robustmer.models import BottleneckOutput

    with torch.no_grad(), eval_mode(model):
        out = model(x)
    if getattr(model, "kind", None) == "classifier":
        names = list(classes) if classes else [str(i) for i in range(out.shape[1])]
        if len(names) != out.shape[1]:
            raise ConfigError(f"{len(names)} class names for a classifier with {out.shape[1]} "
                              f"outputs")
        if target is None:
            k = int(out[0].argmax())
            return model, [k], [names[k]]
        lower = [n.lower() for n in names]
        if target.lower() not in lower:
            raise ConfigError(f"--target {target!r} is not a class of this classifier; "
                              f"choose from {names}")
        k = lower.index(target.lower())
        return model, [k], [names[k]]
    emotions = list(EMOTIONS) if out.shape[1] == len(EMOTIONS) else [
        f"output{i}" for i in range(out.shape[1])]
    if target is None:
        return model, list(range(len(emotions))), emotions
    if target.lower() in emotions:
        k = emotions.index(target.lower())
        return model, [k], [emotions[k]]
    if target.lower() in CONCEPTS:
        if not getattr(model, "has_bottleneck", False):
            raise ConfigError(f"--target {target!r} is a concept, but this "
                              f"{getattr(model, 'kind', 'model')} model has no bottleneck")
        k = CONCEPTS.index(target.lower())
        return BottleneckOutput(model), [k], [CONCEPTS[k]]  # type: ignore[arg-type]
    raise ConfigError(f"--target {target!r} is neither an emotion {emotions} nor a concept "
                      f"{list(CONCEPTS)}")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _save_figure(fig: Any, path: Path) -> None:
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100, metadata={"Software": None})


def explain_clip(model: nn.Module, data: Any, clip_id: str, method: str, out_dir: str | Path,
                 *, target: str | None = None, grid: tuple[int, int] = (4, 5),
                 params: dict[str, Any] | None = None, classes: Sequence[str] | None = None,
                 device: str = "cpu", run_dir: str | None = None) -> dict[str, Any]:
    """Explain ``clip_id`` with ``method`` (``params`` passed to :func:`make_explainer`) for
    ``target`` (see :func:`resolve_targets`) on a ``grid`` = (frequency bands, time blocks)
    segmentation; write the folder and return the summary that ``explanation.json`` holds."""
    out = Path(out_dir)
    explainer = make_explainer(method, **(params or {}))
    part, x = find_clip(data, str(clip_id))
    x = x.to(device)
    module, targets, names = resolve_targets(model, x, target, classes)
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
        "model_kind": getattr(model, "kind", None), "grid": {"n_freq": grid[0],
                                                             "n_time": grid[1]},
        "segment_ids": "time block i, frequency band j -> i * n_freq + j",
        "explainer": explainer.config(), "targets": rows}
    if getattr(model, "kind", None) == "a2m2e":
        table = concept_mod.concept_table(model, x, [str(clip_id)])
        write_csv(out / "concepts.csv", table, index=False)
        _save_figure(concept_figure(table, str(clip_id)), out / "concepts.png")
        summary["concepts"] = {"table": "concepts.csv", "figure": "concepts.png"}
    write_json(out / "explanation.json", summary)
    write_yaml(out / "config.yaml", {"run_dir": run_dir, "clip": str(clip_id),
                                     "method": explainer.name, "target": target,
                                     "grid": list(grid), "explainer": explainer.config()})
    write_json(out / "meta.json", run_meta(split_id=getattr(data.split, "split_id", None)))
    return summary
