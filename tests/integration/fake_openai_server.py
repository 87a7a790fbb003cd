"""A real streaming OpenAI-compatible completions server with known token timing, for tests.

Timing of one request (all on the server's clock, scheduled at absolute times so nothing drifts):
admitted when one of ``max_num_seqs`` batch slots is free (FIFO; no cap when None), first token at
``admit + ttft_base_s + ttft_per_input_token_s * input_tokens``, then one token every ``itl_s`` until
``max_tokens``. Chunks look like vLLM's (``choices[0].text``, ``usage: null``), followed by a usage-only chunk
(``choices: []``) and ``data: [DONE]``.

Failures by request index (the integer after the last ``-`` of the ``X-Request-Id`` header):
``fail_indices`` answer HTTP 500, ``midstream_fail_indices`` stream two tokens and then an error event,
``truncate_indices`` stream two tokens and end the response without ``data: [DONE]``.

Endpoints: ``POST /v1/completions``, ``GET /health``, ``POST /reset_prefix_cache``, ``GET /metrics``
(``vllm:num_requests_running`` / ``vllm:num_requests_waiting``), ``GET /v1/models``.

In-process: ``with FakeOpenAIServer(FakeTiming(...)) as srv: srv.base_url`` (own thread and event loop; the
GIL is shared with the client, so timing jitters by up to the interpreter's switch interval under load).
As a process: ``with FakeServerProcess(FakeTiming(...)) as srv`` runs ``python fake_openai_server.py --port 0
...`` (which prints ``PORT <n>`` once listening); ``srv.stats()`` reads ``GET /_stats``: payloads, counters, and
per request id the server's ``time.monotonic()`` at receipt, admission and every chunk write (the client's clock).
Timing tests use the process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web


@dataclass
class FakeTiming:
    """Server behaviour; times in seconds."""

    ttft_base_s: float = 0.02
    ttft_per_input_token_s: float = 0.0
    itl_s: float = 0.005
    max_num_seqs: int | None = None
    fail_indices: frozenset[int] = field(default_factory=frozenset)
    midstream_fail_indices: frozenset[int] = field(default_factory=frozenset)
    fail_all: bool = False
    truncate_indices: frozenset[int] = field(default_factory=frozenset)
    model: str = "model"


def _index(request_id: str) -> int | None:
    tail = request_id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


class FakeOpenAIServer:
    """See module docstring. ``port=0`` picks a free port; ``port`` holds the real one after start."""

    def __init__(self, timing: FakeTiming | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.timing = timing or FakeTiming()
        self.host, self.port = host, port
        self.running = 0
        self.waiting = 0
        self.requests = 0
        self.reset_calls = 0
        self.payloads: list[dict] = []
        self.timeline: dict[str, dict[str, object]] = {}
        self._slots: asyncio.Semaphore | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()

    # ---- app -------------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/health", self._health)
        app.router.add_post("/reset_prefix_cache", self._reset)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/_stats", self._stats)
        return app

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": self.requests, "reset_calls": self.reset_calls,
                                  "payloads": self.payloads, "timeline": self.timeline})

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="")

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": self.timing.model}]})

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset_calls += 1
        return web.Response(text="")

    async def _metrics(self, request: web.Request) -> web.Response:
        m = self.timing.model
        text = (
            f'# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{{model_name="{m}"}} {self.running}.0\n'
            f'vllm:num_requests_waiting{{model_name="{m}"}} {self.waiting}.0\n'
        )
        return web.Response(text=text)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        rid = request.headers.get("X-Request-Id", "")
        sent: list[float] = []
        entry: dict[str, object] = {"recv_s": time.monotonic(), "admit_s": None, "token_s": sent}
        self.timeline[rid] = entry
        body = await request.json()
        self.requests += 1
        self.payloads.append({k: v for k, v in body.items() if k != "prompt"} | {"prompt_len": len(body["prompt"])})
        prompt, max_tokens = body.get("prompt"), body.get("max_tokens")
        if not isinstance(prompt, list) or not all(isinstance(t, int) for t in prompt) or not body.get("stream"):
            return web.json_response({"error": {"message": "prompt must be token ids, stream true"}}, status=400)
        idx = _index(rid)
        if self.timing.fail_all or idx in self.timing.fail_indices:
            return web.json_response({"error": {"message": f"injected failure {idx}"}}, status=500)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.timing.max_num_seqs or 1_000_000)
        self.waiting += 1
        async with self._slots:
            self.waiting -= 1
            self.running += 1
            entry["admit_s"] = time.monotonic()
            try:
                return await self._stream(request, len(prompt), int(max_tokens), idx, sent)
            finally:
                self.running -= 1

    async def _stream(self, request: web.Request, n_in: int, n_out: int, idx: int | None,
                      sent: list) -> web.StreamResponse:
        t = self.timing
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        first = loop.time() + t.ttft_base_s + t.ttft_per_input_token_s * n_in
        for k in range(n_out):
            delay = first + k * t.itl_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if idx in t.midstream_fail_indices and k == 2:
                await resp.write(b'data: {"error": {"message": "injected mid-stream failure", "code": 500}}\n\n')
                await resp.write(b"data: [DONE]\n\n")
                return resp
            if idx in t.truncate_indices and k == 2:
                return resp
            chunk = {"id": "cmpl-x", "object": "text_completion", "created": 0, "model": t.model,
                     "choices": [{"index": 0, "text": f" t{k}", "logprobs": None,
                                  "finish_reason": "length" if k == n_out - 1 else None}], "usage": None}
            sent.append(time.monotonic())
            await resp.write(b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n")
        usage = {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}
        final = {"id": "cmpl-x", "object": "text_completion", "created": 0, "model": t.model, "choices": [],
                 "usage": usage}
        await resp.write(b"data: " + json.dumps(final).encode() + b"\n\ndata: [DONE]\n\n")
        return resp

    # ---- in-process lifecycle --------------------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        self._thread = threading.Thread(target=self._serve, name="FakeOpenAIServer", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake server did not start")
        return self

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(self.app(), access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, self.host, self.port)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def serve_forever(server: FakeOpenAIServer, announce: bool = True) -> None:
    """Run ``server`` on the current loop until cancelled (or SIGTERM ends the process)."""
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, server.host, server.port)
    await site.start()
    server.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    if announce:
        print(f"PORT {server.port}", flush=True)
    try:
        while True:
            await asyncio.sleep(3600)
    finally:
        await runner.cleanup()


def _timing_args(t: FakeTiming) -> list[str]:
    args = ["--ttft-base-s", str(t.ttft_base_s), "--ttft-per-input-token-s", str(t.ttft_per_input_token_s),
            "--itl-s", str(t.itl_s), "--model", t.model,
            "--fail-indices", ",".join(map(str, sorted(t.fail_indices))),
            "--midstream-fail-indices", ",".join(map(str, sorted(t.midstream_fail_indices))),
            "--truncate-indices", ",".join(map(str, sorted(t.truncate_indices)))]
    if t.max_num_seqs is not None:
        args += ["--max-num-seqs", str(t.max_num_seqs)]
    return args + (["--fail-all"] if t.fail_all else [])


class FakeServerProcess:
    """The fake server in its own process (no GIL shared with the client under test)."""

    def __init__(self, timing: FakeTiming | None = None) -> None:
        self.timing = timing or FakeTiming()
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> FakeServerProcess:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--port", "0",
                                      *_timing_args(self.timing)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"fake server did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict:
        with urllib.request.urlopen(f"{self.base_url}/_stats", timeout=5) as r:
            return json.loads(r.read())


def _ints(text: str) -> frozenset[int]:
    return frozenset(int(x) for x in text.split(",") if x.strip())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--ttft-base-s", type=float, default=0.02)
    p.add_argument("--ttft-per-input-token-s", type=float, default=0.0)
    p.add_argument("--itl-s", type=float, default=0.005)
    p.add_argument("--max-num-seqs", type=int, default=None)
    p.add_argument("--model", default="model")
    p.add_argument("--fail-indices", default="")
    p.add_argument("--midstream-fail-indices", default="")
    p.add_argument("--fail-all", action="store_true")
    p.add_argument("--truncate-indices", default="")
    a = p.parse_args(argv)
    timing = FakeTiming(ttft_base_s=a.ttft_base_s, ttft_per_input_token_s=a.ttft_per_input_token_s, itl_s=a.itl_s,
                        max_num_seqs=a.max_num_seqs, fail_indices=_ints(a.fail_indices),
                        midstream_fail_indices=_ints(a.midstream_fail_indices), fail_all=a.fail_all,
                        truncate_indices=_ints(a.truncate_indices), model=a.model)
    try:
        asyncio.run(serve_forever(FakeOpenAIServer(timing, a.host, a.port)))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
