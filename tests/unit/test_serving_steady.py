"""Steady-state window detection (ML.ENERGY's rule), live and after the fact, and JSONL records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recommender.serving.loadgen import RequestResult, load_results, make_prompts, save_results
from recommender.serving.steady import (
    SteadyStateTracker,
    saturation_batch,
    steady_state_counts,
    steady_state_window,
)

pytestmark = pytest.mark.unit


def test_saturation_batch() -> None:
    assert saturation_batch(24, 24, 8) == 8  # all at once, server caps the batch
    assert saturation_batch(24, 4, 8) == 4  # client concurrency is the cap
    assert saturation_batch(24, 24, 8, replicas=2) == 16
    assert saturation_batch(5, 100, None) == 5
    assert saturation_batch(95, None, 256) == 10  # open loop: trim 10 % at each end


def test_counts() -> None:
    assert steady_state_counts(24, 8) == (8, 16)
    assert steady_state_counts(16, 8) is None  # N - B == B: no saturated stretch
    assert steady_state_counts(8, 8) is None


def test_tracker_fires_at_bounds() -> None:
    events: list[tuple[str, float]] = []
    tr = SteadyStateTracker((3, 5), lambda t: events.append(("begin", t)), lambda t: events.append(("end", t)))
    for t in (0.1, 0.2, 0.3, 0.4):
        tr.first_token(t)
    assert tr.open and events == [("begin", 0.3)]
    tr.first_token(0.5)
    tr.first_token(0.6)
    assert events == [("begin", 0.3), ("end", 0.5)] and tr.window == (0.3, 0.5) and not tr.open
    silent = SteadyStateTracker(None)
    silent.first_token(1.0)
    assert silent.window is None


def _r(first: float | None, i: int) -> RequestResult:
    r = RequestResult(f"r-{i}", 4, start_s=0.0, token_times_s=[] if first is None else [first, first + 1.0],
                      end_s=(first or 0.0) + 1.1, error="" if first is not None else "boom")
    r.finish()
    return r


def test_window_from_records_matches_tracker() -> None:
    rng = np.random.default_rng(3)
    firsts = list(rng.uniform(0, 10, size=24))
    results = [_r(f, i) for i, f in enumerate(firsts)] + [_r(None, 99)]
    counts = steady_state_counts(24, 8)
    tr = SteadyStateTracker(counts)
    for t in sorted(firsts):
        tr.first_token(t)
    s = sorted(firsts)
    assert steady_state_window(results, counts) == tr.window == (s[7], s[15])
    assert steady_state_window(results[:10], counts) is None  # too few first tokens
    assert steady_state_window(results, None) is None


def test_make_prompts_exact_and_avoid_specials() -> None:
    p = make_prompts([3, 0, 500], vocab_size=10, avoid_ids={0, 1, 2}, seed=7)
    assert [len(x) for x in p] == [3, 0, 500]
    assert set(p[2]) <= set(range(3, 10)) and len(set(p[2])) == 7
    assert p == make_prompts([3, 0, 500], vocab_size=10, avoid_ids={0, 1, 2}, seed=7)


@pytest.mark.parametrize("name", ["r.jsonl", "r.jsonl.gz"])
def test_results_roundtrip(tmp_path: Path, name: str) -> None:
    rs = [_r(0.5, 0), _r(None, 1)]
    rs[0].output_tokens = 7
    back = load_results(save_results(tmp_path / name, rs))
    assert [(r.request_id, r.success, r.error, r.output_tokens) for r in back] == [
        ("r-0", True, "", 7), ("r-1", False, "boom", 0)]
    assert back[0].ttft_s == pytest.approx(0.5) and back[0].itl_s == pytest.approx([1.0])


def test_compact_token_times_are_lossless_to_a_microsecond(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    times = list(1000.0 + np.cumsum(rng.uniform(0.005, 0.03, size=500)))
    r = RequestResult("x", 10, start_s=999.9, token_times_s=times, end_s=times[-1] + 0.01)
    r.finish()
    d = r.to_json()
    assert "token_times_s" not in d and len(d["token_gaps_us"]) == 499
    back = load_results(save_results(tmp_path / "x.jsonl.gz", [r]))[0]
    assert max(abs(a - b) for a, b in zip(back.token_times_s, times, strict=True)) < 1e-6
    assert back.latency_s == pytest.approx(r.latency_s, abs=1e-6) and back.output_tokens == 500
