"""The load generator and metrics against a real streaming server whose token timing is known."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from recommender.serving.loadgen import RequestResult, make_prompts, run_load
from recommender.serving.metrics import compute_metrics
from recommender.serving.steady import SteadyStateTracker, steady_state_counts, steady_state_window
from recommender.workload import FixedLength, PoissonArrivals, RequestPlan, Workload

from .fake_openai_server import FakeOpenAIServer, FakeServerProcess, FakeTiming

pytestmark = pytest.mark.integration
TOL = 0.005  # timer jitter on loopback


def closed(n: int, inp: int, out: int, conc: int | None = None) -> RequestPlan:
    return RequestPlan(np.full(n, inp, np.int64), np.full(n, out, np.int64), None, conc or n)


def run(srv: FakeOpenAIServer | FakeServerProcess, plan: RequestPlan, **kw: object):  # type: ignore[no-untyped-def]
    prompts = make_prompts(plan.input_tokens, 1000, {0, 1, 2}, seed=0)
    return run_load([srv.base_url], "model", plan, prompts, **kw)  # type: ignore[arg-type]


def ideal(results: list[RequestResult], timeline: dict) -> list[RequestResult]:
    """The records a zero-delay client would have made: the server's own chunk write times (same clock)."""
    out = []
    for r in results:
        e = timeline[r.request_id]
        i = RequestResult(r.request_id, r.input_tokens, output_tokens=r.output_tokens, start_s=r.start_s,
                          token_times_s=list(e["token_s"]), end_s=r.end_s, error=r.error)
        i.finish()
        out.append(i)
    return out


LATENCY_KEYS = [f"{m}_{s}_s" for m in ("ttft", "tpot", "itl", "e2e") for s in ("mean", "p50", "p90", "p99")]


def test_exact_timing_all_at_once() -> None:
    timing = FakeTiming(ttft_base_s=0.03, ttft_per_input_token_s=0.001, itl_s=0.01)
    with FakeServerProcess(timing) as srv:
        run(srv, closed(8, 20, 2))  # warm-up: first connections and code paths are slower
        res = run(srv, closed(8, 20, 10), request_id_prefix="main")
        stats = srv.stats()
    payload = stats["payloads"][-1]
    assert all(r.success for r in res.results) and len(res.results) == 8
    assert payload["max_tokens"] == payload["min_tokens"] == 10 and payload["prompt_len"] == 20
    assert payload["ignore_eos"] is True and payload["temperature"] == 0.0
    assert payload["stream"] is True and payload["stream_options"] == {"include_usage": True}
    # the server kept its schedule: first chunk a + b * input after admission, then one every itl_s
    for r in res.results:
        e = stats["timeline"][r.request_id]
        assert e["token_s"][0] - e["admit_s"] == pytest.approx(0.03 + 0.001 * 20, abs=2 * TOL)
        assert e["token_s"][-1] - e["token_s"][0] == pytest.approx(0.09, abs=2 * TOL)
    # what the client measured equals what the server did, statistic by statistic
    m = compute_metrics(res.results, duration_s=res.duration_s)
    truth = compute_metrics(ideal(res.results, stats["timeline"]), duration_s=res.duration_s)
    for key in LATENCY_KEYS:
        assert m.get(key) == pytest.approx(truth.get(key), abs=TOL), key
    # and the nominal model: ITL and TPOT are the server's gap; E2E - TTFT is 9 gaps for every request
    assert (m.itl_p50_s, m.tpot_mean_s) == (pytest.approx(0.01, abs=TOL), pytest.approx(0.01, abs=TOL / 2))
    assert [r.latency_s - r.ttft_s for r in res.results] == pytest.approx([0.09] * 8, abs=2 * TOL)  # type: ignore[operator]
    assert min(r.ttft_s for r in res.results) >= 0.05 - 0.001  # type: ignore[type-var]
    assert m.output_tokens == 80 and m.input_tokens == 160 and m.completed_requests == 8
    assert m.throughput_output_tok_s == pytest.approx(80 / res.duration_s)
    assert res.duration_s == pytest.approx(max(r.end_s for r in res.results) - res.start_s, abs=TOL)  # type: ignore[type-var]


def test_client_cpu_is_reported_and_gc_restored() -> None:
    import gc

    with FakeServerProcess(FakeTiming(ttft_base_s=0.02, itl_s=0.01)) as srv:
        assert gc.isenabled()
        res = run(srv, closed(4, 10, 20))
        assert gc.isenabled() and gc.get_freeze_count() == 0  # the collector is back as it was
        gc.disable()
        try:
            run(srv, closed(2, 10, 2))
            assert not gc.isenabled()  # a caller's disabled collector stays disabled
        finally:
            gc.enable()
    assert res.client_cpu_s is not None and 0 < res.client_cpu_s < res.duration_s  # mostly waiting on the server


def test_batch_cap_queueing_and_steady_state() -> None:
    timing = FakeTiming(ttft_base_s=0.02, itl_s=0.01, max_num_seqs=4)
    counts = steady_state_counts(12, 4)
    tracker = SteadyStateTracker(counts)
    with FakeServerProcess(timing) as srv:
        run(srv, closed(4, 10, 2))  # warm-up
        res = run(srv, closed(12, 10, 10), tracker=tracker, poll_metrics_s=0.01, request_id_prefix="main")
        timeline = srv.stats()["timeline"]
    admits = sorted(timeline[r.request_id]["admit_s"] for r in res.results)
    hold = 0.02 + 9 * 0.01  # a request holds its batch slot this long
    assert admits[4] - admits[0] == pytest.approx(hold, abs=3 * TOL)  # the 5th waited for a free slot
    assert admits[8] - admits[4] == pytest.approx(hold, abs=3 * TOL)
    window = steady_state_window(res.results, counts)
    assert window == pytest.approx(tracker.window) and res.steady_window_s == tracker.window
    true_window = steady_state_window(ideal(res.results, timeline), counts)
    assert window == pytest.approx(true_window, abs=TOL)
    assert window is not None and window[1] - window[0] == pytest.approx(hold, abs=3 * TOL)
    running = [(t, r) for t, r, _ in res.server_samples]
    steady = compute_metrics(res.results, window=window, server_running=running)
    assert steady.throughput_output_tok_s == pytest.approx(4 / 0.01, rel=0.15)  # 4 streams at 100 tok/s each
    assert steady.avg_batch_size == pytest.approx(4, abs=0.6)
    assert max(r for _, r in running if r is not None) == 4
    assert max(w for _, _, w in res.server_samples if w is not None) >= 4


def test_closed_loop_workers() -> None:
    with FakeServerProcess(FakeTiming(ttft_base_s=0.01, itl_s=0.005)) as srv:
        res = run(srv, closed(6, 5, 4, conc=2))
    starts = sorted(r.start_s - res.start_s for r in res.results)
    per_req = 0.01 + 3 * 0.005
    assert starts[:2] == pytest.approx([0, 0], abs=2 * TOL)
    assert starts[2:4] == pytest.approx([per_req] * 2, abs=4 * TOL)  # next ones start when a slot frees up
    assert all(r.success for r in res.results)


def test_open_loop_follows_planned_arrivals() -> None:
    w = Workload(input_tokens=FixedLength(tokens=4), output_tokens=FixedLength(tokens=3),
                 arrivals=PoissonArrivals(rate_rps=40), num_requests=10, seed=3)
    plan = w.sample()
    with FakeServerProcess(FakeTiming(ttft_base_s=0.01, itl_s=0.005)) as srv:
        res = run(srv, plan)
    assert plan.arrival_s is not None
    sent = np.array([r.start_s - res.start_s for r in res.results])
    assert sent == pytest.approx(plan.arrival_s, abs=2 * TOL)
    assert np.median(np.abs(sent - plan.arrival_s)) < TOL


def test_failures_are_recorded_not_raised() -> None:
    timing = FakeTiming(ttft_base_s=0.01, itl_s=0.005, fail_indices=frozenset({1}),
                        midstream_fail_indices=frozenset({2}), truncate_indices=frozenset({3}))
    with FakeOpenAIServer(timing) as srv:
        res = run(srv, closed(5, 4, 6))
    by_id = {r.request_id: r for r in res.results}
    assert by_id["req-1"].error.startswith("HTTP 500") and not by_id["req-1"].success
    assert "error event" in by_id["req-2"].error and not by_id["req-2"].success
    assert len(by_id["req-2"].token_times_s) == 2
    assert "before data: [DONE]" in by_id["req-3"].error and len(by_id["req-3"].token_times_s) == 2
    assert sum(r.success for r in res.results) == 2
    m = compute_metrics(res.results)
    assert (m.completed_requests, m.failed_requests, m.output_tokens) == (2, 3, 12)


def test_timeouts_bound_the_run() -> None:
    with FakeOpenAIServer(FakeTiming(ttft_base_s=0.01, itl_s=0.05)) as srv:
        t = time.monotonic()
        per_request = run(srv, closed(3, 4, 100), request_timeout_s=0.2)
        bounded = run(srv, closed(6, 4, 100, conc=2), run_timeout_s=0.3)
        elapsed = time.monotonic() - t
    assert all("timeout" in r.error for r in per_request.results)
    assert all(not r.success for r in bounded.results)
    assert sum("cancelled" in r.error for r in bounded.results) == 2
    assert sum("not sent" in r.error for r in bounded.results) == 4
    assert elapsed < 2.0


def test_fake_server_as_subprocess() -> None:
    script = Path(__file__).with_name("fake_openai_server.py")
    proc = subprocess.Popen([sys.executable, str(script), "--port", "0", "--itl-s", "0.002"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PORT ")
        url = f"http://127.0.0.1:{int(line.split()[1])}"
        plan = closed(3, 4, 5)
        res = run_load([url], "model", plan, make_prompts(plan.input_tokens, 100, (), 0))
        assert all(r.success and r.output_tokens == 5 for r in res.results)
    finally:
        proc.terminate()
        proc.wait(10)
