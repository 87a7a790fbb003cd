"""Exact shortcut for tree ensembles on batches with repeated structure: run each tree once per class of rows
that take the same path through it.

A tree tests ``x[feature] <= threshold`` at each node, so two rows whose features fall between the same pair
of consecutive thresholds of every feature the trees split on reach the same leaves. Binning each split
feature by its sorted thresholds (:func:`split_bins`) and grouping rows with equal bins (:func:`row_codes`)
therefore gives classes whose members have identical predictions: the ensemble runs on one row per class and
the result is spread back, bit for bit what running every tree on every row gives.

Configs of one scenario share the model, GPU and workload features and their knobs cross few thresholds, so
10,000 configs make about 2,000 classes over the thresholds of every target of the surrogate, and a few hundred
per target over its own (:func:`target_classes`, with the per-target maps :func:`split_tables` records).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

_TREE_LEAF = -1  # sklearn.tree._tree.TREE_LEAF: the child index of a leaf


def split_tables(estimators: Sequence[Any], tree_index: Sequence[np.ndarray]
                 ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], list[list[np.ndarray]]]:
    """Split thresholds of boosted-tree ensembles that each see a subset of the columns.

    Args:
        estimators: per target, a fitted :class:`~sklearn.ensemble.GradientBoostingRegressor` (its
            ``estimators_`` array of trees) or None.
        tree_index: per target, the columns (of the full feature matrix) its trees were fitted on.

    Returns:
        ``(features, thresholds, columns, maps)``: the full-matrix columns any tree splits on (sorted); per such
        column its sorted distinct thresholds (float64); per target the positions in ``features`` its own trees
        split on; and per target and such position, the map from the shared bin (among ``thresholds``) to the
        target's own bin (among its own thresholds, a subset), non-decreasing.
    """
    feats, thresholds, owners = [np.zeros(0, int)], [np.zeros(0)], [np.zeros(0, int)]
    for j, est in enumerate(estimators):
        if est is None:
            continue
        for tree in est.estimators_.ravel():
            t = tree.tree_
            inner = t.children_left != _TREE_LEAF
            feats.append(np.asarray(tree_index[j])[t.feature[inner]])
            thresholds.append(t.threshold[inner])
            owners.append(np.full(int(inner.sum()), j))
    f, th, own = np.concatenate(feats), np.concatenate(thresholds), np.concatenate(owners)
    features = np.unique(f).astype(int)
    shared = [np.unique(th[f == c]).astype(np.float64) for c in features]
    columns, maps = [], []
    for j in range(len(estimators)):
        cols, target_maps = [], []
        for s, (c, sh) in enumerate(zip(features, shared, strict=True)):
            own_th = np.unique(th[(f == c) & (own == j)])
            if len(own_th):
                cols.append(s)
                below = np.concatenate([[-np.inf], sh])  # shared bin b lies above sh[b - 1]
                target_maps.append(np.searchsorted(own_th, below, side="right").astype(np.int64))
        columns.append(np.array(cols, dtype=int))
        maps.append(target_maps)
    return features, shared, columns, maps


def split_bins(Xf: np.ndarray, features: np.ndarray, thresholds: Sequence[np.ndarray]) -> np.ndarray:
    """(len(features), n) index of each row's value among each split feature's sorted thresholds.

    ``searchsorted(thresholds, x, "left")`` counts the thresholds below ``x``, so ``x <= threshold_k`` (the
    trees' test, float32 ``x`` against a float64 threshold) holds exactly when ``k >=`` that count. A feature
    equal in every row is looked up once.

    Args:
        Xf: (n, p) float32 features, NaN already filled (as the trees see them).
        features, thresholds: from :func:`split_tables`.
    """
    width = max((len(t) for t in thresholds), default=0)
    values = np.ascontiguousarray(Xf[:, features].T, dtype=np.float64)
    B = np.empty(values.shape, dtype=np.int16 if width < 2**15 else np.int32)
    const = np.all(values == values[:, :1], axis=1) if values.shape[1] else np.ones(len(values), bool)
    for s, th in enumerate(thresholds):
        B[s] = np.searchsorted(th, values[s, 0] if const[s] else values[s], side="left")
    return B


def row_codes(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(code per row, index of the first row of each code) for identical rows of 2-D ``A``, by hashing."""
    import pandas as pd

    a = np.ascontiguousarray(A)
    if a.shape[0] == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    if a.shape[1] == 0:  # no columns: every row is the same
        return np.zeros(a.shape[0], dtype=int), np.zeros(1, dtype=int)
    v = a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).ravel()
    codes, uniq = pd.factorize(v)
    first = np.full(len(uniq), -1)
    first[codes[::-1]] = np.arange(len(codes))[::-1]
    return codes, first


def target_classes(B: np.ndarray, lo: np.ndarray, hi: np.ndarray, columns: np.ndarray,
                   maps: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(class per row, index of the first row of each class) of rows of shared bins ``B`` (features x rows)
    under one target's own bins: ``maps[k][b]`` is the target's bin of shared bin ``b`` of feature
    ``columns[k]``, non-decreasing in ``b``, so ``lo`` / ``hi`` (each feature's least / largest shared bin)
    bound it.

    The class is the row's mixed-radix number over the features whose own bin varies, renumbered densely
    whenever it would pass 62 bits.
    """
    n = B.shape[1]
    code = np.zeros(n, dtype=np.int64)
    size = 1
    for s, m in zip(columns, maps, strict=True):
        a, b = int(m[lo[s]]), int(m[hi[s]])
        if a == b:
            continue
        r = b - a + 1
        if size * r >= 2**62:
            _, code = np.unique(code, return_inverse=True)
            size = int(code.max()) + 1
        code = code * r + (m[B[s]] - a)
        size *= r
    _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
    return inverse.reshape(n), first


def predict_by_class(Xf: np.ndarray, estimators: Sequence[Any], tree_index: Sequence[np.ndarray],
                     features: np.ndarray, thresholds: Sequence[np.ndarray], columns: Sequence[np.ndarray],
                     maps: Sequence[list[np.ndarray]]) -> np.ndarray:
    """(n, len(estimators)) predictions of each ensemble (0 where None) on the rows of ``Xf``.

    Args:
        Xf: (n, p) float32 features, NaN already filled.
        estimators, tree_index, columns, maps: per output column, the ensemble, the columns its trees see,
            and its entries of :func:`split_tables`.
        features, thresholds: the shared entries of :func:`split_tables` (over every ensemble they cover).
    """
    out = np.zeros((Xf.shape[0], len(estimators)))
    if Xf.shape[0] == 0:
        return out
    B = split_bins(Xf, features, thresholds)
    varying = ~np.all(B == B[:, :1], axis=1)
    codes, first = row_codes(B[varying].T)
    Xu, Bu = Xf[first], np.ascontiguousarray(B[:, first])
    lo, hi = Bu.min(axis=1), Bu.max(axis=1)
    for i, est in enumerate(estimators):
        if est is None:
            continue
        cj, fj = target_classes(Bu, lo, hi, columns[i], maps[i])
        rows = Xu[fj]
        if len(tree_index[i]) != rows.shape[1]:
            rows = np.ascontiguousarray(rows[:, tree_index[i]])
        out[:, i] = est.predict(rows)[cj][codes]
    return out
