"""Explain one clip of a trained model into a folder: attribution maps (PNG over the
spectrogram, with the segment grid; for a waveform model over its log-magnitude STFT or along
its samples, explain/audio.py), segment scores (JSON), the raw maps (NPZ), settings and
versions; for A2M2E also the concept contributions (CSV + bar chart).

``data`` is any object with the ``PreparedData`` interface (``.split.part(name)``,
``.dataset_for(model_input, part, mode="fixed")`` whose items hold ``x``; duck-typed, so this
module does not import ``robustmer.data``). Every file is written atomically.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from robustmer.errors import ConfigError
from robustmer.explain import concepts as concept_mod
from robustmer.explain import registry
from robustmer.explain.audio import (
    VIEWS,
    InputView,
    STFTSettings,
    STFTView,
    input_segments,
    stft_input,
    to_input,
)
from robustmer.explain.base import eval_mode
from robustmer.explain.plots import (
    attribution_figure,
    concept_figure,
    stft_attribution_figure,
    wave_attribution_figure,
)
from robustmer.explain.segments import grid_segments, log_band_edges, log_band_segments
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


def resolve_view(model_input: Mapping[str, Any] | None, view: str | None) -> str:
    """Where a model is explained: ``spectrogram`` (robustmer's spectrogram models: the only
    view), or for a waveform model ``stft`` (default) or ``input`` (explain/audio.py)."""
    kind = "spectrogram" if model_input is None else str(model_input.get("kind", "spectrogram"))
    v = None if view is None else str(view).strip().lower()
    if kind == "waveform":
        if v is None:
            return "stft"
        if v not in VIEWS:
            raise ConfigError(f"--view {view!r}: a waveform model is explained in one of "
                              f"{list(VIEWS)}")
        return v
    if v not in (None, "spectrogram"):
        raise ConfigError(f"--view {view!r}: a {kind} model is explained on its spectrogram "
                          f"input; --view stft/input is for waveform models")
    return "spectrogram"


@dataclass
class ClipView:
    """One clip as an explainer sees it: the ``module`` to explain, its input ``x`` ``(1, 1,
    T, F)``, the segment map ``(T, F)``, and for a waveform model the audio, its STFT
    magnitude ``(T, F)`` and the STFT settings (for the figure and ``explanation.json``)."""

    view: str
    module: nn.Module
    x: torch.Tensor
    segments: torch.Tensor
    grid: tuple[int, int]
    wave: torch.Tensor | None = None
    magnitude: torch.Tensor | None = None
    settings: STFTSettings | None = None
    band_edges: list[float] | None = None


def clip_view(model: nn.Module, x: torch.Tensor, view: str, grid: tuple[int, int],
              sample_rate: int | None = None) -> ClipView:
    """The module, input and segments of one clip ``x`` (the model's own input, batch 1) in
    ``view`` (:func:`resolve_view`); ``grid`` = (frequency bands, time blocks); the input view
    has time blocks only."""
    if view == "spectrogram":
        seg = grid_segments(tuple(x.shape[-2:]), *grid)  # type: ignore[arg-type]
        return ClipView(view, model, x, seg, grid)
    if sample_rate is None:
        raise ConfigError("a waveform model's view needs its sample_rate")
    mag, kw = stft_input(x, int(sample_rate))
    settings: STFTSettings = kw["settings"]
    common: dict[str, Any] = {"wave": x[0].detach().cpu(), "magnitude": mag[0, 0].detach().cpu(),
              "settings": settings}
    if view == "stft":
        seg = log_band_segments(tuple(mag.shape[-2:]), *grid,  # type: ignore[arg-type]
                                sample_rate=settings.sample_rate, n_fft=settings.n_fft)
        edges = log_band_edges(grid[0], settings.sample_rate).tolist()
        return ClipView(view, STFTView(model, **kw), mag, seg, grid, band_edges=edges, **common)
    seg = input_segments(x.shape[-1], grid[1])
    return ClipView(view, InputView(model), to_input(x), seg, (1, grid[1]), **common)


def _figure(cv: ClipView, attribution: torch.Tensor, scores: torch.Tensor, title: str) -> Any:
    if cv.view == "spectrogram":
        return attribution_figure(cv.x[0, 0].detach().cpu(), attribution[0], cv.segments,
                                  scores, title=title)
    assert cv.settings is not None and cv.magnitude is not None and cv.wave is not None
    audio: dict[str, Any] = {"sample_rate": cv.settings.sample_rate, "hop": cv.settings.hop,
             "n_fft": cv.settings.n_fft, "title": title}
    if cv.view == "stft":
        return stft_attribution_figure(cv.magnitude, attribution[0], cv.segments, scores,
                                       **audio)
    return wave_attribution_figure(cv.wave, attribution[0], cv.magnitude, cv.segments, scores,
                                   **audio)


def explain_clip(model: nn.Module, data: Any, clip_id: str, method: str, out_dir: str | Path,
                 *, target: str | None = None, grid: tuple[int, int] = (4, 5),
                 params: dict[str, Any] | None = None, task: str = "regression",
                 names: Sequence[str] | None = None, concepts: Sequence[str] = (),
                 device: str = "cpu", run_dir: str | None = None,
                 model_input: Mapping[str, Any] | None = None,
                 view: str | None = None) -> dict[str, Any]:
    """Explain ``clip_id`` with ``method`` (``params`` passed to ``registry.make``) for
    ``target`` (see :func:`resolve_targets`: ``task``, output ``names``, ``concepts``) on a
    ``grid`` = (frequency bands, time blocks) segmentation; write the folder and return the
    summary that ``explanation.json`` holds.

    ``model_input``: the model's input contract (``ModelType.input_spec()``; None:
    robustmer's spectrogram). A waveform model is explained in ``view`` (:func:`resolve_view`):
    ``stft`` (its STFT magnitude, log-spaced bands) or ``input`` (its samples, time blocks);
    there the method's ``view_defaults`` apply (LIME switches segments off to zero, silence,
    unless ``params`` sets ``fill``).
    """
    out = Path(out_dir)
    view = resolve_view(model_input, view)
    explainer = registry.make(method, params, view=view)
    part, x = find_clip(data, str(clip_id), model_input)
    x = x.to(device)
    sample_rate = None if model_input is None else model_input.get("sample_rate")
    cv = clip_view(model, x, view, grid, sample_rate)
    module, targets, target_names = resolve_targets(cv.module, cv.x, target, task=task,
                                                    names=names, concepts=concepts)
    seg = cv.segments
    xb = cv.x.expand(len(targets), *cv.x.shape[1:]).contiguous()
    ex = explainer(module, xb, torch.tensor(targets, dtype=torch.int64), seg.to(device))
    with torch.no_grad(), eval_mode(module):
        values = module(cv.x)[0].detach().cpu()
    assert ex.segment_scores is not None
    order = ex.top_k(ex.segment_scores.shape[1])
    rows = []
    for j, (k, name) in enumerate(zip(targets, target_names, strict=True)):
        png = out / f"{_safe(str(clip_id))}_{_safe(explainer.name)}_{_safe(name)}.png"
        title = (f"clip {clip_id}: {explainer.name} for {name} (output {float(values[k]):.3f})"
                 + ("" if view == "spectrogram" else f", {view} view"))
        _save_figure(_figure(cv, ex.attribution[j], ex.segment_scores[j], title), png)
        row: dict[str, Any] = {"target": name, "index": k, "output": float(values[k]),
                               "segment_scores": [float(v) for v in ex.segment_scores[j]],
                               "ranking": order[j].tolist(), "figure": png.name}
        if "r2" in ex.extra:
            row["r2"] = float(ex.extra["r2"][j])
        rows.append(row)
    arrays: dict[str, Any] = {
        "attribution": ex.attribution.numpy(), "input": cv.x[0, 0].detach().cpu().numpy(),
        "segments": seg.numpy(), "targets": np.asarray(targets)}
    if cv.magnitude is not None:
        arrays["stft_magnitude"] = cv.magnitude.numpy()
    with atomic_open(out / "attribution.npz", "wb") as fh:
        np.savez_compressed(fh, **arrays)
    summary: dict[str, Any] = {
        "clip_id": str(clip_id), "split": part, "method": explainer.name,
        "task": task, "view": view, "grid": {"n_freq": cv.grid[0], "n_time": cv.grid[1]},
        "segment_ids": "time block i, frequency band j -> i * n_freq + j",
        "explainer": explainer.config(), "targets": rows}
    if cv.settings is not None:
        summary["stft"] = cv.settings.to_dict()
        summary["input_shape"] = list(cv.x.shape[1:])
        if cv.band_edges is not None:
            summary["band_edges_hz"] = [round(e, 3) for e in cv.band_edges]
    if concepts and getattr(model, "has_bottleneck", False) and task == "regression":
        table = concept_mod.concept_table(model, x, [str(clip_id)], emotions=names,
                                          concepts=concepts)
        write_csv(out / "concepts.csv", table, index=False)
        _save_figure(concept_figure(table, str(clip_id)), out / "concepts.png")
        summary["concepts"] = {"table": "concepts.csv", "figure": "concepts.png"}
    write_json(out / "explanation.json", summary)
    write_yaml(out / "config.yaml", {"run_dir": run_dir, "clip": str(clip_id),
                                     "method": explainer.name, "target": target,
                                     "grid": list(grid), "view": view,
                                     "explainer": explainer.config()})
    write_json(out / "meta.json", run_meta(split_id=getattr(data.split, "split_id", None)))
    return summary
