"""SurrogateRegressor: scikit-learn contract, grey-box baselines, NaN targets, intervals and OOD flags."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from recommender.surrogate.model import SurrogateRegressor

pytestmark = pytest.mark.unit


def _expected_failures(estimator: SurrogateRegressor) -> dict[str, str]:
    # as for scikit-learn's own GradientBoostingRegressor: its trees place split thresholds between rows of any
    # weight and count rows in min_samples_leaf, so an integer weight is not the same as repeated rows
    return {"check_sample_weight_equivalence_on_dense_data":
            "boosted trees: sample_weight is not equivalent to removing/repeating rows"}


@parametrize_with_checks(
    [SurrogateRegressor(n_estimators=10), SurrogateRegressor(n_estimators=10, interval_cv=3)],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_estimator_contract(estimator, check) -> None:
    check(estimator)


def _physics_data(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """y = 2 a + 0.5 b (a grey-box baseline) times a mild learned factor of c, plus noise."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.uniform(1, 10, n), "b": rng.uniform(1, 100, n), "c": rng.uniform(0, 1, n)})
    y = (2 * X["a"] + 0.5 * X["b"]) * np.exp(0.2 * X["c"]) * np.exp(rng.normal(0, 0.02, n))
    return X, y.to_numpy()


def test_nonnegative_baseline_is_fitted_and_extrapolates() -> None:
    X, y = _physics_data()
    est = SurrogateRegressor(baseline_columns=[["a", "b"]], n_estimators=50).fit(X, y)
    coef = est.baseline_coef_[0]
    assert (coef >= 0).all()
    assert coef[1] / coef[0] == pytest.approx(0.25, rel=0.2)
    # ten times beyond the training range of b: the physics baseline carries the prediction
    far = pd.DataFrame({"a": [5.0], "b": [1000.0], "c": [0.5]})
    truth = (2 * 5 + 0.5 * 1000) * np.exp(0.1)
    assert est.predict(far)[0] == pytest.approx(truth, rel=0.15)
    assert est.transform_ == ["ratio"]


def test_sample_weight_pulls_the_fit_toward_heavy_rows() -> None:
    """Two regimes disagree by a factor 2; the weighted one dominates the baseline and the trees."""
    X, y = _physics_data(400)
    heavy = np.arange(400) % 2 == 0
    y2 = np.where(heavy, y, 2 * y)
    w = np.where(heavy, 50.0, 1.0)
    plain = SurrogateRegressor(baseline_columns=[["a", "b"]], n_estimators=30, max_depth=2)
    weighted = SurrogateRegressor(baseline_columns=[["a", "b"]], n_estimators=30, max_depth=2)
    err = lambda est: np.median(np.abs(est.predict(X[heavy]) / y[heavy] - 1))  # noqa: E731
    assert err(weighted.fit(X, y2, sample_weight=w)) < 0.05 < err(plain.fit(X, y2))
    # zero weight = the row is left out
    w0 = np.where(heavy, 1.0, 0.0)
    only = SurrogateRegressor(baseline_columns=[["a", "b"]], n_estimators=30).fit(X, y2, sample_weight=w0)
    assert err(only) < 0.05


def test_baseline_weight_per_target_calibrates_only_that_target() -> None:
    X, y = _physics_data(400)
    heavy = np.arange(400) % 2 == 0
    Y = np.column_stack([np.where(heavy, y, 3 * y)] * 2)
    bw = np.column_stack([np.ones(400), np.where(heavy, 1.0, 0.0)])
    est = SurrogateRegressor(baseline_columns=[["a", "b"], ["a", "b"]], n_estimators=5).fit(X, Y, baseline_weight=bw)
    # target 1's physics comes from the heavy rows only (y = 2a + 0.5b times ~1.1); target 0's from both regimes
    assert est.baseline_coef_[1][0] == pytest.approx(2 * 1.1, rel=0.15)
    assert est.baseline_coef_[0][0] > 1.2 * est.baseline_coef_[1][0]
    with pytest.raises(ValueError, match="baseline_weight must have shape"):
        SurrogateRegressor(baseline_columns=[["a", "b"], ["a", "b"]]).fit(X, Y, baseline_weight=np.ones((400, 3)))
    with pytest.raises(ValueError, match="non-negative"):
        SurrogateRegressor().fit(X, y, sample_weight=-np.ones(400))


def test_multi_target_with_missing_values_per_target() -> None:
    X, y = _physics_data()
    Y = np.column_stack([y, 3 * y])
    Y[::2, 1] = np.nan  # the second target was measured on half of the rows
    est = SurrogateRegressor(baseline_columns=[["a", "b"], ["a", "b"]], n_estimators=40).fit(X, Y)
    assert est.n_train_ == [300, 150]
    p = est.predict(X.iloc[:5])
    assert p.shape == (5, 2)
    assert p[:, 1] / p[:, 0] == pytest.approx(3, rel=0.1)


def test_target_without_rows_predicts_its_baseline_with_a_wide_interval() -> None:
    X, y = _physics_data(50)
    Y = np.column_stack([y, np.full(50, np.nan)])
    est = SurrogateRegressor(baseline_columns=[None, "b"], n_estimators=10).fit(X, Y)
    assert est.estimators_[1] is None
    point, lo, hi = est.predict_interval(X.iloc[:3])
    assert point[:, 1] == pytest.approx(X["b"].iloc[:3].to_numpy())
    assert (hi[:, 1] / lo[:, 1] > 5).all()


def test_grouped_intervals_cover_out_of_group_errors() -> None:
    X, y = _physics_data(400, seed=1)
    groups = np.repeat(np.arange(8), 50)
    est = SurrogateRegressor(baseline_columns=[["a", "b"]], n_estimators=40, interval_cv=4, coverage=0.8)
    est.fit(X, y, groups=groups)
    assert est.cv_scores_[0]["groups"] == 8 and est.cv_scores_[0]["mape"] < 10
    X2, y2 = _physics_data(200, seed=2)
    point, lo, hi = est.predict_interval(X2)
    inside = ((y2 >= lo[:, 0]) & (y2 <= hi[:, 0])).mean()
    assert 0.6 < inside <= 1.0
    assert (lo[:, 0] <= point[:, 0]).all() and (point[:, 0] <= hi[:, 0]).all()


def test_ood_names_features_outside_training_and_far_rows() -> None:
    X, y = _physics_data()
    est = SurrogateRegressor(baseline_columns=[["a", "b"]], n_estimators=10).fit(X, y)
    q = pd.DataFrame({"a": [5.0, 50.0, 5.0], "b": [50.0, 50.0, 50.0], "c": [0.5, 0.5, np.nan]})
    mask, reasons = est.ood(q)
    assert mask.tolist() == [False, True, True]
    assert reasons[0] == "" and "a outside training" in reasons[1] and "c missing" in reasons[2]


def test_log_target_true_refuses_non_positive_values() -> None:
    X, y = _physics_data(30)
    y = y.copy()
    y[0] = -1.0
    with pytest.raises(ValueError, match="> 0"):
        SurrogateRegressor(log_target=True, n_estimators=5).fit(X, y)
    with pytest.raises(ValueError, match="baseline column"):
        SurrogateRegressor(baseline_columns=["nope"], n_estimators=5).fit(X, np.abs(y))


def _direct_scaled(est: SurrogateRegressor, X: pd.DataFrame) -> np.ndarray:
    """Every tree on every row, the plain scikit-learn way (what the deduplicated path must equal)."""
    Xf = est._fill(X.to_numpy(dtype=float)).astype(np.float32)
    return np.column_stack([np.zeros(len(X)) if e is None else e.predict(np.ascontiguousarray(Xf[:, ix]))
                            for e, ix in zip(est.estimators_, est.tree_index_, strict=True)])


def test_deduplicated_tree_prediction_equals_every_tree_on_every_row() -> None:
    X, y = _physics_data(300)
    X["d"] = np.where(np.arange(300) % 3 == 0, np.nan, X["c"] * 7)  # NaN fill path
    Y = np.column_stack([y, 3 * y + X["c"].to_numpy() * 40, np.log(y)])
    est = SurrogateRegressor(baseline_columns=[["a", "b"], None, None], n_estimators=60, max_depth=3,
                             tree_columns=[None, ["a", "c"], ["b", "d"]]).fit(X, Y)
    rng = np.random.default_rng(5)
    # a batch like one scenario's: a constant column, repeats, values on and around split thresholds
    thresholds = np.concatenate(est.split_thresholds_)
    q = pd.DataFrame({
        "a": np.full(500, 4.2),
        "b": rng.choice(np.concatenate([thresholds, rng.uniform(1, 100, 50)]), 500),
        "c": rng.choice(rng.uniform(0, 1, 20), 500),
        "d": np.where(rng.uniform(size=500) < 0.2, np.nan, rng.uniform(0, 7, 500)),
    })
    for batch in (q, X, q.iloc[:1]):
        assert np.array_equal(est._predict_scaled(batch.to_numpy(dtype=float), [0, 1, 2]),
                              _direct_scaled(est, batch))
    assert est._predict_scaled(q.iloc[:0].to_numpy(dtype=float), [0, 1, 2]).shape == (0, 3)
    # the classes really are fewer than the rows (the point of the deduplication)
    assert len(np.unique(est._split_bins(q.to_numpy(dtype=np.float32)), axis=1).T) < len(q)


def test_predict_with_ood_matches_predict_and_ood() -> None:
    X, y = _physics_data()
    est = SurrogateRegressor(baseline_columns=[["a", "b"]], n_estimators=10).fit(X, y)
    q = pd.DataFrame({"a": [5.0, 50.0, 5.0, 50.0], "b": [50.0, 50.0, 50.0, 50.0], "c": [0.5, 0.5, np.nan, 0.5]})
    y_all, mask, codes, reasons = est.predict_with_ood(q)
    assert np.array_equal(y_all[:, 0], est.predict(q))
    ood_mask, ood_reasons = est.ood(q)
    assert mask.tolist() == ood_mask.tolist() == [False, True, True, True]
    assert [reasons[c] for c in codes] == ood_reasons
    assert reasons[0] == "" and codes[0] == 0 and codes[1] == codes[3] != codes[2]
    _, mask_off, codes_off, reasons_off = est.predict_with_ood(q, with_ood=False)
    assert not mask_off.any() and reasons_off == [""] and not codes_off.any()
