"""Recommendation from predictions: score every feasible config of a space, keep the SLO-meeting ones,
take the energy/latency Pareto set and the least-energy pick, and compare with two baselines.

Pure over a predictions DataFrame (one row per config: knob columns + metric columns, optionally
``<metric>_low``/``<metric>_high`` interval columns, ``<metric>_upper`` one-sided upper bounds, ``ood`` and
``provenance``), so it serves the surrogate, replayed measurements and unit tests alike. Baselines: vLLM's
default config (defaults for every knob, the smallest tensor parallelism that is feasible, one replica) and the
fastest config (lowest latency objective).

Which value must meet each SLO target is the ``risk`` rule (:data:`RISKS`): ``guarded`` (the default) requires
the one-sided 75% upper bound ``<metric>_upper`` to meet it, the rule ``benchmarks/surrogate_lomo.py`` validates
leave-one-model-out (median regret 0% under 25 / 50 / 100 ms ITL SLOs; two picks, both Llama-4-Scout's, more than
10% over at 25 ms); ``point`` uses the prediction itself (its picks land up to 32% over the ITL SLO in that
benchmark); ``upper`` the upper end of the 80% interval (widened out of distribution: the most cautious, at a
median regret of 40% at 25 ms).
A frame without the bound columns (measured values) is judged on its values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from recommender.config import Scenario, ServingConfig
from recommender.feasibility import feasible_mask
from recommender.measurement import Measurement, Metrics, Recommendation
from recommender.pareto import pareto_mask_2d
from recommender.slo import SLO

if TYPE_CHECKING:
    from recommender.space import KnobSpace

ENERGY = "energy_per_output_token_j"
KNOBS: tuple[str, ...] = tuple(k for k in ServingConfig.model_fields if k != "schema_version")
Risk = Literal["guarded", "point", "upper"]
#: The risk rules and the column each one compares with an SLO target's limit (``{key}`` = the target's metric).
RISKS: dict[str, str] = {"guarded": "{key}_upper", "point": "{key}", "upper": "{key}_high"}
DEFAULT_RISK: Risk = "guarded"


def candidate_frame(space: KnobSpace, scenario: Scenario) -> pd.DataFrame:
    """Every config of ``space`` that passes the feasibility check in ``scenario``, as resolved knob columns.

    Tensor parallelism x replicas beyond the scenario's GPUs are dropped before the product is built, so
    the frame stays small; the vLLM default config row is always added (``is_default`` True).
    """
    gpu = scenario.hardware.spec
    defaults = ServingConfig().resolved(gpu).model_dump(exclude={"schema_version"})
    values = {k: kn.values() for k, kn in space.knobs.items()}
    fixed = {**defaults, **space.spec.fixed}
    count = scenario.hardware.count
    tps = values.pop("tensor_parallel_size", [fixed["tensor_parallel_size"]])
    reps = values.pop("replicas", [fixed["replicas"]])
    layouts = [(t, r) for t in tps for r in reps if t * r <= count]
    names = list(values)
    sizes = [len(values[n]) for n in names]
    inner = int(np.prod(sizes)) if sizes else 1
    cols: dict[str, Any] = {
        "tensor_parallel_size": np.repeat([t for t, _ in layouts], inner),
        "replicas": np.repeat([r for _, r in layouts], inner),
    }
    n_rows = inner * len(layouts)
    idx = np.indices(sizes).reshape(len(sizes), -1) if sizes else np.zeros((0, 1), dtype=int)
    for i, n in enumerate(names):
        arr = np.array(values[n], dtype=object) if any(v is None for v in values[n]) else np.array(values[n])
        cols[n] = np.tile(arr[idx[i]], len(layouts))
    for k, v in fixed.items():
        if k not in cols:
            cols[k] = np.full(n_rows, v, dtype=object if v is None or isinstance(v, str) else None)
    rows = pd.DataFrame(cols)
    rows["is_default"] = False
    default = default_config(scenario)
    if default is not None:
        d = default.resolved(gpu).model_dump(exclude={"schema_version"})
        rows = pd.concat([rows, pd.DataFrame([{**d, "is_default": True}])], ignore_index=True)
    rows = rows[feasible_mask(rows, scenario)].reset_index(drop=True)
    for col in ("gpu_clock_mhz", "power_limit_w"):
        rows[col] = rows[col].astype(object).where(rows[col].notna(), None)
    return rows


def default_config(scenario: Scenario) -> ServingConfig | None:
    """vLLM's defaults with the smallest feasible tensor parallelism (one replica), or None if none fits."""
    from recommender.feasibility import check_feasibility

    tp = 1
    while tp <= scenario.hardware.count:
        c = ServingConfig(tensor_parallel_size=tp)
        if check_feasibility(c, scenario).ok:
            return c
        tp *= 2
    return None


def slo_mask(pred: pd.DataFrame, slo: SLO, risk: Risk = DEFAULT_RISK) -> np.ndarray:
    """Rows meeting every SLO target under ``risk`` (see :data:`RISKS`): the target's bound column where the
    frame has it, else its value. A missing (NaN) value never meets a target.

    Raises:
        ValueError: unknown ``risk``.
    """
    if risk not in RISKS:
        raise ValueError(f"risk {risk!r} is not one of {', '.join(RISKS)}")
    ok = np.ones(len(pred), dtype=bool)
    for t in slo.targets:
        col = RISKS[risk].format(key=t.key)
        v = pred[col if col in pred else t.key].to_numpy(dtype=float)
        ok &= np.nan_to_num(v, nan=np.inf) <= t.limit_s
    return ok


def capacity_mask(pred: pd.DataFrame, scenario: Scenario, headroom: float = 0.97) -> np.ndarray:
    """Open-loop workloads only: rows whose predicted output throughput sustains the offered load.

    Offered output rate = arrival rate x mean output tokens. A server slower than that builds an unbounded
    queue, so no latency it reports in a finite test holds in production; such rows cannot meet any SLO.
    Closed-loop workloads (no arrival rate) always pass.
    """
    stats = scenario.workload.stats()
    rate = stats.get("arrival_rate_rps", float("nan"))
    if not np.isfinite(rate) or "throughput_output_tok_s" not in pred:
        return np.ones(len(pred), dtype=bool)
    offered = rate * stats["output_tokens_mean"]
    thr = pred["throughput_output_tok_s"].to_numpy(dtype=float)
    return np.nan_to_num(thr, nan=0.0) >= headroom * offered


def to_measurement(row: pd.Series, scenario: Scenario, metric_keys: Sequence[str], source: str) -> Measurement:
    """A predicted/modeled Measurement from one predictions row (knobs, metrics, intervals, ood notes)."""
    knobs = {k: _py(row[k]) for k in KNOBS if k in row.index}
    metrics = {k: _py(row[k]) for k in metric_keys if k in row.index and _py(row[k]) is not None}
    intervals = {
        k: (float(row[f"{k}_low"]), float(row[f"{k}_high"])) for k in metric_keys
        if f"{k}_low" in row.index and _py(row[f"{k}_low"]) is not None and _py(row[f"{k}_high"]) is not None
    }
    notes = ""
    if "ood_reasons" in row.index and row.get("ood", False):
        notes = "outside the training data: " + str(row["ood_reasons"])
    return Measurement(
        scenario=scenario, config=ServingConfig(**knobs), provenance=str(row.get("provenance", "predicted")),  # type: ignore[arg-type]
        source=source, metrics=Metrics(**{k: v for k, v in metrics.items() if k in Metrics.model_fields}),
        intervals=intervals, notes=notes,
    )


def _py(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, (np.floating, float)):
        return None if math.isnan(float(v)) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def build_recommendation(pred: pd.DataFrame, scenario: Scenario, slo: SLO, objective: str, source: str,
                         risk: Risk = DEFAULT_RISK, max_pareto: int = 25) -> tuple[Recommendation, pd.DataFrame]:
    """Pick from a predictions frame: the least-energy row meeting ``slo`` under ``risk`` (ties: the lower
    ``objective``). Returns the Recommendation and the frame with ``meets_slo``, ``pareto`` and ``chosen``
    columns added (for plots and tables); the default config is noted when it misses the SLO under the same
    rule."""
    pred = pred.copy()
    metric_keys = [c for c in pred.columns if c in Metrics.model_fields]
    sustains = capacity_mask(pred, scenario)
    pred["sustains_load"] = sustains
    meets = slo_mask(pred, slo, risk) & sustains
    pred["meets_slo"] = meets
    e = pred[ENERGY].to_numpy(dtype=float)
    lat = pred[objective].to_numpy(dtype=float)
    valid = meets & np.isfinite(e) & np.isfinite(lat)
    par = np.zeros(len(pred), dtype=bool)
    if valid.any():
        idx = np.nonzero(valid)[0]
        par[idx[pareto_mask_2d(e[idx], lat[idx])]] = True
    pred["pareto"] = par
    pred["chosen"] = False
    chosen = default = fastest = None
    if valid.any():
        ci = int(np.nonzero(valid)[0][np.lexsort((lat[valid], e[valid]))[0]])
        pred.loc[ci, "chosen"] = True
        chosen = to_measurement(pred.loc[ci], scenario, metric_keys, source)
    finite = np.isfinite(lat) & np.isfinite(e)
    if finite.any():
        fi = int(np.nonzero(finite)[0][np.lexsort((e[finite], lat[finite]))[0]])
        fastest = to_measurement(pred.loc[fi], scenario, metric_keys, source)
    if "is_default" in pred and pred["is_default"].any():
        drow = pred[pred["is_default"]].iloc[0]
        default = to_measurement(drow, scenario, metric_keys, source)
        dframe = pred[pred["is_default"]].iloc[:1]
        missed = [t.key for t in slo.targets if not slo_mask(dframe, SLO(targets=(t,)), risk)[0]]
        if missed:
            default = default.model_copy(update={"notes": "misses the SLO on " + ", ".join(missed)})
    front = pred[par].sort_values(objective)
    if len(front) > max_pareto:
        front = front.iloc[np.linspace(0, len(front) - 1, max_pareto).round().astype(int)]
    pareto = tuple(to_measurement(r, scenario, metric_keys, source) for _, r in front.iterrows())

    def saving(base: Measurement | None) -> float | None:
        if chosen is None or base is None:
            return None
        b, c = base.value(ENERGY), chosen.value(ENERGY)
        return None if not b or c is None else 1.0 - c / b

    reason = "" if chosen else _why_none(pred, slo)
    if default is not None and "sustains_load" in pred and not bool(pred[pred["is_default"]]["sustains_load"].iloc[0]):
        default = default.model_copy(update={"notes": (default.notes + "; " if default.notes else "")
                                             + "cannot sustain the offered load"})
    rec = Recommendation(
        scenario=scenario, slo=slo, objective=objective, chosen=chosen, pareto=pareto, default=default,
        fastest=fastest, savings_vs_default_frac=saving(default), savings_vs_fastest_frac=saving(fastest),
        evaluated=len(pred), feasible=int(meets.sum()), reason=reason,
    )
    return rec, pred


def _why_none(pred: pd.DataFrame, slo: SLO) -> str:
    if pred.empty:
        return "no config of the space is feasible on this hardware (see `recommender check`)"
    parts = []
    if "sustains_load" in pred and not pred["sustains_load"].any():
        parts.append("no config sustains the offered arrival rate")
    for t in slo.targets:
        best = float(np.nanmin(pred[t.key].to_numpy(dtype=float)))
        if best > t.limit_s:
            parts.append(f"{t.key} is at best {best * 1e3:.0f} ms (limit {t.limit_s * 1e3:.0f} ms)")
    what = "; ".join(parts) or "no single config meets every target at once"
    return f"no feasible config meets the SLO: {what}; relax the SLO or add GPUs"
