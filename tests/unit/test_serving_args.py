"""argv / YAML building for ``vllm serve`` and the replica GPU plan."""

from __future__ import annotations

import pytest

from recommender.config import Hardware, Scenario, ServingConfig
from recommender.errors import InputError
from recommender.presets import get_preset
from recommender.serving.args import (
    build_serve_args,
    flag_table,
    parse_version,
    plan_replica_gpus,
    to_vllm_config_yaml,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Scenario(model="Llama-3.1-8B", hardware=Hardware(gpu="H100", count=4),
                    workload=get_preset("fixed", num_requests=16), max_model_len=4096)


def _opt(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_defaults(scenario: Scenario) -> None:
    argv = build_serve_args(ServingConfig(), scenario, "/m", 8011)
    assert argv[0] == "/m"
    assert _opt(argv, "--tensor-parallel-size") == "1"
    assert _opt(argv, "--dtype") == "bfloat16"
    assert "--quantization" not in argv
    assert _opt(argv, "--kv-cache-dtype") == "auto"
    assert "--enable-chunked-prefill" in argv and "--enable-prefix-caching" in argv
    assert "--enforce-eager" not in argv and "--no-enforce-eager" not in argv
    assert "--max-num-seqs" not in argv and "--max-num-batched-tokens" not in argv
    assert _opt(argv, "--gpu-memory-utilization") == "0.9"
    assert _opt(argv, "--max-model-len") == "4096"
    assert _opt(argv, "--load-format") == "dummy"
    assert (_opt(argv, "--host"), _opt(argv, "--port")) == ("127.0.0.1", "8011")
    assert _opt(argv, "--served-model-name") == "model"
    assert "--no-enable-log-requests" in argv and "--disable-uvicorn-access-log" in argv
    assert "--disable-log-requests" not in argv  # removed in vLLM 0.17
    assert all(isinstance(a, str) for a in argv)


def test_every_knob(scenario: Scenario) -> None:
    cfg = ServingConfig(tensor_parallel_size=2, max_num_seqs=64, max_num_batched_tokens=4096,
                        enable_chunked_prefill=False, precision="fp8", kv_cache_dtype="fp8",
                        enable_prefix_caching=False, enforce_eager=True, gpu_memory_utilization=0.85,
                        gpu_clock_mhz=1500, power_limit_w=500)
    argv = build_serve_args(cfg, scenario, "/m", 9000, dummy_weights=False, skip_tokenizer_init=True,
                            extra_args=["--seed", "1"])
    assert _opt(argv, "--tensor-parallel-size") == "2"
    assert _opt(argv, "--max-num-seqs") == "64"
    assert _opt(argv, "--max-num-batched-tokens") == "4096"
    assert "--no-enable-chunked-prefill" in argv and "--enable-chunked-prefill" not in argv
    assert (_opt(argv, "--dtype"), _opt(argv, "--quantization")) == ("bfloat16", "fp8")
    assert _opt(argv, "--kv-cache-dtype") == "fp8"
    assert "--no-enable-prefix-caching" in argv
    assert "--enforce-eager" in argv
    assert _opt(argv, "--gpu-memory-utilization") == "0.85"
    assert "--load-format" not in argv
    assert "--skip-tokenizer-init" in argv
    assert argv[-2:] == ["--seed", "1"]
    joined = " ".join(argv)
    assert "1500" not in joined and "500" not in joined.replace("0.85", "")  # GPU knobs are not vLLM flags


def test_expert_parallel_flag_only_when_on(scenario: Scenario) -> None:
    assert "--enable-expert-parallel" not in build_serve_args(ServingConfig(), scenario, "/m", 1)
    on = ServingConfig(tensor_parallel_size=2, enable_expert_parallel=True)
    assert "--enable-expert-parallel" in build_serve_args(on, scenario, "/m", 1)
    assert to_vllm_config_yaml(on, scenario)["enable-expert-parallel"] is True
    assert on.short().endswith(" ep") and on.engine_key() != ServingConfig(tensor_parallel_size=2).engine_key()


def test_flag_table_is_versioned_data() -> None:
    assert flag_table("0.9.2")["quiet-request-log"] == ("--disable-log-requests",)
    assert flag_table("0.26.0")["quiet-request-log"] == ("--no-enable-log-requests",)
    assert parse_version("0.11.1rc2.dev5") == (0, 11, 1)
    with pytest.raises(InputError):
        parse_version("latest")


def test_old_version_spelling(scenario: Scenario) -> None:
    argv = build_serve_args(ServingConfig(), scenario, "/m", 1, vllm_version="0.9.2")
    assert "--disable-log-requests" in argv


def test_yaml_long_form(scenario: Scenario) -> None:
    cfg = ServingConfig(max_num_seqs=128, precision="fp8", enforce_eager=True)
    y = to_vllm_config_yaml(cfg, scenario, served_model_name="llama")
    assert y["model"] == "meta-llama/Llama-3.1-8B"  # the catalog's hub id, ready for `vllm serve --config`
    assert to_vllm_config_yaml(cfg, scenario, model="/models/llama")["model"] == "/models/llama"
    assert y["served-model-name"] == "llama"
    assert y["max-num-seqs"] == 128 and "max-num-batched-tokens" not in y
    assert y["quantization"] == "fp8" and y["dtype"] == "bfloat16"
    assert y["enforce-eager"] is True and y["enable-chunked-prefill"] is True
    assert y["max-model-len"] == 4096
    assert "load-format" not in y and "port" not in y
    assert to_vllm_config_yaml(cfg, scenario, dummy_weights=True, port=8000)["load-format"] == "dummy"
    # argv and YAML come from the same options: every YAML engine key appears as a flag
    argv = build_serve_args(cfg, scenario, "/m", 1)
    for key, value in y.items():
        if key in ("model", "served-model-name"):
            continue
        if isinstance(value, bool):
            assert (f"--{key}" if value else f"--no-{key}") in argv
        else:
            assert _opt(argv, f"--{key}") == str(value)


def test_replica_groups() -> None:
    assert plan_replica_gpus(2, 2) == [[0, 1], [2, 3]]
    assert plan_replica_gpus(1, 3, [4, 5, 6, 7]) == [[4], [5], [6]]
    assert plan_replica_gpus(4, 1) == [[0, 1, 2, 3]]
    with pytest.raises(InputError, match="needs 4 GPUs"):
        plan_replica_gpus(2, 2, [0, 1, 2])
    with pytest.raises(InputError):
        plan_replica_gpus(1, 2, [0, 0])
