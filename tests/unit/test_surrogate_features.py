"""Surrogate features: name-free, physically sane roofline numbers, vectorized paths agree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recommender.config import Hardware, Scenario, ServingConfig
from recommender.presets import get_preset
from recommender.surrogate.features import (
    EXTRA_COLUMNS,
    FEATURE_NAMES,
    build_features,
    engine_version_number,
    served_weight_dtype,
)

pytestmark = pytest.mark.unit


def _scenario(model: str = "Llama-3.1-8B", gpu: str = "H100", count: int = 1, workload=None) -> Scenario:
    return Scenario(model=model, hardware=Hardware(gpu=gpu, count=count),
                    workload=workload or get_preset("fixed", input_tokens=512, output_tokens=256, num_requests=64))


def test_columns_and_order() -> None:
    f = build_features(_scenario(), [ServingConfig(max_num_seqs=8)])
    assert list(f.columns) == list(FEATURE_NAMES + EXTRA_COLUMNS)
    assert not any("name" in c or "model" in c for c in FEATURE_NAMES)


def test_features_never_depend_on_the_model_name(tmp_path: Path) -> None:
    from importlib import resources

    raw = json.loads(resources.files("recommender.catalog").joinpath("models/llama-3.1-8b.json").read_text())
    raw.pop("_catalog")
    raw["_name_or_path"] = "acme/totally-different-name"
    folder = tmp_path / "renamed-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(raw))
    configs = [ServingConfig(max_num_seqs=s, tensor_parallel_size=tp) for s in (8, 64, 512) for tp in (1, 2)]
    a = build_features(_scenario("Llama-3.1-8B", count=2), configs)
    b = build_features(_scenario(str(folder), count=2), configs)
    pd.testing.assert_frame_equal(a, b)


def test_llama_8b_h100_roofline_is_sane() -> None:
    f = build_features(_scenario(), [ServingConfig(max_num_seqs=1), ServingConfig(max_num_seqs=64)]).iloc[0]
    # bf16 weights: 8.03 B params x 2 bytes over 3.35 TB/s ~ 4.8 ms per decode step at batch 1
    assert f["weight_bytes_per_gpu"] == pytest.approx(16.06e9, rel=0.01)
    assert f["t_decode_memory_s"] == pytest.approx(16.06e9 / 3.35e12, rel=0.05)
    assert f["t_decode_compute_s"] < f["t_decode_memory_s"] / 50  # decode at batch 1 is memory bound
    # prefill ~ 2 x 7.5 GFLOP per token at 989 TFLOP/s ~ 15 us per token
    assert 10e-6 < f["t_prefill_token_s"] < 25e-6
    # KV cache: 128 KiB per token in bf16 (32 layers x 8 KV heads x 128 x 2 x 2 bytes)
    assert f["kv_bytes_per_ctx_token"] == pytest.approx(131072)
    # ~85 GB x 0.9 - 16 GB weights - overhead leaves ~55-60 GB: ~400-460k tokens
    assert 3.5e5 < f["kv_capacity_tokens"] < 4.8e5
    assert f["batch_est"] == 1 and f["tensor_parallel_size"] == 1 and f["t_comm_s"] == 0
    assert f["throughput_est_tok_s"] == pytest.approx(1 / (f["t_decode_step_s"] + 2 * f["t_prefill_token_s"]), rel=1e-6)


def test_tensor_parallel_and_precision_change_physics() -> None:
    configs = [ServingConfig(tensor_parallel_size=1), ServingConfig(tensor_parallel_size=2),
               ServingConfig(precision="fp8"), ServingConfig(kv_cache_dtype="fp8")]
    f = build_features(_scenario(count=2), configs)
    assert f.loc[1, "weight_bytes_per_gpu"] == pytest.approx(f.loc[0, "weight_bytes_per_gpu"] / 2)
    assert f.loc[1, "t_comm_s"] > 0 and f.loc[0, "t_comm_s"] == 0
    assert f.loc[2, "weight_bytes_per_param"] == pytest.approx(1.0, rel=0.01)
    assert f.loc[2, "gpu_peak_tflops"] == pytest.approx(2 * f.loc[0, "gpu_peak_tflops"], rel=0.01)
    assert f.loc[3, "kv_bytes_per_ctx_token"] == pytest.approx(f.loc[0, "kv_bytes_per_ctx_token"] / 2)


def test_mxfp4_checkpoint_is_served_as_published() -> None:
    from recommender.catalog import get_model

    spec = get_model("gpt-oss-20b")
    assert served_weight_dtype(spec, "bf16") == "auto"
    f = build_features(_scenario("gpt-oss-20b"), [ServingConfig()])
    assert f.loc[0, "weight_bytes_per_param"] < 0.7  # mxfp4 experts, bf16 attention
    assert 0 < f.loc[0, "moe_expert_weight_frac"] < 1


def test_moe_touches_fewer_weights_at_small_batch() -> None:
    f = build_features(_scenario("Qwen3-30B-A3B"), [ServingConfig(max_num_seqs=1), ServingConfig(max_num_seqs=256)])
    small, big = f.iloc[0], f.iloc[1]
    assert small["t_decode_memory_s"] < 0.3 * big["t_decode_memory_s"]


def test_moe_overhead_terms_count_only_the_moe_layers() -> None:
    """Llama-4 Maverick interleaves dense and MoE layers (24 MoE of 48); Scout's 48 are all MoE."""
    mav = build_features(_scenario("Llama-4-Maverick-17B-128E", count=8), [ServingConfig(tensor_parallel_size=8)])
    scout = build_features(_scenario("Llama-4-Scout-17B-16E", count=8), [ServingConfig(tensor_parallel_size=8)])
    assert mav["num_layers"][0] == scout["num_layers"][0] == 48
    assert (mav["num_moe_layers"][0], scout["num_moe_layers"][0]) == (24, 48)
    assert mav["step_moe_layers_s"][0] == pytest.approx(0.5 * scout["step_moe_layers_s"][0])
    assert mav["step_batch_moe_layers_s"][0] == pytest.approx(0.5 * mav["step_batch_layers_s"][0])
    dense = build_features(_scenario("Llama-3.1-8B"), [ServingConfig()])
    assert dense["num_moe_layers"][0] == dense["step_moe_layers_s"][0] == 0


def test_expert_parallel_waits_for_the_busiest_gpu_at_small_batch() -> None:
    sc = _scenario("Qwen3-30B-A3B", count=4)
    cfgs = [ServingConfig(tensor_parallel_size=4, max_num_seqs=s, enable_expert_parallel=ep)
            for s in (2, 1024) for ep in (False, True)]
    f = build_features(sc, cfgs)
    tp_small, ep_small, tp_big, ep_big = (f.iloc[i] for i in range(4))
    # few tokens: the busiest GPU holds more touched experts than the even slice tensor parallelism reads
    assert ep_small["t_decode_memory_s"] > 1.2 * tp_small["t_decode_memory_s"]
    # the other GPUs wait: the mean utilisation (what power follows) stays below the busiest GPU's
    assert ep_small["util_memory"] < ep_small["t_decode_memory_s"] / ep_small["itl_est_s"]
    # every expert touched: both read all weights once
    assert ep_big["t_decode_memory_s"] == pytest.approx(tp_big["t_decode_memory_s"], rel=0.02)
    assert f["enable_expert_parallel"].tolist() == [0.0, 1.0, 0.0, 1.0]


def test_replicas_split_the_traffic() -> None:
    wl = get_preset("mlenergy-chat", num_requests=512)
    f = build_features(_scenario(count=4, workload=wl), [ServingConfig(replicas=1), ServingConfig(replicas=4)])
    assert f.loc[1, "concurrency"] == pytest.approx(f.loc[0, "concurrency"] / 4)
    assert list(f["replicas"]) == [1, 4] and list(f["num_gpus"]) == [1, 4]


def test_open_loop_batch_grows_with_rate() -> None:
    slow = _scenario(workload=get_preset("azure-conv-2023", rate_rps=0.5, num_requests=100))
    fast = _scenario(workload=get_preset("azure-conv-2023", rate_rps=20.0, num_requests=100))
    a = build_features(slow, [ServingConfig(max_num_seqs=256)]).iloc[0]
    b = build_features(fast, [ServingConfig(max_num_seqs=256)]).iloc[0]
    assert a["closed_loop"] == 0 and np.isnan(a["concurrency"])
    assert 1 <= a["batch_est"] < b["batch_est"] <= 256
    assert a["load_ratio"] < b["load_ratio"]


def test_dataframe_input_matches_objects_and_defaults_resolve() -> None:
    configs = [ServingConfig(max_num_seqs=s, precision=p, gpu_clock_mhz=c) for s in (None, 32) for p in ("bf16", "fp8")
               for c in (None, 1500)]
    frame = pd.DataFrame([c.model_dump() for c in configs])
    sc = _scenario()
    pd.testing.assert_frame_equal(build_features(sc, configs), build_features(sc, frame))
    f = build_features(sc, [ServingConfig()])
    assert f.loc[0, "max_num_seqs"] == 1024 and f.loc[0, "max_num_batched_tokens"] == 8192  # H100 defaults
    a100 = build_features(_scenario(gpu="A100-SXM-40GB"), [ServingConfig()])
    assert a100.loc[0, "max_num_seqs"] == 256


def test_engine_version_number() -> None:
    assert engine_version_number("0.11.1") == pytest.approx(11.01)
    assert engine_version_number("v0.5.4") == pytest.approx(5.04)
    assert np.isnan(engine_version_number("main"))
