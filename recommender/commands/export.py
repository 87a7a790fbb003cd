"""``recommender export``: turn a saved recommendation (JSON report) into a vLLM config or a Kubernetes manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export_cmd(
        report: Path = typer.Argument(..., help="A recommendation JSON (from `recommender recommend --export json`)."),
        fmt: str = typer.Option("vllm", "--format", "-f", help="vllm (vllm serve --config YAML), k8s, or json."),
        out: Optional[Path] = typer.Option(None, "--out", help="Output file (default: stdout)."),
        name: str = typer.Option("vllm", "--name", help="Kubernetes object name."),
        image: Optional[str] = typer.Option(None, "--image", help="Container image for k8s."),
        model: Optional[str] = typer.Option(None, "--model-ref", help="Model id/path to serve (default: the scenario's)."),
    ) -> None:
        """Export the recommended config of a saved report."""
        from pydantic import ValidationError

        from recommender.config import validation_to_input_error
        from recommender.errors import InputError
        from recommender.export import DEFAULT_IMAGE, export
        from recommender.measurement import Recommendation

        if not report.is_file():
            raise InputError("REPORT", str(report), "give an existing recommendation JSON file")
        try:
            rec = Recommendation.model_validate_json(report.read_text())
        except ValidationError as e:
            raise validation_to_input_error(e, str(report)) from None
        text = export(rec, fmt, name=name, image=image or DEFAULT_IMAGE, model=model)
        if out:
            out.write_text(text)
            typer.echo(f"wrote {out}")
        else:
            typer.echo(text, nl=False)
