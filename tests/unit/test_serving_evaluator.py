"""VLLMEvaluator end to end against the stand-in server, with a fake energy backend."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from recommender.config import Hardware, Scenario, ServingConfig
from recommender.dataset import load_measurements
from recommender.errors import EnergyMeterError
from recommender.evaluators.vllm import VLLMEvaluator, representative
from recommender.presets import get_preset
from recommender.serving.loadgen import load_results
from recommender.serving.session import EnergyBackend
from recommender.slo import SLO

pytestmark = pytest.mark.unit
STANDIN = Path(__file__).resolve().parents[1] / "integration" / "standin_server.py"
COMMAND = [sys.executable, str(STANDIN), "serve"]
POWER_W = 300.0


@dataclass
class FakeMeter:
    available: bool = True
    open: dict[str, float] = field(default_factory=dict)
    message: str = "no NVML here"

    def begin_window(self, name: str) -> None:
        self.open[name] = time.monotonic()

    def end_window(self, name: str) -> Any:
        start = self.open.pop(name)
        end = time.monotonic()
        d = end - start
        return SimpleNamespace(name=name, start_s=start, end_s=end, duration_s=d, energy_j=POWER_W * d,
                               per_gpu_energy_j={0: POWER_W * d}, avg_power_w=POWER_W, method="counter",
                               status="ok", note="")

    def measure_idle_power_w(self, duration_s: float = 5.0) -> float:
        return 60.0


class FakeSampler:
    def __init__(self, gpus: list[int], interval_s: float = 0.1) -> None:
        self.t0 = self.t1 = 0.0

    def start(self) -> None:
        self.t0 = time.monotonic()

    def stop(self) -> None:
        self.t1 = time.monotonic()

    def samples(self) -> list[Any]:
        n = int((self.t1 - self.t0) / 0.01)
        return [SimpleNamespace(t_s=self.t0 + 0.01 * k, gpu_index=0, power_w=POWER_W, sm_clock_mhz=1980)
                for k in range(n)]

    def to_csv(self, path: Path) -> Path:
        Path(path).write_text("t_s,gpu_index,power_w\n" + "".join(f"{s.t_s},0,{s.power_w}\n" for s in self.samples()))
        return Path(path)


class FakeActuator:
    calls: list[tuple[Any, ...]] = []

    def __init__(self, gpus: list[int], sm_clock_mhz: int | None, power_limit_w: float | None,
                 enabled: bool = False) -> None:
        FakeActuator.calls.append((list(gpus), sm_clock_mhz, power_limit_w, enabled))

    def __enter__(self) -> FakeActuator:
        return self

    def __exit__(self, *exc: object) -> None:
        FakeActuator.calls.append(("restored",))


def backend(meter: FakeMeter | None = None) -> EnergyBackend:
    m = meter or FakeMeter()
    return EnergyBackend(lambda gpus, strict=True: m, FakeSampler, FakeActuator,
                         lambda: [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "driver_version": "580.159.04",
                                   "nvml_version": "13.580"}])


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Scenario(model="Llama-3.2-1B", hardware=Hardware(gpu="H100", count=1),
                    workload=get_preset("fixed", input_tokens=16, output_tokens=8, num_requests=12), max_model_len=256)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    record = tmp_path / "starts.jsonl"
    monkeypatch.setenv("STANDIN_MODE", "healthy")
    monkeypatch.setenv("STANDIN_RECORD", str(record))
    monkeypatch.setenv("STANDIN_ITL_S", "0.003")
    monkeypatch.setenv("STANDIN_TTFT_S", "0.01")
    return record


def evaluator(root: Path, cache: Path, **kw: Any) -> VLLMEvaluator:
    opts: dict[str, Any] = {"vllm_command": COMMAND, "energy_backend": backend(), "model_cache_dir": cache,
                            "start_timeout_s": 20.0, "warmup_requests": 2, "idle_power_s": 0.01}
    opts.update(kw)
    return VLLMEvaluator(root, **opts)


def starts(record: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def test_success_writes_measurements_and_artifacts(tmp_path: Path, cache: Path, scenario: Scenario,
                                                   standin: Path) -> None:
    root = tmp_path / "ds"
    ev = evaluator(root, cache, repeats=2, slo=SLO.parse("ttft:p99<=2s"))
    cfg = ServingConfig(max_num_seqs=4)
    m = ev.evaluate(cfg, scenario)
    assert m.ok and m.config == cfg and m.scenario == scenario and m.provenance == "measured"
    assert m.metrics is not None and m.steady_state is not None
    assert (m.metrics.completed_requests, m.metrics.failed_requests, m.metrics.output_tokens) == (12, 0, 96)
    assert m.metrics.avg_power_w == POWER_W and m.metrics.idle_power_w == 60.0
    assert m.metrics.energy_per_output_token_j == pytest.approx(m.metrics.energy_j / 96)  # type: ignore[operator]
    assert m.metrics.energy_j == pytest.approx(POWER_W * m.metrics.duration_s, rel=0.05)  # type: ignore[operator]
    assert m.metrics.mean_sm_clock_mhz == 1980 and m.metrics.slo_attainment == 1.0
    s = m.steady_state
    assert s.energy_j is not None and s.energy_per_output_token_j == pytest.approx(s.energy_j / s.output_tokens)
    assert 0 < s.duration_s < m.metrics.duration_s  # type: ignore[operator]
    assert m.versions["vllm"] == "unknown" and m.versions["gpu_name"] == "NVIDIA H100 80GB HBM3"
    assert m.versions["driver"] == "580.159.04"
    saved = load_measurements([root])
    assert len(saved) == 2 and {x.notes.split(";")[0] for x in saved} == {"repeat 1/2", "repeat 2/2"}
    for key in ("requests", "power_timeline", "server_log", "run_info"):
        assert (root / m.artifacts[key]).is_file(), key
    assert len(load_results(root / m.artifacts["requests"])) == 12
    info = json.loads((root / m.artifacts["run_info"]).read_text())
    assert info["steady_batch"] == 4 and len(info["steady_window_since_run_start_s"]) == 2
    assert info["server_argv"][info["server_argv"].index("--max-num-seqs") + 1] == "4"
    assert "standin vllm serve" in (root / m.artifacts["server_log"]).read_text()
    assert len(starts(standin)) == 1 and starts(standin)[0]["env"]["CUDA_VISIBLE_DEVICES"] == "0"


def test_start_failure_is_a_failed_measurement(tmp_path: Path, cache: Path, scenario: Scenario, standin: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STANDIN_MODE", "oom")
    m = evaluator(tmp_path / "ds", cache).evaluate(ServingConfig(max_num_seqs=4), scenario)
    assert m.status == "failed" and m.failure_reason == "oom" and m.metrics is None
    assert "CUDA out of memory" in m.failure_detail
    assert [x.id for x in load_measurements([tmp_path / "ds"])] == [m.id]


def test_all_requests_failed(tmp_path: Path, cache: Path, scenario: Scenario, standin: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STANDIN_FAIL_ALL", "1")
    m = evaluator(tmp_path / "ds", cache, repeats=1).evaluate(ServingConfig(max_num_seqs=4), scenario)
    assert m.status == "failed" and m.failure_reason == "requests_failed"
    assert "HTTP 500" in m.failure_detail and "server log tail" in m.failure_detail
    assert m.metrics is not None and m.metrics.failed_requests == 12


def test_engine_key_groups_share_one_server(tmp_path: Path, cache: Path, scenario: Scenario, standin: Path) -> None:
    FakeActuator.calls.clear()
    base = ServingConfig(max_num_seqs=4)
    tuned = base.model_copy(update={"gpu_clock_mhz": 1500})
    other = ServingConfig(max_num_seqs=2)
    ev = evaluator(tmp_path / "ds", cache, allow_gpu_tuning=True)
    ms = ev.evaluate_many([base, other, tuned], scenario)
    assert [m.config for m in ms] == [base, other, tuned] and all(m.ok for m in ms)
    assert len(starts(standin)) == 2  # {base, tuned} share one start, `other` needs its own
    assert FakeActuator.calls == [([0], 1500, None, True), ("restored",)]
    refused = evaluator(tmp_path / "ds2", cache).evaluate(tuned, scenario)
    assert refused.status == "failed" and refused.failure_reason == "gpu_tuning_not_allowed"


def test_infeasible_config_never_starts_a_server(tmp_path: Path, cache: Path, scenario: Scenario,
                                                 standin: Path) -> None:
    m = evaluator(tmp_path / "ds", cache).evaluate(ServingConfig(tensor_parallel_size=2), scenario)
    assert m.status == "failed" and m.failure_reason == "infeasible" and m.failure_detail
    assert starts(standin) == []


def test_energy_required_but_absent(tmp_path: Path, cache: Path, scenario: Scenario, standin: Path) -> None:
    absent = backend(FakeMeter(available=False))
    with pytest.raises(EnergyMeterError, match="no NVML"):
        evaluator(tmp_path / "ds", cache, energy_backend=absent).evaluate(ServingConfig(max_num_seqs=4), scenario)
    m = evaluator(tmp_path / "ds", cache, energy_backend=absent, require_energy=False).evaluate(
        ServingConfig(max_num_seqs=4), scenario)
    assert m.ok and m.metrics is not None and m.metrics.energy_j is None and m.metrics.throughput_output_tok_s


def test_representative_is_the_median_repeat(scenario: Scenario) -> None:
    from recommender.measurement import Measurement, Metrics

    ms = [Measurement(scenario=scenario, config=ServingConfig(), provenance="measured",
                      metrics=Metrics(energy_per_output_token_j=v)) for v in (0.3, 0.1, 0.2)]
    assert representative(ms).metrics.energy_per_output_token_j == 0.2  # type: ignore[union-attr]


def test_replicas_are_separate_pinned_servers(tmp_path: Path, cache: Path, standin: Path) -> None:
    scen = Scenario(model="Llama-3.2-1B", hardware=Hardware(gpu="H100", count=2),
                    workload=get_preset("fixed", input_tokens=16, output_tokens=8, num_requests=24), max_model_len=256)
    root = tmp_path / "ds"
    m = evaluator(root, cache, gpu_indices=[0, 1]).evaluate(ServingConfig(max_num_seqs=4, replicas=2), scen)
    assert m.ok and m.metrics is not None and m.metrics.completed_requests == 24
    assert sorted(s["env"]["CUDA_VISIBLE_DEVICES"] for s in starts(standin)) == ["0", "1"]
    results = load_results(root / m.artifacts["requests"])
    assert len({r.server for r in results}) == 2
    info = json.loads((root / m.artifacts["run_info"]).read_text())
    assert info["steady_batch"] == 8 and m.steady_state is not None
    assert {"server_log", "server_log_replica1"} <= set(m.artifacts)
