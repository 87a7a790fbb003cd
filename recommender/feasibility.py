"""Feasibility of a ServingConfig in a Scenario, decided before any GPU time is spent.

Hard rules (``ok=False``, each failure a reason that says what to change):
- tensor parallelism divides the attention heads, and KV heads divide or are divided by TP (vLLM's rule);
- tensor_parallel_size x replicas <= the GPUs in the scenario;
- expert parallelism only for a mixture-of-experts model on >= 2 tensor-parallel GPUs (elsewhere it changes
  nothing, so a search would spend evaluations on duplicates);
- weights plus runtime overhead fit in ``memory x gpu_memory_utilization`` per GPU, and the KV cache left
  holds at least one ``max_model_len`` sequence (vLLM refuses to start otherwise);
- ``max_num_batched_tokens >= max_num_seqs``, and without chunked prefill ``>= max_model_len``;
- locked clock and power limit inside the GPU's supported range.
Soft rule (a warning): KV for ``max_num_seqs`` requests of the workload's mean length should fit; when it
does not, vLLM runs but caps the real batch at ``max_batch_by_kv`` (so a larger ``max_num_seqs`` buys nothing).

Memory model (documented estimate, bytes per GPU): weights/TP (+ embeddings, replicated lm_head ignored);
overhead = 1.5 GiB (CUDA graphs, NCCL, allocator slack) + activations of one ``max_num_batched_tokens`` step
(``tokens x (4 hidden + 2 intermediate/TP) x 2 bytes``) + fp32 logits of ``max_num_seqs`` rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd
    from numpy.typing import ArrayLike

    from recommender.catalog import GPUSpec, ModelSpec
    from recommender.config import Scenario, ServingConfig

GiB = 1024**3
OVERHEAD_FIXED_BYTES = 1.5 * GiB


@dataclass(frozen=True)
class Feasibility:
    """Result of :func:`check_feasibility`. Bytes are per GPU; ``kv_capacity_tokens`` per replica."""

    ok: bool
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    weight_bytes_per_gpu: float = 0.0
    overhead_bytes_per_gpu: float = 0.0
    usable_bytes_per_gpu: float = 0.0
    kv_bytes_per_token_per_gpu: float = 0.0
    kv_capacity_tokens: int = 0
    max_batch_by_kv: int = 0
    max_model_len: int = 0
    details: dict[str, float] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.ok


def overhead_bytes_per_gpu(max_num_batched_tokens: ArrayLike, max_num_seqs: ArrayLike, hidden_size: ArrayLike,
                           intermediate_size: ArrayLike, vocab_size: ArrayLike, tensor_parallel_size: ArrayLike) -> Any:
    """Runtime memory per GPU besides weights and KV cache (the module's memory model): the fixed
    :data:`OVERHEAD_FIXED_BYTES`, activations of one ``max_num_batched_tokens`` step
    (``tokens x (4 hidden + 2 intermediate/TP) x 2 bytes``) and fp32 logits of ``max_num_seqs`` rows.
    Scalars or numpy arrays (broadcast); the surrogate's roofline features use the same function."""
    act = max_num_batched_tokens * (4 * hidden_size + 2 * intermediate_size / tensor_parallel_size) * 2
    return OVERHEAD_FIXED_BYTES + act + max_num_seqs * vocab_size * 4


def _budget(model: ModelSpec, gpu: GPUSpec, tp: ArrayLike, seqs: ArrayLike, btok: ArrayLike, util: ArrayLike,
            fp8: ArrayLike, kv_fp8: ArrayLike) -> dict[str, Any]:
    """Per-GPU memory budget of configs (scalars or arrays): usable bytes, weights, overhead, KV bytes per
    token (KV heads replicated when TP exceeds them) and the KV bytes left."""
    usable = gpu.memory_bytes * np.asarray(util, dtype=float)
    weights = np.where(fp8, model.weight_bytes("fp8"), model.weight_bytes(_weight_dtype("bf16"))) / tp
    overhead = overhead_bytes_per_gpu(btok, seqs, model.hidden_size, model.intermediate_size, model.vocab_size, tp)
    kv = model.num_kv_heads
    kv_tok = np.where(kv_fp8, model.kv_cache_bytes_per_token("fp8"), model.kv_cache_bytes_per_token("auto"))
    kv_per_token = kv_tok * np.maximum(1.0, kv / np.asarray(tp, dtype=float)) / kv
    return {"usable": usable, "weights": weights, "overhead": overhead, "kv_per_token": kv_per_token,
            "kv_free": usable - weights - overhead}


def free_memory_bytes_per_gpu(configs: Sequence[ServingConfig], scenario: Scenario) -> np.ndarray:
    """Per config, the memory model's bytes per GPU left for the KV cache (``usable - weights - overhead``; may be
    negative): a config with less than one that ran out of memory is expected to run out too."""
    gpu, model = scenario.hardware.spec, scenario.model_spec
    rs = [c.resolved(gpu) for c in configs]
    b = _budget(model, gpu, np.array([c.tensor_parallel_size for c in rs], dtype=float),
                np.array([c.max_num_seqs or 0 for c in rs], dtype=float),
                np.array([c.max_num_batched_tokens or 0 for c in rs], dtype=float),
                np.array([c.gpu_memory_utilization for c in rs], dtype=float),
                np.array([c.precision == "fp8" for c in rs]), np.array([c.kv_cache_dtype == "fp8" for c in rs]))
    return np.asarray(b["kv_free"], dtype=float).reshape(len(rs))


def _weight_dtype(precision: str) -> str:
    """``bf16`` serves the checkpoint as published (``auto``: e.g. gpt-oss keeps its mxfp4 experts); ``fp8``
    quantizes every weight to fp8."""
    return "auto" if precision == "bf16" else precision


def _gb(x: float) -> str:
    return f"{x / 1e9:.1f} GB"


def check_feasibility(config: ServingConfig, scenario: Scenario) -> Feasibility:
    """Decide whether ``config`` can run in ``scenario``; never raises for an infeasible config."""
    model = scenario.model_spec
    gpu = scenario.hardware.spec
    cfg = config.resolved(gpu)
    tp = cfg.tensor_parallel_size
    reasons: list[str] = []
    warnings: list[str] = []

    if model.num_attention_heads % tp:
        reasons.append(f"tensor_parallel_size {tp} does not divide the {model.num_attention_heads} attention heads")
    kv = model.num_kv_heads
    if not (kv % tp == 0 or tp % kv == 0):
        reasons.append(f"tensor_parallel_size {tp} and the {kv} KV heads do not divide one another")
    if cfg.enable_expert_parallel and (model.num_experts <= 1 or tp < 2):
        reasons.append(
            "enable_expert_parallel needs a mixture-of-experts model and tensor_parallel_size >= 2 (it splits the "
            f"experts over the tensor-parallel GPUs; {model.name}: {model.num_experts} experts, tp {tp}); set it false"
        )
    if cfg.num_gpus > scenario.hardware.count:
        reasons.append(
            f"tensor_parallel_size x replicas = {tp} x {cfg.replicas} = {cfg.num_gpus} GPUs, "
            f"but the scenario has {scenario.hardware.count}"
        )

    max_len = scenario.effective_max_model_len()
    seqs = int(cfg.max_num_seqs or 0)
    btok = int(cfg.max_num_batched_tokens or 0)
    if btok < seqs:
        reasons.append(f"max_num_batched_tokens {btok} < max_num_seqs {seqs}; vLLM requires it to be at least as large")
    if not cfg.enable_chunked_prefill and btok < max_len:
        reasons.append(
            f"without chunked prefill max_num_batched_tokens {btok} must be >= max_model_len {max_len}; "
            "raise it or enable chunked prefill"
        )

    b = _budget(model, gpu, tp, seqs, btok, cfg.gpu_memory_utilization, cfg.precision == "fp8",
                cfg.kv_cache_dtype == "fp8")
    usable, weights, overhead, kv_per_token, kv_free = (
        float(b[k]) for k in ("usable", "weights", "overhead", "kv_per_token", "kv_free"))
    capacity = int(kv_free // kv_per_token) if kv_free > 0 else 0
    if kv_free <= 0:
        reasons.append(
            f"weights {_gb(weights)}/GPU + overhead {_gb(overhead)} exceed the {_gb(usable)} usable on "
            f"{gpu.name} at gpu_memory_utilization {cfg.gpu_memory_utilization:g}; use more GPUs (tensor "
            f"parallelism), fp8 weights, or a larger GPU"
        )
    elif capacity < max_len:
        reasons.append(
            f"KV cache left ({_gb(kv_free)}, {capacity} tokens) cannot hold one {max_len}-token sequence; "
            "use more GPUs, fp8 KV cache, or a shorter max_model_len"
        )

    stats = scenario.workload.stats()
    mean_len = max(1.0, stats["input_tokens_mean"] + stats["output_tokens_mean"])
    max_batch = int(capacity // mean_len)
    if not reasons and max_batch < seqs:
        warnings.append(
            f"KV cache holds about {max_batch} requests of mean length {mean_len:.0f}; max_num_seqs {seqs} "
            "will not be reached"
        )

    if cfg.gpu_clock_mhz is not None and not gpu.sm_clock_min_mhz <= cfg.gpu_clock_mhz <= gpu.sm_clock_max_mhz:
        reasons.append(
            f"gpu_clock_mhz {cfg.gpu_clock_mhz} outside {gpu.name}'s range "
            f"{gpu.sm_clock_min_mhz:g}-{gpu.sm_clock_max_mhz:g} MHz"
        )
    if cfg.power_limit_w is not None and not gpu.power_limit_min_w <= cfg.power_limit_w <= gpu.power_limit_max_w:
        reasons.append(
            f"power_limit_w {cfg.power_limit_w:g} outside {gpu.name}'s range "
            f"{gpu.power_limit_min_w:g}-{gpu.power_limit_max_w:g} W"
        )

    return Feasibility(
        ok=not reasons, reasons=tuple(reasons), warnings=tuple(warnings),
        weight_bytes_per_gpu=weights, overhead_bytes_per_gpu=overhead, usable_bytes_per_gpu=usable,
        kv_bytes_per_token_per_gpu=kv_per_token, kv_capacity_tokens=capacity, max_batch_by_kv=max_batch,
        max_model_len=max_len,
        details={"kv_free_bytes_per_gpu": kv_free, "mean_request_tokens": mean_len},
    )


def feasible_mask(configs: pd.DataFrame, scenario: Scenario) -> np.ndarray:
    """Vectorized :func:`check_feasibility` over a frame of *resolved* knob columns (one row per config).

    The frame needs the ServingConfig knob columns with ``max_num_seqs`` and ``max_num_batched_tokens``
    filled in (see :meth:`ServingConfig.resolved`); ``gpu_clock_mhz``/``power_limit_w`` may hold NaN/None
    for unlocked/default. Returns a boolean array equal to ``[check_feasibility(c, scenario).ok ...]`` (the
    unit tests check this equivalence); reasons are only produced by the scalar function.
    """
    model = scenario.model_spec
    gpu = scenario.hardware.spec
    tp = configs["tensor_parallel_size"].to_numpy(dtype=float)
    reps = configs["replicas"].to_numpy(dtype=float)
    seqs = configs["max_num_seqs"].to_numpy(dtype=float)
    btok = configs["max_num_batched_tokens"].to_numpy(dtype=float)
    chunked = configs["enable_chunked_prefill"].to_numpy(dtype=bool)
    util = configs["gpu_memory_utilization"].to_numpy(dtype=float)
    fp8 = (configs["precision"] == "fp8").to_numpy()
    kv_fp8 = (configs["kv_cache_dtype"] == "fp8").to_numpy()
    kv = model.num_kv_heads
    ok = (model.num_attention_heads % tp == 0) & ((kv % tp == 0) | (tp % kv == 0))
    ok &= tp * reps <= scenario.hardware.count
    if "enable_expert_parallel" in configs:
        ep = configs["enable_expert_parallel"].to_numpy(dtype=bool)
        ok &= ~ep | ((model.num_experts > 1) & (tp >= 2))
    max_len = scenario.effective_max_model_len()
    ok &= btok >= seqs
    ok &= chunked | (btok >= max_len)
    b = _budget(model, gpu, tp, seqs, btok, util, fp8, kv_fp8)
    kv_free, kv_per_token = b["kv_free"], b["kv_per_token"]
    ok &= kv_free > 0
    ok &= np.floor(np.where(kv_free > 0, kv_free, 0) / kv_per_token) >= max_len
    clock = pd_to_float(configs, "gpu_clock_mhz")
    power = pd_to_float(configs, "power_limit_w")
    ok &= np.isnan(clock) | ((clock >= gpu.sm_clock_min_mhz) & (clock <= gpu.sm_clock_max_mhz))
    ok &= np.isnan(power) | ((power >= gpu.power_limit_min_w) & (power <= gpu.power_limit_max_w))
    return np.asarray(ok, dtype=bool)


def pd_to_float(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Column as float with None -> NaN (missing column -> all NaN)."""
    if column not in frame:
        return np.full(len(frame), np.nan)
    return np.array([np.nan if v is None else float(v) for v in frame[column].tolist()], dtype=float)
