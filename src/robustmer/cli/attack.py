"""CLI commands of the attack stage: ``attack``, ``attack-search`` and ``robustness-curve``.

Thin: load the run (``robustmer.train.load_run``) and its data (``robustmer.data.prepare_data``),
call one ``robustmer.attacks`` function, print where results went.
"""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from robustmer.errors import ConfigError

SPLIT_FILE = "split.json"


class Domain(StrEnum):
    """Where the perturbation lives."""

    spectrogram = "spectrogram"
    waveform = "waveform"


class Stop(StrEnum):
    """Stepped stopping rule."""

    corr = "corr"
    mse = "mse"
    none = "none"


class Norm(StrEnum):
    """Norm of the ε-ball."""

    linf = "linf"
    l2 = "l2"


class Update(StrEnum):
    """Update rule (``adam_sign`` = the reference's)."""

    sign = "sign"
    adam_sign = "adam_sign"


class Clip(StrEnum):
    """Projection (``reference_noop`` reproduces the reference's ineffective clip)."""

    project = "project"
    reference_noop = "reference_noop"


def _floats(values: list[str], name: str) -> list[float]:
    """``--eps 0.001 --eps 0.01`` or ``--eps 0.001,0.01``."""
    out = []
    for v in values:
        for part in str(v).split(","):
            if not part.strip():
                continue
            try:
                f = float(part)
            except ValueError:
                raise ConfigError(f"{name}: expected numbers, got {part!r}") from None
            if not (math.isfinite(f) and f >= 0):
                raise ConfigError(f"{name}: expected non-negative finite numbers, got {part!r}")
            out.append(f)
    if not out:
        raise ConfigError(f"{name}: give at least one value")
    return out


def _setting_values(values: list[str]) -> dict[str, Any]:
    """``--set key=value`` pairs; values parsed as YAML scalars (``0.1``, ``true``, ``ce``)."""
    import yaml

    out: dict[str, Any] = {}
    for item in values:
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(val)
    return out


def attack_specs(name: str, eps: list[float] | None, given: dict[str, Any]) -> list[Any]:
    """One validated ``AttackSpec`` per ε (or one with the attack's default ε)."""
    from robustmer.attacks.spec import AttackSpec

    base = {"name": name, **{k: v for k, v in given.items() if v is not None}}
    budgets: list[float | None] = list(eps) if eps else [None]
    specs = []
    for e in budgets:
        spec = AttackSpec.from_dict(base if e is None else {**base, "eps": e}, where="--attack")
        if spec.task != "regression":
            raise ConfigError(f"--attack {name}: attacks a classifier (targets are class "
                              f"indices); `robustmer attack` attacks the emotion regressors")
        specs.append(spec)
    return specs


def load_run_and_data(run_dir: Path, data_root: Path | None, device: str) -> tuple[Any, Any]:
    """The trained run and its data (same root, cache, split and standardiser as training)."""
    from robustmer.data import prepare_data
    from robustmer.train import load_run

    run = load_run(run_dir, device=device)
    desc = run.data or {}
    root = data_root or desc.get("root")
    if root is None:
        raise ConfigError(f"{run_dir}: the run does not record its dataset root; pass --data")
    split_path = run_dir / SPLIT_FILE if (run_dir / SPLIT_FILE).exists() else desc.get(
        "split_path")
    data = prepare_data(root, cache_dir=desc.get("cache_dir"), split_path=split_path)
    norm = run.normaliser or {}
    if norm and not (math.isclose(norm.get("mean", math.nan), data.standardizer.mean,
                                  rel_tol=1e-5, abs_tol=1e-6)
                     and math.isclose(norm.get("std", math.nan), data.standardizer.std,
                                      rel_tol=1e-5, abs_tol=1e-6)):
        raise ConfigError(f"{run_dir}: the run was trained with standardiser {norm}, but the data "
                          f"gives {data.standardizer.to_dict()}; is --data the training dataset?")
    return run, data


def _tensors(data: Any, split: str, max_clips: int | None) -> tuple[Any, Any]:
    import torch

    ds = data.dataset(split, mode="fixed")
    n = len(ds) if max_clips is None else min(len(ds), max_clips)
    if n < 2:
        raise ConfigError(f"split {split!r} has {n} clip(s); need at least 2")
    items = [ds[i] for i in range(n)]
    return (torch.stack([it["x"] for it in items]), torch.stack([it["emotions"] for it in items]))


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""

    @app.command("attack")
    def attack_command(
        run_dir: Path = typer.Argument(..., help="trained run folder (holds best/)"),
        out: Path = typer.Option(..., "--out", help="attack folder (attack.csv, examples/)"),
        split: str = typer.Option("test", "--split", help="train, val or test"),
        domain: Domain = typer.Option(Domain.spectrogram, "--domain"),
        attack_name: str = typer.Option("bim", "--attack", help="attack name (bim, pgd, "
                                        "reference, ...: robustmer.attacks.spec)"),
        eps: list[str] = typer.Option([], "--eps", help="bound on ‖δ‖; several (--eps a --eps "
                                      "b or a,b) write one sub-folder per ε"),
        eta: float | None = typer.Option(None, "--eta", help="step size"),
        iters: int | None = typer.Option(None, "--iters", help="maximum iterations per clip"),
        stop: Stop | None = typer.Option(None, "--stop", help="stepped stopping rule"),
        norm: Norm | None = typer.Option(None, "--norm"),
        mse_limit: float | None = typer.Option(None, "--mse-limit",
                                               help="last threshold of --stop mse"),
        update: Update | None = typer.Option(None, "--update"),
        clip: Clip | None = typer.Option(None, "--clip"),
        random_start: bool | None = typer.Option(None, "--random-start/--no-random-start",
                                                 help="PGD random start"),
        seed: int | None = typer.Option(None, "--seed", help="seed of the random start"),
        settings: list[str] = typer.Option([], "--set", help="any other setting of the "
                                           "attack, KEY=VALUE (repeatable)"),
        batch_size: int = typer.Option(8, "--batch-size"),
        device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
        data: Path | None = typer.Option(None, "--data", help="dataset root (default: the run's)"),
        resume: bool = typer.Option(False, "--resume", help="skip clips already in --out"),
        examples: bool = typer.Option(True, "--examples/--no-examples",
                                      help="write npz (and WAV) adversarial examples"),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        """Attack every clip of a split and write one row per clip to OUT/attack.csv (with
        several --eps: OUT/<setting-id>/attack.csv, one folder per ε)."""
        from robustmer.attacks.runner import attack_dataset
        from robustmer.attacks.spec import setting_id

        given = {"eta": eta, "max_iters": iters, "stop": stop, "norm": norm,
                 "mse_limit": mse_limit, "update": update, "clip": clip,
                 "random_start": random_start, "seed": seed}
        given = {k: (v.value if isinstance(v, StrEnum) else v) for k, v in given.items()}
        given.update(_setting_values(settings))
        specs = attack_specs(attack_name, _floats(eps, "--eps") if eps else None, given)
        run, prepared = load_run_and_data(run_dir, data, device)
        for spec in specs:
            folder = out if len(specs) == 1 else out / setting_id(spec, domain.value)
            table = attack_dataset(run.model, prepared, split, spec, folder,
                                   domain=domain.value, batch_size=batch_size, device=device,
                                   resume=resume, progress=progress, write_examples=examples)
            typer.echo(f"{setting_id(spec, domain.value)}: attacked {len(table)} clips of "
                       f"{split}: MAE {table['mae_clean'].mean():.4f} -> "
                       f"{table['mae_adv'].mean():.4f}, {table['converged'].mean():.0%} "
                       f"converged, mean {table['iterations'].mean():.0f} iterations")
            typer.echo(f"results: {folder / 'attack.csv'} (+ config.yaml, meta.json, "
                       f"examples/)")

    @app.command("attack-search")
    def attack_search_command(
        run_dir: Path = typer.Argument(..., help="trained run folder (holds best/)"),
        out: Path = typer.Option(..., "--out", help="folder for search.csv"),
        eps: list[str] = typer.Option(["0.0001,0.001,0.01"], "--eps", help="values or a,b,c"),
        eta: list[str] = typer.Option(["0.002"], "--eta", help="values or a,b,c"),
        iters: list[str] = typer.Option(["1000"], "--iters", help="values or a,b,c"),
        split: str = typer.Option("val", "--split"),
        stop: Stop = typer.Option(Stop.corr, "--stop"),
        norm: Norm = typer.Option(Norm.linf, "--norm"),
        max_clips: int | None = typer.Option(None, "--max-clips", help="use the first N clips"),
        batch_size: int = typer.Option(8, "--batch-size"),
        device: str = typer.Option("cpu", "--device"),
        data: Path | None = typer.Option(None, "--data", help="dataset root (default: the run's)"),
    ) -> None:
        """Grid-search (ε, η, iterations) on a split; pick by max ΔMAE − attacked mean r."""
        from robustmer.attacks.search import grid_search
        from robustmer.io import run_meta, write_csv, write_json, write_yaml

        e, h = _floats(eps, "--eps"), _floats(eta, "--eta")
        n = [int(v) for v in _floats(iters, "--iters")]
        run, prepared = load_run_and_data(run_dir, data, device)
        x, y = _tensors(prepared, split, max_clips)
        table = grid_search(run.model, x.to(device), y.to(device), e, h, n,
                            batch_size=batch_size, stop=stop.value, norm=norm.value)
        write_csv(out / "search.csv", table)
        write_yaml(out / "config.yaml", {"run_dir": str(run_dir), "split": split, "eps": e,
                                         "eta": h, "iters": n, "stop": stop.value,
                                         "norm": norm.value, "clips": len(x),
                                         "rule": "max delta_mae - mean_r_adv"})
        write_json(out / "meta.json", run_meta(split_id=prepared.split.split_id))
        best = table[table["chosen"]].iloc[0]
        typer.echo(f"chosen: eps={best['eps']:g} eta={best['eta']:g} iters={int(best['iters'])}"
                   f" (ΔMAE {best['delta_mae']:+.4f}, attacked mean r {best['mean_r_adv']:.3f})")
        typer.echo(f"results: {out / 'search.csv'}")

    @app.command("robustness-curve")
    def robustness_curve_command(
        run_dir: Path = typer.Argument(..., help="trained run folder (holds best/)"),
        out: Path = typer.Option(..., "--out", help="folder for curve.csv and curve.png"),
        eps: list[str] = typer.Option(["0.0001,0.0003,0.001,0.003,0.01"], "--eps"),
        eta: float | None = typer.Option(None, "--eta", help="step size (default 2·ε)"),
        iters: int = typer.Option(1000, "--iters"),
        split: str = typer.Option("test", "--split"),
        stop: Stop = typer.Option(Stop.corr, "--stop"),
        norm: Norm = typer.Option(Norm.linf, "--norm"),
        max_clips: int | None = typer.Option(None, "--max-clips"),
        batch_size: int = typer.Option(8, "--batch-size"),
        device: str = typer.Option("cpu", "--device"),
        data: Path | None = typer.Option(None, "--data", help="dataset root (default: the run's)"),
    ) -> None:
        """ΔMAE as a function of ε: CSV + PNG."""
        from robustmer.attacks.search import plot_robustness_curve, robustness_curve
        from robustmer.io import run_meta, write_csv, write_json, write_yaml

        e = _floats(eps, "--eps")
        run, prepared = load_run_and_data(run_dir, data, device)
        x, y = _tensors(prepared, split, max_clips)
        table = robustness_curve(run.model, x.to(device), y.to(device), e, eta=eta, iters=iters,
                                 batch_size=batch_size, stop=stop.value, norm=norm.value)
        write_csv(out / "curve.csv", table)
        plot_robustness_curve(table, out / "curve.png", title=f"{run_dir.name} ({split})")
        write_yaml(out / "config.yaml", {"run_dir": str(run_dir), "split": split, "eps": e,
                                         "eta": eta, "iters": iters, "stop": stop.value,
                                         "norm": norm.value, "clips": len(x)})
        write_json(out / "meta.json", run_meta(split_id=prepared.split.split_id))
        typer.echo(f"results: {out / 'curve.csv'}, {out / 'curve.png'}")
