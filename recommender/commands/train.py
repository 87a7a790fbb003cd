"""``recommender train``: fit the surrogate on measurement files and public datasets, report, save."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recommender.errors import InputError


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to ``app``."""

    @app.command("train")
    def train(
        measurements: Annotated[list[Path] | None, typer.Argument(
            help="Measurement JSON/JSONL files or folders (ours); may be empty to train on public data only.",
        )] = None,
        public: Annotated[str, typer.Option(
            "--public", help="Comma-separated public datasets: mlenergy-v3, mlenergy-v2, llm-inference-bench, "
            "splitwise; 'none' for none.",
        )] = "mlenergy-v3,llm-inference-bench,splitwise",
        shared_data: Annotated[Path, typer.Option("--shared-data", help="Folder of the public data.")] = Path(
            "../shared/data"
        ),
        out: Annotated[Path, typer.Option("--out", help="Folder for <name>.skops and <name>.card.json.")] = Path(
            "models"
        ),
        name: Annotated[str, typer.Option("--name", help="Artifact name.")] = "surrogate-v1",
        validate: Annotated[bool, typer.Option(
            "--validate/--no-validate",
            help="Leave-one-model-out / leave-one-workload-out validation (calibrates the intervals).",
        )] = True,
    ) -> None:
        """Train the surrogate; print the leave-one-model-out and leave-one-workload-out errors; save it."""
        from recommender.surrogate.build import format_table, train_surrogate
        from recommender.surrogate.public_data import PUBLIC_SOURCES

        names = [] if public.strip().lower() in ("", "none") else [p.strip() for p in public.split(",") if p.strip()]
        for n in names:
            if n not in PUBLIC_SOURCES:
                raise InputError("--public", n, f"use some of {', '.join(PUBLIC_SOURCES)} (comma-separated) or none")
        if not names and not measurements:
            raise InputError("measurements", "", "give measurement files/folders or --public datasets to train on")
        result = train_surrogate(list(measurements or []), names, shared_data, out, name, validate=validate)
        for line in result.source_lines:
            typer.echo(line)
        s = result.data_summary
        typer.echo(f"training rows: {s['rows']} ({s['own_measurements']} own measurements), "
                   f"data sha256 {s['sha256'][:16]}...")
        if validate:
            typer.echo("\nleave-one-model-out (percent error of the prediction):")
            typer.echo(format_table(result.lomo))
            typer.echo("\nleave-one-workload-out:")
            typer.echo(format_table(result.lowo))
        typer.echo(f"\ntrained in {result.seconds:.1f} s")
        if result.paths:
            typer.echo(f"saved {result.paths[0]} and {result.paths[1]}")
