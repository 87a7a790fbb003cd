"""The served surrogate: estimator + model card -> metrics, intervals, OOD flags and provenance per config.

:class:`Surrogate` bundles a fitted :class:`~recommender.surrogate.model.SurrogateRegressor` with what its card
records (interval quantiles from out-of-model validation, DVFS parameters, whether TPOT was learned, the
engine version the training data came from). :meth:`Surrogate.predict_frame` is vectorized: 10,000 configs of
one scenario in well under a second on a laptop CPU (rows whose features coincide, e.g. configs that differ
only in GPU clock or power limit, are predicted once).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recommender.surrogate import dvfs
from recommender.surrogate import targets as T
from recommender.surrogate.features import FEATURE_NAMES, build_features

if TYPE_CHECKING:
    from recommender.config import Scenario, ServingConfig
    from recommender.surrogate.model import SurrogateRegressor

logger = logging.getLogger(__name__)

#: Interval half-width (log scale) for a metric the card has no validation residuals for.
DEFAULT_LOG_HALF_WIDTH = float(np.log(2.0))
#: Extra relative uncertainty (each side) on predictions moved by the DVFS model (estimate).
DVFS_EXTRA_LOG_WIDTH = float(np.log(1.15))
#: Factor widening the interval of out-of-distribution rows.
OOD_WIDEN = 2.0


@dataclass
class Surrogate:
    """A fitted estimator plus the card facts needed to serve it.

    Attributes:
        estimator: the fitted estimator (learns :data:`targets.LEARNED_TARGETS`).
        interval_quantiles: metric -> (low, high) quantiles of log(measured / predicted) out of model.
        tpot_learned: whether TPOT was learned (else derived from ITL).
        engine_version: vLLM version predictions are made for (the training data's newest).
        dvfs_params: the DVFS model's parameters.
        card: the full model card (dict), when loaded from disk.
    """

    estimator: SurrogateRegressor
    interval_quantiles: dict[str, list[float]] = field(default_factory=dict)
    tpot_learned: bool = False
    engine_version: str | None = None
    dvfs_params: dvfs.DVFSParams = field(default_factory=dvfs.DVFSParams)
    card: dict[str, Any] = field(default_factory=dict)

    def features(self, scenario: Scenario, configs: Sequence[ServingConfig] | pd.DataFrame) -> pd.DataFrame:
        """Feature rows (see :func:`recommender.surrogate.features.build_features`)."""
        return build_features(scenario, configs, self.engine_version)

    def predict_features(self, f: pd.DataFrame, with_ood: bool = True) -> pd.DataFrame:
        """Predict every served metric (deployment-wide), its interval, OOD flags and provenance.

        Args:
            f: feature frame from :meth:`features` (one row per config).
            with_ood: compute the out-of-distribution check (a little extra time).

        Returns:
            DataFrame indexed like ``f`` with, per metric ``m`` of :data:`targets.METRICS`, columns ``m``,
            ``m_low`` and ``m_high``; plus ``provenance`` (``predicted``, or ``modeled`` where the DVFS model
            moved the prediction; categorical), ``clock_ratio`` (relative SM clock used), ``ood`` (bool),
            ``ood_reasons`` (categorical str, ``""`` in distribution) and ``fits_memory`` (bool).
        """
        names = list(FEATURE_NAMES)
        X = f.iloc[:, : len(names)] if list(f.columns[: len(names)]) == names else f[names]
        knobs = (f["gpu_clock_mhz"].notna() | f["power_limit_w"].notna()).to_numpy()
        if knobs.any():  # configs differing only in clock / power limit share their features: predict once
            from recommender.surrogate.model import _row_codes

            inverse, first = _row_codes(np.nan_to_num(X.to_numpy(dtype=float), nan=-1.2345e300))
            Xu = X.iloc[first]
        else:
            inverse, first, Xu = None, None, X
        y, ood, reason_codes, reasons = self.estimator.predict_with_ood(Xu, with_ood=with_ood)
        if inverse is not None:
            y, ood, reason_codes = y[inverse], ood[inverse], reason_codes[inverse]
        learned = dict(zip(T.LEARNED_TARGETS, y.T, strict=True))
        base = T.derive(f, learned, self.tpot_learned)
        if knobs.any():
            adj, ratio = dvfs.apply(f, base, self.dvfs_params)
        else:
            adj, ratio = base, np.ones(len(f))
        moved = knobs & (np.abs(ratio - 1.0) > 1e-9)
        # interval factors depend on the metric and on (ood, moved) only: 4 kinds of rows
        kind = ood.astype(int) * 2 + moved.astype(int)
        widen = np.array([1.0, 1.0, OOD_WIDEN, OOD_WIDEN])[:, None]
        extra = np.array([0.0, DVFS_EXTRA_LOG_WIDTH, 0.0, DVFS_EXTRA_LOG_WIDTH])[:, None]
        q = np.array([self.interval_quantiles.get(m, [-DEFAULT_LOG_HALF_WIDTH, DEFAULT_LOG_HALF_WIDTH])
                      for m in T.METRICS], dtype=float)
        low_f = np.exp(np.minimum(q[:, 0], 0.0)[None, :] * widen - extra)[kind]
        high_f = np.exp(np.maximum(q[:, 1], 0.0)[None, :] * widen + extra)[kind]
        reps = f["replicas"].to_numpy(dtype=float)
        scale = np.array([m in T.PER_REPLICA for m in T.METRICS])
        v = adj[list(T.METRICS)].to_numpy(dtype=float)
        v = np.where(scale[None, :], v * reps[:, None], v)
        data = np.empty((len(f), 3 * len(T.METRICS)))
        data[:, 0::3], data[:, 1::3], data[:, 2::3] = v, v * low_f, v * high_f
        names_out = [c for m in T.METRICS for c in (m, f"{m}_low", f"{m}_high")]
        out = pd.DataFrame(data, columns=names_out, index=f.index)
        out["provenance"] = pd.Categorical.from_codes(moved.astype(int), categories=["predicted", "modeled"])
        out["clock_ratio"] = ratio
        out["ood"] = ood
        out["ood_reasons"] = pd.Categorical.from_codes(reason_codes, categories=reasons)
        out["fits_memory"] = f["fits_memory"].to_numpy() > 0.5
        return out

    def upper_bound(self, metric: str, value: np.ndarray | float, quantile: float = 0.8) -> np.ndarray:
        """One-sided upper confidence bound of a predicted ``metric``: ``value`` times that quantile of the
        out-of-model residual ratios measured / predicted (from the card; the interval's high end without one).

        ``quantile=0.8`` is the guard the benchmark validates for SLO picks (benchmarks/surrogate_lomo.py).
        """
        qs = self.card.get("residual_quantiles", {}).get(metric, {})
        key = f"{quantile:g}"
        if key in qs:
            factor = float(np.exp(qs[key]))
        else:
            factor = float(np.exp(self.interval_quantiles.get(metric, [0.0, DEFAULT_LOG_HALF_WIDTH])[1]))
        return np.asarray(value, dtype=float) * max(factor, 1.0)

    def predict_frame(self, configs: Sequence[ServingConfig] | pd.DataFrame, scenario: Scenario,
                      with_ood: bool = True) -> pd.DataFrame:
        """Predictions for ``configs`` in ``scenario`` (see :meth:`predict_features`), in input order."""
        return self.predict_features(self.features(scenario, configs), with_ood=with_ood)
