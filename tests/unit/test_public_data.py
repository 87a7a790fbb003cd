"""Public-data adapters parse small excerpts of each source (tests/unit/data/public) correctly."""

from __future__ import annotations

from pathlib import Path

import pytest

from recommender.errors import InputError
from recommender.surrogate.public_data import (
    MODEL_MAP,
    PUBLIC_SOURCES,
    load_llm_inference_bench,
    load_mlenergy_v2,
    load_mlenergy_v3,
    load_public,
    load_splitwise,
)

pytestmark = pytest.mark.unit
ROOT = Path(__file__).parent / "data" / "public"


def test_mlenergy_v3_rows_units_and_skips() -> None:
    load = load_mlenergy_v3(ROOT)
    assert load.rows_read == 9
    assert load.skipped["vision task (image/video chat)"] == 1
    assert load.skipped["architecture not in catalog"] == 1
    assert len(load.measurements) == 7
    m = next(x for x in load.measurements if x.config.max_num_seqs == 8 and x.scenario.model == "Llama-3.1-8B")
    assert m.provenance == "public" and m.source.endswith("llm_configs_flat.csv")
    assert m.scenario.hardware.gpu == "H100-SXM"
    assert m.metrics is not None and m.steady_state is not None
    # ms -> s, whole-server J/token and watts as published
    assert m.metrics.itl_p50_s == pytest.approx(m.metrics.itl_p50_s)  # present
    assert 0.001 < m.metrics.itl_p50_s < 0.1
    assert m.metrics.energy_per_output_token_j == pytest.approx(
        m.metrics.avg_power_w / m.metrics.throughput_output_tok_s, rel=1e-6
    )
    assert m.versions["vllm"] == "0.11.1"
    fp8 = [x for x in load.measurements if x.config.precision == "fp8"]
    assert fp8 and fp8[0].config.tensor_parallel_size == fp8[0].scenario.hardware.count
    assert "expert parallel" in fp8[0].notes
    # the export's TP 1 x EP n MoE rows ran vLLM's expert parallelism over the n GPUs
    assert fp8[0].config.enable_expert_parallel
    assert not m.config.enable_expert_parallel


def test_mlenergy_v3_workloads_describe_the_task() -> None:
    load = load_mlenergy_v3(ROOT)
    gpqa = next(x for x in load.measurements if x.scenario.workload.name == "mlenergy-v3-gpqa")
    chat = next(x for x in load.measurements if x.scenario.workload.name == "mlenergy-v3-lm-arena-chat")
    out_mean = lambda m: m.scenario.workload.stats()["output_tokens_mean"]  # noqa: E731
    assert out_mean(gpqa) > 5 * out_mean(chat)
    from recommender.presets import mlenergy_chat

    assert chat.scenario.workload.input_tokens == mlenergy_chat().input_tokens


def test_mlenergy_v2_energy_per_token_and_skips() -> None:
    load = load_mlenergy_v2(ROOT)
    assert load.skipped["vision model (mllm)"] == 1
    assert load.skipped["architecture not in catalog"] == 1  # Phi-3-small: block-sparse attention, not modelled
    assert len(load.measurements) == 3
    gemma = [m for m in load.measurements if m.scenario.model == "Gemma-2-2B"]
    assert len(gemma) == 1 and gemma[0].notes.startswith("google/gemma-2-2b-it")
    assert gemma[0].scenario.hardware.gpu == "A100-SXM-40GB"
    m = load.measurements[0]
    assert m.versions["vllm"] == "0.5.4"
    assert m.metrics is not None and m.metrics.tpot_mean_s is not None
    met = m.metrics
    assert met.avg_power_w == pytest.approx(met.energy_per_output_token_j * met.throughput_output_tok_s)


def test_llm_inference_bench_conversions() -> None:
    load = load_llm_inference_bench(ROOT)
    assert load.skipped["other engine or accelerator"] == 1
    assert load.skipped["architecture not in catalog"] == 1
    assert load.skipped["int8 weights or KV (not a knob)"] == 1
    assert load.skipped["duplicate of a richer row"] == 1  # the power row wins over All_results
    power = [m for m in load.measurements if m.metrics and m.metrics.avg_power_w is not None]
    assert len(power) == 1
    p = power[0]
    # milliwatts -> watts, total tokens/s -> output tokens/s (in = out)
    assert 100 < p.metrics.avg_power_w < 700  # type: ignore[union-attr]
    assert p.metrics.throughput_output_tok_s == pytest.approx(p.metrics.throughput_total_tok_s / 2)  # type: ignore[union-attr]
    fp8 = [m for m in load.measurements if m.config.precision == "fp8"]
    assert len(fp8) == 1 and fp8[0].config.kv_cache_dtype == "fp8"
    ttft = [m for m in load.measurements if m.metrics and m.metrics.ttft_p50_s is not None]
    assert len(ttft) == 1 and ttft[0].scenario.workload.stats()["output_tokens_mean"] == 1
    by_model = {m.scenario.model for m in load.measurements}
    assert by_model == {"Llama-3.1-8B", "Llama-2-7B"}  # DeciLM (per-layer KV heads) is the skipped row
    llama2 = next(m for m in load.measurements if m.scenario.model == "Llama-2-7B")
    assert llama2.notes == "meta-llama/Llama-2-7b-hf" and llama2.config.tensor_parallel_size == 1


def test_splitwise_uses_only_latency_and_excludes_pcap() -> None:
    load = load_splitwise(ROOT)
    assert load.skipped["synthetic power-capped rows (pcap)"] == 1
    assert load.skipped["architecture not in catalog"] == 0
    assert load.skipped["repeat runs averaged"] == 1
    assert sum(v for k, v in load.skipped.items() if k.startswith("batch 64")) == 1
    assert len(load.measurements) == 3
    bloom = next(x for x in load.measurements if x.scenario.model == "BLOOM-176B")
    assert bloom.config.tensor_parallel_size == bloom.scenario.hardware.count == 8
    m = next(x for x in load.measurements if x.scenario.model == "Llama-3.1-70B"
             and x.scenario.workload.arrivals.concurrency == 1)  # type: ignore[union-attr]
    assert m.metrics is not None
    assert m.metrics.ttft_p50_s == pytest.approx((85.39954997831956 + 83.41073204064742) / 2e3)
    assert m.metrics.itl_p50_s == pytest.approx((36.97136075164404 + 37.05370054015611) / 2e3)
    assert m.metrics.throughput_output_tok_s is None and m.metrics.avg_power_w is None


def test_rows_of_an_unmapped_architecture_are_counted_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(MODEL_MAP, "bloom-176b")
    load = load_splitwise(ROOT)
    assert load.skipped["architecture not in catalog"] == 1
    assert {m.scenario.model for m in load.measurements} == {"Llama-3.1-70B"}


def test_load_public_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--public"):
        load_public(["mlenergy-v9"], ROOT)
    with pytest.raises(InputError, match="--shared-data"):
        load_public(["mlenergy-v3"], tmp_path)
    assert set(PUBLIC_SOURCES) == {"mlenergy-v3", "mlenergy-v2", "llm-inference-bench", "splitwise"}


def test_model_map_targets_exist_in_catalog() -> None:
    from recommender.catalog import get_model

    for hf_id, (name, precision, _) in MODEL_MAP.items():
        assert get_model(name).name == name, hf_id
        assert precision in ("bf16", "fp8")
        assert precision == "fp8" or "fp8" not in hf_id.lower(), hf_id  # an FP8 checkpoint runs as fp8
