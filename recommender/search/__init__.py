"""Multi-objective, SLO-constrained Optuna search over a knob space (energy per token vs latency).

Python API::

    from recommender.search import run_study
    result = run_study(scenario, "smoke", slo, evaluator, n_evals=20)
    result.best, result.pareto, result.summary()

Modules: :mod:`~recommender.search.runner` (the loop and its guarantees), :mod:`~recommender.search.trials`
(what each trial records), :mod:`~recommender.search.storage` (names, run directories, heartbeats),
:mod:`~recommender.search.samplers`, :mod:`~recommender.search.guided` (a surrogate's predictions, corrected online,
proposing between the sampler's trials), :mod:`~recommender.search.warm_start` (its candidate pool),
:mod:`~recommender.search.progress`.
"""

from __future__ import annotations

from recommender.search._space import SearchSpace, config_key
from recommender.search.result import StudyResult
from recommender.search.runner import run_study
from recommender.search.samplers import SAMPLERS, make_sampler
from recommender.search.storage import StudyLocation, default_study_name, resolve_location
from recommender.search.trials import resolve_objective

__all__ = [
    "run_study", "StudyResult", "SearchSpace", "SAMPLERS", "make_sampler", "resolve_objective", "config_key",
    "StudyLocation", "default_study_name", "resolve_location",
]
