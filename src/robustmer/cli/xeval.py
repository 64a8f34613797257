"""CLI command ``explainer-eval``: test explainers against adversarial ground truth.

Thin: read the options into ``robustmer.study.xeval_settings.ExplainerEvalSettings``, load the
run and its data (``load_run_and_data``), call ``robustmer.study.explainers.run_explainer_eval``
(which a study's ``explainer_eval:`` block calls too) and print its summary.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from robustmer.cli.explain import method_help
from robustmer.errors import ConfigError
from robustmer.study.xeval_settings import CLASSIFIER_ATTACKS, ExplainerEvalSettings

ClassifierAttack = StrEnum(  # type: ignore[misc]
    "ClassifierAttack", [(a.replace("-", "_"), a) for a in CLASSIFIER_ATTACKS])
"""Attack used on classifiers (regressors always get the untargeted regression BIM)."""


def _default(key: str) -> Any:
    """The option's default: the settings' own (one place for both the command and a study)."""
    return ExplainerEvalSettings.__dataclass_fields__[key].default


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
        recovery_k: str = typer.Option(",".join(map(str, _default("recovery_k"))), "--recovery-k",
            help="k of the recovery test"),
        split: str = typer.Option(_default("split"), "--split", help="train, val or test"),
        max_clips: int | None = typer.Option(None, "--max-clips", help="use the first N clips"),
        attack_iters: int | None = typer.Option(None, "--attack-iters", help="attack "
                                                "iterations (default: classifiers 1000, "
                                                "regressors 100)"),
        attack: ClassifierAttack = typer.Option(ClassifierAttack(_default("attack")), "--attack",
                                                help="classifier attack: targeted PGD (the "
                                                "default) or the C&W-style attack"),
        eps: float | None = typer.Option(None, "--eps", help="attack ε (default 10 in the L2 "
                                         "norm; C&W: 0.1)"),
        eta: float | None = typer.Option(None, "--eta", help="attack step (default 0.05; "
                                         "C&W: 5e-4)"),
        norm: str | None = typer.Option(None, "--norm", help="norm of the steps and of ε: l2 "
                                        "(the default: δ goes where the gradient is) or linf "
                                        "(sign steps spread δ over every pixel)"),
        confidence: float = typer.Option(_default("confidence"), "--confidence",
            help="classifiers: stop when "
                 "the target class has this softmax probability (0: "
                 "as soon as it is predicted)"),
        stop: str | None = typer.Option(None, "--stop", help="regressors: the BIM stopping rule "
                                 "(default none: a fixed number of iterations; corr or mse: "
                                 "the study's stepped rules)"),
        min_rise: float = typer.Option(_default("min_rise"), "--min-rise",
            help="regressors: a successful "
                 "attack raises the clip's RMSE against its targets by at "
                 "least this share of the training targets' range"),
        standard: bool = typer.Option(_default("standard"), "--standard/--no-standard",
            help="also run the "
                 "standard tests on clean inputs: localisation (voice "
                 "data), sanity checks, deletion/insertion curves"),
        standard_clips: int = typer.Option(_default("standard_clips"), "--standard-clips",
            help="clean clips of the "
                 "standard tests (balanced over predicted classes)"),
        sanity_clips: int = typer.Option(_default("sanity_clips"), "--sanity-clips",
            help="clips of the sanity "
                 "checks (cascading randomisation; 0: none)"),
        sanity_layers: int | None = typer.Option(None, "--sanity-layers", help="layers the "
                                                 "cascade re-initialises (default: all)"),
        shuffled_run: Path | None = typer.Option(None, "--shuffled-run", help="a run of the "
                                                 "same model trained with --shuffle-labels: "
                                                 "the data-randomisation check"),
        deletion_fill: str = typer.Option(_default("deletion_fill"), "--deletion-fill",
            help="what replaces a "
                 "deleted segment: mean, min or zero"),
        min_overlap: float = typer.Option(_default("min_overlap"), "--min-overlap",
            help="localisation: a segment "
                 "is in the planted region when at least this share "
                 "of its bins is (the voice mask covers about 4 % "
                 "of an excerpt's bins)"),
        excerpt_hop: int = typer.Option(_default("excerpt_hop"), "--excerpt-hop",
            help="voice data: frames between "
                 "the attacked excerpts' starts (50: no two overlap)"),
        per_class: int | None = typer.Option(None, "--per-class", help="classifiers: attack at "
                                             "most N clips per clean predicted class (drawn "
                                             "at random with --seed), so both directions of "
                                             "a decision are evaluated"),
        grid: str = typer.Option(_default("grid"), "--grid",
            help="segments: frequency bands x time blocks "
                 "(a waveform model: log-spaced bands of its STFT)"),
        param: list[str] = typer.Option([], "--param", help="explainer setting, e.g. "
                                        "lime.n_samples=1024 (repeatable)"),
        fraction: float = typer.Option(_default("fraction"), "--fraction",
            help="regressors: share of the MSE "
                 "rise a partial perturbation must reproduce"),
        target_rule: str = typer.Option(_default("target_rule"), "--target-rule",
                                        help="classifier attack target: runner_up or random"),
        maps: int = typer.Option(_default("maps"), "--maps",
            help="clips whose maps are kept for the report"),
        seed: int = typer.Option(_default("seed"), "--seed", help="random baseline and targets"),
        batch_size: int = typer.Option(_default("batch_size"), "--batch-size"),
        device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
        data: Path | None = typer.Option(None, "--data", help="dataset root (default: the run's)"),
        resume: bool = typer.Option(False, "--resume", help="continue the evaluation in --out"),
        overwrite: bool = typer.Option(False, "--overwrite",
                                       help="replace --out even if it holds other results"),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        """Label-flip rate vs k and recovery of localised perturbations, per explainer."""
        from robustmer.cli.common import load_run_and_data
        from robustmer.folders import claim_folder
        from robustmer.study.explainers import run_explainer_eval
        settings = ExplainerEvalSettings.from_dict({
            "methods": methods, "params": param, "k": k, "recovery_k": recovery_k,
            "split": split, "max_clips": max_clips, "attack": str(attack.value), "eps": eps,
            "eta": eta, "norm": norm, "confidence": confidence, "stop": stop,
            "iters": attack_iters, "min_rise": min_rise, "standard": standard,
            "standard_clips": standard_clips, "sanity_clips": sanity_clips,
            "sanity_layers": sanity_layers,
            "shuffled_run": None if shuffled_run is None else str(shuffled_run),
            "deletion_fill": deletion_fill, "min_overlap": min_overlap,
            "excerpt_hop": excerpt_hop, "per_class": per_class, "grid": grid,
            "fraction": fraction, "target_rule": target_rule, "maps": maps, "seed": seed,
            "batch_size": batch_size})
        if resume and overwrite:
            raise ConfigError("--resume and --overwrite contradict each other; give one")
        run, prepared = load_run_and_data(run_dir, data, device, progress=progress and None)
        claim_folder(out, "explainer-eval", overwrite=overwrite)
        outcome = run_explainer_eval(run, prepared, settings, out, run_dir=run_dir,
                                     device=device, resume=resume, progress=progress)
        for line in outcome.lines():
            typer.echo(line)
