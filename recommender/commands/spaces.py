"""``recommender spaces``: list and show validated knob spaces."""

from __future__ import annotations

import typer

from recommender.commands._common import render_table


def register(app: typer.Typer) -> None:
    spaces = typer.Typer(help="Knob spaces (search_spaces/*.yaml): list, show and validate.", no_args_is_help=True)

    @spaces.command("list")
    def list_cmd() -> None:
        """List the bundled knob spaces."""
        from recommender.space import list_spaces, load_space

        render_table([{"name": n, "configs": load_space(n).size(), "description": load_space(n).spec.description}
                      for n in list_spaces()])

    @spaces.command("show")
    def show(space: str = typer.Argument(..., help="A bundled space name (smoke, vllm-default) or a YAML path.")) -> None:
        """Validate a knob space and print its knobs, ranges, restart needs and flag mappings."""
        from recommender.space import load_space

        s = load_space(space)
        typer.echo(f"space {s.name} ({s.source}), hash {s.hash()}, {s.size()} configs in the full grid")
        if s.spec.description:
            typer.echo(s.spec.description)
        render_table(s.describe())

    app.add_typer(spaces, name="spaces")
