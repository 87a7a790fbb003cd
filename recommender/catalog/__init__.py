"""GPU specifications and model architectures.

GPUs come from the bundled ``gpus.yaml`` (datasheet numbers with a citation per field); models from the bundled
``models/*.json`` (published Hugging Face config.json files) or from any local config.json.

Example:
    >>> from recommender.catalog import get_gpu, get_model
    >>> get_gpu("h100").memory_bandwidth_tb_s
    3.35
    >>> get_model("Llama-3.1-8B").kv_cache_bytes_per_token("bf16")
    131072
"""

from __future__ import annotations

from recommender.catalog.architecture import ModelSpec, load_config_json
from recommender.catalog.gpu import GPUSpec, get_gpu, gpu_from_nvml_name, list_gpus
from recommender.catalog.model_catalog import catalog_entry, get_model, list_models

__all__ = [
    "GPUSpec",
    "ModelSpec",
    "catalog_entry",
    "get_gpu",
    "get_model",
    "gpu_from_nvml_name",
    "list_gpus",
    "list_models",
    "load_config_json",
]
