"""The decision bounds of ``benchmarks/surrogate_lomo.py``: which uniform guard meets the regret targets, and how
often a threshold rule's first pick is the best config of a sweep, on held-out predictions we control."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from tests.unit.benchmark_scripts import load_benchmark

pytestmark = pytest.mark.unit
SEQS = (8, 16, 32, 64, 96, 128)


@pytest.fixture(scope="module")
def lomo() -> ModuleType:
    return load_benchmark("surrogate_lomo")


def _sweep(model: str, itl_p50_ms: tuple[float, ...], bias: float) -> pd.DataFrame:
    """One sweep: energy falls and ITL rises with max_num_seqs; predictions are the truth times ``bias`` for the
    latencies (energy exact)."""
    itl = np.array(itl_p50_ms) / 1e3
    seqs = SEQS[:len(itl)]
    energy = 1.0 / np.array(seqs, float) ** 0.6
    return pd.DataFrame({"model": model, "workload": "chat", "tensor_parallel_size": 1.0, "precision_fp8": 0.0,
                         "max_num_seqs": seqs, "energy_per_output_token_j": energy,
                         "energy_per_output_token_j_pred": energy, "itl_p50_s": itl, "itl_p50_s_pred": itl * bias,
                         "itl_p99_s": itl * 3, "itl_p99_s_pred": itl * 3 * bias})


def test_an_exact_model_meets_the_targets_without_a_guard_and_loses_them_with_a_wide_one(lomo: ModuleType) -> None:
    cv = pd.concat([_sweep("a", (10, 14, 20, 24, 45, 60), 1.0), _sweep("b", (12, 20, 24, 40, 48, 70), 1.0)],
                   ignore_index=True)
    fr = lomo.guard_frontier(cv, guards=(0.0, 0.3))
    at = fr.set_index(["guard_log", "slo_ms"])
    assert at.loc[(0.0, 25.0), "median_regret_pct"] == 0 and at.loc[(0.0, 25.0), "picks_violating_over_10pct"] == 0
    assert bool(fr.loc[fr["guard_log"] == 0.0, "meets"].all())
    # a 35% guard steps below the best feasible config at 25 ms: regret, so the targets are not met
    assert at.loc[(0.3, 25.0), "median_regret_pct"] > 5
    assert not bool(fr.loc[fr["guard_log"] == 0.3, "meets"].any())


def test_an_optimistic_model_violates_the_slo_until_the_guard_covers_its_bias(lomo: ModuleType) -> None:
    cv = _sweep("scout-like", (10, 14, 20, 24, 30, 60), 0.7)  # predicted 30% fast
    fr = lomo.guard_frontier(cv, guards=(0.0, 0.4)).set_index(["guard_log", "slo_ms"])
    assert fr.loc[(0.0, 25.0), "picks_violating_over_10pct"] == 1  # picks 96 seqs (30 ms measured)
    assert fr.loc[(0.0, 25.0), "violating_models"] == ["scout-like"]
    assert fr.loc[(0.4, 25.0), "picks_violating_over_10pct"] == 0


def test_first_pick_hits_count_sweeps_where_the_threshold_lands_on_the_boundary(lomo: ModuleType) -> None:
    exact = _sweep("a", (10, 14, 20, 24, 45), 1.0)  # 5 rows: a sweep; the median ITL p99 is the 20 ms row's
    pessimistic = _sweep("b", (10, 14, 20, 24, 45), 1.3)
    short = _sweep("c", (10, 14, 20, 24), 1.0)  # fewer rows than a sweep needs: not counted
    cv = pd.concat([exact, pessimistic, short], ignore_index=True)
    hits = lomo.sweep_first_pick_hits(cv, guards=(0.0, -0.3)).set_index("guard_log")
    assert hits.loc[0.0, "sweeps"] == 2
    assert hits.loc[0.0, "first_pick_hits"] == 1  # only the exact sweep's first pick is its boundary config
    assert hits.loc[-0.3, "first_pick_hits"] == 1  # an optimistic rule finds b's boundary and overshoots a's
