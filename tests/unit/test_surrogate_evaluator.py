"""SurrogateEvaluator and `recommender train`: the Evaluator contract, provenance, intervals, OOD, the CLI."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from recommender.config import Hardware, Scenario, ServingConfig
from recommender.evaluators.surrogate import SurrogateEvaluator
from recommender.presets import get_preset
from recommender.surrogate import persistence
from recommender.surrogate.build import train_surrogate
from recommender.surrogate.targets import METRICS

pytestmark = pytest.mark.unit
PUBLIC = Path(__file__).parent / "data" / "public"
SHIPPED = Path(__file__).resolve().parents[2] / "models"


@functools.lru_cache(maxsize=1)
def _evaluator() -> SurrogateEvaluator:
    result = train_surrogate([], ("mlenergy-v3", "llm-inference-bench", "splitwise"), PUBLIC, out=None,
                             params={"n_estimators": 15})
    return SurrogateEvaluator(result.surrogate)


def _scenario(gpu: str = "H100", count: int = 1) -> Scenario:
    return Scenario(model="Llama-3.1-8B", hardware=Hardware(gpu=gpu, count=count),
                    workload=get_preset("mlenergy-chat", num_requests=512))


def test_prediction_has_provenance_metrics_and_intervals() -> None:
    m = _evaluator().evaluate(ServingConfig(max_num_seqs=64), _scenario())
    assert m.ok and m.provenance == "predicted" and m.source.startswith("surrogate:")
    assert m.metrics is not None
    for key in METRICS:
        v = m.metrics.get(key)
        assert v is not None and v > 0, key
        lo, hi = m.intervals[key]
        assert lo <= v <= hi, key
    met = m.metrics
    assert met.energy_per_output_token_j == pytest.approx(met.avg_power_w / met.throughput_output_tok_s)
    assert m.metrics.itl_p50_s <= m.metrics.itl_p90_s <= m.metrics.itl_p99_s  # type: ignore[operator]


def test_upper_bounds_and_intervals_follow_the_rows_regime() -> None:
    import dataclasses

    from recommender.surrogate.predictor import GUARD_QUANTILE, GUARDED_METRICS

    g = f"{GUARD_QUANTILE:g}"  # the guard's quantile key; the others must not be read for the guard
    q = {"continuous": {"itl_p50_s": {"0.1": -0.1, g: 0.1, "0.8": 0.15, "0.9": 0.2}},
         "static": {"itl_p50_s": {"0.1": -0.5, g: 0.7, "0.8": 0.8, "0.9": 0.9},
                    "tpot_p50_s": {"0.1": -0.2, g: -0.05, "0.9": 0.1}}}
    sur = dataclasses.replace(_evaluator().surrogate, regime_quantiles=q)
    steady = Scenario(model="Llama-3.1-8B", hardware=Hardware(gpu="H100", count=1),
                      workload=get_preset("mlenergy-chat", num_requests=512))  # 8 waves of 64: continuous
    once = Scenario(model="Llama-3.1-8B", hardware=Hardware(gpu="H100", count=1),
                    workload=get_preset("mlenergy-chat", num_requests=32))  # one batch of 32: static
    cfg = [ServingConfig(max_num_seqs=64)]
    for scen, (lo, guard, hi) in ((steady, (-0.1, 0.1, 0.2)), (once, (-0.5, 0.7, 0.9))):
        f = sur.predict_frame(cfg, scen).iloc[0]
        if bool(f["ood"]):
            lo, hi = 2 * lo, 2 * hi  # the interval (not the guard) widens out of distribution
        v = f["itl_p50_s"]
        assert f["itl_p50_s_low"] == pytest.approx(v * np.exp(lo))
        assert f["itl_p50_s_high"] == pytest.approx(v * np.exp(hi))
        assert f["itl_p50_s_upper"] == pytest.approx(v * np.exp(guard))
    f = sur.predict_frame(cfg, once).iloc[0]
    assert f["tpot_p50_s_upper"] == pytest.approx(f["tpot_p50_s"])  # a negative quantile never lowers the bound
    assert all(f"{m}_upper" in f.index for m in GUARDED_METRICS)
    assert "energy_per_output_token_j_upper" not in f.index


def test_predict_frame_shares_features_across_gpu_knobs_exactly() -> None:
    import pandas as pd

    sur, sc = _evaluator().surrogate, _scenario(count=2)
    configs = [ServingConfig(max_num_seqs=s, tensor_parallel_size=tp, gpu_clock_mhz=c, power_limit_w=w)
               for s in (8, 64, 256) for tp in (1, 2) for c in (None, 1410, 1980) for w in (None, 400.0)]
    fast = sur.predict_frame(configs, sc)
    full = sur.predict_features(sur.features(sc, configs))  # every row featurized on its own
    pd.testing.assert_frame_equal(fast, full)
    assert set(fast["provenance"]) == {"predicted", "modeled"}
    knobs = pd.DataFrame([c.model_dump() for c in configs])  # the DataFrame path recommend uses
    pd.testing.assert_frame_equal(sur.predict_frame(knobs, sc), full)


def test_locked_clock_is_modeled() -> None:
    ev, sc = _evaluator(), _scenario()
    base = ev.evaluate(ServingConfig(max_num_seqs=64), sc)
    slow = ev.evaluate(ServingConfig(max_num_seqs=64, gpu_clock_mhz=1410), sc)
    assert slow.provenance == "modeled" and "DVFS" in slow.notes
    assert slow.metrics.avg_power_w < base.metrics.avg_power_w  # type: ignore[union-attr]
    lo, hi = slow.intervals["avg_power_w"]
    blo, bhi = base.intervals["avg_power_w"]
    assert hi / lo > bhi / blo  # the analytical step widens the interval


def test_infeasible_config_is_a_failed_measurement() -> None:
    m = _evaluator().evaluate(ServingConfig(tensor_parallel_size=2), _scenario(count=1))
    assert m.status == "failed" and m.failure_reason == "infeasible" and m.metrics is None
    assert "GPUs" in m.failure_detail


def test_out_of_distribution_query_says_so() -> None:
    m = _evaluator().evaluate(ServingConfig(max_num_seqs=64), _scenario(gpu="B200"))
    assert m.ok and "outside the training data" in m.notes and "gpu_" in m.notes


def test_evaluate_many_keeps_order_and_matches_evaluate() -> None:
    ev, sc = _evaluator(), _scenario(count=2)
    configs = [ServingConfig(max_num_seqs=s) for s in (8, 256)] + [ServingConfig(tensor_parallel_size=4)]
    many = ev.evaluate_many(configs, sc)
    assert [m.config for m in many] == configs
    assert many[2].status == "failed"
    one = ev.evaluate(configs[1], sc)
    assert many[1].metrics == one.metrics


def test_predict_frame_is_vectorized() -> None:
    ev, sc = _evaluator(), _scenario(count=8)
    configs = [ServingConfig(max_num_seqs=s, tensor_parallel_size=tp, gpu_clock_mhz=c)
               for s in range(8, 520, 8) for tp in (1, 2, 4, 8) for c in (None, 1500)]
    f = ev.predict_frame(configs, sc)
    assert len(f) == len(configs)
    assert set(f["provenance"]) == {"predicted", "modeled"}
    assert np.isfinite(f["energy_per_output_token_j"]).all()


def test_train_cli_saves_a_loadable_model(tmp_path: Path) -> None:
    from recommender.cli import main

    rc = main(["train", "--shared-data", str(PUBLIC), "--out", str(tmp_path), "--name", "cli", "--no-validate"])
    assert rc == 0
    ev = SurrogateEvaluator.from_dir(tmp_path, "cli")
    assert ev.evaluate(ServingConfig(max_num_seqs=32), _scenario()).ok


def test_train_cli_rejects_unknown_public_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from recommender.cli import main

    assert main(["train", "--public", "mlenergy-v9", "--out", str(tmp_path)]) == 2
    assert "--public" in capsys.readouterr().err


@pytest.mark.skipif(not (SHIPPED / "surrogate-v1.card.json").exists(), reason="no shipped model yet")
def test_shipped_model_loads_and_predicts_plausibly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(persistence.ENV_MODEL_DIR, raising=False)
    ev = SurrogateEvaluator.load_default()
    m = ev.evaluate(ServingConfig(max_num_seqs=256), _scenario())
    assert m.ok and m.metrics is not None
    # ML.ENERGY v3 measured 0.077 J/token and 26 ms median ITL for Llama-3.1-8B on one H100 at 256 sequences
    assert 0.04 < m.metrics.energy_per_output_token_j < 0.15  # type: ignore[operator]
    assert 0.012 < m.metrics.itl_p50_s < 0.05  # type: ignore[operator]
