"""CLI commands of the train stage: ``robustmer train`` and ``robustmer evaluate``.

Thin: parse, wire ``robustmer.data`` (and ``robustmer.attacks`` for --adversarial) into
``robustmer.train``, print where results went.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from robustmer.attacks.base import DEFAULT_EPS, DEFAULT_ETA
from robustmer.cli.common import SPLIT_FILE, load_run_and_data, resume_command, set_resume_hint
from robustmer.errors import ConfigError
from robustmer.models.types import MERType

if TYPE_CHECKING:
    from torch.utils.data import Dataset

MER_DEFAULTS = MERType.DEFAULT_SETTINGS


def _model_help() -> str:
    from robustmer.models.types import names

    return (f"a model type ({', '.join(names())}; any case; aA2E / aA2B2E = A2E / A2B2E with "
            f"--adversarial), or your own: a factory 'my_models.py:build' or "
            f"'package.module:build' (then --task, --input, ... describe it; docs/own-model.md)")


def resolve_model(model: str, *, adversarial: bool, task: str, model_input: str,
                  sample_rate: int | None, seconds: float | None, settings: dict[str, Any],
                  pretrained: bool, name: str | None) -> Any:
    """The model type ``--model`` names: a registered one (with ``--adversarial``, its
    adversarially trained variant), or a user factory described by the other options."""
    from robustmer.models import types as mtypes
    from robustmer.models.factory import FactoryType, resolve_factory

    if ":" in model:
        if adversarial:
            raise ConfigError("--adversarial: adversarial training of a user model is not "
                              "supported yet")
        stem = model.rpartition(":")[0].rpartition("/")[2].removesuffix(".py")
        return FactoryType(name=name or stem, factory=resolve_factory(model, "--model"),
                           task=task, input=model_input, sample_rate=sample_rate,
                           seconds=seconds, trainable=not pretrained, settings=settings)
    mt = mtypes.get_type(model, "--model")
    if adversarial and not mt.adversarial:
        twins = [t for t in mtypes.REGISTRY.values() if t.adversarial
                 and getattr(t, "kind", None) == getattr(mt, "kind", object())]
        if not twins:
            known = [t.name for t in mtypes.REGISTRY.values() if t.adversarial]
            raise ConfigError(f"--adversarial: {mt.name} has no adversarially trained variant "
                              f"(those are {known})")
        mt = twins[0]
    return mt


def _describe(prepared: Any) -> dict[str, Any]:
    desc = prepared.to_dict() if hasattr(prepared, "to_dict") else {}
    desc.setdefault("split_id", prepared.split.split_id)
    return desc


def _check_options(**values: tuple[Any, bool, str]) -> None:
    """Refuse bad option values by their command-line names, before any data is read."""
    for option, (value, ok, expected) in values.items():
        if not ok:
            raise ConfigError(f"{option} must be {expected}, found {value!r}")


def _epoch_hint(out: Path) -> str:
    from robustmer.io import read_json

    state = out / "last" / "state.json"
    if not state.is_file():
        return f"no epoch had finished in {out}; start again with: {resume_command(None)}"
    epoch = int(read_json(state)["epoch"])
    return (f"stopped after epoch {epoch} (saved in {out / 'last'}); resume with: "
            f"{resume_command()}")


def train_command(
    model: str = typer.Option(..., "--model", help=_model_help()),
    data: Path = typer.Option(..., "--data", help="dataset: a manifest (CSV, dataset.yaml, or "
                              "a folder with one), a Soundtracks folder (Set1/ + "
                              "mean_ratings_set1.csv) or a feature pack"),
    seed: int = typer.Option(0, "--seed", help="fixes init, data order, dropout, windows"),
    out: Path = typer.Option(..., "--out", help="run folder (last/, best/, history)"),
    width: float = typer.Option(MER_DEFAULTS["width"], "--width",
                                help="channel multiplier; 1.0 = the paper"),
    dropout: float = typer.Option(MER_DEFAULTS["dropout"], "--dropout", help="Dropout2d "
                                  "probability after the two max-pools; 0.3 = the paper (0 for "
                                  "thin, short CPU runs)"),
    epochs: int = typer.Option(200, "--epochs", help="maximum epochs"),
    patience: int = typer.Option(50, "--patience", help="early-stopping patience (epochs)"),
    batch_size: int = typer.Option(8, "--batch-size"),
    lr: float = typer.Option(5e-4, "--lr", help="Adam learning rate"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
    amp: bool = typer.Option(False, "--amp", help="mixed precision (CUDA: float16 with loss "
                             "scaling); off by default so the paper recipe stays exact"),
    channels_last: bool = typer.Option(False, "--channels-last",
                                       help="channels-last memory format (faster convs on GPU)"),
    cache: Path | None = typer.Option(None, "--cache", help="spectrogram cache folder"),
    split: Path | None = typer.Option(None, "--split", help="split JSON (made if missing)"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out"),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="replace --out even if it holds other results"),
    adversarial: bool = typer.Option(False, "--adversarial", help="adversarial training"),
    adv_every: int = typer.Option(5, "--adv-every", help="adversarial step every n-th epoch"),
    adv_attack: str = typer.Option("bim", "--adv-attack", help="training attack (a name from "
                                   "robustmer.attacks.spec: bim, pgd, reference, ...)"),
    adv_eps: float = typer.Option(DEFAULT_EPS, "--adv-eps", help="training attack budget ε"),
    adv_eta: float = typer.Option(DEFAULT_ETA, "--adv-eta", help="training attack step η"),
    adv_iters: int = typer.Option(50, "--adv-iters", help="training attack iterations per batch"),
    task: str = typer.Option("regression", "--task", help="your model: regression (one output "
                             "per target) or classification (one logit per class)"),
    model_input: str = typer.Option("spectrogram", "--input", help="your model: spectrogram "
                                    "(robustmer's excerpt, (B, 1, 313, 149)) or waveform "
                                    "(mono audio, (B, samples))"),
    sample_rate: int | None = typer.Option(None, "--sample-rate", help="your waveform model's "
                                           "sample rate"),
    seconds: float | None = typer.Option(None, "--seconds", help="your waveform model's "
                                         "excerpt length in seconds"),
    model_set: list[str] = typer.Option([], "--model-set", help="your factory's keyword "
                                        "argument, KEY=VALUE (repeatable)"),
    pretrained: bool = typer.Option(False, "--pretrained", help="your factory loads trained "
                                    "weights: write the run folder without training"),
    name: str | None = typer.Option(None, "--name", help="your model type's name (default: "
                                    "the factory file's stem)"),
    lr_schedule: str = typer.Option("constant", "--lr-schedule", help="constant (the paper) "
                                    "or onecycle (warm up to --lr, then anneal over --epochs)"),
    shuffle_labels: int | None = typer.Option(
        None, "--shuffle-labels", help="a seed: train (and validate) on class labels permuted "
        "at random across the excerpts: the data-randomisation sanity check of explainers "
        "(Adebayo et al. 2018; docs/explainer-eval.md)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="tqdm bars"),
) -> None:
    """Train one model with the reference recipe and keep its best checkpoint (a pretrained
    model: write its run folder without training). A voice dataset (`robustmer data voice`)
    trains a detector on 50-frame excerpts labelled by their central frame."""
    from robustmer.cli.common import parse_settings
    from robustmer.data import prepare_data
    from robustmer.folders import claim_folder, folder_lock, refuse_if_locked
    from robustmer.train import TrainConfig, train_run, write_pretrained

    mtype = resolve_model(model, adversarial=adversarial, task=task, model_input=model_input,
                          sample_rate=sample_rate, seconds=seconds,
                          settings=parse_settings(model_set, "--model-set"),
                          pretrained=pretrained, name=name)
    adversarial = mtype.adversarial
    if isinstance(mtype, MERType):
        if model_set:
            raise ConfigError(f"--model-set: sets a factory's arguments; {mtype.name} takes "
                              f"--width and --dropout")
        settings: dict[str, Any] = {"width": width, "dropout": dropout}
    else:
        settings = {}
    _check_options(**{
        "--width": (width, width > 0, "> 0"), "--dropout": (dropout, 0 <= dropout < 1, "in [0, 1)"),
        "--epochs": (epochs, epochs >= 1, ">= 1"),
        "--patience": (patience, patience >= 1, ">= 1"),
        "--batch-size": (batch_size, batch_size >= 1, ">= 1"), "--lr": (lr, lr > 0, "> 0"),
        "--seed": (seed, seed >= 0, ">= 0"),
        "--adv-every": (adv_every, adv_every >= 1 or not adversarial, ">= 1 with --adversarial"),
        "--adv-iters": (adv_iters, adv_iters >= 1 or not adversarial,
                        ">= 1 with --adversarial"),
        "--device": (device, device == "cpu" or device.startswith("cuda"), "cpu or cuda[:N]"),
        "--lr-schedule": (lr_schedule, lr_schedule in ("constant", "onecycle"),
                          "constant or onecycle"),
        "--shuffle-labels": (shuffle_labels, shuffle_labels is None or (
            shuffle_labels >= 0 and mtype.task == "classification"),
            "a seed >= 0, for a classifier")})
    _check_out(out, resume, overwrite)
    attack = (_training_attack(mtype, adv_attack, adv_eps, adv_eta, adv_iters)
              if adversarial else None)  # checked before any feature is computed
    config = TrainConfig(seed=seed, lr=lr, batch_size=batch_size, max_epochs=epochs,
                         patience=patience, device=device, amp=amp, channels_last=channels_last,
                         adversarial_every=adv_every if adversarial else 0,
                         lr_schedule=lr_schedule)
    prepared = prepare_data(data, cache_dir=cache, split_path=split, progress=progress and None)
    description = _describe(prepared)
    spec_in = mtype.input_spec()
    refuse_if_locked(out, "--out")  # --overwrite must not remove a run being trained
    claim_folder(out, "run", overwrite=overwrite)
    set_resume_hint(lambda: _epoch_hint(out))
    if shuffle_labels is not None:
        description["shuffled_labels"] = int(shuffle_labels)
    common: dict[str, Any] = {"data_description": description,
                              "normaliser": prepared.standardizer.to_dict(),
                              "extra_config": {"model_type": mtype.name}}
    with folder_lock(out, "--out"):  # a second `train --resume` is refused
        if not mtype.trainable:
            write_pretrained(prepared.dataset_for(spec_in, "train"),
                             prepared.dataset_for(spec_in, "val"), out, model_type=mtype,
                             seed=seed, **common)
            prepared.split.save(out / SPLIT_FILE)
            typer.echo(f"wrote the pretrained {mtype.name} as a run folder: {out} (best/)")
            return
        result = train_run(
            *_training_sets(prepared, spec_in, seed, shuffle_labels), out, model_type=mtype,
            model_settings=settings, config=config, attack=attack,
            resume=resume, progress=progress, **common)
    prepared.split.save(out / SPLIT_FILE)
    by_epoch = {int(r["epoch"]): r for r in result.history}
    best, last = by_epoch.get(result.best_epoch, {}), by_epoch.get(result.last_epoch, {})
    typer.echo(f"trained {mtype.name} (seed {seed}) to epoch {result.last_epoch}"
               + (" (early stop)" if result.stopped_early else ""))
    for label, rec in (("best epoch", best), ("last epoch", last)):
        typer.echo(f"  {label} {rec.get('epoch', '?')}: " + _val_summary(rec))
    typer.echo(f"run folder: {out} (best/ is the checkpoint later commands use; last/, "
               f"history.csv)")


def _training_sets(prepared: Any, spec_in: Any, seed: int,
                   shuffle_labels: int | None) -> tuple[Dataset[Any], Dataset[Any]]:
    """The training (random windows) and validation (fixed windows) sets; with
    ``--shuffle-labels`` their class labels permuted (the data-randomisation control)."""
    train_set: Dataset[Any] = prepared.dataset_for(spec_in, "train", mode="random", seed=seed)
    val_set: Dataset[Any] = prepared.dataset_for(spec_in, "val", mode="fixed", seed=seed)
    if shuffle_labels is not None:
        from robustmer.data.torchdata import ShuffledLabels

        train_set = ShuffledLabels(train_set, shuffle_labels)
        val_set = ShuffledLabels(val_set, shuffle_labels + 1)
    return train_set, val_set


def _check_out(out: Path, resume: bool, overwrite: bool) -> None:
    """``--out`` fits ``--resume`` / ``--overwrite``: a run to resume, or none to overwrite."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; give one")
    if resume and not (out / "last").is_dir() and not (out / "config.yaml").is_file():
        raise ConfigError(f"--resume: there is no run to resume in {out}; drop --resume to "
                          f"start one there")
    if (out / "last").is_dir() and not (resume or overwrite):
        raise ConfigError(f"--out {out} holds a trained run already; pass --resume to continue "
                          f"it, or --overwrite to replace it")


def _training_attack(mtype: Any, name: str, eps: float, eta: float, iters: int) -> Any:
    """The attack of ``--adversarial`` (``--adv-*``), validated for the model's task; its spec
    is recorded in the run's config.yaml."""
    from robustmer.attacks.spec import AttackSpec

    spec = AttackSpec.from_dict({"name": name, "eps": eps, "eta": eta, "max_iters": iters},
                                where="--adv-*")
    if spec.task != mtype.task:
        raise ConfigError(f"--adv-attack {name}: attacks {spec.task} models; "
                          f"{mtype.name} does {mtype.task}")
    return spec.build()


def _val_summary(rec: dict[str, Any]) -> str:
    parts = [f"{name} {rec[key]:.4f}" for key, name in (
        ("val_mean_r", "validation mean r"), ("val_mae", "validation MAE"),
        ("val_concept_mean_r", "validation concept mean r"),
        ("val_accuracy", "validation accuracy"), ("val_score", "early-stopping score"))
        if rec.get(key) is not None]
    return ", ".join(parts) if parts else "no validation metrics"


def evaluate_command(
    run_dir: Path = typer.Argument(..., help="a run folder written by `robustmer train`"),
    split: str = typer.Option("test", "--split", help="train, val or test"),
    which: str = typer.Option("best", "--checkpoint", help="best or last"),
    data: Path | None = typer.Option(None, "--data", help="dataset root or feature pack "
                                     "(default: as trained)"),
    cache: Path | None = typer.Option(None, "--cache", help="spectrogram cache folder"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
) -> None:
    """Score a trained run on one split; prints a table and saves ``metrics_<split>.json``.

    Targets and predictions are in the data's units (Soundtracks: ratings divided by 10)."""
    from robustmer import io
    from robustmer.evaluate.metrics import mean_predictor_metrics
    from robustmer.train import evaluate_model

    if split not in ("train", "val", "test"):
        raise ConfigError(f"--split must be train, val or test, found {split!r}")
    if which not in ("best", "last"):
        raise ConfigError(f"--checkpoint must be best or last, found {which!r}")
    loaded, prepared = load_run_and_data(run_dir, data, device, which=which, cache=cache)
    spec_in = loaded.model_type.input_spec() if loaded.model_type else None
    if getattr(prepared, "kind", None) == "voice":
        _evaluate_detector(run_dir, which, loaded, prepared, split, device)
        return
    ev = evaluate_model(loaded.model, prepared.dataset_for(spec_in, split, mode="fixed", seed=0),
                        device, model_type=loaded.model_type)
    if "logits" in ev:
        _evaluate_classifier(run_dir, which, loaded, prepared, split, ev)
        return
    names = list(ev["metrics"]["r"])
    baseline = mean_predictor_metrics(
        prepared.table.targets.loc[list(prepared.split.train)].to_numpy(), ev["targets"], names)
    units = prepared.table.target_info.get("units", "as given")
    payload = {"run": str(run_dir.resolve()), "checkpoint": which, "epoch": loaded.epoch,
               "split": split, "split_id": prepared.split.split_id, "n_clips": len(ev["ids"]),
               "units": units,
               "metrics": ev.get("metrics"), "concept_metrics": ev.get("concept_metrics"),
               "mean_predictor": baseline,
               "clips": {cid: {"target": dict(zip(names, map(float, t), strict=True)),
                               "prediction": dict(zip(names, map(float, p), strict=True))}
                         for cid, t, p in zip(ev["ids"], ev["targets"], ev["predictions"],
                                              strict=True)}}
    target = run_dir / f"metrics_{split}.json"
    io.write_json(target, payload)
    typer.echo(metrics_table(ev["metrics"], baseline, ev.get("concept_metrics"),
                             title=f"{run_dir} ({which}, epoch {loaded.epoch}), {split} split, "
                                   f"{len(ev['ids'])} clips; targets {units}"))
    typer.echo(f"wrote {target}")


def _evaluate_classifier(run_dir: Path, which: str, loaded: Any, prepared: Any, split: str,
                         ev: dict[str, Any]) -> None:
    """The classifier's part of ``evaluate``: accuracy and per-class counts over labelled clips,
    against always predicting the training split's most frequent class."""
    import numpy as np

    from robustmer import io
    from robustmer.evaluate.metrics import classification_metrics

    classes = (loaded.data or {}).get("classes") or list(prepared.table.classes)
    pred = ev["logits"].argmax(1)
    metrics = classification_metrics(ev["labels"], pred, classes)
    train_labels = [prepared.table.labels.get(i) for i in prepared.split.train]
    counts = {c: train_labels.count(c) for c in classes}
    majority = max(counts, key=lambda c: counts[c]) if counts else None
    labelled = ev["labels"][ev["labels"] >= 0]
    base = (float(np.mean(labelled == classes.index(majority)))
            if majority is not None and len(labelled) else float("nan"))
    payload = {"run": str(run_dir.resolve()), "checkpoint": which, "epoch": loaded.epoch,
               "split": split, "split_id": prepared.split.split_id, "n_clips": len(ev["ids"]),
               "classes": classes, "metrics": metrics,
               "majority_class": {"class": majority, "accuracy": base},
               "clips": {cid: {"label": classes[int(y)] if y >= 0 else None,
                               "predicted": classes[int(p)],
                               "logits": dict(zip(classes, map(float, lg), strict=True))}
                         for cid, y, p, lg in zip(ev["ids"], ev["labels"], pred, ev["logits"],
                                                  strict=True)}}
    target = run_dir / f"metrics_{split}.json"
    io.write_json(target, payload)
    lines = [f"{run_dir} ({which}, epoch {loaded.epoch}), {split} split, {metrics['n']} "
             f"labelled clips",
             f"accuracy {metrics['accuracy']:.3f} (always predicting the training split's most "
             f"frequent class, {majority}: {base:.3f})",
             f"{'class':<16}{'clips':>6}{'predicted':>10}{'correct':>9}"]
    for name, c in metrics["per_class"].items():
        lines.append(f"{name:<16}{c['n_true']:>6}{c['n_pred']:>10}{c['n_correct']:>9}")
    typer.echo("\n".join(lines))
    typer.echo(f"wrote {target}")


def _evaluate_detector(run_dir: Path, which: str, loaded: Any, prepared: Any, split: str,
                       device: str) -> None:
    """``evaluate`` of a voice detector: error, recall and specificity over every excerpt of
    the split (one per frame), as the singing-voice detector was reported."""
    from robustmer import io
    from robustmer.data.voicedata import detection_scores
    from robustmer.train import evaluate_model

    ds = prepared.excerpts(split, hop=1)
    ev = evaluate_model(loaded.model, ds, device, batch_size=256,
                        model_type=loaded.model_type)
    scores = detection_scores(ev["logits"].argmax(1), ev["labels"])
    payload = {"run": str(run_dir.resolve()), "checkpoint": which, "epoch": loaded.epoch,
               "split": split, "split_id": prepared.split.split_id,
               "n_clips": len(prepared.split.part(split)), "excerpt_frames": prepared.frames,
               "hop": 1, **scores}
    target = run_dir / f"metrics_{split}.json"
    io.write_json(target, payload)
    typer.echo(f"{run_dir} ({which}, epoch {loaded.epoch}), {split} split: "
               f"{len(prepared.split.part(split))} clips, {scores['n']} excerpts of "
               f"{prepared.frames} frames (one per frame), {scores['voiced_share']:.1%} voiced")
    typer.echo(f"error {scores['error']:.2%} (always 'no voice': "
               f"{scores['voiced_share']:.2%}), recall {scores['recall']:.3f}, "
               f"specificity {scores['specificity']:.3f}")
    typer.echo(f"wrote {target}")


def metrics_table(metrics: dict[str, Any], baseline: dict[str, Any] | None,
                  concepts: dict[str, Any] | None = None, title: str = "") -> str:
    """A plain-text table: Pearson r and MAE per output, the model against the mean predictor
    (the training-mean baseline a model must beat; its r is undefined). An output whose r is
    undefined (a constant target or prediction) is listed as such and left out of the mean r,
    which says over how many outputs it is."""
    lines = [title] if title else []
    lines.append(f"{'output':<22}{'r':>8}{'MAE':>9}{'mean-pred MAE':>15}")
    undefined = [n for n, r in metrics["r"].items() if r != r]
    for name, r in metrics["r"].items():
        base = "" if baseline is None else f"{baseline['mae_per'][name]:>15.4f}"
        shown = f"{r:>8.3f}" if r == r else f"{'undef.':>8}"
        lines.append(f"{name:<22}{shown}{metrics['mae_per'][name]:>9.4f}{base}")
    base = "" if baseline is None else f"{baseline['mae']:>15.4f}"
    n_r = len(metrics["r"]) - len(undefined)
    label = "all (mean r, MAE)" if not undefined else f"all (r of {n_r}, MAE)"
    lines.append(f"{label:<22}{metrics['mean_r']:>8.3f}{metrics['mae']:>9.4f}{base}")
    if undefined:
        lines.append(f"r undefined (constant target or prediction): {', '.join(undefined)}; "
                     f"mean r over the other {n_r}")
    if concepts is not None:
        lines.append(f"bottleneck vs concepts: mean r {concepts['mean_r']:.3f}, "
                     f"MAE {concepts['mae']:.4f}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
