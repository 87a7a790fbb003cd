"""The recommend path over a deterministic stand-in predictor: pick, Pareto set, baselines, export."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from recommender import api
from recommender.errors import InputError
from recommender.export import export, k8s_manifest, vllm_yaml
from recommender.recommend import candidate_frame
from recommender.space import load_space

pytestmark = pytest.mark.unit


class StubPredictor:
    """Energy falls and latency rises with batch size; fp8 saves 20% energy; TP costs energy, cuts latency."""

    source = "stub"

    def predict_frame(self, cands: pd.DataFrame, scenario: object) -> pd.DataFrame:
        b = cands["max_num_seqs"].to_numpy(float)
        tp = cands["tensor_parallel_size"].to_numpy(float) * cands["replicas"].to_numpy(float)
        fp8 = (cands["precision"] == "fp8").to_numpy()
        e = 0.5 / np.sqrt(b) * tp * np.where(fp8, 0.8, 1.0)
        tpot = 0.01 + 0.0001 * b / tp
        out = cands.copy()
        out["energy_per_output_token_j"] = e
        out["energy_per_output_token_j_low"] = e * 0.9
        out["energy_per_output_token_j_high"] = e * 1.1
        for p, f in (("p50", 1.0), ("p90", 1.2), ("p99", 1.5)):
            out[f"tpot_{p}_s"] = tpot * f
            out[f"itl_{p}_s"] = tpot * f
            out[f"ttft_{p}_s"] = 0.1 * f + 0.0005 * b
        out["tpot_p90_s_high"] = out["tpot_p90_s"] * 1.3
        out["throughput_output_tok_s"] = b / tpot
        out["provenance"] = "predicted"
        out["ood"] = False
        return out


@pytest.fixture()
def scen():  # type: ignore[no-untyped-def]
    return api.scenario("Llama-3.1-8B", "H100", 2, "azure-conv-2023")


def test_candidates_are_feasible_and_include_default(scen) -> None:  # type: ignore[no-untyped-def]
    cands = candidate_frame(load_space("recommend"), scen)
    assert (cands["tensor_parallel_size"] * cands["replicas"] <= 2).all()
    assert cands["is_default"].sum() == 1
    d = cands[cands["is_default"]].iloc[0]
    assert d["max_num_seqs"] == 1024 and d["max_num_batched_tokens"] == 8192
    assert len(cands) > 1000


def test_pick_is_least_energy_meeting_slo(scen) -> None:  # type: ignore[no-untyped-def]
    rec, frame = api.explore(scen, "tpot:p90<=40ms,ttft:p99<=2s", surrogate=StubPredictor())
    assert rec.chosen is not None
    ok = frame[frame["meets_slo"]]
    assert rec.chosen.value("energy_per_output_token_j") == pytest.approx(ok["energy_per_output_token_j"].min())
    assert rec.chosen.value("tpot_p90_s") <= 0.040
    assert rec.chosen.config.precision == "fp8"
    # every Pareto member meets the SLO and none dominates another
    pts = [(m.value("energy_per_output_token_j"), m.value(rec.objective)) for m in rec.pareto]
    for a in pts:
        assert not any(b[0] <= a[0] and b[1] <= a[1] and b != a for b in pts)
    assert rec.default is not None and rec.fastest is not None
    # vLLM's default (1024 seqs) spends less energy here but misses the TPOT target: saving is negative
    assert rec.savings_vs_default_frac < 0 and "misses the SLO on tpot_p90_s" in rec.default.notes
    loose, _ = api.explore(scen, "tpot:p90<=200ms", surrogate=StubPredictor())
    assert loose.savings_vs_default_frac == pytest.approx(0.2)  # same batch, fp8 instead of bf16
    assert loose.default.notes == ""
    assert rec.chosen.intervals["energy_per_output_token_j"][0] < rec.chosen.value("energy_per_output_token_j")


def test_upper_risk_is_more_cautious(scen) -> None:  # type: ignore[no-untyped-def]
    point, _ = api.explore(scen, "tpot:p90<=40ms", surrogate=StubPredictor())
    upper, _ = api.explore(scen, "tpot:p90<=40ms", surrogate=StubPredictor(), risk="upper")
    assert upper.chosen.value("tpot_p90_s") * 1.3 <= 0.040 + 1e-12
    assert upper.chosen.value("energy_per_output_token_j") >= point.chosen.value("energy_per_output_token_j")


class GuardedStub(StubPredictor):
    """The stub plus a one-sided upper bound 20% above every latency (as the surrogate serves it)."""

    def predict_frame(self, cands: pd.DataFrame, scenario: object) -> pd.DataFrame:
        out = super().predict_frame(cands, scenario)
        for m in ("tpot", "itl", "ttft"):
            for p in ("p50", "p90", "p99"):
                out[f"{m}_{p}_s_upper"] = out[f"{m}_{p}_s"] * 1.2
        return out


def test_guarded_default_requires_the_upper_bound_to_meet_the_slo(scen) -> None:  # type: ignore[no-untyped-def]
    guarded, frame = api.explore(scen, "tpot:p90<=40ms", surrogate=GuardedStub())
    point, _ = api.explore(scen, "tpot:p90<=40ms", surrogate=GuardedStub(), risk="point")
    assert frame["meets_slo"].tolist() == ((frame["tpot_p90_s_upper"] <= 0.040) & frame["sustains_load"]).tolist()
    assert guarded.chosen.value("tpot_p90_s") * 1.2 <= 0.040 + 1e-12
    assert point.chosen.value("tpot_p90_s") * 1.2 > 0.040  # the point rule's pick fails the guard
    assert guarded.chosen.value("energy_per_output_token_j") > point.chosen.value("energy_per_output_token_j")
    # a frame without bound columns (measured values) is judged on its values under every rule
    plain, _ = api.explore(scen, "tpot:p90<=40ms", surrogate=StubPredictor())
    assert plain.chosen.config == point.chosen.config


def test_slo_mask_rules() -> None:
    from recommender.recommend import slo_mask
    from recommender.slo import SLO

    slo = SLO.parse("itl:p50<=25ms")
    pred = pd.DataFrame({"itl_p50_s": [0.020, 0.024, np.nan], "itl_p50_s_upper": [0.024, 0.027, 0.01],
                         "itl_p50_s_high": [0.030, 0.030, 0.01]})
    assert slo_mask(pred, slo).tolist() == [True, False, True]  # guarded is the default
    assert slo_mask(pred, slo, "point").tolist() == [True, True, False]  # NaN never meets a target
    assert slo_mask(pred, slo, "upper").tolist() == [False, False, True]
    with pytest.raises(ValueError, match="risk"):
        slo_mask(pred, slo, "maybe")  # type: ignore[arg-type]


def test_default_config_note_uses_the_same_rule(scen) -> None:  # type: ignore[no-untyped-def]
    class Tight(GuardedStub):  # the default config meets 40 ms on its point value but not on its bound
        def predict_frame(self, cands: pd.DataFrame, scenario: object) -> pd.DataFrame:
            out = super().predict_frame(cands, scenario)
            d = out["is_default"].to_numpy()
            out.loc[d, "tpot_p90_s"], out.loc[d, "tpot_p90_s_upper"] = 0.039, 0.045
            return out

    guarded, _ = api.explore(scen, "tpot:p90<=40ms", surrogate=Tight())
    point, _ = api.explore(scen, "tpot:p90<=40ms", surrogate=Tight(), risk="point")
    assert "misses the SLO on tpot_p90_s" in guarded.default.notes
    assert "misses the SLO" not in point.default.notes


def test_impossible_slo_explains_why(scen) -> None:  # type: ignore[no-untyped-def]
    rec, _ = api.explore(scen, "tpot:p90<=1ms", surrogate=StubPredictor())
    assert rec.chosen is None and "tpot_p90_s is at best" in rec.reason
    with pytest.raises(InputError, match="nothing to export"):
        export(rec, "vllm")


def test_unsupported_metric_and_risk(scen) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="the surrogate predicts"):
        api.explore(scen, "e2e:p99<=10s", surrogate=StubPredictor())
    with pytest.raises(InputError) as ei:
        api.explore(scen, "tpot:p90<=40ms,attainment>=0.9", surrogate=StubPredictor())
    assert ei.value.field == "slo.attainment"
    with pytest.raises(InputError, match="'guarded'"):
        api.explore(scen, "tpot:p90<=40ms", surrogate=StubPredictor(), risk="maybe")


def test_pareto_sweep_matches_the_pairwise_definition() -> None:
    from recommender.pareto import pareto_mask, pareto_mask_2d

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 20, 300).astype(float), rng.integers(0, 20, 300).astype(float)  # many ties/duplicates
    x[:3], y[:3] = np.inf, [0.0, np.inf, np.inf]
    brute = [not any((x[j] <= x[i] and y[j] <= y[i]) and (x[j] < x[i] or y[j] < y[i]) for j in range(300))
             for i in range(300)]
    assert pareto_mask_2d(x, y).tolist() == brute
    assert pareto_mask(list(zip(x, y))) == brute
    assert pareto_mask([(1.0, 2.0), None, (1.0, 2.0), (2.0, 2.0)]) == [True, False, True, False]
    assert pareto_mask([(1.0, 2.0, 3.0), (1.0, 2.0, 2.0), (0.0, 5.0, 9.0)]) == [False, True, True]


def test_exports_round_trip(scen) -> None:  # type: ignore[no-untyped-def]
    from recommender.config import ServingConfig

    cfg = ServingConfig(tensor_parallel_size=2, max_num_seqs=128, precision="fp8", gpu_clock_mhz=1605,
                        power_limit_w=500, replicas=1)
    text = vllm_yaml(cfg, scen)
    body = yaml.safe_load(text)
    assert body["tensor-parallel-size"] == 2 and body["max-num-seqs"] == 128 and body["quantization"] == "fp8"
    assert "nvidia-smi --lock-gpu-clocks=1605,1605" in text and "gpu_clock" not in body
    docs = list(yaml.safe_load_all(k8s_manifest(cfg.model_copy(update={"replicas": 3}), scen, name="My LLM")))
    dep, svc = docs
    assert dep["kind"] == "Deployment" and dep["spec"]["replicas"] == 3 and dep["metadata"]["name"] == "my-llm"
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 2 and "--max-num-seqs" in c["args"]
    assert dep["spec"]["template"]["spec"]["initContainers"][0]["securityContext"]["privileged"] is True
    assert svc["kind"] == "Service"
    with pytest.raises(InputError, match="one of"):
        rec, _ = api.explore(scen, "tpot:p90<=40ms", surrogate=StubPredictor())
        export(rec, "helm")


def test_api_argument_errors() -> None:
    with pytest.raises(InputError, match="gpus"):
        api.scenario("Llama-3.1-8B", "H100", "two")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="did you mean"):
        api.scenario("Lama-3.1-8B")
    with pytest.raises(InputError, match="workload"):
        api.scenario("Llama-3.1-8B", workload={"input_tokens": 5})


def test_configs_that_cannot_sustain_the_offered_load_never_meet_the_slo(scen) -> None:  # type: ignore[no-untyped-def]
    class Slow(StubPredictor):
        def predict_frame(self, cands, scenario):  # type: ignore[no-untyped-def]
            out = super().predict_frame(cands, scenario)
            offered = scenario.workload.stats()["arrival_rate_rps"] * scenario.workload.stats()["output_tokens_mean"]
            out["throughput_output_tok_s"] = np.where(out["precision"] == "fp8", 0.5, 2.0) * offered
            return out

    rec, frame = api.explore(scen, "tpot:p90<=200ms", surrogate=Slow())
    assert not frame[frame["precision"] == "fp8"]["meets_slo"].any()
    assert rec.chosen is not None and rec.chosen.config.precision == "bf16"
