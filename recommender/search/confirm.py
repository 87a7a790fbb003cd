"""Confirming a best config that meets the SLO by less than run-to-run noise: measure it again, judge the median.

One run cannot tell whether a config that meets its closest SLO target with less than
:data:`~recommender.search.result.BOUNDARY_HEADROOM` to spare really meets it: the same engine config measured
again on our H100 moved TPOT p90 by 8-16 %, and the guided H100 study's best met its SLO in 3 of 4 runs. So after
the study's budget is spent, :func:`confirm_best` (``run_study(..., confirm_repeats=N)``):

- reads every run of every config from the study and :func:`consolidate` s them: per config, the median of each
  metric over its runs (a config any of whose runs failed is failed, with the reason);
- while the consolidated best config has less than ``BOUNDARY_HEADROOM`` headroom and fewer than ``1 + N`` runs,
  measures it the missing number of times in one ``evaluate_many`` call (one server start for all of them: on a
  GPU a start costs more than a run) and stores each run as a finished trial of kind ``repeat`` (``repeat_of``: the
  trial that first evaluated it). Repeats are not evaluations: they spend none of ``n_evals``, the loop's duplicate check and
  the prior never see them;
- a config whose median misses the SLO drops out and the next best is judged the same way, for at most
  :data:`MAX_CONFIRMED_CONFIGS` configs.

Everything is read from the study, so rerunning the same command adds no repeat that is already there (two
workers finishing together may each add one: one run too many, never a wrong pick). Deterministic evaluators
(surrogate, replay) gain nothing from it; the CLI enables it for real measurements only.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from recommender.measurement import Measurement, Metrics
from recommender.pareto import pick_best, slo_headroom
from recommender.search import trials as tr
from recommender.search._space import SearchSpace, config_key, params_of

if TYPE_CHECKING:
    import optuna

    from recommender.config import Scenario
    from recommender.evaluators.base import Evaluator
    from recommender.slo import SLO

logger = logging.getLogger(__name__)
#: Most configs whose runs are repeated in one study (each costs up to ``confirm_repeats`` more runs).
MAX_CONFIRMED_CONFIGS = 3


def by_config(runs: Sequence[Measurement]) -> dict[str, list[Measurement]]:
    """``runs`` grouped by config key, in the order configs first appear (each group in ``runs`` order)."""
    groups: dict[str, list[Measurement]] = {}
    for m in runs:
        groups.setdefault(config_key(m.config), []).append(m)
    return groups


def consolidate(runs: Sequence[Measurement]) -> list[Measurement]:
    """One Measurement per config, in the order configs first appear in ``runs``.

    A config with one run is that run. With several: if any failed, the first failed run (``failure_detail``
    says how many failed); else a copy of the first run whose metrics are the per-metric medians over the runs
    (best window: steady state where measured), ``notes`` saying so. The copy keeps the first run's ``id``.
    """
    out = []
    for ms in by_config(runs).values():
        if len(ms) == 1:
            out.append(ms[0])
            continue
        failed = [m for m in ms if not m.ok]
        if failed:
            out.append(failed[0].model_copy(update={"failure_detail": f"{len(failed)} of {len(ms)} runs of this "
                                                    f"config failed; first: {failed[0].failure_detail}"[:2000]}))
            continue
        medians = {}
        for key in Metrics.model_fields:
            vals = [v for m in ms if (v := m.value(key)) is not None]
            if vals:
                medians[key] = statistics.median(vals)
        note = f"median of {len(ms)} runs ({', '.join(m.id for m in ms)})"
        out.append(ms[0].model_copy(update={
            "metrics": Metrics.model_validate(medians), "steady_state": None,
            "notes": f"{ms[0].notes}; {note}" if ms[0].notes else note}))
    return out


def runs_by_config(study: optuna.Study, scenario: Scenario) -> tuple[list[Measurement], dict[str, int]]:
    """Every evaluation and repeat of ``study`` as Measurements (trial order), and per config key the number of the
    trial that first evaluated it."""
    runs: list[Measurement] = []
    first: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        m = tr.measurement_of(t, scenario, repeats=True)
        if m is None:
            continue
        runs.append(m)
        if tr.is_evaluation(t):
            first.setdefault(config_key(m.config), t.number)
    return runs, first


def confirm_best(study: optuna.Study, space: SearchSpace, scenario: Scenario, slo: SLO, objective: str,
                 evaluator: Evaluator, repeats: int, *, headroom: float,
                 save: Callable[[Measurement], None] | None = None) -> int:
    """Repeat the consolidated best config while it sits within ``headroom`` of the SLO (see the module docstring).

    Args:
        study: the finished study (its trials are read and repeats added to it).
        space: the study's knob space (for the repeat trials' params).
        scenario, slo, objective: as the study's.
        evaluator: measures the repeats (``evaluate``).
        repeats: most extra runs per config (0: nothing is done).
        headroom: relative headroom below which a best config is repeated.
        save: called with every repeat Measurement (e.g. to keep it in the run directory).

    Returns:
        The number of repeats run now.
    """
    done = 0
    confirmed: set[str] = set()
    while repeats > 0:
        runs, first = runs_by_config(study, scenario)
        best = pick_best(consolidate(runs), slo, objective)
        if best is None or slo_headroom(best, slo) >= headroom:
            break
        key = config_key(best.config)
        n = len(by_config(runs)[key])
        if n >= 1 + repeats:
            break  # judged on the median of all its runs
        if key not in confirmed and len(confirmed) >= MAX_CONFIRMED_CONFIGS:
            logger.warning("not repeating %s: %d configs were repeated already", best.config.short(), len(confirmed))
            break
        confirmed.add(key)
        need = 1 + repeats - n
        logger.info("repeating %s %d time(s): it meets the SLO with %.1f%% headroom, less than %.0f%%",
                    best.config.short(), need, 100 * slo_headroom(best, slo), 100 * headroom)
        for m in evaluator.evaluate_many([best.config] * need, scenario):
            if save is not None:
                save(m)
            add_repeat(study, space, m, tr.objective_keys(objective), slo, first.get(key))
            done += 1
    return done


def add_repeat(study: optuna.Study, space: SearchSpace, m: Measurement, objectives: Sequence[str], slo: SLO,
               repeat_of: int | None) -> optuna.trial.FrozenTrial:
    """Store ``m`` as a finished trial of kind ``repeat`` (COMPLETE with values and SLO constraints, or FAIL),
    written in one call (``Study.add_trial``): no running trial to lose."""
    import optuna
    from optuna.trial import TrialState

    params = params_of(space, m.config)
    dists = space.distributions()
    out = tr.outcome(m, objectives, slo)
    attrs = {**out.attrs, "config": m.config.model_dump(mode="json", exclude={"schema_version"}),
             "config_short": m.config.short(), "kind": tr.REPEAT}
    if repeat_of is not None:
        attrs["repeat_of"] = repeat_of
    complete = out.values is not None
    trial = optuna.trial.create_trial(
        state=TrialState.COMPLETE if complete else TrialState.FAIL, values=out.values, params=params,
        distributions={k: dists[k] for k in params}, user_attrs=attrs, constraints=out.constraints or None)
    study.add_trial(trial)
    return trial
