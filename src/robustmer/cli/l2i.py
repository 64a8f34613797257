"""CLI commands of L2I (Listen to Interpret): ``robustmer l2i fit | explain | evaluate``.

Thin: load the run and its data (``cli.attack.load_run_and_data``), call one function of
``robustmer.train.l2i`` with the run's input contract, print where results went
(``RUN_DIR/l2i`` unless ``--out``). ``fit --layers`` names the modules Ψ reads; evaluate and
explain use the layers stored with the interpreters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from robustmer.cli.common import load_run_and_data, parse_floats

L2I_DIR = "l2i"

l2i_app = typer.Typer(help="Listen to Interpret: NMF-based listenable explanations of a run.",
                      no_args_is_help=True)


def _poolings(value: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in value.split(",") if p.strip())


def _layers(value: str | None) -> list[str] | None:
    """``--layers a,b,c`` -> module paths (None: the default, the last three conv blocks)."""
    if value is None:
        return None
    from robustmer.errors import ConfigError

    names = [p.strip() for p in value.split(",") if p.strip()]
    if not names:
        raise ConfigError("--layers: give module paths of the model, e.g. --layers "
                          "conv2,conv3,block.4")
    return names


def _input_spec(run: Any) -> dict[str, Any]:
    """The run's input contract (spectrogram or waveform at its own rate)."""
    from robustmer.models.types import for_config

    return dict((run.model_type or for_config(run.model_config)).input_spec())


@l2i_app.command("fit")
def fit_command(
    run_dir: Path = typer.Argument(..., help="trained run folder (holds best/)"),
    components: int = typer.Option(100, "--components", help="NMF components K"),
    mu: float = typer.Option(1.0, "--mu", help="sparsity weight of the NMF (on ||H||_1)"),
    nmf_iterations: int = typer.Option(200, "--nmf-iterations"),
    frames_per_clip: int = typer.Option(64, "--frames-per-clip",
                                        help="random frames per training clip for the NMF"),
    epochs: int = typer.Option(30, "--epochs", help="interpreter epochs"),
    batch_size: int = typer.Option(8, "--batch-size"),
    lr: float = typer.Option(1e-3, "--lr"),
    pooling: str = typer.Option("att,max", "--pooling", help="att, max or att,max"),
    seed: int = typer.Option(0, "--seed"),
    max_clips: int | None = typer.Option(None, "--max-clips",
                                         help="train the interpreters on the first N training "
                                              "clips (the dictionary uses all)"),
    layers: str | None = typer.Option(None, "--layers",
                                      help="module paths of the model whose outputs Ψ reads, "
                                           "comma-separated (names of model.named_modules(), "
                                           "e.g. conv2,conv3,block.4); default: the last three "
                                           "convolution blocks"),
    device: str = typer.Option("cpu", "--device"),
    data: Path | None = typer.Option(None, "--data", help="dataset root (default: the run's)"),
    out: Path | None = typer.Option(None, "--out", help="results folder (default RUN_DIR/l2i)"),
) -> None:
    """Fit the NMF dictionary (reused when its settings match) and train the interpreters."""
    from robustmer.explain.l2i import InterpreterConfig
    from robustmer.train.l2i import fit_l2i

    run, prepared = load_run_and_data(run_dir, data, device)
    cfg = InterpreterConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                            device=device)
    target = out or run_dir / L2I_DIR
    s = fit_l2i(run.model, run.task, prepared, target, k=components, mu=mu,
                nmf_iterations=nmf_iterations, frames_per_clip=frames_per_clip, seed=seed,
                poolings=_poolings(pooling), config=cfg, max_clips=max_clips,
                layers=_layers(layers), input_spec=_input_spec(run))
    how = "reused" if s["dictionary_reused"] else f"fitted in {s['dictionary_fit_seconds']:.1f} s"
    typer.echo(f"dictionary ({components} components) {how}; interpreters: "
               f"{', '.join(s['poolings'])}; layers: {', '.join(s['layers'])}")
    typer.echo(f"results: {target}")


@l2i_app.command("explain")
def explain_command(
    run_dir: Path = typer.Argument(..., help="trained run folder with l2i/ fitted"),
    clip: str = typer.Option(..., "--clip", help="clip id"),
    target: str = typer.Option(..., "--target", help="emotion or class name (classifier: pred)"),
    tau: float = typer.Option(0.5, "--tau", help="relevance threshold τ in [0, 1)"),
    pooling: str = typer.Option("att", "--pooling", help="att or max"),
    data: Path | None = typer.Option(None, "--data", help="dataset root (default: the run's)"),
    out: Path | None = typer.Option(None, "--out", help="L2I folder (default RUN_DIR/l2i)"),
) -> None:
    """WAVs (input, interpretation, components) and a figure for one clip and output."""
    from robustmer.train.l2i import explain_l2i

    run, prepared = load_run_and_data(run_dir, data, "cpu")
    folder = explain_l2i(run.model, run.task, prepared, out or run_dir / L2I_DIR,
                         clip, target, tau, pooling, input_spec=_input_spec(run))
    typer.echo(f"results: {folder}")


@l2i_app.command("evaluate")
def evaluate_command(
    run_dir: Path = typer.Argument(..., help="trained run folder with l2i/ fitted"),
    split: str = typer.Option("test", "--split"),
    tau: list[str] = typer.Option(["0.1,0.3,0.5,0.7,0.9"], "--tau", help="values or a,b,c"),
    pooling: str = typer.Option("att,max", "--pooling"),
    max_clips: int | None = typer.Option(None, "--max-clips"),
    seed: int = typer.Option(0, "--seed", help="seed of the random-removal baseline"),
    data: Path | None = typer.Option(None, "--data", help="dataset root (default: the run's)"),
    out: Path | None = typer.Option(None, "--out", help="L2I folder (default RUN_DIR/l2i)"),
) -> None:
    """Fidelity and faithfulness tables (tidy CSVs) with settings and versions."""
    from robustmer.train.l2i import evaluate_l2i

    run, prepared = load_run_and_data(run_dir, data, "cpu")
    target = out or run_dir / L2I_DIR
    fid, ff = evaluate_l2i(run.model, run.task, prepared, target, split=split,
                           taus=tuple(parse_floats(tau, "--tau")), poolings=_poolings(pooling),
                           max_clips=max_clips, seed=seed, input_spec=_input_spec(run))
    typer.echo(fid.to_string(index=False))
    typer.echo(ff.to_string(index=False))
    typer.echo(f"results: {target / 'fidelity.csv'}, {target / 'faithfulness.csv'}")


def register(app: typer.Typer) -> None:
    """Add the ``l2i`` command group to the main app."""
    app.add_typer(l2i_app, name="l2i")
