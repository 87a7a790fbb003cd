"""Surrogate features from a Scenario and ServingConfigs, never from the model's name.

A row describes one replica of a deployment: the architecture's numbers (parameters, layers, widths, heads,
experts), the precision actually served, the GPU's datasheet numbers from the catalog, the knob values, the
workload's moments (per replica: concurrency and arrival rate are divided by ``replicas``), the engine version,
and the roofline physics of :mod:`recommender.surrogate.roofline`. Renaming a model changes no feature.

:func:`build_features` is vectorized over configs of one scenario (10,000 configs in about 10 ms on one core);
:func:`features_from_measurements` groups measurements by scenario and calls it once per group.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recommender.surrogate.roofline import roofline

if TYPE_CHECKING:
    from recommender.catalog import GPUSpec, ModelSpec
    from recommender.config import Scenario, ServingConfig
    from recommender.measurement import Measurement

#: Engine version assumed when none is given: the newest vLLM minor version in the shipped training data.
DEFAULT_ENGINE_VERSION = "0.11.1"

ARCH_FEATURES: tuple[str, ...] = (
    "total_params_b", "active_params_b", "num_layers", "hidden_size", "num_attention_heads", "num_kv_heads",
    "head_dim", "num_experts", "num_moe_layers", "experts_per_token", "moe_expert_weight_frac", "weight_bytes_per_param",
    "kv_bytes_per_ctx_token",
)
GPU_FEATURES: tuple[str, ...] = (
    "gpu_peak_tflops", "gpu_mem_bw_tb_s", "gpu_memory_gb", "gpu_tdp_w", "gpu_idle_w", "gpu_link_gb_s",
)
KNOB_FEATURES: tuple[str, ...] = (
    "tensor_parallel_size", "max_num_seqs", "max_num_batched_tokens", "enable_chunked_prefill",
    "enable_prefix_caching", "enforce_eager", "gpu_memory_utilization", "precision_fp8", "kv_cache_fp8",
    "enable_expert_parallel",
)
WORKLOAD_FEATURES: tuple[str, ...] = (
    "input_tokens_mean", "input_tokens_p90", "input_tokens_p99", "output_tokens_mean", "output_tokens_p90",
    "closed_loop", "concurrency", "arrival_rate_rps", "arrival_cv", "engine_version",
)
PHYSICS_FEATURES: tuple[str, ...] = (
    "weight_bytes_per_gpu", "kv_capacity_tokens", "batch_kv_limit", "batch_est", "waves", "refill", "load_capped",
    "t_decode_compute_s",
    "t_decode_memory_s", "t_decode_step_s", "t_comm_s", "t_prefill_token_s", "t_prefill_request_s",
    "throughput_est_tok_s",
    "itl_est_s", "itl_tail_est_s", "ttft_est_s", "load_ratio", "compute_share", "util_compute", "util_memory",
    "power_est_w", "energy_est_j", "power_idle_w", "power_util_compute_w", "power_util_memory_w",
    "step_roofline_s", "step_layers_s", "step_moe_layers_s", "step_batch_layers_s", "step_batch_moe_layers_s",
    "step_prefill_s", "step_const_s", "step_kv_s", "step_tail_s", "step_ep_wait_s", "ttft_wait_s", "ttft_prefill_s",
    "ttft_service_est_s", "energy_tok_roofline_j", "energy_tok_layers_j", "energy_tok_moe_layers_j",
    "energy_tok_batch_layers_j", "energy_tok_batch_moe_layers_j", "energy_tok_comm_j", "energy_tok_const_j",
    "energy_tok_prefill_j", "energy_tok_kv_j", "energy_tok_ep_wait_j",
)
#: Features that depend on how many requests a run had (not on the steady state it measured): kept for the
#: queueing formulas, hidden from the trees, which see ``refill`` and ``load_capped`` instead.
RUN_LENGTH_FEATURES: tuple[str, ...] = ("waves", "load_ratio", "ttft_wait_s", "ttft_est_s")
#: Every feature, in the order the estimator sees them.
FEATURE_NAMES: tuple[str, ...] = ARCH_FEATURES + GPU_FEATURES + KNOB_FEATURES + WORKLOAD_FEATURES + PHYSICS_FEATURES

#: Extra (non-feature) columns :func:`build_features` adds: replicas (to scale per-replica predictions back to
#: the deployment), GPU clock facts for the DVFS model, and whether weights + overhead fit in memory.
EXTRA_COLUMNS: tuple[str, ...] = (
    "replicas", "num_gpus", "gpu_clock_mhz", "power_limit_w", "gpu_clock_max_mhz", "gpu_clock_min_mhz",
    "gpu_power_limit_min_w", "gpu_power_limit_max_w", "fits_memory",
)

_ALL_COLUMNS: tuple[str, ...] = FEATURE_NAMES + EXTRA_COLUMNS


def engine_version_number(version: str | None) -> float:
    """``"0.11.1"`` -> 11.01, ``"0.5.4"`` -> 5.04 (minor + patch/100 of a 0.x vLLM); NaN when unparseable."""
    if not version:
        return float("nan")
    m = re.match(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?", str(version))
    if not m:
        return float("nan")
    major, minor, patch = int(m[1]), int(m[2]), int(m[3] or 0)
    return major * 100.0 + minor + patch / 100.0


def served_weight_dtype(model: ModelSpec, precision: str) -> str:
    """Weight dtype vLLM actually serves: ``fp8`` for the fp8 knob; for ``bf16`` the checkpoint's own format
    when it ships quantized (gpt-oss's mxfp4 experts, an fp8 checkpoint), else bf16."""
    if precision == "fp8":
        return "fp8"
    quant = model.hf_config.get("quantization_config") if model.hf_config else None
    return "auto" if isinstance(quant, dict) and quant.get("quant_method") else "bf16"


@functools.lru_cache(maxsize=512)
def _model_columns(model: ModelSpec, ctx_tokens: float) -> dict[str, dict[str, float]]:
    """Per-precision model numbers (``bf16``/``fp8`` keys), plus KV per context token per KV dtype."""
    experts_params = model.num_moe_layers * model.num_experts * model.expert_params
    ctx = max(1, int(round(ctx_tokens)))
    out: dict[str, dict[str, float]] = {}
    for precision in ("bf16", "fp8"):
        dtype = served_weight_dtype(model, precision)
        wb = float(model.weight_bytes(dtype))
        if dtype == "auto":
            bpp_expert = 4.25 / 8 if str(model.hf_config["quantization_config"].get("quant_method")) == "mxfp4" else 1.0
        else:
            bpp_expert = 2.0 if dtype == "bf16" else 1.0
        out[precision] = {
            "weight_bytes": wb,
            "weight_bytes_per_param": wb / model.total_params,
            "moe_expert_weight_frac": min(1.0, experts_params * bpp_expert / wb) if experts_params else 0.0,
        }
    out["kv"] = {
        "auto": model.kv_cache_bytes(ctx, "auto") / ctx,
        "fp8": model.kv_cache_bytes(ctx, "fp8") / ctx,
    }
    out["arch"] = {
        "total_params_b": model.total_params / 1e9,
        "active_params_b": model.active_params / 1e9,
        "num_layers": float(model.num_layers),
        "hidden_size": float(model.hidden_size),
        "num_attention_heads": float(model.num_attention_heads),
        "num_kv_heads": float(model.num_kv_heads),
        "head_dim": float(model.head_dim),
        "num_experts": float(model.num_experts),
        "num_moe_layers": float(model.num_moe_layers),
        "experts_per_token": float(model.num_experts_per_token),
        "flops_per_token": float(model.flops_per_token),
        "attn_flops_per_ctx_token": model.attention_flops_per_token(ctx) / ctx,
        "intermediate_size": float(model.intermediate_size),
        "vocab_size": float(model.vocab_size),
    }
    return out


def _gpu_columns(gpu: GPUSpec) -> dict[str, float]:
    return {
        "gpu_mem_bw_tb_s": gpu.memory_bandwidth_tb_s,
        "gpu_memory_gb": gpu.memory_bytes / 1e9,  # NVML's total where known (85.5 GB on an "80 GB" H100)
        "gpu_tdp_w": gpu.tdp_w,
        "gpu_idle_w": gpu.idle_power_w,
        "gpu_link_gb_s": gpu.nvlink_gb_s if gpu.nvlink_gb_s else 0.0,
        "gpu_clock_max_mhz": float(gpu.sm_clock_max_mhz),
        "gpu_clock_min_mhz": float(gpu.sm_clock_min_mhz),
        "gpu_power_limit_min_w": gpu.power_limit_min_w,
        "gpu_power_limit_max_w": gpu.power_limit_max_w,
    }


def _workload_columns(scenario: Scenario) -> dict[str, float]:
    w = scenario.workload
    s = w.stats()
    n = float(w.num_requests) if w.num_requests is not None else float(s["arrival_rate_rps"] * (w.duration_s or 0.0))
    return {
        "input_tokens_mean": s["input_tokens_mean"],
        "input_tokens_p90": s["input_tokens_p90"],
        "input_tokens_p99": s["input_tokens_p99"],
        "output_tokens_mean": s["output_tokens_mean"],
        "output_tokens_p90": s["output_tokens_p90"],
        "closed_loop": float(np.isfinite(s["concurrency"])),
        "concurrency": s["concurrency"],
        "arrival_rate_rps": s["arrival_rate_rps"],
        "arrival_cv": s["arrival_cv"],
        "num_requests": max(n, 1.0),
    }


_KNOBS: tuple[str, ...] = (
    "tensor_parallel_size", "replicas", "max_num_seqs", "max_num_batched_tokens", "enable_chunked_prefill",
    "enable_prefix_caching", "enforce_eager", "gpu_memory_utilization", "precision", "kv_cache_dtype",
    "gpu_clock_mhz", "power_limit_w", "enable_expert_parallel",
)


def _as_float(values: Any, n: int) -> np.ndarray:
    """``values`` (numbers, bools, None / NaN / pandas NA) as an (n,) float array with NaN for missing."""
    a = np.asarray(values)
    if a.dtype.kind in "fiub":
        return a.astype(float).reshape(n)
    a = np.asarray(values, dtype=object).reshape(n)
    missing = pd.isna(a)
    out = np.full(n, np.nan)
    out[~missing] = a[~missing].astype(float)
    return out


def config_columns(configs: Sequence[ServingConfig] | pd.DataFrame, gpu: GPUSpec) -> dict[str, np.ndarray]:
    """Knob values as float arrays (None -> NaN, vLLM defaults resolved for ``gpu``).

    Args:
        configs: ServingConfigs, or a DataFrame with ServingConfig's knob columns (the fast path; missing
            columns take ServingConfig's defaults).
        gpu: decides vLLM's defaults for ``max_num_seqs`` / ``max_num_batched_tokens``.
    """
    big = gpu.memory_gb * 1e9 >= 70 * 1024**3 and "a100" not in gpu.name.lower()
    seqs_default, btok_default = (1024, 8192) if big else (256, 2048)
    from recommender.config import ServingConfig

    n = len(configs)
    if isinstance(configs, pd.DataFrame):
        defaults = ServingConfig().model_dump()
        cols: dict[str, Any] = {
            k: (configs[k].to_numpy() if k in configs else np.full(n, defaults[k], dtype=object)) for k in _KNOBS
        }
    else:
        get = operator.itemgetter(*_KNOBS)
        rows = [get(c.__dict__) for c in configs]
        cols = dict(zip(_KNOBS, zip(*rows, strict=True), strict=True)) if rows else {k: () for k in _KNOBS}
    out: dict[str, np.ndarray] = {}
    for k in _KNOBS:
        if k in ("precision", "kv_cache_dtype"):
            out[k] = (np.asarray(cols[k], dtype=object) == "fp8").astype(float)
        elif isinstance(configs, pd.DataFrame):
            out[k] = _as_float(cols[k], n)
        else:  # plain Python numbers, bools and None: numpy turns None into NaN itself
            out[k] = np.array(cols[k], dtype=float).reshape(n)
    out["precision_fp8"] = out.pop("precision")
    out["kv_cache_fp8"] = out.pop("kv_cache_dtype")
    out["max_num_seqs"] = np.where(np.isnan(out["max_num_seqs"]), seqs_default, out["max_num_seqs"])
    out["max_num_batched_tokens"] = np.where(
        np.isnan(out["max_num_batched_tokens"]), btok_default, out["max_num_batched_tokens"]
    )
    return out


def build_features(
    scenario: Scenario, configs: Sequence[ServingConfig] | pd.DataFrame | dict[str, np.ndarray],
    engine_version: str | None = None,
) -> pd.DataFrame:
    """Feature rows (one per config, per replica) for ``configs`` in ``scenario``.

    Args:
        scenario: model, hardware and workload (held fixed).
        configs: the configs, a DataFrame of knob columns (see :func:`config_columns`), or what
            :func:`config_columns` returned for them (for ``scenario``'s GPU); ``None`` batch limits resolve to
            vLLM's defaults for the GPU.
        engine_version: vLLM version the prediction is for (default :data:`DEFAULT_ENGINE_VERSION`).

    Returns:
        DataFrame with :data:`FEATURE_NAMES` then :data:`EXTRA_COLUMNS`, index ``0..len(configs)-1``. Times in
        seconds, throughput per replica in output tokens/s, power per replica in W, energy in J per output token.
    """
    model, gpu = scenario.model_spec, scenario.hardware.spec
    wl = _workload_columns(scenario)
    mc = _model_columns(model, wl["input_tokens_mean"] + wl["output_tokens_mean"] / 2.0)
    cc = dict(configs) if isinstance(configs, dict) else config_columns(configs, gpu)
    n = len(cc["max_num_seqs"])
    fp8 = cc["precision_fp8"] > 0.5
    c: dict[str, Any] = dict(mc["arch"])
    c.update(_gpu_columns(gpu))
    c.update(wl)
    c.update(cc)
    for key in ("weight_bytes", "weight_bytes_per_param", "moe_expert_weight_frac"):
        c[key] = np.where(fp8, mc["fp8"][key], mc["bf16"][key])
    c["kv_bytes_per_ctx_token"] = np.where(cc["kv_cache_fp8"] > 0.5, mc["kv"]["fp8"], mc["kv"]["auto"])
    c["gpu_peak_tflops"] = np.where(fp8, gpu.peak_tflops("fp8"), gpu.peak_tflops("bf16"))
    reps = cc["replicas"]
    closed = np.isfinite(wl["concurrency"])
    c["concurrency"] = np.ceil(wl["concurrency"] / reps) if closed else np.full(len(reps), np.nan)
    c["arrival_rate_rps"] = wl["arrival_rate_rps"] / reps
    c["num_requests"] = np.maximum(wl["num_requests"] / reps, 1.0)
    c["engine_version"] = engine_version_number(engine_version or DEFAULT_ENGINE_VERSION)
    phys = roofline(c)
    c.update(phys)
    tp = cc["tensor_parallel_size"]
    c["weight_bytes_per_gpu"] = c["weight_bytes"] / tp
    c["num_gpus"] = tp * reps
    c["power_est_w"] = gpu.tdp_w * tp
    c["energy_est_j"] = c["power_est_w"] / phys["throughput_est_tok_s"]
    c["power_idle_w"] = gpu.idle_power_w * tp
    c["power_util_compute_w"] = c["power_est_w"] * phys["util_compute"]
    c["power_util_memory_w"] = c["power_est_w"] * phys["util_memory"]
    # energy per output token of each step term (TDP x time per output token): the direct energy baseline
    per_tok = c["power_est_w"] / phys["batch_est"]
    for term in ("layers", "moe_layers", "batch_layers", "batch_moe_layers", "const", "kv", "ep_wait"):
        c[f"energy_tok_{term}_j"] = per_tok * phys[f"step_{term}_s"]
    c["energy_tok_roofline_j"] = per_tok * (phys["step_roofline_s"] - phys["step_ep_wait_s"])  # the mean GPU's
    c["energy_tok_comm_j"] = per_tok * phys["t_comm_s"]
    c["energy_tok_prefill_j"] = c["power_est_w"] * c["input_tokens_mean"] / np.maximum(
        c["output_tokens_mean"], 1.0) * phys["t_prefill_token_s"]
    data = np.empty((len(_ALL_COLUMNS), n), dtype=float)  # column-major: one contiguous write per column
    for j, k in enumerate(_ALL_COLUMNS):
        data[j] = c[k]
    return pd.DataFrame(data.T, columns=list(_ALL_COLUMNS), copy=False)


def features_from_measurements(measurements: Sequence[Measurement]) -> pd.DataFrame:
    """Features for ``measurements`` (row ``i`` for measurement ``i``), each with its recorded vLLM version.

    Measurements sharing a scenario and engine version are featurized in one vectorized call.
    """
    groups: dict[tuple[str, str], list[int]] = {}
    for i, m in enumerate(measurements):
        key = (m.scenario.model_dump_json(), m.versions.get("vllm", ""))
        groups.setdefault(key, []).append(i)
    frames, order = [], []
    for idx in groups.values():
        m0 = measurements[idx[0]]
        frames.append(build_features(m0.scenario, [measurements[i].config for i in idx], m0.versions.get("vllm")))
        order.extend(idx)
    if not frames:
        return pd.DataFrame(columns=list(FEATURE_NAMES + EXTRA_COLUMNS), dtype=float)
    X = pd.concat(frames, ignore_index=True)
    return X.iloc[np.argsort(np.asarray(order))].reset_index(drop=True)
