"""The ``robustmer`` command line: thin typer commands that parse arguments, call one library
function, and print where results went. Nothing in the library imports this package.

Each stage has its own module here with a ``register(app)`` function, so that commands of
different stages live in different files.
"""

from __future__ import annotations

import importlib
import signal
import sys
from types import FrameType

import typer

from robustmer.cli.common import interrupted_message
from robustmer.errors import RobustmerError

app = typer.Typer(
    name="robustmer",
    help="Robustness and interpretability of music emotion recognition models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_COMMAND_MODULES = ("data", "train", "attack", "explain", "xeval", "study", "report", "l2i")

for _name in _COMMAND_MODULES:
    importlib.import_module(f"robustmer.cli.{_name}").register(app)


def _on_interrupt(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C: say where the work stopped and how to resume it, then stop as usual."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once
    typer.echo("\n" + interrupted_message(), err=True)
    raise KeyboardInterrupt


def _on_terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (``kill``, a scheduler cancelling the job): stop as on Ctrl-C, so that a study's
    worker processes and folder lock go with it instead of running on without a driver."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _on_interrupt(signum, frame)


def main() -> None:
    """Console entry point: typed robustmer errors become one clear line and exit status 2;
    Ctrl-C (or SIGTERM) prints where a long command stopped and the command that resumes it."""
    signal.signal(signal.SIGINT, _on_interrupt)
    signal.signal(signal.SIGTERM, _on_terminate)
    try:
        app()
    except RobustmerError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(2)
