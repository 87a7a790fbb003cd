from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from recommender.config import parse
from recommender.errors import InputError
from recommender.presets import PRESETS, get_preset
from recommender.workload import (
    ClosedLoop,
    ConversationLength,
    EmpiricalLength,
    FixedLength,
    GammaArrivals,
    LognormalLength,
    PoissonArrivals,
    TraceArrivals,
    Workload,
    load_trace,
)

pytestmark = pytest.mark.unit


def _w(**kw: object) -> Workload:
    base: dict[str, object] = dict(
        input_tokens=FixedLength(tokens=10), output_tokens=FixedLength(tokens=20),
        arrivals=PoissonArrivals(rate_rps=4.0), num_requests=4000,
    )
    base.update(kw)
    return Workload(**base)  # type: ignore[arg-type]


def test_poisson_rate_and_determinism() -> None:
    w = _w()
    p1, p2 = w.sample(), w.sample()
    assert np.array_equal(p1.arrival_s, p2.arrival_s)
    rate = (len(p1) - 1) / p1.arrival_s[-1]
    assert rate == pytest.approx(4.0, rel=0.06)
    assert (p1.input_tokens == 10).all() and (p1.output_tokens == 20).all()


def test_gamma_cv_controls_burstiness() -> None:
    for cv in (0.5, 3.0):
        gaps = np.diff(_w(arrivals=GammaArrivals(rate_rps=2.0, cv=cv)).sample().arrival_s)
        assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.15)
        assert gaps.mean() == pytest.approx(0.5, rel=0.15)


def test_duration_bounds_open_loop() -> None:
    p = _w(num_requests=None, duration_s=30.0).sample()
    assert p.arrival_s.max() < 30.0
    assert 80 < len(p) < 160


def test_closed_loop_has_no_arrivals() -> None:
    p = _w(arrivals=ClosedLoop(concurrency=8), num_requests=50).sample()
    assert p.arrival_s is None and p.concurrency == 8 and len(p) == 50


def test_lognormal_median_and_clip() -> None:
    w = _w(input_tokens=LognormalLength(median_tokens=100, sigma=1.0, min_tokens=5, max_tokens=400))
    x = w.sample().input_tokens
    assert np.median(x) == pytest.approx(100, rel=0.1)
    assert x.min() >= 5 and x.max() <= 400


def test_conversation_history_mean_matches_its_parts() -> None:
    d = ConversationLength(mean_turns=2.0, user_mean_tokens=70, reply_mean_tokens=200, template_tokens=30,
                           template_tokens_per_message=5, max_tokens=10**6)
    x = _w(input_tokens=d, num_requests=40_000).sample().input_tokens
    # E[turns] = 2: 2 prompts + 1 reply + template 30 + 5 * (2 * 2 - 1) messages
    assert x.mean() == pytest.approx(2 * 70 + 200 + 30 + 15, rel=0.05)
    one_turn = ConversationLength(mean_turns=1.0, user_mean_tokens=50, user_sigma=0.0, reply_mean_tokens=999)
    assert set(_w(input_tokens=one_turn).sample().input_tokens.tolist()) == {50}  # no history, no replies
    clipped = d.model_copy(update={"max_tokens": 300, "min_tokens": 100})
    y = _w(input_tokens=clipped).sample().input_tokens
    assert y.min() >= 100 and y.max() == 300


def test_mlenergy_chat_carries_conversation_history() -> None:
    s = get_preset("mlenergy-chat").stats()
    assert 350 < s["input_tokens_mean"] < 450 and s["input_tokens_p50"] < s["input_tokens_mean"]
    assert s["input_tokens_p99"] <= 4096


def test_trace_replay_keeps_rows_joint() -> None:
    w = get_preset("azure-conv-2023-replay", duration_s=60.0)
    p = w.sample()
    tr = load_trace("azure-conv-2023")
    n = len(p)
    assert np.array_equal(p.input_tokens, np.minimum(tr.input_tokens[:n], 8192))
    assert np.allclose(p.arrival_s, tr.arrival_s[:n])
    fast = get_preset("azure-conv-2023-replay", duration_s=60.0, time_scale=0.5).sample()
    assert len(fast) == pytest.approx(2 * n, rel=0.2)


def test_max_total_tokens_clips() -> None:
    p = get_preset("azure-code-2023", num_requests=300).sample(max_total_tokens=2048)
    assert ((p.input_tokens + p.output_tokens) <= 2048).all()


def test_stats_match_trace_summary() -> None:
    s = get_preset("azure-conv-2023").stats()
    # SOURCE.md: conv input median 1,020, mean 1,155; output median 129, mean 211; ~5.5 req/s
    assert s["input_tokens_p50"] == pytest.approx(1020, rel=0.05)
    assert s["output_tokens_mean"] == pytest.approx(211, rel=0.05)
    assert s["arrival_rate_rps"] == pytest.approx(5.5, rel=0.05)


def test_every_preset_builds() -> None:
    for name in PRESETS:
        w = get_preset(name)
        assert len(w.sample()) > 0, name


def test_trace_files_csv_and_jsonl(tmp_path: Path) -> None:
    csv_path = tmp_path / "t.csv.gz"
    with gzip.open(csv_path, "wt") as f:
        f.write("arrival_s,input_tokens,output_tokens\n1.0,5,6\n0.5,3,4\n")
    tr = load_trace(str(csv_path))
    assert tr.arrival_s.tolist() == [0.0, 0.5] and tr.input_tokens.tolist() == [3, 5]
    jl = tmp_path / "t.jsonl"
    jl.write_text('{"timestamp": 1000, "input_length": 7, "output_length": 8}\n')
    assert load_trace(str(jl)).output_tokens.tolist() == [8]
    w = _w(input_tokens=EmpiricalLength(trace=str(jl), column="input_tokens"),
           arrivals=TraceArrivals(trace=str(jl)), num_requests=1)
    assert w.sample().input_tokens.tolist() == [7]


@pytest.mark.parametrize(
    ("content", "hint"),
    [
        ("a,b\n1,2\n", "not understood"),
        ("arrival_s,input_tokens,output_tokens\n0,x,3\n", "numbers expected"),
        ("arrival_s,input_tokens,output_tokens\n0,0,3\n", ">= 1"),
        ("arrival_s,input_tokens,output_tokens\n", "no requests"),
    ],
)
def test_bad_trace_files(tmp_path: Path, content: str, hint: str) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(InputError) as ei:
        load_trace(str(p))
    assert ei.value.field == "trace" and hint in str(ei.value)


@pytest.mark.parametrize(
    ("data", "field", "hint"),
    [
        ({"input_tokens": {"kind": "fixed", "tokens": 0}}, "input_tokens.tokens", "greater than or equal to 1"),
        ({"input_tokens": {"kind": "zipf"}}, "input_tokens", "does not match any of the expected tags"),
        ({"arrivals": {"kind": "poisson", "rate_rps": -1}}, "arrivals.rate_rps", "greater than 0"),
        ({"num_requests": None}, "workload", "exactly one of num_requests and duration_s"),
        ({"duration_s": 10}, "workload", "exactly one of num_requests and duration_s"),
        ({"input_tokens": {"kind": "uniform", "low_tokens": 9, "high_tokens": 3}}, "input_tokens.uniform", "low_tokens"),
        ({"requests": 5}, "workload:requests", "unknown field"),
        ({"input_tokens": {"kind": "conversation", "mean_turns": 0.5, "user_mean_tokens": 50, "reply_mean_tokens": 9}},
         "input_tokens.conversation.mean_turns", "greater than or equal to 1"),
    ],
)
def test_bad_workload_fields(data: dict, field: str, hint: str) -> None:
    base = {"input_tokens": {"kind": "fixed", "tokens": 8}, "output_tokens": {"kind": "fixed", "tokens": 8},
            "arrivals": {"kind": "poisson", "rate_rps": 1.0}, "num_requests": 10}
    base.update(data)
    with pytest.raises(InputError) as ei:
        parse(Workload, base, "workload")
    assert field.split(".")[0] in ei.value.field and hint in str(ei.value)


def test_unknown_preset_suggests() -> None:
    with pytest.raises(InputError, match="did you mean 'azure-conv-2023'"):
        get_preset("azure-conv-2032")
    with pytest.raises(InputError, match="does not take"):
        get_preset("fixed", rate=3)
