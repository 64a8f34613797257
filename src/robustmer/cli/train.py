"""CLI commands of the train stage: ``robustmer train`` and ``robustmer evaluate``.

Thin: parse, wire ``robustmer.data`` (and ``robustmer.attacks`` for --adversarial) into
``robustmer.train``, print where results went.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from robustmer.cli.common import SPLIT_FILE, load_run_and_data, resume_command, set_resume_hint
from robustmer.errors import ConfigError


class ModelKind(StrEnum):
    """Model types the CLI trains (any case): aA2E / aA2B2E are A2E / A2B2E trained with
    ``--adversarial``."""

    a2e = "a2e"
    a2b2e = "a2b2e"
    a2m2e = "a2m2e"
    aa2e = "aa2e"
    aa2b2e = "aa2b2e"
    classifier = "classifier"


MODEL_TYPE_NAMES: dict[str, str] = {"a2e": "A2E", "a2b2e": "A2B2E", "a2m2e": "A2M2E",
                                    "aa2e": "aA2E", "aa2b2e": "aA2B2E",
                                    "classifier": "classifier"}
"""CLI kind -> the study's model-type name (recorded in the run's config.yaml)."""


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
    model: ModelKind = typer.Option(..., "--model", case_sensitive=False,
                                    help="A2E, A2B2E, A2M2E, aA2E / aA2B2E (= --adversarial), "
                                         "or classifier (of the TARGET label)"),
    data: Path = typer.Option(..., "--data", help="dataset root (Set1/ + mean_ratings_set1.csv) "
                              "or a feature pack (`robustmer data features --pack`)"),
    seed: int = typer.Option(0, "--seed", help="fixes init, data order, dropout, windows"),
    out: Path = typer.Option(..., "--out", help="run folder (last/, best/, history)"),
    width: float = typer.Option(1.0, "--width", help="channel multiplier; 1.0 = the paper"),
    dropout: float = typer.Option(0.3, "--dropout", help="Dropout2d probability after the two "
                                  "max-pools; 0.3 = the paper (0 for thin, short CPU runs)"),
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
    adv_eps: float = typer.Option(0.001, "--adv-eps", help="training attack budget ε"),
    adv_eta: float = typer.Option(0.002, "--adv-eta", help="training attack step η"),
    adv_iters: int = typer.Option(50, "--adv-iters", help="training attack iterations per batch"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="tqdm bars"),
) -> None:
    """Train one model with the reference recipe and keep its best checkpoint."""
    from robustmer.data import prepare_data
    from robustmer.folders import claim_folder, folder_lock, refuse_if_locked
    from robustmer.train import TrainConfig, train_run

    kind = model.value.removeprefix("a") if model.value.startswith("aa") else model.value
    adversarial = adversarial or model.value.startswith("aa")
    if adversarial and kind in ("a2m2e", "classifier"):
        raise ConfigError("--adversarial: the study's adversarially trained types are aA2E and "
                          f"aA2B2E; {MODEL_TYPE_NAMES[kind]} is not trained adversarially")
    model_type = MODEL_TYPE_NAMES["a" + kind if adversarial else kind]
    _check_options(**{
        "--width": (width, width > 0, "> 0"), "--dropout": (dropout, 0 <= dropout < 1, "in [0, 1)"),
        "--epochs": (epochs, epochs >= 1, ">= 1"),
        "--patience": (patience, patience >= 1, ">= 1"),
        "--batch-size": (batch_size, batch_size >= 1, ">= 1"), "--lr": (lr, lr > 0, "> 0"),
        "--seed": (seed, seed >= 0, ">= 0"),
        "--adv-every": (adv_every, adv_every >= 1 or not adversarial, ">= 1 with --adversarial"),
        "--adv-iters": (adv_iters, adv_iters >= 1 or not adversarial,
                        ">= 1 with --adversarial"),
        "--device": (device, device == "cpu" or device.startswith("cuda"), "cpu or cuda[:N]")})
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; give one")
    if resume and not (out / "last").is_dir() and not (out / "config.yaml").is_file():
        raise ConfigError(f"--resume: there is no run to resume in {out}; drop --resume to "
                          f"start one there")
    if (out / "last").is_dir() and not (resume or overwrite):
        raise ConfigError(f"--out {out} holds a trained run already; pass --resume to continue "
                          f"it, or --overwrite to replace it")
    attack = None
    if adversarial:  # checked before any feature is computed
        from robustmer.attacks.spec import AttackSpec

        spec = AttackSpec.from_dict({"name": adv_attack, "eps": adv_eps, "eta": adv_eta,
                                     "max_iters": adv_iters}, where="--adv-*")
        if spec.task != "regression":
            raise ConfigError(f"--adv-attack {adv_attack}: attacks a classifier; adversarial "
                              f"training attacks the emotion regressors")
        attack = spec.build()  # its spec is recorded in the run's config.yaml
    config = TrainConfig(seed=seed, lr=lr, batch_size=batch_size, max_epochs=epochs,
                         patience=patience, device=device, amp=amp, channels_last=channels_last,
                         adversarial_every=adv_every if adversarial else 0)
    prepared = prepare_data(data, cache_dir=cache, split_path=split, progress=progress and None)
    description, n_classes = _describe(prepared), None
    if kind == "classifier":
        classes = list(prepared.table.classes)
        if len(classes) < 2:
            raise ConfigError(f"--data {data}: --model classifier needs a class label column "
                              f"(TARGET) with at least 2 classes; found {classes}")
        description["classes"] = classes
        n_classes = len(classes)
    refuse_if_locked(out, "--out")  # --overwrite must not remove a run being trained
    claim_folder(out, "run", overwrite=overwrite)
    set_resume_hint(lambda: _epoch_hint(out))
    with folder_lock(out, "--out"):  # a second `train --resume` is refused
        result = train_run(
            prepared.dataset("train", mode="random", seed=seed),
            prepared.dataset("val", mode="fixed", seed=seed),
            out, kind=kind, width=width, n_classes=n_classes, dropout=dropout, config=config,
            data_description=description, normaliser=prepared.standardizer.to_dict(),
            attack=attack, resume=resume, progress=progress,
            extra_config={"model_type": model_type})
    prepared.split.save(out / SPLIT_FILE)
    by_epoch = {int(r["epoch"]): r for r in result.history}
    best, last = by_epoch.get(result.best_epoch, {}), by_epoch.get(result.last_epoch, {})
    typer.echo(f"trained {model_type} (seed {seed}) to epoch {result.last_epoch}"
               + (" (early stop)" if result.stopped_early else ""))
    for label, rec in (("best epoch", best), ("last epoch", last)):
        typer.echo(f"  {label} {rec.get('epoch', '?')}: " + _val_summary(rec))
    typer.echo(f"run folder: {out} (best/ is the checkpoint later commands use; last/, "
               f"history.csv)")


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

    Targets and predictions are ratings divided by 10 (the 1-9 scale becomes 0.1-0.9)."""
    from robustmer import EMOTIONS, io
    from robustmer.evaluate.metrics import mean_predictor_metrics
    from robustmer.train import evaluate_model

    if split not in ("train", "val", "test"):
        raise ConfigError(f"--split must be train, val or test, found {split!r}")
    if which not in ("best", "last"):
        raise ConfigError(f"--checkpoint must be best or last, found {which!r}")
    loaded, prepared = load_run_and_data(run_dir, data, device, which=which, cache=cache)
    ev = evaluate_model(loaded.model, prepared.dataset(split, mode="fixed", seed=0), device)
    if "logits" in ev:
        _evaluate_classifier(run_dir, which, loaded, prepared, split, ev)
        return
    names = list(EMOTIONS) if ev["predictions"].shape[1] == len(EMOTIONS) else [
        str(i) for i in range(ev["predictions"].shape[1])]
    baseline = mean_predictor_metrics(
        prepared.table.emotions.loc[list(prepared.split.train)].to_numpy(), ev["targets"], names)
    payload = {"run": str(run_dir.resolve()), "checkpoint": which, "epoch": loaded.epoch,
               "split": split, "split_id": prepared.split.split_id, "n_clips": len(ev["ids"]),
               "units": "ratings divided by 10 (the 1-9 scale becomes 0.1-0.9)",
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
                                   f"{len(ev['ids'])} clips; ratings / 10"))
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


def metrics_table(metrics: dict[str, Any], baseline: dict[str, Any] | None,
                  concepts: dict[str, Any] | None = None, title: str = "") -> str:
    """A plain-text table: Pearson r and MAE per output, the model against the mean predictor
    (the training-mean baseline a model must beat; its r is undefined)."""
    lines = [title] if title else []
    lines.append(f"{'output':<22}{'r':>8}{'MAE':>9}{'mean-pred MAE':>15}")
    for name, r in metrics["r"].items():
        base = "" if baseline is None else f"{baseline['mae_per'][name]:>15.4f}"
        lines.append(f"{name:<22}{r:>8.3f}{metrics['mae_per'][name]:>9.4f}{base}")
    base = "" if baseline is None else f"{baseline['mae']:>15.4f}"
    lines.append(f"{'all (mean r, MAE)':<22}{metrics['mean_r']:>8.3f}{metrics['mae']:>9.4f}{base}")
    if concepts is not None:
        lines.append(f"bottleneck vs concepts: mean r {concepts['mean_r']:.3f}, "
                     f"MAE {concepts['mae']:.4f}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
