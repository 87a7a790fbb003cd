"""The surrogate estimator: gradient-boosted trees on log(target / physics baseline), with honest intervals.

:class:`SurrogateRegressor` is a plain scikit-learn regressor (``fit``/``predict``, fitted attributes end in
``_``, validated parameters, passes ``parametrize_with_checks``). It predicts one or several targets:

- each target ``j`` is learned as ``log(y_j) - log(b_j(x))`` where the baseline ``b_j`` is a physics estimate:
  one column of X (``baseline_columns[j]`` a name or index), or a non-negative combination of several columns
  (a list: the coefficients are fitted by non-negative least squares on the relative error, so a roofline
  time plus overhead terms becomes a calibrated grey-box model); without a baseline the target is learned as
  ``log(y_j)`` (``log_target``) or raw. Rows where ``y_j`` is NaN are ignored for that target only, so sources
  that measured different metrics train together;
- the point model is :class:`~sklearn.ensemble.GradientBoostingRegressor` (pure Cython, no OpenMP: fast and
  deterministic on small CPUs); NaN features are filled with a sentinel below each column's training minimum.
  Prediction runs each ensemble once per class of rows that fall between the same split thresholds of every
  feature its trees use (they reach the same leaves, so the result is exact): configs of one scenario share
  the model, GPU and workload features and cross few thresholds, so 10,000 of them make a few hundred classes;
- the interval is split-conformal on **out-of-group** residuals: ``fit(X, y, groups=...)`` refits on
  group-k-fold splits (groups = models, so the spread is the error on a model never seen) and keeps the
  residual quantiles for ``coverage``; :meth:`predict_interval` adds them on the log scale;
- :meth:`ood` flags rows outside the training data: a feature beyond its training range (with a tolerance),
  or a nearest-training-row distance (range-scaled ``ood_columns``) above the largest such distance seen
  inside the training set (columns constant over the query batch are compared once, which prunes training
  rows of other models, GPUs and workloads); :meth:`predict_with_ood` does both after one input validation.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.model_selection import GroupKFold, KFold
from sklearn.utils import check_array
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from recommender.surrogate import treebins
from recommender.surrogate.treebins import row_codes as _row_codes

#: Width (log scale, each side) of the interval for a target fitted on fewer than ``min_interval_rows`` rows.
FALLBACK_LOG_HALF_WIDTH = float(np.log(3.0))


class SurrogateRegressor(RegressorMixin, BaseEstimator):
    """Multi-target boosted-tree regressor on a log / baseline-ratio scale with conformal intervals.

    Args:
        baseline_columns: per target, the column (index, or name when fitted on a DataFrame) whose positive
            values are the physics estimate the target is a ratio to, or a list of columns combined with
            fitted non-negative coefficients; None, or an entry None, = no baseline.
        log_target: learn on the log scale: ``"auto"`` does so for a target whose training values are all > 0.
        n_estimators: boosting stages per target.
        learning_rate: shrinkage per stage.
        max_depth: depth of each tree.
        min_samples_leaf: smallest leaf.
        subsample: row fraction per stage (< 1 is stochastic boosting).
        coverage: central coverage of :meth:`predict_interval` (0.8 = 10th to 90th percentile).
        interval_cv: folds for the out-of-group residuals (fewer when there are fewer groups); 0 or 1 skips
            them (intervals then use :data:`FALLBACK_LOG_HALF_WIDTH`; for quick refits inside validation).
        ood_tolerance: a feature is out of range beyond ``[min - tol*span, max + tol*span]`` of training.
        ood_columns: columns (indices or names) for the distance check; None = all.
        tree_columns: per target, the columns (indices or names) its trees may split on; None, or an entry
            None, = all columns (baseline-only columns can thus be kept away from other targets' trees).
        random_state: seed of the subsampling and of the fold split when no groups are given.

    Attributes:
        estimators_: list, per target, of a fitted GradientBoostingRegressor (None when the target had no rows).
        n_targets_: number of targets.
        transform_: per target, ``"ratio"``, ``"log"`` or ``"raw"``.
        baseline_index_: per target, the baseline column indices (empty = no baseline).
        baseline_coef_: per target, the non-negative coefficients of those columns.
        tree_index_: per target, the column indices its trees use.
        residual_quantiles_: (n_targets, 2) low/high out-of-group residual quantiles on the learned scale.
        cv_scores_: per target, dict with ``n``, ``groups``, ``mape`` and ``median_ape`` (percent) out of group.
        n_train_: per target, rows used.
        fill_values_: per feature, the NaN sentinel.
        feature_min_, feature_max_: per feature, training range (NaN-aware).
        feature_has_nan_: per feature, whether training had NaN there (a NaN query elsewhere is OOD).
        ood_index_: columns used by the distance check; ``ood_scale_`` their span; ``ood_train_``: training rows
            (scaled); ``ood_radius_``: the largest nearest-neighbour distance within the training set.
        split_features_, split_thresholds_, split_columns_, split_maps_: the split thresholds the trees use
            (:func:`recommender.surrogate.treebins.split_tables`), to run each tree once per class of rows that
            reach the same leaves (exact).
    """

    _parameter_constraints: dict[str, list[Any]] = {
        "baseline_columns": [list, tuple, None],
        "log_target": [StrOptions({"auto"}), "boolean"],
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "max_depth": [Interval(Integral, 1, None, closed="left")],
        "min_samples_leaf": [Interval(Integral, 1, None, closed="left")],
        "subsample": [Interval(Real, 0, 1, closed="right")],
        "coverage": [Interval(Real, 0, 1, closed="neither")],
        "interval_cv": [Interval(Integral, 0, None, closed="left")],
        "ood_tolerance": [Interval(Real, 0, None, closed="left")],
        "ood_columns": [list, tuple, None],
        "tree_columns": [list, tuple, None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        baseline_columns: list[Any] | tuple[Any, ...] | None = None,
        log_target: str | bool = "auto",
        n_estimators: int = 150,
        learning_rate: float = 0.08,
        max_depth: int = 3,
        min_samples_leaf: int = 3,
        subsample: float = 1.0,
        coverage: float = 0.8,
        interval_cv: int = 5,
        ood_tolerance: float = 0.05,
        ood_columns: list[Any] | tuple[Any, ...] | None = None,
        tree_columns: list[Any] | tuple[Any, ...] | None = None,
        random_state: int | None = 0,
    ) -> None:
        self.baseline_columns = baseline_columns
        self.log_target = log_target
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.subsample = subsample
        self.coverage = coverage
        self.interval_cv = interval_cv
        self.ood_tolerance = ood_tolerance
        self.ood_columns = ood_columns
        self.tree_columns = tree_columns
        self.random_state = random_state

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    # ---- fitting ------------------------------------------------------------------------------------------

    def _column_index(self, ref: Any, what: str) -> int:
        if isinstance(ref, (int, np.integer)) and not isinstance(ref, bool):
            if not 0 <= int(ref) < self.n_features_in_:
                raise ValueError(f"{what} {ref} is not a column index below {self.n_features_in_}")
            return int(ref)
        names = list(getattr(self, "feature_names_in_", []))
        if ref in names:
            return names.index(ref)
        raise ValueError(f"{what} {ref!r} is not a feature name of X (fit on a DataFrame to use names)")

    def _base_learner(self) -> GradientBoostingRegressor:
        return GradientBoostingRegressor(
            n_estimators=self.n_estimators, learning_rate=self.learning_rate, max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf, subsample=self.subsample, random_state=self.random_state,
        )

    def _fill(self, X: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(X), self.fill_values_, X)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any, groups: Any = None, sample_weight: Any = None,
            baseline_weight: Any = None) -> SurrogateRegressor:
        """Fit one booster per target (ignoring that target's NaN rows) and the out-of-group residuals.

        Args:
            X: (n, p) features; NaN allowed.
            y: (n,) or (n, k) targets; NaN = not measured for that row.
            groups: optional (n,) labels (e.g. the model) for the out-of-group interval folds.
            sample_weight: optional (n,) non-negative row weights, used by the baseline coefficients'
                least squares and by the boosters (None = all rows weigh 1).
            baseline_weight: optional non-negative weights for the baseline coefficients' least squares only
                (default ``sample_weight``), (n,) for every target or (n, k) one column per target: e.g. to
                calibrate a target's physics on the serving regime that will be predicted while every row still
                teaches the trees.

        Returns:
            self.

        Raises:
            ValueError: shapes disagree, y holds an infinity or no finite value at all, a target has a
                non-positive value with ``log_target=True``, or a baseline column is unknown.
        """
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        X = validate_data(self, X, ensure_all_finite="allow-nan", dtype=np.float64)
        y_arr = check_array(y, ensure_2d=False, ensure_all_finite="allow-nan", dtype=np.float64, input_name="y")
        if y_arr.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {y_arr.shape[0]}")
        if np.isinf(y_arr).any():
            raise ValueError("Input y contains infinity; use NaN for a target a row did not measure")
        if not np.isfinite(y_arr).any():
            raise ValueError("Input y contains NaN only; at least one target value must be measured")
        self._y_1d = y_arr.ndim == 1
        Y = y_arr.reshape(-1, 1) if y_arr.ndim == 1 else y_arr
        k = Y.shape[1]
        g = None if groups is None else np.asarray(groups)
        if g is not None and g.shape[0] != X.shape[0]:
            raise ValueError(f"groups has {g.shape[0]} entries but X has {X.shape[0]} rows")
        w = _check_sample_weight(sample_weight, X.shape[0])
        wb = [w] * k if baseline_weight is None else _check_baseline_weight(baseline_weight, X.shape[0], k)
        bases = list(self.baseline_columns) if self.baseline_columns is not None else [None] * k
        if len(bases) != k:
            raise ValueError(f"baseline_columns has {len(bases)} entries for {k} targets")
        self.n_targets_ = k
        self.baseline_index_ = [
            [] if b is None else [self._column_index(c, "baseline column") for c in _as_list(b)]
            for b in bases
        ]
        self.baseline_coef_ = [np.ones(len(ix)) for ix in self.baseline_index_]
        trees = list(self.tree_columns) if self.tree_columns is not None else [None] * k
        if len(trees) != k:
            raise ValueError(f"tree_columns has {len(trees)} entries for {k} targets")
        self.tree_index_ = [
            np.arange(self.n_features_in_) if t is None else np.array([self._column_index(c, "tree column") for c in t])
            for t in trees
        ]
        col_min = np.nanmin(np.where(np.isnan(X), np.inf, X), axis=0)
        col_min = np.where(np.isfinite(col_min), col_min, 0.0)
        self.fill_values_ = col_min - 1.0 - np.abs(col_min)
        Xf = self._fill(X)
        self.estimators_: list[GradientBoostingRegressor | None] = []
        self.transform_: list[str] = []
        self.n_train_: list[int] = []
        self.cv_scores_: list[dict[str, Any]] = []
        self.residual_quantiles_ = np.zeros((k, 2))
        for j in range(k):
            if len(self.baseline_index_[j]) > 1:
                self.baseline_coef_[j] = _fit_nonnegative(X[:, self.baseline_index_[j]], Y[:, j], wb[j])
            rows, z, transform = self._learned_scale(X, Y[:, j], self._baseline(X, j))
            self.transform_.append(transform)
            self.n_train_.append(int(rows.sum()))
            if rows.sum() == 0:
                self.estimators_.append(None)
                self.residual_quantiles_[j] = (-FALLBACK_LOG_HALF_WIDTH, FALLBACK_LOG_HALF_WIDTH)
                self.cv_scores_.append({"n": 0, "groups": 0, "mape": float("nan"), "median_ape": float("nan")})
                continue
            Xj = Xf[rows][:, self.tree_index_[j]]
            wj = None if w is None else w[rows]
            self.estimators_.append(self._base_learner().fit(Xj, z, sample_weight=wj))
            self.residual_quantiles_[j], score = self._oof_residuals(Xj, z, None if g is None else g[rows], wj)
            self.cv_scores_.append(score)
        self._fit_split_bins()
        self._fit_ood(X)
        return self

    def _fit_split_bins(self) -> None:
        """Record the split thresholds the trees use, for the exact deduplicated prediction
        (:func:`recommender.surrogate.treebins.split_tables`)."""
        (self.split_features_, self.split_thresholds_, self.split_columns_,
         self.split_maps_) = treebins.split_tables(self.estimators_, self.tree_index_)

    def _baseline(self, X: np.ndarray, j: int) -> np.ndarray | None:
        """Baseline of target ``j`` per row (NaN where a column is NaN), or None without one."""
        idx = self.baseline_index_[j]
        if not idx:
            return None
        return X[:, idx] @ self.baseline_coef_[j]

    def _learned_scale(
        self, X: np.ndarray, yj: np.ndarray, base: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, str]:
        rows = np.isfinite(yj)
        if base is not None:
            rows &= np.isfinite(base) & (base > 0)
        use_log = self.log_target is True or (self.log_target == "auto" and bool(np.all(yj[rows] > 0)))
        if self.log_target is True and np.any(yj[rows] <= 0):
            raise ValueError("log_target=True needs every target value > 0")
        if use_log and base is not None:
            return rows, np.log(yj[rows]) - np.log(base[rows]), "ratio"
        if use_log:
            return rows, np.log(yj[rows]), "log"
        return rows, yj[rows], "raw"

    def _oof_residuals(self, X: np.ndarray, z: np.ndarray, g: np.ndarray | None,
                       w: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        n = len(z)
        n_groups = len(np.unique(g)) if g is not None else 0
        if self.interval_cv < 2:
            half = FALLBACK_LOG_HALF_WIDTH
            return np.array([-half, half]), _no_score(n, n_groups)
        if g is not None and n_groups >= 3:
            splits = GroupKFold(n_splits=min(self.interval_cv, n_groups)).split(X, z, g)
        elif n >= 6:
            splits = KFold(n_splits=min(self.interval_cv, n), shuffle=True, random_state=self.random_state).split(X)
        else:
            half = FALLBACK_LOG_HALF_WIDTH
            return np.array([-half, half]), _no_score(n, n_groups)
        oof = np.empty(n)
        for tr, te in splits:
            oof[te] = self._base_learner().fit(X[tr], z[tr], sample_weight=None if w is None else w[tr]).predict(X[te])
        resid = z - oof
        alpha = (1.0 - self.coverage) / 2.0
        q = np.quantile(resid, [alpha, 1.0 - alpha])
        ape = np.abs(np.expm1(-resid)) * 100.0  # |pred/true - 1| on the original scale for log targets
        return q, {"n": n, "groups": n_groups, "mape": float(ape.mean()), "median_ape": float(np.median(ape))}

    def _fit_ood(self, X: np.ndarray) -> None:
        self.feature_has_nan_ = np.isnan(X).any(axis=0)
        with np.errstate(all="ignore"):
            self.feature_min_ = np.nanmin(np.where(np.isnan(X), np.inf, X), axis=0)
            self.feature_max_ = np.nanmax(np.where(np.isnan(X), -np.inf, X), axis=0)
        cols = range(self.n_features_in_) if self.ood_columns is None else self.ood_columns
        self.ood_index_ = np.array([self._column_index(c, "ood column") for c in cols], dtype=int)
        span = (self.feature_max_ - self.feature_min_)[self.ood_index_]
        self.ood_scale_ = np.where(np.isfinite(span) & (span > 0), span, 1.0)
        self.ood_train_ = self._ood_scaled(X)
        d = _nearest_distances(self.ood_train_, self.ood_train_, exclude_self=True)
        self.ood_radius_ = float(np.max(d[np.isfinite(d)])) if np.isfinite(d).any() else 0.0

    def _ood_scaled(self, X: np.ndarray) -> np.ndarray:
        lo = np.where(np.isfinite(self.feature_min_), self.feature_min_, 0.0)[self.ood_index_]
        Z = (X[:, self.ood_index_] - lo) / self.ood_scale_
        return np.where(np.isnan(Z), -1.0, Z)

    # ---- prediction ---------------------------------------------------------------------------------------

    def _split_bins(self, Xf: np.ndarray) -> np.ndarray:
        """Each row's bin among every split feature's thresholds (:func:`treebins.split_bins`)."""
        return treebins.split_bins(Xf, self.split_features_, self.split_thresholds_)

    def _predict_scaled(self, X: np.ndarray, targets: list[int]) -> np.ndarray:
        """Tree predictions on the learned scale, each target's ensemble run once per class of rows that take
        the same path through every one of its trees (:func:`treebins.predict_by_class`): the result equals
        running every tree on every row."""
        Xf = X.astype(np.float32)  # the trees' own dtype: converted once
        nan = np.isnan(Xf)
        if nan.any():
            np.copyto(Xf, np.broadcast_to(self.fill_values_.astype(np.float32), Xf.shape), where=nan)
        if not hasattr(self, "split_features_"):  # fitted before the bins were recorded: every row, every tree
            out = np.zeros((X.shape[0], len(targets)))
            for i, j in enumerate(targets):
                est = self.estimators_[j]
                if est is not None and X.shape[0]:
                    out[:, i] = est.predict(np.ascontiguousarray(Xf[:, self.tree_index_[j]]))
            return out
        return treebins.predict_by_class(
            Xf, [self.estimators_[j] for j in targets], [self.tree_index_[j] for j in targets],
            self.split_features_, self.split_thresholds_, [self.split_columns_[j] for j in targets],
            [self.split_maps_[j] for j in targets])

    def _unscale(self, X: np.ndarray, z: np.ndarray, targets: list[int]) -> np.ndarray:
        out = np.empty_like(z)
        for i, j in enumerate(targets):
            t = self.transform_[j]
            if t == "raw":
                out[:, i] = z[:, i]
            elif t == "ratio":
                b = self._baseline(X, j)
                assert b is not None  # a "ratio" target always has a baseline
                out[:, i] = np.exp(z[:, i]) * np.where(b > 0, b, np.nan)
            else:
                out[:, i] = np.exp(z[:, i])
        return out

    def _targets(self, targets: list[int] | None) -> list[int]:
        return list(range(self.n_targets_)) if targets is None else list(targets)

    def predict(self, X: Any, targets: list[int] | None = None) -> np.ndarray:
        """Point predictions on the original scale.

        Args:
            X: (n, p) features.
            targets: indices of the targets to predict (default all).

        Returns:
            (n,) when fitted on a 1-D y and ``targets`` is None, else (n, len(targets)).
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64)
        t = self._targets(targets)
        y = self._unscale(X, self._predict_scaled(X, t), t)
        return y[:, 0] if self._y_1d and targets is None else y

    def predict_interval(self, X: Any, targets: list[int] | None = None,
                         widen: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point prediction and its ``coverage`` interval, each (n, len(targets)).

        Args:
            X: (n, p) features.
            targets: target indices (default all).
            widen: optional (n,) factor >= 1 multiplying the residual quantiles (e.g. 2 for OOD rows).
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64)
        t = self._targets(targets)
        z = self._predict_scaled(X, t)
        q = self.residual_quantiles_[t]
        w = np.ones((X.shape[0], 1)) if widen is None else np.asarray(widen, dtype=float).reshape(-1, 1)
        lo = self._unscale(X, z + q[:, 0] * w, t)
        hi = self._unscale(X, z + q[:, 1] * w, t)
        return self._unscale(X, z, t), np.minimum(lo, hi), np.maximum(lo, hi)

    def predict_with_ood(self, X: Any, targets: list[int] | None = None, with_ood: bool = True
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """:meth:`predict` (always 2-D) and :meth:`ood` from one validation of ``X`` (the served path).

        Returns:
            ``(y, mask, reason_codes, reasons)``: y is (n, len(targets)); the reason of row ``i`` is
            ``reasons[reason_codes[i]]`` (``reasons[0]`` is ``""``, the code of every row in distribution).
            Without ``with_ood`` the mask is all False and every code 0.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64)
        t = self._targets(targets)
        y = self._unscale(X, self._predict_scaled(X, t), t)
        if not with_ood:
            return y, np.zeros(X.shape[0], dtype=bool), np.zeros(X.shape[0], dtype=int), [""]
        return (y, *self._ood(X))

    def ood(self, X: Any) -> tuple[np.ndarray, list[str]]:
        """Which rows lie outside the training data, and why.

        Returns:
            (mask, reasons): ``mask[i]`` is True when row ``i`` has a feature outside its training range (with
            ``ood_tolerance``) or lies farther from every training row than any training row from its nearest
            neighbour; ``reasons[i]`` names the features out of range with their training range
            (``"name outside training lo..hi"``), features missing that training always had, and/or
            ``"far from training rows"``, joined by ``"; "``
            (empty when in distribution).
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64)
        mask, codes, reasons = self._ood(X)
        return mask, [reasons[c] for c in codes]

    def _ood(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """:meth:`ood` on validated ``X`` as ``(mask, reason code per row, distinct reasons)``; reason 0 is
        ``""`` (in distribution), the others are built once per distinct set of flags (so they differ)."""
        span = self.feature_max_ - self.feature_min_
        tol = self.ood_tolerance * np.where(np.isfinite(span), span, 0.0)
        missing = np.isnan(X)
        with np.errstate(invalid="ignore"):
            out = (X < self.feature_min_ - tol - 1e-12) | (X > self.feature_max_ + tol + 1e-12)
        out |= missing & ~self.feature_has_nan_  # a NaN compares False above: out of range only if never NaN
        far = self._far(self._ood_scaled(X))
        mask = out.any(axis=1) | far
        codes = np.zeros(X.shape[0], dtype=int)
        flagged = np.nonzero(mask)[0]
        if not len(flagged):
            return mask, codes, [""]
        names = list(getattr(self, "feature_names_in_", [f"x{i}" for i in range(self.n_features_in_)]))
        flags = np.concatenate([out[flagged], far[flagged, None]], axis=1)
        flag_codes, first = _row_codes(np.packbits(flags, axis=1))
        messages = [""]
        for i in flagged[first]:
            parts = [f"{names[j]} missing (always set in training)" if missing[i, j] else
                     f"{names[j]} never set in training" if not np.isfinite(self.feature_min_[j]) else
                     f"{names[j]} outside training {self.feature_min_[j]:.4g}..{self.feature_max_[j]:.4g}"
                     for j in np.nonzero(out[i])[0]]
            if far[i]:
                parts.append("far from training rows")
            messages.append("; ".join(parts))
        codes[flagged] = flag_codes + 1
        return mask, codes, messages

    def _far(self, Z: np.ndarray) -> np.ndarray:
        """Rows of scaled ``Z`` farther than the OOD radius (with tolerance) from every training row.

        Columns equal in every row of ``Z`` (the model, GPU and workload of one scenario) add the same squared
        distance to each training row whatever the row: that part is computed once, training rows already
        beyond the radius on it are dropped, and only the varying columns of distinct rows are compared.
        """
        n = Z.shape[0]
        limit = self.ood_radius_ * (1.0 + self.ood_tolerance) + 1e-9
        if n == 0:
            return np.zeros(0, dtype=bool)
        const = np.all(Z == Z[:1], axis=0)
        train = self.ood_train_
        d2_const = ((train[:, const] - Z[0, const]) ** 2).sum(axis=1)
        near = d2_const <= limit * limit * (1.0 + 1e-6)
        if not near.any():
            return np.ones(n, dtype=bool)
        V = Z[:, ~const]
        codes, first = _row_codes(V)
        d = _nearest_distances(V[first], train[near][:, ~const], offset=d2_const[near])
        return d[codes] > limit

def _no_score(n: int, groups: int) -> dict[str, Any]:
    return {"n": n, "groups": groups, "mape": float("nan"), "median_ape": float("nan")}


def _as_list(b: Any) -> list[Any]:
    return list(b) if isinstance(b, (list, tuple)) else [b]


def _check_sample_weight(sample_weight: Any, n: int) -> np.ndarray | None:
    """``sample_weight`` as a float array of ``n`` finite non-negative values with a positive sum, or None."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if w.shape[0] != n:
        raise ValueError(f"sample_weight has {w.shape[0]} entries but X has {n} rows")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("sample_weight must be finite, non-negative and not all zero")
    return w


def _check_baseline_weight(weight: Any, n: int, k: int) -> list[np.ndarray | None]:
    """Per target, the baseline least-squares weights from an (n,) or (n, k) array (see ``fit``)."""
    arr = np.asarray(weight, dtype=np.float64)
    if arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1):
        w = _check_sample_weight(arr.reshape(-1), n)
        return [w] * k
    if arr.ndim != 2 or arr.shape != (n, k):
        raise ValueError(f"baseline_weight must have shape ({n},) or ({n}, {k}), got {arr.shape}")
    return [_check_sample_weight(arr[:, j], n) for j in range(k)]


def _fit_nonnegative(A: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Coefficients ``c >= 0`` minimising ``sum_i w_i (A_i c / y_i - 1)^2`` over rows with finite values
    (``w`` = 1 when None; rows of weight 0 are left out).

    Falls back to ones when there are no usable rows or the solution is all zero.
    """
    from scipy.optimize import nnls

    rows = np.isfinite(y) & (y > 0) & np.all(np.isfinite(A), axis=1)
    if w is not None:
        rows &= w > 0
    if rows.sum() < 1:
        return np.ones(A.shape[1])
    scale = np.maximum(np.abs(A[rows]).max(axis=0) / np.abs(y[rows]).max(), 1e-300)
    sw = np.ones(int(rows.sum())) if w is None else np.sqrt(w[rows])
    coef, _ = nnls(A[rows] / y[rows, None] / scale * sw[:, None], sw)
    coef = coef / scale
    return coef if np.any(coef > 0) else np.ones(A.shape[1])


def _nearest_distances(A: np.ndarray, B: np.ndarray, exclude_self: bool = False,
                       offset: np.ndarray | None = None) -> np.ndarray:
    """Euclidean distance from each row of ``A`` to its nearest row of ``B`` (one matrix product).

    ``offset`` (one per row of ``B``) is added to the squared distances: the part from columns left out.
    """
    if len(B) == 0:
        return np.full(len(A), np.inf)
    A, B = A.astype(np.float32), B.astype(np.float32)
    d2 = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * (A @ B.T)
    if offset is not None:
        d2 += np.asarray(offset, dtype=np.float32)[None, :]
    if exclude_self:
        np.fill_diagonal(d2, np.inf)
    return np.sqrt(np.maximum(d2.min(axis=1), 0.0))
