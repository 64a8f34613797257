"""CLI commands of the train stage: ``robustmer train`` and ``robustmer evaluate``.

Thin: parse, wire ``robustmer.data`` (and ``robustmer.attacks`` for --adversarial) into
``robustmer.train``, print where results went.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from robustmer.errors import ConfigError

SPLIT_FILE = "split.json"
"""The split a run was trained on, saved in the run folder so ``evaluate`` uses the same one."""


class ModelKind(StrEnum):
    """Model kinds the CLI trains."""

    a2e = "a2e"
    a2b2e = "a2b2e"
    a2m2e = "a2m2e"


def _describe(prepared: Any) -> dict[str, Any]:
    desc = prepared.to_dict() if hasattr(prepared, "to_dict") else {}
    desc.setdefault("split_id", prepared.split.split_id)
    return desc


def train_command(
    model: ModelKind = typer.Option(..., "--model", help="a2e, a2b2e or a2m2e"),
    data: Path = typer.Option(..., "--data", help="dataset root (Set1/ + mean_ratings_set1.csv)"),
    seed: int = typer.Option(0, "--seed", help="fixes init, data order, dropout, windows"),
    out: Path = typer.Option(..., "--out", help="run folder (last/, best/, history)"),
    width: float = typer.Option(1.0, "--width", help="channel multiplier; 1.0 = the paper"),
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
    from robustmer.train import TrainConfig, train_run

    if adversarial and adv_every < 1:
        raise ConfigError(f"--adv-every must be >= 1 with --adversarial, found {adv_every}")
    config = TrainConfig(seed=seed, lr=lr, batch_size=batch_size, max_epochs=epochs,
                         patience=patience, device=device, amp=amp, channels_last=channels_last,
                         adversarial_every=adv_every if adversarial else 0)
    prepared = prepare_data(data, cache_dir=cache, split_path=split)
    attack = None
    if adversarial:
        from robustmer.attacks.spec import AttackSpec

        spec = AttackSpec.from_dict({"name": adv_attack, "eps": adv_eps, "eta": adv_eta,
                                     "max_iters": adv_iters}, where="--adv-*")
        if spec.task != "regression":
            raise ConfigError(f"--adv-attack {adv_attack}: attacks a classifier; adversarial "
                              f"training attacks the emotion regressors")
        attack = spec.build()  # its spec is recorded in the run's config.yaml
    result = train_run(
        prepared.dataset("train", mode="random", seed=seed),
        prepared.dataset("val", mode="fixed", seed=seed),
        out, kind=model.value, width=width, config=config,
        data_description=_describe(prepared), normaliser=prepared.standardizer.to_dict(),
        attack=attack, resume=resume, progress=progress)
    prepared.split.save(out / SPLIT_FILE)
    last = result.history[-1] if result.history else {}
    typer.echo(f"trained {model.value} (seed {seed}) to epoch {result.last_epoch}; best epoch "
               f"{result.best_epoch}, validation score {result.best_score:.4f}"
               + (f", val mean r {last['val_mean_r']:.4f}" if "val_mean_r" in last else ""))
    typer.echo(f"run folder: {out} (best/ and last/ checkpoints, history.csv)")


def evaluate_command(
    run_dir: Path = typer.Argument(..., help="a run folder written by `robustmer train`"),
    split: str = typer.Option("test", "--split", help="train, val or test"),
    which: str = typer.Option("best", "--checkpoint", help="best or last"),
    data: Path | None = typer.Option(None, "--data", help="dataset root (default: as trained)"),
    cache: Path | None = typer.Option(None, "--cache", help="spectrogram cache folder"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
) -> None:
    """Score a trained run on one split; prints and saves ``metrics_<split>.json``."""
    import json

    from robustmer import io
    from robustmer.data import prepare_data
    from robustmer.train import evaluate_model, load_run

    if split not in ("train", "val", "test"):
        raise ConfigError(f"--split must be train, val or test, found {split!r}")
    loaded = load_run(run_dir, which, device=device)
    desc = loaded.data or {}
    root = data or desc.get("root")
    if root is None:
        raise ConfigError(f"{run_dir}/{which}/data.json names no dataset root; pass --data DIR")
    split_path = run_dir / SPLIT_FILE
    prepared = prepare_data(Path(root), cache_dir=cache or desc.get("cache_dir"),
                            split_path=split_path if split_path.is_file() else None,
                            midlevel_root=desc.get("midlevel_root"))
    ev = evaluate_model(loaded.model, prepared.dataset(split, mode="fixed", seed=0), device)
    payload = {"run": str(run_dir), "checkpoint": which, "epoch": loaded.epoch, "split": split,
               "split_id": prepared.split.split_id, "n_clips": len(ev["ids"]),
               "metrics": ev.get("metrics"), "concept_metrics": ev.get("concept_metrics"),
               "clips": {i: [float(v) for v in p]
                         for i, p in zip(ev["ids"], ev["predictions"], strict=True)}}
    target = run_dir / f"metrics_{split}.json"
    io.write_json(target, payload)
    typer.echo(json.dumps({k: payload[k] for k in ("split", "n_clips", "metrics",
                                                   "concept_metrics")}, indent=2))
    typer.echo(f"wrote {target}")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
