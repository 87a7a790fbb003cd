"""The samplers a study can use, built from a name.

All of them read SLO constraints from ``Trial.set_constraint`` (Optuna 5's core constraint API; the older
``constraints_func`` arguments are deprecated there), so constrained search works the same way for each.

- ``tpe`` (default): multivariate TPE (joint model of the knobs) with the constant-liar strategy, so batched
  and parallel workers do not propose what another worker is running. Feasibility-rejected configs are
  PRUNED trials with a positive ``feasibility`` constraint, which TPE ranks below every feasible trial.
- ``gp``: Gaussian-process BO with constrained (log) EHVI; needs ``torch``. Sees COMPLETE trials only.
- ``nsga2``: NSGA-II with constrained domination; population scaled to the budget.
- ``random``: uniform random search (the benchmark baseline).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from recommender.errors import InputError, suggest

if TYPE_CHECKING:
    import optuna

SAMPLERS: tuple[str, ...] = ("tpe", "gp", "nsga2", "random")


def startup_trials(n_evals: int) -> int:
    """Random trials before the model-based samplers start modelling: 10, fewer for small budgets."""
    return max(3, min(10, n_evals // 4))


def make_sampler(name: str, seed: int | None, n_evals: int) -> optuna.samplers.BaseSampler:
    """Build sampler ``name`` (one of :data:`SAMPLERS`) for a budget of ``n_evals`` evaluations.

    Raises:
        InputError: unknown name, or ``gp`` without ``torch`` installed.
    """
    import optuna
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        if name == "tpe":
            return optuna.samplers.TPESampler(
                seed=seed, multivariate=True, constant_liar=True, n_startup_trials=startup_trials(n_evals)
            )
        if name == "gp":
            try:
                import torch  # noqa: F401
            except ImportError:
                raise InputError("--sampler", name, "the GP sampler needs PyTorch: pip install torch "
                                 "(CPU build is enough), or use --sampler tpe") from None
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials(n_evals))
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, n_evals // 4)))
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
    raise InputError("--sampler", name, f"use one of {SAMPLERS}{suggest(name, SAMPLERS)}")
