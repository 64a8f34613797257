"""Run an explainer evaluation of one trained run: what ``robustmer explainer-eval`` and a
study's ``explainer_eval:`` block both call.

:func:`run_explainer_eval` chooses the clips (the first ``max_clips`` of the split, or
``per_class`` per clean predicted class), describes the attack (the task's default with the
settings given), builds the explainers and the segment grid and calls
``robustmer.explain.evaluation.evaluate_explainers``, then (``standard``) the standard tests
``robustmer.explain.standard.standard_tests`` on clean clips. A waveform model is evaluated in
its STFT view (``robustmer.explain.audio``): the items are the clips' STFT magnitudes, the model
an ``STFTView`` holding each batch's phases, the segments log-spaced bands, and the attack
perturbs the magnitudes (kept >= 0); the standard tests run in the same view on the clean
clips. Voice data are evaluated on excerpts every ``excerpt_hop`` frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustmer.data.prepared import PreparedData
from robustmer.errors import ConfigError
from robustmer.explain.evaluation import EvalResult
from robustmer.explain.standard import StandardResult
from robustmer.study.config import StudyConfig
from robustmer.study.layout import DONE, explainer_eval_dir_of, run_dir_of, run_id_of, train_dir_of
from robustmer.study.plan import run_seeds
from robustmer.study.xeval_settings import ExplainerEvalSettings

__all__ = ["ExplainerEvalOutcome", "attack_description", "run_explainer_eval",
           "run_study_explainer_evals", "study_runs", "target_range"]


@dataclass
class ExplainerEvalOutcome:
    """What an evaluation gave: its tables (``result``), the standard tests' (None when not
    run), and what the command prints about them (:meth:`lines`)."""

    result: EvalResult
    standard: StandardResult | None
    task: str
    split: str

    def lines(self) -> list[str]:
        """The summary the command prints: successful attacks, the flip rates at k = 3 (or the
        smallest k), the standard tests' failures and localisation, where the results went."""
        res = self.result
        out = [f"{res.n_successful} of {res.n_attacked} clips of {self.split} gave a successful "
               f"adversarial example ({self.task}); those were evaluated"]
        if res.n_successful:
            from robustmer.explain.evaluation import headline_k

            kk = headline_k(res.flips["k"])
            rates = ", ".join(f"{m} {r:.2f}" for m, r in res.flip_rate(kk).items())
            out.append(f"label-flip rate at k={kk}: {rates}")
        if self.standard is not None:
            from robustmer.explain.standard import sanity_summary

            sres = self.standard
            summ = sanity_summary(sres.cascade, sres.data_randomisation)
            if len(summ):
                failed = [str(r["method"]) for r in summ.to_dict("records")
                          if r.get("cascade_passed") is False or r.get("data_passed") is False]
                n = sres.cascade["clip"].nunique() if len(sres.cascade) else 0
                out.append(f"sanity checks on {n} clips: failed by "
                           f"{', '.join(failed) or 'none'}")
            if len(sres.localisation):
                ms = sres.localisation.groupby("method", sort=False)["mass_share"].mean()
                out.append("localisation (mean mass share in the region): " + ", ".join(
                    f"{m} {v:.2f}" for m, v in ms.items()))
        out.append(f"results: {res.out_dir} (flips.csv, recovery.csv, adversarial.csv, "
                   f"timings.csv, config.yaml, meta.json); `robustmer report {res.out_dir}` "
                   f"draws them")
        return out


def attack_description(task: str, settings: ExplainerEvalSettings) -> dict[str, Any]:
    """The attack description (``robustmer.attacks.spec``): the task's default
    (``evaluation.DEFAULT_ATTACKS``) with the settings given; ``attack: cw`` keeps the C&W
    attack's own defaults (α 15, ε 0.1, η 5e-4, L∞, no audio box)."""
    from robustmer.explain.evaluation import DEFAULT_ATTACKS

    s = settings
    if task == "classification" and s.attack == "cw":
        raw: dict[str, Any] = {"name": "cw", "alpha": 15.0, "eps": 0.1, "eta": 5e-4,
                               "max_iters": 1000, "box": None, "norm": "linf"}
    else:
        raw = dict(DEFAULT_ATTACKS[task])
    if task == "classification":
        raw["confidence"] = s.confidence
        if s.stop is not None:
            raise ConfigError("--stop is the regression attack's stopping rule; a classifier "
                              "attack stops at its target (--confidence)")
    elif s.stop is not None:
        raw["stop"] = s.stop
    for key, value in (("eps", s.eps), ("eta", s.eta), ("norm", s.norm),
                       ("max_iters", s.iters)):
        if value is not None:
            raw[key] = value
    return raw


def target_range(prepared: Any) -> float | None:
    """The range of the training split's targets (max - min over every output), the scale of
    the regression success rule; None when the data has no targets."""
    table = getattr(prepared, "table", None)
    if table is None or not len(table.target_names):
        return None
    values = table.targets.loc[list(prepared.split.train)].to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    return float(finite.max() - finite.min()) if finite.size else None


def _per_class(model: Any, dataset: Any, candidates: list[int], per_class: int, seed: int,
               device: str) -> list[int]:
    """At most ``per_class`` of the ``candidates`` (dataset indices) per clean predicted
    class, drawn in a seeded random order (so they come from all over the split), returned in
    dataset order."""
    import torch

    from robustmer.explain.evaluation import predict

    if per_class < 1:
        raise ConfigError(f"--per-class must be >= 1, got {per_class}")
    order = np.random.default_rng(seed).permutation(len(candidates))
    pred: dict[int, int] = {}
    for start in range(0, len(order), 256):
        rows = [candidates[int(j)] for j in order[start:start + 256]]
        x = torch.stack([torch.as_tensor(dataset[i]["x"]) for i in rows]).to(device)
        with torch.no_grad():
            pred.update(zip(rows, predict(model.to(device).eval(), x).argmax(1).tolist(),
                            strict=True))
    counts: dict[int, int] = {}
    keep = []
    for j in order:
        i = candidates[int(j)]
        c = pred[i]
        if counts.get(c, 0) < per_class:
            counts[c] = counts.get(c, 0) + 1
            keep.append(i)
    return sorted(keep)


def _standard_items(model: Any, dataset: Any, chosen: list[int], n: int, task: str, seed: int,
                    device: str, voice: Any = None) -> list[dict[str, Any]]:
    """The clean clips of the standard tests: at most ``n`` of the evaluated ones, drawn in a
    seeded order with at most ``ceil(n / classes)`` per predicted class (classifiers); each with
    its predicted class as target and, on voice data, the voice's mask as region where the
    detector says voice."""
    import torch

    from robustmer.explain.evaluation import predict

    if n < 1:
        raise ConfigError(f"--standard-clips must be >= 1, got {n}")
    order = [chosen[int(j)] for j in np.random.default_rng([seed, 1]).permutation(len(chosen))]
    picked: list[tuple[int, dict[str, Any], int | None]] = []
    counts: dict[int, int] = {}
    cap = None
    for i in order:
        if len(picked) >= n:
            break
        item = dataset[i]
        target = None
        if task == "classification":
            with torch.no_grad():
                out = predict(model.to(device).eval(), item["x"][None].to(device))
            target = int(out.argmax(1)[0])
            cap = cap or -(-n // int(out.shape[1]))
            if counts.get(target, 0) >= cap:
                continue
            counts[target] = counts.get(target, 0) + 1
        picked.append((i, item, target))
    items = []
    voiced = None
    if voice is not None:
        from robustmer.data.voice import LABELS

        voiced = LABELS.index("voice")
    for _i, item, target in sorted(picked, key=lambda p: p[0]):
        entry: dict[str, Any] = {"id": str(item["id"]), "x": item["x"]}
        if target is not None:
            entry["target"] = target
        if voice is not None and target == voiced:
            entry["region"] = voice.region(str(item["id"]))
        items.append(entry)
    return items


@dataclass
class _Inputs:
    """What the evaluation runs on: the items, their segments, the explainers, the clips
    chosen (dataset indices) and the config's extra entries."""

    dataset: Any
    chosen: list[int]
    items: Any
    segments: Any
    explainers: dict[str, Any]
    model_for: Any
    extra: dict[str, Any]
    grid: tuple[int, int]


def _inputs(run: Any, prepared: Any, s: ExplainerEvalSettings, device: str, waveform: bool,
            voice: bool) -> _Inputs:
    """The clips (the first ``max_clips`` of the split, or ``per_class`` per clean predicted
    class), their items and segments in the model's view, and the explainers for that view."""
    from robustmer.explain import grid_segments, parse_grid

    model_input = run.model_type.input_spec() if run.model_type is not None else None
    ds = (prepared.excerpts(s.split, hop=s.excerpt_hop) if voice
          else prepared.dataset_for(model_input, s.split, mode="fixed"))
    n = len(ds) if s.max_clips is None else min(len(ds), s.max_clips)
    if n < 1:
        raise ConfigError(f"split {s.split!r} has no clips")
    chosen = list(range(n))
    if s.per_class is not None:
        if run.task != "classification" or waveform:
            raise ConfigError("--per-class balances the clean decisions of a spectrogram "
                              "classifier; this run does " + run.task)
        chosen = _per_class(run.model, ds, chosen, s.per_class, s.seed, device)
    n_freq, n_time = parse_grid(s.grid)
    extra: dict[str, Any] = {}
    if waveform:
        assert model_input is not None
        from robustmer.explain.audio import stft_evaluation_inputs

        ev = stft_evaluation_inputs(run.model, ds, n, int(model_input["sample_rate"]),
                                    (n_freq, n_time))
        extra = {"view": "stft", "stft": ev.settings.to_dict(),
                 "band_edges_hz": ev.band_edges_hz, "attack_domain": "stft_magnitude"}
        # each method's defaults for a waveform's views (LIME: silence for a switched-off
        # segment) come from its registration
        return _Inputs(ds, chosen, ev.items, ev.segments, s.explainers(view="stft"),
                       ev.model_for, extra, (n_freq, n_time))
    first = ds[0]["x"]
    segments = grid_segments(tuple(first.shape[-2:]), n_freq=n_freq, n_time=n_time)
    items = ({"id": str(it["id"]), "x": it["x"], "y": it["targets"]}
             for i in chosen for it in (ds[i],))
    if voice:
        extra["voice"] = {"excerpt_hop": s.excerpt_hop, "excerpt_frames": prepared.frames}
    if s.per_class is not None:
        extra["per_class"] = s.per_class
    return _Inputs(ds, chosen, items, segments, s.explainers(), None, extra, (n_freq, n_time))


def run_explainer_eval(run: Any, prepared: Any, settings: ExplainerEvalSettings, out: Path, *,
                       run_dir: Path, device: str = "cpu", resume: bool = False,
                       progress: bool = False) -> ExplainerEvalOutcome:
    """Evaluate the explainers of ``settings`` on ``run`` (a ``train.LoadedRun`` from
    ``run_dir``) with its data ``prepared`` into ``out`` (flips.csv, recovery.csv,
    adversarial.csv, timings.csv, config.yaml, meta.json; the standard tests' tables beside
    them); ``resume`` continues a folder holding part of the same evaluation. The caller claims
    ``out`` (``robustmer.folders.claim_folder``)."""
    from robustmer.attacks import AttackSpec
    from robustmer.explain.evaluation import evaluate_explainers

    s = settings
    task = run.task
    voice = getattr(prepared, "kind", None) == "voice"
    t_range = None if task != "regression" else target_range(prepared)
    raw = attack_description(task, s)
    model_input = run.model_type.input_spec() if run.model_type is not None else None
    waveform = (model_input or {}).get("kind") == "waveform"
    if waveform:  # the attack perturbs STFT magnitudes, which stay >= 0
        raw["box"] = [0.0, math.inf]
    atk: Any = AttackSpec.from_dict(raw, where="--attack", n_outputs=len(run.output_names()),
                                    target_range=t_range).build()
    inp = _inputs(run, prepared, s, device, waveform, voice)
    if task == "regression":
        inp.extra["target_range"] = t_range
    res = evaluate_explainers(
        run.model, inp.items, inp.segments, inp.explainers, out, task=task, attack=atk,
        ks=None if s.k is None else list(s.k), recovery_ks=list(s.recovery_k),
        fraction=s.fraction, target_rule=s.target_rule, batch_size=s.batch_size, device=device,
        resume=resume, seed=s.seed, n_maps=s.maps, progress=progress, total=len(inp.chosen),
        config={"run_dir": str(run_dir), "split": s.split, "split_id": prepared.split.split_id,
                "grid": list(inp.grid), "model": run.model_config, **inp.extra},
        model_for=inp.model_for,
        min_rise=None if t_range is None else s.min_rise * t_range)
    sres = None
    if s.standard:
        sres = _standard(run, prepared, s, inp, out, run_dir=run_dir, device=device,
                         resume=resume, progress=progress, voice=voice,
                         sample_rate=int((model_input or {})["sample_rate"]) if waveform
                         else None)
    return ExplainerEvalOutcome(res, sres, task, s.split)


def _stft_view(items: list[dict[str, Any]], sample_rate: int
               ) -> tuple[list[dict[str, Any]], Callable[[Any], Any]]:
    """A waveform model's clean items in its STFT view (``x``: the magnitudes) and the view of
    a model on them (``STFTView`` holding the items' phases, row i for item i)."""
    import torch

    from robustmer.explain.audio import STFTView, stft_input

    out: list[dict[str, Any]] = []
    phases: list[Any] = []
    kw: dict[str, Any] = {}
    for it in items:
        mag, kw = stft_input(torch.as_tensor(it["x"], dtype=torch.float32)[None], sample_rate)
        out.append({**it, "x": mag[0]})
        phases.append(kw["phase"][0])
    phase = torch.stack(phases)
    return out, lambda model: STFTView(model, phase, kw["settings"], kw["length"])


def _standard(run: Any, prepared: Any, s: ExplainerEvalSettings, inp: _Inputs, out: Path, *,
              run_dir: Path, device: str, resume: bool, progress: bool,
              voice: bool, sample_rate: int | None = None) -> StandardResult:
    """The standard tests on clean clips: localisation (voice data), sanity checks,
    deletion / insertion curves; a waveform model (``sample_rate`` given) in its STFT view,
    the shuffled-label model's too."""
    from robustmer.explain.standard import standard_tests
    from robustmer.train import load_run

    std_items = _standard_items(run.model, inp.dataset, inp.chosen, s.standard_clips, run.task,
                                s.seed, device, prepared if voice else None)
    shuffled = (load_run(s.shuffled_run, device=device).model
                if s.shuffled_run is not None else None)
    model = run.model
    if sample_rate is not None:
        std_items, view = _stft_view(std_items, sample_rate)
        model = view(model)
        shuffled = None if shuffled is None else view(shuffled)
    return standard_tests(
        model, std_items, inp.segments, inp.explainers, out, task=run.task,
        shuffled_model=shuffled, sanity_clips=s.sanity_clips, sanity_layers=s.sanity_layers,
        fill=s.deletion_fill, seed=s.seed, batch_size=s.batch_size, device=device,
        min_overlap=s.min_overlap, resume=resume, progress=progress,
        config={"run_dir": str(run_dir), "split": s.split,
                "shuffled_run": None if s.shuffled_run is None else str(s.shuffled_run),
                "region": "voice mask (clips predicted voice)" if voice else None})


def study_runs(config: StudyConfig, runs: pd.DataFrame) -> list[tuple[str, int]]:
    """The (model type, seed) runs the study's ``explainer_eval:`` block evaluates: its
    ``models`` at its ``seeds`` (default: the first seed each type runs with), among the runs
    that finished (``status`` done)."""
    block = config.explainer_eval
    if block is None:
        return []
    done = {(str(r["model_type"]), int(r["seed"]))
            for r in runs[runs["status"] == "done"].to_dict("records")}
    picked = []
    for m in block.models:
        seeds = run_seeds(config, config.model_type(m))
        for seed in (seeds[:1] if block.seeds is None else block.seeds):
            if (m, seed) in done and seed in seeds:
                picked.append((m, seed))
    return picked


def run_study_explainer_evals(config: StudyConfig, data: PreparedData, out: Path,
                              runs: pd.DataFrame, *, progress: bool = False,
                              log: Callable[[str], None] = print) -> list[Path]:
    """Evaluate the explainers of each run :func:`study_runs` picks into
    ``runs/<run_id>/explainer-eval/`` (:func:`~robustmer.study.layout.explainer_eval_dir_of`).
    Resumable: a folder with its ``DONE`` marker is skipped (its settings must be the block's:
    a changed block is refused, remove the folder to redo it), an interrupted one is resumed.
    Returns the folders evaluated or found done."""
    from robustmer import io
    from robustmer.folders import claim_folder
    from robustmer.train import load_run

    block = config.explainer_eval
    if block is None:
        return []
    asked = block.settings.to_dict()
    folders = []
    for model_type, seed in study_runs(config, runs):
        folder = explainer_eval_dir_of(run_dir_of(out, model_type, seed))
        folders.append(folder)
        done = folder / DONE
        if done.is_file():
            if io.read_json(done) != asked:
                raise ConfigError(f"{folder}: finished with other explainer_eval settings "
                                  f"than the study's; remove the folder to evaluate again")
            continue
        claim_folder(folder, "explainer-eval", option="explainer-eval folder")
        train_dir = train_dir_of(out, model_type, seed)
        run = load_run(train_dir, device=config.train.device)
        outcome = run_explainer_eval(run, data, block.settings, folder, run_dir=train_dir,
                                     device=config.train.device, resume=True,
                                     progress=progress)
        io.write_json(done, asked)
        for line in outcome.lines():
            log(f"explainer-eval {run_id_of(model_type, seed)}: {line}")
    return folders
