"""Helpers shared by CLI commands: building scenarios/configs from flags and rendering tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from recommender.config import Hardware, Scenario, ServingConfig, parse
from recommender.errors import InputError
from recommender.workload import Workload

ModelOpt = Annotated[str, typer.Option("--model", help="Catalog model name, HF id, or path to a config.json.")]
GpuOpt = Annotated[str, typer.Option("--gpu", help="GPU type (see `recommender catalog gpus`).")]
GpusOpt = Annotated[int, typer.Option("--gpus", help="GPUs available in the scenario.")]
WorkloadOpt = Annotated[str, typer.Option("--workload", help="Workload preset (see README) or a Workload YAML file.")]


def load_yaml_file(path: str, field: str) -> dict[str, Any]:
    """Read a YAML mapping from ``path``; errors name ``field`` and the file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(field, path, "give an existing YAML file")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InputError(field, path, f"not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise InputError(field, path, "the file must hold a mapping of fields")
    return data


def build_workload(spec: str, num_requests: int | None = None, rate: float | None = None,
                   concurrency: int | None = None) -> Workload:
    """A preset (overrides passed to it) or a Workload YAML file (overrides applied to its fields).

    ``num_requests`` replaces the request count (and any duration); ``rate`` sets a Poisson/gamma rate;
    ``concurrency`` makes the workload closed-loop with that concurrency.

    Raises:
        InputError: unknown preset, an override the preset does not take, ``rate`` on a workload without
            Poisson/gamma arrivals, or an invalid resulting Workload.
    """
    from recommender.presets import get_preset

    if not spec.endswith((".yaml", ".yml")):
        overrides = {"num_requests": num_requests, "rate_rps": rate, "concurrency": concurrency}
        return get_preset(spec, **{k: v for k, v in overrides.items() if v is not None})
    data = load_yaml_file(spec, "--workload")
    arrivals = dict(data.get("arrivals") or {})
    if num_requests is not None:
        data["num_requests"], data["duration_s"] = num_requests, None
    if rate is not None:
        if arrivals.get("kind") not in ("poisson", "gamma"):
            raise InputError("--rate", rate, f"{spec} has {arrivals.get('kind')!r} arrivals; --rate needs poisson or "
                             "gamma arrivals (or use --concurrency for a closed loop)")
        arrivals["rate_rps"] = rate
    if concurrency is not None:
        arrivals = {"kind": "closed_loop", "concurrency": concurrency}
    data["arrivals"] = arrivals
    return parse(Workload, data, spec)


def build_scenario(model: str, gpu: str, gpus: int, workload: Workload, max_model_len: int | None = None) -> Scenario:
    """Validate the scenario flags into a Scenario (errors name the flag)."""
    hw = parse(Hardware, {"gpu": gpu, "count": gpus}, "--gpu/--gpus")
    return parse(Scenario, {"model": model, "hardware": hw, "workload": workload, "max_model_len": max_model_len},
                 "scenario")


def build_config(config_file: str | None, flags: dict[str, Any]) -> ServingConfig:
    """A ServingConfig from an optional YAML file, overridden by the knob flags that were given."""
    data: dict[str, Any] = load_yaml_file(config_file, "--config") if config_file else {}
    data.update({k: v for k, v in flags.items() if v is not None})
    return parse(ServingConfig, data, config_file or "config")


def render_table(rows: Sequence[dict[str, Any]], title: str | None = None) -> None:
    """Print rows as an aligned text table (the CLI's output, not logging)."""
    if title:
        typer.echo(title)
    if not rows:
        typer.echo("(none)")
        return
    cols = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    typer.echo("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    typer.echo("  ".join("-" * w for w in widths))
    for row in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
