"""The search loop on a synthetic replay table: budget, constraints, failures, duplicates, warm start, resume."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from recommender.config import Hardware, Scenario, ServingConfig
from recommender.errors import InputError
from recommender.evaluators.base import Evaluator
from recommender.evaluators.replay import ReplayEvaluator
from recommender.measurement import Measurement, Metrics
from recommender.pareto import ENERGY_KEY, meets_slo
from recommender.presets import fixed
from recommender.search import config_key, run_study
from recommender.search.storage import open_storage

pytestmark = pytest.mark.unit
SLO_TEXT = "tpot:p90<=60ms,ttft:p99<=300ms"


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Scenario(model="Llama-3.1-8B", hardware=Hardware(gpu="H100", count=1), workload=fixed(num_requests=64))


def synth_table(scenario: Scenario) -> list[Measurement]:
    """36 configs: energy falls with batch size, TPOT rises; the SLO cuts off the large batches."""
    rows = []
    for seqs in (8, 16, 32, 64, 128, 256):
        for btok in (2048, 4096, 8192):
            for chunk in (True, False):
                e = 0.05 + 1.0 / seqs + (0.0 if chunk else 0.01) + 0.002 * btok / 8192
                tpot = 0.01 + 0.0004 * seqs + (0.0 if chunk else 0.005)
                ttft = 0.05 + 0.00002 * btok + 0.001 * seqs
                rows.append(Measurement(
                    scenario=scenario, provenance="modeled",
                    config=ServingConfig(max_num_seqs=seqs, max_num_batched_tokens=btok, enable_chunked_prefill=chunk),
                    metrics=Metrics(energy_per_output_token_j=e, tpot_p90_s=tpot, ttft_p99_s=ttft),
                ))
    return rows


class CountingReplay(ReplayEvaluator):
    """Replay that records every config it was asked for, and the batches given to evaluate_many."""

    def __init__(self, *a: object, **k: object) -> None:
        super().__init__(*a, **k)  # type: ignore[arg-type]
        self.calls: list[ServingConfig] = []
        self.batches: list[list[ServingConfig]] = []

    def evaluate(self, config: ServingConfig, scenario: Scenario) -> Measurement:
        self.calls.append(config)
        return super().evaluate(config, scenario)

    def evaluate_many(self, configs: Sequence[ServingConfig], scenario: Scenario) -> list[Measurement]:
        self.batches.append(list(configs))
        return super().evaluate_many(configs, scenario)


def _slo():
    from recommender.slo import SLO

    return SLO.parse(SLO_TEXT)


def test_budget_constraints_and_front(scenario: Scenario) -> None:
    ev = CountingReplay(synth_table(scenario))
    r = run_study(scenario, ev.space(), _slo(), ev, 15, storage="memory", check_feasible=False, save_measurements=False)
    assert r.evaluations == 15 and len(ev.calls) == 15 and r.stop_reason == "budget"
    assert len({config_key(c) for c in ev.calls}) == 15  # nothing evaluated twice
    assert r.objective == "ttft_p99_s"  # tightest target: highest percentile
    assert r.pareto and all(meets_slo(m, r.slo) for m in r.pareto)
    assert r.best is not None and r.best.value(ENERGY_KEY) == min(m.value(ENERGY_KEY) for m in r.pareto)
    infeasible = [m for m in r.measurements if not meets_slo(m, r.slo)]
    assert not {m.id for m in infeasible} & {m.id for m in r.pareto}
    assert list(r.summary()["config"]) == [m.config.short() for m in r.pareto]


def test_slo_targets_are_constraints_not_penalties(scenario: Scenario, tmp_path: Path) -> None:
    ev = ReplayEvaluator(synth_table(scenario))
    url = f"sqlite:///{tmp_path / 's.db'}"
    r = run_study(scenario, ev.space(), _slo(), ev, 12, storage=url, check_feasible=False, save_measurements=False,
                  study_name="c")
    study = optuna.load_study(study_name="c", storage=url)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) >= 12
    for t in done:
        m = next(m for m in r.measurements if m.id == t.user_attrs["measurement_id"])
        assert t.values == [m.value(ENERGY_KEY), m.value("ttft_p99_s")]  # true values, never a penalty
        assert set(t.constraints) == {"tpot_p90_s", "ttft_p99_s"}
        assert t.constraints["tpot_p90_s"] == pytest.approx(m.value("tpot_p90_s") - 0.06)
        assert t.user_attrs["meets_slo"] == all(c <= 0 for c in t.constraints.values())
    assert study.metric_names == [ENERGY_KEY, "ttft_p99_s"]


def test_infeasible_configs_never_reach_the_evaluator(scenario: Scenario) -> None:
    ev = CountingReplay(synth_table(scenario))

    class Fz:
        def __init__(self, ok: bool) -> None:
            self.ok, self.reasons = ok, () if ok else ("no chunked prefill in this test",)

    r = run_study(scenario, ev.space(), _slo(), ev, 10, storage="memory", save_measurements=False,
                  feasibility=lambda c, s: Fz(c.enable_chunked_prefill))
    assert r.evaluations == 10 and len(ev.calls) == 10
    assert all(c.enable_chunked_prefill for c in ev.calls)
    assert r.infeasible >= 1  # proposed, rejected, not counted


def test_failures_are_failed_trials_and_the_study_goes_on(scenario: Scenario) -> None:
    table = [m for m in synth_table(scenario) if m.config.max_num_seqs != 256]  # 256 -> not_in_table
    ev = CountingReplay(table)
    space = ReplayEvaluator(synth_table(scenario)).space()
    storage = optuna.storages.InMemoryStorage()
    r = run_study(scenario, space, _slo(), ev, 36, storage=storage, check_feasible=False, save_measurements=False,
                  study_name="f")
    assert r.evaluations == 36 and r.failed == 6
    study = optuna.load_study(study_name="f", storage=storage)
    failed = [t for t in study.trials if t.state == TrialState.FAIL and t.user_attrs["kind"] == "evaluated"]
    assert len(failed) == 6
    assert {t.user_attrs["failure_reason"] for t in failed} == {"not_in_table"}
    assert all(t.user_attrs["kind"] == "evaluated" and t.user_attrs["config"]["max_num_seqs"] == 256 for t in failed)
    assert all(m.ok for m in r.pareto)


def test_small_space_is_exhausted_not_looped(scenario: Scenario) -> None:
    ev = CountingReplay(synth_table(scenario))
    r = run_study(scenario, ev.space(), _slo(), ev, 100, storage="memory", check_feasible=False,
                  save_measurements=False, sampler="random")
    assert r.stop_reason == "exhausted"
    assert r.evaluations == 36 and len(ev.calls) == 36


def test_missing_metric_fails_the_trial(scenario: Scenario) -> None:
    ev = ReplayEvaluator(synth_table(scenario))
    from recommender.slo import SLO

    r = run_study(scenario, ev.space(), SLO.parse("itl:p99<=50ms"), ev, 3, storage="memory", check_feasible=False,
                  save_measurements=False)
    assert r.failed == 3 and r.best is None and r.pareto == []


def test_batches_are_grouped_by_engine_key(scenario: Scenario) -> None:
    configs = [ServingConfig(max_num_seqs=s, gpu_clock_mhz=clk) for s in (32, 64) for clk in (None, 1410, 1755, 1980)]
    table = [Measurement(scenario=scenario, config=c, provenance="modeled", metrics=Metrics(
        energy_per_output_token_j=1.0 / c.max_num_seqs + (c.gpu_clock_mhz or 2000) / 1e5, tpot_p90_s=0.01,
        ttft_p99_s=0.1)) for c in configs]
    ev = CountingReplay(table)
    run_study(scenario, ev.space(), _slo(), ev, 8, storage="memory", check_feasible=False, save_measurements=False,
              batch_size=4)
    for batch in ev.batches:
        keys = [c.engine_key() for c in batch]
        assert keys == sorted(keys, key=lambda k: [keys.index(x) for x in keys if x == k][0])  # contiguous groups
        firsts = [keys.index(k) for k in keys]
        assert firsts == sorted(firsts)


def test_warm_start_proposes_the_predicted_best_first(scenario: Scenario) -> None:
    table = synth_table(scenario)
    ev = CountingReplay(table)
    predictor = ReplayEvaluator(table)
    predictor.name = "surrogate"
    storage = optuna.storages.InMemoryStorage()
    r = run_study(scenario, ev.space(), _slo(), ev, 5, storage=storage, study_name="w", check_feasible=False,
                  save_measurements=False, warm_start=predictor, warm_start_k=3)
    feasible = sorted((m for m in table if meets_slo(m, r.slo)), key=lambda m: m.value(ENERGY_KEY))
    first = [config_key(c) for c in ev.calls[:3]]  # the prior proposes the first warm_start_k evaluations
    assert config_key(feasible[0].config) in first  # an exact predictor: its best is found among them
    assert r.best is not None and config_key(r.best.config) == config_key(feasible[0].config)
    trials = optuna.load_study(study_name="w", storage=storage).trials
    assert all(t.user_attrs["proposed_by"] == "prior:surrogate" for t in trials[:3])


def test_rank_predictions_uses_interval_upper_end(scenario: Scenario) -> None:
    from recommender.search.warm_start import rank_predictions

    table = synth_table(scenario)
    best = min((m for m in table if meets_slo(m, _slo())), key=lambda m: m.value(ENERGY_KEY))
    risky = best.model_copy(update={"intervals": {"tpot_p90_s": (0.01, 0.5)}})  # may well miss the SLO
    ranked = rank_predictions([risky if m is best else m for m in table], _slo(), "ttft_p99_s", k=3)
    assert len(ranked) == 3 and risky not in ranked


def test_resume_runs_only_the_remainder(scenario: Scenario, tmp_path: Path) -> None:
    ev = CountingReplay(synth_table(scenario))
    kw = dict(check_feasible=False, runs_root=tmp_path, heartbeat_interval_s=1)
    r1 = run_study(scenario, ev.space(), _slo(), ev, 5, **kw)
    first = {m.id for m in r1.measurements}
    r2 = run_study(scenario, ev.space(), _slo(), ev, 9, **kw)
    assert r2.study_name == r1.study_name and r2.run_dir == r1.run_dir
    assert r2.evaluations == 9 and len(ev.calls) == 9
    assert first <= {m.id for m in r2.measurements}
    saved = list((r2.run_dir / "measurements").rglob("*.json"))
    assert len(saved) == 9
    r3 = run_study(scenario, ev.space(), _slo(), ev, 9, **kw)
    assert r3.evaluations == 9 and len(ev.calls) == 9  # nothing left to do


def test_interrupt_requeues_held_trial(scenario: Scenario, tmp_path: Path) -> None:
    class Boom(ReplayEvaluator):
        n = 0

        def evaluate(self, config: ServingConfig, scenario: Scenario) -> Measurement:
            Boom.n += 1
            if Boom.n == 3:
                raise KeyboardInterrupt
            return super().evaluate(config, scenario)

    ev = Boom(synth_table(scenario))
    kw = dict(check_feasible=False, runs_root=tmp_path, heartbeat_interval_s=1, save_measurements=False)
    with pytest.raises(KeyboardInterrupt):
        run_study(scenario, ev.space(), _slo(), ev, 6, **kw)
    r = run_study(scenario, ev.space(), _slo(), ev, 6, **kw)
    study = optuna.load_study(study_name=r.study_name, storage=r.storage_url)
    interrupted = [t for t in study.trials if t.user_attrs.get("kind") == "interrupted"]
    assert len(interrupted) == 1
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == interrupted[0].number]
    assert retried and retried[0].state == TrialState.COMPLETE  # the same config, run on resume
    assert r.evaluations == 6


def test_study_made_for_other_settings_is_refused(scenario: Scenario, tmp_path: Path) -> None:
    from recommender.slo import SLO

    ev = ReplayEvaluator(synth_table(scenario))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    run_study(scenario, ev.space(), _slo(), ev, 2, storage=url, study_name="x", check_feasible=False,
              save_measurements=False)
    with pytest.raises(InputError, match="made for"):
        run_study(scenario, ev.space(), SLO.parse("tpot:p90<=10ms"), ev, 2, storage=url, study_name="x",
                  check_feasible=False, save_measurements=False)


def test_bad_arguments(scenario: Scenario) -> None:
    ev = ReplayEvaluator(synth_table(scenario))
    with pytest.raises(InputError, match="n-evals"):
        run_study(scenario, ev.space(), _slo(), ev, 0, storage="memory")
    with pytest.raises(InputError, match="objective"):
        run_study(scenario, ev.space(), _slo(), ev, 1, storage="memory", objective="ttft_p98_s")
    with pytest.raises(InputError, match="storage"):
        run_study(scenario, ev.space(), _slo(), ev, 1, storage="not-a-url")


@pytest.mark.parametrize("sampler", ["nsga2", "random"])
def test_other_samplers(scenario: Scenario, sampler: str) -> None:
    ev = CountingReplay(synth_table(scenario))
    r = run_study(scenario, ev.space(), _slo(), ev, 8, storage="memory", check_feasible=False,
                  save_measurements=False, sampler=sampler)
    assert r.evaluations == 8 and len({config_key(c) for c in ev.calls}) == 8


def test_memory_storage_has_no_heartbeat() -> None:
    assert not hasattr(open_storage("memory"), "record_heartbeat")


class _Unused(Evaluator):
    def evaluate(self, config: ServingConfig, scenario: Scenario) -> Measurement:  # pragma: no cover
        raise AssertionError


def test_infeasible_never_on_reported_front(scenario: Scenario) -> None:
    from recommender.pareto import pareto_front

    ev = ReplayEvaluator(synth_table(scenario))
    r = run_study(scenario, ev.space(), _slo(), ev, 36, storage="memory", check_feasible=False,
                  save_measurements=False, sampler="random")
    unconstrained = pareto_front(r.measurements, r.objectives)
    assert any(not meets_slo(m, r.slo) for m in unconstrained)  # the SLO filter matters here
    assert r.pareto and all(meets_slo(m, r.slo) for m in r.pareto)
    assert all(m.config.max_num_seqs < 256 for m in r.pareto)
    assert r.summary()["meets_slo"].all()


def test_default_feasibility_check_with_a_knob_space() -> None:
    from recommender.slo import SLO
    from recommender.space import load_space

    big = Scenario(model="Llama-3.1-70B", hardware=Hardware(gpu="H100", count=1), workload=fixed(num_requests=64))
    ev = CountingReplay([Measurement(scenario=big, config=c, provenance="modeled",
                                     metrics=Metrics(energy_per_output_token_j=1.0, tpot_p90_s=0.01, ttft_p99_s=0.1))
                         for c in load_space("smoke").grid()])
    r = run_study(big, "smoke", SLO.parse("tpot:p90<=50ms"), ev, 5, storage="memory", save_measurements=False)
    assert ev.calls == [] and r.evaluations == 0  # 140 GB of weights never fit one H100: nothing is run
    assert r.stop_reason == "exhausted" and r.infeasible >= 1


def test_a_trial_finished_elsewhere_while_held_is_let_go(scenario: Scenario) -> None:
    """Another worker may fail a held trial (stale heartbeat) or, on SQLite, get the same queued trial: the
    worker logs it and goes on instead of crashing."""
    storage = optuna.storages.InMemoryStorage()

    class Snatch(CountingReplay):
        def evaluate_many(self, configs: Sequence[ServingConfig], scenario: Scenario) -> list[Measurement]:
            out = super().evaluate_many(configs, scenario)
            if len(self.batches) == 2:  # the second evaluation: someone else finishes the running trial
                other = optuna.load_study(study_name="s", storage=storage)
                running = [t for t in other.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
                other.tell(running[0].number, state=TrialState.FAIL)
            return out

    ev = Snatch(synth_table(scenario))
    r = run_study(scenario, ev.space(), _slo(), ev, 4, storage=storage, study_name="s", check_feasible=False,
                  save_measurements=False)
    assert r.evaluations == 4 and len(ev.calls) == 5  # the snatched evaluation did not count; a fifth ran
