"""Where a study lives: deterministic names and run directories, storages with heartbeats, resume.

- The run directory is ``<runs_root>/<scenario key>/<study name>``; the study name is derived from (scenario
  key, space hash, objective, SLO, sampler, seed) unless given, so re-running the same command finds the
  same study and resumes it. ``n_evals`` is not part of the name: a rerun with a larger budget extends it.
- The default storage is ``sqlite:///<run dir>/study.db``. Any SQLAlchemy/Optuna RDB URL works
  (``postgresql+psycopg2://user@host:5432/db``); several workers on several machines running the same
  command with the same URL share the study. ``"memory"`` gives an in-memory study (no resume; benchmarks).
- RDB storages get heartbeats: a worker records one per running trial every ``heartbeat_interval_s``; a
  trial whose heartbeat is older than ``grace_period_s`` is failed by whichever worker looks next and
  re-queued (``RetryHeartbeatStaleTrialCallback``) with the same params, so a killed worker loses nothing.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from recommender.errors import InputError

if TYPE_CHECKING:
    import optuna

    from recommender.config import Scenario
    from recommender.slo import SLO

logger = logging.getLogger(__name__)

MEMORY = "memory"


@dataclass(frozen=True)
class StudyLocation:
    """Study name, run directory (measurements, SQLite file) and storage URL of one study."""

    study_name: str
    run_dir: Path
    storage_url: str

    @property
    def measurements_dir(self) -> Path:
        """Folder the study's Measurements are saved under (``recommender.dataset`` layout)."""
        return self.run_dir / "measurements"


def default_study_name(scenario: Scenario, space_name: str, space_hash: str, objective: str, slo: SLO,
                       sampler: str, seed: int) -> str:
    """Deterministic study name, e.g. ``smoke-ttft_p99_s-tpe-s0-3f2a9c1b``."""
    body = "|".join([scenario.key(), space_hash, objective, str(slo), sampler, str(seed)])
    h = hashlib.sha256(body.encode()).hexdigest()[:8]
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in space_name)[:40]
    return f"{safe}-{objective}-{sampler}-s{seed}-{h}"


def resolve_location(scenario: Scenario, study_name: str, storage: str | None, run_dir: str | Path | None,
                     runs_root: str | Path = "runs") -> StudyLocation:
    """Run directory and storage URL for ``study_name`` (see the module docstring for defaults)."""
    rd = Path(run_dir) if run_dir is not None else Path(runs_root) / scenario.key() / study_name
    if storage is None:
        rd.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{(rd / 'study.db').resolve()}"
    elif storage == MEMORY:
        url = MEMORY
    else:
        if "://" not in storage:
            raise InputError("--storage", storage, "give an RDB URL such as sqlite:///study.db or "
                             "postgresql+psycopg2://user@host:5432/db, or 'memory'")
        url = storage
    return StudyLocation(study_name, rd, url)


def open_storage(url: str, heartbeat_interval_s: int | None = 30, grace_period_s: int | None = None,
                 max_retry: int | None = 3, attempts: int = 5) -> optuna.storages.BaseStorage:
    """Open the storage at ``url``; RDB storages get heartbeats and stale-trial retry.

    Args:
        url: ``"memory"`` or an Optuna RDB URL.
        heartbeat_interval_s: seconds between heartbeats of a running trial (None disables heartbeats).
        grace_period_s: a running trial without a heartbeat for this long is failed and re-queued
            (default: 3 x the interval).
        max_retry: how often one trial may be re-queued after going stale (None: unbounded).
        attempts: tries when several workers create the same fresh database at once (table creation races).

    Raises:
        InputError: the database cannot be reached or the URL is invalid (naming the URL without password).
    """
    import optuna
    from optuna.exceptions import ExperimentalWarning

    if url == MEMORY:
        return optuna.storages.InMemoryStorage()
    kwargs: dict = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}
    hb: dict = {}
    if heartbeat_interval_s:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            cb = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        hb = {"heartbeat_interval": int(heartbeat_interval_s),
              "grace_period": int(grace_period_s or 3 * heartbeat_interval_s),
              "heartbeat_stale_trial_callback": cb}
    last: Exception | None = None
    for i in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                st = optuna.storages.RDBStorage(url, engine_kwargs=kwargs, **hb)
            if url.startswith("sqlite"):
                _sqlite_wal(st)
            return st
        except Exception as e:  # noqa: BLE001 - sqlalchemy errors vary by driver; retried, then reported
            last = e
            time.sleep(0.2 * (i + 1))
    raise InputError("--storage", _redact(url), f"cannot open the study storage ({str(last).splitlines()[0]}); "
                     "check the URL, that the server is up, and that the database exists") from last


def _sqlite_wal(storage: optuna.storages.RDBStorage) -> None:
    """WAL journal + ``synchronous=NORMAL``: several local processes read while one writes, and a commit costs
    no fsync. Committed trials survive a killed process (only an OS crash may lose the last commits)."""
    import sqlalchemy

    def _pragmas(dbapi_conn: object, _record: object) -> None:
        cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    with storage.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    sqlalchemy.event.listen(storage.engine, "connect", _pragmas)
    storage.engine.dispose()  # pooled connections predate the listener


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        return f"{scheme}://{cred.split(':', 1)[0]}:***@{host}" if ":" in cred else url
    return url


class HeartbeatKeeper:
    """Records a heartbeat every interval for each trial this worker holds (several when batching).

    Optuna's own heartbeat thread serves one trial inside ``Study.optimize``; the search asks trials in
    batches, so it keeps its own. A no-op for storages without heartbeats. Thread-safe; use as a context
    manager; :meth:`hold` starts beating for a trial at once (a trial without any heartbeat is never stale).
    """

    def __init__(self, storage: optuna.storages.BaseStorage) -> None:
        self._storage = storage
        interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
        self._enabled = interval is not None and callable(getattr(storage, "record_heartbeat", None))
        self._interval = float(interval or 1)
        self._held: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self._enabled

    def hold(self, trial_id: int) -> None:
        if not self._enabled:
            return
        with self._lock:
            self._held.add(trial_id)
        self._beat(trial_id)

    def release(self, trial_id: int) -> None:
        with self._lock:
            self._held.discard(trial_id)

    def _beat(self, trial_id: int) -> None:
        try:
            self._storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
        except Exception as e:  # noqa: BLE001 - a missed beat is retried next interval
            logger.debug("heartbeat for trial id %s failed: %s", trial_id, e)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                ids = sorted(self._held)
            for tid in ids:
                self._beat(tid)

    def __enter__(self) -> HeartbeatKeeper:
        if self._enabled:
            self._thread = threading.Thread(target=self._run, name="recommender-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval + 5)


def fail_stale(study: optuna.Study) -> None:
    """Fail (and re-queue) trials of dead workers; a no-op without heartbeats."""
    import optuna
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
