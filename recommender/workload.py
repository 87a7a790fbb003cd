"""Workloads: token-length distributions, arrival processes, and the shipped presets.

A :class:`Workload` is pure data (validated pydantic). :meth:`Workload.sample` turns it into a
deterministic request plan (arrival time, input tokens, output tokens) for the load generator, and
:meth:`Workload.stats` gives the moments the surrogate uses as features. Traces are CSV
(``arrival_s,input_tokens,output_tokens``, or the Azure 2023 columns) or JSONL (Mooncake fields); the
presets ship derived traces in ``recommender/data/workloads`` so nothing outside the package is read.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import json
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import Field, model_validator

from recommender._base import SCHEMA_VERSION, StrictModel
from recommender.errors import InputError, suggest

TRACE_PRESETS: tuple[str, ...] = ("azure-code-2023", "azure-conv-2023", "mooncake-conversation")
MAX_TOKENS = 1_000_000


class FixedLength(StrictModel):
    """Every request has exactly ``tokens`` tokens."""

    kind: Literal["fixed"] = "fixed"
    tokens: int = Field(ge=1, le=MAX_TOKENS)


class UniformLength(StrictModel):
    """Integer lengths uniform on ``[low_tokens, high_tokens]``."""

    kind: Literal["uniform"] = "uniform"
    low_tokens: int = Field(ge=1, le=MAX_TOKENS)
    high_tokens: int = Field(ge=1, le=MAX_TOKENS)

    @model_validator(mode="after")
    def _order(self) -> UniformLength:
        if self.low_tokens > self.high_tokens:
            raise ValueError("low_tokens must be <= high_tokens")
        return self


class _ClippedLength(StrictModel):
    """Base of the drawn distributions whose lengths are clipped to ``[min_tokens, max_tokens]`` (subclasses
    declare both fields, last, so that serialized field order and workload hashes stay as they were)."""

    @model_validator(mode="after")
    def _order(self) -> _ClippedLength:
        if self.min_tokens > self.max_tokens:  # type: ignore[attr-defined]
            raise ValueError("min_tokens must be <= max_tokens")
        return self


class LognormalLength(_ClippedLength):
    """Lengths ``round(median_tokens * exp(sigma * N(0,1)))`` clipped to ``[min_tokens, max_tokens]``."""

    kind: Literal["lognormal"] = "lognormal"
    median_tokens: float = Field(gt=0, le=MAX_TOKENS)
    sigma: float = Field(ge=0, le=5)
    min_tokens: int = Field(default=1, ge=1)
    max_tokens: int = Field(default=32768, ge=1, le=MAX_TOKENS)


class EmpiricalLength(StrictModel):
    """Lengths resampled from a trace column (a preset name or a file path), clipped to ``max_tokens``."""

    kind: Literal["empirical"] = "empirical"
    trace: str = Field(min_length=1)
    column: Literal["input_tokens", "output_tokens"]
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS)


class ConversationLength(_ClippedLength):
    """Prompt lengths of multi-turn chat where every request carries the whole conversation so far.

    A request at turn ``k`` holds ``k`` user messages, the ``k - 1`` assistant replies before it, and the chat
    template (``template_tokens`` once plus ``template_tokens_per_message`` per message). Conversations have a
    geometric number of turns with mean ``mean_turns``; when a benchmark sends every turn of every conversation
    as its own request (as ML.ENERGY's lm-arena-chat does), the turn index of a request is geometric with the
    same mean (memorylessness), which is what is drawn here. User messages and replies are lognormal with the
    given means (``sigma`` in log space); the total is clipped to ``[min_tokens, max_tokens]``.
    """

    kind: Literal["conversation"] = "conversation"
    mean_turns: float = Field(ge=1.0, le=100.0)
    user_mean_tokens: float = Field(gt=0, le=MAX_TOKENS)
    user_sigma: float = Field(default=1.0, ge=0, le=5)
    reply_mean_tokens: float = Field(ge=0, le=MAX_TOKENS)
    reply_sigma: float = Field(default=0.8, ge=0, le=5)
    template_tokens: int = Field(default=0, ge=0, le=100_000)
    template_tokens_per_message: int = Field(default=0, ge=0, le=1000)
    min_tokens: int = Field(default=1, ge=1)
    max_tokens: int = Field(default=32768, ge=1, le=MAX_TOKENS)

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` prompt lengths (int64)."""
        turns = rng.geometric(1.0 / self.mean_turns, size=n)
        total = np.full(n, float(self.template_tokens)) + self.template_tokens_per_message * (2 * turns - 1)
        for mean, sigma, count in ((self.user_mean_tokens, self.user_sigma, turns),
                                   (self.reply_mean_tokens, self.reply_sigma, turns - 1)):
            if mean <= 0:
                continue
            m = int(count.sum())
            median = mean / np.exp(sigma**2 / 2)
            parts = np.maximum(1.0, np.rint(median * np.exp(sigma * rng.standard_normal(m))))
            owner = np.repeat(np.arange(n), count)
            total += np.bincount(owner, weights=parts, minlength=n)
        return np.clip(np.rint(total), self.min_tokens, self.max_tokens).astype(np.int64)


LengthDist = Annotated[
    Union[FixedLength, UniformLength, LognormalLength, EmpiricalLength, ConversationLength],
    Field(discriminator="kind"),
]


class PoissonArrivals(StrictModel):
    """Open loop, exponential inter-arrival times at ``rate_rps`` requests per second."""

    kind: Literal["poisson"] = "poisson"
    rate_rps: float = Field(gt=0, le=1e5)


class GammaArrivals(StrictModel):
    """Open loop, gamma inter-arrival times with mean ``1/rate_rps`` and coefficient of variation ``cv``
    (``cv=1`` is Poisson, larger is burstier, as ``vllm bench serve --burstiness = 1/cv**2``)."""

    kind: Literal["gamma"] = "gamma"
    rate_rps: float = Field(gt=0, le=1e5)
    cv: float = Field(gt=0, le=20)


class TraceArrivals(StrictModel):
    """Replay a trace's timestamps from ``start_s``; times are multiplied by ``time_scale`` (0.5 = twice as
    fast). When both length distributions are empirical over the same trace, lengths come from the same rows."""

    kind: Literal["trace"] = "trace"
    trace: str = Field(min_length=1)
    time_scale: float = Field(default=1.0, gt=0, le=1e3)
    start_s: float = Field(default=0.0, ge=0)


class ClosedLoop(StrictModel):
    """Closed loop: ``concurrency`` requests in flight; a new one starts when one finishes. With
    ``concurrency >= num_requests`` every request is submitted at once (the ML.ENERGY setting)."""

    kind: Literal["closed_loop"] = "closed_loop"
    concurrency: int = Field(ge=1, le=100_000)


Arrivals = Annotated[
    Union[PoissonArrivals, GammaArrivals, TraceArrivals, ClosedLoop], Field(discriminator="kind")
]


@dataclass(frozen=True)
class RequestPlan:
    """Deterministic plan of a run. ``arrival_s`` is None for closed-loop workloads."""

    input_tokens: np.ndarray
    output_tokens: np.ndarray
    arrival_s: np.ndarray | None
    concurrency: int | None

    def __len__(self) -> int:
        return len(self.input_tokens)


class Workload(StrictModel):
    """What the clients send: length distributions, arrival process and how much.

    Exactly one of ``num_requests`` and ``duration_s`` is set. ``seed`` makes :meth:`sample` repeatable.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(default="custom", min_length=1, max_length=100)
    description: str = ""
    input_tokens: LengthDist
    output_tokens: LengthDist
    arrivals: Arrivals
    num_requests: int | None = Field(default=None, ge=1, le=1_000_000)
    duration_s: float | None = Field(default=None, gt=0, le=86_400)
    seed: int = 0

    @model_validator(mode="after")
    def _amount(self) -> Workload:
        if (self.num_requests is None) == (self.duration_s is None):
            raise ValueError("set exactly one of num_requests and duration_s")
        if self.duration_s is not None and self.arrivals.kind == "closed_loop":
            raise ValueError("a closed-loop workload needs num_requests, not duration_s")
        return self

    def offered_rate_rps(self) -> float | None:
        """Mean offered arrival rate (requests/s), or None for a closed loop."""
        a = self.arrivals
        if isinstance(a, (PoissonArrivals, GammaArrivals)):
            return a.rate_rps
        if isinstance(a, TraceArrivals):
            t = load_trace(a.trace).arrival_s
            span = float(t[-1] - t[0]) * a.time_scale
            return len(t) / span if span > 0 else None
        return None

    def sample(self, max_total_tokens: int | None = None) -> RequestPlan:
        """Draw the request plan. Lengths are clipped so ``input + output <= max_total_tokens`` when given."""
        rng = np.random.default_rng(self.seed)
        a = self.arrivals
        arrival: np.ndarray | None
        joint = None
        if isinstance(a, TraceArrivals):
            tr = load_trace(a.trace)
            sel = np.nonzero(tr.arrival_s >= a.start_s)[0]
            times = (tr.arrival_s[sel] - a.start_s) * a.time_scale
            if self.duration_s is not None:
                sel = sel[times < self.duration_s]
            else:
                sel = sel[: self.num_requests]
            if len(sel) == 0:
                raise InputError("workload.arrivals.start_s", a.start_s, "start inside the trace's time span")
            arrival = (tr.arrival_s[sel] - tr.arrival_s[sel[0]]) * a.time_scale
            n = len(sel)
            if _same_trace(self.input_tokens, self.output_tokens, a.trace):
                joint = (tr.input_tokens[sel], tr.output_tokens[sel])
        elif isinstance(a, ClosedLoop):
            n, arrival = int(self.num_requests or 0), None
        else:
            rate = a.rate_rps
            cv = a.cv if isinstance(a, GammaArrivals) else 1.0
            count = self.num_requests or int(np.ceil(self.duration_s * rate * 1.5 + 10))  # type: ignore[operator]
            shape = 1.0 / cv**2
            gaps = rng.gamma(shape, 1.0 / (shape * rate), size=count)
            arrival = np.cumsum(gaps) - gaps[0]
            if self.duration_s is not None:
                arrival = arrival[arrival < self.duration_s]
            n = len(arrival)
        if joint is not None:
            inp, out = joint[0].copy(), joint[1].copy()
            inp = _clip(inp, self.input_tokens)
            out = _clip(out, self.output_tokens)
        else:
            inp = _draw(self.input_tokens, n, rng)
            out = _draw(self.output_tokens, n, rng)
        if max_total_tokens is not None:
            inp = np.minimum(inp, max_total_tokens - 1)
            out = np.clip(out, 1, max_total_tokens - inp)
        conc = a.concurrency if isinstance(a, ClosedLoop) else None
        return RequestPlan(inp.astype(np.int64), out.astype(np.int64), arrival, conc)

    def stats(self) -> dict[str, float]:
        """Feature moments: mean/std/p50/p90/p99 of input and output tokens, offered rate, concurrency."""
        return dict(_stats_cached(self.model_dump_json()))


@functools.lru_cache(maxsize=256)
def _stats_cached(workload_json: str) -> tuple[tuple[str, float], ...]:
    w = Workload.model_validate_json(workload_json)
    rng = np.random.default_rng(12345)
    out: dict[str, float] = {}
    for name, dist in (("input", w.input_tokens), ("output", w.output_tokens)):
        x = _draw(dist, 20_000, rng).astype(float)
        out[f"{name}_tokens_mean"] = float(x.mean())
        out[f"{name}_tokens_std"] = float(x.std())
        for q in (50, 90, 99):
            out[f"{name}_tokens_p{q}"] = float(np.percentile(x, q))
    rate = w.offered_rate_rps()
    out["arrival_rate_rps"] = float(rate) if rate is not None else float("nan")
    a = w.arrivals
    out["concurrency"] = float(a.concurrency) if isinstance(a, ClosedLoop) else float("nan")
    out["arrival_cv"] = float(a.cv) if isinstance(a, GammaArrivals) else 1.0
    return tuple(out.items())


def _same_trace(i: object, o: object, trace: str) -> bool:
    return (
        isinstance(i, EmpiricalLength) and isinstance(o, EmpiricalLength) and i.trace == o.trace == trace
    )


def _clip(x: np.ndarray, dist: object) -> np.ndarray:
    cap = getattr(dist, "max_tokens", None)
    return np.clip(x, 1, cap) if cap else np.maximum(x, 1)


def _draw(dist: object, n: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(dist, FixedLength):
        return np.full(n, dist.tokens, dtype=np.int64)
    if isinstance(dist, UniformLength):
        return rng.integers(dist.low_tokens, dist.high_tokens + 1, size=n)
    if isinstance(dist, LognormalLength):
        x = np.rint(dist.median_tokens * np.exp(dist.sigma * rng.standard_normal(n)))
        return np.clip(x, dist.min_tokens, dist.max_tokens).astype(np.int64)
    if isinstance(dist, ConversationLength):
        return dist.draw(n, rng)
    if isinstance(dist, EmpiricalLength):
        col = getattr(load_trace(dist.trace), dist.column)
        return _clip(rng.choice(col, size=n, replace=True), dist)
    raise TypeError(f"unknown length distribution {dist!r}")


@dataclass(frozen=True)
class Trace:
    """A request trace: arrival times (s, from 0, sorted) and token lengths, as numpy arrays."""

    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray


@functools.lru_cache(maxsize=16)
def load_trace(ref: str) -> Trace:
    """Load a trace by preset name (see ``TRACE_PRESETS``) or path (.csv, .csv.gz, .jsonl).

    Raises:
        InputError: unknown preset, missing file, or missing/invalid columns (naming them).
    """
    if ref in TRACE_PRESETS:
        data = resources.files("recommender.data.workloads").joinpath(f"{ref}.csv.gz").read_bytes()
        return _parse_csv(io.StringIO(gzip.decompress(data).decode()), ref)
    path = Path(ref)
    if not path.exists():
        raise InputError("trace", ref, f"give a preset {TRACE_PRESETS}{suggest(ref, TRACE_PRESETS)} or an existing file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt") as f:  # type: ignore[operator]
            if ".jsonl" in path.suffixes:
                return _parse_jsonl(f, ref)
            return _parse_csv(f, ref)
    except (OSError, UnicodeDecodeError) as e:
        raise InputError("trace", ref, f"could not read the file ({e}); give a CSV or JSONL text file") from e


def _finish(rows: list[tuple[float, int, int]], ref: str) -> Trace:
    if not rows:
        raise InputError("trace", ref, "the file has no requests; give at least one row")
    rows.sort()
    a = np.array(rows, dtype=float)
    if (a[:, 1] < 1).any() or (a[:, 2] < 1).any():
        raise InputError("trace", ref, "token counts must be >= 1 in every row")
    return Trace(a[:, 0] - a[0, 0], a[:, 1].astype(np.int64), a[:, 2].astype(np.int64))


def _parse_csv(f: io.TextIOBase, ref: str) -> Trace:
    reader = csv.DictReader(f)  # type: ignore[arg-type]
    cols = set(reader.fieldnames or [])
    rows: list[tuple[float, int, int]] = []
    try:
        if {"arrival_s", "input_tokens", "output_tokens"} <= cols:
            for r in reader:
                rows.append((float(r["arrival_s"]), int(r["input_tokens"]), int(r["output_tokens"])))
        elif {"TIMESTAMP", "ContextTokens", "GeneratedTokens"} <= cols:
            for r in reader:
                ts = datetime.strptime(r["TIMESTAMP"][:26], "%Y-%m-%d %H:%M:%S.%f").timestamp()
                rows.append((ts, int(r["ContextTokens"]), int(r["GeneratedTokens"])))
        else:
            raise InputError(
                "trace", ref, f"columns {sorted(cols)} not understood; need arrival_s,input_tokens,output_tokens "
                "(or the Azure 2023 TIMESTAMP,ContextTokens,GeneratedTokens)"
            )
    except (ValueError, TypeError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError("trace", ref, f"row {reader.line_num}: {e}; numbers expected") from e
    return _finish(rows, ref)


def _parse_jsonl(f: io.TextIOBase, ref: str) -> Trace:
    rows: list[tuple[float, int, int]] = []
    for i, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            rows.append((float(d["timestamp"]) / 1e3, int(d["input_length"]), int(d["output_length"])))
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(
                "trace", f"{ref}:{i}", f"{e!r}; each line needs timestamp (ms), input_length, output_length"
            ) from e
    return _finish(rows, ref)
