"""The search loop: ask configs, reject infeasible ones, evaluate the rest grouped by engine, tell results.

One call of :func:`run_study` is one *worker*. Workers on several machines running the same command with
the same RDB storage share the study; together they spend exactly ``n_evals`` evaluations:

- **Budget.** Only ``kind == evaluated`` trials count (see :mod:`recommender.search.trials`). A worker asks
  only while ``evaluations + running < n_evals`` and, after asking, keeps a trial only if the evaluations plus
  the running trials *numbered below it* leave room; trial numbers come from the database, so the first
  ``n_evals`` slots win and racing workers cannot overshoot.
- **Never evaluated twice.** Before evaluating, a config already evaluated reuses that result (``duplicate``);
  a config a lower-numbered running or queued trial already holds is skipped. Queued trials (the prior's
  proposals, retries, fallbacks) carry their params from the start, so two workers queueing the same config
  cannot both evaluate it. Race window: if another worker's *sampled* trial was created earlier but writes
  its config after this worker's check (the sampling time, milliseconds), both evaluate it; the later one
  is still a real evaluation and is counted.
- **Never lost.** A worker that dies stops its heartbeats; another worker fails its trial after the grace
  period and Optuna re-queues the same params (``WAITING``), which the next ``ask`` picks up. Ctrl-C or an
  environment error marks held trials ``interrupted`` and re-queues them, then logs the resume command.
  Limitation: a worker killed between ``ask`` and its first heartbeat (milliseconds) leaves a RUNNING trial
  Optuna never calls stale; it holds one budget slot until failed by hand
  (``optuna.load_study(...).tell(<number>, state=TrialState.FAIL)``).
  A trial finished by another worker while this one holds it (its heartbeat taken for stale, or SQLite, which
  does not lock rows, handing one queued trial to two workers) is logged and let go. Several workers need
  PostgreSQL (or another RDB that locks rows).
- **Infeasible configs** (``check_feasibility``) are PRUNED with a positive ``feasibility`` constraint and never
  reach the evaluator. Samplers that keep proposing known configs (small discrete spaces) get a random unseen
  feasible config enqueued after a few idle proposals; when none is left the study stops as ``exhausted``.
- **Prior-guided.** With a predictor (``warm_start``), :mod:`recommender.search.guided` decides before each step
  how many of its slots the predictor's corrected prior fills, and enqueues those configs; the sampler fills
  the rest. Enqueued trials go through the same checks as the sampler's.
- **Fewer restarts.** With ``batch_size > 1`` a worker asks several configs at once (constant liar keeps them
  apart), orders them by :meth:`ServingConfig.engine_key` (the last server's key first) and hands them to
  ``evaluator.evaluate_many``, which shares one server start per engine key.
"""

from __future__ import annotations

import logging
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from recommender.errors import InputError
from recommender.search import trials as tr
from recommender.search._space import SearchSpace, UnseenPicker, config_key, params_of
from recommender.search.guided import PRIOR_PREFIX, PROPOSED_BY, PriorGuide, describe, plan_turns
from recommender.search.progress import Progress
from recommender.search.result import StudyResult, build_result
from recommender.search.samplers import make_sampler
from recommender.search.storage import (
    MEMORY,
    HeartbeatKeeper,
    StudyLocation,
    default_study_name,
    fail_stale,
    open_storage,
    resolve_location,
)

if TYPE_CHECKING:
    import optuna

    from recommender.config import Scenario, ServingConfig
    from recommender.evaluators.base import Evaluator
    from recommender.measurement import Measurement
    from recommender.slo import SLO

logger = logging.getLogger(__name__)
STUCK_AFTER = 3  # idle proposals in a row before a random unseen config is enqueued
FeasibilityFn = Callable[["ServingConfig", "Scenario"], Any]


def run_study(
    scenario: Scenario, space: SearchSpace | str, slo: SLO, evaluator: Evaluator, n_evals: int, *,
    objective: str | None = None, sampler: str = "tpe", seed: int = 0,
    storage: str | optuna.storages.BaseStorage | None = None,
    study_name: str | None = None, run_dir: str | Path | None = None, runs_root: str | Path = "runs",
    warm_start: Evaluator | None = None, warm_start_k: int = 5, batch_size: int = 1,
    feasibility: FeasibilityFn | None = None, check_feasible: bool = True, heartbeat_interval_s: int = 30,
    grace_period_s: int | None = None, max_retry: int | None = 3, poll_interval_s: float = 2.0,
    progress: bool = False, save_measurements: bool = True, resume_command: str | None = None,
    max_idle: int | None = None, confirm_repeats: int = 0,
) -> StudyResult:
    """Search ``space`` for the energy/latency Pareto front of ``scenario`` under ``slo``; one worker.

    Args:
        scenario: model, hardware and workload held fixed.
        space: a knob space or its name/path (``recommender.space.load_space``).
        slo: every target becomes a constraint ``observed - limit <= 0``.
        evaluator: measures (vLLM), predicts (surrogate) or replays configs. Not closed here.
        n_evals: total evaluations the study should hold (a rerun only runs the remainder).
        objective: latency objective key (default: the SLO's tightest target).
        sampler: ``tpe`` (multivariate, constrained), ``gp``, ``nsga2`` or ``random``.
        seed: sampler seed; worker ``i`` of a shared study uses ``seed + 1000 i``.
        storage: RDB URL shared by workers, ``"memory"``, None for SQLite in the run directory, or an Optuna
            storage object used as given (no heartbeats added).
        study_name, run_dir, runs_root: override the deterministic name / directory
            (:mod:`recommender.search.storage`).
        warm_start: a predictor (surrogate evaluator) that guides the search: its predictions, corrected online
            by every measurement, propose configs between the sampler's (:mod:`recommender.search.guided`).
        warm_start_k: evaluations the predictor proposes before it shares turns with the sampler; after them it
            keeps proposing while it improves the best feasible energy, then alternates with the sampler.
        batch_size: configs asked per step and given to ``evaluate_many`` together (restart sharing).
        feasibility: ``(config, scenario) -> .ok/.reasons``; default ``recommender.space.check_feasibility``.
        check_feasible: False skips the feasibility check (replay tables of configs known to run).
        heartbeat_interval_s, grace_period_s, max_retry: dead-worker detection (RDB storages only).
        poll_interval_s: wait between looks at the study while other workers hold the remaining budget.
        progress: show a tqdm bar on stderr.
        save_measurements: write each evaluated Measurement to ``<run dir>/measurements``.
        resume_command: the command to log when interrupted (the CLI passes its own).
        max_idle: proposals in a row that evaluate nothing before giving up (default ``max(50, 5 n_evals)``).
        confirm_repeats: once the budget is spent, run the best config up to this many more times while it meets
            the SLO with less than :data:`~recommender.search.result.BOUNDARY_HEADROOM` to spare, and judge it on
            the median of its runs (:mod:`recommender.search.confirm`); 0 (default) runs no repeat. Repeats are
            extra to ``n_evals``.

    Returns:
        A :class:`StudyResult` over every evaluation in the study (all workers'), not only this worker's.

    Raises:
        InputError: bad arguments, or an existing study with the same name made for other settings.
        KeyboardInterrupt: after held trials are re-queued and the resume command is logged.
    """
    if n_evals < 1:
        raise InputError("--n-evals", n_evals, "give at least 1 evaluation")
    if batch_size < 1:
        raise InputError("--batch-size", batch_size, "give at least 1")
    if confirm_repeats < 0:
        raise InputError("--confirm-repeats", confirm_repeats, "give 0 (no repeats) or more")
    if isinstance(space, str):
        from recommender.space import load_space

        space = load_space(space)
    objective = tr.resolve_objective(objective, slo)
    if feasibility is None and check_feasible:
        from recommender.space import check_feasibility as feasibility
    name = study_name or default_study_name(scenario, space.name, space.hash(), objective, slo, sampler, seed)
    storage_obj = None if storage is None or isinstance(storage, str) else storage
    url = MEMORY if storage_obj is not None else cast("str | None", storage)
    loc = resolve_location(scenario, name, url, run_dir, runs_root)
    if storage_obj is not None:
        loc = StudyLocation(loc.study_name, loc.run_dir, f"<{type(storage_obj).__name__}>")
    runner = _Runner(storage_obj, loc, scenario, space, slo, objective, evaluator, n_evals, sampler, seed, batch_size,
                     feasibility if check_feasible else None, heartbeat_interval_s, grace_period_s, max_retry,
                     poll_interval_s, progress, save_measurements, max_idle or max(50, 5 * n_evals))
    runner.confirm_repeats = confirm_repeats
    runner.resume_command = resume_command or (
        f"run_study(..., n_evals={n_evals}, study_name={name!r}, storage={loc.storage_url!r}) with the same arguments")
    return runner.run(warm_start, warm_start_k)


class _Runner:
    def __init__(self, storage: optuna.storages.BaseStorage | None, loc: StudyLocation, scenario: Scenario,
                 space: SearchSpace, slo: SLO, objective: str, evaluator: Evaluator, n_evals: int, sampler: str,
                 seed: int, batch_size: int,
                 feasibility: FeasibilityFn | None, hb_s: int, grace_s: int | None, max_retry: int | None,
                 poll_s: float, progress: bool, save: bool, max_idle: int) -> None:
        self.loc, self.scenario, self.space, self.slo, self.objective = loc, scenario, space, slo, objective
        self.evaluator, self.n_evals, self.sampler_name, self.seed = evaluator, n_evals, sampler, seed
        self.batch_size, self.feasibility, self.poll_s, self.save = batch_size, feasibility, poll_s, save
        self.max_retry, self.max_idle, self.show_progress = max_retry, max_idle, progress
        self.objectives = tr.objective_keys(objective)
        self.worker = f"{uuid.uuid4().hex[:8]}"
        self.storage = storage if storage is not None else open_storage(loc.storage_url, hb_s, grace_s, max_retry)
        self.study = self._open_study()
        self.held: dict[int, tuple[optuna.Trial, ServingConfig | None]] = {}
        self.idle = 0
        self.last_engine: tuple[Any, ...] | None = None
        self._picker = UnseenPicker(space, np.random.default_rng(seed + 7919 * self.worker_index))
        self._feasible_cache: dict[str, Any] = {}
        self._decoded: dict[int, Measurement] = {}
        self.guide: PriorGuide | None = None
        self.guide_k = 0
        self.resume_command = ""
        self.confirm_repeats = 0

    # ---- setup -------------------------------------------------------------------------------------------
    def _open_study(self) -> optuna.Study:
        import optuna

        attrs = {"scenario_key": self.scenario.key(), "scenario": self.scenario.model_dump(mode="json"),
                 "slo": str(self.slo), "objective": self.objective, "space": self.space.name,
                 "space_hash": self.space.hash(), "sampler": self.sampler_name, "seed": self.seed, "schema_version": 1}
        probe = optuna.create_study(study_name=self.loc.study_name, storage=self.storage, load_if_exists=True,
                                    directions=["minimize", "minimize"])
        have = probe.user_attrs.get("recommender")
        if have is None:
            probe.set_user_attr("recommender", attrs)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # set_metric_names is "experimental" since Optuna 3.2
                probe.set_metric_names(list(self.objectives))
        else:
            for k in ("scenario_key", "slo", "objective", "space_hash"):
                if have.get(k) != attrs[k]:
                    raise InputError("--study-name", self.loc.study_name,
                                     f"this study was made for {k} {have.get(k)!r}, not {attrs[k]!r}; "
                                     "use the original settings or another --study-name")
        self.worker_index = self._register_worker(probe)
        sampler = make_sampler(self.sampler_name, self.seed + 1000 * self.worker_index, self.n_evals)
        return optuna.load_study(study_name=self.loc.study_name, storage=self.storage, sampler=sampler)

    def _register_worker(self, study: optuna.Study) -> int:
        import socket

        stamp = time.time()
        study.set_user_attr(f"worker:{self.worker}", {"host": socket.gethostname(), "started": stamp})
        live = sorted((v.get("started", 0.0), k) for k, v in study.user_attrs.items() if k.startswith("worker:"))
        recent = [k for s, k in live if stamp - s < 6 * 3600]  # workers of the last hours share the seed space
        return recent.index(f"worker:{self.worker}") if f"worker:{self.worker}" in recent else 0

    # ---- main loop -----------------------------------------------------------------------------------------
    def run(self, warm_start: Evaluator | None, warm_start_k: int) -> StudyResult:
        t0 = tr.tally(self.study.get_trials(deepcopy=False))
        logger.info("study %s: %d of %d evaluations done; storage %s; run dir %s", self.loc.study_name,
                    t0.evaluations, self.n_evals, self.loc.storage_url, self.loc.run_dir)
        bar = Progress(self.n_evals, t0.evaluations, self.show_progress, desc=self.loc.study_name[:24])
        stop = "budget"
        try:
            with HeartbeatKeeper(self.storage) as hb:
                self.hb = hb
                if warm_start is not None and t0.evaluations < self.n_evals:
                    self._start_guide(warm_start, warm_start_k)
                waited = False
                while True:
                    fail_stale(self.study)
                    t = tr.tally(self.study.get_trials(deepcopy=False))
                    if self.show_progress:
                        bar.update(t.evaluations, t, self._measurements(), self.slo, self.objective)
                    if t.evaluations >= self.n_evals:
                        break
                    free = self.n_evals - t.evaluations - len(t.running)
                    if free <= 0:
                        if not waited:
                            logger.info("waiting for %d trial(s) running on other workers", len(t.running))
                        waited = True
                        time.sleep(self.poll_s)
                        continue
                    waited = False
                    if self.idle >= STUCK_AFTER and t.waiting == 0:
                        got = self._enqueue_unseen(t)
                        if not got and not t.running:
                            stop = "exhausted"
                            break
                        if not got:
                            time.sleep(self.poll_s)
                            continue
                    if self.idle >= self.max_idle:
                        stop = "stalled"
                        break
                    k = min(self.batch_size, free)
                    if self.guide is not None and t.waiting == 0:
                        self._enqueue_guided(k)
                    self._step(k, t)
        except BaseException as e:
            self._abandon("interrupted" if isinstance(e, KeyboardInterrupt) else f"error: {type(e).__name__}")
            if isinstance(e, KeyboardInterrupt):
                logger.warning("interrupted; completed trials are kept. Resume with:\n  %s", self.resume_command)
            raise
        finally:
            bar.close()
        if self.confirm_repeats and stop in ("budget", "exhausted"):
            self._confirm()
        if stop != "budget":
            logger.warning("study %s stopped early (%s) after %d evaluations: no feasible config is left that was not "
                           "evaluated already", self.loc.study_name, stop, tr.tally(self.study.trials).evaluations)
        return build_result(self.study, self.loc, self.scenario, self.slo, self.objective, self.sampler_name,
                            self.n_evals, stop, self.resume_command)

    def _confirm(self) -> None:
        """Repeat a best config at the SLO boundary (:func:`recommender.search.confirm.confirm_best`); an interrupt
        keeps the repeats stored so far (a rerun goes on from them)."""
        from recommender.search.confirm import confirm_best
        from recommender.search.result import BOUNDARY_HEADROOM

        n = confirm_best(self.study, self.space, self.scenario, self.slo, self.objective, self.evaluator,
                         self.confirm_repeats, headroom=BOUNDARY_HEADROOM, save=self._save)
        if n:
            logger.info("study %s: %d repeat run(s) of configs at the SLO boundary", self.loc.study_name, n)

    def _start_guide(self, predictor: Evaluator, k: int) -> None:
        self.guide = PriorGuide(self.space, self.scenario, self.slo, self.objective, predictor, self._feasible,
                                seed=self.seed)
        self.guide_k = k
        if self.study.user_attrs.get("warm_start") is None:
            self.study.set_user_attr("warm_start", {"predictor": predictor.name, "mode": "guided", "first_k": k,
                                                    "pool": len(self.guide.pool)})

    def _enqueue_guided(self, slots: int) -> None:
        """Enqueue the prior's proposals for its share of the next ``slots`` trials (:func:`plan_turns`)."""
        assert self.guide is not None
        trials = self.study.get_trials(deepcopy=False)
        turns = plan_turns(trials, slots, self.guide_k)
        for p in self.guide.propose(trials, turns.prior, front=turns.front) if turns.prior else []:
            attrs = {PROPOSED_BY: f"{PRIOR_PREFIX}{self.guide.predictor.name}", **describe(p)}
            self.study.enqueue_trial(params_of(self.space, p.config), user_attrs=attrs)
            logger.debug("prior proposes %s (%s): corrected energy %.4g J/token, P(meets the SLO) %.2f",
                         p.config.short(), p.mode, p.energy_per_output_token_j, p.p_feasible)

    def _ask(self) -> optuna.Trial:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "heartbeat is supposed to be used with Study.optimize": we beat ourselves
            trial = self.study.ask()
        self.hb.hold(trial._trial_id)
        return trial

    def _step(self, k: int, t: tr.Tally) -> None:
        asked: list[tuple[optuna.Trial, ServingConfig]] = []
        for _ in range(k):
            trial = self._ask()
            self.held[trial.number] = (trial, None)
            try:
                config = self.space.suggest(trial)
            except InputError as e:  # a param combination the space itself rejects
                self._finish(trial, tr.tell_infeasible, [str(e)])
                continue
            self.held[trial.number] = (trial, config)
            if not self._lost(trial, tr.mark_config, trial, config, self.worker):
                asked.append((trial, config))
        pending: list[tuple[optuna.Trial, ServingConfig]] = []
        for trial, config in asked:
            key = config_key(config)
            if key in t.infeasible_keys:
                self._finish(trial, tr.tell_infeasible, [t.infeasible_keys[key]])
            elif key in t.evaluated_by_key:
                self._finish(trial, tr.tell_copy, t.evaluated_by_key[key])
            elif not (fz := self._feasible(config)).ok:
                self._finish(trial, tr.tell_infeasible, list(fz.reasons))
            else:
                pending.append((trial, config))
        if not pending:
            return
        fresh = tr.tally(self.study.get_trials(deepcopy=False))
        mine = {tl.number for tl, _ in pending}
        to_eval: list[tuple[optuna.Trial, ServingConfig]] = []
        for trial, config in sorted(pending, key=lambda p: p[0].number):
            key = config_key(config)
            if key in fresh.evaluated_by_key:
                self._finish(trial, tr.tell_copy, fresh.evaluated_by_key[key])
                continue
            lower = [r for r in fresh.running if r.number < trial.number]
            # the lowest-numbered running or queued trial holding a config owns it; queued and just-dequeued
            # trials are known by their fixed params before they are marked
            holders = lower + [r for r in fresh.queued if r.number < trial.number]
            dup = [r for r in holders if r.number not in mine and tr.held_config_key(r, self.space) == key]
            if dup:
                self._finish(trial, tr.tell_skipped, "running_elsewhere", dup[0].number, idle=False)
            elif fresh.evaluations + len(lower) >= self.n_evals:
                self._finish(trial, tr.tell_skipped, "budget_full", idle=False)
            else:
                to_eval.append((trial, config))
        if to_eval:
            self._evaluate(to_eval)

    def _evaluate(self, batch: list[tuple[optuna.Trial, ServingConfig]]) -> None:
        last = self.last_engine
        batch = sorted(batch, key=lambda p: (p[1].engine_key() != last, repr(p[1].engine_key())))
        first: dict[str, int] = {}
        unique = []
        for i, (_, c) in enumerate(batch):
            if config_key(c) not in first:
                first[config_key(c)] = i
                unique.append(c)
        results = self.evaluator.evaluate_many(unique, self.scenario)
        if len(results) != len(unique):
            raise RuntimeError(f"{type(self.evaluator).__name__}.evaluate_many returned {len(results)} results "
                               f"for {len(unique)} configs")
        by_key = {config_key(c): m for c, m in zip(unique, results, strict=True)}
        told: dict[str, optuna.trial.FrozenTrial] = {}
        for i, (trial, c) in enumerate(batch):
            key = config_key(c)
            if first[key] == i:
                m = by_key[key]
                self._save(m)
                if not self._lost(trial, self._tell_first, told, key, trial, m):
                    self._release(trial)
                self.idle = 0
            elif key in told:
                self._finish(trial, tr.tell_copy, told[key])
            else:  # its first copy was lost to another worker
                self._finish(trial, tr.tell_skipped, "running_elsewhere", idle=False)
            self.last_engine = c.engine_key()

    def _tell_first(self, told: dict[str, optuna.trial.FrozenTrial], key: str, trial: optuna.Trial,
                    m: Measurement) -> None:
        told[key] = tr.tell_measurement(self.study, trial, m, self.objectives, self.slo)

    def _lost(self, trial: optuna.Trial, fn: Callable[..., Any], *args: Any) -> bool:
        """Run ``fn(*args)`` on a trial this worker holds; True (and the trial let go) when another worker finished
        it meanwhile: its heartbeat was taken for stale, or SQLite handed one queued trial to two workers (SQLite
        does not lock rows; several workers need PostgreSQL)."""
        from optuna.exceptions import UpdateFinishedTrialError

        try:
            fn(*args)
        except (UpdateFinishedTrialError, ValueError):
            # the storage refuses the write (UpdateFinishedTrialError), or Study.tell already read the trial as
            # finished (ValueError "Cannot tell a COMPLETE trial"); any other ValueError is this worker's own
            if not self.study._storage.get_trial(trial._trial_id).state.is_finished():
                raise
            logger.warning("trial %d was finished by another worker while this one held it; moving on", trial.number)
            self._release(trial)
            return True
        return False

    def _finish(self, trial: optuna.Trial, tell: Callable[..., Any], *args: Any, idle: bool = True) -> None:
        """Finish a trial that spends no evaluation with ``tell(study, trial, *args)``; ``idle`` counts it as a
        proposal that led nowhere."""
        if not self._lost(trial, tell, self.study, trial, *args):
            self._release(trial)
        self.idle += idle

    def _release(self, trial: optuna.Trial) -> None:
        self.held.pop(trial.number, None)
        self.hb.release(trial._trial_id)

    def _abandon(self, reason: str) -> None:
        """Fail held trials as ``interrupted`` and re-queue their params so nothing is lost."""
        import optuna
        from optuna.trial import TrialState

        for number, (trial, _) in list(self.held.items()):
            try:
                trial.set_user_attr("kind", tr.INTERRUPTED)
                trial.set_user_attr("failure_reason", reason)
                frozen = self.study.tell(trial, state=TrialState.FAIL)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=self.max_retry)(self.study, frozen)
            except Exception as e:  # noqa: BLE001 - best effort; the heartbeat check catches what is left
                logger.debug("could not re-queue trial %d: %s", number, e)
            self._release(trial)

    # ---- helpers ---------------------------------------------------------------------------------------------
    def _save(self, m: Measurement) -> None:
        """Keep ``m`` in the run directory's measurements folder (unless ``save_measurements`` is off)."""
        if self.save:
            from recommender.dataset import save_measurement

            save_measurement(m, self.loc.measurements_dir)

    def _feasible(self, config: ServingConfig) -> Any:
        key = config_key(config)
        if key not in self._feasible_cache:
            self._feasible_cache[key] = self.feasibility(config, self.scenario) if self.feasibility else _OK
        return self._feasible_cache[key]

    def _enqueue_unseen(self, t: tr.Tally) -> bool:
        """Enqueue one random feasible config no trial has evaluated, rejected or is running; False if none."""
        running = {tr.trial_config_key(r) for r in t.running}
        config = self._picker.pick(lambda k: t.known(k) or k in running, lambda c: bool(self._feasible(c).ok))
        if config is None:
            return False
        self.study.enqueue_trial(params_of(self.space, config), user_attrs={"proposed_by": "unseen_fallback"})
        self.idle = 0
        return True

    def _measurements(self) -> list[Measurement]:
        out = []
        for t in self.study.get_trials(deepcopy=False):
            if t.number not in self._decoded:
                m = tr.measurement_of(t, self.scenario)
                if m is None:
                    continue
                self._decoded[t.number] = m
            out.append(self._decoded[t.number])
        return out


class _Ok:
    ok = True
    reasons: tuple[str, ...] = ()


_OK = _Ok()
