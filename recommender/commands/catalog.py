"""``recommender catalog``: the GPUs and model architectures the tool knows."""

from __future__ import annotations

import typer

from recommender.commands._common import render_table


def register(app: typer.Typer) -> None:
    cat = typer.Typer(help="GPU specs and model architectures in the catalog.", no_args_is_help=True)

    @cat.command("gpus")
    def gpus() -> None:
        """List GPUs with memory, bandwidth, peak FLOP/s, TDP and clock range."""
        from recommender.catalog import list_gpus

        render_table([{
            "gpu": g.name, "memory_gb": g.memory_gb, "hbm_tb_s": g.memory_bandwidth_tb_s,
            "bf16_tflops": g.peak_bf16_tflops, "fp8_tflops": g.peak_fp8_tflops, "tdp_w": g.tdp_w,
            "clock_mhz": f"{g.sm_clock_min_mhz:g}-{g.sm_clock_max_mhz:g}",
            "power_limit_w": f"{g.power_limit_min_w:g}-{g.power_limit_max_w:g}",
        } for g in list_gpus()])

    @cat.command("models")
    def models() -> None:
        """List model architectures (any local config.json also works wherever a model is asked for)."""
        from recommender.catalog import list_models

        render_table([{
            "model": m.name, "hf_id": m.hf_id, "arch": m.architecture, "params_b": round(m.total_params_b, 2),
            "active_b": round(m.active_params_b, 2), "layers": m.num_layers, "hidden": m.hidden_size,
            "heads/kv": f"{m.num_attention_heads}/{m.num_kv_heads}", "kv_kib_per_tok_bf16":
            round(m.kv_cache_bytes_per_token("bf16") / 1024, 1),
        } for m in list_models()])

    app.add_typer(cat, name="catalog")
