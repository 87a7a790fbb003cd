"""Benchmark: leave-one-model-out accuracy of the surrogate on the ML.ENERGY v3 H100 rows, the regret of
picking ``max_num_seqs`` with it under median-ITL SLOs, and its training / prediction time (CPU).

Protocol:
- training data = the public sources the shipped model uses (ML.ENERGY v3, LLM-Inference-Bench, Splitwise);
- for each catalog architecture with v3 rows, every row of that architecture (all its ``max_num_seqs`` points,
  every task, every public source) is removed, the surrogate is fit on the rest, and the v3 rows are predicted;
- MAPE of J/token, output throughput, median and p99 ITL (and power) over all held-out v3 rows;
- regret: per v3 group (model, task, GPUs, precision) and SLO ``itl_p50 <= 25 / 50 / 100 ms``, pick the
  ``max_num_seqs`` with the least predicted J/token among those :func:`recommender.recommend.slo_mask` allows
  under each ``risk`` rule; regret = measured J/token of the pick / measured best feasible J/token - 1;
  violation = measured ITL of the pick / SLO - 1. The bounds are formed as the shipped surrogate serves them
  (:meth:`Surrogate.log_quantiles`), from the quantiles of the *other* models' out-of-model residuals in the
  row's regime: ``guarded`` (the default of ``recommender recommend`` and ``api.recommend``) requires the
  one-sided 75% upper bound to meet the SLO, ``point`` the prediction, ``upper`` the upper end of the 80%
  interval (twice as wide for rows the held-out estimator flags out of distribution);
- decision bounds (:func:`guard_frontier`, :func:`sweep_first_pick_hits`): with the same held-out predictions,
  does *any* uniform guard width meet the regret targets, and in how many ML.ENERGY sweeps can a threshold rule's
  first pick be the best config under the SLO of ``benchmarks/search_efficiency.py``;
- timing: a full ``train_surrogate`` (with its own validations); predicting 10,000 distinct configs of one
  scenario (ServingConfig objects with and without the OOD check, and a knob DataFrame as ``recommend``
  passes); and ``api.explore`` (candidate frame + prediction + pick) of the ``recommend`` space for
  Llama-3.1-8B on 1 and 8 x H100. Medians of repeated runs; run it under ``taskset -c 0,1`` for two cores.

Run: ``python benchmarks/surrogate_lomo.py [--shared-data ../shared/data] [--out runs/benchmarks]
[--holdout-measurements data/measurements/h100]``; ``--predict-timing-only`` times the shipped model alone;
``--guard-quantile Q`` re-scores the guarded rule with another one-sided quantile; ``--jackknife K`` adds a
delete-a-group jackknife over models (does disagreement flag a held-out model's
error?); ``--skip-timing --static-weight W`` / ``--latency-physics-static-weight W`` are the ablations of how much the
static-batch rows (716 of 923) shape the fit, ``--balance-power P`` that of the model-balanced row weights.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recommender.recommend import slo_mask
from recommender.slo import SLO
from recommender.surrogate import targets as T
from recommender.surrogate import training
from recommender.surrogate.build import DEFAULT_PUBLIC, train_surrogate
from recommender.surrogate.predictor import GUARD_QUANTILE, OOD_WIDEN, Surrogate
from recommender.surrogate.public_data import load_public

SLOS_S = (0.025, 0.050, 0.100)
METRICS = ("energy_per_output_token_j", "throughput_output_tok_s", "itl_p50_s", "itl_p99_s", "avg_power_w")


def lomo(shared: Path, static_weight: float = 1.0, latency_physics_static_weight: float | None = None,
         balance_power: float = training.MODEL_BALANCE_POWER) -> pd.DataFrame:
    """Leave-one-model-out predictions of the v3 rows. Ablations: ``static_weight`` weighs the rows of one static
    batch (LLM-Inference-Bench, Splitwise) in every fit; ``latency_physics_static_weight`` weighs them in the least
    squares of the ITL/TPOT baseline coefficients only (0 = latency physics calibrated on continuous batching);
    ``balance_power`` is the model-balance power of every fit (:func:`training.model_balance_weights`)."""
    loads = load_public(DEFAULT_PUBLIC, shared)
    data = training.training_data([m for ld in loads for m in ld.measurements])
    v3 = data.meta["source"].str.startswith("mlenergy-leaderboard-v3").to_numpy()
    static = (training.regime_of(data.X["refill"]) == training.REGIMES[1])
    weight = np.where(static, static_weight, 1.0) if static_weight != 1.0 else None
    base_weight = None
    if latency_physics_static_weight is not None:
        latency = np.array([t.startswith(("itl_", "tpot_")) for t in T.LEARNED_TARGETS])
        base_weight = np.where(static[:, None] & latency[None, :], latency_physics_static_weight * static_weight,
                               np.where(static, static_weight, 1.0)[:, None])
    return training.grouped_cv(data, "model", eval_mask=v3, sample_weight=weight, baseline_weight=base_weight,
                               balance=balance_power)


def served_bounds(cv: pd.DataFrame, metric: str = "itl_p50_s", guard_quantile: float = GUARD_QUANTILE) -> pd.DataFrame:
    """Per held-out row, the predicted ``metric`` with the bounds the shipped surrogate would serve for a model it
    never saw: the ``<m>_upper`` / ``<m>_high`` columns :meth:`Surrogate.predict_features` forms, from the
    quantiles of the *other* models' out-of-model residuals in the row's regime (what the card holds), via
    :meth:`Surrogate.log_quantiles`; ``<m>_high`` widened for rows the held-out estimator flags OOD.
    ``guard_quantile`` (ablation) replaces the shipped :data:`GUARD_QUANTILE` of the one-sided bound."""
    guard_key = f"{GUARD_QUANTILE:g}"
    out = pd.DataFrame({metric: cv[f"{metric}_pred"].to_numpy()}, index=cv.index)
    i = T.METRICS.index(metric)
    for model in cv["model"].unique():
        rows = (cv["model"] == model).to_numpy()
        qs = training.regime_residual_quantiles(cv[~rows], (*training.RESIDUAL_QUANTILES, guard_quantile))
        for per_metric in qs.values():
            for q in per_metric.values():
                q[guard_key] = q[f"{guard_quantile:g}"]
        sur = Surrogate(estimator=None, regime_quantiles=qs)  # type: ignore[arg-type]
        q = sur.log_quantiles()  # (regime, metric, low/high/guard)
        r = (cv.loc[rows, "regime"] != training.REGIMES[0]).to_numpy().astype(int)
        widen = np.where(cv.loc[rows, "ood"].to_numpy(bool), OOD_WIDEN, 1.0)
        pred = cv.loc[rows, f"{metric}_pred"].to_numpy()
        out.loc[rows, f"{metric}_upper"] = pred * np.exp(np.maximum(q[r, i, 2], 0.0))
        out.loc[rows, f"{metric}_high"] = pred * np.exp(np.maximum(q[r, i, 1], 0.0) * widen)
    return out


GROUP = ["model", "workload", "tensor_parallel_size", "precision_fp8"]  # one v3 sweep of max_num_seqs
#: Uniform log guards of the decision-bound scans: a pick must satisfy ``predicted * exp(guard) <= limit``.
GUARDS_LOG = tuple(round(float(g), 3) for g in np.arange(-0.4, 0.4001, 0.005))
SWEEP_MIN_ROWS = 5  # the sweeps of benchmarks/search_efficiency.py (mlenergy_truths' min_rows)


def _pick(g: pd.DataFrame, allowed: np.ndarray, metric: str) -> pd.Series:
    """The least predicted J/token row of ``g`` among ``allowed`` (the predicted fastest on ``metric`` when none)."""
    cand = g[allowed] if allowed.any() else g.loc[[g[f"{metric}_pred"].idxmin()]]
    return cand.loc[cand["energy_per_output_token_j_pred"].idxmin()]


def _regret_rows(cv: pd.DataFrame, allows: Any) -> pd.DataFrame:
    """Per v3 group and SLO ``itl_p50 <= limit``: the pick among the rows ``allows(group, limit_s)`` admits, its
    regret over the measured best feasible J/token and its measured violation of the SLO (percent)."""
    rows = []
    for key, g in cv.groupby(GROUP):
        for slo in SLOS_S:
            feasible = g[g["itl_p50_s"] <= slo]
            if feasible.empty:
                continue
            best = feasible["energy_per_output_token_j"].min()
            pick = _pick(g, np.asarray(allows(g, slo), bool), "itl_p50_s")
            rows.append({"slo_ms": slo * 1e3, "group": "/".join(map(str, key)), "pick_seqs": int(pick["max_num_seqs"]),
                         "regret_pct": (pick["energy_per_output_token_j"] / best - 1) * 100,
                         "violation_pct": (pick["itl_p50_s"] / slo - 1) * 100})
    return pd.DataFrame(rows)


def regret(cv: pd.DataFrame, risk: str, guard_quantile: float = GUARD_QUANTILE) -> pd.DataFrame:
    """Regret rows: per v3 group and SLO ``itl_p50 <= limit``, the pick :func:`recommender.recommend.slo_mask`
    allows under ``risk`` with the least predicted J/token (the predicted fastest when it allows none)."""
    bounds = served_bounds(cv, guard_quantile=guard_quantile)
    return _regret_rows(cv, lambda g, slo: slo_mask(bounds.loc[g.index], SLO.parse(f"itl:p50<={slo * 1e3:g}ms"),
                                                      risk))  # type: ignore[arg-type]


def guard_frontier(cv: pd.DataFrame, guards: tuple[float, ...] = GUARDS_LOG) -> pd.DataFrame:
    """The regret targets under every *uniform* guard: per guard ``g`` (a pick needs predicted ITL p50 x exp(g)
    <= SLO, the same for every row) and SLO, the median regret and the picks more than 10% over the SLO.

    A decision bound, not a rule the product uses: whether *any* one guard width meets the regret and the
    violation targets together with these held-out predictions. ``meets`` is True where it does at every SLO;
    ``violating_models`` names the models of the picks more than 10% over.
    """
    rows = []
    for guard in guards:
        r = _regret_rows(cv, lambda g, slo, k=guard: (g["itl_p50_s_pred"] * np.exp(k) <= slo).to_numpy())
        for slo_ms, s in r.groupby("slo_ms"):
            over = s[s["violation_pct"] > 10]
            rows.append({"guard_log": guard, "slo_ms": slo_ms, "median_regret_pct": s["regret_pct"].median(),
                         "picks_violating_over_10pct": len(over),
                         "violating_models": sorted({g.split("/")[0] for g in over["group"]})})
    out = pd.DataFrame(rows)
    ok = (out["median_regret_pct"] <= 5) & (out["picks_violating_over_10pct"] == 0)
    return out.assign(meets=ok.groupby(out["guard_log"]).transform("all"))


def sweep_first_pick_hits(cv: pd.DataFrame, guards: tuple[float, ...] = GUARDS_LOG,
                          min_rows: int = SWEEP_MIN_ROWS) -> pd.DataFrame:
    """The first evaluation of a search on the ML.ENERGY sweeps of ``benchmarks/search_efficiency.py`` (SLO: ITL
    p99 <= the sweep's median ITL p99), as a decision bound: per uniform guard ``g``, in how many sweeps the
    least-predicted-energy config with predicted ITL p99 x exp(g) <= limit meets the SLO within 5% of the best
    feasible energy. A median over the sweeps of at most 1.5 evaluations to 5% needs at least half of them to
    hit at the first evaluation."""
    sweeps = [g for _, g in cv.groupby(GROUP) if len(g) >= min_rows]
    rows = []
    for guard in guards:
        hits = 0
        for g in sweeps:
            limit = float(np.quantile(g["itl_p99_s"], 0.5))
            best = g.loc[g["itl_p99_s"] <= limit, "energy_per_output_token_j"].min()
            pick = _pick(g, (g["itl_p99_s_pred"] * np.exp(guard) <= limit).to_numpy(), "itl_p99_s")
            hits += bool(pick["itl_p99_s"] <= limit and pick["energy_per_output_token_j"] <= best * 1.05)
        rows.append({"guard_log": guard, "sweeps": len(sweeps), "first_pick_hits": hits})
    return pd.DataFrame(rows)


def print_decision_bounds(cv: pd.DataFrame) -> dict[str, object]:
    """Print (and return) what the two scans above say: the guards meeting every regret target, the trade-off
    at 25 ms, and the most sweeps any threshold rule's first pick hits."""
    fr = guard_frontier(cv)
    meeting = sorted(fr.loc[fr["meets"], "guard_log"].unique())
    print("\nDecision bound 1 (issue 5 targets): uniform guards g (pick needs predicted ITL p50 x exp(g) <= SLO), "
          f"{GUARDS_LOG[0]:g}..{GUARDS_LOG[-1]:g}:")
    print("  guards meeting median regret <= 5% and no pick > 10% over at every SLO: "
          + (", ".join(f"{g:g}" for g in meeting) if meeting else "none"))
    at25 = fr[fr["slo_ms"] == 25.0]
    safe = at25[at25["picks_violating_over_10pct"] == 0]
    cheap = at25[at25["median_regret_pct"] <= 5]
    if not safe.empty:
        s = safe.loc[safe["guard_log"].idxmin()]
        print(f"  25 ms: the narrowest guard with no pick > 10% over is {s.guard_log:g}, median regret "
              f"{s.median_regret_pct:.1f}%")
    without: list[str] = []
    if not cheap.empty:
        c = cheap.loc[cheap["guard_log"].idxmax()]
        print(f"  25 ms: the widest guard with median regret <= 5% is {c.guard_log:g}, "
              f"{int(c.picks_violating_over_10pct)} pick(s) > 10% over"
              + (f" ({', '.join(c.violating_models)})" if c.violating_models else ""))
        without = list(c.violating_models)
    if not meeting and without:
        rest = guard_frontier(cv[~cv["model"].isin(without)])
        ok = sorted(rest.loc[rest["meets"], "guard_log"].unique())
        print(f"  without {', '.join(without)}: guards meeting every target: "
              + (f"{ok[0]:g}..{ok[-1]:g} ({len(ok)} of the scan)" if ok else "none"))
    hits = sweep_first_pick_hits(cv)
    top = hits.loc[hits["first_pick_hits"].idxmax()]
    print(f"Decision bound 2 (issue 4 sweeps): the first pick of a threshold rule on predicted ITL p99 hits "
          f"(feasible, within 5% of the best) in at most {int(top.first_pick_hits)} of {int(top.sweeps)} sweeps "
          f"(guard {top.guard_log:g}; at guard 0: "
          f"{int(hits.loc[hits['guard_log'] == 0.0, 'first_pick_hits'].iloc[0])}); a median over the sweeps of at most "
          f"1.5 evaluations to 5% needs at least {-(-int(top.sweeps) // 2)}")
    return {"guards_meeting_regret_targets": meeting, "models_behind_the_violations": without,
            "sweep_first_pick_hits_max": int(top.first_pick_hits), "sweeps": int(top.sweeps)}


def regret_table(r: pd.DataFrame) -> pd.DataFrame:
    return r.groupby("slo_ms").agg(
        groups=("regret_pct", "size"), median_regret_pct=("regret_pct", "median"),
        mean_regret_pct=("regret_pct", "mean"), max_regret_pct=("regret_pct", "max"),
        max_violation_pct=("violation_pct", "max"),
        picks_violating_over_10pct=("violation_pct", lambda v: int((v > 10).sum())),
        picks_regret_over_5pct=("regret_pct", lambda v: int((v > 5).sum())),
    ).reset_index()


def parity_plot(cv: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(17, 4.4))
    labels = {"energy_per_output_token_j": "J per output token", "throughput_output_tok_s": "output tokens/s",
              "itl_p50_s": "median ITL (s)", "itl_p99_s": "p99 ITL (s)"}
    models = sorted(cv["model"].unique())
    colors = {m: plt.cm.tab10(i % 10) for i, m in enumerate(models)}
    for ax, (m, label) in zip(axes, labels.items(), strict=True):
        for model in models:
            s = cv[cv["model"] == model]
            ax.scatter(s[m], s[f"{m}_pred"], s=12, color=colors[model], label=model, alpha=0.8)
        lo, hi = np.nanmin(cv[[m, f"{m}_pred"]].to_numpy()), np.nanmax(cv[[m, f"{m}_pred"]].to_numpy())
        xs = np.array([lo * 0.8, hi * 1.25])
        ax.plot(xs, xs, "k-", lw=1)
        ax.plot(xs, xs * 1.15, "k:", lw=0.8)
        ax.plot(xs, xs / 1.15, "k:", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"measured {label}")
        ax.set_ylabel(f"predicted {label} (model held out)")
    axes[0].legend(fontsize=6, loc="upper left")
    fig.suptitle("Surrogate, leave-one-model-out on ML.ENERGY v3 H100 rows (dotted: +/-15%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def model_jackknife(shared: Path, groups: int) -> pd.DataFrame:
    """Is a held-out model's error visible as disagreement? Per v3 model held out, ``groups`` more fits, each also
    without every ``groups``-th of the remaining models (a delete-a-group jackknife over models); per model, the
    median over its rows of the spread (std of log predictions across those fits) of median and p99 ITL."""
    data = training.training_data([m for ld in load_public(DEFAULT_PUBLIC, shared) for m in ld.measurements])
    models = data.meta["model"].to_numpy()
    v3 = data.meta["source"].str.startswith("mlenergy-leaderboard-v3").to_numpy()
    keys = ("itl_p50_s", "itl_p99_s")
    rows = []
    for held in sorted(pd.unique(models[v3])):
        test = (models == held) & v3
        rest = sorted(set(models) - {held})
        logs = []
        for k in range(groups):
            train = (models != held) & ~np.isin(models, rest[k::groups])
            fold = data.subset(train)
            pred = training.predict_metrics(training.fit_estimator(fold), data.X[test], training.tpot_is_learned(fold))
            logs.append(np.log(pred[list(keys)].to_numpy()))
        spread = np.std(np.stack(logs), axis=0)  # (rows, metrics)
        rows.append({"model": held, **{f"{k}_spread": float(np.median(spread[:, i])) for i, k in enumerate(keys)}})
    return pd.DataFrame(rows)


def holdout(shared: Path, paths: list[Path]) -> pd.DataFrame:
    """Train on the public data only; score on our own measurement files (an independent check)."""
    from recommender.dataset import load_training_measurements

    result = train_surrogate([], DEFAULT_PUBLIC, shared, out=None)
    ours = [m for m in load_training_measurements(paths)[0] if m.ok]
    data = training.training_data(ours)
    pred = training.predict_metrics(result.surrogate.estimator, data.X, result.surrogate.tpot_learned)
    cv = data.meta.copy()
    for t in pred.columns:
        cv[t] = data.M[t].to_numpy()
        cv[f"{t}_pred"] = pred[t].to_numpy()
    return cv


def _grid() -> tuple[object, list[object]]:
    from recommender.config import Hardware, Scenario, ServingConfig
    from recommender.presets import get_preset

    scenario = Scenario(model="Llama-3.1-8B", hardware=Hardware(gpu="H100", count=8),
                        workload=get_preset("mlenergy-chat"))
    grid = [ServingConfig(tensor_parallel_size=tp, replicas=r, max_num_seqs=s, max_num_batched_tokens=b,
                          enable_chunked_prefill=c, precision=p)
            for tp, r, s, b, c, p in itertools.product([1, 2, 4, 8], [1, 2, 4, 8], range(8, 1032, 8),
                                                        [2048, 4096, 8192], [True, False], ["bf16", "fp8"])][:10_000]
    return scenario, grid


def predict_timing(sur: object, repeats: int = 15) -> dict[str, float]:
    """Median wall time to predict 10,000 distinct configs (ServingConfig objects or a knob DataFrame), and of
    ``api.explore`` over the ``recommend`` space (the ``recommender recommend`` path) on 1 and 8 GPUs."""
    from recommender import api
    from recommender.evaluators.surrogate import SurrogateEvaluator

    scenario, grid = _grid()
    knobs = pd.DataFrame([c.model_dump() for c in grid])  # type: ignore[attr-defined]
    runs: dict[str, list[float]] = {"objects_with_ood": [], "objects_no_ood": [], "frame_with_ood": []}
    sur.predict_frame(knobs, scenario)  # type: ignore[attr-defined]  # warm caches (catalog, presets)
    for _ in range(repeats):
        for key, cfgs, ood in (("objects_with_ood", grid, True), ("objects_no_ood", grid, False),
                               ("frame_with_ood", knobs, True)):
            t = time.perf_counter()
            sur.predict_frame(cfgs, scenario, with_ood=ood)  # type: ignore[attr-defined]
            runs[key].append(time.perf_counter() - t)
    out = {"configs": float(len(grid))}
    for k, v in runs.items():
        out[f"predict_10k_{k}_ms_median"] = statistics.median(v) * 1e3
        out[f"predict_10k_{k}_ms_min"] = min(v) * 1e3
    ev = SurrogateEvaluator(sur)  # type: ignore[arg-type]
    for gpus in (1, 8):
        scen = api.scenario("Llama-3.1-8B", "H100", gpus, "azure-conv-2023")
        times = []
        for _ in range(max(3, repeats // 3)):
            t = time.perf_counter()
            rec, _ = api.explore(scen, "ttft:p99<=2s,tpot:p90<=60ms", surrogate=ev)
            times.append(time.perf_counter() - t)
        out[f"explore_{gpus}gpu_configs"] = float(rec.evaluated)
        out[f"explore_{gpus}gpu_ms_median"] = statistics.median(times) * 1e3
    return out


def timing(shared: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    result = train_surrogate([], DEFAULT_PUBLIC, shared, out=None)
    out = {"train_surrogate_with_validation_s": time.perf_counter() - t0}
    data = training.training_data([m for ld in load_public(DEFAULT_PUBLIC, shared) for m in ld.measurements])
    t = time.perf_counter()
    training.fit_estimator(data)
    out["train_fit_only_s"] = time.perf_counter() - t
    out.update(predict_timing(result.surrogate))
    return out


def _parsed(text: str, cast: type, ok: Any, want: str) -> Any:
    """``cast(text)`` when ``ok`` of it, else an argparse error saying what to give (``want``)."""
    try:
        v = cast(text)
    except ValueError:
        kind = "whole number" if cast is int else "number"
        raise argparse.ArgumentTypeError(f"{text!r} is not a {kind}; give {want}") from None
    if not ok(v):
        raise argparse.ArgumentTypeError(f"{text!r}: give {want}")
    return v


def _weight(text: str) -> float:
    """A row weight for the ablation flags: a finite number >= 0."""
    return float(_parsed(text, float, lambda w: np.isfinite(w) and w >= 0, "a finite weight >= 0, e.g. 0.1"))


def _quantile(text: str) -> float:
    """A one-sided guard quantile: a number in (0.5, 1)."""
    return float(_parsed(text, float, lambda q: 0.5 < q < 1.0, "a quantile in (0.5, 1), e.g. 0.75"))


def _groups(text: str) -> int:
    """Jackknife fits per held-out model: 0 (skip) or at least 2 (one fit would drop every other model)."""
    return int(_parsed(text, int, lambda k: k == 0 or k >= 2, "0 (skip) or at least 2, e.g. 4"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared-data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--holdout-measurements", type=Path, nargs="*", default=[],
                    help="our Measurement files/folders to score a public-data-only surrogate on")
    ap.add_argument("--static-weight", type=_weight, default=1.0,
                    help="ablation: weight of static-batch rows in every fit (default 1)")
    ap.add_argument("--latency-physics-static-weight", type=_weight, default=None,
                    help="ablation: weight of static-batch rows in the ITL/TPOT baseline least squares only")
    ap.add_argument("--balance-power", type=_weight, default=training.MODEL_BALANCE_POWER,
                    help="ablation: model-balance power of every fit (0 = rows weigh alike; default "
                         f"{training.MODEL_BALANCE_POWER:g})")
    ap.add_argument("--guard-quantile", type=_quantile, default=GUARD_QUANTILE, metavar="Q",
                    help=f"ablation: the guarded rule's one-sided bound at quantile Q of the other models' residuals "
                         f"(default {GUARD_QUANTILE:g}, the shipped one)")
    ap.add_argument("--jackknife", type=_groups, default=0, metavar="K",
                    help="also fit K jackknife models per held-out model (each without every K-th other model) and "
                         "print how much their ITL predictions disagree, next to the held-out error (default 0: skip)")
    ap.add_argument("--predict-timing-only", action="store_true",
                    help="only time predictions of the shipped model (models/surrogate-v1), e.g. under taskset")
    args = ap.parse_args()
    if args.predict_timing_only:
        from recommender.surrogate.persistence import load

        print(f"CPU affinity: {len(os.sched_getaffinity(0))} cores")
        for k, v in predict_timing(load()).items():
            print(f"  {k}: {v:.1f}")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    pd.set_option("display.width", 200)
    fmt = lambda x: f"{x:.1f}"  # noqa: E731

    t = time.perf_counter()
    cv = lomo(args.shared_data, args.static_weight, args.latency_physics_static_weight, args.balance_power)
    cv_s = time.perf_counter() - t
    print(f"Leave-one-model-out over ML.ENERGY v3 H100 rows: {len(cv)} rows, {cv['model'].nunique()} models "
          f"({cv_s:.0f} s)\n")
    print(training.error_table(cv, METRICS).to_string(index=False, float_format=fmt))
    per_model = cv.assign(**{f"ape_{m}": (cv[f"{m}_pred"] / cv[m] - 1).abs() * 100 for m in METRICS[:4]})
    print("\nMAPE per held-out model (percent):")
    print(per_model.groupby("model")[[f"ape_{m}" for m in METRICS[:4]]].mean()
          .rename(columns=lambda c: c.removeprefix("ape_")).to_string(float_format=fmt))
    tables = {}
    kinds = (("guarded", f"the default rule: one-sided {args.guard_quantile:.0%} upper bound of ITL meets the SLO"),
             ("point", "point prediction"),
             ("upper", "upper end of the served 80% interval, widened out of distribution"))
    for risk, label in kinds:
        r = regret(cv, risk, args.guard_quantile)
        tables[risk] = regret_table(r)
        print(f"\nRegret of picking max_num_seqs under itl_p50 <= SLO (risk={risk}: {label}):")
        print(tables[risk].to_string(index=False, float_format=fmt))
        if risk == "guarded":
            print(f"over all {len(r)} picks: median regret {r['regret_pct'].median():.1f}%, "
                  f"{(r['regret_pct'] <= 5).mean():.0%} within 5% of the best feasible energy")
            worst = r.loc[r.groupby("slo_ms")["violation_pct"].idxmax()]
            print("worst pick per SLO: " + "; ".join(f"{w.slo_ms:g} ms {w.group} at {w.pick_seqs} seqs "
                                                     f"({w.violation_pct:+.1f}%)" for w in worst.itertuples()))
            over = r[r["violation_pct"] > 10]
            print("picks more than 10% over: " + ("; ".join(f"{o.slo_ms:g} ms {o.group} at {o.pick_seqs} seqs "
                                                            f"({o.violation_pct:+.1f}%)" for o in over.itertuples())
                                                  or "none"))
            for model in sorted({g.split("/")[0] for g in over["group"]}):
                e = cv.loc[cv["model"] == model]
                e = (e["itl_p50_s"] / e["itl_p50_s_pred"] - 1) * 100
                print(f"  {model}: measured median ITL {e.min():+.1f}% to {e.max():+.1f}% vs held-out prediction "
                      f"(median {e.median():+.1f}%, {len(e)} rows)")
    bounds = print_decision_bounds(cv)
    if args.jackknife:
        jk = model_jackknife(args.shared_data, args.jackknife).set_index("model")
        err = cv.assign(**{f"{k}_log_error": np.log(cv[f"{k}_pred"] / cv[k]) for k in ("itl_p50_s", "itl_p99_s")})
        jk = jk.join(err.groupby("model")[["itl_p50_s_log_error", "itl_p99_s_log_error"]].median())
        print(f"\nJackknife over models ({args.jackknife} fits per held-out model): median spread of the log "
              "prediction vs the median held-out log error (prediction / measured):")
        print(jk.to_string(float_format=lambda x: f"{x:+.3f}"))
    parity = args.out / "surrogate_lomo_parity.png"
    parity_plot(cv, parity)
    print(f"\nparity plot: {parity}")
    result: dict[str, object] = {
        "lomo": training.error_table(cv, METRICS).to_dict("records"),
        "regret": {k: v.to_dict("records") for k, v in tables.items()},
        "decision_bounds": bounds,
    }
    if args.holdout_measurements:
        ho = holdout(args.shared_data, args.holdout_measurements)
        keys = ("energy_per_output_token_j", "throughput_output_tok_s", "avg_power_w", "itl_p50_s", "itl_p99_s",
                "tpot_p50_s", "ttft_p50_s", "ttft_p99_s")
        print(f"\nPublic-data-only surrogate on our own measurements ({len(ho)} runs, "
              f"{ho['workload'].nunique()} workloads, never trained on):")
        print(training.error_table(ho, keys).to_string(index=False, float_format=fmt))
        per = ho.assign(**{k: (ho[f"{k}_pred"] / ho[k] - 1) * 100 for k in keys[:3]})
        print("mean signed error per model (percent):")
        print(per.groupby("model")[list(keys[:3])].agg(["mean", "size"]).to_string(float_format=fmt))
        result["holdout_ours"] = training.error_table(ho, keys).to_dict("records")
    if not args.skip_timing:
        tm = timing(args.shared_data)
        result["timing"] = tm
        print(f"\nCPU: {os.cpu_count()} logical cores visible")
        for k, v in tm.items():
            print(f"  {k}: {v:.1f}" if isinstance(v, float) else f"  {k}: {v}")
    cv.to_csv(args.out / "surrogate_lomo_predictions.csv", index=False)
    (args.out / "surrogate_lomo.json").write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
