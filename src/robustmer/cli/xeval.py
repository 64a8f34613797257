"""CLI command ``explainer-eval``: test explainers against adversarial ground truth.

Thin: load the run and its data (``load_run_and_data``), build the explainers
(``robustmer.explain.make_explainer``) and the segment grid, call
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

import typer

from robustmer.errors import ConfigError


class ClassifierAttack(StrEnum):
    """Attack used on classifiers (regressors always get the untargeted regression BIM)."""

    cw = "cw"
    targeted_pgd = "targeted-pgd"


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


def register(app: typer.Typer) -> None:
    """Add ``explainer-eval`` to the main app."""

    @app.command("explainer-eval")
    def explainer_eval_command(
        run_dir: Path = typer.Argument(..., help="trained run folder (holds best/)"),
        out: Path = typer.Option(..., "--out", help="results folder (flips.csv, recovery.csv)"),
        methods: list[str] = typer.Option(
            [], "--methods", help="explainers, e.g. lime,saliency,gbp,ig,smoothgrad (the "
            "magnitude and random baselines are always added)"),
        k: list[str] = typer.Option([], "--k", help="k of the label-flip curve, e.g. 1,3,5 or "
                                    "1-20 (default: every k up to the number of segments)"),
        recovery_k: str = typer.Option("1,3,5", "--recovery-k", help="k of the recovery test"),
        split: str = typer.Option("test", "--split", help="train, val or test"),
        max_clips: int | None = typer.Option(None, "--max-clips", help="use the first N clips"),
        attack_iters: int = typer.Option(1000, "--attack-iters", help="attack iterations"),
        attack: ClassifierAttack = typer.Option(ClassifierAttack.cw, "--attack",
                                                help="classifier attack"),
        eps: float | None = typer.Option(None, "--eps", help="attack ε (default: C&W 0.1, "
                                         "targeted PGD / regression BIM 0.001)"),
        eta: float | None = typer.Option(None, "--eta", help="attack step (default: C&W 5e-4, "
                                         "targeted PGD / regression BIM 0.002)"),
        norm: str = typer.Option("linf", "--norm", help="norm of targeted PGD and the "
                                 "regression BIM: linf or l2 (l2 localises δ)"),
        stop: str | None = typer.Option(None, "--stop", help="regressors: the BIM stopping rule "
                                 "(corr, mse or none; with none, success = the MSE rose; default "
                                 "corr, or mse for a model of fewer than 3 outputs)"),
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
        from robustmer.explain import grid_segments, make_explainer, parse_grid
        from robustmer.explain.evaluation import evaluate_explainers
        from robustmer.folders import claim_folder

        names = list(dict.fromkeys(m.lower() for m in _csv(methods)))
        if not names:
            raise ConfigError("--methods: name at least one explainer to test, e.g. --methods "
                              "saliency,gbp,ig,lime (the magnitude and random baselines are "
                              "added to every evaluation)")
        params = _params(param, names)
        explainers = {m: make_explainer(m, **params[m]) for m in names}
        if resume and overwrite:
            raise ConfigError("--resume and --overwrite contradict each other; give one")
        run, prepared = load_run_and_data(run_dir, data, device, progress=progress and None)
        claim_folder(out, "explainer-eval", overwrite=overwrite)
        task = run.task
        # the attacks come from the one attack description (robustmer.attacks.spec)
        if task == "classification" and attack == ClassifierAttack.cw:
            raw: dict[str, Any] = {"name": "cw", "alpha": 15.0, "eps": 0.1 if eps is None
                                   else eps, "eta": 5e-4 if eta is None else eta,
                                   "max_iters": attack_iters, "box": None}
        elif task == "classification":
            raw = {"name": "targeted_pgd", "eps": 0.001 if eps is None else eps,
                   "eta": 0.002 if eta is None else eta, "max_iters": attack_iters,
                   "norm": norm}
        else:
            raw = {"name": "bim", "eps": 0.001 if eps is None else eps,
                   "eta": 0.002 if eta is None else eta, "max_iters": attack_iters,
                   "norm": norm, **({} if stop is None else {"stop": stop})}
        model_input = run.model_type.input_spec() if run.model_type is not None else None
        waveform = (model_input or {}).get("kind") == "waveform"
        if waveform:  # the attack perturbs STFT magnitudes, which stay >= 0
            raw["box"] = [0.0, math.inf]
        atk: Any = AttackSpec.from_dict(raw, where="--attack",
                                        n_outputs=len(run.output_names())).build()
        ds = prepared.dataset_for(model_input, split, mode="fixed")
        n = len(ds) if max_clips is None else min(len(ds), max_clips)
        if n < 1:
            raise ConfigError(f"split {split!r} has no clips")
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
            explainers = {m: make_explainer(m, **({"fill": "zero", **params[m]}
                                                  if m == "lime" else params[m]))
                          for m in names}
        else:
            first = ds[0]["x"]
            segments = grid_segments(tuple(first.shape[-2:]), n_freq=n_freq, n_time=n_time)
            items = ({"id": str(ds.ids[i]), "x": it["x"], "y": it["targets"]}
                     for i in range(n) for it in (ds[i],))
        rk = [int(v) for v in _csv([recovery_k])]
        res = evaluate_explainers(
            run.model, items, segments, explainers, out, task=task, attack=atk, ks=_ks(k),
            recovery_ks=rk, fraction=fraction, target_rule=target_rule, batch_size=batch_size,
            device=device, resume=resume, seed=seed, n_maps=maps, progress=progress, total=n,
            config={"run_dir": str(run_dir), "split": split, "split_id": prepared.split.split_id,
                    "grid": [n_freq, n_time], "model": run.model_config, **extra},
            model_for=model_for)
        typer.echo(f"{res.n_successful} of {res.n_attacked} clips of {split} gave a successful "
                   f"adversarial example ({task}); those were evaluated")
        if res.n_successful:
            kk = 3 if (res.flips["k"] == 3).any() else int(res.flips["k"].min())
            rates = ", ".join(f"{m} {r:.2f}" for m, r in res.flip_rate(kk).items())
            typer.echo(f"label-flip rate at k={kk}: {rates}")
        typer.echo(f"results: {out} (flips.csv, recovery.csv, adversarial.csv, timings.csv, "
                   f"config.yaml, meta.json); `robustmer report {out}` draws them")
