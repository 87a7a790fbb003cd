"""VLLMServer against a stand-in ``vllm serve``: health, classified start failures, no surviving processes."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from recommender.errors import ServerStartError
from recommender.serving.server import VLLMServer, detect_vllm_version, free_port, group_members

pytestmark = pytest.mark.integration
STANDIN = Path(__file__).with_name("standin_server.py")
COMMAND = [sys.executable, str(STANDIN), "serve"]


def alive(pid: int) -> bool:
    """True for a live process (a zombie waiting to be reaped counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] not in "ZX"


def server(tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch, **kw: object) -> VLLMServer:
    monkeypatch.setenv("STANDIN_MODE", mode)
    monkeypatch.setenv("STANDIN_RECORD", str(tmp_path / "record.jsonl"))
    monkeypatch.setenv("STANDIN_PIDS", str(tmp_path / "pids.txt"))
    port = free_port()
    args = ["/models/x", "--max-num-seqs", "4", "--host", "127.0.0.1", "--port", str(port)]
    opts: dict = {"command": COMMAND, "start_timeout_s": 20.0, "stop_timeout_s": 5.0, "poll_interval_s": 0.1}
    opts.update(kw)
    return VLLMServer(args, port, tmp_path / "server.log", **opts)


def test_healthy_start_env_reset_and_clean_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = server(tmp_path, "healthy", monkeypatch, gpu_indices=[2, 3])
    with srv:
        assert srv.alive and srv.health() and srv.startup_s is not None
        assert srv.reset_prefix_cache() is True
        pgid = srv.pgid
        assert pgid is not None and pgid != os.getpgid(0)  # its own process group
        rec = json.loads((tmp_path / "record.jsonl").read_text().splitlines()[0])
    assert rec["argv"][0] == "serve" and rec["argv"][1] == "/models/x"
    assert rec["env"] == {"CUDA_VISIBLE_DEVICES": "2,3", "NCCL_NVLS_ENABLE": "0", "NVSHMEM_DISABLE_NVLS": "1",
                          "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "VLLM_SERVER_DEV_MODE": "1",
                          "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert not srv.alive and group_members(pgid) == [] and not alive(rec["pid"])


@pytest.mark.parametrize(
    ("mode", "reason", "text"),
    [("crash", "crashed", "Engine core initialization failed"), ("oom", "oom", "CUDA out of memory"),
     ("invalid-arg", "invalid_argument", "unrecognized arguments")],
)
def test_classified_start_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, reason: str,
                                   text: str) -> None:
    srv = server(tmp_path, mode, monkeypatch)
    t = time.monotonic()
    with pytest.raises(ServerStartError) as err:
        srv.start()
    assert time.monotonic() - t < 10  # failed fast, did not wait for the timeout
    assert err.value.reason == reason and text in err.value.log_tail
    assert srv.pgid is not None and group_members(srv.pgid) == []


def test_hang_times_out_and_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = server(tmp_path, "hang", monkeypatch, start_timeout_s=1.0)
    with pytest.raises(ServerStartError) as err:
        srv.start()
    assert err.value.reason == "timeout" and "within 1 s" in err.value.detail
    assert srv.pgid is not None and group_members(srv.pgid) == [] and not srv.alive


def test_missing_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = server(tmp_path, "healthy", monkeypatch, command=[str(tmp_path / "no-such-vllm"), "serve"])
    with pytest.raises(ServerStartError) as err:
        srv.start()
    assert err.value.reason == "not_found"


@pytest.mark.parametrize("after", ["healthy", "hang"])
def test_no_child_or_grandchild_survives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after: str) -> None:
    monkeypatch.setenv("STANDIN_AFTER", after)
    srv = server(tmp_path, "grandchild", monkeypatch, stop_timeout_s=1.0,
                 start_timeout_s=20.0 if after == "healthy" else 2.0)
    if after == "healthy":
        with srv:
            pids = [int(p) for p in (tmp_path / "pids.txt").read_text().split()]
            assert len(pids) == 2 and all(alive(p) for p in pids)  # child and grandchild ignore SIGTERM
    else:
        with pytest.raises(ServerStartError):
            srv.start()
        pids = [int(p) for p in (tmp_path / "pids.txt").read_text().split()]
    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids), "a child or grandchild of the server survived"
    assert srv.pgid is not None and group_members(srv.pgid) == []


def test_command_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOMMENDER_VLLM_CMD", json.dumps(COMMAND))
    srv = server(tmp_path, "healthy", monkeypatch, command=None)
    assert srv.command == COMMAND
    with srv:
        assert srv.health()


def test_busy_port_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = server(tmp_path, "healthy", monkeypatch)
    with first:
        second = VLLMServer(["/m", "--port", str(first.port)], first.port, tmp_path / "b.log", command=COMMAND)
        with pytest.raises(ServerStartError, match="already in use"):
            second.start()


def test_detect_version(tmp_path: Path) -> None:
    fake = tmp_path / "vllm"
    fake.write_text("#!/bin/sh\necho 0.26.0\n")
    fake.chmod(0o755)
    assert detect_vllm_version([str(fake), "serve"]) == "0.26.0"
    v = detect_vllm_version(COMMAND)  # this interpreter: "unknown" unless vLLM is installed here
    assert v == "unknown" or v[0].isdigit()
    assert detect_vllm_version([str(tmp_path / "missing")]) == "unknown"


def test_cli_measure_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    from recommender.cli import main
    from recommender.dataset import load_measurements

    monkeypatch.setenv("STANDIN_MODE", "healthy")
    monkeypatch.setenv("STANDIN_ITL_S", "0.002")
    monkeypatch.setenv("RECOMMENDER_VLLM_CMD", json.dumps(COMMAND))
    monkeypatch.setenv("RECOMMENDER_MODEL_CACHE_DIR", str(tmp_path / "models"))
    out = tmp_path / "ds"
    wl = tmp_path / "wl.yaml"
    wl.write_text("name: tiny\ninput_tokens: {kind: fixed, tokens: 16}\noutput_tokens: {kind: uniform, low_tokens: 4,"
                  " high_tokens: 12}\narrivals: {kind: poisson, rate_rps: 5}\nnum_requests: 4\n")
    code = main(["measure", "--model", "Llama-3.2-1B", "--gpu", "H100", "--workload", str(wl), "--num-requests", "12",
                 "--concurrency", "12", "--max-num-seqs", "4", "--no-require-energy", "--repeats", "2",
                 "--slo", "ttft:p99<=2s", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "steady" in text and "whole" in text and "saved 2 measurement(s)" in text
    ms = load_measurements([out])
    assert len(ms) == 2 and all(m.ok and m.metrics and m.metrics.slo_attainment == 1.0 for m in ms)
    assert ms[0].config.max_num_seqs == 4 and ms[0].scenario.workload.num_requests == 12
    assert ms[0].scenario.workload.arrivals.kind == "closed_loop"


def test_cli_measure_bad_flag(capsys: pytest.CaptureFixture[str]) -> None:
    from recommender.cli import main

    code = main(["measure", "--model", "Llama-3.2-1B", "--precision", "fp4", "--no-require-energy"])
    assert code == 2 and "precision" in capsys.readouterr().err
