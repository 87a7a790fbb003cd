"""``recommender measure``: run one config on a real vLLM server and record energy and latency."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

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
from recommender.errors import InputError

DEFAULT_OUT = "runs/measurements"


def _rows(measurements: list[Any]) -> list[dict[str, Any]]:
    rows = []
    for m in measurements:
        for window, met in (("whole", m.metrics), ("steady", m.steady_state)):
            if met is None and window == "steady":
                continue
            ms = (lambda v: None if v is None else v * 1e3)  # noqa: E731 - table cells in ms
            rows.append({
                "repeat": m.notes.split(";")[0].removeprefix("repeat ") if m.notes else "-",
                "status": m.status if m.ok else f"failed: {m.failure_reason}", "window": window,
                "J/tok": met and met.energy_per_output_token_j, "avg_W": met and met.avg_power_w,
                "tok/s": met and met.throughput_output_tok_s, "batch": met and met.avg_batch_size,
                "ttft_p50_ms": met and ms(met.ttft_p50_s), "ttft_p99_ms": met and ms(met.ttft_p99_s),
                "tpot_p50_ms": met and ms(met.tpot_p50_s), "itl_p99_ms": met and ms(met.itl_p99_s),
                "dur_s": met and met.duration_s,
            })  # fmt: skip
    return rows


def register(app: typer.Typer) -> None:
    @app.command("measure")
    def measure(
        model: ModelOpt,
        gpu: GpuOpt = "H100-SXM",
        gpus: GpusOpt = 1,
        gpu_indices: Optional[str] = typer.Option(None, "--gpu-indices", help="NVML indices to use, e.g. '0,1' "
                                                  "(default 0..tp*replicas-1)."),
        workload: WorkloadOpt = "mlenergy-chat",
        num_requests: Optional[int] = typer.Option(None, "--num-requests", help="Override the request count."),
        rate: Optional[float] = typer.Option(None, "--rate", help="Override the arrival rate (requests/s)."),
        concurrency: Optional[int] = typer.Option(None, "--concurrency", help="Closed loop with this concurrency."),
        max_model_len: Optional[int] = typer.Option(None, "--max-model-len", help="Context cap (default: from "
                                                    "the workload)."),
        config: Optional[str] = typer.Option(None, "--config", help="ServingConfig YAML file; flags override it."),
        tp: Optional[int] = typer.Option(None, "--tp", help="tensor_parallel_size"),
        replicas: Optional[int] = typer.Option(None, "--replicas", help="Independent servers (tp GPUs each)."),
        max_num_seqs: Optional[int] = typer.Option(None, "--max-num-seqs", help="Batch cap (default: vLLM's)."),
        max_num_batched_tokens: Optional[int] = typer.Option(None, "--max-num-batched-tokens"),
        precision: Optional[str] = typer.Option(None, "--precision", help="bf16 or fp8 (weights)."),
        kv_cache_dtype: Optional[str] = typer.Option(None, "--kv-cache-dtype", help="auto or fp8."),
        chunked_prefill: Optional[bool] = typer.Option(None, "--chunked-prefill/--no-chunked-prefill"),
        prefix_caching: Optional[bool] = typer.Option(None, "--prefix-caching/--no-prefix-caching"),
        enforce_eager: Optional[bool] = typer.Option(None, "--enforce-eager/--cuda-graphs",
                                                     help="Disable CUDA graphs."),
        expert_parallel: Optional[bool] = typer.Option(None, "--expert-parallel/--no-expert-parallel",
                                                       help="MoE: experts split whole over the tp GPUs."),
        gpu_memory_utilization: Optional[float] = typer.Option(None, "--gpu-memory-utilization"),
        gpu_clock_mhz: Optional[int] = typer.Option(None, "--gpu-clock-mhz", help="Lock the SM clock (needs "
                                                    "--allow-gpu-tuning)."),
        power_limit_w: Optional[float] = typer.Option(None, "--power-limit-w", help="Set the power limit (needs "
                                                      "--allow-gpu-tuning)."),
        allow_gpu_tuning: bool = typer.Option(False, "--allow-gpu-tuning", help="Let this run change GPU clocks "
                                              "and power limits (restored afterwards)."),
        repeats: int = typer.Option(1, "--repeats", min=1, help="Runs of the workload; one measurement each."),
        out: str = typer.Option(DEFAULT_OUT, "--out", help="Dataset root for measurements."),
        dummy_weights: bool = typer.Option(True, "--dummy-weights/--real-weights", help="Random weights from a "
                                           "generated model folder, or the model's real weights."),
        slo: Optional[str] = typer.Option(None, "--slo", help="e.g. 'ttft:p99<=500ms,tpot:p90<=50ms' for "
                                          "attainment and goodput."),
        require_energy: bool = typer.Option(True, "--require-energy/--no-require-energy", help="Refuse to run "
                                            "without NVML energy (off: latency only)."),
        start_timeout_s: Optional[float] = typer.Option(None, "--start-timeout-s", help="Server start limit "
                                                        "(default 600 s)."),
        vllm_cmd: Optional[str] = typer.Option(None, "--vllm-cmd", help="Command that runs `vllm serve` "
                                               "(default: RECOMMENDER_VLLM_CMD or this Python's vllm)."),
    ) -> None:
        """Measure one serving config: start vLLM, send the workload, record energy (NVML) and latency.

        Each repeat is saved under --out with its per-request records, power timeline and server log.

        The table shows the whole run and the steady state (batch saturated, queue non-empty).

        Example: recommender measure --model Llama-3.1-8B --workload fixed --num-requests 192 --max-num-seqs 64
        """
        from recommender.evaluators.vllm import VLLMEvaluator
        from recommender.serving.settings import parse_command
        from recommender.slo import SLO

        wl = build_workload(workload, num_requests, rate, concurrency)
        scen = build_scenario(model, gpu, gpus, wl, max_model_len)
        cfg = build_config(config, {
            "tensor_parallel_size": tp, "replicas": replicas, "max_num_seqs": max_num_seqs,
            "max_num_batched_tokens": max_num_batched_tokens, "precision": precision,
            "kv_cache_dtype": kv_cache_dtype, "enable_chunked_prefill": chunked_prefill,
            "enable_prefix_caching": prefix_caching, "enforce_eager": enforce_eager,
            "enable_expert_parallel": expert_parallel, "gpu_memory_utilization": gpu_memory_utilization,
            "gpu_clock_mhz": gpu_clock_mhz, "power_limit_w": power_limit_w,
        })  # fmt: skip
        indices = None
        if gpu_indices:
            try:
                indices = [int(x) for x in gpu_indices.split(",") if x.strip()]
            except ValueError:
                raise InputError("--gpu-indices", gpu_indices, "give comma-separated integers, e.g. '0,1'") from None
        root = Path(out)
        ev = VLLMEvaluator(
            root, gpu_indices=indices, repeats=repeats, dummy_weights=dummy_weights, require_energy=require_energy,
            allow_gpu_tuning=allow_gpu_tuning, slo=SLO.parse(slo, "--slo") if slo else None,
            vllm_command=parse_command(vllm_cmd, "--vllm-cmd") if vllm_cmd else None, start_timeout_s=start_timeout_s,
        )  # fmt: skip
        typer.echo(f"measuring {cfg.short()} | {scen.model} on {scen.hardware.count} x {scen.hardware.gpu} | "
                   f"workload {wl.name} ({len(wl.sample())} requests) x {repeats}")
        measurements = ev.measure_many([cfg], scen)[0]
        render_table(_rows(measurements))
        for m in measurements:
            if not m.ok:
                typer.echo(f"failed ({m.failure_reason}): {m.failure_detail[-1500:]}", err=True)
        typer.echo(f"saved {len(measurements)} measurement(s) under {root / scen.key()}")
        raise typer.Exit(0 if any(m.ok for m in measurements) else 1)
