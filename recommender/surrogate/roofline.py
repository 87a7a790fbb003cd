"""Roofline physics of one vLLM replica, vectorized over rows (numpy arrays or scalars that broadcast).

Every estimate here is an *optimistic prior* the learned model corrects: it assumes peak FLOP/s and peak HBM
bandwidth, perfect overlap inside a kernel, and no CPU overhead. The surrogate learns ``log(measured / prior)``,
which transfers across models and GPUs far better than the raw metric.

Per replica (``tp`` GPUs sharing the weights), with ``B`` running sequences of mean context ``ctx``:

- decode step, memory: ``(W_touched(B) + B * kv_seq_bytes(ctx)) / (tp * bandwidth)``; ``W_touched`` counts the
  dense weights plus the routed experts that ``B`` tokens touch, ``E * (1 - (1 - k/E)^B)`` of ``E`` (uniform
  routing). With expert parallelism (``enable_expert_parallel``) each of the ``tp`` GPUs holds ``E / tp`` whole
  experts and the step waits for the busiest one: it reads the expected *maximum* over GPUs of the experts
  touched on one GPU (each expert touched with probability ``p`` independently: mean ``E/tp * p``, plus
  ``sqrt(2 ln tp)`` standard deviations, at most ``E/tp``), so at small batches EP reads more per step than
  tensor parallelism (which slices every touched expert evenly) and as much once every expert is touched;
- KV reads alone (a basis term, ``step_kv_s``): ``B * kv_seq_bytes(ctx) / (tp * bandwidth)``, the part of the
  memory time decode attention spends streaming the cache: paged attention reaches a different share of peak
  bandwidth than weight streaming, so the fit gives it a coefficient of its own;
- decode step, compute: ``B * (flops_per_token + attention_flops(ctx)) / (tp * peak)``; step = max of the two
  plus tensor-parallel communication: two all-reduces per layer of ``tokens x hidden x 2`` bytes, ring cost
  ``2 (tp-1)/tp x bytes / link bandwidth`` plus :data:`ALLREDUCE_LATENCY_S` each (none at ``tp = 1``);
- prefill, per prompt token: ``(flops_per_token + attention_flops(in/2)) / (tp * peak)`` (compute bound);
- steady state mixes ``B * in/out`` prompt tokens into every step (one request starts per request finished), so
  output throughput ``= B / (t_decode + B * in/out * t_prefill_token)`` and mean ITL is the step time (for a single
  static batch the prompts run before decoding, so ITL is the pure decode step); ``refill`` is 0 for one static
  batch and 1 once requests are replaced (``waves = requests / batch >= 2``), whatever the run's length, so a
  steady-state window of a short run and of a long one look alike;
- batch ``B = min(max_num_seqs, KV capacity / (in + out/2), concurrency)``; for open-loop arrivals the batch is
  the fixed point of Little's law ``B = rate * e2e(B)`` capped the same way;
- TTFT: queueing wait (closed loop: ``(C - B) * out / throughput`` by Little's law; open loop: M/D/1-like below
  saturation, half the backlog of the run above it) plus the prompt's prefill and one decode step.

The memory model (runtime overhead) is the one :mod:`recommender.feasibility` documents, applied to the GPU's
total memory as NVML reports it (``gpu_memory_gb`` = ``GPUSpec.memory_bytes / 1e9``; 85.5 GB on an "80 GB"
H100), since that is what ``gpu_memory_utilization`` multiplies in vLLM.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recommender.feasibility import overhead_bytes_per_gpu

#: Latency of one small all-reduce between GPUs of a node (NCCL / vLLM custom all-reduce over NVLink: a few
#: to ~15 microseconds; estimate), and of one over PCIe.
ALLREDUCE_LATENCY_S = 8e-6
ALLREDUCE_LATENCY_PCIE_S = 20e-6
#: One-direction GPU-to-GPU bandwidth assumed without NVLink (PCIe Gen4/5 x16 in practice), GB/s.
PCIE_GB_S = 32.0

#: Units of the overhead basis terms (a per-layer and a per-sequence-per-layer cost) whose coefficients the
#: surrogate fits: they make the fitted coefficients read as microseconds and nanoseconds.
LAYER_UNIT_S = 1e-4
SEQ_LAYER_UNIT_S = 1e-6
STEP_CONST_UNIT_S = 1e-3

#: Columns :func:`roofline` reads (arrays of equal length or scalars). Units in the names; ``*_b`` = 1e9.
INPUT_COLUMNS: tuple[str, ...] = (
    "weight_bytes", "moe_expert_weight_frac", "num_experts", "experts_per_token", "flops_per_token",
    "attn_flops_per_ctx_token", "kv_bytes_per_ctx_token", "hidden_size", "intermediate_size", "vocab_size",
    "num_layers", "num_moe_layers", "gpu_link_gb_s",
    "gpu_peak_tflops", "gpu_mem_bw_tb_s", "gpu_memory_gb", "tensor_parallel_size", "replicas", "max_num_seqs",
    "max_num_batched_tokens", "enable_chunked_prefill", "enable_expert_parallel", "gpu_memory_utilization",
    "input_tokens_mean",
    "input_tokens_p99", "output_tokens_mean", "concurrency", "arrival_rate_rps", "num_requests",
)


def _touched_weight_bytes(c: dict[str, Any], tokens: np.ndarray, busiest: bool = True) -> np.ndarray:
    """Weight bytes one step reads when ``tokens`` tokens are routed (dense part always, experts as touched),
    counted as ``tp`` times what the busiest GPU reads (so ``/ (tp * bandwidth)`` is that GPU's time); with
    ``busiest=False`` what all GPUs read together (the same without expert parallelism)."""
    frac = np.asarray(c["moe_expert_weight_frac"], dtype=float)
    experts = np.maximum(np.asarray(c["num_experts"], float), 1.0)
    k_over_e = np.asarray(c["experts_per_token"], dtype=float) / experts
    touched = 1.0 - np.power(np.clip(1.0 - k_over_e, 0.0, 1.0), np.maximum(tokens, 1.0))
    touched = np.where(frac > 0, touched, 0.0)
    tp = np.maximum(np.asarray(c["tensor_parallel_size"], float), 1.0)
    ep = np.nan_to_num(np.asarray(c["enable_expert_parallel"], float)) > 0.5
    local = experts / tp  # experts per GPU under expert parallelism
    most = local * touched + np.sqrt(2.0 * np.log(tp)) * np.sqrt(local * touched * (1.0 - touched))
    touched = np.where(ep & (tp > 1) & busiest, np.minimum(most, local) / local, touched)
    return np.asarray(c["weight_bytes"], float) * ((1.0 - frac) + frac * touched)


def _decode_step(c: dict[str, Any], batch: np.ndarray, ctx: np.ndarray,
                 busiest: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(compute time, memory time) of one decode step of ``batch`` sequences at context ``ctx``, seconds: the
    busiest GPU's memory time, or with ``busiest=False`` the mean over the GPUs (lower under expert parallelism)."""
    tp = np.asarray(c["tensor_parallel_size"], float)
    peak = np.asarray(c["gpu_peak_tflops"], float) * 1e12 * tp
    bw = np.asarray(c["gpu_mem_bw_tb_s"], float) * 1e12 * tp
    flops = batch * (np.asarray(c["flops_per_token"], float) + np.asarray(c["attn_flops_per_ctx_token"], float) * ctx)
    mem = _touched_weight_bytes(c, batch, busiest) + batch * ctx * np.asarray(c["kv_bytes_per_ctx_token"], float)
    return flops / peak, mem / bw


def roofline(c: dict[str, Any]) -> dict[str, np.ndarray]:
    """Roofline estimates for one replica of each row; see the module docstring for the formulas.

    Args:
        c: the :data:`INPUT_COLUMNS` (scalars broadcast). ``concurrency`` is NaN for open-loop rows and
            ``arrival_rate_rps`` NaN for closed-loop rows; both are per replica.

    Returns:
        Arrays (seconds, tokens/s, bytes, dimensionless) keyed by feature name: ``kv_capacity_tokens``,
        ``batch_kv_limit``, ``batch_est``, ``waves``, ``t_decode_compute_s``, ``t_decode_memory_s``,
        ``t_decode_step_s``, ``t_comm_s``, ``t_prefill_token_s``, ``t_prefill_request_s``, ``throughput_est_tok_s`` (per
        replica), ``itl_est_s``, ``itl_tail_est_s``, ``ttft_est_s``, ``load_ratio``, ``compute_share``,
        ``util_compute``, ``util_memory``, ``fits_memory`` (1.0 or 0.0), and the basis terms ``step_*`` (parts
        of a decode step: roofline, per-layer and per-sequence-per-layer overhead units, MoE variants, mixed-in
        prefill, reading the batch's KV cache at peak bandwidth, the longest prefill chunk, the expert-parallel
        wait for the busiest GPU) and
        ``ttft_wait_s`` / ``ttft_prefill_s``.
    """
    n = max(np.size(np.asarray(v)) for v in c.values())
    f = {k: np.broadcast_to(np.asarray(c[k], dtype=float), (n,)) for k in INPUT_COLUMNS}
    tp = f["tensor_parallel_size"]
    mnbt, seqs = f["max_num_batched_tokens"], f["max_num_seqs"]
    inp, inp99, out = np.maximum(f["input_tokens_mean"], 1.0), np.maximum(f["input_tokens_p99"], 1.0), np.maximum(
        f["output_tokens_mean"], 1.0
    )

    usable = f["gpu_memory_gb"] * 1e9 * f["gpu_memory_utilization"]
    overhead = overhead_bytes_per_gpu(mnbt, seqs, f["hidden_size"], f["intermediate_size"], f["vocab_size"], tp)
    kv_free = (usable - f["weight_bytes"] / tp - overhead) * tp
    kv_tok = np.maximum(f["kv_bytes_per_ctx_token"], 1.0)
    capacity = np.maximum(kv_free, 0.0) / kv_tok
    ctx = inp + out / 2.0
    batch_kv = np.maximum(capacity / ctx, 1.0)
    cap = np.maximum(np.minimum(seqs, batch_kv), 1.0)

    peak_tp = f["gpu_peak_tflops"] * 1e12 * tp
    nvlink = np.isfinite(f["gpu_link_gb_s"]) & (f["gpu_link_gb_s"] > 0)
    link = np.where(nvlink, f["gpu_link_gb_s"] / 2.0, PCIE_GB_S) * 1e9  # one direction, bytes/s
    lat = np.where(nvlink, ALLREDUCE_LATENCY_S, ALLREDUCE_LATENCY_PCIE_S)
    ring = np.where(tp > 1, 2.0 * (tp - 1.0) / tp, 0.0)
    comm_per_token = ring * 2 * f["num_layers"] * f["hidden_size"] * 2.0 / link
    comm_fixed = np.where(tp > 1, 2 * f["num_layers"] * lat, 0.0)
    t_pf_tok = (f["flops_per_token"] + f["attn_flops_per_ctx_token"] * inp / 2.0) / peak_tp + comm_per_token

    def step(b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tc, tm = _decode_step(f, b, ctx)
        td = np.maximum(tc, tm) + comm_fixed + b * comm_per_token
        return td, tc, tm

    conc = f["concurrency"]
    closed = np.isfinite(conc)
    rate = np.where(np.isfinite(f["arrival_rate_rps"]), f["arrival_rate_rps"], 0.0)
    batch = np.where(closed, np.minimum(cap, np.where(closed, np.maximum(conc, 1.0), 1.0)), 1.0)
    # open loop: B = rate * (prefill + out * step(B)), iterated with damping; capped by ``cap``
    for _ in range(0 if closed.all() else 30):
        td, _, _ = step(batch)
        e2e = inp * t_pf_tok + out * (td + batch * inp / out * t_pf_tok)
        target = np.minimum(cap, np.maximum(rate * e2e, 1.0))
        batch = np.where(closed, batch, 0.5 * batch + 0.5 * target)
    td, tc, tm = step(batch)
    _, tm_mean = _decode_step(f, batch, ctx, busiest=False)
    t_tok = td / batch + inp / out * t_pf_tok
    tput = 1.0 / t_tok

    nreq = np.maximum(f["num_requests"], 1.0)
    waves = np.maximum(nreq / batch, 1.0)
    # refill: 0 for one static batch (every prompt prefills before decoding), 1 as soon as finished requests
    # are replaced (the steady state, where prompts mix into decode steps); in between for 1-2 waves
    mix = np.clip(waves - 1.0, 0.0, 1.0)
    itl = td + mix * batch * inp / out * t_pf_tok
    chunk = np.where(f["enable_chunked_prefill"] > 0.5, np.minimum(np.maximum(mnbt - batch, 1.0), inp99), inp99)
    itl_tail = td + np.maximum(mix, 1.0 / waves) * chunk * t_pf_tok

    # saturated capacity in requests/s at the largest batch the engine allows
    td_cap, _, _ = step(cap)
    x_req_max = 1.0 / (td_cap / cap + inp / out * t_pf_tok) / out
    load = np.where(closed, np.where(closed, np.maximum(conc, 1.0), 1.0) / cap, rate / np.maximum(x_req_max, 1e-12))
    x_req = tput / out
    wait_closed = np.maximum(np.where(closed, conc, 0.0) - batch, 0.0) / np.maximum(x_req, 1e-12)
    rho = np.minimum(load, 0.98)
    span = nreq / np.maximum(rate, 1e-12)
    wait_open = np.where(load < 1.0, td * rho / (2 * (1 - rho)), 0.5 * span * (1.0 - 1.0 / np.maximum(load, 1.0)))
    wait = np.where(closed, wait_closed, wait_open)
    burst = 1.0 + (batch - 1.0) * (1.0 - mix)  # a single static batch prefills every prompt before the first token
    t_pf_req = inp * t_pf_tok
    ttft = wait + td + burst * t_pf_req

    t_total = np.maximum(td + batch * inp / out * t_pf_tok, 1e-12)
    compute = tc + batch * inp / out * t_pf_tok
    layers = f["num_layers"]
    moe_layers = np.where(f["num_experts"] > 1, f["num_moe_layers"], 0.0)  # Llama-4 Maverick: every other layer
    basis = {
        # terms of a step (ITL) whose non-negative combination the surrogate fits (see BASIS_* in training)
        "step_roofline_s": np.maximum(tc, tm),
        # expert parallelism: how much longer the busiest GPU streams weights than the mean one (the others
        # wait, at low power: energy counts it apart from the roofline step)
        "step_ep_wait_s": np.maximum(tc, tm) - np.maximum(tc, tm_mean),
        "step_layers_s": layers * LAYER_UNIT_S,
        "step_moe_layers_s": moe_layers * LAYER_UNIT_S,
        "step_batch_layers_s": batch * layers * SEQ_LAYER_UNIT_S,
        "step_batch_moe_layers_s": batch * moe_layers * SEQ_LAYER_UNIT_S,
        "step_prefill_s": mix * batch * inp / out * t_pf_tok,
        "step_const_s": np.full(n, STEP_CONST_UNIT_S),
        "step_kv_s": batch * ctx * f["kv_bytes_per_ctx_token"] / (f["gpu_mem_bw_tb_s"] * 1e12 * tp),
        "step_tail_s": itl_tail - td,
        "ttft_wait_s": wait,
        "ttft_prefill_s": burst * t_pf_req,
        "ttft_service_est_s": burst * t_pf_req + td,
    }
    return {
        **basis,
        "kv_capacity_tokens": capacity,
        "batch_kv_limit": batch_kv,
        "batch_est": batch,
        "waves": waves,
        "refill": mix,
        "load_capped": np.minimum(load, 2.0),
        "t_decode_compute_s": tc,
        "t_decode_memory_s": tm,
        "t_decode_step_s": td,
        "t_comm_s": comm_fixed + batch * comm_per_token,
        "t_prefill_token_s": t_pf_tok,
        "t_prefill_request_s": t_pf_req,
        "throughput_est_tok_s": tput,
        "itl_est_s": itl,
        "itl_tail_est_s": itl_tail,
        "ttft_est_s": ttft,
        "load_ratio": load,
        "compute_share": np.clip((np.where(tc >= tm, tc, 0.0) + batch * inp / out * t_pf_tok) / t_total, 0.0, 1.0),
        "util_compute": np.clip(compute / t_total, 0.0, 1.0),
        # power follows the mean GPU's work: under expert parallelism the others wait for the busiest one
        "util_memory": np.clip(tm_mean / t_total, 0.0, 1.0),
        "fits_memory": (kv_free > 0).astype(float),
    }
