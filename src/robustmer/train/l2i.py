"""L2I end to end on a trained run's data: ``fit_l2i`` (dictionary + interpreters),
``evaluate_l2i`` (fidelity and faithfulness tables), ``explain_l2i`` (one clip, listenable).

Lives in train/ because fitting reuses the trainer's checkpointing; ``data`` is duck-typed
(``robustmer.data.PreparedData``), so train/ still does not import data/. Results go to one
folder (``RUN_DIR/l2i`` from the CLI)::

    dictionary/            dictionary.safetensors + dictionary.json (settings, fit time)
    interpreter_att/last/  Θ_ATT interpreter checkpoint (trainer format)
    interpreter_max/last/  Θ_MAX interpreter checkpoint
    fit.json               settings, layers, input contract, times, versions
    fidelity.csv           pooling, metric, output, value
    faithfulness.csv       pooling, tau, n, mean_selected, ff_median, ff_random_median, ...
    faithfulness_clips.csv pooling, clip_id, target, tau, n_selected, ff, ff_random
    evaluate.yaml, evaluate_meta.json
    explain/<clip>_<target>_tau<τ>_<pooling>/  WAVs, figure.png, explanation.json
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from robustmer import io
from robustmer.errors import ConfigError
from robustmer.explain.l2i import (
    POOLINGS,
    TAUS,
    Dictionary,
    FeatureHooks,
    InterpreterConfig,
    check_layers,
    clip_tensors,
    excerpt_waves,
    explain_clip,
    faithfulness,
    faithfulness_summary,
    fidelity_table,
    fit_or_load,
    interpret_batches,
    sample_frames,
)
from robustmer.features import LogFilteredSpectrogram
from robustmer.train.interpreter import load_interpreter, train_interpreter

DICTIONARY_DIR = "dictionary"


def output_names(task: str, data: Any, n_outputs: int) -> list[str]:
    """Names of the model's outputs: the data's targets, or its classes (classification);
    indices where the data names a different number."""
    table = data.table
    names = list(table.classes if task == "classification" else table.target_names)
    prefix = "class_" if task == "classification" else "output_"
    return names if len(names) == n_outputs else [f"{prefix}{i}" for i in range(n_outputs)]


def _spec(input_spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """The input contract as recorded (None = robustmer's spectrogram)."""
    return dict(input_spec) if input_spec is not None else {"kind": "spectrogram"}


def _standardizer(data: Any, input_spec: Mapping[str, Any] | None) -> Any:
    return None if _spec(input_spec)["kind"] == "waveform" else data.standardizer


def _check_fitted_input(out: Path, input_spec: Mapping[str, Any] | None) -> None:
    """Refuse to evaluate or explain with another input contract than ``fit`` recorded."""
    path = out / "fit.json"
    if not path.is_file():
        return
    recorded = io.read_json(path).get("input")
    if recorded is not None and recorded != _spec(input_spec):
        raise ConfigError(f"{path}: the interpreters were fitted for a model with input "
                          f"{recorded}, not {_spec(input_spec)}; pass the run's input_spec "
                          f"(the model type's input_spec())")


def fit_l2i(model: nn.Module, task: str, data: Any, out_dir: str | Path, *, k: int = 100,
            mu: float = 1.0, nmf_iterations: int = 200, frames_per_clip: int = 64,
            seed: int = 0, poolings: tuple[str, ...] = POOLINGS,
            config: InterpreterConfig | None = None, max_clips: int | None = None,
            progress: bool = False, layers: Sequence[str] | None = None,
            input_spec: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Fit (or reuse) the dictionary on ``frames_per_clip`` random frames of every training
    clip, then train (or resume) one interpreter per pooling on the first ``max_clips``
    training clips (all by default). Returns what ``fit.json`` holds.

    ``layers``: the module paths Ψ reads (``model.named_modules()`` names; default the last
    three conv blocks), checked before anything is fitted. ``input_spec``: the model's input
    contract (``ModelType.input_spec()``; None = robustmer's spectrogram); a waveform model gets
    its clips' audio at its own rate (see ``robustmer.explain.l2i.clips``)."""
    config = config or InterpreterConfig(seed=seed)
    bad = [p for p in poolings if p not in POOLINGS]
    if bad:
        raise ConfigError(f"poolings must be in {list(POOLINGS)}, got {bad}")
    out = Path(out_dir)
    fe = LogFilteredSpectrogram()
    hooked = check_layers(model, None if layers is None else list(layers))
    clips = excerpt_waves(data, "train", None, frontend=fe, input_spec=input_spec)
    if not clips.ids:
        raise ConfigError("fit_l2i: the training split has no clips")
    x, X = clip_tensors(clips, fe, _standardizer(data, input_spec), input_spec=input_spec)
    probe_device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.eval()
    with FeatureHooks(model, hooked) as hooks, torch.no_grad():
        model(x[:1].to(probe_device))
        hooks.features  # noqa: B018 (raises ConfigError for a layer Ψ cannot read)
    settings = {"k": int(k), "mu": float(mu), "iterations": int(nmf_iterations),
                "seed": int(seed), "frames_per_clip": int(frames_per_clip),
                "frontend": fe.config.to_dict(), "clips": io.stable_hash(clips.ids),
                "n_clips": len(clips.ids), "input": "log1p(|STFT|), bins 0..1023"}
    if _spec(input_spec)["kind"] == "waveform":  # its own windows, so other frames
        settings["segments"] = {"model_input": _spec(input_spec),
                                "samples": int(clips.waves[0].shape[0])}
    device = torch.device(config.device)
    X_train = sample_frames(X, frames_per_clip, seed).to(device)
    dictionary, reused = fit_or_load(out / DICTIONARY_DIR, X_train, settings)
    times: dict[str, float] = {}
    for pooling in poolings:
        cfg = dataclasses.replace(config, pooling=pooling)
        t0 = time.perf_counter()
        n = len(clips.ids) if max_clips is None else min(max_clips, len(clips.ids))
        train_interpreter(model, task, x[:n], X[:n], dictionary.W, out / f"interpreter_{pooling}",
                          cfg, data_description={"clips": io.stable_hash(clips.ids[:n]),
                                                 "n_clips": n}, layers=hooked)
        times[pooling] = time.perf_counter() - t0
        if progress:
            print(f"interpreter {pooling}: {times[pooling]:.1f} s", flush=True)
    summary = {"dictionary": settings, "dictionary_reused": reused,
               "dictionary_fit_seconds": dictionary.info.get("fit_seconds"),
               "interpreter": config.to_dict(), "poolings": list(poolings),
               "interpreter_clips": len(clips.ids) if max_clips is None
               else min(max_clips, len(clips.ids)),
               "interpreter_seconds_this_call": times, "task": task, "layers": hooked,
               "input": _spec(input_spec),
               "segment_seconds": int(clips.waves[0].shape[0]) / fe.config.sample_rate,
               "frames": int(X.shape[1]),
               "threads": torch.get_num_threads(), **io.run_meta()}
    io.write_json(out / "fit.json", summary)
    return summary


def _available(out: Path, poolings: tuple[str, ...]) -> list[str]:
    have = [p for p in poolings if (out / f"interpreter_{p}" / "last").is_dir()]
    if not have:
        raise ConfigError(f"no trained L2I interpreter in {out}; run `robustmer l2i fit` first")
    return have


def evaluate_l2i(model: nn.Module, task: str, data: Any, out_dir: str | Path, *,
                 split: str = "test", taus: tuple[float, ...] = TAUS,
                 poolings: tuple[str, ...] = POOLINGS, max_clips: int | None = None,
                 seed: int = 0, ff_poolings: tuple[str, ...] | None = None,
                 input_spec: Mapping[str, Any] | None = None
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fidelity (Θ vs the model) and faithfulness (FF vs random removal) on a split for every
    trained pooling (faithfulness only for ``ff_poolings``, default all); writes the tidy
    tables. Returns ``(fidelity, faithfulness summary)``. Ψ reads the layers stored with each
    interpreter; ``input_spec`` is the model's input contract, as for :func:`fit_l2i`."""
    out = Path(out_dir)
    _check_fitted_input(out, input_spec)
    d = Dictionary.load(out / DICTIONARY_DIR)
    fe = LogFilteredSpectrogram()
    clips = excerpt_waves(data, split, max_clips, frontend=fe, input_spec=input_spec)
    if len(clips.ids) < 2:
        raise ConfigError(f"split {split!r} has {len(clips.ids)} clip(s); need at least 2")
    std = _standardizer(data, input_spec)
    x, X = clip_tensors(clips, fe, std, input_spec=input_spec)
    model.eval()
    fid_rows, ff_rows, ff_clip_rows = [], [], []
    layers: dict[str, Any] = {}
    for pooling in _available(out, poolings):
        interp, _ = load_interpreter(out / f"interpreter_{pooling}")
        layers[pooling] = interp.config.get("layers")
        model_out, _, theta_out = interpret_batches(model, interp, x, X.shape[1])
        names = output_names(task, data, model_out.shape[1])
        fid_rows.append(fidelity_table(task, model_out, theta_out, names).assign(pooling=pooling))
        if ff_poolings is not None and pooling not in ff_poolings:
            continue
        per_clip = faithfulness(model, interp, d.W, clips, fe, std, task, taus, seed=seed,
                                input_spec=input_spec)
        per_clip["target_name"] = [names[c] for c in per_clip["target"]]
        ff_clip_rows.append(per_clip.assign(pooling=pooling))
        ff_rows.append(faithfulness_summary(per_clip).assign(pooling=pooling))
    fid = pd.concat(fid_rows, ignore_index=True)[["pooling", "metric", "output", "value"]]
    ff = pd.concat(ff_rows, ignore_index=True)
    ff = ff[["pooling"] + [c for c in ff.columns if c != "pooling"]]
    ffc = pd.concat(ff_clip_rows, ignore_index=True)
    io.write_csv(out / "fidelity.csv", fid, index=False)
    io.write_csv(out / "faithfulness.csv", ff, index=False)
    io.write_csv(out / "faithfulness_clips.csv", ffc, index=False)
    io.write_yaml(out / "evaluate.yaml", {"split": split, "clips": len(clips.ids),
                                          "taus": list(taus), "seed": seed, "task": task,
                                          "dictionary": d.settings,
                                          "input": _spec(input_spec), "layers": layers,
                                          "ff": "f(x)_c - f(x without components)_c; classifier:"
                                                " probability of the predicted class",
                                          "test": "Wilcoxon signed-rank on ff - ff_random"})
    io.write_json(out / "evaluate_meta.json", io.run_meta(split=split))
    return fid, ff


def explain_l2i(model: nn.Module, task: str, data: Any, out_dir: str | Path, clip_id: str,
                target: str, tau: float = 0.5, pooling: str = "att",
                input_spec: Mapping[str, Any] | None = None) -> Path:
    """Listenable interpretation of ``clip_id`` for output ``target`` (an emotion or class
    name; ``pred`` = the classifier's predicted class); returns the folder written.
    ``input_spec``: the model's input contract, as for :func:`fit_l2i`."""
    out = Path(out_dir)
    _check_fitted_input(out, input_spec)
    d = Dictionary.load(out / DICTIONARY_DIR)
    interp, _ = load_interpreter(out / f"interpreter_{_available(out, (pooling,))[0]}")
    fe = LogFilteredSpectrogram()
    part = next((p for p in ("train", "val", "test") if clip_id in data.dataset(p).ids), None)
    if part is None:
        raise ConfigError(f"--clip {clip_id!r} is not a clip of the run's dataset")
    clips = excerpt_waves(data, part, None, frontend=fe, input_spec=input_spec, ids=[clip_id])
    wave = clips.waves[0]
    std = _standardizer(data, input_spec)
    n_out = int(interp.config["n_outputs"])
    names = output_names(task, data, n_out)
    if target == "pred" and task == "classification":
        with torch.no_grad():
            x, _ = clip_tensors(clips, fe, std, input_spec=input_spec)
            c = int(model(x).argmax())
    elif target in names:
        c = names.index(target)
    else:
        raise ConfigError(f"--target {target!r}: expected one of {names}"
                          + (" or 'pred'" if task == "classification" else ""))
    folder = out / "explain" / f"{clip_id}_{names[c].replace(' ', '_')}_tau{tau:g}_{pooling}"
    explain_clip(model, interp, d.W, wave, fe, std, c, tau, folder, task,
                 target_name=names[c], input_spec=input_spec)
    return folder
