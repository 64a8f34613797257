"""CLI commands of the study stage: ``robustmer study CONFIG`` and ``robustmer demo``."""

from __future__ import annotations

import dataclasses
import time
from importlib import resources
from pathlib import Path

import typer

from robustmer.cli.common import set_resume_hint
from robustmer.errors import ConfigError
from robustmer.study.config import StudyConfig

PACKAGED_CONFIGS: tuple[str, ...] = ("demo", "paper", "embedded", "checks-cpu")
"""Study configs shipped inside the package (``robustmer config NAME`` prints one)."""


def _run(config: StudyConfig, report: bool, overwrite: bool = False,
         progress: bool = True, jobs: int | None = None, executor: str = "local") -> None:
    from robustmer.report import build_report
    from robustmer.study.runner import run_study

    set_resume_hint(lambda: "finished runs and attacked clips are kept in "
                    f"{config.output}; run the same command again to resume")
    result = run_study(config, overwrite=overwrite, progress=progress, jobs=jobs,
                       executor=executor)
    per_run = result.runs.drop_duplicates("run_id") if len(result.runs) else result.runs
    done = int((per_run["status"] == "done").sum()) if len(per_run) else 0
    typer.echo(f"{done}/{len(per_run)} runs done in {result.seconds:.0f} s; "
               f"results in {result.store.path}")
    if report:
        page = build_report(result.store.path)
        typer.echo(f"report: {page}")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""

    @app.command("study")
    def study(
        config: Path = typer.Argument(..., help="Study YAML (see configs/paper.yaml)."),
        output: Path | None = typer.Option(None, "--output", "-o",
                                           help="Override the config's output folder."),
        report: bool = typer.Option(True, help="Write report.html when the study is done."),
        overwrite: bool = typer.Option(False, "--overwrite",
                                       help="Replace the output folder if it holds other results."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="tqdm bars"),
        jobs: int | None = typer.Option(None, "--jobs", min=1,
                                        help="runs at once as processes (default: train.jobs)"),
        executor: str = typer.Option("local", "--executor",
                                     help="local (this machine) or ray (a Ray cluster)"),
        address: str | None = typer.Option(None, "--address",
                                           help="Ray cluster address (default: ray.address, "
                                                "else a local Ray instance)"),
    ) -> None:
        """Train every (model type, seed), attack the test split, write the results store.

        Re-running the same command resumes: finished runs and attacked clips are skipped."""
        from robustmer.study.config import load_config

        cfg = load_config(config)
        if output is not None:
            cfg = dataclasses.replace(cfg, output=str(output))
        if address is not None:
            cfg = dataclasses.replace(cfg, ray=dataclasses.replace(cfg.ray, address=address))
        _run(cfg, report, overwrite, progress, jobs, executor)

    @app.command("demo")
    def demo(
        output: Path = typer.Option(Path("demo-output"), "--output", "-o",
                                    help="Where the demo study and its report go."),
        overwrite: bool = typer.Option(False, "--overwrite",
                                       help="Replace the output folder if it holds other results."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="tqdm bars"),
    ) -> None:
        """The main job: the demo study (configs/demo.yaml) on the embedded synthetic dataset,
        end to end, then the HTML report. A few minutes on 2 CPU cores."""

        from robustmer.study.config import load_config

        with resources.as_file(resources.files("robustmer") / "configs" / "demo.yaml") as path:
            cfg = dataclasses.replace(load_config(path), output=str(output))
        t0 = time.perf_counter()
        _run(cfg, report=True, overwrite=overwrite, progress=progress)
        typer.echo(f"demo finished in {time.perf_counter() - t0:.0f} s")

    @app.command("config")
    def config_command(
        name: str = typer.Argument(..., help=f"one of {', '.join(PACKAGED_CONFIGS)}"),
    ) -> None:
        """Print a packaged study config to start from: `robustmer config paper > my.yaml`."""
        if name not in PACKAGED_CONFIGS:
            raise ConfigError(f"NAME: no packaged config {name!r}; choose from "
                              f"{list(PACKAGED_CONFIGS)}")
        text = (resources.files("robustmer") / "configs" / f"{name}.yaml").read_text(
            encoding="utf-8")
        typer.echo(text, nl=False)
