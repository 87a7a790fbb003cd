"""Pareto sets, SLO checks and the pick under an SLO. Pure functions: no Optuna, no I/O.

Everything here takes either a list of :class:`~recommender.measurement.Measurement` or a DataFrame with one
row per measurement (``recommender.dataset.to_frame``: metric columns named as in
:class:`~recommender.measurement.Metrics`, plus ``status``), and returns the same kind it was given.
All objectives are minimized. A measurement with ``status != "ok"`` or a missing objective value is never on
a front and never picked.

Units: energy in joules per output token (``energy_per_output_token_j``), latencies in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

import numpy as np

from recommender.measurement import Measurement

if TYPE_CHECKING:
    import pandas as pd

    from recommender.slo import SLO

ENERGY_KEY = "energy_per_output_token_j"

__all__ = [
    "ENERGY_KEY", "pareto_front", "pareto_mask", "pareto_mask_2d", "meets_slo", "slo_violations", "constraint_values",
    "pick_best", "hypervolume_2d", "objective_values",
]

T = TypeVar("T")


def _value(item: Measurement | Mapping[str, Any], key: str) -> float | None:
    """Metric ``key`` of a Measurement (best window) or a row mapping; None when absent or NaN."""
    if isinstance(item, Measurement):
        v = item.value(key)
    else:
        v = item.get(key)
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _is_ok(item: Measurement | Mapping[str, Any]) -> bool:
    if isinstance(item, Measurement):
        return item.ok
    return item.get("status", "ok") == "ok"


def objective_values(item: Measurement | Mapping[str, Any], objectives: Sequence[str]) -> tuple[float, ...] | None:
    """The objective vector of one OK measurement, or None when it failed or lacks one of ``objectives``."""
    if not _is_ok(item):
        return None
    vals = tuple(_value(item, k) for k in objectives)
    if any(v is None for v in vals):
        return None
    return vals  # type: ignore[return-value]


def pareto_mask(points: Sequence[Sequence[float] | None]) -> list[bool]:
    """True for each point no other point dominates (all objectives minimized); None points are False.

    A point dominates another when it is <= in every objective and < in at least one. Exact duplicates do
    not dominate each other, so both stay on the front. Two objectives without NaN take the O(n log n)
    :func:`pareto_mask_2d`; otherwise O(n^2) (fronts here have at most thousands of points).
    """
    pts = [None if p is None else tuple(float(x) for x in p) for p in points]
    present = [i for i, p in enumerate(pts) if p is not None]
    if present and all(len(pts[i]) == 2 and not any(math.isnan(v) for v in pts[i]) for i in present):  # type: ignore[arg-type]
        sub = pareto_mask_2d(np.array([pts[i][0] for i in present]), np.array([pts[i][1] for i in present]))  # type: ignore[index]
        out = [False] * len(pts)
        for i, m in zip(present, sub, strict=True):
            out[i] = bool(m)
        return out
    mask = []
    for i, p in enumerate(pts):
        if p is None:
            mask.append(False)
            continue
        dominated = False
        for j, q in enumerate(pts):
            if j == i or q is None:
                continue
            if all(a <= b for a, b in zip(q, p, strict=True)) and any(a < b for a, b in zip(q, p, strict=True)):
                dominated = True
                break
        mask.append(not dominated)
    return mask


def pareto_mask_2d(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """:func:`pareto_mask` for two objectives as arrays (no NaN): sort by (x, y), sweep keeping each point
    whose y beats every earlier one, plus exact duplicates of a kept point. O(n log n)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    mask = np.zeros(len(x), dtype=bool)
    best: tuple[float, float] | None = None
    for i in np.lexsort((y, x)):
        p = (float(x[i]), float(y[i]))
        if best is None or p[1] < best[1]:
            mask[i], best = True, p
        elif p == best:
            mask[i] = True
    return mask


def _items(data: Iterable[Measurement] | pd.DataFrame) -> tuple[list[Any], bool]:
    """Rows as a list (Measurements or dicts) and whether the input was a DataFrame."""
    if hasattr(data, "to_dict") and hasattr(data, "columns"):
        return data.to_dict("records"), True  # type: ignore[union-attr]
    return list(data), False  # type: ignore[arg-type]


@overload
def pareto_front(
    measurements: list[Measurement], objectives: Sequence[str] = ..., slo: SLO | None = ...
) -> list[Measurement]: ...
@overload
def pareto_front(
    measurements: pd.DataFrame, objectives: Sequence[str] = ..., slo: SLO | None = ...
) -> pd.DataFrame: ...
def pareto_front(
    measurements: Iterable[Measurement] | pd.DataFrame,
    objectives: Sequence[str] = (ENERGY_KEY, "tpot_p90_s"),
    slo: SLO | None = None,
) -> list[Measurement] | pd.DataFrame:
    """The non-dominated OK measurements over ``objectives`` (all minimized), sorted by the first objective.

    Args:
        measurements: Measurements or a DataFrame of their rows.
        objectives: metric keys, e.g. ``("energy_per_output_token_j", "ttft_p99_s")``.
        slo: when given, only measurements meeting every target are considered (the *feasible* front).

    Returns:
        Same kind as the input: a list of Measurements (the objects given, not copies) or a DataFrame subset
        (original index kept). Failed measurements and those missing an objective are excluded.
    """
    items, is_frame = _items(measurements)
    if slo is not None:
        keep = [i for i, it in enumerate(items) if meets_slo(it, slo)]
    else:
        keep = list(range(len(items)))
    vecs = [objective_values(items[i], objectives) for i in keep]
    mask = pareto_mask(vecs)
    chosen = [i for i, m in zip(keep, mask, strict=True) if m]
    chosen.sort(key=lambda i: objective_values(items[i], objectives))  # type: ignore[arg-type, return-value]
    if is_frame:
        df = measurements
        return df.iloc[chosen]  # type: ignore[union-attr]
    return [items[i] for i in chosen]


def slo_violations(item: Measurement | Mapping[str, Any], slo: SLO) -> dict[str, float]:
    """Targets ``item`` misses: metric key -> excess over the limit in seconds (> 0).

    A missing metric counts as a violation with excess ``inf`` (it cannot be shown to meet the target). With
    ``slo.attainment`` set, ``slo_attainment`` below it is reported under ``"slo_attainment"`` as the
    shortfall (fraction). A failed measurement violates everything (``{"status": inf}``).
    """
    if not _is_ok(item):
        return {"status": math.inf}
    out: dict[str, float] = {}
    for key, c in constraint_values(item, slo).items():
        if c > 0:
            out[key] = c
    return out


def slo_headroom(item: Measurement | Mapping[str, Any], slo: SLO) -> float:
    """The smallest relative headroom over the latency targets of ``slo``: ``min(1 - observed / limit)``.

    0.1 means the closest target is met with 10 % to spare; a negative value is a miss (-0.05: 5 % over). A
    missing metric or a failed measurement gives ``-inf``. The attainment fraction is not a latency and is left out.
    """
    if not _is_ok(item):
        return -math.inf
    excess = constraint_values(item, slo)  # observed - limit per target (inf when missing)
    return min(-excess[t.key] / t.limit_s for t in slo.targets)


def constraint_values(item: Measurement | Mapping[str, Any], slo: SLO) -> dict[str, float]:
    """Optuna-style constraint per SLO target: ``observed - limit`` (seconds), feasible when ``<= 0``.

    Keys are the metric keys (``ttft_p99_s``) plus ``slo_attainment`` when the SLO sets an attainment
    (value ``required - observed``). A missing metric gives ``inf``. Order follows ``slo.targets``.
    """
    out: dict[str, float] = {}
    for t in slo.targets:
        v = _value(item, t.key)
        out[t.key] = math.inf if v is None else v - t.limit_s
    if slo.attainment is not None:
        a = _value(item, "slo_attainment")
        out["slo_attainment"] = math.inf if a is None else slo.attainment - a
    return out


def meets_slo(item: Measurement | Mapping[str, Any], slo: SLO) -> bool:
    """True when ``item`` is OK and meets every target of ``slo`` (see :func:`slo_violations`)."""
    return not slo_violations(item, slo)


@overload
def pick_best(measurements: list[Measurement], slo: SLO, latency_key: str | None = ...) -> Measurement | None: ...
@overload
def pick_best(measurements: pd.DataFrame, slo: SLO, latency_key: str | None = ...) -> dict[str, Any] | None: ...
def pick_best(
    measurements: Iterable[Measurement] | pd.DataFrame, slo: SLO, latency_key: str | None = None
) -> Measurement | dict[str, Any] | None:
    """The least-energy measurement meeting every SLO target; ties go to the lower latency.

    Args:
        measurements: Measurements or a DataFrame of their rows.
        slo: the targets; every one must hold.
        latency_key: tie-break metric (default: the SLO's tightest target, ``slo.tightest().key``).

    Returns:
        The chosen Measurement (or row dict for a DataFrame), or None when nothing meets the SLO or no
        feasible measurement has an energy value.
    """
    items, _ = _items(measurements)
    lat = latency_key or slo.tightest().key
    best: Any = None
    best_key: tuple[float, float] | None = None
    for it in items:
        if not meets_slo(it, slo):
            continue
        e = _value(it, ENERGY_KEY)
        if e is None:
            continue
        lv = _value(it, lat)
        k = (e, math.inf if lv is None else lv)
        if best_key is None or k < best_key:
            best, best_key = it, k
    return best


def hypervolume_2d(points: Iterable[Sequence[float]], reference: Sequence[float]) -> float:
    """Area dominated by ``points`` and bounded by ``reference`` (both objectives minimized).

    Points not strictly better than the reference in both objectives add nothing. Returns 0.0 for no
    points. Units are the product of the two objectives' units (e.g. J/token x s).
    """
    rx, ry = float(reference[0]), float(reference[1])
    pts = sorted((float(p[0]), float(p[1])) for p in points if float(p[0]) < rx and float(p[1]) < ry)
    area = 0.0
    best_y = ry
    for x, y in pts:
        if y < best_y:
            area += (rx - x) * (best_y - y)
            best_y = y
    return area
