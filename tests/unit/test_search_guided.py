"""Prior-guided search: the corrected prior, its proposals, turns with the sampler, batches and resume."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import optuna
import pytest

from recommender.config import Hardware, Scenario, ServingConfig
from recommender.evaluators.replay import ReplayEvaluator
from recommender.measurement import Measurement, Metrics
from recommender.pareto import ENERGY_KEY, hypervolume_2d, meets_slo
from recommender.presets import fixed
from recommender.search import config_key, run_study
from recommender.search._prior_model import ResidualModel, hv_improvement
from recommender.search.guided import PriorGuide, plan_turns
from recommender.search.warm_start import rank_predictions
from recommender.slo import SLO

pytestmark = pytest.mark.unit
SLO_TEXT = "tpot:p90<=40ms,ttft:p99<=2s"
CLOCK_FRACTION = {None: 1.0, 1755: 0.9, 1410: 0.75}


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Scenario(model="Llama-3.1-8B", hardware=Hardware(gpu="H100", count=1), workload=fixed(num_requests=64))


def truth_table(scenario: Scenario) -> list[Measurement]:
    """132 configs: energy falls with the batch limit, TPOT rises with it and with lower clocks. The least
    energy under the SLO is seqs=96, btok=2048, chunked, unlocked."""
    rows = []
    for seqs in (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256):
        for btok in (2048, 8192):
            for chunk in (True, False):
                for clk, f in CLOCK_FRACTION.items():
                    slow = 1.0 if chunk else 1.1
                    rows.append(Measurement(
                        scenario=scenario, provenance="modeled",
                        config=ServingConfig(max_num_seqs=seqs, max_num_batched_tokens=btok,
                                             enable_chunked_prefill=chunk, gpu_clock_mhz=clk),
                        metrics=Metrics(energy_per_output_token_j=(0.04 + 1.0 / seqs) * slow * (1 + 0.1 * f)
                                        + 0.002 * btok / 8192,
                                        tpot_p90_s=(0.01 + 0.0003 * seqs) * slow / f,
                                        ttft_p99_s=0.05 + 0.00002 * btok + 0.001 * seqs)))
    return rows


def biased(table: Sequence[Measurement], tpot: float = 1.4, energy: float = 0.8) -> list[Measurement]:
    """A prior that is pessimistic about TPOT (x ``tpot``) and off in energy by a constant factor."""
    out = []
    for m in table:
        v = m.metrics.model_dump()  # type: ignore[union-attr]
        v.update(tpot_p90_s=v["tpot_p90_s"] * tpot, energy_per_output_token_j=v[ENERGY_KEY] * energy)
        out.append(m.model_copy(update={"metrics": Metrics(**v), "provenance": "predicted"}))
    return out


class Counting(ReplayEvaluator):
    def __init__(self, *a: object, **k: object) -> None:
        super().__init__(*a, **k)  # type: ignore[arg-type]
        self.calls: list[ServingConfig] = []

    def evaluate_many(self, configs: Sequence[ServingConfig], scenario: Scenario) -> list[Measurement]:
        self.calls += list(configs)
        return super().evaluate_many(configs, scenario)


def _prior(table: Sequence[Measurement]) -> ReplayEvaluator:
    p = ReplayEvaluator(list(table))
    p.name = "biased-surrogate"
    return p


def _best(table: Sequence[Measurement], slo: SLO) -> Measurement:
    return min((m for m in table if meets_slo(m, slo)), key=lambda m: m.value(ENERGY_KEY))  # type: ignore[arg-type, return-value]


def test_corrected_prior_finds_what_the_static_warm_start_misses(scenario: Scenario) -> None:
    slo, table = SLO.parse(SLO_TEXT), truth_table(scenario)
    best = _best(table, slo)
    truth_of = {config_key(m.config): m for m in table}
    static = [truth_of[config_key(p.config)] for p in rank_predictions(biased(table), slo, "tpot_p90_s", k=5)]
    assert min(m.value(ENERGY_KEY) for m in static if meets_slo(m, slo)) > 1.1 * best.value(ENERGY_KEY)  # type: ignore[operator]
    ev = Counting(table)
    r = run_study(scenario, ev.space(), slo, ev, 8, storage="memory", check_feasible=False, save_measurements=False,
                  sampler="random", warm_start=_prior(biased(table)))
    assert r.best is not None and config_key(r.best.config) == config_key(best.config)
    assert len({config_key(c) for c in ev.calls}) == len(ev.calls) == 8  # nothing evaluated twice


def test_measurements_correct_the_prior_and_move_its_pick(scenario: Scenario) -> None:
    slo, table = SLO.parse(SLO_TEXT), truth_table(scenario)
    best = _best(table, slo)
    prior = _prior(biased(table))
    ev = ReplayEvaluator(table)
    guide = PriorGuide(ev.space(), scenario, slo, "tpot_p90_s", prior, lambda c: _OK)
    first = guide.propose([])[0]
    assert config_key(first.config) != config_key(best.config)  # the pessimistic prior hides the true best
    study = optuna.create_study(directions=["minimize", "minimize"])
    r = run_study(scenario, ev.space(), slo, ev, 4, storage=study._storage, study_name=study.study_name,
                  check_feasible=False, save_measurements=False, sampler="random")  # 4 random measurements
    assert r.evaluations == 4
    trials = study.get_trials(deepcopy=False)
    corrected = guide.propose(trials, 3)
    assert config_key(corrected[0].config) == config_key(best.config)
    assert corrected[0].energy_per_output_token_j == pytest.approx(best.value(ENERGY_KEY), rel=0.1)  # bias learnt
    assert not {config_key(p.config) for p in corrected} & {config_key(m.config) for m in r.measurements}
    assert len({config_key(p.config) for p in corrected}) == 3  # a batch of distinct configs


def test_running_and_queued_configs_are_not_proposed(scenario: Scenario) -> None:
    slo, table = SLO.parse(SLO_TEXT), truth_table(scenario)
    ev = ReplayEvaluator(table)
    guide = PriorGuide(ev.space(), scenario, slo, "tpot_p90_s", _prior(table), lambda c: _OK)
    top = guide.propose([], 1)[0].config
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.enqueue_trial(ev.space().params_of(top))
    nxt = guide.propose(study.get_trials(deepcopy=False), 1)[0].config
    assert config_key(nxt) != config_key(top)


def test_infeasible_configs_never_enter_the_pool(scenario: Scenario) -> None:
    slo, table = SLO.parse(SLO_TEXT), truth_table(scenario)
    ev = ReplayEvaluator(table)

    class Fz:
        def __init__(self, ok: bool) -> None:
            self.ok = ok

    guide = PriorGuide(ev.space(), scenario, slo, "tpot_p90_s", _prior(table), lambda c: Fz(c.gpu_clock_mhz is None))
    assert guide.pool and all(c.gpu_clock_mhz is None for c in guide.pool)
    assert all(p.config.gpu_clock_mhz is None for p in guide.propose([], 5))


def test_batches_are_distinct_and_counted_once(scenario: Scenario) -> None:
    slo, table = SLO.parse(SLO_TEXT), truth_table(scenario)
    ev = Counting(table)
    r = run_study(scenario, ev.space(), slo, ev, 12, storage="memory", check_feasible=False, save_measurements=False,
                  warm_start=_prior(biased(table)), batch_size=4)
    assert r.evaluations == 12 and len({config_key(c) for c in ev.calls}) == len(ev.calls) == 12


def test_resume_keeps_guiding(scenario: Scenario, tmp_path: Path) -> None:
    slo, table = SLO.parse(SLO_TEXT), truth_table(scenario)
    ev = Counting(table)
    kw = dict(check_feasible=False, runs_root=tmp_path, heartbeat_interval_s=1, save_measurements=False,
              warm_start=_prior(biased(table)), sampler="random")
    r1 = run_study(scenario, ev.space(), slo, ev, 3, **kw)  # type: ignore[arg-type]
    r2 = run_study(scenario, ev.space(), slo, ev, 10, **kw)  # type: ignore[arg-type]
    assert r2.study_name == r1.study_name and r2.evaluations == 10 and len(ev.calls) == 10
    assert len({config_key(c) for c in ev.calls}) == 10
    study = optuna.load_study(study_name=r2.study_name, storage=r2.storage_url)
    evaluated = [t for t in study.trials if t.user_attrs.get("kind") == "evaluated"]
    by_prior = [t.number for t in evaluated if str(t.user_attrs.get("proposed_by", "")).startswith("prior:")]
    assert by_prior[:3] == [t.number for t in evaluated[:3]]  # the first evaluations are the prior's
    assert any(n > evaluated[2].number for n in by_prior)  # and it still proposes after the resume
    assert study.user_attrs["warm_start"]["predictor"] == "biased-surrogate"
    assert r2.best is not None and config_key(r2.best.config) == config_key(_best(table, slo).config)


def test_a_predictor_that_fails_everything_leaves_the_search_to_the_sampler(scenario: Scenario) -> None:
    slo, table = SLO.parse(SLO_TEXT), truth_table(scenario)
    ev = Counting(table)
    useless = ReplayEvaluator(truth_table(scenario.model_copy(update={"model": "Llama-3.1-70B"})))  # no row matches
    r = run_study(scenario, ev.space(), slo, ev, 6, storage="memory", check_feasible=False, save_measurements=False,
                  warm_start=useless)
    assert r.evaluations == 6 and len({config_key(c) for c in ev.calls}) == 6


def test_an_oom_steers_proposals_away_from_configs_with_less_free_memory(scenario: Scenario) -> None:
    """After an out-of-memory failure, configs the memory model gives no more free memory per GPU than it are
    proposed only once nothing roomier promises as much."""
    import json

    from optuna.trial import TrialState, create_trial

    from recommender.feasibility import free_memory_bytes_per_gpu

    slo, table = SLO.parse(SLO_TEXT), truth_table(scenario)
    ev = ReplayEvaluator(table)
    guide = PriorGuide(ev.space(), scenario, slo, "tpot_p90_s", _prior(table), lambda c: _OK)
    before = [p.config for p in guide.propose([], 6)]
    failed = before[0]
    oom = create_trial(state=TrialState.FAIL, user_attrs={
        "kind": "evaluated", "failure_reason": "oom", "config": json.loads(config_key(failed))})
    after = [p.config for p in guide.propose([oom], 6)]
    limit = free_memory_bytes_per_gpu([failed], scenario)[0]
    tighter = lambda cs: [c for c in cs if free_memory_bytes_per_gpu([c], scenario)[0] <= limit]  # noqa: E731
    assert config_key(failed) not in {config_key(c) for c in after}
    assert len(tighter(before)) > 1  # the prior alone liked configs as tight as the one that failed
    assert not tighter(after)
    # any other failure reason teaches nothing about memory
    crash = create_trial(state=TrialState.FAIL, user_attrs={
        "kind": "evaluated", "failure_reason": "crashed", "config": json.loads(config_key(failed))})
    assert tighter([p.config for p in guide.propose([crash], 6)])


# ---- turns -------------------------------------------------------------------------------------------------
def _trial(number: int, prior: bool, energy: float | None, state: str = "COMPLETE",
           mode: str = "energy") -> optuna.trial.FrozenTrial:
    from optuna.trial import TrialState, create_trial

    attrs: dict[str, object] = {"kind": "evaluated", "meets_slo": energy is not None,
                                "metrics": {ENERGY_KEY: energy if energy is not None else 9.0}}
    if prior:
        attrs.update(proposed_by="prior:s", prior_mode=mode)
    if state == "RUNNING":
        attrs = {k: v for k, v in attrs.items() if k in ("proposed_by", "prior_mode")}
        t = create_trial(state=TrialState.RUNNING, user_attrs=attrs)
    else:
        t = create_trial(values=[energy or 9.0, 1.0], user_attrs=attrs)
    t.number = number
    return t


def test_turns_first_k_then_while_improving_then_shared() -> None:
    assert plan_turns([], 1, first_k=3).prior == 1
    improving = [_trial(i, True, 1.0 - 0.1 * i) for i in range(6)]
    assert plan_turns(improving, 2, first_k=3).prior == 2  # past first_k but still improving: all slots
    flat = [_trial(0, True, 1.0), *(_trial(i, True, 1.0) for i in range(1, 4))]
    turns = plan_turns(flat, 3, first_k=3)
    assert turns.prior == 2 and turns.front  # stagnant: every third slot is the sampler's; the prior fills the front
    after = [*flat, _trial(4, False, 2.0)]
    assert plan_turns(after, 1, first_k=3).prior == 1
    fronted = [*after, _trial(5, True, 1.0, mode="front")]
    assert not plan_turns(fronted, 1, first_k=3).front  # front and energy proposals alternate
    sampler_better = [*flat, _trial(4, False, 0.5)]
    assert plan_turns(sampler_better, 3, first_k=3).prior == 2  # the sampler's improvement does not revive it
    revived = [*flat, _trial(4, True, 0.5)]
    assert plan_turns(revived, 3, first_k=3) == plan_turns([], 3, first_k=0)  # a prior improvement: all slots again


def test_running_trials_count_for_alternation() -> None:
    flat = [_trial(i, True, 1.0) for i in range(4)]
    assert plan_turns([*flat, _trial(4, True, None, state="RUNNING")], 1, first_k=3).prior == 0
    assert plan_turns([*flat, _trial(4, False, None, state="RUNNING")], 1, first_k=3).prior == 1


# ---- the model ---------------------------------------------------------------------------------------------
def test_residual_model_learns_a_uniform_bias_and_trusts_the_prior_without_data() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3))
    m = ResidualModel(prior_sigma=0.2)
    mean0, sd0 = m.fit(np.zeros((0, 3)), np.zeros(0)).predict(x)
    assert np.allclose(mean0, 0) and np.allclose(sd0, 0.2)
    mean, sd = m.fit(x, np.full(12, -0.4)).predict(rng.normal(size=(5, 3)))
    assert np.allclose(mean, -0.4, atol=0.05) and (sd < 0.2).all()


def test_hv_improvement_matches_the_hypervolume() -> None:
    rng = np.random.default_rng(1)
    front = rng.uniform(size=(6, 2))
    ref = np.array([1.2, 1.1])
    pts = rng.uniform(-0.2, 1.3, size=(40, 2))
    got = hv_improvement(pts, front, ref)
    base = hypervolume_2d(front.tolist(), ref.tolist())
    want = [hypervolume_2d([*front.tolist(), p.tolist()], ref.tolist()) - base for p in pts]
    assert np.allclose(got, want)
    assert np.allclose(hv_improvement(pts, np.zeros((0, 2)), ref), [hypervolume_2d([p.tolist()], ref.tolist())
                                                                     for p in pts])


class _Ok:
    ok = True


_OK = _Ok()


def with_intervals(table: Sequence[Measurement], low: float, high: float) -> list[Measurement]:
    """``table`` with an interval ``(v * low, v * high)`` around every metric value, as the surrogate serves."""
    return [m.model_copy(update={"intervals": {k: (v * low, v * high) for k, v in m.metrics.model_dump().items()  # type: ignore[union-attr]
                                               if v is not None}}) for m in table]


def test_the_prior_spread_is_read_from_the_predictors_intervals(scenario: Scenario) -> None:
    from scipy.stats import norm

    from recommender.search.guided import DEFAULT_PRIOR_SIGMA, INTERVAL_COVERAGE
    from recommender.surrogate.training import COVERAGE

    assert INTERVAL_COVERAGE == COVERAGE  # the intervals the surrogate serves
    slo, table = SLO.parse(SLO_TEXT), truth_table(scenario)
    space = ReplayEvaluator(table).space()
    z = norm.ppf(0.9)
    guide = PriorGuide(space, scenario, slo, "tpot_p90_s", _prior(with_intervals(biased(table), 0.5, 1.6)),
                       lambda c: _OK)
    assert guide.pool
    assert guide.sigmas == {k: pytest.approx(np.log(1.6 / 0.5) / (2 * z)) for k in guide.metrics}
    # no intervals, or an explicit spread: the fixed one
    plain = PriorGuide(space, scenario, slo, "tpot_p90_s", _prior(biased(table)), lambda c: _OK)
    fixed_ = PriorGuide(space, scenario, slo, "tpot_p90_s", _prior(with_intervals(biased(table), 0.5, 1.6)),
                        lambda c: _OK, prior_sigma=0.3)
    assert plain.pool and fixed_.pool
    assert set(plain.sigmas.values()) == {DEFAULT_PRIOR_SIGMA} and set(fixed_.sigmas.values()) == {0.3}


def test_p_feasible_uses_the_calibrated_spread(scenario: Scenario) -> None:
    """A prior 35 % pessimistic about TPOT, within its stated interval: before any measurement P(the SLO holds)
    of a proposal is the normal probability of its predicted TPOT under the interval's spread (not the fixed
    +-20 %, which all but rules out configs predicted a little over the limit)."""
    from scipy.stats import norm

    from recommender.search.guided import DEFAULT_PRIOR_SIGMA

    slo, table = SLO.parse("tpot:p90<=40ms"), truth_table(scenario)
    space = ReplayEvaluator(table).space()
    pessimistic = biased(table, tpot=1.35, energy=1.0)
    tpot = {config_key(m.config): m.value("tpot_p90_s") for m in pessimistic}
    for prior, sigma in ((with_intervals(pessimistic, 0.5, 1.6), np.log(1.6 / 0.5) / (2 * norm.ppf(0.9))),
                         (pessimistic, DEFAULT_PRIOR_SIGMA)):
        guide = PriorGuide(space, scenario, slo, "tpot_p90_s", _prior(prior), lambda c: _OK)
        first = guide.propose([])[0]  # (a batch's later picks are conditioned on the earlier ones)
        assert guide.sigmas["tpot_p90_s"] == pytest.approx(sigma)
        want = norm.cdf(np.log(0.04 / tpot[config_key(first.config)]) / sigma)  # type: ignore[operator]
        assert 0.01 < want < 0.99 and first.p_feasible == pytest.approx(want, rel=1e-6)
