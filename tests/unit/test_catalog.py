"""recommender.catalog: GPU specs, model architectures, config.json reading and writing."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from recommender.catalog import (
    GPUSpec,
    ModelSpec,
    catalog_entry,
    get_gpu,
    get_model,
    gpu_from_nvml_name,
    list_gpus,
    list_models,
    load_config_json,
)
from recommender.catalog.gpu import NUMERIC_FIELDS
from recommender.errors import InputError

pytestmark = pytest.mark.unit

REQUIRED_GPUS = {"A100-SXM-40GB", "A100-SXM-80GB", "H100-SXM", "H100-PCIe", "H200", "L40S", "B200"}
REQUIRED_MODELS = {
    "Llama-3.2-1B", "Llama-3.2-3B", "Llama-3.1-8B", "Llama-3.1-70B", "Llama-3.3-70B",
    "Qwen3-8B", "Qwen3-14B", "Qwen3-32B", "Qwen3-30B-A3B", "Qwen3-235B-A22B",
    "Mistral-7B-v0.3", "Mixtral-8x7B-v0.1", "Gemma-3-12B", "Gemma-3-27B", "gpt-oss-20b", "gpt-oss-120b",
    # architectures of the public measurements (recommender/surrogate/public_data.py MODEL_MAP)
    "BLOOM-176B", "Llama-2-7B", "Qwen2-7B", "Qwen2-72B", "Mixtral-8x22B-Instruct-v0.1", "Mistral-Large-2407",
    "Mistral-Nemo-2407", "CodeGemma-1.1-2B", "CodeGemma-7B", "Gemma-2-2B", "Gemma-2-9B", "Gemma-2-27B",
    "StarCoder2-3B", "StarCoder2-7B", "StarCoder2-15B", "CodeLlama-7B", "CodeLlama-13B", "CodeLlama-34B",
    "CodeLlama-70B", "Phi-3-mini-4k", "Phi-3-medium-4k", "Llama-3.1-405B", "Llama-4-Scout-17B-16E",
    "Llama-4-Maverick-17B-128E",
}  # fmt: skip


def _llama_like(**updates: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_hidden_layers": 2,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "vocab_size": 1000,
        "max_position_embeddings": 4096,
    }
    config.update(updates)
    return config


# ---- GPUs ---------------------------------------------------------------------------------------------------


def test_catalog_has_the_required_gpus() -> None:
    assert REQUIRED_GPUS <= {g.name for g in list_gpus()}


@pytest.mark.parametrize("gpu", list_gpus(), ids=lambda g: g.name)
def test_every_gpu_cites_a_source_for_every_numeric_field(gpu: GPUSpec) -> None:
    assert set(gpu.sources) == set(NUMERIC_FIELDS)
    assert all(text.strip() for text in gpu.sources.values())
    assert gpu.power_limit_min_w <= gpu.tdp_w <= gpu.power_limit_max_w
    assert gpu.sm_clock_min_mhz < gpu.sm_clock_max_mhz
    if gpu.peak_fp8_tflops is not None:  # dense FP8 is twice dense BF16 on every catalog GPU
        assert gpu.peak_fp8_tflops == pytest.approx(2 * gpu.peak_bf16_tflops, rel=0.02)


def test_gpu_numbers_match_the_datasheets() -> None:
    h100 = get_gpu("H100-SXM")
    assert (h100.memory_gb, h100.memory_bandwidth_tb_s) == (80, 3.35)
    assert (h100.peak_bf16_tflops, h100.peak_fp8_tflops) == (989, 1979)
    assert (h100.tdp_w, h100.sm_clock_max_mhz, h100.nvlink_gb_s) == (700, 1980, 900)
    assert get_gpu("A100-SXM-80GB").peak_fp8_tflops is None
    assert get_gpu("H200").memory_gb == 141
    assert get_gpu("L40S").nvlink_gb_s is None
    assert get_gpu("H100-SXM").peak_tflops("fp8") == 1979
    assert get_gpu("A100-SXM-40GB").peak_tflops("fp8") == 312  # no FP8: runs at 16-bit speed


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("h100", "H100-SXM"),
        ("H100_SXM", "H100-SXM"),
        ("  h100 pcie ", "H100-PCIe"),
        ("nvidia h200", "H200"),
        ("A100-SXM4-80GB", "A100-SXM-80GB"),
    ],
)
def test_get_gpu_is_case_and_separator_insensitive(spelling: str, name: str) -> None:
    assert get_gpu(spelling).name == name


@pytest.mark.parametrize(
    ("device_name", "name"),
    [
        ("NVIDIA H100 80GB HBM3", "H100-SXM"),
        ("NVIDIA H100 PCIe", "H100-PCIe"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA A100-SXM4-40GB", "A100-SXM-40GB"),
        ("NVIDIA A100-SXM4-80GB", "A100-SXM-80GB"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA B200", "B200"),
        (b"NVIDIA H100 80GB HBM3", "H100-SXM"),
    ],
)
def test_nvml_device_names_map_back(device_name: str | bytes, name: str) -> None:
    gpu = gpu_from_nvml_name(device_name)
    assert gpu is not None and gpu.name == name


def test_unknown_nvml_device_is_none_not_an_error() -> None:
    assert gpu_from_nvml_name("NVIDIA GeForce RTX 4090") is None


def test_unknown_gpu_error_names_field_lists_gpus_and_suggests() -> None:
    with pytest.raises(InputError) as info:
        get_gpu("H10-SXM")
    assert info.value.field == "gpu"
    message = str(info.value)
    assert message.startswith("gpu: got 'H10-SXM'")
    assert "H100-SXM" in message and "L40S" in message and "did you mean" in message


def test_gpu_spec_rejects_a_missing_citation_and_extra_fields() -> None:
    data = get_gpu("H100-SXM").model_dump()
    data["sources"] = {k: v for k, v in data["sources"].items() if k != "tdp_w"}
    with pytest.raises(ValueError, match="tdp_w"):
        GPUSpec.model_validate(data)
    with pytest.raises(ValueError):
        GPUSpec.model_validate({**get_gpu("H100-SXM").model_dump(), "tflops": 1})


# ---- model catalog --------------------------------------------------------------------------------------------


def test_catalog_has_the_required_models() -> None:
    assert REQUIRED_MODELS <= {m.name for m in list_models()}


@pytest.mark.parametrize("model", list_models(), ids=lambda m: m.name)
def test_parameter_counts_match_published_within_2_percent(model: ModelSpec) -> None:
    entry = catalog_entry(model.name)
    assert model.total_params_b == pytest.approx(entry["published_params_b"], rel=0.02)
    if "published_active_params_b" in entry:
        active = model.active_params
        if entry.get("published_active_params_excludes_embedding"):
            active -= model.embedding_params
        assert active / 1e9 == pytest.approx(entry["published_active_params_b"], rel=0.02)
        assert model.architecture == "moe"
    else:
        assert model.active_params == model.total_params - model.vision_params
    if "published_non_embedding_params_b" in entry:
        assert model.non_embedding_params / 1e9 == pytest.approx(entry["published_non_embedding_params_b"], rel=0.02)


@pytest.mark.parametrize("model", list_models(), ids=lambda m: m.name)
def test_catalog_file_is_the_published_config_plus_a_cited_catalog_block(model: ModelSpec) -> None:
    folder = resources.files("recommender.catalog").joinpath("models")
    files = [f for f in folder.iterdir() if f.name.endswith(".json")]
    raw = next(
        json.loads(f.read_text(encoding="utf-8"))
        for f in files
        if json.loads(f.read_text(encoding="utf-8"))["_catalog"]["name"] == model.name
    )
    block = raw.pop("_catalog")
    assert block["source"] == f"https://huggingface.co/{model.hf_id}/blob/main/config.json"
    assert block["published_params_source"].strip()
    evidence = block.get("config_evidence", [])
    assert isinstance(evidence, list) and all(isinstance(e, str) and e.strip() for e in evidence)
    written = model.to_hf_config()
    assert written.pop("_name_or_path") == model.hf_id  # the hub id, even where the file names an upload path
    raw.pop("_name_or_path", None)
    assert written == raw


def test_lookup_by_hf_id_alias_and_case() -> None:
    assert get_model("llama-3.1-8b").name == "Llama-3.1-8B"
    assert get_model("meta-llama/Llama-3.1-8B-Instruct").name == "Llama-3.1-8B"
    assert get_model("META-LLAMA/LLAMA-3.3-70B-INSTRUCT").name == "Llama-3.3-70B"
    assert get_model("gemma-3-27b-it").name == "Gemma-3-27B"
    assert get_model("meta-llama/Meta-Llama-3.1-405B-Instruct").name == "Llama-3.1-405B"
    assert get_model("bloom-176b").name == get_model("bigscience/bloom").name == "BLOOM-176B"
    assert get_model("google/gemma-2-9b").name == "Gemma-2-9B"
    assert get_model("microsoft/Phi-3-mini-4k-instruct").name == "Phi-3-mini-4k"


def test_unknown_model_error_suggests_and_mentions_config_json() -> None:
    with pytest.raises(InputError) as info:
        get_model("Llama-3.1-8")
    assert info.value.field == "model"
    message = str(info.value)
    assert "did you mean 'Llama-3.1-8B'" in message
    assert "config.json" in message


def test_kv_bytes_per_token_llama_3_1_8b() -> None:
    llama = get_model("Llama-3.1-8B")
    assert llama.kv_cache_bytes_per_token("bf16") == 32 * 8 * 128 * 2 * 2 == 131072
    assert llama.kv_cache_bytes_per_token("auto") == 131072
    assert llama.kv_cache_bytes_per_token("fp8_e4m3") == 65536
    assert llama.kv_cache_bytes(1000, "bf16") == 1000 * 131072
    with pytest.raises(InputError, match="kv_cache_dtype"):
        llama.kv_cache_bytes_per_token("int3")


def test_sliding_window_layers_cap_kv_and_attention() -> None:
    gemma = get_model("Gemma-3-27B")
    assert (gemma.num_sliding_layers, gemma.sliding_window) == (52, 1024)  # 5 local : 1 global over 62 layers
    per_layer_token = 2 * gemma.num_kv_heads * gemma.head_dim * 2
    assert gemma.kv_cache_bytes(8192) == (10 * 8192 + 52 * 1024) * per_layer_token
    assert gemma.kv_cache_bytes(8192) < 8192 * gemma.kv_cache_bytes_per_token()
    oss = get_model("gpt-oss-120b")
    assert oss.num_sliding_layers == 18 and oss.sliding_window == 128
    llama = get_model("Llama-3.1-8B")
    assert llama.attention_flops_per_token(2048) == 4 * 32 * 32 * 128 * 2048


def test_weight_bytes_and_flops() -> None:
    llama = get_model("Llama-3.1-8B")
    assert llama.weight_bytes("bf16") == 2 * llama.total_params
    assert llama.weight_bytes("fp8") == llama.total_params
    assert llama.weight_bytes("auto") == llama.weight_bytes("bf16")
    assert llama.flops_per_token == 2 * (llama.active_params - llama.embedding_params)
    oss = get_model("gpt-oss-120b")  # published checkpoint: experts in mxfp4, the rest bf16 (~65 GB)
    assert 60e9 < oss.weight_bytes("auto") < 70e9
    assert oss.weight_bytes("mxfp4") < oss.weight_bytes("auto") < oss.weight_bytes("bf16")
    with pytest.raises(InputError, match="dtype"):
        llama.weight_bytes("int2")


def test_bloom_legacy_keys_and_class_defaults() -> None:
    bloom = get_model("BLOOM-176B")
    assert (bloom.hidden_size, bloom.num_layers, bloom.num_attention_heads) == (14336, 70, 112)  # n_embed, n_layer
    assert (bloom.num_kv_heads, bloom.head_dim) == (112, 128)
    assert bloom.intermediate_size == 4 * 14336 and not bloom.gated_mlp  # n_inner unset: 4 x hidden, GELU MLP
    assert bloom.tie_word_embeddings and bloom.lm_head_params == 0
    assert bloom.max_position_embeddings == 2048  # ALiBi: no position table; vLLM's fallback length
    assert bloom.embedding_params == 3_596_615_680  # the model card's embedding count


def test_starcoder2_ties_embeddings_unless_the_config_says_not_to() -> None:
    small, big = get_model("StarCoder2-3B"), get_model("StarCoder2-15B")
    assert small.tie_word_embeddings and not big.tie_word_embeddings
    assert not small.gated_mlp and small.sliding_window == 4096 and small.num_sliding_layers == small.num_layers
    assert small.kv_cache_bytes(8192) == small.kv_cache_bytes(4096)  # every layer keeps only the 4096 window


def test_llama4_moe_layout_shared_expert_and_chunked_attention() -> None:
    scout, maverick = get_model("Llama-4-Scout-17B-16E"), get_model("Llama-4-Maverick-17B-128E")
    for m in (scout, maverick):
        assert (m.moe_intermediate_size, m.intermediate_size, m.num_shared_experts) == (8192, 16384, 1)
        assert (m.sliding_window, m.num_sliding_layers) == (8192, 36)  # RoPE layers chunked; every 4th global
        assert m.kv_cache_bytes(4096) == 4096 * m.kv_cache_bytes_per_token()  # below one chunk: all layers full
        assert m.kv_cache_bytes(65536) == (12 * 65536 + 36 * 8192) * 2 * 8 * 128 * 2
        assert m.vision_params > 0 and m.active_params == m.total_params - m.vision_params - (
            m.num_moe_layers * (m.num_experts - 1) * m.expert_params
        )
    assert (scout.num_experts, scout.num_dense_layers) == (16, 0)  # interleave_moe_layer_step 1: all MoE
    assert (maverick.num_experts, maverick.num_dense_layers) == (128, 24)  # step 2: odd layers MoE
    assert scout.active_params == pytest.approx(maverick.active_params, rel=0.01)  # both "17B active"


def test_llama4_style_keys_on_a_small_config() -> None:
    base = _llama_like(
        model_type="llama4_text", num_hidden_layers=8, num_local_experts=4, num_experts_per_tok=1,
        intermediate_size=128, intermediate_size_mlp=512, attention_chunk_size=64,
    )
    spec = ModelSpec.from_hf_config({**base, "moe_layers": [1, 5]}, name="t")
    assert (spec.num_dense_layers, spec.intermediate_size, spec.moe_intermediate_size) == (6, 512, 128)
    assert spec.num_shared_experts == 1 and spec.sliding_window == 64 and spec.num_sliding_layers == 6
    spec = ModelSpec.from_hf_config({**base, "interleave_moe_layer_step": 4, "no_rope_layers": [1, 0] * 4}, name="t")
    assert spec.num_dense_layers == 6 and spec.num_sliding_layers == 4
    typed = ["chunked_attention", "chunked_attention", "full_attention", "sliding_attention"] * 2
    spec = ModelSpec.from_hf_config({**base, "layer_types": typed}, name="t")
    assert spec.num_sliding_layers == 6


def test_published_name_or_path_is_replaced_by_the_hub_id_when_writing() -> None:
    config = _llama_like(_name_or_path="/checkpoints/upload")
    spec = ModelSpec.from_hf_config(config, name="m", hf_id="org/m")
    assert spec.to_hf_config()["_name_or_path"] == "org/m"
    assert ModelSpec.from_hf_config(spec.to_hf_config()).hf_id == "org/m"
    assert ModelSpec.from_hf_config(config, name="m").to_hf_config()["_name_or_path"] == "/checkpoints/upload"


def test_bloom_style_keys_on_a_small_config() -> None:
    config = {"model_type": "bloom", "architectures": ["BloomForCausalLM"], "n_embed": 64, "n_layer": 2,
              "num_attention_heads": 4, "n_inner": None, "vocab_size": 1000}
    spec = ModelSpec.from_hf_config(config, name="b")
    assert (spec.hidden_size, spec.intermediate_size, spec.num_kv_heads) == (64, 256, 4)
    assert (spec.tie_word_embeddings, spec.max_position_embeddings, spec.gated_mlp) == (True, 2048, False)


# ---- from_hf_config / load_config_json ----------------------------------------------------------------------


def test_from_hf_config_reads_a_nested_gemma3_text_config() -> None:
    config = {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "text_config": {
            "hidden_size": 3840,
            "intermediate_size": 15360,
            "model_type": "gemma3_text",
            "num_attention_heads": 16,
            "num_hidden_layers": 48,
            "num_key_value_heads": 8,
            "sliding_window": 1024,
        },
        "vision_config": {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
                          "patch_size": 14, "image_size": 896, "model_type": "siglip_vision_model"},
    }  # fmt: skip
    spec = ModelSpec.from_hf_config(config, name="g12")
    assert spec.name == "g12"
    assert (spec.num_layers, spec.hidden_size, spec.num_kv_heads) == (48, 3840, 8)
    assert spec.head_dim == 256  # transformers' Gemma3TextConfig default, not 3840 / 16
    assert (spec.vocab_size, spec.max_position_embeddings, spec.tie_word_embeddings) == (262208, 131072, True)
    assert spec.num_sliding_layers == 40
    assert 0.40e9 < spec.vision_params < 0.45e9
    assert spec == get_model("Gemma-3-12B").model_copy(update={"name": "g12", "hf_id": None})


def test_from_hf_config_reads_moe_key_spellings() -> None:
    mixtral = get_model("Mixtral-8x7B-v0.1")
    assert (mixtral.num_experts, mixtral.num_experts_per_token, mixtral.moe_intermediate_size) == (8, 2, 14336)
    qwen = get_model("Qwen3-30B-A3B")
    assert (qwen.num_experts, qwen.num_experts_per_token, qwen.moe_intermediate_size) == (128, 8, 768)
    oss = get_model("gpt-oss-20b")
    assert (oss.num_experts, oss.num_experts_per_token, oss.head_dim, oss.attention_bias) == (32, 4, 64, True)
    assert get_model("Llama-3.1-8B").architecture == "dense" and get_model("Llama-3.1-8B").num_experts == 1


BAD_CONFIGS = [
    ("missing hidden_size", {k: v for k, v in _llama_like().items() if k != "hidden_size"}, "hidden_size"),
    ("zero layers", _llama_like(num_hidden_layers=0), "num_hidden_layers"),
    ("negative heads", _llama_like(num_attention_heads=-8), "num_attention_heads"),
    ("heads do not divide hidden", _llama_like(hidden_size=250), "num_attention_heads"),
    ("kv heads do not divide heads", _llama_like(num_key_value_heads=3), "num_key_value_heads"),
    ("string layer count", _llama_like(num_hidden_layers="32"), "num_hidden_layers"),
    ("missing vocab", {k: v for k, v in _llama_like().items() if k != "vocab_size"}, "vocab_size"),
    ("top-k above experts", _llama_like(num_local_experts=4, num_experts_per_tok=8), "num_experts_per_tok"),
    ("MLA attention", _llama_like(kv_lora_rank=512), "kv_lora_rank"),
    ("linear attention layers", _llama_like(layer_types=["linear_attention", "full_attention"]), "layer_types"),
]


@pytest.mark.parametrize(("case", "config", "key"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_json_names_file_and_key(tmp_path: Path, case: str, config: dict[str, Any], key: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_config_json(path)
    assert str(path) in info.value.field and key in info.value.field
    assert key in str(info.value)


def test_missing_config_file_says_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load_config_json(tmp_path / "nope" / "config.json")
    assert "nope" in info.value.field and "no such file" in str(info.value)
    with pytest.raises(InputError, match="folder containing one"):
        load_config_json(tmp_path)  # a folder without config.json


def test_invalid_json_reports_position(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"hidden_size": 4096,,}', encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_config_json(path)
    assert info.value.field == str(path)
    assert "not valid JSON" in str(info.value) and "line 1" in str(info.value)


def test_non_object_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(InputError, match="JSON object"):
        load_config_json(path)


def test_get_model_from_a_folder_and_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "my-llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(_llama_like()), encoding="utf-8")
    spec = get_model(str(folder))
    assert spec.name == "my-llama"
    assert (spec.hidden_size, spec.head_dim, spec.num_kv_heads, spec.architecture) == (256, 32, 2, "dense")
    assert get_model(str(folder / "config.json")) == spec
    with pytest.raises(InputError, match="no such file"):
        get_model(str(tmp_path / "other" / "config.json"))


# ---- round trips ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", list_models(), ids=lambda m: m.name)
def test_catalog_round_trip_through_hf_config(model: ModelSpec) -> None:
    again = ModelSpec.from_hf_config(model.to_hf_config(), name=model.name)
    assert again == model
    assert again.total_params == model.total_params


FIELD_SPECS = [
    ModelSpec(name="dense", architecture="dense", num_layers=4, hidden_size=512, intermediate_size=1408,
              num_attention_heads=8, num_kv_heads=2, head_dim=128, vocab_size=32000,
              max_position_embeddings=8192, tie_word_embeddings=True),
    ModelSpec(name="dense-swa", hf_id="org/dense-swa", architecture="dense", num_layers=4, hidden_size=512,
              intermediate_size=1408, num_attention_heads=8, num_kv_heads=8, head_dim=64, vocab_size=32000,
              max_position_embeddings=8192, sliding_window=4096),
    ModelSpec(name="mixtral-like", architecture="moe", num_layers=4, hidden_size=512, intermediate_size=1024,
              num_attention_heads=8, num_kv_heads=4, head_dim=64, vocab_size=32000, max_position_embeddings=8192,
              num_experts=8, num_experts_per_token=2, moe_intermediate_size=1024),
    ModelSpec(name="qwen-moe-like", architecture="moe", num_layers=4, hidden_size=512, intermediate_size=2048,
              num_attention_heads=8, num_kv_heads=4, head_dim=128, vocab_size=32000, max_position_embeddings=8192,
              num_experts=16, num_experts_per_token=4, moe_intermediate_size=256, num_dense_layers=1),
    ModelSpec(name="shared-expert", architecture="moe", num_layers=4, hidden_size=512, intermediate_size=2048,
              num_attention_heads=8, num_kv_heads=8, head_dim=64, vocab_size=32000, max_position_embeddings=8192,
              num_experts=16, num_experts_per_token=4, moe_intermediate_size=256, num_shared_experts=2,
              attention_bias=True),
]  # fmt: skip


@pytest.mark.parametrize("spec", FIELD_SPECS, ids=lambda s: s.name)
def test_field_built_spec_round_trips_through_a_synthesized_config(spec: ModelSpec) -> None:
    config = spec.to_hf_config()
    assert config["architectures"][0].endswith("ForCausalLM")
    assert ModelSpec.from_hf_config(json.loads(json.dumps(config)), name=spec.name) == spec


def test_to_hf_config_is_a_copy() -> None:
    llama = get_model("Llama-3.1-8B")
    config = llama.to_hf_config()
    config["num_hidden_layers"] = 1
    config["rope_scaling"]["factor"] = 1.0
    assert llama.to_hf_config()["num_hidden_layers"] == 32
    assert llama.to_hf_config()["rope_scaling"]["factor"] == 8.0
