"""ReplayEvaluator: answers from a table of earlier measurements (ours or public), for benchmarks and demos.

Lookup is an exact match on the knobs in ``match_on`` (default: every ServingConfig knob) and, unless
``match_scenario=False``, on the scenario's model (canonical catalog name), GPU type, GPU count and workload
name. A hit returns a copy of the table's measurement with the *requested* config and scenario (the Evaluator
contract), its provenance (``measured``/``public``/...), metrics and intervals, and ``source`` pointing at the
row (``replay:<source or id>``). Several rows for one key: the most recent OK row wins (else the most recent).
A miss returns a failed Measurement with ``failure_reason="not_in_table"`` (the provenance of the table's first
row), which the search records as a failed evaluation: replay cannot invent a number.

:class:`TableSpace` is the knob space of a table: one categorical knob per knob that varies in it, the rest
fixed, so a study over a replay table proposes only values the table has.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recommender.config import Scenario, ServingConfig
from recommender.errors import InputError, suggest
from recommender.evaluators.base import Evaluator
from recommender.measurement import Measurement, Metrics

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from recommender.workload import Workload

logger = logging.getLogger(__name__)

KNOBS: tuple[str, ...] = tuple(k for k in ServingConfig.model_fields if k != "schema_version")
def _canonical_model(model: str) -> str:
    from recommender.catalog import get_model

    try:
        return get_model(model).name
    except Exception:  # noqa: BLE001 - a name outside the catalog is compared as given
        return model


def scenario_match_key(s: Scenario) -> tuple[str, str, int, str]:
    """What a replay lookup compares of a scenario: canonical model, GPU, GPU count, workload name."""
    return (_canonical_model(s.model), s.hardware.gpu, s.hardware.count, s.workload.name)


class ReplayEvaluator(Evaluator):
    """Evaluator over a table of measurements (see the module docstring for the matching rules).

    Args:
        table: Measurements, or a DataFrame with one column per knob in ``match_on`` plus metric columns
            (names of :class:`~recommender.measurement.Metrics`) and optional ``status``,
            ``failure_reason``, ``provenance``, ``source`` columns; a DataFrame needs ``scenario``.
        match_on: knobs compared for a hit (default: all). Knobs outside it are ignored by the lookup.
        match_scenario: also require the scenario (model, GPU, count, workload name) to match.
        scenario: the scenario of every row of a DataFrame table.
        provenance: provenance of DataFrame rows without a ``provenance`` column.
    """

    name = "replay"

    def __init__(self, table: Sequence[Measurement] | pd.DataFrame, match_on: Sequence[str] | None = None,
                 match_scenario: bool = True, scenario: Scenario | None = None, provenance: str = "measured") -> None:
        self.match_on = tuple(match_on) if match_on is not None else KNOBS
        for k in self.match_on:
            if k not in KNOBS:
                raise InputError("match_on", k, f"use ServingConfig knobs{suggest(k, KNOBS)}")
        self.match_scenario = match_scenario
        rows = list(table) if not hasattr(table, "columns") else _from_frame(table, scenario, provenance)  # type: ignore[arg-type]
        if not rows:
            raise InputError("replay table", "(empty)", "give at least one measurement")
        self.table: list[Measurement] = rows
        self._index: dict[tuple[Any, ...], Measurement] = {}
        for m in sorted(rows, key=lambda m: (m.ok, m.created_at)):  # later and OK rows overwrite
            self._index[self._key(m.config, m.scenario)] = m

    def _key(self, config: ServingConfig, scenario: Scenario) -> tuple[Any, ...]:
        knobs = tuple(getattr(config, k) for k in self.match_on)
        return (scenario_match_key(scenario) if self.match_scenario else None, knobs)

    def lookup(self, config: ServingConfig, scenario: Scenario) -> Measurement | None:
        """The table row answering ``config`` in ``scenario``, or None."""
        return self._index.get(self._key(config, scenario))

    def evaluate(self, config: ServingConfig, scenario: Scenario) -> Measurement:
        """The table's answer for ``config`` (a copy with this config/scenario), or a ``not_in_table`` failure."""
        row = self.lookup(config, scenario)
        if row is None:
            return Measurement(
                scenario=scenario, config=config, status="failed", failure_reason="not_in_table",
                failure_detail=f"no row of the replay table ({len(self.table)} rows) has this config "
                               f"({config.short()}) in this scenario; replay answers only what was measured",
                provenance=self.table[0].provenance, source="replay",
            )
        return Measurement(
            scenario=scenario, config=config, status=row.status, failure_reason=row.failure_reason,
            failure_detail=row.failure_detail, provenance=row.provenance, source=f"replay:{row.source or row.id}",
            metrics=row.metrics, steady_state=row.steady_state, intervals=row.intervals, versions=row.versions,
            notes=f"replayed from measurement {row.id}" + (f"; {row.notes}" if row.notes else ""),
        )

    def scenarios(self) -> list[Scenario]:
        """The distinct scenarios in the table (by model, GPU, count, workload name), in table order."""
        seen: dict[tuple[str, str, int, str], Scenario] = {}
        for m in self.table:
            seen.setdefault(scenario_match_key(m.scenario), m.scenario)
        return list(seen.values())

    def space(self, scenario: Scenario | None = None) -> TableSpace:
        """The knob space of the table's configs (those of ``scenario`` when given)."""
        key = scenario_match_key(scenario) if scenario is not None else None
        configs = [m.config for m in self.table if key is None or scenario_match_key(m.scenario) == key]
        if not configs:
            raise InputError("scenario", scenario.key() if scenario else "", "the replay table has no rows for it")
        return TableSpace(configs, name="replay-table")

    @classmethod
    def from_files(cls, paths: Iterable[str | Path], **kwargs: Any) -> ReplayEvaluator:
        """Load measurement JSON/JSONL files or folders (``recommender.dataset.load_measurements``)."""
        from recommender.dataset import load_measurements

        return cls(load_measurements(paths), **kwargs)

    @classmethod
    def from_mlenergy_v3(cls, csv_path: str | Path, model_id: str, task: str = "lm-arena-chat", num_gpus: int = 1,
                         gpu: str = "H100", workload: Workload | None = None, **kwargs: Any) -> ReplayEvaluator:
        """Replay one (model, task, GPU, GPU count) group of the ML.ENERGY Leaderboard v3 flat CSV.

        The rows are the surrogate's public-data adapter's (:func:`~recommender.surrogate.public_data.
        load_mlenergy_v3_csv`: one model map, one precision rule, one set of metrics, provenance ``public``).
        The export has no TTFT/TPOT, so SLOs over it must use ``itl``.

        Args:
            model_id: the HF id in the CSV (``meta-llama/Llama-3.1-8B-Instruct``) or a catalog name.
            workload: the scenario's workload (default: ``presets.mlenergy_chat`` for ``lm-arena-chat``, else the
                adapter's closed-loop workload, renamed ``mlenergy-<task>``, with the rows' mean output length).

        Raises:
            InputError: the file is missing, the model is unknown, or the group has no rows.
        """
        groups = _mlenergy_v3_groups(csv_path, gpu)
        name = _mlenergy_catalog_name(model_id)
        rows = groups.get((name, task, num_gpus))
        if not rows:
            have = sorted(groups)[:8]
            raise InputError("replay data", f"{model_id} {task} {gpu}x{num_gpus}",
                             f"no rows for this group in {Path(csv_path).name}; groups look like {have}")
        return cls(_as_replay_rows(rows, task, workload), **kwargs)


def mlenergy_v3_groups(csv_path: str | Path, gpu: str = "H100", task: str | None = None,
                       min_rows: int = 2) -> list[ReplayEvaluator]:
    """One ReplayEvaluator per (model, task, GPU count) group of ``gpu`` with at least ``min_rows`` rows; rows of
    models outside the catalog are skipped (logged with their count)."""
    out = []
    for (_model, tsk, _n), rows in sorted(_mlenergy_v3_groups(csv_path, gpu).items()):
        if (task is None or tsk == task) and len(rows) >= min_rows:
            out.append(ReplayEvaluator(_as_replay_rows(rows, tsk, None)))
    return out


def _mlenergy_v3_groups(csv_path: str | Path, gpu: str) -> dict[tuple[str, str, int], list[Measurement]]:
    """The adapter's measurements of ``gpu`` by (catalog model, task, GPU count)."""
    from recommender.catalog import get_gpu
    from recommender.surrogate.public_data import load_mlenergy_v3_csv, mlenergy_v3_task

    p = Path(csv_path)
    if not p.is_file():
        raise InputError("replay data", str(p), "give the ML.ENERGY v3 llm_configs_flat.csv file")
    load = load_mlenergy_v3_csv(p, p.name)
    if load.skipped:
        logger.warning("skipping ML.ENERGY group rows: %s", load.summary())
    want = get_gpu(gpu).name
    groups: dict[tuple[str, str, int], list[Measurement]] = {}
    for m in load.measurements:
        task = mlenergy_v3_task(m.scenario.workload.name)
        if task is not None and m.scenario.hardware.gpu == want:
            groups.setdefault((m.scenario.model, task, m.scenario.hardware.count), []).append(m)
    return groups


def _mlenergy_catalog_name(model_id: str) -> str:
    """Catalog name of an ML.ENERGY hub id (through the adapter's model map) or of a catalog name."""
    from recommender.surrogate.public_data import MODEL_MAP

    if model_id in MODEL_MAP:
        return MODEL_MAP[model_id][0]
    return _canonical_model(model_id)


def _as_replay_rows(rows: list[Measurement], task: str, workload: Workload | None) -> list[Measurement]:
    """The rows with the scenario a replay user names: the ``mlenergy-chat`` preset for ``lm-arena-chat``, else
    the adapter's workload renamed ``mlenergy-<task>`` (or ``workload`` when given)."""
    if workload is None:
        if task == "lm-arena-chat":
            from recommender.presets import mlenergy_chat

            workload = mlenergy_chat()
        else:
            base = rows[0].scenario.workload
            workload = base.model_copy(update={"name": f"mlenergy-{task}"})
    out = []
    for m in rows:
        scenario = m.scenario.model_copy(update={"workload": workload})
        out.append(m.model_copy(update={"scenario": scenario,
                                        "source": f"mlenergy-v3:{task}/{m.notes.split(';')[0]}/"
                                        f"{m.scenario.hardware.count}gpu/seqs={m.config.max_num_seqs}"}))
    return out


def _from_frame(df: pd.DataFrame, scenario: Scenario | None, provenance: str) -> list[Measurement]:
    if scenario is None:
        raise InputError("scenario", None, "a DataFrame replay table needs scenario=<the rows' Scenario>")
    out = []
    for r in df.to_dict("records"):
        knobs = {k: _clean(r[k]) for k in KNOBS if k in r}
        metrics = {k: float(v) for k in Metrics.model_fields if (v := _clean(r.get(k))) is not None}
        out.append(Measurement.model_validate({
            "scenario": scenario, "config": ServingConfig(**knobs), "status": r.get("status") or "ok",
            "failure_reason": _clean(r.get("failure_reason")), "provenance": r.get("provenance") or provenance,
            "source": str(_clean(r.get("source")) or "table"),
            "metrics": Metrics.model_validate(metrics) if metrics else None,
        }))
    return out


def _clean(v: Any) -> Any:
    """NaN (pandas' missing value) -> None; numpy scalars -> Python scalars."""
    if v is None:
        return None
    if isinstance(v, float) and v != v:
        return None
    return v.item() if hasattr(v, "item") else v


class TableSpace:
    """Knob space of a set of configs: a categorical knob per varying knob, the others fixed.

    Satisfies :class:`recommender.search.SearchSpace` (``distributions``, ``suggest``, ``to_config``,
    ``params_of``, ``grid``, ``hash``). ``grid`` is the cartesian product of the varying knobs' values, which
    includes combinations absent from the table when the table is not a full grid.
    """

    def __init__(self, configs: Sequence[ServingConfig], name: str = "table") -> None:
        self.name = name
        values: dict[str, list[Any]] = {}
        for k in KNOBS:
            vals = {json.dumps(getattr(c, k)): getattr(c, k) for c in configs}
            values[k] = sorted(vals.values(), key=lambda v: (v is None, str(type(v)), v if v is not None else 0))
        self.varying = {k: v for k, v in values.items() if len(v) > 1}
        self.fixed = {k: v[0] for k, v in values.items() if len(v) == 1}
        self.configs = list(configs)

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        from optuna.distributions import CategoricalDistribution

        return {k: CategoricalDistribution(v) for k, v in self.varying.items()}

    def suggest(self, trial: optuna.trial.BaseTrial) -> ServingConfig:
        params = {k: trial._suggest(k, d) for k, d in self.distributions().items()}  # type: ignore[attr-defined]
        return self.to_config(params)

    def to_config(self, params: dict[str, Any]) -> ServingConfig:
        for k in params:
            if k not in self.varying:
                raise InputError(f"params.{k}", params[k], f"not a knob of this table{suggest(k, self.varying)}")
        return ServingConfig(**{**self.fixed, **params})

    def params_of(self, config: ServingConfig) -> dict[str, Any]:
        return {k: getattr(config, k) for k in self.varying}

    def size(self) -> int:
        n = 1
        for v in self.varying.values():
            n *= len(v)
        return n

    def grid(self, limit: int | None = None) -> list[ServingConfig]:
        names = list(self.varying)
        combos = itertools.islice(itertools.product(*(self.varying[n] for n in names)), limit)
        return [self.to_config(dict(zip(names, c, strict=True))) for c in combos]

    def hash(self) -> str:
        body = json.dumps({"varying": self.varying, "fixed": self.fixed}, sort_keys=True, default=str)
        return hashlib.sha256(body.encode()).hexdigest()[:12]
