"""CLI command ``explainer-eval``: test explainers against adversarial ground truth.

Thin: load the run and its data (``load_run_and_data``), build the explainers
(``robustmer.explain.registry``) and the segment grid, call
``robustmer.explain.evaluation.evaluate_explainers``, print where the results went. A waveform
model is evaluated in its STFT view (``robustmer.explain.audio``): the items are the clips'
STFT magnitudes, the model an ``STFTView`` holding each batch's phases, the segments
log-spaced bands, and the attack perturbs the magnitudes (kept >= 0).
"""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import typer

from robustmer.cli.explain import method_help
from robustmer.errors import ConfigError
from robustmer.explain import registry


class ClassifierAttack(StrEnum):
    """Attack used on classifiers (regressors always get the untargeted regression BIM)."""

    targeted_pgd = "targeted-pgd"
    cw = "cw"


def _csv(values: list[str]) -> list[str]:
    """``--methods a,b --methods c`` -> ``[a, b, c]``."""
    return [p.strip() for v in values for p in str(v).split(",") if p.strip()]


def _ks(values: list[str]) -> list[int] | None:
    """``--k 1,3,5`` or ``--k 1-20``; empty = every k."""
    out: list[int] = []
    for part in _csv(values):
        try:
            if "-" in part:
                lo, hi = (int(p) for p in part.split("-", 1))
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ConfigError(f"--k: expected integers or ranges like 1-20, got {part!r}") from None
    return out or None


def _params(values: list[str], methods: list[str]) -> dict[str, dict[str, Any]]:
    """``--param lime.n_samples=512`` -> ``{"lime": {"n_samples": 512}}`` (values as YAML)."""
    import yaml

    out: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for item in values:
        key, sep, value = str(item).partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"--param: expected METHOD.NAME=VALUE, got {item!r}")
        if method not in out:
            raise ConfigError(f"--param {item!r}: method {method!r} is not in --methods "
                              f"{methods}")
        try:
            out[method][name] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ConfigError(f"--param {item!r}: cannot read the value ({err})") from None
    return out


def _attack_raw(task: str, attack: ClassifierAttack, *, eps: float | None, eta: float | None,
                norm: str | None, iters: int | None, confidence: float,
                stop: str | None) -> dict[str, Any]:
    """The attack description (``robustmer.attacks.spec``): the task's default
    (``evaluation.DEFAULT_ATTACKS``) with the options given; ``--attack cw`` keeps the C&W
    attack's own defaults (α 15, ε 0.1, η 5e-4, L∞, no audio box)."""
    from robustmer.explain.evaluation import DEFAULT_ATTACKS

    if task == "classification" and attack == ClassifierAttack.cw:
        raw: dict[str, Any] = {"name": "cw", "alpha": 15.0, "eps": 0.1, "eta": 5e-4,
                               "max_iters": 1000, "box": None, "norm": "linf"}
    else:
        raw = dict(DEFAULT_ATTACKS[task])
    if task == "classification":
        raw["confidence"] = confidence
        if stop is not None:
            raise ConfigError("--stop is the regression attack's stopping rule; a classifier "
                              "attack stops at its target (--confidence)")
    elif stop is not None:
        raw["stop"] = stop
    for key, value in (("eps", eps), ("eta", eta), ("norm", norm), ("max_iters", iters)):
        if value is not None:
            raw[key] = value
    return raw


def _target_range(prepared: Any) -> float | None:
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


def register(app: typer.Typer) -> None:
    """Add ``explainer-eval`` to the main app."""

    @app.command("explainer-eval")
    def explainer_eval_command(
        run_dir: Path = typer.Argument(..., help="trained run folder (holds best/)"),
        out: Path = typer.Option(..., "--out", help="results folder (flips.csv, recovery.csv)"),
        methods: list[str] = typer.Option(
            [], "--methods", help=method_help("explainers to test, comma-separated (the "
                                              "magnitude and random baselines are always "
                                              "added)")),
        k: list[str] = typer.Option([], "--k", help="k of the label-flip curve, e.g. 1,3,5 or "
                                    "1-20 (default: every k up to the number of segments)"),
        recovery_k: str = typer.Option("1,3,5", "--recovery-k", help="k of the recovery test"),
        split: str = typer.Option("test", "--split", help="train, val or test"),
        max_clips: int | None = typer.Option(None, "--max-clips", help="use the first N clips"),
        attack_iters: int | None = typer.Option(None, "--attack-iters", help="attack "
                                                "iterations (default: classifiers 1000, "
                                                "regressors 100)"),
        attack: ClassifierAttack = typer.Option(ClassifierAttack.targeted_pgd, "--attack",
                                                help="classifier attack: targeted PGD (the "
                                                "default) or the C&W-style attack"),
        eps: float | None = typer.Option(None, "--eps", help="attack ε (default 10 in the L2 "
                                         "norm; C&W: 0.1)"),
        eta: float | None = typer.Option(None, "--eta", help="attack step (default 0.05; "
                                         "C&W: 5e-4)"),
        norm: str | None = typer.Option(None, "--norm", help="norm of the steps and of ε: l2 "
                                        "(the default: δ goes where the gradient is) or linf "
                                        "(sign steps spread δ over every pixel)"),
        confidence: float = typer.Option(0.99, "--confidence", help="classifiers: stop when "
                                         "the target class has this softmax probability (0: "
                                         "as soon as it is predicted)"),
        stop: str | None = typer.Option(None, "--stop", help="regressors: the BIM stopping rule "
                                 "(default none: a fixed number of iterations; corr or mse: "
                                 "the study's stepped rules)"),
        min_rise: float = typer.Option(0.1, "--min-rise", help="regressors: a successful "
                                       "attack raises the clip's RMSE against its targets by at "
                                       "least this share of the training targets' range"),
        standard: bool = typer.Option(True, "--standard/--no-standard", help="also run the "
                                      "standard tests on clean inputs: localisation (voice "
                                      "data), sanity checks, deletion/insertion curves"),
        standard_clips: int = typer.Option(100, "--standard-clips", help="clean clips of the "
                                           "standard tests (balanced over predicted classes)"),
        sanity_clips: int = typer.Option(8, "--sanity-clips", help="clips of the sanity "
                                         "checks (cascading randomisation; 0: none)"),
        sanity_layers: int | None = typer.Option(None, "--sanity-layers", help="layers the "
                                                 "cascade re-initialises (default: all)"),
        shuffled_run: Path | None = typer.Option(None, "--shuffled-run", help="a run of the "
                                                 "same model trained with --shuffle-labels: "
                                                 "the data-randomisation check"),
        deletion_fill: str = typer.Option("mean", "--deletion-fill", help="what replaces a "
                                          "deleted segment: mean, min or zero"),
        min_overlap: float = typer.Option(0.05, "--min-overlap", help="localisation: a segment "
                                          "is in the planted region when at least this share "
                                          "of its bins is (the voice mask covers about 4 % "
                                          "of an excerpt's bins)"),
        excerpt_hop: int = typer.Option(50, "--excerpt-hop", help="voice data: frames between "
                                        "the attacked excerpts' starts (50: no two overlap)"),
        per_class: int | None = typer.Option(None, "--per-class", help="classifiers: attack at "
                                             "most N clips per clean predicted class (drawn "
                                             "at random with --seed), so both directions of "
                                             "a decision are evaluated"),
        grid: str = typer.Option("4x5", "--grid", help="segments: frequency bands x time blocks "
                                 "(a waveform model: log-spaced bands of its STFT)"),
        param: list[str] = typer.Option([], "--param", help="explainer setting, e.g. "
                                        "lime.n_samples=1024 (repeatable)"),
        fraction: float = typer.Option(0.5, "--fraction", help="regressors: share of the MSE "
                                       "rise a partial perturbation must reproduce"),
        target_rule: str = typer.Option("runner_up", "--target-rule",
                                        help="classifier attack target: runner_up or random"),
        maps: int = typer.Option(3, "--maps", help="clips whose maps are kept for the report"),
        seed: int = typer.Option(0, "--seed", help="random baseline and targets"),
        batch_size: int = typer.Option(8, "--batch-size"),
        device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
        data: Path | None = typer.Option(None, "--data", help="dataset root (default: the run's)"),
        resume: bool = typer.Option(False, "--resume", help="continue the evaluation in --out"),
        overwrite: bool = typer.Option(False, "--overwrite",
                                       help="replace --out even if it holds other results"),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        """Label-flip rate vs k and recovery of localised perturbations, per explainer."""
        from robustmer.attacks import AttackSpec
        from robustmer.cli.attack import load_run_and_data
        from robustmer.explain import grid_segments, parse_grid
        from robustmer.explain.evaluation import evaluate_explainers
        from robustmer.folders import claim_folder

        names = list(dict.fromkeys(m.lower() for m in _csv(methods)))
        if not names:
            raise ConfigError("--methods: name at least one explainer to test, e.g. --methods "
                              "saliency,gbp,ig,lime (the magnitude and random baselines are "
                              "added to every evaluation)")
        params = _params(param, names)
        explainers = {m: registry.make(m, params[m]) for m in names}
        if resume and overwrite:
            raise ConfigError("--resume and --overwrite contradict each other; give one")
        run, prepared = load_run_and_data(run_dir, data, device, progress=progress and None)
        claim_folder(out, "explainer-eval", overwrite=overwrite)
        task = run.task
        voice = getattr(prepared, "kind", None) == "voice"
        target_range = None if task != "regression" else _target_range(prepared)
        raw = _attack_raw(task, attack, eps=eps, eta=eta, norm=norm, iters=attack_iters,
                          confidence=confidence, stop=stop)
        model_input = run.model_type.input_spec() if run.model_type is not None else None
        waveform = (model_input or {}).get("kind") == "waveform"
        if waveform:  # the attack perturbs STFT magnitudes, which stay >= 0
            raw["box"] = [0.0, math.inf]
        atk: Any = AttackSpec.from_dict(raw, where="--attack",
                                        n_outputs=len(run.output_names()),
                                        target_range=target_range).build()
        ds = (prepared.excerpts(split, hop=excerpt_hop) if voice
              else prepared.dataset_for(model_input, split, mode="fixed"))
        n = len(ds) if max_clips is None else min(len(ds), max_clips)
        if n < 1:
            raise ConfigError(f"split {split!r} has no clips")
        chosen = list(range(n))
        if per_class is not None:
            if task != "classification" or waveform:
                raise ConfigError("--per-class balances the clean decisions of a spectrogram "
                                  "classifier; this run does " + task)
            chosen = _per_class(run.model, ds, chosen, per_class, seed, device)
        n_freq, n_time = parse_grid(grid)
        extra: dict[str, Any] = {}
        model_for = None
        if waveform:
            assert model_input is not None
            from robustmer.explain.audio import stft_evaluation_inputs

            ev = stft_evaluation_inputs(run.model, ds, n, int(model_input["sample_rate"]),
                                        (n_freq, n_time))
            items, segments, model_for = ev.items, ev.segments, ev.model_for
            extra = {"view": "stft", "stft": ev.settings.to_dict(),
                     "band_edges_hz": ev.band_edges_hz, "attack_domain": "stft_magnitude"}
            # each method's defaults for a waveform's views (LIME: silence for a switched-off
            # segment) come from its registration
            explainers = {m: registry.make(m, params[m], view="stft") for m in names}
        else:
            first = ds[0]["x"]
            segments = grid_segments(tuple(first.shape[-2:]), n_freq=n_freq, n_time=n_time)
            items = ({"id": str(it["id"]), "x": it["x"], "y": it["targets"]}
                     for i in chosen for it in (ds[i],))
            if voice:
                extra["voice"] = {"excerpt_hop": excerpt_hop, "excerpt_frames": prepared.frames}
            if per_class is not None:
                extra["per_class"] = per_class
        if task == "regression":
            extra["target_range"] = target_range
        rk = [int(v) for v in _csv([recovery_k])]
        res = evaluate_explainers(
            run.model, items, segments, explainers, out, task=task, attack=atk, ks=_ks(k),
            recovery_ks=rk, fraction=fraction, target_rule=target_rule, batch_size=batch_size,
            device=device, resume=resume, seed=seed, n_maps=maps, progress=progress,
            total=len(chosen),
            config={"run_dir": str(run_dir), "split": split, "split_id": prepared.split.split_id,
                    "grid": [n_freq, n_time], "model": run.model_config, **extra},
            model_for=model_for,
            min_rise=None if target_range is None else min_rise * target_range)
        typer.echo(f"{res.n_successful} of {res.n_attacked} clips of {split} gave a successful "
                   f"adversarial example ({task}); those were evaluated")
        if res.n_successful:
            kk = 3 if (res.flips["k"] == 3).any() else int(res.flips["k"].min())
            rates = ", ".join(f"{m} {r:.2f}" for m, r in res.flip_rate(kk).items())
            typer.echo(f"label-flip rate at k={kk}: {rates}")
        if standard and waveform:
            typer.echo("standard tests (localisation, sanity, deletion): not run for a waveform "
                       "model's STFT view yet")
        elif standard:
            from robustmer.explain.standard import sanity_summary, standard_tests
            from robustmer.train import load_run

            std_items = _standard_items(run.model, ds, chosen, standard_clips, task, seed,
                                        device, prepared if voice else None)
            shuffled = (load_run(shuffled_run, device=device).model
                        if shuffled_run is not None else None)
            sres = standard_tests(
                run.model, std_items, segments, explainers, out, task=task,
                shuffled_model=shuffled, sanity_clips=sanity_clips, sanity_layers=sanity_layers,
                fill=deletion_fill, seed=seed, batch_size=batch_size, device=device,
                min_overlap=min_overlap,
                resume=resume, progress=progress,
                config={"run_dir": str(run_dir), "split": split,
                        "shuffled_run": None if shuffled_run is None else str(shuffled_run),
                        "region": "voice mask (clips predicted voice)" if voice else None})
            summ = sanity_summary(sres.cascade, sres.data_randomisation)
            if len(summ):
                failed = [str(r["method"]) for r in summ.to_dict("records")
                          if r.get("cascade_passed") is False or r.get("data_passed") is False]
                typer.echo(f"sanity checks on {sanity_clips} clips: failed by "
                           f"{', '.join(failed) or 'none'}")
            if len(sres.localisation):
                ms = sres.localisation.groupby("method", sort=False)["mass_share"].mean()
                typer.echo("localisation (mean mass share in the region): " + ", ".join(
                    f"{m} {v:.2f}" for m, v in ms.items()))
        typer.echo(f"results: {out} (flips.csv, recovery.csv, adversarial.csv, timings.csv, "
                   f"config.yaml, meta.json); `robustmer report {out}` draws them")
