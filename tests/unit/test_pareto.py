"""Pareto front, SLO checks, the pick under an SLO and 2-D hypervolume (recommender.pareto, pure)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from recommender.config import Hardware, Scenario, ServingConfig
from recommender.dataset import to_frame
from recommender.measurement import Measurement, Metrics
from recommender.pareto import (
    ENERGY_KEY,
    constraint_values,
    hypervolume_2d,
    meets_slo,
    pareto_front,
    pareto_mask,
    pick_best,
    slo_headroom,
    slo_violations,
)
from recommender.presets import fixed
from recommender.slo import SLO

pytestmark = pytest.mark.unit
LAT = "tpot_p90_s"


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Scenario(model="Llama-3.1-8B", hardware=Hardware(gpu="H100", count=1), workload=fixed())


def _m(scenario: Scenario, seqs: int, e: float | None, lat: float | None, ok: bool = True,
       **extra: float) -> Measurement:
    metrics = Metrics(**{ENERGY_KEY: e, LAT: lat, **extra})
    return Measurement(scenario=scenario, config=ServingConfig(max_num_seqs=seqs), provenance="measured",
                       status="ok" if ok else "failed", failure_reason=None if ok else "oom",
                       metrics=metrics if ok else None)


def test_front_drops_dominated_failed_and_incomplete(scenario: Scenario) -> None:
    a = _m(scenario, 8, 0.5, 0.01)
    b = _m(scenario, 16, 0.3, 0.02)
    c = _m(scenario, 32, 0.4, 0.03)  # dominated by b
    d = _m(scenario, 64, 0.1, 0.08)
    failed = _m(scenario, 128, None, None, ok=False)
    missing = _m(scenario, 256, 0.01, None)  # no latency: cannot be placed
    front = pareto_front([a, b, c, d, failed, missing], (ENERGY_KEY, LAT))
    assert front == [d, b, a]  # least energy first; the very objects given
    assert c not in front and failed not in front and missing not in front


def test_front_with_slo_is_feasible_only(scenario: Scenario) -> None:
    ms = [_m(scenario, 8, 0.5, 0.01), _m(scenario, 16, 0.3, 0.02), _m(scenario, 64, 0.1, 0.08)]
    slo = SLO.parse("tpot:p90<=50ms")
    front = pareto_front(ms, (ENERGY_KEY, LAT), slo=slo)
    assert [m.config.max_num_seqs for m in front] == [16, 8]
    assert all(meets_slo(m, slo) for m in front)


def test_front_on_dataframe_returns_rows(scenario: Scenario) -> None:
    ms = [_m(scenario, 8, 0.5, 0.01), _m(scenario, 16, 0.6, 0.02), _m(scenario, 64, 0.1, 0.08)]
    df = to_frame(ms)
    out = pareto_front(df, (ENERGY_KEY, LAT))
    assert isinstance(out, pd.DataFrame)
    assert list(out["max_num_seqs"]) == [64, 8]


def test_duplicates_both_stay_and_mask_handles_none() -> None:
    assert pareto_mask([(1, 1), (1, 1), (2, 2), None]) == [True, True, False, False]


def test_slo_violations_and_constraints(scenario: Scenario) -> None:
    slo = SLO.parse("tpot:p90<=50ms,ttft:p99<=1s")
    m = _m(scenario, 8, 0.5, 0.07, ttft_p99_s=0.4)
    cons = constraint_values(m, slo)
    assert list(cons) == ["tpot_p90_s", "ttft_p99_s"]
    assert cons["tpot_p90_s"] == pytest.approx(0.02)
    assert cons["ttft_p99_s"] == pytest.approx(-0.6)
    assert slo_violations(m, slo) == {"tpot_p90_s": pytest.approx(0.02)}
    assert not meets_slo(m, slo)
    no_ttft = _m(scenario, 8, 0.5, 0.01)
    assert slo_violations(no_ttft, slo) == {"ttft_p99_s": math.inf}  # unknown is never assumed met
    assert slo_violations(_m(scenario, 8, None, None, ok=False), slo) == {"status": math.inf}


def test_attainment_is_a_constraint(scenario: Scenario) -> None:
    slo = SLO.parse("tpot:p90<=50ms,attainment>=0.9")
    good = _m(scenario, 8, 0.5, 0.01, slo_attainment=0.95)
    bad = _m(scenario, 8, 0.5, 0.01, slo_attainment=0.8)
    assert meets_slo(good, slo)
    assert slo_violations(bad, slo) == {"slo_attainment": pytest.approx(0.1)}


def test_pick_best_least_energy_then_latency(scenario: Scenario) -> None:
    slo = SLO.parse("tpot:p90<=50ms")
    a = _m(scenario, 8, 0.2, 0.04)
    b = _m(scenario, 16, 0.2, 0.03)  # same energy, lower latency: wins the tie
    c = _m(scenario, 64, 0.1, 0.08)  # less energy but misses the SLO
    assert pick_best([a, b, c], slo) is b
    assert pick_best([c], slo) is None
    assert pick_best([], slo) is None
    row = pick_best(to_frame([a, b, c]), slo)
    assert row is not None and row["max_num_seqs"] == 16


def test_hypervolume_2d() -> None:
    assert hypervolume_2d([(1, 3), (2, 1)], (4, 4)) == pytest.approx(7.0)
    assert hypervolume_2d([(1, 3), (2, 1), (3, 3)], (4, 4)) == pytest.approx(7.0)  # dominated adds nothing
    assert hypervolume_2d([(5, 1), (1, 5)], (4, 4)) == 0.0  # outside the reference
    assert hypervolume_2d([], (1, 1)) == 0.0


def test_slo_headroom_is_the_closest_targets_relative_slack() -> None:
    slo = SLO.parse("ttft:p99<=2s,tpot:p90<=50ms")
    assert slo_headroom({"status": "ok", "ttft_p99_s": 1.0, "tpot_p90_s": 0.045}, slo) == pytest.approx(0.1)
    assert slo_headroom({"status": "ok", "ttft_p99_s": 2.2, "tpot_p90_s": 0.01}, slo) == pytest.approx(-0.1)
    assert slo_headroom({"status": "ok", "ttft_p99_s": 1.0}, slo) == -math.inf  # tpot not measured
    assert slo_headroom({"status": "failed", "ttft_p99_s": 1.0, "tpot_p90_s": 0.01}, slo) == -math.inf
