"""Candidate configs a predictor scores, and a static ranking of its predictions.

:func:`candidate_configs` is the pool :class:`recommender.search.guided.PriorGuide` scores (every config when
there are at most ``limit``, else ``limit`` seeded random ones). :func:`rank_predictions` is what a static warm
start would run first, from the uncorrected predictions alone (the least energy predicted to meet the SLO with
safety margins of several sizes, then the predicted Pareto front); the search itself no longer uses it (the
prior-guided search corrects the predictions as measurements come in), reports do, to show what the raw
prior's picks are worth.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from recommender.pareto import ENERGY_KEY, meets_slo, objective_values, pareto_front
from recommender.search._space import SearchSpace, config_key, enumerate_params, random_params

if TYPE_CHECKING:
    from recommender.config import ServingConfig
    from recommender.measurement import Measurement
    from recommender.slo import SLO


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
