"""End-to-end training: measurement files + public datasets -> validated, calibrated, saved surrogate.

:func:`train_surrogate` is what ``recommender train`` runs:

1. load our Measurement JSON files and the requested public adapters;
2. build the training frame (:func:`recommender.surrogate.training.training_data`);
3. leave-one-model-out and leave-one-workload-out validation; the out-of-model residuals also calibrate the
   served intervals (split-conformal: their 10th/90th percentiles) and the one-sided 75% bound recommendations
   guard SLOs with, per serving regime (continuous batching / one static batch);
4. where measurements at locked clocks exist, refit the DVFS model's free shares to them and redo step 2;
5. fit on everything and save the skops artifact and its card (:mod:`recommender.surrogate.persistence`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recommender.surrogate import dvfs, training
from recommender.surrogate import targets as T
from recommender.surrogate.features import engine_version_number
from recommender.surrogate.predictor import Surrogate

logger = logging.getLogger(__name__)

#: Public sources trained on by default. ML.ENERGY v2 (vLLM 0.5.4) is opt-in: its per-step times are 3-4x
#: those of vLLM 0.11 at the same batch, and adding it raised the leave-one-model-out error on v3.
DEFAULT_PUBLIC: tuple[str, ...] = ("mlenergy-v3", "llm-inference-bench", "splitwise")


@dataclass
class TrainResult:
    """What training produced: the surrogate, its validation tables and where it was saved."""

    surrogate: Surrogate
    lomo: pd.DataFrame
    lowo: pd.DataFrame
    data_summary: dict[str, Any]
    seconds: float
    paths: tuple[Path, Path] | None = None
    source_lines: list[str] = field(default_factory=list)


def data_hash(data: training.TrainingData) -> str:
    """SHA-256 of the training frame (features, metrics, group labels), rounded to 9 significant digits."""
    h = hashlib.sha256()
    for frame in (data.X, data.M_raw):
        h.update(frame.to_csv(index=False, float_format="%.9g").encode())
    h.update(data.meta[["model", "workload", "gpu", "source"]].to_csv(index=False).encode())
    return h.hexdigest()


def _summary(data: training.TrainingData, loads: Sequence[Any], own: int) -> dict[str, Any]:
    return {
        "rows": len(data),
        "sha256": data_hash(data),
        "rows_per_source": data.meta["source"].value_counts().sort_index().to_dict(),
        "rows_per_model": data.meta["model"].value_counts().sort_index().to_dict(),
        "rows_per_workload": data.meta["workload"].value_counts().sort_index().to_dict(),
        "rows_per_gpu": data.meta["gpu"].value_counts().sort_index().to_dict(),
        "measured_rows_per_metric": {t: int(data.M[t].notna().sum()) for t in T.METRICS},
        "own_measurements": own,
        "locked_clock_rows": int(data.meta["locked_clock"].sum()),
        "public_adapters": [
            {"source": ld.source, "rows_read": ld.rows_read, "rows_used": len(ld.measurements),
             "skipped": dict(ld.skipped)} for ld in loads
        ],
        "dropped": data.dropped,
    }


def _calibrate_dvfs(data: training.TrainingData, est: Any, tpot: bool) -> tuple[dvfs.DVFSParams, dict[str, Any]]:
    rows = data.meta["locked_clock"].to_numpy()
    if rows.sum() < 3:
        return dvfs.DEFAULT_PARAMS, {"rows": int(rows.sum()), "note": "too few locked-clock rows; defaults kept"}
    f = data.X[rows].reset_index(drop=True)
    default = training.predict_metrics(est, f, tpot)
    raw = data.M_raw[rows].reset_index(drop=True)
    return dvfs.calibrate(f, default, raw)


@dataclass
class Fitted:
    """What :func:`fit_surrogate` produced from a list of measurements."""

    surrogate: Surrogate
    data: training.TrainingData
    lomo: pd.DataFrame
    lowo: pd.DataFrame
    residuals: dict[str, dict[str, float]]
    dvfs_report: dict[str, Any]


def fit_surrogate(measurements: Sequence[Any], params: dict[str, Any] | None = None, validate: bool = True,
                  validate_workloads: bool = True) -> Fitted:
    """Fit a surrogate on ``measurements`` (ours and public, already loaded).

    Steps: training frame; leave-one-model-out validation (calibrated intervals, residual quantiles, pooled and
    per regime) and, with
    ``validate_workloads``, leave-one-workload-out errors; fit; DVFS calibration and refit when it moves;
    engine version = the newest vLLM version in the rows.

    Raises:
        InputError: fewer than 10 usable rows.
    """
    from recommender.errors import InputError

    data = training.training_data(measurements)
    if len(data) < 10:
        raise InputError("training data", len(data), "need at least 10 successful measurements; add files or --public")
    p = dict(params or {})
    tpot = training.tpot_is_learned(data)
    lomo = lowo = pd.DataFrame()
    quantiles: dict[str, list[float]] = {}
    residuals: dict[str, dict[str, float]] = {}
    by_regime: dict[str, dict[str, dict[str, float]]] = {}
    if validate:
        cv = training.grouped_cv(data, "model", **p)
        lomo = training.error_table(cv)
        quantiles = training.interval_quantiles(cv)
        residuals = training.residual_quantiles(cv)
        by_regime = training.regime_residual_quantiles(cv)
        if validate_workloads:
            lowo = training.error_table(training.grouped_cv(data, "workload", **p))
    est = training.fit_estimator(data, **p)
    params_dvfs, dvfs_report = _calibrate_dvfs(data, est, tpot)
    if params_dvfs != dvfs.DEFAULT_PARAMS:
        data = training.training_data(measurements, dvfs_params=params_dvfs)
        est = training.fit_estimator(data, **p)
    versions = [v for v in (m.versions.get("vllm") for m in measurements if m.ok) if v]
    engine = max(versions, key=engine_version_number) if versions else None
    surrogate = Surrogate(estimator=est, interval_quantiles=quantiles, regime_quantiles=by_regime, tpot_learned=tpot,
                          engine_version=engine, dvfs_params=params_dvfs, card={"residual_quantiles": residuals})
    return Fitted(surrogate, data, lomo, lowo, residuals, dvfs_report)


def train_surrogate(
    measurement_paths: Sequence[str | Path] = (),
    public: Sequence[str] = DEFAULT_PUBLIC,
    shared_data: str | Path = "../shared/data",
    out: str | Path | None = None,
    name: str = "surrogate-v1",
    params: dict[str, Any] | None = None,
    validate: bool = True,
) -> TrainResult:
    """Train, validate, calibrate and (when ``out`` is given) save a surrogate.

    Args:
        measurement_paths: our Measurement JSON/JSONL files or folders.
        public: public adapters to include (keys of :data:`public_data.PUBLIC_SOURCES`).
        shared_data: folder holding the public datasets.
        out: folder to save ``<name>.skops`` and ``<name>.card.json`` into; None = do not save.
        name: artifact name.
        params: estimator hyper-parameters (default :data:`training.DEFAULT_PARAMS`).
        validate: run the grouped validations (needed for calibrated intervals).

    Raises:
        InputError: unreadable measurement files, unknown public source, or no usable rows.
    """
    from recommender.dataset import load_training_measurements
    from recommender.surrogate.public_data import load_public

    t0 = time.perf_counter()
    own, left_out = load_training_measurements(measurement_paths) if measurement_paths else ([], {})
    for mid, why in left_out.items():
        logger.warning("not training on quarantined measurement %s: %s", mid, why)
    loads = load_public(public, shared_data) if public else []
    measurements = own + [m for ld in loads for m in ld.measurements]
    fitted = fit_surrogate(measurements, params, validate=validate)
    surrogate, data, lomo, lowo = fitted.surrogate, fitted.data, fitted.lomo, fitted.lowo
    residuals, dvfs_report = fitted.residuals, fitted.dvfs_report
    summary = _summary(data, loads, len(own))
    summary["quarantined"] = left_out
    seconds = time.perf_counter() - t0
    result = TrainResult(surrogate, lomo, lowo, summary, seconds, source_lines=[ld.summary() for ld in loads])
    if out is not None:
        from recommender.surrogate import persistence

        card = {
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "description": "LLM serving surrogate: grey-box roofline baselines x gradient-boosted corrections; "
                           "predicts default-clock metrics, the DVFS model applies clock / power-limit knobs.",
            "training_data": summary,
            "training_seconds": round(seconds, 1),
            "learned_targets": {k: list(v) if v else None for k, v in T.LEARNED.items()},
            "metrics": list(T.METRICS),
            "validation": {
                "leave_one_model_out": lomo.to_dict("records"),
                "leave_one_workload_out": lowo.to_dict("records"),
                "interval_coverage": training.COVERAGE,
            },
            "residual_quantiles": residuals,
            "dvfs_calibration": dvfs_report,
            "knob_space": _knob_space(),
        }
        result.paths = persistence.save(surrogate, out, name, card)
    return result


def _knob_space() -> dict[str, Any]:
    """The bundled knob space whose knobs the features cover (name and hash), when available."""
    try:
        from recommender.space import load_space

        space = load_space("vllm-default")
        return {"name": space.name, "hash": space.hash()}
    except Exception as e:  # noqa: BLE001 - informational only
        return {"name": None, "hash": None, "note": f"not recorded ({type(e).__name__})"}


def format_table(df: pd.DataFrame) -> str:
    """A validation table as fixed-width text (percentages with one decimal)."""
    if df.empty:
        return "(no rows)"
    return df.to_string(index=False, float_format=lambda x: f"{x:.1f}" if np.isfinite(x) else "-")
