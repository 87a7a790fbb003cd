"""``recommender check``: is a config feasible in a scenario, and which configs of a space are."""

from __future__ import annotations

from typing import Optional

import typer

from recommender.commands._common import (
    GpuOpt,
    GpusOpt,
    ModelOpt,
    WorkloadOpt,
    build_config,
    build_scenario,
    build_workload,
    render_table,
)


def register(app: typer.Typer) -> None:
    @app.command("check")
    def check(
        model: ModelOpt,
        gpu: GpuOpt = "H100-SXM",
        gpus: GpusOpt = 1,
        workload: WorkloadOpt = "mlenergy-chat",
        space: Optional[str] = typer.Option(None, "--space", help="Check every config of this knob space instead."),
        config: Optional[str] = typer.Option(None, "--config", help="ServingConfig YAML file."),
        tp: Optional[int] = typer.Option(None, "--tp", help="tensor_parallel_size"),
        replicas: Optional[int] = typer.Option(None, "--replicas"),
        max_num_seqs: Optional[int] = typer.Option(None, "--max-num-seqs"),
        max_num_batched_tokens: Optional[int] = typer.Option(None, "--max-num-batched-tokens"),
        precision: Optional[str] = typer.Option(None, "--precision", help="bf16 or fp8"),
        kv_cache_dtype: Optional[str] = typer.Option(None, "--kv-cache-dtype", help="auto or fp8"),
        gpu_memory_utilization: Optional[float] = typer.Option(None, "--gpu-memory-utilization"),
        gpu_clock_mhz: Optional[int] = typer.Option(None, "--gpu-clock-mhz"),
        power_limit_w: Optional[float] = typer.Option(None, "--power-limit-w"),
        limit: int = typer.Option(40, "--limit", help="With --space: rows to print."),
    ) -> None:
        """Check feasibility (memory fit, TP vs heads and GPUs, clock/power range) before spending GPU time.

        Exit status 0 when the config (or at least one config of --space) is feasible, 1 when not.
        """
        from recommender.space import check_feasibility, load_space

        scen = build_scenario(model, gpu, gpus, build_workload(workload))
        m = scen.model_spec
        typer.echo(f"{m.name}: {m.total_params_b:.2f}B params ({m.active_params_b:.2f}B active) on "
                   f"{gpus} x {scen.hardware.gpu}; workload {scen.workload.name}; max_model_len "
                   f"{scen.effective_max_model_len()}")
        if space:
            s = load_space(space)
            rows, n_ok = [], 0
            if s.size() <= 5000:
                configs = s.grid()
            else:
                import optuna

                study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
                configs = []
                for _ in range(2000):
                    t = study.ask()
                    configs.append(s.suggest(t))
                    study.tell(t, 0.0)
                typer.echo(f"space {s.name} has {s.size()} configs; checking a random sample of 2000")
            for c in configs:
                f = check_feasibility(c, scen)
                n_ok += f.ok
                if len(rows) < limit:
                    rows.append({"config": c.short(), "feasible": f.ok, "why": "; ".join(f.reasons) or "-"})
            render_table(rows)
            typer.echo(f"{n_ok} of {len(configs)} configs of space {s.name} are feasible")
            raise typer.Exit(0 if n_ok else 1)
        cfg = build_config(config, {
            "tensor_parallel_size": tp, "replicas": replicas, "max_num_seqs": max_num_seqs,
            "max_num_batched_tokens": max_num_batched_tokens, "precision": precision,
            "kv_cache_dtype": kv_cache_dtype, "gpu_memory_utilization": gpu_memory_utilization,
            "gpu_clock_mhz": gpu_clock_mhz, "power_limit_w": power_limit_w,
        })
        f = check_feasibility(cfg, scen)
        typer.echo(f"config: {cfg.resolved(scen.hardware.spec).short()}")
        render_table([{
            "weights_gb_per_gpu": f.weight_bytes_per_gpu / 1e9, "overhead_gb": f.overhead_bytes_per_gpu / 1e9,
            "usable_gb": f.usable_bytes_per_gpu / 1e9, "kv_capacity_tokens": f.kv_capacity_tokens,
            "max_batch_by_kv": f.max_batch_by_kv,
        }])
        typer.echo("FEASIBLE" if f.ok else "INFEASIBLE")
        for r in f.reasons:
            typer.echo(f"  - {r}")
        for w in f.warnings:
            typer.echo(f"  warning: {w}")
        raise typer.Exit(0 if f.ok else 1)
