"""Training data, fitting and grouped validation of the surrogate.

Measurements (ours and the public adapters') become one frame: the features of
:mod:`recommender.surrogate.features` (per replica), the served metrics (per replica: throughput and power are
divided by ``replicas``; the steady-state window where recorded, but TTFT over the whole run), the primitive
targets of :mod:`recommender.surrogate.targets`, and metadata (catalog model, workload, GPU, source) for grouped
validation. Rows measured at a locked clock or under a power cap are
brought back to the default clock through the inverse DVFS model first, so the estimator always learns the
default-clock behaviour and :mod:`recommender.surrogate.dvfs` applies the GPU knobs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recommender.measurement import Measurement
from recommender.surrogate import targets as T
from recommender.surrogate.features import FEATURE_NAMES, RUN_LENGTH_FEATURES, features_from_measurements
from recommender.surrogate.model import SurrogateRegressor

logger = logging.getLogger(__name__)

#: Columns the OOD distance check uses: what the operator chooses (model size and shape, GPU, knobs, traffic).
OOD_COLUMNS: tuple[str, ...] = (
    "active_params_b", "total_params_b", "num_layers", "hidden_size", "num_kv_heads", "num_experts",
    "weight_bytes_per_param", "gpu_peak_tflops", "gpu_mem_bw_tb_s", "gpu_memory_gb", "tensor_parallel_size",
    "max_num_seqs", "input_tokens_mean", "output_tokens_mean", "batch_est",
)
#: Hyper-parameters, chosen by leave-one-model-out error on the public data (benchmarks/surrogate_lomo.py).
#: Served intervals come from the grouped validation in :mod:`recommender.surrogate.build`, so the estimator's
#: own interval folds are off (``interval_cv=0``).
DEFAULT_PARAMS: dict[str, Any] = {
    "n_estimators": 150, "learning_rate": 0.1, "max_depth": 2, "min_samples_leaf": 3, "subsample": 1.0,
    "coverage": 0.8, "interval_cv": 0,
}
#: Rows of a model weigh ``n_model ** -MODEL_BALANCE_POWER`` in every fit (scaled to mean 1), so the models measured
#: most (Llama-3.1-8B: hundreds of public rows plus most of ours) do not set the fit for the rest. Leave-one-model-out
#: on the ML.ENERGY v3 H100 rows (``python benchmarks/surrogate_lomo.py --skip-timing --balance-power P``), P = 0 /
#: 0.25 / 0.5 / 0.75: J/token MAPE 14.3 / 14.4 / 14.3 / 14.9%, median ITL 14.5 / 14.3 / 13.7 / 14.0%, throughput
#: 13.9 / 13.9 / 13.0 / 13.8%, power 15.6 / 15.4 / 14.7 / 13.8%; worst guarded pick at a 25 ms ITL SLO +21.1 / +15.9 /
#: +15.9 / +13.1% over it, with median regret 11.7 / 5.6 / 11.7 / 34.2% there.
MODEL_BALANCE_POWER = 0.5
#: Central coverage of the served intervals (10th to 90th percentile of out-of-model residuals).
COVERAGE = 0.8
#: Quantiles of ``log(measured / predicted)`` the card keeps per metric (and per regime).
RESIDUAL_QUANTILES: tuple[float, ...] = (0.1, 0.2, 0.5, 0.75, 0.8, 0.9)
#: Serving regimes the residuals are calibrated apart (Mondrian conformal): ``continuous`` batching, where
#: finished requests are replaced (``refill`` >= 0.5: every vLLM serving run), and one ``static`` batch
#: (benchmarks that run a single batch to completion, e.g. the Splitwise perf model, whose ITL errors are several
#: times larger and would otherwise set the intervals of every served config).
REGIMES: tuple[str, ...] = ("continuous", "static")


def regime_of(refill: Any) -> np.ndarray:
    """Regime name per row from the ``refill`` feature (see :data:`REGIMES`)."""
    return np.where(np.asarray(refill, dtype=float) >= 0.5, REGIMES[0], REGIMES[1])


@dataclass
class TrainingData:
    """Feature frame ``X`` (:data:`FEATURE_NAMES` + :data:`EXTRA_COLUMNS`), served metrics ``M`` at the default
    clock, ``M_raw`` as measured (both per replica), primitive targets ``Y`` (NaN = not measured), metadata."""

    X: pd.DataFrame
    M: pd.DataFrame
    M_raw: pd.DataFrame
    Y: pd.DataFrame
    meta: pd.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.X)

    def subset(self, mask: np.ndarray) -> TrainingData:
        """Rows where ``mask`` is True."""
        m = np.asarray(mask, dtype=bool)
        r = lambda d: d[m].reset_index(drop=True)  # noqa: E731
        return TrainingData(r(self.X), r(self.M), r(self.M_raw), r(self.Y), r(self.meta), dict(self.dropped))


def training_data(measurements: Sequence[Measurement], dvfs_params: Any = None) -> TrainingData:
    """Build the training frame from successful measurements (failed ones are dropped and counted).

    Args:
        measurements: ours and public ones.
        dvfs_params: :class:`~recommender.surrogate.dvfs.DVFSParams` for normalising locked-clock rows
            (default the documented defaults).
    """
    from recommender.surrogate import dvfs

    params = dvfs_params or dvfs.DEFAULT_PARAMS
    ok = [m for m in measurements if m.ok]
    dropped = {"failed measurements": len(measurements) - len(ok)} if len(ok) < len(measurements) else {}
    feats = features_from_measurements(ok)
    M = pd.DataFrame({t: [_metric(m, t) for m in ok] for t in T.METRICS}, dtype=float)
    reps = feats["replicas"].to_numpy()
    for t in T.PER_REPLICA:
        M[t] = M[t] / reps
    M_raw = M.copy()
    knobs = (feats["gpu_clock_mhz"].notna() | feats["power_limit_w"].notna()).to_numpy()
    if knobs.any():
        clock = np.array([m.value("mean_sm_clock_mhz") or np.nan for m in ok], dtype=float)[knobs]
        clock = np.where(np.isnan(clock), feats["gpu_clock_mhz"].to_numpy()[knobs], clock)
        M.loc[knobs] = dvfs.to_default_clock(feats[knobs].reset_index(drop=True), M[knobs].reset_index(drop=True),
                                             params, clock_mhz=clock).to_numpy()
    meta = pd.DataFrame({
        "model": [m.scenario.model_spec.name for m in ok],
        "workload": [m.scenario.workload.name for m in ok],
        "gpu": [m.scenario.hardware.gpu for m in ok],
        "provenance": [m.provenance for m in ok],
        "source": [m.source for m in ok],
        "max_num_seqs": feats["max_num_seqs"].to_numpy(),
        "tensor_parallel_size": feats["tensor_parallel_size"].to_numpy(),
        "precision_fp8": feats["precision_fp8"].to_numpy(),
        "locked_clock": knobs,
    })
    X = feats.reset_index(drop=True)
    return TrainingData(X, M, M_raw, T.learned_frame(X, M), meta, dropped)


def _metric(m: Measurement, key: str) -> float | None:
    """Training value of ``key``: the steady-state window where recorded (what the engine sustains), except
    TTFT, taken over the whole run: in a queueing run TTFT is the queue, which a window would cut."""
    if key.startswith("ttft_"):
        v = m.value(key, window="whole")
        return v if v is not None else m.value(key)
    return m.value(key)


def make_estimator(**params: Any) -> SurrogateRegressor:
    """A :class:`SurrogateRegressor` wired to :data:`targets.LEARNED` and :data:`OOD_COLUMNS`."""
    hidden = set(RUN_LENGTH_FEATURES)
    trees = [
        [c for c in FEATURE_NAMES if c not in hidden and (c not in T.BASIS_ONLY or c in (T.LEARNED[t] or ()))]
        for t in T.LEARNED
    ]
    p: dict[str, Any] = {"ood_columns": list(OOD_COLUMNS), "tree_columns": trees, **DEFAULT_PARAMS}
    p.update(params)
    bases = [list(b) if b is not None else None for b in T.LEARNED.values()]
    return SurrogateRegressor(baseline_columns=bases, **p)


def tpot_is_learned(data: TrainingData) -> bool:
    """Whether enough TPOT was measured to learn it (else it is derived from ITL): at least
    :data:`targets.MIN_TPOT_ROWS` rows from at least :data:`targets.MIN_TPOT_MODELS` models."""
    has = data.Y["tpot_p50_s"].notna().to_numpy()
    return int(has.sum()) >= T.MIN_TPOT_ROWS and data.meta["model"][has].nunique() >= T.MIN_TPOT_MODELS


def model_balance_weights(models: Any, power: float = MODEL_BALANCE_POWER) -> np.ndarray:
    """Per-row weights ``n_model ** -power`` (``n_model``: rows of the row's model), scaled to mean 1.

    ``power`` 0 weighs every row alike; 1 gives every model the same total weight. See
    :data:`MODEL_BALANCE_POWER`.
    """
    m = pd.Series(np.asarray(models))
    if not len(m):
        return np.zeros(0)
    w = m.map(m.value_counts()).to_numpy(dtype=float) ** -float(power)
    return w / w.mean()


def fit_estimator(data: TrainingData, sample_weight: np.ndarray | None = None,
                  baseline_weight: np.ndarray | None = None, balance: float = MODEL_BALANCE_POWER,
                  **params: Any) -> SurrogateRegressor:
    """Fit the estimator on ``data``'s primitive targets (TPOT only when enough was measured to learn it).

    Row weights are :func:`model_balance_weights` of ``data``'s models with power ``balance`` (0 = none),
    times the optional per-row ``sample_weight``; ``baseline_weight`` (default: the same row weights) weighs the
    baseline least squares only.
    """
    Y = data.Y.copy()
    if not tpot_is_learned(data):  # derived from ITL at prediction: do not fit (or ship) unused trees
        Y[[t for t in Y.columns if t.startswith("tpot_")]] = np.nan
    w = model_balance_weights(data.meta["model"], balance) if balance else None
    if sample_weight is not None:
        w = np.asarray(sample_weight, dtype=float) * (1.0 if w is None else w)
    return make_estimator(**params).fit(
        data.X[list(FEATURE_NAMES)], Y.to_numpy(), groups=data.meta["model"].to_numpy(), sample_weight=w,
        baseline_weight=baseline_weight,
    )


def predict_metrics(est: SurrogateRegressor, X: pd.DataFrame, tpot_learned: bool) -> pd.DataFrame:
    """Served metrics per replica at the default clock for feature rows ``X``."""
    learned = pd.DataFrame(est.predict(X[list(FEATURE_NAMES)]), columns=list(T.LEARNED_TARGETS), index=X.index)
    return T.derive(X, learned, tpot_learned)


def grouped_cv(data: TrainingData, by: str = "model", eval_mask: np.ndarray | None = None,
               sample_weight: np.ndarray | None = None, baseline_weight: np.ndarray | None = None,
               **params: Any) -> pd.DataFrame:
    """Leave-one-group-out predictions of the served metrics.

    Args:
        data: training data.
        by: metadata column to group on (``model`` = leave-one-model-out, ``workload`` = leave-one-workload-out).
        eval_mask: only groups with a row here are held out, and only these rows are scored (default: all).
        sample_weight: per-row training weights (default: all 1), times each fold's :func:`model_balance_weights`.
        baseline_weight: per-row (or per-row-and-target) weights of the baseline least squares only (see
            :meth:`SurrogateRegressor.fit`; default ``sample_weight``).
        params: estimator hyper-parameters.

    Returns:
        One row per scored row: metadata, ``regime`` (:func:`regime_of`), ``ood`` (the held-out estimator's
        out-of-distribution flag), and per metric ``<m>`` (measured) and ``<m>_pred``.
    """
    mask = np.ones(len(data), bool) if eval_mask is None else np.asarray(eval_mask, bool)
    groups = data.meta[by].to_numpy()
    parts = []
    for g in pd.unique(groups[mask]):
        test = (groups == g) & mask
        train = groups != g
        fold = data.subset(train)
        est = fit_estimator(fold, _rows_of(sample_weight, train), _rows_of(baseline_weight, train), **params)
        pred = predict_metrics(est, data.X[test], tpot_is_learned(fold))  # as the fold's estimator was fitted
        part = data.meta[test].copy()
        part["regime"] = regime_of(data.X["refill"][test])
        part["ood"] = est.ood(data.X[test][list(FEATURE_NAMES)])[0]
        for t in T.METRICS:
            part[t] = data.M[t][test].to_numpy()
            part[f"{t}_pred"] = pred[t].to_numpy()
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _rows_of(weight: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    """``weight`` restricted to ``rows`` (None stays None)."""
    return None if weight is None else np.asarray(weight)[rows]


def error_table(cv: pd.DataFrame, metrics: Sequence[str] = T.METRICS) -> pd.DataFrame:
    """Per metric: rows scored, groups, MAPE, median and p90 absolute percentage error of a CV result."""
    rows = []
    for t in metrics:
        ok = (cv[t].notna() & cv[f"{t}_pred"].notna()) if t in cv else pd.Series(False, index=cv.index)
        if not ok.any():
            rows.append({"metric": t, "n": 0, "mape_pct": np.nan, "median_ape_pct": np.nan, "p90_ape_pct": np.nan})
            continue
        ape = (cv.loc[ok, f"{t}_pred"] / cv.loc[ok, t] - 1.0).abs() * 100.0
        rows.append({"metric": t, "n": int(ok.sum()), "mape_pct": float(ape.mean()),
                     "median_ape_pct": float(ape.median()), "p90_ape_pct": float(ape.quantile(0.9))})
    return pd.DataFrame(rows)


def residual_quantiles(cv: pd.DataFrame, quantiles: Sequence[float] = RESIDUAL_QUANTILES,
                       min_rows: int = 10) -> dict[str, dict[str, float]]:
    """Per metric, quantiles of ``log(measured / predicted)`` out of group, keyed ``"0.8"`` etc.

    Metrics with fewer than ``min_rows`` scored rows are left out."""
    out: dict[str, dict[str, float]] = {}
    for t in T.METRICS:
        if t not in cv:
            continue
        r = _log_residuals(cv, t)
        if r.size >= min_rows:
            out[t] = {f"{q:g}": float(np.quantile(r, q)) for q in quantiles}
    return out


def regime_residual_quantiles(cv: pd.DataFrame, quantiles: Sequence[float] = RESIDUAL_QUANTILES,
                              min_rows: int = 10) -> dict[str, dict[str, dict[str, float]]]:
    """:func:`residual_quantiles` apart per regime (``cv["regime"]``, see :data:`REGIMES`): regime -> metric ->
    quantile key -> value. A regime without rows, or a metric with fewer than ``min_rows`` rows in it, is left
    out (the predictor then falls back to the pooled quantiles)."""
    if "regime" not in cv:
        return {}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for regime in REGIMES:
        part = cv[cv["regime"] == regime]
        if len(part):
            qs = residual_quantiles(part, quantiles, min_rows)
            if qs:
                out[regime] = qs
    return out


def interval_quantiles(cv: pd.DataFrame, coverage: float = COVERAGE, min_rows: int = 10) -> dict[str, list[float]]:
    """Per metric, the (low, high) quantiles of ``log(measured / predicted)`` out of group: the served interval
    is ``prediction * exp(low) .. prediction * exp(high)``. Metrics with fewer than ``min_rows`` scored rows
    are left out (the caller falls back to a wide default)."""
    alpha = (1.0 - coverage) / 2.0
    out: dict[str, list[float]] = {}
    for t in T.METRICS:
        if t not in cv:
            continue
        r = _log_residuals(cv, t)
        if r.size >= min_rows:
            out[t] = [float(np.quantile(r, alpha)), float(np.quantile(r, 1.0 - alpha))]
    return out


def _log_residuals(cv: pd.DataFrame, metric: str) -> np.ndarray:
    """Finite ``log(measured / predicted)`` of ``metric`` over the out-of-group rows of ``cv``."""
    r = np.log(cv[metric] / cv[f"{metric}_pred"]).to_numpy(dtype=float)
    return r[np.isfinite(r)]
