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

from recommender.config import Hardware, Scenario, ServingConfig
from recommender.errors import InputError, suggest
from recommender.evaluators.base import Evaluator
from recommender.measurement import Measurement, Metrics

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from recommender.workload import Workload

logger = logging.getLogger(__name__)

KNOBS: tuple[str, ...] = tuple(k for k in ServingConfig.model_fields if k != "schema_version")
_MLENERGY_PRECISION = {"bfloat16": "bf16", "fp8": "fp8"}
# ML.ENERGY model ids the catalog does not resolve itself -> catalog names (same architecture and size).
MLENERGY_MODEL_NAMES: dict[str, str] = {
    "Qwen/Qwen3-235B-A22B-Instruct-2507": "Qwen3-235B-A22B",
    "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8": "Qwen3-235B-A22B",
    "Qwen/Qwen3-235B-A22B-Thinking-2507": "Qwen3-235B-A22B",
    "Qwen/Qwen3-235B-A22B-Thinking-2507-FP8": "Qwen3-235B-A22B",
    "Qwen/Qwen3-30B-A3B-Thinking-2507": "Qwen3-30B-A3B",
    "Qwen/Qwen3-Coder-30B-A3B-Instruct": "Qwen3-30B-A3B",
    "meta-llama/Llama-3.1-8B-Instruct": "Llama-3.1-8B",
    "meta-llama/Llama-3.1-70B-Instruct": "Llama-3.1-70B",
    "google/gemma-3-12b-it": "Gemma-3-12B",
    "google/gemma-3-27b-it": "Gemma-3-27B",
}


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

        Rows map to ``ServingConfig(tensor_parallel_size, max_num_seqs, precision)`` with
        ``energy_per_output_token_j`` = ``energy_per_token_joules`` (all GPUs), ``avg_power_w``,
        ``throughput_output_tok_s``, ``avg_batch_size`` and ITL p50/p90/p95/p99 (ms -> s); provenance
        ``public``. The export has no TTFT/TPOT, so SLOs over it must use ``itl``. Expert-parallel rows keep
        ``tensor_parallel_size`` as published (the GPU count is the scenario's); mxfp4 rows are skipped.

        Args:
            model_id: the HF id in the CSV (``meta-llama/Llama-3.1-8B-Instruct``); mapped to a catalog name.
            workload: the scenario's workload (default: ``presets.mlenergy_chat`` for ``lm-arena-chat``, else a
                closed-loop workload named ``mlenergy-<task>`` with the rows' mean output length).

        Raises:
            InputError: the file is missing, the group has no usable rows, or the model is not in the catalog.
        """
        import pandas as pd

        from recommender.catalog import get_model

        p = Path(csv_path)
        if not p.is_file():
            raise InputError("replay data", str(p), "give the ML.ENERGY v3 llm_configs_flat.csv file")
        df = pd.read_csv(p)
        gpu_col = df["gpu_model"].astype(str).str.upper()
        group = df[(df["task"] == task) & (gpu_col == gpu.upper()) & (df["num_gpus"] == num_gpus)]
        if model_id not in set(group["model_id"]):  # a catalog name: find the CSV id(s) it stands for
            want = _canonical_model(MLENERGY_MODEL_NAMES.get(model_id, model_id))
            ids = sorted(i for i in set(group["model_id"]) if _canonical_model(MLENERGY_MODEL_NAMES.get(i, i)) == want)
            if len(ids) > 1:
                raise InputError("--model", model_id, f"ambiguous in {p.name}; use one of {ids}")
            model_id = ids[0] if ids else model_id
        sel = group[group["model_id"] == model_id]
        if sel.empty:
            groups = sorted(set(zip(df["model_id"], df["task"], df["num_gpus"], strict=True)))[:8]
            raise InputError("replay data", f"{model_id} {task} {gpu}x{num_gpus}",
                             f"no rows for this group in {p.name}; groups look like {groups}")
        name = MLENERGY_MODEL_NAMES.get(model_id, model_id)
        try:
            catalog_name = get_model(name).name
        except InputError:
            try:
                catalog_name = get_model(model_id).name
            except InputError as e:
                raise InputError("model", model_id, f"not in the catalog ({e.allowed})") from None
        if workload is None:
            workload = _mlenergy_workload(task, float(sel["avg_output_len"].mean()))
        scenario = Scenario(model=catalog_name, hardware=Hardware(gpu=gpu, count=num_gpus), workload=workload)
        rows = [m for r in sel.to_dict("records") if (m := _mlenergy_row(r, scenario)) is not None]
        if not rows:
            raise InputError("replay data", model_id, "every row of the group uses a precision we cannot express")
        return cls(rows, **kwargs)


def mlenergy_v3_groups(csv_path: str | Path, gpu: str = "H100", task: str | None = None,
                       min_rows: int = 2) -> list[ReplayEvaluator]:
    """One ReplayEvaluator per (model, task, GPU count) group of ``gpu``; unknown models skipped with a warning."""
    import pandas as pd

    df = pd.read_csv(csv_path)
    df = df[df["gpu_model"].astype(str).str.upper() == gpu.upper()]
    if task is not None:
        df = df[df["task"] == task]
    out = []
    for (model_id, tsk, n), g in df.groupby(["model_id", "task", "num_gpus"], sort=True):
        if len(g) < min_rows:
            continue
        try:
            out.append(ReplayEvaluator.from_mlenergy_v3(csv_path, str(model_id), str(tsk), int(n), gpu))
        except InputError as e:
            logger.warning("skipping ML.ENERGY group %s %s %sx%s: %s", model_id, tsk, gpu, n, e)
    return out


def _mlenergy_workload(task: str, mean_output: float) -> Workload:
    from recommender.presets import mlenergy_chat
    from recommender.surrogate.public_data import TASK_INPUTS
    from recommender.workload import ClosedLoop, LognormalLength, Workload

    if task == "lm-arena-chat":
        return mlenergy_chat()
    median = max(16.0, mean_output / 1.28)  # lognormal sigma 0.7: mean = median * exp(0.245)
    return Workload(
        name=f"mlenergy-{task}",
        description=f"ML.ENERGY v3 {task}: all requests at once, mean output {mean_output:.0f}",
        input_tokens=LognormalLength(median_tokens=TASK_INPUTS[task][0], sigma=TASK_INPUTS[task][1], min_tokens=8,
                                     max_tokens=TASK_INPUTS[task][2]) if task in TASK_INPUTS else
        LognormalLength(median_tokens=120, sigma=1.0, min_tokens=8, max_tokens=2048),
        output_tokens=LognormalLength(median_tokens=median, sigma=0.7, min_tokens=16, max_tokens=32768),
        arrivals=ClosedLoop(concurrency=1024), num_requests=1024,
    )


def _mlenergy_row(r: dict[str, Any], scenario: Scenario) -> Measurement | None:
    precision = _MLENERGY_PRECISION.get(str(r["weight_precision"]))
    if precision is None:
        return None
    config = ServingConfig(tensor_parallel_size=int(r["tensor_parallel"]), max_num_seqs=int(r["max_num_seqs"]),
                           precision=precision)  # type: ignore[arg-type]
    metrics = Metrics(
        energy_per_output_token_j=float(r["energy_per_token_joules"]), avg_power_w=float(r["avg_power_watts"]),
        throughput_output_tok_s=float(r["output_throughput_tokens_per_sec"]), avg_batch_size=float(r["avg_batch_size"]),
        itl_p50_s=float(r["median_itl_ms"]) / 1e3, itl_p90_s=float(r["p90_itl_ms"]) / 1e3,
        itl_p95_s=float(r["p95_itl_ms"]) / 1e3, itl_p99_s=float(r["p99_itl_ms"]) / 1e3,
    )
    ep = int(r.get("expert_parallel", 1) or 1)
    return Measurement(
        scenario=scenario, config=config, provenance="public", metrics=metrics,
        source=f"mlenergy-v3:{r['task']}/{r['model_id']}/{r['gpu_model']}x{r['num_gpus']}/seqs={r['max_num_seqs']}",
        notes="steady-state window as published" + (f"; expert_parallel={ep}" if ep > 1 else ""),
    )


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
