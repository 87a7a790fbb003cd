"""compute_metrics against hand-computed values (vLLM ``calculate_metrics`` definitions)."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.serving.loadgen import RequestResult
from recommender.serving.metrics import compute_metrics, latency_stats, request_value
from recommender.slo import SLO

pytestmark = pytest.mark.unit
approx = pytest.approx


def req(rid: str, start: float, tokens: list[float], inp: int, end: float | None = None, error: str = "",
        usage: int = 0) -> RequestResult:
    r = RequestResult(rid, inp, output_tokens=usage, start_s=start, token_times_s=list(tokens),
                      end_s=end if end is not None else (tokens[-1] + 0.1 if tokens else start), error=error)
    r.finish()
    return r


@pytest.fixture
def results() -> list[RequestResult]:
    return [
        req("a", 0.0, [1.0, 1.5, 2.5], 10),  # ttft 1.0, itl .5 1.0, e2e 2.5, tpot .75
        req("b", 0.5, [1.0, 1.2], 20),  # ttft .5, itl .2, e2e .7, tpot .2
        req("c", 1.0, [3.0], 30),  # ttft 2.0, no itl, e2e 2.0, no tpot (one token)
        req("d", 0.2, [], 40, end=0.4, error="HTTP 500"),  # failed
    ]


def test_request_fields(results: list[RequestResult]) -> None:
    a, b, c, d = results
    assert (a.ttft_s, a.latency_s, a.output_tokens, a.tpot_s) == (1.0, 2.5, 3, approx(0.75))
    assert a.itl_s == approx([0.5, 1.0])
    assert c.tpot_s is None and c.itl_s == []
    assert not d.success and d.ttft_s is None and d.output_tokens == 0


def test_whole_run(results: list[RequestResult]) -> None:
    m = compute_metrics(results)
    assert m.duration_s == approx(3.1)  # first send (0.0) to last stream end (3.1)
    assert (m.completed_requests, m.failed_requests) == (3, 1)
    assert (m.input_tokens, m.output_tokens) == (60, 6)
    assert m.throughput_output_tok_s == approx(6 / 3.1)
    assert m.throughput_total_tok_s == approx(66 / 3.1)
    assert m.throughput_requests_s == approx(3 / 3.1)
    assert (m.ttft_mean_s, m.ttft_p50_s) == (approx(3.5 / 3), 1.0)
    assert (m.ttft_p90_s, m.ttft_p99_s) == (approx(1.8), approx(1.98))  # numpy linear: 1 + 0.8 * (2 - 1), ...
    assert (m.tpot_mean_s, m.tpot_p50_s, m.tpot_p90_s) == (approx(0.475), approx(0.475), approx(0.695))
    assert (m.itl_mean_s, m.itl_p50_s, m.itl_p95_s) == (approx(1.7 / 3), approx(0.5), approx(0.95))
    assert (m.e2e_mean_s, m.e2e_p50_s) == (approx(5.2 / 3), approx(2.0))
    assert m.slo_attainment is None and m.energy_j is None
    assert m.avg_batch_size == approx((1.5 + 0.2 + 0.0) / 3.1)


def test_explicit_duration_and_usage_counts() -> None:
    rs = [req("a", 0.0, [1.0, 2.0], 5, usage=4)]  # 4 tokens in 2 chunks (usage wins over chunk count)
    m = compute_metrics(rs, duration_s=4.0)
    assert m.output_tokens == 4 and m.throughput_output_tok_s == approx(1.0)
    assert m.tpot_mean_s == approx((2.0 - 1.0) / 3)


def test_percentiles_match_numpy_linear() -> None:
    x = list(np.random.default_rng(1).exponential(size=101))
    s = latency_stats(x)
    for p in (50, 90, 95, 99):
        assert s[f"p{p}"] == approx(np.percentile(x, p, method="linear"))
    assert s["p50"] == approx(np.median(x))
    assert latency_stats([]) == {"mean": None, "p50": None, "p90": None, "p95": None, "p99": None}


def test_goodput_and_attainment(results: list[RequestResult]) -> None:
    slo = SLO.parse("ttft:p99<=1.5s,tpot:p90<=500ms")
    m = compute_metrics(results, slo)
    assert m.slo_attainment == approx(1 / 4)  # only b; c misses TTFT, a misses TPOT, d failed
    assert m.goodput_requests_s == approx(1 / 3.1)
    itl = compute_metrics(results, SLO.parse("itl:p99<=600ms"))
    assert itl.slo_attainment == approx(2 / 4)  # b (max gap .2) and c (no gaps); a's max gap is 1.0
    e2e = compute_metrics(results, SLO.parse("e2e:p50<=2.2"))
    assert e2e.slo_attainment == approx(2 / 4)
    assert request_value(results[2], "tpot") == 0.0  # one output token: TPOT 0, as vLLM's goodput


def test_window(results: list[RequestResult]) -> None:
    m = compute_metrics(results, SLO.parse("ttft:p99<=1.5"), window=(0.9, 2.0))
    assert m.duration_s == approx(1.1)
    assert m.output_tokens == 4 and m.throughput_output_tok_s == approx(4 / 1.1)
    assert (m.ttft_mean_s, m.ttft_p50_s) == (approx(0.75), approx(0.75))  # a and b got first tokens inside
    assert m.completed_requests == 1 and m.e2e_mean_s == approx(0.7)  # only b finished inside
    assert (m.itl_mean_s, m.itl_p50_s) == (approx(0.35), approx(0.35))  # gaps ending at 1.5 and 1.2
    assert m.input_tokens == 30 and m.failed_requests == 0
    assert m.avg_batch_size == approx(1.2 / 1.1)
    assert m.slo_attainment == 1.0


def test_server_running_samples(results: list[RequestResult]) -> None:
    m = compute_metrics(results, window=(1.0, 2.0), server_running=[(0.5, 9.0), (1.0, 2.0), (1.5, 4.0), (2.5, 9.0)])
    assert m.avg_batch_size == approx(3.0)


def test_all_failed() -> None:
    m = compute_metrics([req("x", 0.0, [], 5, end=1.0, error="boom")], SLO.parse("ttft:p99<=1"))
    assert m.completed_requests == 0 and m.output_tokens == 0 and m.ttft_p99_s is None
    assert m.slo_attainment == 0.0 and m.throughput_output_tok_s == 0.0
