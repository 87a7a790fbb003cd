"""benchmarks/measure_h100.py end to end on the stand-in server (no GPU): run, archive, summarize."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.unit.benchmark_scripts import load_benchmark

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
STANDIN = REPO / "tests" / "integration" / "standin_server.py"


def _bench() -> ModuleType:
    return load_benchmark("measure_h100")


def test_run_archive_and_summarize(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    bench = _bench()
    monkeypatch.setenv("STANDIN_MODE", "healthy")
    monkeypatch.setenv("STANDIN_ITL_S", "0.0005")
    monkeypatch.setenv("STANDIN_TTFT_S", "0.005")
    monkeypatch.setenv("RECOMMENDER_MODEL_CACHE_DIR", str(tmp_path / "models"))
    archive = tmp_path / "out" / "h100_seqs4.tar.gz"
    code = bench.main(["--seqs", "4", "--repeats", "2", "--chat-requests", "12", "--no-energy", "--out",
                       str(tmp_path / "ds"), "--archive", str(archive), "--vllm-cmd",
                       json.dumps([sys.executable, str(STANDIN), "serve"])])
    text = capsys.readouterr().out
    assert code == 0, text
    assert archive.is_file() and "== runs" in text and "== repeats" in text and "ML.ENERGY v3" in text
    rows = [ln.split() for ln in text.splitlines() if ln.strip().startswith("4 ")]
    assert {(r[1], r[3]) for r in rows if len(r) > 3} >= {("a", "whole"), ("a", "steady"), ("b", "whole")}
    bench.main(["--summarize", str(archive), "--extract-to", str(tmp_path / "x")])
    again = capsys.readouterr().out
    assert again.split("== runs")[1].split("== repeats")[0] == text.split("== runs")[1].split("== repeats")[0]
    assert len(list((tmp_path / "x").rglob("requests.jsonl.gz"))) == 4


def test_chat_request_counts_and_estimates() -> None:
    bench = _bench()
    assert [bench.chat_requests(s) for s in (8, 64, 256, 32, 1024)] == [96, 512, 1280, 128, 4096]
    assert 40 < bench.est_run_s(1280, 396, 256) < 120
    assert set(bench.ML_ENERGY_FALLBACK) == {8, 64, 256}
