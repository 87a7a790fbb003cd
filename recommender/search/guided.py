"""Prior-guided search: a predictor's (the surrogate's) view of the space, corrected online by the measurements.

A warm start that only queues the predictor's favourites is as good as the predictor: a prior that is
pessimistic about a latency hides the true front, and a first pick 30 % off the best energy leaves the rest to
the sampler. Here the prior keeps proposing, and learns from every evaluation:

- **Pool.** Every config of the space that passes the feasibility check (``limit`` seeded random ones when the
  space is larger), with the predictor's energy, objective and SLO-metric predictions; scored once per worker.
- **Correction.** Per metric, a Gaussian process over the log ratio measured / predicted of every evaluated
  config, whoever proposed it (:class:`~recommender.search._prior_model.ResidualModel`): a uniform bias is
  learnt from the first measurements, a bias that depends on the knobs from a few more, and where nothing
  similar was measured the prior is trusted, within its own uncertainty: before any measurement the residual
  of a metric is ``0 +- sigma`` with ``sigma`` read from the predictor's calibrated intervals
  (``Measurement.intervals``: the surrogate's 80 % intervals come from the out-of-model residuals of its card,
  twice as wide out of distribution), the median over the pool of ``log(high / low) / (2 x 1.28)``
  (:data:`INTERVAL_COVERAGE`); a predictor without intervals gets :data:`DEFAULT_PRIOR_SIGMA` (+-20 %). So
  P(the SLO holds) is as honest as the predictor's intervals: a fixed +-20 % made a surrogate that is
  pessimistic by 30-45 % about a latency (within its stated +-40-80 %) all but rule out the configs at the
  SLO boundary, which hold the least energy. The interval's centre is *not* used as a bias correction: it
  is nearly 0 for the surrogate's latencies, and shifting by it did not help on the
  ML.ENERGY sweeps of ``benchmarks/search_efficiency.py``.
- **Proposal.** Among the pool configs no trial evaluated, rejected, runs or queued, the one with the largest
  acquisition under the corrected prior. ``energy`` mode: expected decrease of log energy below the best
  measured SLO-meeting energy (below the worst predicted one while none meets the SLO) times the probability
  that every SLO target holds. ``front`` mode: the hypervolume its prediction adds to the measured feasible
  front (log energy x log objective) times that probability. Configs running or queued in the study (any
  worker's) enter as fantasies at their corrected prediction (kriging believer), and so does each pick of a
  batch, so workers and batch slots spread out instead of picking the same config.
- **Turns** (:func:`plan_turns`): the prior proposes the first ``first_k`` evaluations, and every one after
  while it keeps improving the best feasible energy. Once its last ``patience`` evaluations did not, every
  third proposal is the sampler's (TPE by default: exploration the model cannot give), and the prior's
  alternate between ``front`` and ``energy`` mode; an improvement brings back the first regime.

Everything it needs is read from the study's trials, so it resumes, and workers sharing a storage agree on
turns. :mod:`recommender.search.runner` enqueues the proposals (``Study.enqueue_trial``, user attribute
``proposed_by = "prior:<predictor>"``) and keeps its guarantees for them as for any trial (budget, never
evaluated twice, re-queue on failure). Failed evaluations are excluded; one that ran out of memory also marks
every config the memory model gives no more free memory per GPU (:func:`recommender.feasibility.free_memory_bytes_per_gpu`)
as likely to fail: their acquisition is multiplied by :data:`OOM_PENALTY`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from recommender.feasibility import free_memory_bytes_per_gpu
from recommender.pareto import ENERGY_KEY
from recommender.search._prior_model import (
    ResidualModel,
    Standardizer,
    expected_improvement,
    hv_improvement,
    knob_features,
    p_feasible,
)
from recommender.search._space import SearchSpace, config_key
from recommender.search.trials import EVALUATED, SKIPPED, held_config_key
from recommender.search.warm_start import candidate_configs

if TYPE_CHECKING:
    import optuna

    from recommender.config import Scenario, ServingConfig
    from recommender.evaluators.base import Evaluator
    from recommender.measurement import Measurement
    from recommender.slo import SLO

logger = logging.getLogger(__name__)
PROPOSED_BY = "proposed_by"
PRIOR_PREFIX = "prior:"
POOL_LIMIT = 4096  # most configs scored; a space with at most this many is enumerated
PATIENCE = 3  # prior evaluations in a row without improvement before the sampler gets turns
SAMPLER_EVERY = 3  # once the prior stagnates, every third proposal is the sampler's
FRONT_EVERY = 2  # and every second of the prior's proposals is for the front
MIN_GAIN = 0.005  # an improvement lowers the best feasible energy by more than this fraction
#: Acquisition factor of a config whose estimated free memory per GPU is no more than that of a config that ran
#: out of memory (the memory model ranks configs well but its absolute numbers are estimates: not zero).
OOM_PENALTY = 0.05
#: Central coverage of a prediction's ``Measurement.intervals`` (the surrogate serves 80 % intervals:
#: :data:`recommender.surrogate.training.COVERAGE`); its half-width in log space is ``Z * sigma`` with ``Z`` the
#: normal quantile of ``(1 + INTERVAL_COVERAGE) / 2`` (1.28).
INTERVAL_COVERAGE = 0.8
#: Spread of the log residual before any measurement for a metric the predictor gives no interval for (about
#: +-20 %; the rough priors of the benchmark, and any predictor without intervals, use it).
DEFAULT_PRIOR_SIGMA = 0.2
#: Floor of a spread read from intervals (a predictor that gives zero-width intervals is not exact).
MIN_PRIOR_SIGMA = 0.02


@dataclass(frozen=True)
class Proposal:
    """A config the prior proposes, with its corrected prediction (for the trial's record)."""

    config: ServingConfig
    energy_per_output_token_j: float
    p_feasible: float
    acquisition: float
    mode: str  # "energy" or "front"


def is_prior_proposal(trial: optuna.trial.FrozenTrial) -> bool:
    """True for a trial the prior proposed (``proposed_by`` starts with ``prior:``)."""
    return str(trial.user_attrs.get(PROPOSED_BY, "")).startswith(PRIOR_PREFIX)


@dataclass(frozen=True)
class Turns:
    """Who proposes the next trials: the prior the first ``prior`` of them, the sampler the rest; ``front``: the
    prior has stopped improving the best feasible energy and proposes for the Pareto front instead."""

    prior: int
    front: bool


def plan_turns(trials: Sequence[optuna.trial.FrozenTrial], slots: int, first_k: int,
               patience: int = PATIENCE) -> Turns:
    """Turns for the next ``slots`` proposals (see the module docstring).

    Reads the evaluated and running trials in number order: running ones count for alternation, not for
    stagnation (their outcome is unknown).
    """
    done: list[tuple[bool, float | None]] = []  # (prior?, energy when it met the SLO)
    order: list[bool] = []  # prior? for evaluated and running trials, in number order
    modes: list[str] = []  # modes of the prior's running and finished proposals, in number order
    for t in sorted(trials, key=lambda t: t.number):
        if t.state.name in ("RUNNING", "COMPLETE", "FAIL") and is_prior_proposal(t):
            modes.append(str(t.user_attrs.get("prior_mode", "energy")))
        if t.state.name == "RUNNING":
            order.append(is_prior_proposal(t))
        elif t.user_attrs.get("kind") == EVALUATED and t.state.is_finished():
            feasible = t.state.name == "COMPLETE" and bool(t.user_attrs.get("meets_slo"))
            energy = t.user_attrs.get("metrics", {}).get(ENERGY_KEY) if feasible else None
            done.append((is_prior_proposal(t), energy))
            order.append(is_prior_proposal(t))
    best: float | None = None
    gains: list[bool] = []  # per prior evaluation: did it improve the best feasible energy so far?
    for prior, energy in done:
        better = energy is not None and (best is None or energy < best * (1 - MIN_GAIN))
        if prior:
            gains.append(better)
        if energy is not None and (best is None or energy < best):
            best = energy
    stagnant = len(gains) >= patience and not any(gains[-patience:])
    n = 0
    for _ in range(slots):
        turn = len(order) < first_k or not stagnant or not all(order[-(SAMPLER_EVERY - 1):] or [False])
        order.append(turn)
        n += turn
    front = stagnant and "front" not in modes[-(FRONT_EVERY - 1):]
    return Turns(n, front)


@dataclass(frozen=True)
class _Observed:
    config: ServingConfig
    logs: np.ndarray  # log of each modelled metric (NaN when not measured)
    meets_slo: bool


class PriorGuide:
    """Proposes configs from a predictor's predictions, corrected by the study's measurements.

    Args:
        space: the searched knob space.
        scenario, slo: the study's scenario and SLO (targets are modelled; ``attainment`` is not).
        objective: the study's latency objective key (the front's second axis).
        predictor: any Evaluator; configs it fails on, or predicts no energy for, are left out of the pool. A
            missing SLO-metric prediction counts as "on the limit".
        feasible: ``config -> object with .ok`` (the search's feasibility check); rejected configs never enter.
        limit: most configs scored (:data:`POOL_LIMIT`).
        seed: seeds the pool's random draw for large spaces (the study's seed, so every worker has the same pool).
        prior_sigma: spread of the log residual before any measurement, for every metric; ``None`` (default): per
            metric, from the predictor's own intervals over the pool (:meth:`_calibrate`), else
            :data:`DEFAULT_PRIOR_SIGMA`.

    Not thread-safe; one per worker. The predictor is not closed here.
    """

    def __init__(self, space: SearchSpace, scenario: Scenario, slo: SLO, objective: str, predictor: Evaluator,
                 feasible: Callable[[ServingConfig], Any], *, limit: int = POOL_LIMIT, seed: int = 0,
                 prior_sigma: float | None = None) -> None:
        self.space, self.scenario, self.slo, self.predictor = space, scenario, slo, predictor
        self.feasible, self.limit, self.seed, self.prior_sigma = feasible, limit, seed, prior_sigma
        self.metrics: tuple[str, ...] = tuple(dict.fromkeys([ENERGY_KEY, objective, *(t.key for t in slo.targets)]))
        self._log_limits = {t.key: math.log(t.limit_s) for t in slo.targets}
        self._limit_cols = {i: self._log_limits[k] for i, k in enumerate(self.metrics) if k in self._log_limits}
        sigma = DEFAULT_PRIOR_SIGMA if prior_sigma is None else prior_sigma
        #: per metric: the prior spread of the log residual (calibrated from the intervals when the pool is scored)
        self.sigmas = {m: sigma for m in self.metrics}
        self._models = {m: ResidualModel(sigma) for m in self.metrics}
        self._gpu = scenario.hardware.spec
        self._pool_size: int | None = None
        # every config predicted so far, pool first: key -> row of the arrays below
        self._row: dict[str, int] = {}
        self._configs: list[ServingConfig] = []
        self._keys: list[str] = []
        self._knobs = np.zeros((0, 0))  # standardized knob features
        self._logs = np.zeros((0, len(self.metrics)))  # log predictions (NaN row: unusable)
        self._scaler: Standardizer | None = None
        self._free_mem = np.zeros(0)  # per row: the memory model's free bytes per GPU (see OOM_PENALTY)
        self._log_mean, self._log_sd = np.zeros(len(self.metrics)), np.ones(len(self.metrics))

    # ---- pool and predictions -------------------------------------------------------------------------------
    @property
    def pool(self) -> list[ServingConfig]:
        """The feasible candidate configs with usable predictions (scored on first use)."""
        if self._pool_size is None:
            cands = [c for c in candidate_configs(self.space, self.limit, self.seed) if self.feasible(c).ok]
            preds = self.predictor.evaluate_many(cands, self.scenario) if cands else []
            if self.prior_sigma is None:
                self._calibrate(preds)
            logs = [self._log_predictions(m) for m in preds]
            usable = [(c, y) for c, y in zip(cands, logs, strict=True) if not np.isnan(y[0])]
            self._pool_size = 0
            if usable:
                self._scaler = Standardizer(knob_features([c for c, _ in usable], self._gpu))
                arr = np.array([y for _, y in usable])
                self._log_mean, self._log_sd = arr.mean(axis=0), np.maximum(arr.std(axis=0), 0.05)
                self._add(usable)
                self._pool_size = len(self._configs)
            logger.info("prior guide: %s scored %d feasible configs, %d usable", self.predictor.name, len(cands),
                        self._pool_size)
        return self._configs[: self._pool_size]

    def _calibrate(self, preds: Sequence[Measurement]) -> None:
        """Per metric with intervals: the prior spread of the log residual is the median over the pool of each
        prediction's interval read as a normal one, ``log(high / low) / (2 Z)`` (see :data:`INTERVAL_COVERAGE`).

        The median keeps the residual model stationary (one spread per metric) and is not pulled by the few
        configs a predictor widens most (out of distribution, clock or power limit moved by the DVFS model)."""
        from scipy.stats import norm

        z = float(norm.ppf((1 + INTERVAL_COVERAGE) / 2))
        for k in self.metrics:
            lo_hi = np.array([[math.log(iv[0] / m.value(k)), math.log(iv[1] / m.value(k))]  # type: ignore[operator]
                              for m in preds if m.ok and (iv := m.intervals.get(k)) and m.value(k)
                              and iv[0] > 0 and iv[1] > 0]).reshape(-1, 2)
            if not len(lo_hi):
                continue
            self.sigmas[k] = max(float(np.median((lo_hi[:, 1] - lo_hi[:, 0]) / (2 * z))), MIN_PRIOR_SIGMA)
            self._models[k] = ResidualModel(self.sigmas[k])

    def _add(self, rows: Sequence[tuple[ServingConfig, np.ndarray]]) -> None:
        """Append configs with their log predictions (new keys only)."""
        rows = [(c, y) for c, y in rows if config_key(c) not in self._row]
        if not rows or self._scaler is None:
            return
        for c, _ in rows:
            self._row[config_key(c)] = len(self._configs)
            self._configs.append(c)
            self._keys.append(config_key(c))
        knobs = self._scaler(knob_features([c for c, _ in rows], self._gpu))
        self._knobs = np.vstack([self._knobs, knobs]) if len(self._knobs) else knobs
        self._free_mem = np.concatenate([self._free_mem, free_memory_bytes_per_gpu([c for c, _ in rows],
                                                                                  self.scenario)])
        self._logs = np.vstack([self._logs, np.array([y for _, y in rows])])

    def _rows(self, configs: Sequence[ServingConfig]) -> list[int]:
        """Rows of ``configs`` (predicted on first sight); configs the predictor cannot score are left out."""
        new = list({config_key(c): c for c in configs if config_key(c) not in self._row}.values())
        if new:
            self._add(list(zip(new, (self._log_predictions(m) for m in self.predictor.evaluate_many(
                new, self.scenario)), strict=True)))
        return [r for c in configs if (r := self._row.get(config_key(c))) is not None and not np.isnan(
            self._logs[r, 0])]

    def _log_predictions(self, m: Measurement) -> np.ndarray:
        out = np.full(len(self.metrics), np.nan)
        if not m.ok:
            return out
        for i, k in enumerate(self.metrics):
            v = m.value(k)
            if v is not None and v > 0:
                out[i] = math.log(v)
            elif k in self._log_limits:
                out[i] = self._log_limits[k]
        if np.isnan(out[0]):
            out[:] = np.nan
        return out

    def _features(self, rows: np.ndarray, metric: int) -> np.ndarray:
        """Standardized knob features plus the prior's standardized log prediction of ``metric``."""
        z = (self._logs[rows, metric] - self._log_mean[metric]) / self._log_sd[metric]
        return np.column_stack([self._knobs[rows], z])

    # ---- proposals ------------------------------------------------------------------------------------------
    def propose(self, trials: Sequence[optuna.trial.FrozenTrial], n: int = 1, front: bool = False) -> list[Proposal]:
        """Up to ``n`` pool configs to evaluate next, best first; none already evaluated, running or queued.

        Args:
            trials: every trial of the study (any worker's), e.g. ``study.get_trials(deepcopy=False)``.
            front: rank by the hypervolume the config is expected to add to the measured feasible front
                (energy vs the objective) instead of by expected energy improvement; falls back to the latter
                when no config is expected to add any.
        """
        size = len(self.pool)
        if n <= 0 or not size:
            return []
        seen, observed, pending, oom = self._read(trials)
        cand = np.array([i for i, k in enumerate(self._keys[:size]) if k not in seen], dtype=int)
        if not len(cand):
            return []
        rows = self._rows([o.config for o in observed])
        by_row = {self._row[config_key(o.config)]: o for o in observed}
        observed = [by_row[r] for r in rows]
        believed = np.array(self._rows(pending), dtype=int)
        models = [self._fit(i, observed) for i in range(len(self.metrics))]
        feasible = np.array([o.logs[:2] for o in observed if o.meets_slo and not np.isnan(o.logs[1])]).reshape(-1, 2)
        oom_free = free_memory_bytes_per_gpu(oom, self.scenario).max() if oom else -math.inf
        runs = np.where(self._free_mem[cand] <= oom_free, OOM_PENALTY, 1.0)  # as short of memory as an OOM
        out: list[Proposal] = []
        while len(out) < n and len(cand):
            if len(believed):
                models = [self._believe(mdl, believed, i) for i, mdl in enumerate(models)]
            mean, std = zip(*(mdl.predict(self._features(cand, i)) for i, mdl in enumerate(models)), strict=True)
            mu, sd = self._logs[cand] + np.column_stack(mean), np.column_stack(std)
            pof = p_feasible(mu, sd, self._limit_cols) * runs
            acq = self._front_gain(mu, feasible) * pof if front else np.zeros(len(cand))
            mode = "front"
            if not acq.max() > 0:
                mode = "energy"
                best = float(feasible[:, 0].min()) if len(feasible) else float(mu[:, 0].max())
                acq = expected_improvement(mu[:, 0], sd[:, 0], best) * pof
            j = int(np.argmax(acq))
            out.append(Proposal(self._configs[cand[j]], float(math.exp(mu[j, 0])), float(pof[j]), float(acq[j]),
                                mode))
            believed = cand[j : j + 1]
            cand, runs = np.delete(cand, j), np.delete(runs, j)
        return out

    def _front_gain(self, mu: np.ndarray, front: np.ndarray) -> np.ndarray:
        """Hypervolume (log energy x log objective) each candidate's corrected prediction adds to ``front``; the
        reference is the worst of the front and the predictions, 10 % out (the objective's SLO limit if any)."""
        pts = mu[:, :2]
        ref = np.max(np.vstack([front, pts]), axis=0) + math.log(1.1)
        if 1 in self._limit_cols:
            ref[1] = self._limit_cols[1]
        return hv_improvement(pts, front, ref)

    def _fit(self, metric: int, observed: list[_Observed]) -> ResidualModel:
        """The residual model of ``metric`` fitted on the measurements that have a value for it."""
        rows = [o for o in observed if not np.isnan(o.logs[metric])]
        idx = np.array([self._row[config_key(o.config)] for o in rows], dtype=int)
        x = self._features(idx, metric) if len(idx) else np.zeros((0, 0))
        y = np.array([o.logs[metric] for o in rows]) - self._logs[idx, metric] if len(idx) else np.zeros(0)
        return self._models[self.metrics[metric]].fit(x, y)

    def _believe(self, model: ResidualModel, rows: np.ndarray, metric: int) -> ResidualModel:
        """``model`` also believing its own mean at ``rows`` (kriging believer for pending configs)."""
        x = self._features(rows, metric)
        mean, _ = model.predict(x)
        return model.condition(x, mean)

    def _read(self, trials: Sequence[optuna.trial.FrozenTrial]
              ) -> tuple[set[str], list[_Observed], list[ServingConfig], list[ServingConfig]]:
        """Keys to exclude, evaluated configs with their log metrics, running/queued configs, and evaluated configs
        that ran out of memory."""
        from recommender.config import ServingConfig

        seen: set[str] = set()
        observed: dict[str, _Observed] = {}
        pending: dict[str, ServingConfig] = {}
        oom: dict[str, ServingConfig] = {}
        for t in trials:
            key = held_config_key(t, self.space)
            if key is None or t.user_attrs.get("kind") == SKIPPED:  # a skipped trial did not evaluate its config
                continue
            seen.add(key)
            if t.state.name in ("WAITING", "RUNNING"):
                pending.setdefault(key, ServingConfig.model_validate_json(key))
            elif t.user_attrs.get("kind") == EVALUATED and t.state.name == "FAIL" \
                    and t.user_attrs.get("failure_reason") == "oom":
                oom.setdefault(key, ServingConfig.model_validate_json(key))
            elif t.user_attrs.get("kind") == EVALUATED and t.state.name == "COMPLETE" and key not in observed:
                metrics = t.user_attrs.get("metrics", {})
                y = np.array([math.log(v) if (v := metrics.get(k)) and v > 0 else np.nan for k in self.metrics])
                if not np.isnan(y[0]):
                    observed[key] = _Observed(ServingConfig.model_validate_json(key), y,
                                              bool(t.user_attrs.get("meets_slo")))
        pending_list = [c for k, c in pending.items() if k not in observed]
        return seen, list(observed.values()), pending_list, list(oom.values())


def describe(p: Proposal) -> dict[str, Any]:
    """The user attributes a proposal's trial carries (corrected prediction at proposal time)."""
    return {"prior_mode": p.mode, "prior_energy_per_output_token_j": p.energy_per_output_token_j,
            "prior_p_feasible": p.p_feasible}


__all__ = ["PriorGuide", "Proposal", "Turns", "plan_turns", "is_prior_proposal", "describe", "PROPOSED_BY", "PRIOR_PREFIX"]
