"""``recommender recommend``: the least-energy config meeting an SLO, from the shipped surrogate."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from recommender.commands._common import GpuOpt, GpusOpt, ModelOpt, WorkloadOpt, render_table


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1e3:.1f}"


def register(app: typer.Typer) -> None:
    @app.command("recommend")
    def recommend(
        model: ModelOpt,
        gpu: GpuOpt = "H100-SXM",
        gpus: GpusOpt = 1,
        workload: WorkloadOpt = "azure-conv-2023",
        rate: Optional[float] = typer.Option(None, "--rate", help="Override the preset's arrival rate (req/s)."),
        slo: str = typer.Option("ttft:p99<=2s,tpot:p90<=60ms", "--slo",
                                help="Targets 'metric:percentile<=limit', comma-separated (ttft/tpot/itl; p50/p90/p99)."),
        objective: Optional[str] = typer.Option(None, "--objective", help="Latency objective (default: tightest target)."),
        space: str = typer.Option("recommend", "--space", help="Knob space to score."),
        risk: str = typer.Option("guarded", "--risk", help="Which value must meet the SLO: 'guarded' (one-sided 75% "
                                 "upper bound, validated by benchmarks/surrogate_lomo.py), 'point' (predicted value) "
                                 "or 'upper' (upper end of the 80% interval)."),
        export: Optional[str] = typer.Option(None, "--export", help="Also write the pick as vllm, k8s or json."),
        out: Optional[Path] = typer.Option(None, "--out", help="File for --export (default: stdout)."),
        plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG of the energy/latency Pareto set."),
        top: int = typer.Option(8, "--top", help="Pareto rows to print."),
    ) -> None:
        """Score every feasible config with the surrogate (milliseconds, no GPU) and pick the least-energy one
        meeting every SLO target; compare with vLLM's default config and the fastest config."""
        import time

        from recommender import api
        from recommender.commands._common import build_workload

        w = build_workload(workload, rate=rate)
        scen = api.scenario(model, gpu, gpus, w)
        t_load = time.perf_counter()
        sur = api.load_surrogate()
        t0 = time.perf_counter()
        rec, frame = api.explore(scen, slo, space=space, objective=objective, risk=risk, surrogate=sur)
        dt = time.perf_counter() - t0
        typer.echo(f"surrogate {getattr(sur, 'source', '')} loaded in {t0 - t_load:.1f} s")
        typer.echo(f"{scen.model} on {gpus} x {scen.hardware.gpu}, workload {scen.workload.name}; SLO {rec.slo}")
        typer.echo(f"scored {rec.evaluated} feasible configs of space '{space}' in {dt * 1e3:.0f} ms; "
                   f"{rec.feasible} meet the SLO (objective {rec.objective})")
        rows = []
        for label, m in (("recommended", rec.chosen), ("vLLM default", rec.default), ("fastest", rec.fastest)):
            if m is None:
                continue
            lo_hi = m.intervals.get("energy_per_output_token_j")
            rows.append({
                "": label, "config": m.config.short(),
                "J/token": m.value("energy_per_output_token_j"),
                "J/token 80% interval": f"{lo_hi[0]:.3g}-{lo_hi[1]:.3g}" if lo_hi else "-",
                "TTFT p99 ms": _ms(m.value("ttft_p99_s")), "TPOT p90 ms": _ms(m.value("tpot_p90_s")),
                "tok/s": m.value("throughput_output_tok_s"), "provenance": m.provenance,
            })
        render_table(rows)
        if rec.chosen is None:
            typer.echo(f"no recommendation: {rec.reason}")
        else:
            def pct(x: float | None) -> str:
                return "-" if x is None else f"{x * 100:.0f}%"

            typer.echo(f"energy saved: {pct(rec.savings_vs_default_frac)} vs vLLM default, "
                       f"{pct(rec.savings_vs_fastest_frac)} vs the fastest config")
            if rec.chosen.notes:
                typer.echo(f"note: {rec.chosen.notes}")
        if rec.pareto:
            step = max(1, len(rec.pareto) // top)
            render_table([{
                "config": m.config.short(), "J/token": m.value("energy_per_output_token_j"),
                f"{rec.objective.removesuffix('_s')} ms": _ms(m.value(rec.objective)),
                "tok/s": m.value("throughput_output_tok_s"),
            } for m in rec.pareto[::step]], title="Pareto set (SLO-meeting, least energy per latency):")
        if plot is not None:
            from recommender.plots import pareto_png

            pareto_png(frame, rec, plot)
            typer.echo(f"plot: {plot}")
        if export:
            text = api.export(rec, export)
            if out:
                out.write_text(text)
                typer.echo(f"{export} export: {out}")
            else:
                typer.echo(text)
