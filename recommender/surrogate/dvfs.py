"""Analytical DVFS model: what a locked SM clock or a power limit does to time, power and energy.

No public dataset sweeps GPU clocks or power limits, and the lent GPU machine may not change them, so the
learned surrogate predicts the default-clock behaviour and this model moves it to the requested clock. Every
prediction that uses it carries provenance ``modeled``.

Time (``r = f / f_max``, the relative SM clock). The default-clock time ``T0`` of a decode step (or of one
output token, or a TTFT) is split with the roofline into compute-bound work ``c`` (decode when compute
bound, prefill), memory-bound work ``m`` and the rest ``o = T0 - c - m`` (kernels below roofline, launch and
scheduler overhead)::

    T(r) = max(c_dec / r, m * max(1, r_knee / r)) + c_pf / r + o * (s_o / r + 1 - s_o)

Power (per GPU, ``P0`` the predicted default-clock power, ``P_s`` the static power)::

    P(r) = P_s + (P0 - P_s) * (s_mem + (1 - s_mem) * r * v(r)^2),   v(r) = max(v_floor, 1 - k_v * (1 - r))

i.e. CMOS dynamic power ``C V^2 f`` for the SM share, with voltage falling linearly with clock down to a floor,
and an HBM/IO share that does not follow the SM clock. Energy per token is ``P(r) T(r) / tokens``: U-shaped in
``r`` (power falls faster than time grows near the top, time explodes at the bottom). A power limit caps
``P(r)``: the clock falls to the highest ``r`` (below the locked clock, if any) with ``P(r) <= limit``.

:data:`DEFAULT_PARAMS` documents each parameter's value and source; :func:`calibrate` refits ``s_mem`` and
``s_o`` from measurements taken at locked clocks, where an operator has them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class DVFSParams:
    """Parameters of the DVFS model (dimensionless shares and ratios)."""

    s_mem: float = 0.40
    s_other_time: float = 0.30
    r_knee: float = 0.45
    v_floor: float = 0.70
    k_v: float = 0.78
    static_power_of_idle: float = 1.0

    def to_dict(self) -> dict[str, float]:
        """Plain dict (for the model card)."""
        return asdict(self)


DEFAULT_PARAMS = DVFSParams()

#: Where each parameter comes from. Values marked "estimate" are engineering judgement checked against the
#: published shapes (tests/unit/test_dvfs.py), not measured here.
PARAM_SOURCES: dict[str, str] = {
    "s_mem": "estimate: share of dynamic board power that does not follow the SM clock (HBM3 at ~3-4 pJ/bit x "
    "3.35 TB/s ~ 100 W, plus NVLink/IO/L2) ~0.3-0.45 of H100's ~620 W dynamic range; Ma et al., 'The Illusion of "
    "Power Capping in LLM Decode' (arXiv:2605.11999, 2026): memory-bound decode on H200 draws 137-300 W and "
    "clock locking recovers up to 32% of decode energy at minimal throughput loss",
    "s_other_time": "estimate: share of non-roofline step time (sub-roofline kernels, launches, scheduler, "
    "sampling) that stretches with 1/clock; small because decode time is 'largely insensitive to GPU frequency' "
    "(Maliakel et al., arXiv:2501.08219, 2025; Stojkovic et al., DynamoLLM, HPCA 2025: decode tolerates lower "
    "frequencies far better than prefill)",
    "r_knee": "estimate: below ~0.45 x f_max (~900 MHz on H100) the SMs can no longer issue enough loads to "
    "saturate HBM, so memory-bound time starts to grow ~1/clock (the U-shape's left arm)",
    "v_floor": "estimate: minimum DVFS voltage ~0.7 of the voltage at maximum boost (typical of 4-7 nm GPU V-f "
    "curves); below it power falls only linearly with clock",
    "k_v": "estimate: voltage falls ~0.78% per 1% of clock below f_max (V ~0.85 at 1.6/1.98 GHz on H100), "
    "giving dynamic power ~ f^2.5 near the top as in the CMOS relation P = C V^2 f",
    "static_power_of_idle": "static (clock-independent) power = the catalog's idle power at P0 (measured 78 W "
    "on the lent H100); Zeus (You et al., NSDI'23) and Perseus (Chung et al., SOSP'24) model GPU energy as "
    "static power x time plus dynamic energy",
    "time_model": "compute-bound time ~ 1/clock, memory-bound time ~ constant: Perseus (Chung et al., SOSP'24) "
    "and the roofline; energy U-shaped in clock: Voltana project (U-shape on A100 between 1005 and 1410 MHz), "
    "DynamoLLM (Stojkovic et al., HPCA'25)",
}


def _voltage(r: np.ndarray, p: DVFSParams) -> np.ndarray:
    return np.maximum(p.v_floor, 1.0 - p.k_v * (1.0 - r))


def power_ratio_dynamic(r: np.ndarray, p: DVFSParams = DEFAULT_PARAMS) -> np.ndarray:
    """Relative dynamic power ``s_mem + (1 - s_mem) r v(r)^2`` (1 at ``r = 1``)."""
    r = np.asarray(r, float)
    return p.s_mem + (1.0 - p.s_mem) * r * _voltage(r, p) ** 2


def power_at(r: np.ndarray, p0_gpu: np.ndarray, idle_w: np.ndarray, p: DVFSParams = DEFAULT_PARAMS) -> np.ndarray:
    """Per-GPU power (W) at relative clock ``r`` given the default-clock power ``p0_gpu`` (W)."""
    ps = np.minimum(np.asarray(idle_w, float) * p.static_power_of_idle, np.asarray(p0_gpu, float))
    return ps + (np.asarray(p0_gpu, float) - ps) * power_ratio_dynamic(r, p)


def time_ratio(r: np.ndarray, t0: np.ndarray, compute_dec: np.ndarray, memory: np.ndarray, compute_pf: np.ndarray,
               p: DVFSParams = DEFAULT_PARAMS) -> np.ndarray:
    """``T(r) / T0`` for times split into decode compute, memory and prefill compute parts (seconds).

    When the roofline parts exceed ``T0`` (the prediction is faster than the prior) they are scaled down to fit.
    """
    r = np.maximum(np.asarray(r, float), 1e-3)
    t0 = np.maximum(np.asarray(t0, float), 1e-12)
    c, m, pf = (np.asarray(x, float) for x in (compute_dec, memory, compute_pf))
    roof = np.maximum(c, m) + pf
    scale = np.where(roof > t0, t0 / np.maximum(roof, 1e-12), 1.0)
    c, m, pf = c * scale, m * scale, pf * scale
    other = np.maximum(t0 - (np.maximum(c, m) + pf), 0.0)
    stretch = p.s_other_time / r + 1 - p.s_other_time
    t = np.maximum(c / r, m * np.maximum(1.0, p.r_knee / r)) + pf / r + other * stretch
    return t / t0


def effective_clock(f: pd.DataFrame, p0_gpu: np.ndarray, p: DVFSParams = DEFAULT_PARAMS) -> np.ndarray:
    """Relative clock each row runs at: the locked clock (or max), lowered until ``P(r) <= power_limit_w``.

    Args:
        f: feature frame with ``gpu_clock_mhz``, ``power_limit_w`` (NaN = not set), ``gpu_clock_max_mhz``,
            ``gpu_clock_min_mhz``, ``gpu_idle_w``.
        p0_gpu: predicted default-clock power per GPU (W).
    """
    fmax = f["gpu_clock_max_mhz"].to_numpy(float)
    rmin = f["gpu_clock_min_mhz"].to_numpy(float) / fmax
    lock = f["gpu_clock_mhz"].to_numpy(float)
    r = np.clip(np.where(np.isnan(lock), 1.0, lock / fmax), rmin, 1.0)
    cap = f["power_limit_w"].to_numpy(float)
    idle = f["gpu_idle_w"].to_numpy(float)
    binding = ~np.isnan(cap) & (power_at(r, p0_gpu, idle, p) > cap)
    if binding.any():
        lo, hi = rmin[binding].copy(), r[binding].copy()
        p0b, idb, capb = np.asarray(p0_gpu, float)[binding], idle[binding], cap[binding]
        for _ in range(40):  # P(r) increases with r: bisect for the largest r under the cap
            mid = 0.5 * (lo + hi)
            ok = power_at(mid, p0b, idb, p) <= capb
            lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
        r[binding] = lo
    return r


def _parts(f: pd.DataFrame) -> dict[str, np.ndarray]:
    """Roofline parts (seconds) of a decode step, of one output token and of a TTFT, from the features."""
    g = {k: f[k].to_numpy(float) for k in (
        "t_decode_compute_s", "t_decode_memory_s", "t_prefill_token_s", "t_prefill_request_s", "batch_est", "waves",
        "input_tokens_mean", "output_tokens_mean", "ttft_est_s", "t_decode_step_s", "refill",
    )}
    b, mix = g["batch_est"], g["refill"]
    pf_tok = b * g["input_tokens_mean"] / np.maximum(g["output_tokens_mean"], 1.0) * g["t_prefill_token_s"]
    burst = (1.0 + (b - 1.0) * (1.0 - mix)) * g["t_prefill_request_s"]
    wait = np.maximum(g["ttft_est_s"] - g["t_decode_step_s"] - burst, 0.0)
    compute_dec = np.where(g["t_decode_compute_s"] >= g["t_decode_memory_s"], g["t_decode_compute_s"], 0.0)
    return {"c": compute_dec, "m": g["t_decode_memory_s"], "pf_step": mix * pf_tok, "pf_tok": pf_tok,
            "burst": burst, "wait": wait, "step": g["t_decode_step_s"], "b": b}


def ratios(f: pd.DataFrame, r: np.ndarray, itl0: np.ndarray, tput0: np.ndarray, ttft0: np.ndarray,
           p: DVFSParams = DEFAULT_PARAMS) -> dict[str, np.ndarray]:
    """Time ratios at relative clock ``r`` for ITL-like metrics, time per output token and TTFT.

    Args:
        f: feature frame (per replica).
        r: relative clock per row.
        itl0, tput0, ttft0: default-clock predictions (s, output tokens/s per replica, s); NaN allowed.
    """
    q = _parts(f)
    step = time_ratio(r, itl0, q["c"], q["m"], q["pf_step"], p)
    per_tok_t0 = q["b"] / np.maximum(tput0, 1e-12)
    tok = time_ratio(r, np.where(np.isfinite(per_tok_t0), per_tok_t0, itl0), q["c"], q["m"], q["pf_tok"], p)
    t_ttft = np.maximum(np.where(np.isfinite(ttft0), ttft0, q["burst"] + q["step"]), 1e-12)
    pf_share = np.clip(q["burst"] / t_ttft, 0.0, 1.0)
    ttft = pf_share / np.maximum(r, 1e-3) + (1.0 - pf_share) * step
    return {"itl": step, "token": tok, "ttft": ttft}


def apply(f: pd.DataFrame, pred: pd.DataFrame, p: DVFSParams = DEFAULT_PARAMS) -> tuple[pd.DataFrame, np.ndarray]:
    """Move default-clock predictions (per replica) to each row's clock / power limit.

    Args:
        f: feature frame (:func:`recommender.surrogate.features.build_features`).
        pred: per-replica default-clock predictions with any of the TARGETS columns.

    Returns:
        (adjusted copy of ``pred``, relative clock per row). Rows without a clock or power knob are unchanged.
    """
    out = pred.copy()
    tp = f["tensor_parallel_size"].to_numpy(float)
    nan = np.full(len(f), np.nan)
    p0 = out["avg_power_w"].to_numpy(float) if "avg_power_w" in out else f["power_est_w"].to_numpy(float) * 0.7
    r = effective_clock(f, p0 / tp, p)
    col = lambda k: out[k].to_numpy(float) if k in out else nan  # noqa: E731
    rat = ratios(f, r, col("itl_p50_s"), col("throughput_output_tok_s"), col("ttft_p50_s"), p)
    p_ratio = power_at(r, p0 / tp, f["gpu_idle_w"].to_numpy(float), p) / np.maximum(p0 / tp, 1e-9)
    for k in out.columns:
        if k.startswith(("itl_", "tpot_")):
            out[k] = out[k] * rat["itl"]
        elif k.startswith("ttft_"):
            out[k] = out[k] * rat["ttft"]
        elif k == "throughput_output_tok_s":
            out[k] = out[k] / rat["token"]
        elif k == "avg_power_w":
            out[k] = out[k] * p_ratio
        elif k == "energy_per_output_token_j":
            out[k] = out[k] * p_ratio * rat["token"]
    return out, r


def to_default_clock(f: pd.DataFrame, measured: pd.DataFrame, p: DVFSParams = DEFAULT_PARAMS,
                     clock_mhz: np.ndarray | None = None) -> pd.DataFrame:
    """Inverse of :func:`apply` for training rows measured at a locked clock (or a power cap).

    The relative clock is ``clock_mhz`` (e.g. the measured mean SM clock) where given, else the locked clock,
    else 1 (a power cap without a clock record is assumed not to bind). Two fixed-point passes recover the
    default-clock times the ratios depend on.
    """
    fmax = f["gpu_clock_max_mhz"].to_numpy(float)
    lock = f["gpu_clock_mhz"].to_numpy(float) if clock_mhz is None else np.asarray(clock_mhz, float)
    r = np.clip(np.where(np.isnan(lock), 1.0, lock / fmax), 1e-3, 1.0)
    out = measured.copy()
    col = lambda k: out[k].to_numpy(float) if k in out else np.full(len(f), np.nan)  # noqa: E731
    for _ in range(2):
        rat = ratios(f, r, col("itl_p50_s"), col("throughput_output_tok_s"), col("ttft_p50_s"), p)
        out = measured.copy()
        for k in out.columns:
            if k.startswith(("itl_", "tpot_")):
                out[k] = measured[k] / rat["itl"]
            elif k.startswith("ttft_"):
                out[k] = measured[k] / rat["ttft"]
            elif k == "throughput_output_tok_s":
                out[k] = measured[k] * rat["token"]
    tp = f["tensor_parallel_size"].to_numpy(float)
    if "avg_power_w" in out:
        pm = measured["avg_power_w"].to_numpy(float) / tp
        ps = f["gpu_idle_w"].to_numpy(float) * p.static_power_of_idle
        p0 = ps + (pm - ps) / power_ratio_dynamic(r, p)
        out["avg_power_w"] = np.where(pm > ps, p0, pm) * tp
        if "energy_per_output_token_j" in out and "throughput_output_tok_s" in out:
            out["energy_per_output_token_j"] = out["avg_power_w"] / out["throughput_output_tok_s"]
    return out


def calibrate(f: pd.DataFrame, default_pred: pd.DataFrame, measured: pd.DataFrame,
              p: DVFSParams = DEFAULT_PARAMS) -> tuple[DVFSParams, dict[str, Any]]:
    """Refit ``s_mem`` and ``s_other_time`` to measurements at locked clocks (grid search, log-squared error).

    Args:
        f: features of the locked-clock rows.
        default_pred: the surrogate's default-clock predictions for those rows.
        measured: their measured metrics (ITL p50, throughput, power).

    Returns:
        (fitted params, report with rows used and the error before/after).
    """
    def loss(q: DVFSParams) -> float:
        adj, _ = apply(f, default_pred, q)
        errs = [np.log(adj[k] / measured[k]) for k in ("itl_p50_s", "throughput_output_tok_s", "avg_power_w")
                if k in adj and k in measured]
        e = np.concatenate([x[np.isfinite(x)] for x in errs]) if errs else np.array([])
        return float(np.mean(e**2)) if e.size else float("nan")

    before = loss(p)
    best, best_loss = p, before
    for s_mem in np.linspace(0.1, 0.8, 15):
        for s_o in np.linspace(0.0, 1.0, 11):
            q = replace(p, s_mem=float(s_mem), s_other_time=float(s_o))
            lq = loss(q)
            if np.isfinite(lq) and (not np.isfinite(best_loss) or lq < best_loss):
                best, best_loss = q, lq
    return best, {"rows": int(len(f)), "mse_log_before": before, "mse_log_after": best_loss}
