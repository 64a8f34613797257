"""CLI commands of the report stage: the HTML report and the import of published attack logs."""

from __future__ import annotations

from pathlib import Path

import typer


def _has_other_results(run_dir: Path) -> bool:
    """A run folder holding more than L2I results (explanations, attack folders, explainer
    evaluations), which gets an index page rather than the L2I page alone."""
    from robustmer.report.folders import folder_kind

    return any(folder_kind(p) in ("explanation", "attack", "explainer-eval")
               for p in run_dir.rglob("*") if p.is_dir())


def register(app: typer.Typer) -> None:
    """Add ``report`` and ``import-cpjku`` to the main app."""

    @app.command("report")
    def report(
        results_dir: Path = typer.Argument(
            ..., help="Results store (runs.csv + clips.csv), an attack, explain, "
            "explainer-eval or l2i folder, or a run folder (an index page of what it holds)."),
        out: Path | None = typer.Option(
            None, "--out", help="HTML file to write (default RESULTS_DIR/report.html)."),
        compare: list[Path] = typer.Option(
            [], "--compare", help="Another results store to show side by side (repeatable)."),
        emotion: list[str] = typer.Option(
            [], "--emotion", "--output", help="Output(s) Figure 4 offers, one figure each, "
            "the reader picks one (repeatable; default: every output of the store)."),
        media_clips: int = typer.Option(
            2, "--media-clips", min=0, help="Audio / δ examples per model type."),
        alpha: float = typer.Option(0.05, "--alpha", help="Family-wise significance level."),
        l2i: list[Path] = typer.Option(
            [], "--l2i", help="A run folder with l2i/ results to add as a section (repeatable)."),
        markdown: bool = typer.Option(
            False, "--markdown", help="Write the store's tables and tests as Markdown instead "
                                      "(default RESULTS_DIR/report.md; no figures or audio)."),
    ) -> None:
        """Write the HTML report (tables, figures, t-tests, SNR embedded; audio players read
        the store's media/ folder, which must travel with the page)."""
        from robustmer.report.explain import build_explain_report
        from robustmer.report.html import build_report

        if markdown:
            from robustmer.report.markdown import write_markdown

            typer.echo(str(write_markdown(results_dir, out, alpha=alpha)))
            return
        from robustmer.report.folders import (
            explanation_page,
            folder_kind,
            l2i_page,
            run_index_page,
        )

        kind = folder_kind(results_dir)
        if kind == "explainer-eval":  # a folder written by `robustmer explainer-eval`
            typer.echo(str(build_explain_report(results_dir, out)))
            return
        if kind == "explanation":  # a folder written by `robustmer explain`
            typer.echo(str(explanation_page(results_dir, out)))
            return
        if kind == "l2i":  # a run's l2i/ folder
            typer.echo(str(l2i_page(results_dir, out or results_dir / "report.html")))
            return
        if kind == "run" and not l2i and not compare and _has_other_results(results_dir):
            typer.echo(str(run_index_page(results_dir, out)))  # explain/, attacks, ... inside
            return
        from robustmer.evaluate.attack_folder import attack_folder_store

        if kind == "attack":  # one `robustmer attack` folder, without a study
            store = attack_folder_store(results_dir, media_clips)
            out = out or results_dir / "report.html"
            results_dir = store.path
        path = build_report(results_dir, out, compare, emotions=emotion or None, alpha=alpha,
                            media_clips=media_clips, l2i=l2i)
        typer.echo(str(path))

    @app.command("import-cpjku")
    def import_cpjku_cmd(
        log_dir: Path = typer.Argument(..., help="Folder of published run folders (log.csv)."),
        out: Path = typer.Option(..., "--out", help="Results store to write."),
        runs: Path | None = typer.Option(
            None, "--runs", help="runs.json: run folder -> model_type, seed "
                                 "(default LOG_DIR/runs.json)."),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace --out even if it holds other results."),
    ) -> None:
        """Import the published CP-JKU attack logs into a results store."""
        from robustmer.study.cpjku import import_cpjku

        store = import_cpjku(log_dir, out, runs, overwrite=overwrite)
        typer.echo(str(store.path))
