"""What a finished (or stopped) study reports: every evaluation, the feasible Pareto front, the SLO pick."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from recommender.pareto import ENERGY_KEY, pareto_front, pick_best, slo_headroom
from recommender.search import trials as tr
from recommender.search.confirm import by_config, consolidate
from recommender.search.progress import summary_frame
from recommender.search.storage import _redact

#: A best config whose closest SLO target has less relative headroom than this is "at the SLO boundary": one run per
#: config cannot tell whether it meets the SLO. The same engine config measured again on the same H100 moved by
#: 8-16 % in TPOT p90 (data/measurements/h100_guided/SUMMARY.txt: four configs measured in two studies; the
#: guided study's best met TPOT p90 <= 25 ms in 3 of its 4 runs, 22.4-26.2 ms).
BOUNDARY_HEADROOM = 0.10

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from recommender.config import Scenario
    from recommender.measurement import Measurement
    from recommender.search.storage import StudyLocation
    from recommender.slo import SLO


@dataclass
class StudyResult:
    """Outcome of :func:`recommender.search.run_study` over the whole study (every worker's trials).

    Attributes:
        study_name, storage_url, run_dir: where the study lives (URL without password).
        scenario, slo, objective: what was searched; objectives are ``(energy_per_output_token_j, objective)``.
        sampler: the sampler this worker used.
        n_evals: the evaluation budget; ``evaluations`` how many were spent (OK + failed).
        failed: evaluations that failed (OOM, timeout, not in a replay table, ...).
        infeasible, duplicates, skipped: trials that spent no evaluation.
        measurements: every evaluated Measurement, in trial order; ``trial_numbers`` maps id -> trial number.
        pareto: the feasible (every SLO target met) energy/latency Pareto front, least energy first, over the configs
            as :func:`recommender.search.confirm.consolidate` judges them: a config run more than once (repeats near
            the SLO boundary) counts with the median of its runs, under its first run's id.
        best: the least-energy config meeting the SLO (ties: lower latency), judged the same way, or None.
        repeats: the repeat runs (``run_study(..., confirm_repeats=N)``), not counted in ``evaluations``;
            ``runs`` maps a first run's id -> how many runs its config has (only configs run more than once).
        stop_reason: ``budget`` (n_evals reached), ``exhausted`` (no unseen feasible config left) or
            ``stalled`` (the sampler kept proposing known configs).
        resume_command: what re-runs this study to completion.
    """

    study_name: str
    storage_url: str
    run_dir: Path
    scenario: Scenario
    slo: SLO
    objective: str
    sampler: str
    n_evals: int
    evaluations: int
    failed: int
    infeasible: int
    duplicates: int
    skipped: int
    measurements: list[Measurement]
    pareto: list[Measurement]
    best: Measurement | None
    stop_reason: str
    resume_command: str
    trial_numbers: dict[str, int] = field(default_factory=dict)
    repeats: list[Measurement] = field(default_factory=list)
    runs: dict[str, int] = field(default_factory=dict)

    @property
    def objectives(self) -> tuple[str, str]:
        return (ENERGY_KEY, self.objective)

    @property
    def best_headroom(self) -> float | None:
        """Relative headroom of :attr:`best` on its closest SLO target (:func:`recommender.pareto.slo_headroom`);
        None without a best."""
        return None if self.best is None else slo_headroom(self.best, self.slo)

    @property
    def best_at_boundary(self) -> bool:
        """True when :attr:`best` meets the SLO with less than :data:`BOUNDARY_HEADROOM` to spare: repeat it
        before deploying it."""
        h = self.best_headroom
        return h is not None and h < BOUNDARY_HEADROOM

    def summary(self) -> pd.DataFrame:
        """The feasible Pareto front as a table, the SLO pick marked (``progress.summary_frame``); a config run more
        than once with the median of its runs."""
        return summary_frame(consolidate([*self.measurements, *self.repeats]), self.slo, self.objective)

    def frame(self) -> pd.DataFrame:
        """Every evaluation as a row (``Measurement.row()``) plus its ``trial`` number."""
        from recommender.dataset import to_frame

        df = to_frame(self.measurements)
        if len(df):
            df.insert(0, "trial", [self.trial_numbers.get(m.id) for m in self.measurements])
        return df


def build_result(study: optuna.Study, loc: StudyLocation, scenario: Scenario, slo: SLO, objective: str, sampler: str,
                 n_evals: int, stop_reason: str, resume_command: str) -> StudyResult:
    """Read every evaluated (and repeated) trial of ``study`` back into Measurements and compute the front and the
    pick over the consolidated configs."""
    trials = study.get_trials(deepcopy=False)
    t = tr.tally(trials)
    ms: list[Measurement] = []
    reps: list[Measurement] = []
    numbers: dict[str, int] = {}
    for trial in trials:
        m = tr.measurement_of(trial, scenario, repeats=True)
        if m is not None:
            (ms if tr.is_evaluation(trial) else reps).append(m)
            numbers[m.id] = trial.number
    judged = consolidate([*ms, *reps])
    runs = {group[0].id: len(group) for group in by_config([*ms, *reps]).values() if len(group) > 1}
    objs = (ENERGY_KEY, objective)
    return StudyResult(
        study_name=loc.study_name, storage_url=_redact(loc.storage_url), run_dir=loc.run_dir, scenario=scenario,
        slo=slo, objective=objective, sampler=sampler, n_evals=n_evals, evaluations=t.evaluations, failed=t.failed,
        infeasible=t.infeasible, duplicates=t.duplicates, skipped=t.skipped, measurements=ms,
        pareto=pareto_front(judged, objs, slo=slo), best=pick_best(judged, slo, objective), stop_reason=stop_reason,
        resume_command=resume_command, trial_numbers=numbers, repeats=reps, runs=runs,
    )
