"""The few entry points that ``app.py``, the CLI and Python users share.

>>> from recommender import api
>>> rec = api.recommend("Llama-3.1-8B", gpu="H100", gpus=1, workload="azure-conv-2023",
...                     slo="ttft:p99<=2s,tpot:p90<=60ms")          # doctest: +SKIP
>>> rec.chosen.config.short(), rec.savings_vs_default_frac             # doctest: +SKIP

Every function validates its arguments into the pydantic models (bad input raises
:class:`~recommender.errors.InputError` naming the argument) and returns plain models or DataFrames.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

from recommender.config import Hardware, Scenario, ServingConfig, parse
from recommender.errors import InputError
from recommender.measurement import Recommendation
from recommender.slo import SLO
from recommender.workload import Workload

if TYPE_CHECKING:
    import pandas as pd

    from recommender.feasibility import Feasibility

__all__ = ["scenario", "check", "recommend", "explore", "optimize", "export", "load_surrogate"]


def scenario(model: str, gpu: str = "H100-SXM", gpus: int = 1, workload: str | Workload | dict[str, Any] =
             "azure-conv-2023", max_model_len: int | None = None, **workload_overrides: Any) -> Scenario:
    """Build and validate a Scenario. ``workload`` is a preset name (with ``workload_overrides`` such as
    ``num_requests=300`` or ``rate_rps=4``), a Workload, or a dict of Workload fields."""
    from recommender.presets import get_preset

    if isinstance(workload, str):
        w = get_preset(workload, **workload_overrides)
    else:
        w = parse(Workload, workload, "workload")
    if not isinstance(gpus, int) or isinstance(gpus, bool):
        raise InputError("gpus", gpus, "give a whole number of GPUs >= 1")
    hw = parse(Hardware, {"gpu": gpu, "count": gpus}, "hardware")
    return parse(Scenario, {"model": model, "hardware": hw, "workload": w, "max_model_len": max_model_len}, "scenario")


def _slo(slo: str | SLO | dict[str, Any]) -> SLO:
    if isinstance(slo, SLO):
        return slo
    if isinstance(slo, str):
        return SLO.parse(slo)
    return parse(SLO, slo, "slo")


def check(config: ServingConfig | dict[str, Any], scen: Scenario) -> Feasibility:
    """Feasibility of ``config`` in ``scen`` (memory fit, TP vs heads and GPUs, clock/power range)."""
    from recommender.feasibility import check_feasibility

    return check_feasibility(parse(ServingConfig, config, "config"), scen)


@functools.lru_cache(maxsize=4)
def load_surrogate(model_dir: str | None = None) -> Any:
    """The shipped surrogate (``models/``), loaded once per process and verified against its card."""
    from recommender.evaluators.surrogate import SurrogateEvaluator

    return SurrogateEvaluator.from_dir(model_dir) if model_dir else SurrogateEvaluator.load_default()


def explore(scen: Scenario, slo: str | SLO, space: str = "recommend", objective: str | None = None,
            risk: str = "guarded", surrogate: Any = None) -> tuple[Recommendation, pd.DataFrame]:
    """Score every feasible config of ``space`` with the surrogate and pick under ``slo``.

    ``risk`` says which value must meet each target (:data:`recommender.recommend.RISKS`): ``guarded`` (default)
    the one-sided 75% upper bound (:data:`recommender.surrogate.predictor.GUARD_QUANTILE`), the rule
    ``benchmarks/surrogate_lomo.py`` validates; ``point`` the prediction; ``upper`` the upper end of the 80% interval.

    Returns the Recommendation and the full predictions frame (one row per feasible config, with
    ``meets_slo``, ``pareto`` and ``chosen`` columns) for plots and tables.
    """
    import pandas as pd

    from recommender.recommend import RISKS, build_recommendation, candidate_frame
    from recommender.space import load_space

    s = _slo(slo)
    obj = objective or s.tightest().key
    if s.attainment is not None:
        raise InputError("slo.attainment", s.attainment, "the surrogate predicts percentiles, not the fraction of "
                         "requests meeting every target; drop 'attainment' (measure it with `recommender measure`)")
    if risk not in RISKS:
        raise InputError("risk", risk, "use 'guarded' (one-sided 75% upper bound, the default), 'point' (predicted "
                         "value) or 'upper' (upper end of the 80% interval)")
    sur = surrogate or load_surrogate()
    cands = candidate_frame(load_space(space), scen)
    if cands.empty:
        m = scen.model_spec
        rec = Recommendation(
            scenario=scen, slo=s, objective=obj, chosen=None,
            reason=(f"no config of space '{space}' can run {m.name} ({m.total_params_b:.0f}B parameters) on "
                    f"{scen.hardware.count} x {scen.hardware.gpu}: add GPUs or pick a larger GPU "
                    "(see `recommender check`)"),
        )
        return rec, cands.assign(meets_slo=False, pareto=False, chosen=False)
    pred = sur.predict_frame(cands, scen).reset_index(drop=True)
    knob_cols = [c for c in cands.columns if c not in pred.columns]
    pred = pd.concat([cands[knob_cols].reset_index(drop=True), pred], axis=1)
    supported = list(pred.columns)
    for key in [obj, *(t.key for t in s.targets)]:
        if key not in supported:
            raise InputError("slo" if key != obj else "objective", key,
                             "the surrogate predicts ttft/tpot/itl at p50, p90 and p99; use one of those")
    return build_recommendation(pred, scen, s, obj, source=getattr(sur, "source", "surrogate"), risk=risk)  # type: ignore[arg-type]


def recommend(model: str, gpu: str = "H100-SXM", gpus: int = 1, workload: str | Workload | dict[str, Any] =
              "azure-conv-2023", slo: str | SLO = "ttft:p99<=2s,tpot:p90<=60ms", *, space: str = "recommend",
              objective: str | None = None, risk: str = "guarded", **workload_overrides: Any) -> Recommendation:
    """The least-energy config meeting ``slo`` for ``model`` on ``gpus`` x ``gpu`` under ``workload``.

    Answers from the shipped surrogate in well under a second (no GPU needed). Savings are against vLLM's
    default config and the fastest config. See :func:`explore` for the full scored frame.
    """
    scen = scenario(model, gpu, gpus, workload, **workload_overrides)
    t0 = time.perf_counter()
    rec, _ = explore(scen, slo, space=space, objective=objective, risk=risk)
    import logging

    logging.getLogger(__name__).info("scored %d configs in %.0f ms", rec.evaluated, (time.perf_counter() - t0) * 1e3)
    return rec


def optimize(scen: Scenario, slo: str | SLO, **kwargs: Any) -> Any:
    """Run (or resume) an Optuna study over real or surrogate evaluations; see ``recommender.search.run_study``."""
    from recommender.search import run_study

    return run_study(scenario=scen, slo=_slo(slo), **kwargs)


def export(rec: Recommendation, fmt: str = "vllm", **kwargs: Any) -> str:
    """Render a recommendation as a vLLM config YAML, a Kubernetes manifest, or a JSON report."""
    from recommender.export import export as _export

    return _export(rec, fmt, **kwargs)
