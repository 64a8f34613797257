"""CLI commands of the attack stage: ``attack``, ``attack-search`` and ``robustness-curve``.

Thin: load the run (``robustmer.train.load_run``) and its data (``robustmer.data.prepare_data``),
call one ``robustmer.attacks`` function, print where results went.
"""

from __future__ import annotations

import functools
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import typer

from robustmer.attacks.spec import choices as spec_choices
from robustmer.attacks.spec import names_for
from robustmer.cli.common import (
    SPLIT_FILE,
    load_run_and_data,
    parse_floats,
    parse_settings,
    resolve_domain,
    resume_command,
    run_profile,
    set_resume_hint,
)
from robustmer.errors import ConfigError
from robustmer.features import DOMAINS
from robustmer.study.attack_block import DEFAULT_ATTACK

__all__ = ["SPLIT_FILE", "load_run_and_data"]
_floats = parse_floats  # the name this module has always had (tests import it)


def _choices(setting: str) -> list[tuple[str, str]]:
    return [(v, v) for v in spec_choices(setting)]


# The choices of the attack settings come from the attack registry (``attacks.spec.choices``:
# every value some registered attack accepts), so a new attack's values need no edit here.
Domain = StrEnum("Domain", [(d, d) for d in DOMAINS])  # type: ignore[misc]
Stop = StrEnum("Stop", _choices("stop"))  # type: ignore[misc]
Norm = StrEnum("Norm", _choices("norm"))  # type: ignore[misc]
Update = StrEnum("Update", _choices("update"))  # type: ignore[misc]
Clip = StrEnum("Clip", _choices("clip"))  # type: ignore[misc]


def _attack_help() -> str:
    regression, classification = names_for("regression"), names_for("classification")
    return (f"attack name: {', '.join(regression)} (regressors), {', '.join(classification)} "
            f"(classifiers): robustmer.attacks.spec; default: {DEFAULT_ATTACK['regression']}, "
            f"or {DEFAULT_ATTACK['classification']} for a classifier")


def attack_specs(name: str | None, eps: list[float] | None, given: dict[str, Any], *,
                 task: str = "regression", n_outputs: int | None = None) -> list[Any]:
    """One validated ``AttackSpec`` per ε (or one with the attack's default ε); ``name`` None:
    the default attack of the model's ``task`` (``bim``; ``untargeted_pgd`` for a
    classifier)."""
    from robustmer.attacks.spec import AttackSpec

    name = name or DEFAULT_ATTACK[task]
    base = {"name": name, **{k: v for k, v in given.items() if v is not None}}
    budgets: list[float | None] = list(eps) if eps else [None]
    specs = []
    for e in budgets:
        spec = AttackSpec.from_dict(base if e is None else {**base, "eps": e}, where="--attack",
                                    n_outputs=n_outputs)
        if spec.task != task:
            raise ConfigError(f"--attack {name}: attacks {spec.task} models; this model does "
                              f"{task} (choose from {names_for(task)})")
        specs.append(spec)
    return specs


def _inputs(run: Any, data: Any, split: str, max_clips: int | None, domain: Domain | None,
            device: str) -> tuple[Any, Any, Any, Any, Any]:
    """``(model, x, y, mask, box)`` for the search/curve commands (regressors): spectrogram
    excerpts, a waveform model's own audio excerpts, or (a spectrogram model in the waveform
    domain) zero-padded audio through the front end, with the excerpt windows of the dataset's
    fixed excerpts, a length mask and the audio box."""
    import torch

    if run.task != "regression":
        raise ConfigError("attack-search and robustness-curve measure ΔMAE of regressors; "
                          "this run classifies (use `robustmer attack --eps a,b,c`)")
    spec_in = run.model_type.input_spec()
    dom = resolve_domain(None if domain is None else domain.value, {"input": spec_in})
    ds = data.dataset_for(spec_in, split, mode="fixed")
    n = len(ds) if max_clips is None else min(len(ds), max_clips)
    if n < 2:
        raise ConfigError(f"--split {split}: the split has {n} clip(s); need at least 2")
    items = [ds[i] for i in range(n)]
    y = torch.stack([it["targets"] for it in items]).to(device)
    x = torch.stack([it["x"] for it in items]).to(device)
    if spec_in["kind"] == "waveform":
        from robustmer.attacks import AUDIO_BOX

        return run.model, x, y, torch.ones_like(x, dtype=torch.bool), AUDIO_BOX
    if dom == "spectrogram":
        return run.model, x, y, None, None
    from robustmer.attacks import AUDIO_BOX, WaveformModel, pad_batch
    from robustmer.features import LogFilteredSpectrogram

    ids = [str(it["id"]) for it in items]
    x, mask = pad_batch([data.waveform(i) for i in ids])
    idx = np.stack([np.asarray(ds.excerpt_index(i), dtype=np.int64) for i in ids])
    model = WaveformModel(run.model, LogFilteredSpectrogram(data.frontend).to(device),
                          data.standardizer, idx).to(device)
    return model, x.to(device), y, mask.to(device), AUDIO_BOX


def budget_warnings(specs: list[Any], domain: str) -> list[str]:
    """What an ε cannot mean, said before the attack runs: on audio samples in [-1, 1] a budget
    of 1 or more is no bound (the audio box limits δ instead), and sign steps of η cannot reach
    an ε above η × iterations."""
    out = []
    for spec in specs:
        s, eps = spec.settings, spec.eps
        if eps != eps:  # no effective bound (the reference preset)
            continue
        if domain == "waveform" and eps >= 1.0:
            out.append(f"eps={eps:g} on audio samples in [-1, 1]: no sample can move that far, "
                       f"so the box [-1, 1] bounds δ, not ε (use ε < 1, e.g. 0.001-0.01)")
        eta, iters = s.get("eta"), s.get("max_iters")
        if (isinstance(eta, float) and isinstance(iters, int) and s.get("norm") == "linf"
                and not s.get("random_start") and eta * iters < eps):
            out.append(f"eps={eps:g}: {iters} steps of eta={eta:g} reach at most "
                       f"{eta * iters:g}, so the attack cannot use its whole budget (raise "
                       f"--eta or --iters)")
    return out


def attack_summary(table: Any, task: str) -> str:
    """One line on an attack table: error before -> after, how many converged, and why a
    clip's δ may be 0 (the stop rule judged it done at the start) or random (zero gradient)."""
    conv = float(table["converged"].mean())
    text = (f"MAE {table['mae_clean'].mean():.4f} -> {table['mae_adv'].mean():.4f}, "
            f"{conv:.0%} converged (reached the stop rule's final threshold), mean "
            f"{table['iterations'].mean():.0f} iterations")
    if task == "classification":
        names = [c[2:] for c in table.columns if c.startswith("y_")]
        y = table[[f"y_{n}" for n in names]].to_numpy().argmax(1)
        acc = [(table[[f"{p}_{n}" for n in names]].to_numpy().argmax(1) == y).mean()
               for p in ("pred", "adv")]
        text = f"accuracy {acc[0]:.3f} -> {acc[1]:.3f}; probability error " + text[4:]
    zero = int(table["zero_grad_start"].sum()) if "zero_grad_start" in table else 0
    if zero:
        text += (f"; {zero} clip(s) had a zero gradient at δ = 0 and started from a random "
                 f"point of the ε-ball")
    return text


def _attack_hint(folder: Path) -> str:
    """Where an interrupted attack stopped, and the command that resumes it."""
    from robustmer.attacks.runner import TABLE, read_table

    return (f"{len(read_table(folder))} clips are done in {folder / TABLE}; resume with: "
            f"{resume_command()}")


def _run_identity(run_dir: Path, which: str = "best") -> dict[str, Any]:
    """Which trained run an attack was made on: its folder and its weights' content hash."""
    from robustmer.io import sha256_file

    return {"path": str(run_dir.resolve()), "checkpoint": which,
            "weights_sha256": sha256_file(run_dir / which / "model.safetensors")}


def _search_inputs(run_dir: Path, data: Path | None, device: str, split: str,
                   max_clips: int | None, domain: Domain | None) -> tuple[Any, Any]:
    """``(prepared data, (model, x, y, mask, box))`` of attack-search and robustness-curve
    (the waveform domain needs the audio)."""
    run, prepared = load_run_and_data(run_dir, data, device)
    if domain == Domain("waveform") or run.model_type.input_kind == "waveform":
        prepared.require_audio("--domain waveform")
    return prepared, _inputs(run, prepared, split, max_clips, domain, device)


# Options attack-search and robustness-curve share (one declaration each).
_SEARCH_DOMAIN = typer.Option(None, "--domain", help="default: the model's input")
_SEARCH_STOP = typer.Option(Stop("corr"), "--stop")
_SEARCH_NORM = typer.Option(Norm("linf"), "--norm")
_BATCH_SIZE = typer.Option(8, "--batch-size")
_DEVICE = typer.Option("cpu", "--device")
_DATA = typer.Option(None, "--data", help="dataset root or feature pack (default: the run's)")
_OVERWRITE = typer.Option(False, "--overwrite", help="replace --out even if it holds other "
                          "results")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""

    @app.command("attack")
    def attack_command(
        run_dir: Path = typer.Argument(..., help="trained run folder (holds best/)"),
        out: Path = typer.Option(..., "--out", help="attack folder (attack.csv, examples/)"),
        split: str = typer.Option("test", "--split", help="train, val or test"),
        domain: Domain | None = typer.Option(None, "--domain", help="default: the model's "
                                             "input: spectrogram for robustmer's models, "
                                             "waveform for audio models"),
        attack_name: str | None = typer.Option(None, "--attack", help=_attack_help()),
        eps: list[str] = typer.Option([], "--eps", help="bound on ‖δ‖; several (--eps a --eps "
                                      "b or a,b) write one sub-folder per ε"),
        eta: float | None = typer.Option(None, "--eta", help="step size"),
        iters: int | None = typer.Option(None, "--iters", help="maximum iterations per clip"),
        stop: Stop | None = typer.Option(None, "--stop", help="stepped stopping rule"),
        norm: Norm | None = typer.Option(None, "--norm", help="norm of the ε-ball"),
        mse_limit: float | None = typer.Option(None, "--mse-limit",
                                               help="last threshold of --stop mse"),
        update: Update | None = typer.Option(None, "--update", help="update rule (adam_sign: "
                                             "the reference's)"),
        clip: Clip | None = typer.Option(None, "--clip", help="projection (reference_noop: "
                                         "the reference's ineffective clip)"),
        random_start: bool | None = typer.Option(None, "--random-start/--no-random-start",
                                                 help="PGD random start"),
        seed: int | None = typer.Option(None, "--seed", help="seed of the random start"),
        settings: list[str] = typer.Option([], "--set", help="any other setting of the "
                                           "attack, KEY=VALUE (repeatable)"),
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
        """Attack every clip of a split and write one row per clip to OUT/attack.csv (with
        several --eps: OUT/<setting-id>/attack.csv, one folder per ε)."""
        from robustmer.attacks.runner import TABLE, attack_dataset
        from robustmer.attacks.spec import setting_id
        from robustmer.folders import claim_folder

        if split not in ("train", "val", "test"):
            raise ConfigError(f"--split must be train, val or test, found {split!r}")
        if batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, found {batch_size}")
        if resume and overwrite:
            raise ConfigError("--resume and --overwrite contradict each other; give one")
        given: dict[str, Any] = {"eta": eta, "max_iters": iters, "stop": stop, "norm": norm,
                                 "mse_limit": mse_limit, "update": update, "clip": clip,
                                 "random_start": random_start, "seed": seed}
        given = {k: (v.value if isinstance(v, StrEnum) else v) for k, v in given.items()}
        given.update(parse_settings(settings))
        profile = run_profile(run_dir)
        dom = resolve_domain(None if domain is None else domain.value, profile)
        specs = attack_specs(attack_name, parse_floats(eps, "--eps") if eps else None, given,
                             task=profile["task"], n_outputs=profile["n_outputs"])
        folders = [out if len(specs) == 1 else out / setting_id(spec, dom)
                   for spec in specs]
        for line in budget_warnings(specs, dom):
            typer.secho(f"warning: {line}", fg=typer.colors.YELLOW, err=True)
        for folder in folders:
            if (folder / TABLE).exists() and not (resume or overwrite):
                raise ConfigError(f"--out {folder} holds an attack already ({TABLE}); pass "
                                  f"--resume to continue it, or --overwrite to replace it")
        if resume and not any((f / TABLE).exists() for f in folders):
            raise ConfigError(f"--resume: there is no attack to resume in {out} (no {TABLE}); "
                              f"drop --resume to start one")
        run, prepared = load_run_and_data(run_dir, data, device, progress=progress and None)
        if dom == "waveform":
            prepared.require_audio("--domain waveform")
        if len(specs) > 1:
            claim_folder(out, "attack-settings", overwrite=overwrite)
        for spec, folder in zip(specs, folders, strict=True):
            claim_folder(folder, "attack", overwrite=overwrite and len(specs) == 1)
            set_resume_hint(functools.partial(_attack_hint, folder))
            table = attack_dataset(run.model, prepared, split, spec, folder, domain=dom,
                                   model_input=profile["input"], task=profile["task"],
                                   batch_size=batch_size, device=device,
                                   resume=resume and (folder / TABLE).exists(),
                                   progress=progress, write_examples=examples,
                                   run=_run_identity(run_dir))
            typer.echo(f"{setting_id(spec, dom)}: attacked {len(table)} clips of {split}: "
                       + attack_summary(table, profile["task"]))
            typer.echo(f"results: {folder / TABLE} (+ config.yaml, meta.json, examples/)")

    @app.command("attack-search")
    def attack_search_command(
        run_dir: Path = typer.Argument(..., help="trained run folder (holds best/)"),
        out: Path = typer.Option(..., "--out", help="folder for search.csv"),
        eps: list[str] = typer.Option(["0.0001,0.001,0.01"], "--eps", help="values or a,b,c"),
        eta: list[str] = typer.Option(["0.002"], "--eta", help="values or a,b,c"),
        iters: list[str] = typer.Option(["1000"], "--iters", help="values or a,b,c"),
        split: str = typer.Option("val", "--split"),
        domain: Domain | None = _SEARCH_DOMAIN,
        stop: Stop = _SEARCH_STOP,
        norm: Norm = _SEARCH_NORM,
        max_clips: int | None = typer.Option(None, "--max-clips", help="use the first N clips"),
        batch_size: int = _BATCH_SIZE,
        device: str = _DEVICE,
        data: Path | None = _DATA,
        overwrite: bool = _OVERWRITE,
    ) -> None:
        """Grid-search (ε, η, iterations) on a split; pick by max ΔMAE − attacked mean r."""
        from robustmer.attacks.search import grid_search
        from robustmer.folders import claim_folder
        from robustmer.io import run_meta, write_csv, write_json, write_yaml

        e, h = parse_floats(eps, "--eps"), parse_floats(eta, "--eta")
        n = [int(v) for v in parse_floats(iters, "--iters")]
        prepared, (model, x, y, mask, box) = _search_inputs(run_dir, data, device, split,
                                                            max_clips, domain)
        dom = "waveform" if mask is not None else "spectrogram"
        claim_folder(out, "attack-search", overwrite=overwrite)
        table = grid_search(model, x, y, e, h, n, batch_size=batch_size, mask=mask,
                            stop=stop.value, norm=norm.value, box=box)
        write_csv(out / "search.csv", table)
        write_yaml(out / "config.yaml", {"run": _run_identity(run_dir), "split": split,
                                         "domain": dom, "eps": e, "eta": h,
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
        domain: Domain | None = _SEARCH_DOMAIN,
        stop: Stop = _SEARCH_STOP,
        norm: Norm = _SEARCH_NORM,
        max_clips: int | None = typer.Option(None, "--max-clips"),
        batch_size: int = _BATCH_SIZE,
        device: str = _DEVICE,
        data: Path | None = _DATA,
        overwrite: bool = _OVERWRITE,
    ) -> None:
        """ΔMAE as a function of ε: CSV + PNG."""
        from robustmer.attacks.search import plot_robustness_curve, robustness_curve
        from robustmer.folders import claim_folder
        from robustmer.io import run_meta, write_csv, write_json, write_yaml

        e = parse_floats(eps, "--eps")
        prepared, (model, x, y, mask, box) = _search_inputs(run_dir, data, device, split,
                                                            max_clips, domain)
        dom = "waveform" if mask is not None else "spectrogram"
        claim_folder(out, "robustness-curve", overwrite=overwrite)
        table = robustness_curve(model, x, y, e, eta=eta, iters=iters, batch_size=batch_size,
                                 mask=mask, stop=stop.value, norm=norm.value, box=box)
        write_csv(out / "curve.csv", table)
        plot_robustness_curve(table, out / "curve.png",
                              title=f"{run_dir.name} ({split}, {dom})")
        write_yaml(out / "config.yaml", {"run": _run_identity(run_dir), "split": split,
                                         "domain": dom, "eps": e, "eta": eta,
                                         "iters": iters, "stop": stop.value,
                                         "norm": norm.value, "clips": len(x)})
        write_json(out / "meta.json", run_meta(split_id=prepared.split.split_id))
        typer.echo(f"results: {out / 'curve.csv'}, {out / 'curve.png'}")
