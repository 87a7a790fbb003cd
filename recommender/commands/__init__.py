"""CLI subcommands. Each module defines ``register(app: typer.Typer) -> None``; ``recommender.cli`` calls
every module listed in ``COMMAND_MODULES`` that exists. Commands catch nothing themselves:
``recommender.cli.main`` turns every :class:`~recommender.errors.RecommenderError` into a one-line message
and exit status 2, with no traceback."""

from __future__ import annotations

COMMAND_MODULES: tuple[str, ...] = (
    "recommender.commands.spaces",
    "recommender.commands.catalog",
    "recommender.commands.feasibility",
    "recommender.commands.measure",
    "recommender.commands.optimize",
    "recommender.commands.train",
    "recommender.commands.recommend",
    "recommender.commands.export",
)
