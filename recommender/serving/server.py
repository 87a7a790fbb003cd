"""The vLLM server process: start in its own process group, wait for health, classify failures, kill cleanly.

:class:`VLLMServer` is a context manager. ``__enter__`` launches ``<command> <serve args>`` with
``start_new_session=True`` (a new session and process group), output to a log file, and polls
``GET /health`` until it answers 200, failing fast when the process exits. A start that fails raises
:class:`~recommender.errors.ServerStartError` whose ``reason`` is read from the exit and the log
(:func:`classify_start_failure`). ``__exit__`` sends SIGTERM to the whole group, waits, sends SIGKILL if
needed, and checks that no process of the group survives (engine workers and their children included).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from recommender.errors import ServerStartError

logger = logging.getLogger(__name__)

#: Always set in the server's environment: NVLink multicast off (shared hosts), CUDA ids in NVML order,
#: dev endpoints on (``/reset_prefix_cache``), unbuffered Python output for a live log.
SERVER_ENV: Mapping[str, str] = {
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
    "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    "VLLM_SERVER_DEV_MODE": "1",
    "PYTHONUNBUFFERED": "1",
}

#: Start-failure reasons, checked in order against the log text (case-sensitive substrings). OOM comes first:
#: vLLM reports a KV cache that cannot hold one sequence as a ValueError.
FAILURE_PATTERNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("not_found", ("No module named 'vllm'", "No module named vllm", "command not found")),
    ("oom", (
        "CUDA out of memory", "OutOfMemoryError", "No available memory for the cache blocks",
        "insufficient memory", "larger than the available KV cache memory", "CUDA error: out of memory",
    )),
    ("invalid_argument", (
        "error: unrecognized arguments", "error: argument", "invalid choice", "ValueError",
        "ValidationError", "TypeError: ",
    )),
)  # fmt: skip


def classify_start_failure(returncode: int | None, log_text: str, timed_out: bool = False) -> str:
    """Reason a server did not become healthy: ``oom``, ``invalid_argument``, ``not_found``, ``timeout`` or
    ``crashed``.

    Log patterns (:data:`FAILURE_PATTERNS`) win over the exit: a server that timed out after printing a CUDA
    OOM is an OOM. Exit status 127 (shell: command not found) is ``not_found``.
    """
    for reason, needles in FAILURE_PATTERNS:
        if any(n in log_text for n in needles):
            return reason
    if returncode == 127:
        return "not_found"
    return "timeout" if timed_out else "crashed"


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``, read from ``/proc``.

    On hosts without ``/proc`` this falls back to probing the group with signal 0 and returns ``[pgid]`` when
    any member exists.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # fields after the parenthesized command: state ppid pgrp ...
        rest = stat[stat.rfind(")") + 2 :].split()
        if len(rest) >= 3 and int(rest[2]) == pgid and rest[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


class VLLMServer:
    """One ``vllm serve`` process group on ``host:port``, as a context manager.

    Args:
        serve_args: arguments after the command (model path first), e.g. from
            :func:`recommender.serving.args.build_serve_args`.
        port: the port those arguments bind (used for ``/health``).
        log_path: file that receives the server's stdout and stderr (overwritten).
        command: argv prefix that runs ``vllm serve`` (default: settings' ``vllm_command()``).
        gpu_indices: NVML indices to expose via ``CUDA_VISIBLE_DEVICES`` (None: leave the variable alone).
        start_timeout_s: seconds to wait for ``/health`` (default: settings, 600).
        stop_timeout_s: seconds between SIGTERM and SIGKILL (default: settings, 30).
        env: extra environment variables (on top of ``os.environ`` and :data:`SERVER_ENV`).
        host: address the server binds.
        poll_interval_s: seconds between health polls.

    Raises:
        ServerStartError: from :meth:`start` / ``__enter__``; the group is already killed when it is raised.
    """

    def __init__(
        self,
        serve_args: Sequence[str],
        port: int,
        log_path: str | Path,
        *,
        command: Sequence[str] | None = None,
        gpu_indices: Sequence[int] | None = None,
        start_timeout_s: float | None = None,
        stop_timeout_s: float | None = None,
        env: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        poll_interval_s: float = 0.5,
    ) -> None:
        from recommender.serving.settings import get_settings

        settings = get_settings()
        self.command = list(command) if command is not None else settings.vllm_command()
        self.serve_args = [str(a) for a in serve_args]
        self.port = int(port)
        self.host = host
        self.log_path = Path(log_path)
        self.gpu_indices = None if gpu_indices is None else tuple(int(i) for i in gpu_indices)
        self.start_timeout_s = float(start_timeout_s or settings.server_start_timeout_s)
        self.stop_timeout_s = float(stop_timeout_s or settings.server_stop_timeout_s)
        self.extra_env = dict(env or {})
        self.poll_interval_s = poll_interval_s
        self.process: subprocess.Popen[bytes] | None = None
        self.pgid: int | None = None
        self.started_at_s: float | None = None
        self.healthy_at_s: float | None = None
        self._log: IO[bytes] | None = None

    # ---- properties ------------------------------------------------------------------------------------
    @property
    def argv(self) -> list[str]:
        """The full command line that is (or will be) run."""
        return [*self.command, *self.serve_args]

    @property
    def base_url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    @property
    def alive(self) -> bool:
        """True while the main server process runs."""
        return self.process is not None and self.process.poll() is None

    @property
    def startup_s(self) -> float | None:
        """Seconds from launch to the first healthy answer, once healthy."""
        if self.started_at_s is None or self.healthy_at_s is None:
            return None
        return self.healthy_at_s - self.started_at_s

    def environment(self) -> dict[str, str]:
        """The environment the server gets."""
        env = dict(os.environ)
        env.update(SERVER_ENV)
        if self.gpu_indices is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in self.gpu_indices)
        env.update(self.extra_env)
        return env

    def log_tail(self, max_bytes: int = 8000) -> str:
        """The last ``max_bytes`` of the server log (decoded leniently); empty when there is none."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - max_bytes))
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    # ---- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Launch and wait until ``/health`` answers 200 (:meth:`launch` then :meth:`wait_healthy`).

        Raises:
            ServerStartError: ``not_found`` (no executable), ``crashed`` (port busy), or a classified failure;
                the process group is already stopped when it is raised.
        """
        self.launch()
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise

    def launch(self) -> None:
        """Start the process (own session and process group) without waiting for health.

        Raises:
            ServerStartError: ``not_found`` when the command cannot be executed, ``crashed`` when the port is busy.
        """
        if self.process is not None:
            raise RuntimeError("this VLLMServer was already started; create a new one")
        if port_in_use(self.port, self.host):
            raise ServerStartError("crashed", f"port {self.port} on {self.host} is already in use; pick another port")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.started_at_s = time.monotonic()
        logger.info("starting vLLM: %s (log %s)", " ".join(self.argv), self.log_path)
        try:
            self.process = subprocess.Popen(
                self.argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.environment(), start_new_session=True,
            )  # fmt: skip
        except OSError as e:
            self._close_log()
            raise ServerStartError("not_found", f"cannot run {self.command[0]!r}: {e}") from e
        self.pgid = self.process.pid  # start_new_session: the child leads its own group

    def wait_healthy(self) -> None:
        """Poll ``/health`` until 200; fail fast when the process exits; give up after ``start_timeout_s``
        (counted from :meth:`launch`). Does not stop the server on failure (:meth:`start` does).

        Raises:
            ServerStartError: with the reason from :func:`classify_start_failure` and the log tail.
        """
        if self.process is None or self.started_at_s is None:
            raise RuntimeError("launch() the server first")
        deadline = self.started_at_s + self.start_timeout_s
        while True:
            code = self.process.poll()
            if code is not None:
                self._flush_log()
                tail = self.log_tail()
                reason = classify_start_failure(code, tail)
                raise ServerStartError(reason, f"server exited with status {code} before it was healthy", tail)
            if self.health():
                self.healthy_at_s = time.monotonic()
                logger.info("vLLM healthy on port %d after %.1f s", self.port, self.startup_s or 0.0)
                return
            if time.monotonic() > deadline:
                self._flush_log()
                tail = self.log_tail()
                reason = classify_start_failure(None, tail, timed_out=True)
                raise ServerStartError(
                    reason, f"no healthy answer from {self.base_url}/health within {self.start_timeout_s:g} s", tail
                )
            time.sleep(self.poll_interval_s)

    def health(self, timeout_s: float = 2.0) -> bool:
        """True when ``GET /health`` answers 200 now."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/health", timeout=timeout_s) as r:  # noqa: S310
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def reset_prefix_cache(self, timeout_s: float = 30.0) -> bool:
        """``POST /reset_prefix_cache`` (needs ``VLLM_SERVER_DEV_MODE=1``, which the server gets).

        Returns True on a 2xx answer; False (logged) otherwise, since a missing endpoint only weakens
        isolation between load points and is no reason to stop measuring.
        """
        req = urllib.request.Request(f"{self.base_url}/reset_prefix_cache", method="POST", data=b"")
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as r:  # noqa: S310
                return 200 <= r.status < 300
        except (urllib.error.URLError, OSError) as e:
            logger.warning("could not reset the prefix cache on %s: %s", self.base_url, e)
            return False

    def stop(self) -> list[int]:
        """SIGTERM the group, wait up to ``stop_timeout_s``, SIGKILL what is left, and reap.

        Returns:
            PIDs of group members still alive afterwards (empty on success; an error is logged otherwise).
            Idempotent.
        """
        if self.process is None or self.pgid is None:
            self._close_log()
            return []
        pgid = self.pgid
        self._signal_group(pgid, signal.SIGTERM)
        survivors = self._wait_group_gone(pgid, self.stop_timeout_s)
        if survivors:
            logger.warning("vLLM group %d still has %s after SIGTERM; sending SIGKILL", pgid, survivors)
            self._signal_group(pgid, signal.SIGKILL)
            survivors = self._wait_group_gone(pgid, 10.0)
        if survivors:
            logger.error("processes %s of the vLLM server group %d survived SIGKILL", survivors, pgid)
        self._close_log()
        return survivors

    def _signal_group(self, pgid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    def _wait_group_gone(self, pgid: int, timeout_s: float) -> list[int]:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process is not None:
                self.process.poll()  # reap the leader so it does not linger as a zombie
            members = group_members(pgid)
            if not members or time.monotonic() > deadline:
                return members
            time.sleep(0.05)

    def _flush_log(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.flush()

    def _close_log(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def __enter__(self) -> VLLMServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def detect_vllm_version(command: Sequence[str], env: Mapping[str, str] | None = None, timeout_s: float = 60.0) -> str:
    """vLLM's version as the server's own interpreter sees it, or ``"unknown"``.

    For a ``python ... -m vllm...`` command the interpreter reads ``importlib.metadata.version('vllm')``;
    otherwise ``<command[0]> --version`` is tried (the ``vllm`` console script prints its version).
    """
    exe = command[0] if command else ""
    base = os.path.basename(exe)
    if base.startswith("python") or "-m" in command[1:2]:
        argv = [exe, "-c", "import importlib.metadata as m; print(m.version('vllm'))"]
    else:
        argv = [exe, "--version"]
    try:
        out = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout_s,
            env={**os.environ, **(env or {})}, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    lines = [ln.strip() for ln in out.stdout.splitlines() if ln.strip()]
    if out.returncode != 0 or not lines:
        return "unknown"
    return lines[-1]
