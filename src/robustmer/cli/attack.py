"""CLI commands of the attack stage: ``attack``, ``attack-search`` and ``robustness-curve``.

Thin: load the run (``robustmer.train.load_run``) and its data (``robustmer.data.prepare_data``),
call one ``robustmer.attacks`` function, print where results went.
"""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import typer

from robustmer.cli.common import (
    SPLIT_FILE,
    load_run_and_data,
    resume_command,
    set_resume_hint,
)
from robustmer.errors import ConfigError

__all__ = ["SPLIT_FILE", "load_run_and_data"]


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


def _inputs(run: Any, data: Any, split: str, max_clips: int | None, domain: Domain,
            device: str) -> tuple[Any, Any, Any, Any, Any]:
    """``(model, x, y, mask, box)`` for the search/curve commands: spectrogram excerpts, or (in
    the waveform domain) zero-padded audio through the front end, with the excerpt windows of the
    dataset's fixed excerpts, a length mask and the audio box."""
    import torch

    ds = data.dataset(split, mode="fixed")
    n = len(ds) if max_clips is None else min(len(ds), max_clips)
    if n < 2:
        raise ConfigError(f"--split {split}: the split has {n} clip(s); need at least 2")
    items = [ds[i] for i in range(n)]
    y = torch.stack([it["emotions"] for it in items]).to(device)
    if domain == Domain.spectrogram:
        return run.model, torch.stack([it["x"] for it in items]).to(device), y, None, None
    from robustmer.attacks import AUDIO_BOX, WaveformModel, pad_batch
    from robustmer.features import LogFilteredSpectrogram

    ids = [str(it["id"]) for it in items]
    x, mask = pad_batch([data.waveform(i) for i in ids])
    idx = np.stack([np.asarray(ds.excerpt_index(i), dtype=np.int64) for i in ids])
    model = WaveformModel(run.model, LogFilteredSpectrogram(data.frontend).to(device),
                          data.standardizer, idx).to(device)
    return model, x.to(device), y, mask.to(device), AUDIO_BOX


def _run_identity(run_dir: Path, which: str = "best") -> dict[str, Any]:
    """Which trained run an attack was made on: its folder and its weights' content hash."""
    from robustmer.io import sha256_file

    return {"path": str(run_dir.resolve()), "checkpoint": which,
            "weights_sha256": sha256_file(run_dir / which / "model.safetensors")}


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""

    @app.command("attack")
    def attack_command(
        run_dir: Path = typer.Argument(..., help="trained run folder (holds best/)"),
        out: Path = typer.Option(..., "--out", help="attack folder (attack.csv, examples/)"),
        split: str = typer.Option("test", "--split", help="train, val or test"),
        domain: Domain = typer.Option(Domain.spectrogram, "--domain"),
        eps: float = typer.Option(0.001, "--eps", help="bound on ‖δ‖"),
        eta: float = typer.Option(0.002, "--eta", help="step size"),
        iters: int = typer.Option(1000, "--iters", help="maximum iterations per clip"),
        stop: Stop = typer.Option(Stop.corr, "--stop", help="stepped stopping rule"),
        norm: Norm = typer.Option(Norm.linf, "--norm"),
        mse_limit: float = typer.Option(1.0, "--mse-limit", help="last threshold of --stop mse"),
        update: Update = typer.Option(Update.sign, "--update"),
        clip: Clip = typer.Option(Clip.project, "--clip"),
        random_start: bool = typer.Option(False, "--random-start", help="PGD random start"),
        seed: int = typer.Option(0, "--seed", help="seed of the random start"),
        batch_size: int = typer.Option(8, "--batch-size"),
        device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
        data: Path | None = typer.Option(None, "--data", help="dataset root or feature pack "
                                         "(default: the run's)"),
        resume: bool = typer.Option(False, "--resume", help="skip clips already in --out"),
        overwrite: bool = typer.Option(False, "--overwrite",
                                       help="replace --out even if it holds other results"),
        examples: bool = typer.Option(True, "--examples/--no-examples",
                                      help="write npz (and WAV) adversarial examples"),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        """Attack every clip of a split and write one row per clip to OUT/attack.csv."""
        from robustmer.attacks import BIM
        from robustmer.attacks.runner import TABLE, attack_dataset, read_table
        from robustmer.folders import claim_folder

        if split not in ("train", "val", "test"):
            raise ConfigError(f"--split must be train, val or test, found {split!r}")
        if batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, found {batch_size}")
        attack = BIM(eps=eps, eta=eta, max_iters=iters, norm=norm.value, stop=stop.value,
                     mse_limit=mse_limit, update=update.value, clip=clip.value,
                     random_start=random_start, seed=seed)
        if resume and overwrite:
            raise ConfigError("--resume and --overwrite contradict each other; give one")
        if (out / TABLE).exists() and not (resume or overwrite):
            raise ConfigError(f"--out {out} holds an attack already ({TABLE}); pass --resume to "
                              f"continue it, or --overwrite to replace it")
        if resume and not (out / TABLE).exists():
            raise ConfigError(f"--resume: there is no attack to resume in {out} (no {TABLE}); "
                              f"drop --resume to start one")
        run, prepared = load_run_and_data(run_dir, data, device, progress=progress and None)
        if domain == Domain.waveform:
            prepared.require_audio("--domain waveform")
        claim_folder(out, "attack", overwrite=overwrite)
        set_resume_hint(lambda: f"{len(read_table(out))} clips are done in {out / TABLE}; "
                        f"resume with: {resume_command()}")
        table = attack_dataset(run.model, prepared, split, attack, out, domain=domain.value,
                               batch_size=batch_size, device=device, resume=resume,
                               progress=progress, write_examples=examples,
                               run=_run_identity(run_dir))
        typer.echo(f"attacked {len(table)} clips of {split}: MAE {table['mae_clean'].mean():.4f}"
                   f" -> {table['mae_adv'].mean():.4f}, {table['converged'].mean():.0%} "
                   f"converged, mean {table['iterations'].mean():.0f} iterations")
        typer.echo(f"results: {out / 'attack.csv'} (+ config.yaml, meta.json, examples/)")

    @app.command("attack-search")
    def attack_search_command(
        run_dir: Path = typer.Argument(..., help="trained run folder (holds best/)"),
        out: Path = typer.Option(..., "--out", help="folder for search.csv"),
        eps: list[str] = typer.Option(["0.0001,0.001,0.01"], "--eps", help="values or a,b,c"),
        eta: list[str] = typer.Option(["0.002"], "--eta", help="values or a,b,c"),
        iters: list[str] = typer.Option(["1000"], "--iters", help="values or a,b,c"),
        split: str = typer.Option("val", "--split"),
        domain: Domain = typer.Option(Domain.spectrogram, "--domain"),
        stop: Stop = typer.Option(Stop.corr, "--stop"),
        norm: Norm = typer.Option(Norm.linf, "--norm"),
        max_clips: int | None = typer.Option(None, "--max-clips", help="use the first N clips"),
        batch_size: int = typer.Option(8, "--batch-size"),
        device: str = typer.Option("cpu", "--device"),
        data: Path | None = typer.Option(None, "--data", help="dataset root or feature pack "
                                         "(default: the run's)"),
        overwrite: bool = typer.Option(False, "--overwrite",
                                       help="replace --out even if it holds other results"),
    ) -> None:
        """Grid-search (ε, η, iterations) on a split; pick by max ΔMAE − attacked mean r."""
        from robustmer.attacks.search import grid_search
        from robustmer.folders import claim_folder
        from robustmer.io import run_meta, write_csv, write_json, write_yaml

        e, h = _floats(eps, "--eps"), _floats(eta, "--eta")
        n = [int(v) for v in _floats(iters, "--iters")]
        run, prepared = load_run_and_data(run_dir, data, device)
        if domain == Domain.waveform:
            prepared.require_audio("--domain waveform")
        model, x, y, mask, box = _inputs(run, prepared, split, max_clips, domain, device)
        claim_folder(out, "attack-search", overwrite=overwrite)
        table = grid_search(model, x, y, e, h, n, batch_size=batch_size, mask=mask,
                            stop=stop.value, norm=norm.value, box=box)
        write_csv(out / "search.csv", table)
        write_yaml(out / "config.yaml", {"run": _run_identity(run_dir), "split": split,
                                         "domain": domain.value, "eps": e, "eta": h,
                                         "iters": n, "stop": stop.value, "norm": norm.value,
                                         "clips": len(x), "rule": "max delta_mae - mean_r_adv"})
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
        domain: Domain = typer.Option(Domain.spectrogram, "--domain"),
        stop: Stop = typer.Option(Stop.corr, "--stop"),
        norm: Norm = typer.Option(Norm.linf, "--norm"),
        max_clips: int | None = typer.Option(None, "--max-clips"),
        batch_size: int = typer.Option(8, "--batch-size"),
        device: str = typer.Option("cpu", "--device"),
        data: Path | None = typer.Option(None, "--data", help="dataset root or feature pack "
                                         "(default: the run's)"),
        overwrite: bool = typer.Option(False, "--overwrite",
                                       help="replace --out even if it holds other results"),
    ) -> None:
        """ΔMAE as a function of ε: CSV + PNG."""
        from robustmer.attacks.search import plot_robustness_curve, robustness_curve
        from robustmer.folders import claim_folder
        from robustmer.io import run_meta, write_csv, write_json, write_yaml

        e = _floats(eps, "--eps")
        run, prepared = load_run_and_data(run_dir, data, device)
        if domain == Domain.waveform:
            prepared.require_audio("--domain waveform")
        model, x, y, mask, box = _inputs(run, prepared, split, max_clips, domain, device)
        claim_folder(out, "robustness-curve", overwrite=overwrite)
        table = robustness_curve(model, x, y, e, eta=eta, iters=iters, batch_size=batch_size,
                                 mask=mask, stop=stop.value, norm=norm.value, box=box)
        write_csv(out / "curve.csv", table)
        plot_robustness_curve(table, out / "curve.png",
                              title=f"{run_dir.name} ({split}, {domain.value})")
        write_yaml(out / "config.yaml", {"run": _run_identity(run_dir), "split": split,
                                         "domain": domain.value, "eps": e, "eta": eta,
                                         "iters": iters, "stop": stop.value,
                                         "norm": norm.value, "clips": len(x)})
        write_json(out / "meta.json", run_meta(split_id=prepared.split.split_id))
        typer.echo(f"results: {out / 'curve.csv'}, {out / 'curve.png'}")
