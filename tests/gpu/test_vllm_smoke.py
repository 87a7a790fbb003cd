"""Smoke test on a real GPU: a tiny catalog model with dummy weights on vLLM, 8 requests, energy > 0.

Run on the GPU machine after ``source /root/vllm_bundles/env.sh``:
``python3 -m pytest -m gpu tests/gpu/test_vllm_smoke.py -q``. Skipped without an NVML GPU or without vLLM.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu


def _gpu_name() -> str:
    from recommender.catalog import gpu_from_nvml_name
    from recommender.energy import gpu_inventory

    inv = gpu_inventory()
    try:
        return gpu_from_nvml_name(inv[0]["name"]).name if inv else "H100"
    except Exception:  # noqa: BLE001 - an unknown GPU still runs the smoke test as an H100-sized scenario
        return "H100"


def test_tiny_model_dummy_weights(tmp_path: Path) -> None:
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed for this interpreter")
    from recommender.config import Hardware, Scenario, ServingConfig
    from recommender.evaluators.vllm import VLLMEvaluator
    from recommender.presets import fixed
    from recommender.serving.loadgen import load_results

    scen = Scenario(model="Llama-3.2-1B", hardware=Hardware(gpu=_gpu_name(), count=1),
                    workload=fixed(64, 32, num_requests=8), max_model_len=512)
    ev = VLLMEvaluator(tmp_path / "ds", model_cache_dir=tmp_path / "models", warmup_requests=2, idle_power_s=1.0,
                       start_timeout_s=600)
    m = ev.evaluate(ServingConfig(max_num_seqs=8, gpu_memory_utilization=0.5), scen)
    assert m.ok, f"{m.failure_reason}: {m.failure_detail[-3000:]}"
    x = m.metrics
    assert x is not None
    assert (x.completed_requests, x.failed_requests, x.output_tokens, x.input_tokens) == (8, 0, 8 * 32, 8 * 64)
    assert x.ttft_p50_s is not None and 0 < x.ttft_p50_s < 10
    assert x.itl_p50_s is not None and 0 < x.itl_p50_s < 1
    assert x.tpot_p50_s is not None and 0 < x.tpot_p50_s < 1
    assert x.energy_j is not None and x.energy_j > 0
    assert x.avg_power_w is not None and x.avg_power_w > 10
    assert x.energy_per_output_token_j is not None and x.energy_per_output_token_j > 0
    assert x.idle_power_w is not None and x.idle_power_w > 0
    assert m.versions["vllm"] != "unknown" and m.versions.get("driver")
    results = load_results(tmp_path / "ds" / m.artifacts["requests"])
    assert all(r.output_tokens == 32 and len(r.token_times_s) >= 1 for r in results)
    assert (tmp_path / "ds" / m.artifacts["power_timeline"]).stat().st_size > 0
