"""The ``recommender`` command line. Thin: parse flags, call ``recommender.api``/library functions, render.

Every :class:`~recommender.errors.RecommenderError` becomes ``error: <message>`` on stderr and exit status 2,
without a traceback; a KeyboardInterrupt exits 130 after the command's own cleanup has run.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from recommender import __version__
from recommender.commands import COMMAND_MODULES
from recommender.errors import RecommenderError

app = typer.Typer(
    name="recommender",
    help="Find the vLLM serving configuration that spends the least GPU energy while meeting latency SLOs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"llm-energy-recommender {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More logging (-v info, -vv debug)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """LLM Energy Recommender."""
    from recommender.logging_setup import configure

    configure(logging.WARNING - 10 * min(verbose, 2) if verbose else logging.INFO)


for _name in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(_name)
    except ModuleNotFoundError as _e:
        if _e.name != _name:
            raise
        continue
    _mod.register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    try:
        rc = app(args=argv, prog_name="recommender", standalone_mode=False)
    except RecommenderError as e:
        typer.echo(f"error: {e}", err=True)
        return 2
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except SystemExit as e:  # typer.Exit inside standalone_mode=False
        return int(e.code or 0)
    except Exception as e:  # usage errors: typer vendors its own click, so match by attributes
        name = type(e).__name__
        if name == "Exit" and hasattr(e, "exit_code"):
            return int(e.exit_code)
        if name == "Abort":
            typer.echo("aborted", err=True)
            return 130
        if callable(getattr(e, "show", None)) and hasattr(e, "exit_code"):
            e.show()
            return int(e.exit_code) or 2
        raise
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
