from __future__ import annotations

import pytest

from recommender.config import Hardware, Scenario, ServingConfig
from recommender.presets import get_preset
from recommender.space import check_feasibility

pytestmark = pytest.mark.unit


def _scenario(model: str, gpu: str = "H100", count: int = 1, workload: str = "mlenergy-chat") -> Scenario:
    return Scenario(model=model, hardware=Hardware(gpu=gpu, count=count), workload=get_preset(workload))


def test_70b_bf16_does_not_fit_one_h100() -> None:
    f = check_feasibility(ServingConfig(), _scenario("Llama-3.1-70B"))
    assert not f.ok
    assert any("exceed" in r and "H100-SXM" in r for r in f.reasons)
    assert f.weight_bytes_per_gpu == pytest.approx(141e9, rel=0.01)


def test_70b_fits_with_tp4_and_fp8_tp2() -> None:
    sc = _scenario("Llama-3.1-70B", count=4)
    assert check_feasibility(ServingConfig(tensor_parallel_size=4), sc).ok
    assert check_feasibility(ServingConfig(tensor_parallel_size=2, precision="fp8"), sc).ok
    tight = check_feasibility(ServingConfig(tensor_parallel_size=2), sc)  # 70.5 GB/GPU of 77 GB usable
    assert tight.ok and tight.kv_capacity_tokens < 60_000 and tight.warnings
    f = check_feasibility(ServingConfig(tensor_parallel_size=2, gpu_memory_utilization=0.8), sc)
    assert not f.ok and "exceed" in f.reasons[0]


def test_8b_fits_one_h100_with_large_kv() -> None:
    f = check_feasibility(ServingConfig(max_num_seqs=256), _scenario("Llama-3.1-8B"))
    assert f.ok and not f.reasons
    # 85.5 GB x 0.9 - 16 GB weights - overhead, at 128 KiB/token: ~450k tokens
    assert 400_000 < f.kv_capacity_tokens < 500_000


def test_tp_must_divide_heads_and_fit_gpus() -> None:
    sc = _scenario("Llama-3.1-8B", count=2)
    f = check_feasibility(ServingConfig(tensor_parallel_size=4), sc)
    assert any("4 GPUs, but the scenario has 2" in r for r in f.reasons)
    f = check_feasibility(ServingConfig(tensor_parallel_size=2, replicas=2), sc)
    assert not f.ok
    qwen = _scenario("Qwen3-8B", count=8)  # 32 heads, 8 KV heads: tp 8 fine
    assert check_feasibility(ServingConfig(tensor_parallel_size=8), qwen).ok


def test_tp_not_dividing_heads() -> None:
    sc = _scenario("Llama-3.2-3B", count=16)  # 24 attention heads, 8 KV heads
    f = check_feasibility(ServingConfig(tensor_parallel_size=16), sc)
    assert any("does not divide the 24 attention heads" in r for r in f.reasons)


def test_batch_tokens_rules() -> None:
    sc = _scenario("Llama-3.1-8B", workload="azure-conv-2023")
    f = check_feasibility(ServingConfig(max_num_seqs=512, max_num_batched_tokens=256), sc)
    assert any("max_num_batched_tokens 256 < max_num_seqs 512" in r for r in f.reasons)
    f = check_feasibility(ServingConfig(enable_chunked_prefill=False, max_num_batched_tokens=2048), sc)
    assert any("without chunked prefill" in r for r in f.reasons)


def test_clock_and_power_range() -> None:
    sc = _scenario("Llama-3.1-8B")
    assert check_feasibility(ServingConfig(gpu_clock_mhz=1605, power_limit_w=500), sc).ok
    f = check_feasibility(ServingConfig(gpu_clock_mhz=2100, power_limit_w=800), sc)
    assert any("gpu_clock_mhz 2100 outside" in r for r in f.reasons)
    assert any("power_limit_w 800 outside" in r for r in f.reasons)


def test_batch_that_does_not_fit_is_a_warning_not_a_rejection() -> None:
    sc = _scenario("Llama-3.1-70B", count=4, workload="azure-conv-2023")
    f = check_feasibility(ServingConfig(tensor_parallel_size=4, max_num_seqs=1024), sc)
    assert f.ok and f.warnings and f.max_batch_by_kv < 1024


def test_vllm_defaults_resolved_per_gpu() -> None:
    from recommender.catalog import get_gpu

    assert ServingConfig().resolved(get_gpu("H100")).max_num_seqs == 1024
    assert ServingConfig().resolved(get_gpu("H100")).max_num_batched_tokens == 8192
    assert ServingConfig().resolved(get_gpu("A100-SXM-80GB")).max_num_seqs == 256
    assert ServingConfig().resolved(get_gpu("L40S")).max_num_batched_tokens == 2048


def test_expert_parallel_only_for_moe_on_several_gpus() -> None:
    moe, dense = _scenario("Qwen3-30B-A3B", count=2), _scenario("Llama-3.1-8B", count=2)
    assert check_feasibility(ServingConfig(tensor_parallel_size=2, enable_expert_parallel=True), moe).ok
    for cfg, sc in ((ServingConfig(tensor_parallel_size=2, enable_expert_parallel=True), dense),
                    (ServingConfig(tensor_parallel_size=1, enable_expert_parallel=True), moe)):
        f = check_feasibility(cfg, sc)
        assert not f.ok
        assert any("enable_expert_parallel" in r and "set it false" in r for r in f.reasons)


def test_vectorized_mask_equals_scalar_check() -> None:
    import pandas as pd

    from recommender.feasibility import feasible_mask
    from recommender.space import load_space

    space = load_space("vllm-default")
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for model, count in (("Llama-3.1-70B", 4), ("Llama-3.1-8B", 2), ("Qwen3-30B-A3B", 8)):
        sc = _scenario(model, count=count, workload="azure-conv-2023")
        configs = []
        for _ in range(300):
            t = study.ask()
            configs.append(space.suggest(t).resolved(sc.hardware.spec))
            study.tell(t, 0.0)
        frame = pd.DataFrame([c.model_dump() for c in configs])
        mask = feasible_mask(frame, sc)
        scalar = [check_feasibility(c, sc).ok for c in configs]
        assert mask.tolist() == scalar
        assert 0 < sum(scalar) < len(scalar)
