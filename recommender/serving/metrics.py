"""Serving metrics from per-request records: pure functions, defined exactly as ``vllm bench serve``.

Definitions (``vllm/benchmarks/serve.py``, ``calculate_metrics``), over successful requests:

- TTFT: first content chunk - send. E2E: last content chunk - send (vLLM's ``latency``).
- TPOT per request: ``(latency - ttft) / (output_tokens - 1)`` for requests with ``output_tokens > 1``.
- ITL: every gap between consecutive content chunks, pooled over requests.
- Percentiles with numpy's default (linear) method; p50 equals vLLM's median.
- Throughputs over the benchmark duration: output tokens, input + output tokens, completed requests.
- Goodput (``--goodput``): a request is good when it meets every per-request target: ``ttft <= limit``,
  ``tpot <= limit`` (a request with one output token counts as TPOT 0, as vLLM), ``e2e <= limit``. vLLM
  has no ITL goodput; here a request meets an ITL target when its largest gap is within the limit (every
  token arrived in time; no gaps counts as 0). ``slo_attainment`` = good / requests in scope, where a
  failed request is never good; ``goodput_requests_s`` = good / duration.

Where vLLM reports 0 for a statistic over no values, we report None ("absent, never 0").

Window metrics (``window=(t0, t1)``, the steady state) keep the same definitions but take, over the window:
output tokens whose chunk arrived inside it (a chunk carries ``output_tokens / chunks`` tokens), TTFT of
requests whose first token arrived inside it, ITL gaps that end inside it, TPOT and E2E of requests that
finished inside it (and attainment over those plus failures that ended inside it); the duration is the
window's length. ``avg_batch_size`` is the mean of vLLM's ``num_requests_running`` samples in scope when
there are any, else the client-side estimate: mean number of requests between their first and last token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from recommender.measurement import Metrics

if TYPE_CHECKING:
    from recommender.serving.records import RequestResult
    from recommender.slo import SLO

PERCENTILES: tuple[int, ...] = (50, 90, 95, 99)


def latency_stats(values: Sequence[float]) -> dict[str, float | None]:
    """``mean``, ``p50``, ``p90``, ``p95``, ``p99`` of ``values`` (numpy linear percentiles); None when empty."""
    if len(values) == 0:
        return {"mean": None, **{f"p{p}": None for p in PERCENTILES}}
    a = np.asarray(values, dtype=float)
    pct = np.percentile(a, PERCENTILES)
    return {"mean": float(a.mean()), **{f"p{p}": float(v) for p, v in zip(PERCENTILES, pct, strict=True)}}


def request_value(r: RequestResult, metric: str) -> float:
    """The per-request value that an SLO target on ``metric`` is checked against (see module docstring)."""
    if metric == "ttft":
        return float(r.ttft_s) if r.ttft_s is not None else float("inf")
    if metric == "e2e":
        return float(r.latency_s) if r.latency_s is not None else float("inf")
    if metric == "tpot":
        tpot = r.tpot_s
        return 0.0 if tpot is None else float(tpot)
    if metric == "itl":
        return float(max(r.itl_s)) if r.itl_s else 0.0
    raise ValueError(f"unknown SLO metric {metric!r}")


def is_good(r: RequestResult, slo: SLO) -> bool:
    """True when ``r`` succeeded and meets every target of ``slo`` per request."""
    return r.success and all(request_value(r, t.metric) <= t.limit_s for t in slo.targets)


def _inside(t: float | None, window: tuple[float, float]) -> bool:
    return t is not None and window[0] <= t <= window[1]


def _tokens_in(r: RequestResult, window: tuple[float, float]) -> float:
    if not r.token_times_s:
        return 0.0
    per_chunk = r.output_tokens / len(r.token_times_s)
    return per_chunk * sum(1 for t in r.token_times_s if window[0] <= t <= window[1])


def _client_batch(results: Sequence[RequestResult], t0: float, t1: float) -> float | None:
    if t1 <= t0:
        return None
    busy = 0.0
    for r in results:
        if r.first_token_s is None or r.last_token_s is None:
            continue
        busy += max(0.0, min(r.last_token_s, t1) - max(r.first_token_s, t0))
    return busy / (t1 - t0)


def compute_metrics(
    results: Sequence[RequestResult],
    slo: SLO | None = None,
    duration_s: float | None = None,
    window: tuple[float, float] | None = None,
    *,
    server_running: Sequence[tuple[float, float | None]] | None = None,
) -> Metrics:
    """Metrics of a run (``window=None``) or of a window of it.

    Args:
        results: every request of the run, failed ones included.
        slo: targets for ``slo_attainment`` and ``goodput_requests_s`` (None: both left None).
        duration_s: benchmark duration for the whole run (default: first send to last stream end).
            Ignored when ``window`` is given.
        window: ``(t0, t1)`` in the records' monotonic seconds, e.g. the steady state.
        server_running: ``(t_s, running)`` samples of vLLM's ``num_requests_running`` for ``avg_batch_size``.

    Returns:
        :class:`~recommender.measurement.Metrics` with latency, throughput, count and SLO fields; energy and
        power fields are None (the energy meter fills them).
    """
    ok = [r for r in results if r.success]
    if window is None:
        if duration_s is None:
            starts = [r.start_s for r in results]
            ends = [r.end_s for r in results if r.end_s is not None]
            duration_s = (max(ends) - min(starts)) if starts and ends else 0.0
        t0 = min((r.start_s for r in results), default=0.0)
        t1 = t0 + duration_s
        ttft_reqs = end_reqs = ok
        itls = [g for r in ok for g in r.itl_s]
        output = float(sum(r.output_tokens for r in ok))
        input_tokens = sum(r.input_tokens for r in ok)
        scope = list(results)
        failed = len(results) - len(ok)
    else:
        t0, t1 = window
        duration_s = t1 - t0
        ttft_reqs = [r for r in ok if _inside(r.first_token_s, window)]
        end_reqs = [r for r in ok if _inside(r.last_token_s, window)]
        itls = [b - a for r in ok for a, b in zip(r.token_times_s, r.token_times_s[1:], strict=False) if t0 <= b <= t1]
        output = sum(_tokens_in(r, window) for r in ok)
        input_tokens = sum(r.input_tokens for r in ttft_reqs)
        failures = [r for r in results if not r.success and _inside(r.end_s, window)]
        scope = end_reqs + failures
        failed = len(failures)

    m: dict[str, float | int | None] = {
        "duration_s": duration_s,
        "completed_requests": len(end_reqs),
        "failed_requests": failed,
        "input_tokens": int(input_tokens),
        "output_tokens": int(round(output)),
    }
    if duration_s and duration_s > 0:
        m["throughput_output_tok_s"] = output / duration_s
        m["throughput_total_tok_s"] = (input_tokens + output) / duration_s
        m["throughput_requests_s"] = len(end_reqs) / duration_s
    for name, values in (
        ("ttft", [r.ttft_s for r in ttft_reqs if r.ttft_s is not None]),
        ("tpot", [t for t in (r.tpot_s for r in end_reqs) if t is not None]),
        ("itl", itls),
        ("e2e", [r.latency_s for r in end_reqs if r.latency_s is not None]),
    ):
        for stat, v in latency_stats(values).items():
            m[f"{name}_{stat}_s"] = v
    if slo is not None and scope:
        good = sum(1 for r in scope if is_good(r, slo))
        m["slo_attainment"] = good / len(scope)
        if duration_s and duration_s > 0:
            m["goodput_requests_s"] = good / duration_s
    vals = [v for t, v in (server_running or ()) if v is not None and t0 <= t <= t1]
    m["avg_batch_size"] = float(np.mean(vals)) if vals else _client_batch(ok, t0, t1)
    return Metrics(**m)  # type: ignore[arg-type]
