"""What the estimator learns, and how the served metrics are derived from it.

The estimator learns a few *primitive* targets, each as a calibrated grey-box baseline (a non-negative
combination of physics terms from :mod:`recommender.surrogate.roofline`) times a learned correction:

- ``itl_p50_s`` / ``itl_p90_s`` / ``itl_p99_s``: step time = roofline step + per-layer and per-sequence
  overheads (dense and MoE) + tensor-parallel communication + mixed-in prefill + reading the batch's KV cache
  (decode attention streams it below the bandwidth weights stream at, so it has its own coefficient on top of
  the roofline's: leave-one-model-out on ML.ENERGY v3 the median-ITL MAPE rises from 10.9% to 12.3% on
  average but Gemma-3-12B's falls from 16.9% to 14.4% when the term was added, see benchmarks/surrogate_lomo.py)
  (+ the longest prefill chunk for the tail);
- ``tpot_p*_s``: the same basis, where measured;
- ``ttft_service_p50_s``: median TTFT minus the queueing wait (prefill of the prompt(s) plus a step), learned
  from runs whose TTFT the queue does not dominate; the TTFT percentiles differ by their queueing wait (the
  service part varies far less across requests);
- ``avg_power_w``: a combination of TDP, idle power and TDP weighted by the roofline's compute and memory
  utilisation (per replica);
- ``throughput_itl_factor``: ``k = throughput * itl_p50 / batch`` (1 for a pure decode loop, below 1 when
  prefill steps slow some iterations);
- ``energy_per_output_token_j``: directly, on TDP x the per-output-token step terms (a second estimate).

Served metrics (per replica; the predictor multiplies throughput and power by ``replicas``):

- throughput: ``batch / itl_p50 * k`` in a closed loop (the batch is the engine's, capped by concurrency); in an
  open loop ``rate * output_mean`` below saturation and that over the load above it, where the load is the
  roofline's, scaled by how much slower than the roofline the predicted step is;
- energy per output token: the geometric mean of ``power / throughput`` and the direct estimate (two estimators
  with partly independent errors: 14% instead of 15-16% leave-one-model-out MAPE on ML.ENERGY v3); power is
  re-derived as ``energy x throughput`` so the three always agree;
- TTFT = service + wait, the wait from queueing on the predicted throughput (closed loop: the ``q``-th request
  of ``N`` submitted at once waits ``(q N - B) / X``, a steady closed loop ``(C - B) / X``; open loop:
  M/D/1-like below saturation, the backlog above it);
- TPOT, where no TPOT was measured, from ITL: ``tpot_p50 = itl_p50 / k`` (a request's mean ITL) and the tails
  ``tpot_pq = tpot_p50 * (itl_pq / itl_p50) ** a_q`` (averaging over a request's hundreds of steps smooths
  ITL's spikes away): :data:`TPOT_TAIL_EXPONENT`.

Percentiles are made monotone (p50 <= p90 <= p99) at the end.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

STEP_BASIS: tuple[str, ...] = (
    "step_roofline_s", "step_layers_s", "step_moe_layers_s", "step_batch_layers_s", "step_batch_moe_layers_s",
    "t_comm_s", "step_prefill_s", "step_const_s", "step_kv_s",
)
#: TTFT's service part keeps the plain roofline (prefill of the prompt(s) + one step) as its baseline: too few
#: models measured TTFT for fitted coefficients to transfer (a fitted constant swamped short prompts).
TTFT_BASIS: tuple[str, ...] = ("ttft_service_est_s",)
POWER_BASIS: tuple[str, ...] = ("power_est_w", "power_idle_w", "power_util_compute_w", "power_util_memory_w")
ENERGY_BASIS: tuple[str, ...] = (
    "energy_tok_roofline_j", "energy_tok_layers_j", "energy_tok_moe_layers_j", "energy_tok_batch_layers_j",
    "energy_tok_batch_moe_layers_j", "energy_tok_comm_j", "energy_tok_const_j", "energy_tok_prefill_j",
    "energy_tok_kv_j", "energy_tok_ep_wait_j",
)

#: Primitive target -> baseline columns (None = learned on the log scale without a baseline).
LEARNED: dict[str, tuple[str, ...] | None] = {
    "itl_p50_s": STEP_BASIS,
    "itl_p90_s": STEP_BASIS + ("step_tail_s",),
    "itl_p99_s": STEP_BASIS + ("step_tail_s",),
    "tpot_p50_s": STEP_BASIS,
    "tpot_p90_s": STEP_BASIS + ("step_tail_s",),
    "tpot_p99_s": STEP_BASIS + ("step_tail_s",),
    "ttft_service_p50_s": TTFT_BASIS,  # one column: a fixed ratio baseline, no fitted coefficients
    "avg_power_w": POWER_BASIS,
    "throughput_itl_factor": None,
    "energy_per_output_token_j": ENERGY_BASIS,
}
LEARNED_TARGETS: tuple[str, ...] = tuple(LEARNED)
#: Basis columns only the trees of the targets whose baseline uses them may split on: the per-token energy
#: terms, and the KV-read time (the TTFT trees, splitting on it, lost 13 points of leave-one-model-out MAPE).
BASIS_ONLY: frozenset[str] = frozenset(ENERGY_BASIS) | {"step_kv_s", "step_ep_wait_s"}

#: Served metrics (Measurement metric keys).
METRICS: tuple[str, ...] = (
    "energy_per_output_token_j", "avg_power_w", "throughput_output_tok_s",
    "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tpot_p50_s", "tpot_p90_s", "tpot_p99_s",
    "itl_p50_s", "itl_p90_s", "itl_p99_s",
)
#: Exponents ``a_q`` of the ITL-derived TPOT tails (see the module docstring), set from the medians over our H100
#: runs that measured both of ``log(tpot_pq / tpot_p50) / log(itl_pq / itl_p50)`` (``benchmarks/tpot_from_itl.py``;
#: 63 runs of 4 models, closed-loop chat, fixed lengths and Poisson traffic: 0.214 / 0.093). Given the measured
#: TPOT p50, the tails then miss by 7.7% / 10.8% (MAPE) where a square root (the earlier heuristic) missed by
#: 22.8% / 66.4%.
TPOT_TAIL_EXPONENT: dict[str, float] = {"p50": 0.0, "p90": 0.2, "p99": 0.1}
#: Metrics that add up over replicas.
PER_REPLICA: frozenset[str] = frozenset({"avg_power_w", "throughput_output_tok_s"})
QUANTILES: dict[str, float] = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
#: A row teaches the TTFT service part only when the modeled queueing wait is below this share of its TTFT.
MAX_WAIT_SHARE = 0.1
#: Fewest measured rows, and fewest models they cover, for the TPOT targets to be learned rather than derived
#: from ITL (which every source teaches). Leave-one-model-out over our H100 runs with TPOT
#: (``benchmarks/tpot_from_itl.py``; Llama-3.1-8B x 57 runs, Qwen3-8B / Qwen3-14B / Qwen3-30B-A3B x 2): TPOT p90
#: learned vs derived missed the held-out Qwen3-30B-A3B (MoE) by 52% vs 10%, Qwen3-14B by 9% vs 7%, Qwen3-8B by
#: 6% vs 9%, Llama-3.1-8B by 24% vs 27%: a TPOT model from a few models transfers worse than ITL's.
MIN_TPOT_ROWS = 20
MIN_TPOT_MODELS = 5


def _col(f: pd.DataFrame | Mapping[str, np.ndarray], k: str) -> np.ndarray:
    """Column ``k`` of a feature frame (or of a name -> array mapping) as a float array."""
    v = f[k]
    return v.to_numpy(dtype=float) if isinstance(v, pd.Series) else np.asarray(v, dtype=float)


def queue_wait(f: pd.DataFrame, throughput: np.ndarray, itl_p50: np.ndarray) -> dict[str, np.ndarray]:
    """Queueing wait (s) before a request's prefill, per TTFT percentile, given the predicted throughput.

    Args:
        f: feature frame (per replica).
        throughput: output tokens/s per replica.
        itl_p50: predicted median ITL (s), the service granularity in the open-loop formula.
    """
    out_mean = np.maximum(_col(f, "output_tokens_mean"), 1.0)
    x_req = np.maximum(throughput / out_mean, 1e-12)
    b = _col(f, "batch_est")
    n = np.maximum(_col(f, "batch_est") * _col(f, "waves"), 1.0)  # requests per replica
    conc = _col(f, "concurrency")
    closed = _col(f, "closed_loop") > 0.5
    all_at_once = closed & (np.nan_to_num(conc, nan=0.0) >= n - 0.5)
    load = _col(f, "load_ratio") * np.maximum(itl_p50 / np.maximum(_col(f, "itl_est_s"), 1e-12), 1.0)
    rho = np.minimum(load, 0.98)
    span = n / np.maximum(_col(f, "arrival_rate_rps"), 1e-12)
    backlog = 0.5 * span * (1.0 - 1.0 / np.maximum(load, 1.0))
    mean_open = np.where(load < 1.0, itl_p50 * rho / (2.0 * (1.0 - rho)), backlog)
    out = {}
    for name, q in QUANTILES.items():
        w_once = np.maximum(q * n - b, 0.0) / x_req
        w_steady = np.maximum(np.nan_to_num(conc, nan=0.0) - b, 0.0) / x_req
        # exponential-tail quantiles of an M/D/1-like wait: ln(1/(1-q)) x mean, with mean at q = 0.5 -> 0.69
        w_open = mean_open * np.log(1.0 / (1.0 - q)) / np.log(2.0) * 0.69
        out[name] = np.where(closed, np.where(all_at_once, w_once, w_steady), w_open)
    return out


def learned_frame(f: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Primitive training targets from measured metrics (per replica). NaN where not measured."""
    y = pd.DataFrame(index=metrics.index)
    for k in ("itl_p50_s", "itl_p90_s", "itl_p99_s", "tpot_p50_s", "tpot_p90_s", "tpot_p99_s", "avg_power_w",
              "energy_per_output_token_j"):
        y[k] = metrics[k] if k in metrics else np.nan
    tput = metrics["throughput_output_tok_s"].to_numpy(float)
    itl = metrics["itl_p50_s"].to_numpy(float)
    y["throughput_itl_factor"] = tput * itl / _col(f, "batch_est")
    wait = np.nan_to_num(queue_wait(f, tput, itl)["p50"], nan=0.0)
    ttft = metrics["ttft_p50_s"].to_numpy(float)
    # the service part is learned only where the queue does not dominate: there it is the difference of two
    # large numbers, and a queueing run's TTFT is left to the queue model
    y["ttft_service_p50_s"] = np.where(wait < MAX_WAIT_SHARE * ttft, ttft - wait, np.nan)
    return y[list(LEARNED_TARGETS)]


def derive(f: pd.DataFrame, learned: pd.DataFrame | Mapping[str, np.ndarray], tpot_learned: bool) -> pd.DataFrame:
    """Served metrics per replica from primitive predictions (see the module docstring).

    Args:
        f: feature frame (the result is indexed like it).
        learned: predictions of :data:`LEARNED_TARGETS` (columns by name, or a name -> array mapping).
        tpot_learned: whether the TPOT targets were learned from data (else derived from ITL).

    Returns:
        DataFrame with the :data:`METRICS` columns, in that order.
    """
    itl50 = _col(learned, "itl_p50_s")
    k = np.clip(_col(learned, "throughput_itl_factor"), 0.05, 1.5)
    b = _col(f, "batch_est")
    saturated = b / itl50 * k
    demand = _col(f, "arrival_rate_rps") * _col(f, "output_tokens_mean")
    closed = (_col(f, "closed_loop") > 0.5) | ~np.isfinite(demand)
    load = _col(f, "load_ratio") * np.maximum(itl50 / np.maximum(_col(f, "itl_est_s"), 1e-12), 1.0)
    served = np.where(load < 1.0, demand, demand / np.maximum(load, 1.0))  # open loop: demand, or capacity
    tput = np.where(closed, saturated, served)
    out: dict[str, np.ndarray] = {}
    direct = _col(learned, "energy_per_output_token_j")
    via_power = _col(learned, "avg_power_w") / tput
    energy = np.where(np.isfinite(direct) & (direct > 0), np.sqrt(via_power * direct), via_power)
    out["energy_per_output_token_j"] = energy
    out["avg_power_w"] = energy * tput
    out["throughput_output_tok_s"] = tput
    wait = queue_wait(f, tput, itl50)
    service = _col(learned, "ttft_service_p50_s")
    for name in QUANTILES:
        out[f"ttft_{name}_s"] = service + wait[name]
    for name in QUANTILES:
        itl = _col(learned, f"itl_{name}_s")
        if tpot_learned:
            out[f"tpot_{name}_s"] = _col(learned, f"tpot_{name}_s")
        else:
            out[f"tpot_{name}_s"] = itl50 / k * np.maximum(itl / itl50, 1.0) ** TPOT_TAIL_EXPONENT[name]
    for name in QUANTILES:
        out[f"itl_{name}_s"] = _col(learned, f"itl_{name}_s")
    for metric in ("ttft", "tpot", "itl"):  # percentiles never decrease (targets are learned separately)
        out[f"{metric}_p90_s"] = np.fmax(out[f"{metric}_p90_s"], out[f"{metric}_p50_s"])
        out[f"{metric}_p99_s"] = np.fmax(out[f"{metric}_p99_s"], out[f"{metric}_p90_s"])
    data = np.stack([out[m] for m in METRICS], axis=1) if len(b) else np.zeros((0, len(METRICS)))
    return pd.DataFrame(data, columns=list(METRICS), index=f.index)
