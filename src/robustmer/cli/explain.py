"""CLI command of the explain stage: ``robustmer explain``.

Thin: load the run and its data (``cli.attack.load_run_and_data``), choose the view (a
waveform model: ``--view stft|input``), call
``robustmer.explain.runner.explain_clip``, print where results went.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from robustmer.errors import ConfigError
from robustmer.explain import registry


def method_help(prefix: str) -> str:
    """``prefix`` followed by the registered explanation methods (``robustmer.explain.registry``:
    a method registered before the CLI is built is listed, and any registered one is accepted)."""
    return f"{prefix}: {', '.join(registry.names())} (robustmer.explain.registry)"


def complete_method(incomplete: str) -> list[str]:
    """Shell completion of a method name from the registry."""
    return [n for n in registry.names() if n.startswith(incomplete.lower())]


def _params(values: list[str]) -> dict[str, Any]:
    """``--param n_samples=1024 --param fill=min`` -> ``{"n_samples": 1024, "fill": "min"}``
    (ints, then floats, then strings)."""
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param must look like name=value, got {item!r}")
        val: Any = raw.strip()
        for cast in (int, float):
            try:
                val = cast(val)
                break
            except ValueError:
                continue
        out[key.strip()] = val
    return out


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""

    @app.command("explain")
    def explain_command(
        run_dir: Path = typer.Argument(..., help="trained run folder (holds best/)"),
        clip: str = typer.Option(..., "--clip", help="clip id (any split)"),
        method: str = typer.Option("saliency", "--method", help=method_help("explanation method"),
                                   autocompletion=complete_method),
        target: str | None = typer.Option(
            None, "--target", help="class, output or concept name (default: the predicted "
            "class of a classifier, every output of a regressor)"),
        out: Path | None = typer.Option(None, "--out",
                                        help="folder (default RUN_DIR/explain/CLIP_METHOD)"),
        segments: str = typer.Option("4x5", "--segments",
                                     help="frequency bands x time blocks"),
        param: list[str] = typer.Option([], "--param",
                                        help="explainer setting name=value (repeatable)"),
        view: str | None = typer.Option(
            None, "--view", help="waveform models: stft (default: the STFT magnitude, "
            "log-spaced bands) or input (the samples, time blocks of --segments)"),
        device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
        data: Path | None = typer.Option(None, "--data", help="dataset root (default: the run's)"),
        overwrite: bool = typer.Option(False, "--overwrite",
                                       help="replace --out even if it holds other results"),
    ) -> None:
        """Explain one clip: attribution map(s) over the spectrogram (PNG; a waveform model's
        over its STFT, or along its samples with --view input), segment scores (JSON); for
        A2M2E also the concept-contribution bar chart."""
        from robustmer.cli.attack import load_run_and_data
        from robustmer.explain.runner import explain_clip, find_clip, resolve_view
        from robustmer.explain.segments import parse_grid
        from robustmer.folders import claim_folder, remove_folder

        grid = parse_grid(segments)
        params = _params(param)
        registry.make(method, params)  # an unknown method or setting: refused before any file
        run, prepared = load_run_and_data(run_dir, data, device)
        model_input = run.model_type.input_spec() if run.model_type is not None else None
        view = resolve_view(model_input, view)
        find_clip(prepared, clip, model_input)  # an unknown clip: refused before any file
        folder = out or run_dir / "explain" / f"{clip}_{method.replace('+', '_')}"
        fresh = not folder.exists()
        claim_folder(folder, "explanation", overwrite=overwrite or out is None)
        concepts = (run.data or {}).get("concepts") or list(prepared.table.concept_names)
        try:
            summary = explain_clip(run.model, prepared, clip, method, folder, target=target,
                                   grid=grid, params=params, task=run.task,
                                   names=run.output_names(), concepts=concepts, device=device,
                                   run_dir=str(run_dir), model_input=model_input, view=view)
        except BaseException:
            if fresh and not (folder / "explanation.json").exists():
                remove_folder(folder)  # nothing explained: leave nothing half-made
            raise
        for row in summary["targets"]:
            top = ", ".join(str(s) for s in row["ranking"][:3])
            extra = f", R² {row['r2']:.3f}" if "r2" in row else ""
            typer.echo(f"{summary['method']} for {row['target']} (output {row['output']:.3f}): "
                       f"top segments {top}{extra}")
        typer.echo(f"results: {folder} (explanation.json, attribution.npz, *.png)")
