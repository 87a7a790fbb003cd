"""A stand-in for ``vllm serve``: run as ``python standin_server.py serve <model> --port N ...``.

Behaviour comes from environment variables (the argv is whatever ``build_serve_args`` produced):

``STANDIN_MODE``
    ``healthy`` (default): serve the fake OpenAI server on ``--port`` with ``--max-num-seqs`` slots;
    ``crash``: print a RuntimeError traceback and exit 1; ``hang``: never listen;
    ``oom``: print vLLM's CUDA OOM message and exit 1; ``invalid-arg``: print an argparse error, exit 2;
    ``grandchild``: spawn a child that spawns a grandchild (both ignore SIGTERM and sleep), write their pids
    to ``STANDIN_PIDS``, then behave as ``STANDIN_AFTER`` (``healthy`` or ``hang``).
``STANDIN_RECORD``
    file to which each start appends a JSON line: argv, pid, and the environment keys the server must get.
``STANDIN_FAIL_ALL=1``
    every completion answers HTTP 500.
``STANDIN_ITL_S`` / ``STANDIN_TTFT_S``
    token timing of the fake server.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ENV_KEYS = ("CUDA_VISIBLE_DEVICES", "NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST", "NVSHMEM_DISABLE_NVLS",
            "VLLM_SERVER_DEV_MODE", "CUDA_DEVICE_ORDER")


def _opt(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv and argv.index(name) + 1 < len(argv) else None


def _sleeper() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(1)


def _spawn_family() -> None:
    """Child that ignores SIGTERM and spawns a grandchild that does the same; both stay in our group."""
    me = [sys.executable, os.path.abspath(__file__)]
    child = subprocess.Popen([*me, "__child__"])
    deadline = time.time() + 10
    pids_file = os.environ["STANDIN_PIDS"]
    while time.time() < deadline:  # the child appends the grandchild's pid
        if Path(pids_file).exists() and len(Path(pids_file).read_text().split()) >= 1:
            break
        time.sleep(0.05)
    with open(pids_file, "a") as f:
        f.write(f"{child.pid}\n")


def _child() -> None:
    gc = subprocess.Popen([sys.executable, "-c", "import signal,time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                           "while True: time.sleep(1)"])
    with open(os.environ["STANDIN_PIDS"], "a") as f:
        f.write(f"{gc.pid}\n")
    _sleeper()


def main() -> int:
    argv = sys.argv[1:]
    if argv[:1] == ["__child__"]:
        _child()
        return 0
    record = os.environ.get("STANDIN_RECORD")
    if record:
        with open(record, "a") as f:
            f.write(json.dumps({"argv": argv, "pid": os.getpid(), "env": {k: os.environ.get(k) for k in ENV_KEYS}})
                    + "\n")
    mode = os.environ.get("STANDIN_MODE", "healthy")
    print(f"INFO standin vllm serve, mode {mode}", flush=True)
    if mode == "grandchild":
        _spawn_family()
        mode = os.environ.get("STANDIN_AFTER", "hang")
    if mode == "crash":
        print("Traceback (most recent call last):\nRuntimeError: Engine core initialization failed.", flush=True)
        return 1
    if mode == "oom":
        print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
              "capacity of 79.19 GiB of which 1.06 GiB is free.", flush=True)
        return 1
    if mode == "invalid-arg":
        print("usage: vllm serve [model_tag] [options]\nvllm serve: error: unrecognized arguments: --bogus",
              file=sys.stderr, flush=True)
        return 2
    if mode == "hang":
        while True:
            time.sleep(1)
    from fake_openai_server import FakeOpenAIServer, FakeTiming, serve_forever

    seqs = _opt(argv, "--max-num-seqs")
    timing = FakeTiming(
        ttft_base_s=float(os.environ.get("STANDIN_TTFT_S", "0.02")),
        itl_s=float(os.environ.get("STANDIN_ITL_S", "0.004")),
        max_num_seqs=int(seqs) if seqs else None, fail_all=os.environ.get("STANDIN_FAIL_ALL") == "1",
        model=_opt(argv, "--served-model-name") or "model",
    )
    server = FakeOpenAIServer(timing, _opt(argv, "--host") or "127.0.0.1", int(_opt(argv, "--port") or 8000))
    loop = asyncio.new_event_loop()
    task = loop.create_task(serve_forever(server, announce=False))
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
