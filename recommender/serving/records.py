"""Per-request records of a run (:class:`RequestResult`), the run itself (:class:`RunResult`), and their
JSON-lines files. Times are ``time.monotonic()`` seconds, durations seconds."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class RequestResult:
    """One request as the client saw it. Times are ``time.monotonic()`` seconds; durations in seconds.

    ``latency_s`` ends at the last content chunk (as vLLM's benchmark); ``end_s`` when the stream closed.
    ``success`` means at least one content chunk arrived and no error was seen.
    """

    request_id: str
    input_tokens: int
    output_tokens: int = 0
    start_s: float = 0.0
    first_token_s: float | None = None
    token_times_s: list[float] = field(default_factory=list)
    end_s: float | None = None
    ttft_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    latency_s: float | None = None
    success: bool = False
    error: str = ""
    requested_output_tokens: int = 0
    server: str = ""

    @property
    def last_token_s(self) -> float | None:
        """Arrival time of the last content chunk, or None."""
        return self.token_times_s[-1] if self.token_times_s else None

    @property
    def tpot_s(self) -> float | None:
        """``(latency - ttft) / (output_tokens - 1)`` for ``output_tokens > 1`` (vLLM's TPOT), else None."""
        if self.latency_s is None or self.ttft_s is None or self.output_tokens <= 1:
            return None
        return (self.latency_s - self.ttft_s) / (self.output_tokens - 1)

    def finish(self) -> None:
        """Derive ``ttft_s``, ``itl_s``, ``latency_s`` and ``success`` from the recorded times."""
        t = self.token_times_s
        self.first_token_s = t[0] if t else self.first_token_s
        self.ttft_s = t[0] - self.start_s if t else None
        self.itl_s = [b - a for a, b in zip(t, t[1:], strict=False)]
        self.latency_s = t[-1] - self.start_s if t else None
        if self.output_tokens <= 0:
            self.output_tokens = len(t)
        self.success = bool(t) and not self.error

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict. Chunk times are stored compactly as ``token_gaps_us``: integer microsecond gaps
        between chunks, the first counted from ``first_token_s`` (lossless to 1 us, no accumulated rounding);
        derived fields (``itl_s``, ``ttft_s``, ``latency_s``) are recomputed on load."""
        skip = ("itl_s", "ttft_s", "latency_s", "token_times_s")
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        if self.token_times_s:
            first = self.token_times_s[0]
            offsets = [round((t - first) * 1e6) for t in self.token_times_s]
            d["first_token_s"] = first
            d["token_gaps_us"] = [b - a for a, b in zip(offsets, offsets[1:], strict=False)]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RequestResult:
        """Inverse of :meth:`to_json` (derived fields recomputed; ``success`` and ``error`` kept)."""
        known = {f.name for f in fields(cls)}
        r = cls(**{k: v for k, v in d.items() if k in known})
        if "token_gaps_us" in d and r.first_token_s is not None:
            offsets = np.concatenate([[0], np.cumsum(np.asarray(d["token_gaps_us"], dtype=np.int64))])
            r.token_times_s = [r.first_token_s + o / 1e6 for o in offsets.tolist()]
        success, error = r.success, r.error
        r.finish()
        r.success, r.error = success, error
        return r


@dataclass
class RunResult:
    """One run: per-request records (in plan order) and the run's bounds (monotonic seconds).

    ``server_samples`` are ``(t_s, running, waiting)`` readings of vLLM's ``/metrics`` gauges summed over
    replicas (empty when not polled or not served). ``steady_window_s`` is the live tracker's window, if any.
    ``client_cpu_s`` is the CPU time the load-generating process spent during the run (all its threads): close
    to ``duration_s`` means the client, not the server, may have paced the measured token times.
    """

    results: list[RequestResult]
    start_s: float
    end_s: float
    server_samples: list[tuple[float, float | None, float | None]] = field(default_factory=list)
    steady_window_s: tuple[float, float] | None = None
    client_cpu_s: float | None = None

    @property
    def duration_s(self) -> float:
        """Benchmark duration: first dispatch to the last stream's end."""
        return self.end_s - self.start_s


def save_results(path: str | Path, results: Iterable[RequestResult]) -> Path:
    """Write one JSON line per request (gzip when ``path`` ends in ``.gz``); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt") as f:  # type: ignore[operator]
        for r in results:
            f.write(json.dumps(r.to_json(), separators=(",", ":")) + "\n")
    return path


def load_results(path: str | Path) -> list[RequestResult]:
    """Read a file written by :func:`save_results`."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:  # type: ignore[operator]
        return [RequestResult.from_json(json.loads(line)) for line in f if line.strip()]
