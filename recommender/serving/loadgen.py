"""Streaming load generator for OpenAI-compatible ``/v1/completions`` servers (vLLM).

Each request sends its prompt as a list of token ids (exact input length), ``max_tokens = min_tokens =``
the planned output length with ``ignore_eos`` (exact output length, vLLM extras), ``temperature 0``, and
``stream`` with ``stream_options.include_usage``. Every content chunk's arrival time is recorded; TTFT, ITL and
E2E latency are then defined as ``vllm bench serve`` defines them (``vllm/benchmarks/lib/endpoint_request_func.py``):
TTFT = first content chunk - send, ITL = gaps between content chunks, latency = last content chunk - send;
the output token count comes from ``usage.completion_tokens`` when present, else the chunk count.

Arrivals follow the :class:`~recommender.workload.RequestPlan`: open loop at the planned times, or closed loop
with ``concurrency`` workers. Failures are data: an HTTP error, an error event, a timeout or a dropped stream
is recorded in that request's :class:`RequestResult` and never raised (stricter than vLLM's benchmark, a
request with an error event mid-stream, or whose stream ends before ``data: [DONE]``, counts as failed). A run
is bounded by per-request timeouts and an optional run time limit, after which what is still open is
cancelled and recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from recommender.serving.records import RequestResult, RunResult, load_results, save_results

if TYPE_CHECKING:
    import aiohttp

    from recommender.serving.steady import SteadyStateTracker
    from recommender.workload import RequestPlan

logger = logging.getLogger(__name__)
__all__ = ["RequestResult", "RunResult", "load_results", "make_prompts", "run_load", "run_plan", "save_results"]


def make_prompts(
    input_tokens: Iterable[int], vocab_size: int, avoid_ids: Iterable[int] = (), seed: int = 0
) -> list[list[int]]:
    """Random token-id prompts of exactly the given lengths, drawn uniformly from the vocabulary minus
    ``avoid_ids`` (special tokens). Deterministic for a seed."""
    allowed = np.setdiff1d(np.arange(int(vocab_size), dtype=np.int64), np.fromiter(avoid_ids, dtype=np.int64))
    if allowed.size == 0:
        raise ValueError("no token ids left to draw prompts from")
    rng = np.random.default_rng(seed)
    return [allowed[rng.integers(0, allowed.size, size=int(n))].tolist() for n in input_tokens]


def _is_usage_line(line: bytes) -> bool:
    return b'"usage"' in line and b'"usage":null' not in line and b'"usage": null' not in line


def _is_content_line(line: bytes) -> bool:
    # JSON escapes quotes inside strings, so this byte pattern can only be the key itself.
    return b'"choices":[{' in line or b'"choices": [{' in line


async def _stream_one(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    r: RequestResult,
    on_first_token: Callable[[float], None] | None,
    request_timeout_s: float | None,
    stall_timeout_s: float | None,
) -> None:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=request_timeout_s, sock_read=stall_timeout_s)
    r.start_s = time.monotonic()
    try:
        headers = {"Content-Type": "application/json", "X-Request-Id": r.request_id}
        async with session.post(url, data=body, timeout=timeout, headers=headers) as resp:
            if resp.status != 200:
                text = (await resp.text())[:300]
                r.error = f"HTTP {resp.status}: {text}"
                return
            done = False
            async for raw in resp.content:
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue  # blank keep-alive lines and SSE comments
                data = line[5:].strip()
                if data == b"[DONE]":
                    done = True
                    break
                t = time.monotonic()
                if _is_content_line(data) and not _is_usage_line(data) and b'"error"' not in data:
                    r.token_times_s.append(t)
                    if r.first_token_s is None:
                        r.first_token_s = t
                        if on_first_token is not None:
                            on_first_token(t)
                    continue
                obj = json.loads(data)
                if obj.get("error") is not None or obj.get("object") == "error":
                    r.error = f"server error event: {json.dumps(obj.get('error', obj))[:300]}"
                    break
                if obj.get("choices"):
                    r.token_times_s.append(t)
                    if r.first_token_s is None:
                        r.first_token_s = t
                        if on_first_token is not None:
                            on_first_token(t)
                usage = obj.get("usage")
                if usage and usage.get("completion_tokens") is not None:
                    r.output_tokens = int(usage["completion_tokens"])
            if not done and not r.error:
                r.error = "the stream ended before data: [DONE]"
    except asyncio.TimeoutError:
        r.error = f"timeout after {time.monotonic() - r.start_s:.1f} s"
    except asyncio.CancelledError:
        r.error = "cancelled: the run's time limit was reached"
        raise
    except (aiohttp.ClientError, ValueError, OSError) as e:
        r.error = f"{type(e).__name__}: {e}"[:300]
    finally:
        r.end_s = time.monotonic()
        r.finish()


async def _poll_metrics(
    session: aiohttp.ClientSession, base_urls: Sequence[str], interval_s: float,
    out: list[tuple[float, float | None, float | None]], stop: asyncio.Event,
) -> None:
    import aiohttp

    while not stop.is_set():
        running: float | None = None
        waiting: float | None = None
        for base in base_urls:
            try:
                async with session.get(f"{base}/metrics", timeout=aiohttp.ClientTimeout(total=2.0)) as resp:
                    text = await resp.text() if resp.status == 200 else ""
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                text = ""
            r, w = parse_prometheus_gauge(text, "vllm:num_requests_running"), parse_prometheus_gauge(
                text, "vllm:num_requests_waiting"
            )
            running = r if running is None else running + (r or 0.0)
            waiting = w if waiting is None else waiting + (w or 0.0)
        out.append((time.monotonic(), running, waiting))
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        except asyncio.TimeoutError:
            pass


def parse_prometheus_gauge(text: str, name: str) -> float | None:
    """Value of gauge ``name`` in Prometheus text format; the max over label sets (vLLM may repeat a gauge
    per API-server process, as ML.ENERGY notes), None when absent."""
    values = []
    for line in text.splitlines():
        if line.startswith(name) and (len(line) == len(name) or line[len(name)] in "{ "):
            try:
                values.append(float(line.rsplit(None, 1)[-1]))
            except ValueError:
                continue
    return max(values) if values else None


async def run_plan(
    base_urls: Sequence[str],
    model_name: str,
    plan: RequestPlan,
    prompts: Sequence[Sequence[int]],
    *,
    request_timeout_s: float | None = 3600.0,
    stall_timeout_s: float | None = 300.0,
    run_timeout_s: float | None = None,
    tracker: SteadyStateTracker | None = None,
    on_start: Callable[[float], None] | None = None,
    on_end: Callable[[float], None] | None = None,
    poll_metrics_s: float | None = None,
    request_id_prefix: str = "req",
    extra_body: dict[str, Any] | None = None,
) -> RunResult:
    """Send ``plan`` to the servers (round-robin by request index) and record every request.

    Args:
        base_urls: ``http://host:port`` of each replica.
        model_name: the served model name.
        plan: lengths, arrival times (open loop) or concurrency (closed loop).
        prompts: token-id prompts, one per planned request (lengths should match ``plan.input_tokens``).
        request_timeout_s: total limit per request (None: none).
        stall_timeout_s: limit between two reads of one stream (None: none).
        run_timeout_s: limit for the whole run; open requests are then cancelled and recorded as failed.
        tracker: steady-state tracker fed with every first-token arrival.
        on_start: called with the run's start time right before the first request is sent.
        on_end: called with the run's end time as soon as the last request ended (before cleanup).
        poll_metrics_s: poll each server's ``/metrics`` at this interval (None: never).
        request_id_prefix: request ids are ``<prefix>-<index>`` (also sent as ``X-Request-Id``).
        extra_body: merged into every request body.
    """
    import aiohttp

    n = len(plan)
    if len(prompts) != n:
        raise ValueError(f"{len(prompts)} prompts for a plan of {n} requests")
    urls = [f"{b.rstrip('/')}/v1/completions" for b in base_urls]
    records: list[RequestResult | None] = [None] * n
    first_token = tracker.first_token if tracker is not None else None

    def payload(i: int) -> bytes:
        out = int(plan.output_tokens[i])
        body: dict[str, Any] = {
            "model": model_name, "prompt": list(prompts[i]), "max_tokens": out, "min_tokens": out,
            "ignore_eos": True, "temperature": 0.0, "stream": True, "stream_options": {"include_usage": True},
        }  # fmt: skip
        body.update(extra_body or {})
        return json.dumps(body, separators=(",", ":")).encode()

    bodies = [payload(i) for i in range(n)]  # encoded before the clock starts: less client skew at dispatch

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        r = RequestResult(
            request_id=f"{request_id_prefix}-{i}", input_tokens=int(plan.input_tokens[i]),
            requested_output_tokens=int(plan.output_tokens[i]), server=base_urls[i % len(base_urls)],
        )  # fmt: skip
        records[i] = r
        await _stream_one(session, urls[i % len(urls)], bodies[i], r, first_token, request_timeout_s, stall_timeout_s)

    async def dispatch(session: aiohttp.ClientSession, t0: float) -> None:
        tasks: list[asyncio.Task[None]] = []
        try:
            if plan.arrival_s is None:
                nxt = iter(range(n))

                async def worker() -> None:
                    for i in nxt:
                        await one(session, i)

                tasks = [asyncio.ensure_future(worker()) for _ in range(min(plan.concurrency or n, n))]
            else:
                for i, at in enumerate(plan.arrival_s):
                    delay = t0 + float(at) - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.ensure_future(one(session, i)))
            await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    samples: list[tuple[float, float | None, float | None]] = []
    async with aiohttp.ClientSession(connector=connector) as session:
        stop = asyncio.Event()
        poller = (
            asyncio.ensure_future(_poll_metrics(session, base_urls, poll_metrics_s, samples, stop))
            if poll_metrics_s else None
        )  # fmt: skip
        t0 = time.monotonic()
        if on_start is not None:
            on_start(t0)
        try:
            await asyncio.wait_for(dispatch(session, t0), timeout=run_timeout_s)
        except asyncio.TimeoutError:
            logger.warning("run time limit of %.0f s reached; open requests were cancelled", run_timeout_s)
        t1 = time.monotonic()
        if on_end is not None:
            on_end(t1)
        if poller is not None:
            stop.set()
            await poller
    results = []
    for i, r in enumerate(records):
        if r is None:
            r = RequestResult(
                request_id=f"{request_id_prefix}-{i}", input_tokens=int(plan.input_tokens[i]), start_s=t1, end_s=t1,
                requested_output_tokens=int(plan.output_tokens[i]), error="not sent: the run's time limit was reached",
            )  # fmt: skip
        results.append(r)
    window = tracker.window if tracker is not None else None
    return RunResult(results, t0, t1, samples, window)


def raise_open_file_limit() -> None:
    """Raise the soft open-file limit to the hard limit (many concurrent streams need many sockets)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError) as e:
        logger.debug("could not raise the open-file limit: %s", e)


def run_load(base_urls: Sequence[str], model_name: str, plan: RequestPlan, prompts: Sequence[Sequence[int]],
             **kwargs: Any) -> RunResult:
    """Synchronous wrapper of :func:`run_plan` in its own event loop (not from inside a running loop).

    Uses uvloop when it is installed (less client overhead with thousands of streams) unless
    ``RECOMMENDER_LOADGEN_UVLOOP=0``.
    """
    raise_open_file_limit()
    coro = run_plan(base_urls, model_name, plan, prompts, **kwargs)
    with _quiet_gc():
        cpu0 = time.process_time()
        run = _run_coroutine(coro)
        run.client_cpu_s = time.process_time() - cpu0
    return run


def _run_coroutine(coro: Any) -> RunResult:
    if os.environ.get("RECOMMENDER_LOADGEN_UVLOOP", "1") != "0" and sys.version_info >= (3, 11):
        try:
            import uvloop
        except ImportError:
            pass
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(coro)
    return asyncio.run(coro)


@contextlib.contextmanager
def _quiet_gc() -> Iterator[None]:
    """No cyclic-GC pauses inside a run (as ``timeit`` does): earlier objects are frozen out of the collector
    and collection is off until the run ends; ``RECOMMENDER_LOADGEN_GC=1`` keeps the collector on.

    Token timestamps of a whole run (hundreds of thousands) and the records of earlier repeats otherwise make
    each full collection slower, stalling the event loop while streams are read: the client's timestamps then
    lag the server's, by more in each repeat.
    """
    if os.environ.get("RECOMMENDER_LOADGEN_GC", "0") == "1":
        yield
        return
    was_enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()
