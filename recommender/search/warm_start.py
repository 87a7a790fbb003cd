"""Warm start: queue the configs a predictor (the surrogate) expects to be best, so real runs verify them.

The predictor scores candidate configs of the space (every config when there are at most ``limit``, else
``limit`` random ones, seeded), after the feasibility check. :func:`rank_predictions` orders them: the least
energy predicted to meet the SLO with safety margins of several sizes, then the predicted Pareto front; the
first ``k`` configs not already in the study are enqueued (``Study.enqueue_trial``) and run before the
sampler's own proposals. Done once per study (study attribute ``warm_start``); a second worker skips it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from recommender.pareto import ENERGY_KEY, meets_slo, objective_values, pareto_front
from recommender.search._space import SearchSpace, config_key, enumerate_params, params_of, random_params
from recommender.search.trials import trial_config_key

if TYPE_CHECKING:
    import optuna

    from recommender.config import Scenario, ServingConfig
    from recommender.evaluators.base import Evaluator
    from recommender.measurement import Measurement
    from recommender.slo import SLO

logger = logging.getLogger(__name__)


def candidate_configs(space: SearchSpace, limit: int, seed: int) -> list[ServingConfig]:
    """Every config of ``space`` when there are at most ``limit``; else ``limit`` distinct random ones."""
    dists = space.distributions()
    grid = enumerate_params(dists, limit)
    if grid is not None:
        return [space.to_config(p) for p in grid]
    rng = np.random.default_rng(seed)
    seen: dict[str, ServingConfig] = {}
    for _ in range(limit * 3):
        c = space.to_config(random_params(dists, rng))
        seen.setdefault(config_key(c), c)
        if len(seen) >= limit:
            break
    return list(seen.values())


MARGINS: tuple[float, ...] = (0.2, 0.0, 0.4, 0.1, 0.3, 0.6)


def _meets_with_margin(m: Measurement, slo: SLO, margin: float) -> bool:
    """Every target met by the prediction's pessimistic value (interval high, else the point) x (1 + margin)."""
    if not m.ok:
        return False
    for t in slo.targets:
        v = m.intervals[t.key][1] if t.key in m.intervals else m.value(t.key)
        if v is None or v * (1 + margin) > t.limit_s:
            return False
    return True


def rank_predictions(predictions: list[Measurement], slo: SLO, objective: str, k: int = 5) -> list[Measurement]:
    """Up to ``k`` predictions to verify first, most promising first, spread over the SLO boundary.

    Pick ``i`` is the least-energy prediction not yet picked that meets the SLO with a safety margin
    ``MARGINS[i]`` (20 %, 0 %, 40 %, 10 %, 30 %, 60 % of each limit, on the interval's upper end when the
    predictor gives one): a model's latency error near the limit would otherwise spend every warm-start run on
    configs that turn out infeasible. Remaining slots go to the predicted feasible Pareto front.
    """
    objs = (ENERGY_KEY, objective)
    usable = [m for m in predictions if objective_values(m, objs) is not None]
    chosen: list[Measurement] = []
    for i in range(k):
        margin = MARGINS[i % len(MARGINS)]
        cands = [m for m in usable if _meets_with_margin(m, slo, margin) and all(m is not c for c in chosen)]
        if cands:
            chosen.append(min(cands, key=lambda m: m.value(ENERGY_KEY)))  # type: ignore[arg-type, return-value]
    front = pareto_front([m for m in usable if meets_slo(m, slo)], objs)
    rest = [m for m in front if all(m is not c for c in chosen)]
    return (chosen + rest)[: max(k, 0)] if k else chosen


def enqueue_warm_start(study: optuna.Study, space: SearchSpace, scenario: Scenario, slo: SLO, objective: str,
                       predictor: Evaluator, k: int, feasible: Callable[[ServingConfig], Any], limit: int = 2000,
                       seed: int = 0) -> list[ServingConfig]:
    """Enqueue up to ``k`` predicted-best configs not yet in ``study``; returns those enqueued.

    Args:
        feasible: ``config -> object with .ok`` (the search's feasibility check); rejected configs are not
            scored.
        limit: most candidate configs to score.
    """
    if k <= 0 or study.user_attrs.get("warm_start") is not None:
        return []
    cands = [c for c in candidate_configs(space, limit, seed) if feasible(c).ok]
    preds = predictor.evaluate_many(cands, scenario) if cands else []
    ranked = rank_predictions(preds, slo, objective, k=k + 5)
    present = {trial_config_key(t) for t in study.get_trials(deepcopy=False)}
    chosen: list[ServingConfig] = []
    for m in ranked:
        key = config_key(m.config)
        if key in present:
            continue
        present.add(key)
        study.enqueue_trial(params_of(space, m.config), user_attrs={"proposed_by": f"warm_start:{predictor.name}"},
                            skip_if_exists=True)
        chosen.append(m.config)
        if len(chosen) >= k:
            break
    study.set_user_attr("warm_start", {"predictor": predictor.name, "scored": len(preds), "enqueued": len(chosen)})
    logger.info("warm start: %s scored %d configs, %d meet the SLO, enqueued %d", predictor.name, len(preds),
                len(ranked), len(chosen))
    return chosen
