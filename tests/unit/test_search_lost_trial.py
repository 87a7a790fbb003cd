"""A trial another worker finished while this one held it is let go, whichever way Optuna refuses the write."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest

from recommender.search.runner import _Runner

pytestmark = pytest.mark.unit


def _two_handles() -> tuple[optuna.Study, optuna.Study]:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = optuna.storages.InMemoryStorage()
    mine = optuna.create_study(storage=storage, study_name="s", directions=["minimize"])
    return mine, optuna.load_study(study_name="s", storage=storage)


def test_a_trial_finished_elsewhere_is_let_go() -> None:
    mine, other = _two_handles()
    trial = mine.ask()
    other.tell(trial.number, 1.0)  # Study.tell then raises ValueError("Cannot tell a COMPLETE trial.")
    released: list[optuna.Trial] = []
    me = SimpleNamespace(study=mine, _release=released.append)
    assert _Runner._lost(me, trial, mine.tell, trial, 2.0) is True  # type: ignore[arg-type]
    assert released == [trial]
    assert mine.trials[0].values == [1.0]  # the other worker's result stands


def test_a_bad_tell_on_a_trial_still_held_is_not_swallowed() -> None:
    mine, _ = _two_handles()
    trial = mine.ask()
    me = SimpleNamespace(study=mine, _release=lambda t: None)
    with pytest.raises(ValueError, match="RUNNING"):  # the trial is still running: the error is this worker's own
        _Runner._lost(me, trial, mine.tell, trial, None, optuna.trial.TrialState.RUNNING)  # type: ignore[arg-type]
    assert mine.trials[0].state == optuna.trial.TrialState.RUNNING
