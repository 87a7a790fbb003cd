"""ReplayEvaluator: the Evaluator contract, lookups, ML.ENERGY v3 import, files and DataFrames."""

from __future__ import annotations

from pathlib import Path

import pytest

from recommender.config import Hardware, Scenario, ServingConfig
from recommender.dataset import save_measurement, to_frame
from recommender.errors import InputError
from recommender.evaluators.replay import ReplayEvaluator, mlenergy_v3_groups
from recommender.measurement import Measurement, Metrics
from recommender.presets import fixed

pytestmark = pytest.mark.integration
MLENERGY = Path(__file__).resolve().parents[3] / "shared" / "data" / "mlenergy-leaderboard-v3" / "llm_configs_flat.csv"
needs_data = pytest.mark.skipif(not MLENERGY.is_file(), reason="ML.ENERGY v3 data not present")


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Scenario(model="Llama-3.1-8B", hardware=Hardware(gpu="H100", count=1), workload=fixed(num_requests=64))


def _m(sc: Scenario, seqs: int, e: float, created: str = "2026-01-01T00:00:00+00:00", ok: bool = True) -> Measurement:
    return Measurement(scenario=sc, config=ServingConfig(max_num_seqs=seqs), provenance="measured",
                       created_at=created, status="ok" if ok else "failed", failure_reason=None if ok else "oom",
                       metrics=Metrics(energy_per_output_token_j=e, tpot_p90_s=0.02) if ok else None, source="run-1")


def test_contract_hit_miss_and_order(scenario: Scenario) -> None:
    ev = ReplayEvaluator([_m(scenario, 8, 0.5), _m(scenario, 64, 0.1)])
    asked = ServingConfig(max_num_seqs=64)
    m = ev.evaluate(asked, scenario)
    assert m.ok and m.config == asked and m.scenario == scenario
    assert m.provenance == "measured" and m.value("energy_per_output_token_j") == 0.1
    assert m.source == "replay:run-1"
    miss = ev.evaluate(ServingConfig(max_num_seqs=32), scenario)
    assert miss.status == "failed" and miss.failure_reason == "not_in_table" and miss.config.max_num_seqs == 32
    other = scenario.model_copy(update={"hardware": Hardware(gpu="H100", count=2)})
    assert ev.evaluate(asked, other).failure_reason == "not_in_table"  # scenario must match too
    many = ev.evaluate_many([ServingConfig(max_num_seqs=s) for s in (64, 32, 8)], scenario)
    assert [x.config.max_num_seqs for x in many] == [64, 32, 8]
    assert [x.ok for x in many] == [True, False, True]


def test_latest_ok_row_wins_and_failures_replay(scenario: Scenario) -> None:
    rows = [_m(scenario, 8, 0.5, "2026-01-01T00:00:00+00:00"), _m(scenario, 8, 0.4, "2026-02-01T00:00:00+00:00"),
            _m(scenario, 8, 0.0, "2026-03-01T00:00:00+00:00", ok=False), _m(scenario, 16, 0.0, ok=False)]
    ev = ReplayEvaluator(rows)
    assert ev.evaluate(ServingConfig(max_num_seqs=8), scenario).value("energy_per_output_token_j") == 0.4
    failed = ev.evaluate(ServingConfig(max_num_seqs=16), scenario)
    assert failed.status == "failed" and failed.failure_reason == "oom"


def test_match_on_subset_and_no_scenario(scenario: Scenario) -> None:
    ev = ReplayEvaluator([_m(scenario, 8, 0.5)], match_on=["max_num_seqs"], match_scenario=False)
    other = scenario.model_copy(update={"hardware": Hardware(gpu="H100", count=2)})
    m = ev.evaluate(ServingConfig(max_num_seqs=8, enforce_eager=True), other)
    assert m.ok and m.config.enforce_eager
    with pytest.raises(InputError, match="did you mean"):
        ReplayEvaluator([_m(scenario, 8, 0.5)], match_on=["max_num_seq"])
    with pytest.raises(InputError, match="at least one"):
        ReplayEvaluator([])


def test_from_files_and_dataframe(scenario: Scenario, tmp_path: Path) -> None:
    rows = [_m(scenario, s, 1.0 / s) for s in (8, 16, 32)]
    for m in rows:
        save_measurement(m, tmp_path)
    ev = ReplayEvaluator.from_files([tmp_path])
    assert len(ev.table) == 3 and ev.scenarios()[0].key() == scenario.key()
    assert ev.space().size() == 3
    df_ev = ReplayEvaluator(to_frame(rows), scenario=scenario)
    got = df_ev.evaluate(ServingConfig(max_num_seqs=16), scenario)
    assert got.ok and got.value("energy_per_output_token_j") == pytest.approx(1 / 16)
    with pytest.raises(InputError, match="scenario"):
        ReplayEvaluator(to_frame(rows))


@needs_data
def test_mlenergy_v3_group() -> None:
    ev = ReplayEvaluator.from_mlenergy_v3(MLENERGY, "meta-llama/Llama-3.1-8B-Instruct")
    (sc,) = ev.scenarios()
    assert sc.model == "Llama-3.1-8B" and sc.hardware.gpu.startswith("H100") and sc.workload.name == "mlenergy-chat"
    assert len(ev.table) == 11 and {m.provenance for m in ev.table} == {"public"}
    m = ev.evaluate(ServingConfig(max_num_seqs=128), sc)
    assert m.ok and 0.05 < m.value("energy_per_output_token_j") < 0.2
    assert 0.001 < m.value("itl_p99_s") < 1.0  # milliseconds converted to seconds
    assert m.value("ttft_p99_s") is None  # not in the export: never invented
    assert ReplayEvaluator.from_mlenergy_v3(MLENERGY, "Llama-3.1-8B").table[0].source == ev.table[0].source
    space = ev.space(sc)
    assert list(space.distributions()) == ["max_num_seqs"] and space.size() == 11
    with pytest.raises(InputError, match="no rows"):
        ReplayEvaluator.from_mlenergy_v3(MLENERGY, "meta-llama/Llama-3.1-8B-Instruct", num_gpus=3)


@needs_data
def test_mlenergy_groups_skip_unknown_models(caplog: pytest.LogCaptureFixture) -> None:
    groups = mlenergy_v3_groups(MLENERGY, task="lm-arena-chat", min_rows=5)
    names = {g.scenarios()[0].model for g in groups}
    assert {"Llama-3.1-8B", "Llama-3.1-70B", "Qwen3-8B"} <= names
    assert any("skipping ML.ENERGY group" in r.message for r in caplog.records)
