"""Pure parts of the server layer: failure classification, command parsing, Prometheus parsing."""

from __future__ import annotations

import pytest

from recommender.errors import InputError
from recommender.serving.loadgen import parse_prometheus_gauge
from recommender.serving.server import classify_start_failure
from recommender.serving.settings import DEFAULT_VLLM_COMMAND, ServingSettings, parse_command

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("code", "log", "timed_out", "reason"),
    [
        (1, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1 GiB", False, "oom"),
        (1, "RuntimeError: No available memory for the cache blocks. Try increasing gpu_memory_utilization", False,
         "oom"),
        (1, "ValueError: To serve at least one request ... (16.00 GiB KV cache is needed, which is larger than the "
            "available KV cache memory (3.2 GiB)", False, "oom"),
        (None, "insufficient memory for 256 sequences", True, "oom"),
        (2, "vllm serve: error: unrecognized arguments: --bogus", False, "invalid_argument"),
        (2, "error: argument --kv-cache-dtype: invalid choice: 'fp4'", False, "invalid_argument"),
        (1, "pydantic_core._pydantic_core.ValidationError: 1 validation error for SchedulerConfig", False,
         "invalid_argument"),
        (1, "/usr/bin/python3: No module named 'vllm'", False, "not_found"),
        (127, "", False, "not_found"),
        (None, "INFO loading weights", True, "timeout"),
        (-9, "Killed", False, "crashed"),
        (1, "RuntimeError: Engine core initialization failed.", False, "crashed"),
    ],
)
def test_classify(code: int | None, log: str, timed_out: bool, reason: str) -> None:
    assert classify_start_failure(code, log, timed_out) == reason


def test_parse_command() -> None:
    assert parse_command("/tmp/site/bin/vllm serve") == ["/tmp/site/bin/vllm", "serve"]
    assert parse_command('["python3", "-m", "vllm.entrypoints.cli.main", "serve"]')[-1] == "serve"
    assert parse_command("'/opt/my python' -m x") == ["/opt/my python", "-m", "x"]
    for bad in ("", "[1, 2]", "[oops"):
        with pytest.raises(InputError):
            parse_command(bad)


def test_settings_default_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECOMMENDER_VLLM_CMD", raising=False)
    assert ServingSettings().vllm_command() == list(DEFAULT_VLLM_COMMAND)
    monkeypatch.setenv("RECOMMENDER_VLLM_CMD", "vllm serve")
    monkeypatch.setenv("RECOMMENDER_SERVER_START_TIMEOUT_S", "42")
    s = ServingSettings()
    assert s.vllm_command() == ["vllm", "serve"] and s.server_start_timeout_s == 42


def test_prometheus_gauge() -> None:
    text = (
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
        '# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{engine="0",model_name="m"} 7.0\n'
        'vllm:num_requests_running{engine="0",model_name="m",pid="2"} 0.0\n'
        "vllm:num_requests_running_total 99\nvllm:num_requests_waiting 3\n"
    )
    assert parse_prometheus_gauge(text, "vllm:num_requests_running") == 7.0
    assert parse_prometheus_gauge(text, "vllm:num_requests_waiting") == 3.0
    assert parse_prometheus_gauge(text, "vllm:missing") is None
