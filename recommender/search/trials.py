"""How one study trial records a config and its outcome, and how the study's trials are tallied.

Every trial the search finishes carries the user attribute ``kind`` (state; counts as an evaluation?):

- ``evaluated`` (COMPLETE; yes): the evaluator measured/predicted it.
- ``evaluated`` (FAIL; yes): the evaluator ran it and it failed; ``failure_reason``/``failure_detail`` say why.
- ``duplicate`` (COMPLETE or FAIL; no): same config as an earlier evaluated trial, whose result is reused;
  ``duplicate_of`` is that trial's number.
- ``infeasible`` (PRUNED; no): rejected by the feasibility check before any evaluator saw it
  (``infeasible_reason``).
- ``skipped`` (PRUNED; no): another worker already runs the same config, or the budget was taken
  (``skip_reason``: ``running_elsewhere`` / ``budget_full``).
- ``interrupted`` (FAIL; no): the worker was stopped mid-trial; the config is re-queued.
- ``repeat`` (COMPLETE or FAIL; no): another run of an evaluated config near the SLO boundary, added after the
  budget (:mod:`recommender.search.confirm`); ``repeat_of`` is the trial that first evaluated it.

A FAIL trial without ``kind`` was failed by the heartbeat check (its worker died) and re-queued by Optuna.
Objective values of a COMPLETE trial are ``(energy_per_output_token_j, <latency objective>)``, both
minimized; every SLO target is a constraint ``observed - limit`` (``Trial.set_constraint``), never a penalty.
Infeasible trials get the single constraint ``feasibility = 1.0`` (TPE ranks them below all feasible
trials; GP and NSGA-II see only COMPLETE trials). User attributes also hold the config (``config``), the
metrics, provenance, measurement id, and the whole Measurement without its scenario (``measurement``), so
the study alone reproduces every result (the scenario is in the study's ``recommender`` attribute).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from recommender.errors import InputError, suggest
from recommender.measurement import Measurement, Metrics
from recommender.pareto import ENERGY_KEY, constraint_values
from recommender.search._space import config_key

if TYPE_CHECKING:
    import optuna

    from recommender.config import Scenario, ServingConfig
    from recommender.search._space import SearchSpace
    from recommender.slo import SLO

EVALUATED, DUPLICATE, INFEASIBLE = "evaluated", "duplicate", "infeasible"
SKIPPED, INTERRUPTED, REPEAT = "skipped", "interrupted", "repeat"
FEASIBILITY_CONSTRAINT = "feasibility"


def mark_config(trial: optuna.Trial, config: ServingConfig, worker: str) -> None:
    """Record the trial's config right after sampling, so other workers can see what is running."""
    trial.set_user_attr("config", config.model_dump(mode="json", exclude={"schema_version"}))
    trial.set_user_attr("config_short", config.short())
    trial.set_user_attr("worker", worker)


def trial_config_key(trial: optuna.trial.FrozenTrial) -> str | None:
    """The config identity of a trial (see :func:`~recommender.search._space.config_key`), once marked."""
    cfg = trial.user_attrs.get("config")
    return None if cfg is None else json.dumps(cfg, sort_keys=True)


def held_config_key(trial: optuna.trial.FrozenTrial, space: SearchSpace) -> str | None:
    """The config identity of a trial, also before it is marked: a queued (``WAITING``) trial, or one just taken
    from the queue, has its params fixed in storage since ``enqueue_trial``. None when neither is known or the
    params do not build a config of ``space``."""
    key = trial_config_key(trial)
    if key is not None:
        return key
    params = trial.system_attrs.get("fixed_params")
    if not params:
        return None
    try:
        return config_key(space.to_config(dict(params)))
    except (InputError, ValueError, TypeError):
        return None


def _metrics_attr(m: Measurement) -> dict[str, float]:
    return {k: v for k in Metrics.model_fields if (v := m.value(k)) is not None}


@dataclass
class Outcome:
    """How a trial records Measurement ``m``: its user attributes, and for a COMPLETE trial its objective values and
    SLO constraints (``values`` None: the trial FAILs)."""

    attrs: dict[str, Any]
    values: list[float] | None = None
    constraints: dict[str, float] = field(default_factory=dict)


def outcome(m: Measurement, objectives: Sequence[str], slo: SLO) -> Outcome:
    """The record of ``m``: id, provenance, status, metrics and the Measurement without its scenario; a failed one
    with ``failure_reason`` / ``failure_detail``; an OK one lacking an objective or SLO metric fails with reason
    ``missing_metric`` (an SLO that cannot be checked is never assumed met); else values, constraints, ``meets_slo``.
    """
    attrs: dict[str, Any] = {
        "measurement_id": m.id, "provenance": m.provenance, "status": m.status, "metrics": _metrics_attr(m),
        "measurement": m.model_dump(mode="json", exclude={"scenario"}),
    }
    if not m.ok:
        attrs.update(failure_reason=m.failure_reason or "failed", failure_detail=m.failure_detail[:2000])
        return Outcome(attrs)
    vals = [m.value(k) for k in objectives]
    cons = constraint_values(m, slo)
    missing = [k for k, v in zip(objectives, vals, strict=True) if v is None]
    missing += [k for k, c in cons.items() if c == float("inf")]
    if missing:
        attrs.update(failure_reason="missing_metric",
                     failure_detail=f"the measurement has no {', '.join(dict.fromkeys(missing))}")
        return Outcome(attrs)
    attrs["meets_slo"] = all(c <= 0 for c in cons.values())
    return Outcome(attrs, [float(v) for v in vals], cons)  # type: ignore[arg-type]


def tell_measurement(study: optuna.Study, trial: optuna.Trial, m: Measurement, objectives: Sequence[str], slo: SLO,
                     kind: str = EVALUATED, duplicate_of: int | None = None) -> optuna.trial.FrozenTrial:
    """Store ``m`` on ``trial`` and finish it: COMPLETE with values and SLO constraints, or FAIL.

    An OK measurement lacking an objective or SLO metric fails the trial with reason ``missing_metric``
    (an SLO that cannot be checked is never assumed met). Returns the finished trial.
    """
    from optuna.trial import TrialState

    out = outcome(m, objectives, slo)
    if duplicate_of is not None:
        out.attrs["duplicate_of"] = duplicate_of
    for key, c in out.constraints.items():
        trial.set_constraint(key, c)
    for k, v in out.attrs.items():
        trial.set_user_attr(k, v)
    trial.set_user_attr("kind", kind)  # last: a trial carries a kind only once its outcome is stored
    if out.values is not None:
        return study.tell(trial, out.values)
    return study.tell(trial, state=TrialState.FAIL)


def tell_copy(study: optuna.Study, trial: optuna.Trial, source: optuna.trial.FrozenTrial) -> None:
    """Finish ``trial`` as a duplicate of the evaluated trial ``source`` (same values and constraints)."""
    from optuna.trial import TrialState

    for k in ("measurement_id", "provenance", "status", "metrics", "failure_reason", "failure_detail", "meets_slo"):
        if k in source.user_attrs:
            trial.set_user_attr(k, source.user_attrs[k])
    trial.set_user_attr("duplicate_of", source.number)
    trial.set_user_attr("kind", DUPLICATE)
    if source.state == TrialState.COMPLETE:
        for key, c in source.constraints.items():
            trial.set_constraint(key, c)
        study.tell(trial, list(source.values))
    else:
        study.tell(trial, state=TrialState.FAIL)


def tell_infeasible(study: optuna.Study, trial: optuna.Trial, reasons: Sequence[str]) -> None:
    """Finish ``trial`` as PRUNED by the feasibility check; it never reaches an evaluator."""
    from optuna.trial import TrialState

    trial.set_constraint(FEASIBILITY_CONSTRAINT, 1.0)
    trial.set_user_attr("infeasible_reason", "; ".join(reasons) or "infeasible")
    trial.set_user_attr("kind", INFEASIBLE)
    study.tell(trial, state=TrialState.PRUNED)


def tell_skipped(study: optuna.Study, trial: optuna.Trial, reason: str, duplicate_of: int | None = None) -> None:
    """Finish ``trial`` as PRUNED without evaluating it (config already running elsewhere, budget taken)."""
    from optuna.trial import TrialState

    trial.set_user_attr("skip_reason", reason)
    if duplicate_of is not None:
        trial.set_user_attr("duplicate_of", duplicate_of)
    trial.set_user_attr("kind", SKIPPED)
    study.tell(trial, state=TrialState.PRUNED)


def is_evaluation(t: optuna.trial.FrozenTrial) -> bool:
    """True for a finished trial that spent one evaluation (COMPLETE or FAIL with ``kind == evaluated``)."""
    return t.user_attrs.get("kind") == EVALUATED and t.state.is_finished() and t.state.name in ("COMPLETE", "FAIL")


@dataclass
class Tally:
    """Counts over a study's trials, and what is known per config key."""

    evaluations: int = 0
    failed: int = 0
    infeasible: int = 0
    duplicates: int = 0
    skipped: int = 0
    repeats: int = 0
    running: list[optuna.trial.FrozenTrial] = field(default_factory=list)
    waiting: int = 0
    queued: list[optuna.trial.FrozenTrial] = field(default_factory=list)  # the WAITING trials
    evaluated_by_key: dict[str, optuna.trial.FrozenTrial] = field(default_factory=dict)
    infeasible_keys: dict[str, str] = field(default_factory=dict)

    def known(self, key: str) -> bool:
        """True when ``key`` was evaluated or rejected as infeasible."""
        return key in self.evaluated_by_key or key in self.infeasible_keys


def tally(trials: Sequence[optuna.trial.FrozenTrial]) -> Tally:
    """Count evaluations, failures, skips and running/waiting trials; index evaluated configs by key."""
    out = Tally()
    for t in trials:
        kind = t.user_attrs.get("kind")
        state = t.state.name
        if state == "RUNNING":
            out.running.append(t)
        elif state == "WAITING":
            out.waiting += 1
            out.queued.append(t)
        elif is_evaluation(t):
            out.evaluations += 1
            out.failed += state == "FAIL"
            key = trial_config_key(t)
            if key is not None and key not in out.evaluated_by_key:
                out.evaluated_by_key[key] = t
        elif kind == INFEASIBLE:
            out.infeasible += 1
            key = trial_config_key(t)
            if key is not None:
                out.infeasible_keys[key] = t.user_attrs.get("infeasible_reason", "")
        elif kind == DUPLICATE:
            out.duplicates += 1
        elif kind == SKIPPED:
            out.skipped += 1
        elif kind == REPEAT:
            out.repeats += 1
    return out


def measurement_of(t: optuna.trial.FrozenTrial, scenario: Scenario, repeats: bool = False) -> Measurement | None:
    """The Measurement stored on an evaluated trial, or with ``repeats`` also on a repeat (None for other trials)."""
    blob = t.user_attrs.get("measurement")
    if blob is None or not (is_evaluation(t) or (repeats and t.user_attrs.get("kind") == REPEAT)):
        return None
    return Measurement.model_validate({**blob, "scenario": scenario})


def resolve_objective(objective: str | None, slo: SLO) -> str:
    """The latency objective key: ``objective`` validated, or the SLO's tightest target (``ttft_p99_s``)."""
    if objective is None:
        return slo.tightest().key
    lat = [k for k in Metrics.model_fields if k.endswith("_s") and k != "duration_s"]
    if objective not in lat:
        raise InputError("--objective", objective, f"use a latency metric key such as ttft_p99_s or tpot_p90_s"
                         f"{suggest(objective, lat)}")
    return objective


def objective_keys(objective: str) -> tuple[str, str]:
    """The study's two objective keys: energy per output token and the latency ``objective``."""
    return (ENERGY_KEY, objective)


__all__ = [
    "EVALUATED", "DUPLICATE", "INFEASIBLE", "SKIPPED", "INTERRUPTED", "REPEAT", "FEASIBILITY_CONSTRAINT", "Tally", "tally",
    "mark_config", "trial_config_key", "held_config_key", "tell_measurement", "tell_copy", "tell_infeasible", "tell_skipped",
    "Outcome", "outcome", "is_evaluation", "measurement_of", "objective_keys", "resolve_objective", "config_key",
]
