"""Search efficiency: how many evaluations the study needs, against random search, NSGA-II and a full grid (CPU).

Ground truths (every config's metrics known in advance; the study sees them only through a ReplayEvaluator):

1. **ML.ENERGY v3 H100 groups** (``../shared/data/mlenergy-leaderboard-v3``): every (model, task, GPU count,
   precision) sweep with >= 5 ``max_num_seqs`` points whose model is in our catalog. One knob, 5-15 configs per
   sweep, so the grid is tiny and a blind method cannot save much; the prior-guided search uses the same
   leave-one-model-out surrogate as below (trained without the sweep's model), so here the truth is *measured*
   and the prior independent of it. SLO: ITL p99 <= the sweep's median ITL p99 (the export has no TTFT/TPOT);
   objective ITL p99.
2. **Multi-knob grids** (``GRIDS``): the shipped surrogate's predictions (``SurrogateEvaluator.load_default()``)
   over the full product of max_num_seqs (8 values) x max_num_batched_tokens (2048, 8192) x chunked prefill x
   precision (bf16, fp8) x KV-cache dtype (auto, fp8) x SM clock x power limit, and tensor parallel x replicas
   where the GPUs allow: Llama-3.1-8B on 1 x H100, Llama-3.1-70B on 4 x H100, Qwen3-30B-A3B (MoE) on 2 x H100.
   Configs the product's feasibility check rejects (no chunked prefill with a 2048-token budget, more GPUs
   than the node has) are pruned by the study without an evaluation, as in the product; the rest (the
   "runnable" configs, >= 200 per grid) are the replay table. SLO: TPOT p90 <= the runnable grid's 60th
   percentile and TTFT p99 <= its 70th percentile (about 70 % of each grid misses it; printed), objective TPOT
   p90. The workload is ``presets.mlenergy_chat`` (1,024 requests at once, so TTFT is mostly queueing).

Prior-guided search (``tpe+prior``, the product's default when a surrogate exists: ``run_study(warm_start=...,
warm_start_k=5)``, see ``recommender.search.guided``): the predictor's predictions, corrected after every
evaluation by a Gaussian process over log(measured / predicted), propose the first 5 evaluations and every one
after while they improve the best feasible energy, then share turns with TPE. The predictor is a surrogate
**retrained without the scenario's model** (leave-one-model-out: every row whose catalog model is the scenario's,
from our measurements and every public source, is dropped before fitting, then fitted by
``recommender.surrogate.build.fit_surrogate``, the function ``train_surrogate`` uses: grouped validation for the
calibrated intervals, fit, DVFS calibration). Its predictions over the grid are replayed to the study
(identical to passing the evaluator itself; precomputed once per scenario, the fit once per model).
Its Spearman rank correlation with the truth over the runnable grid is printed, and so is what its 5 static
top picks (``rank_predictions``, uncorrected: what the earlier enqueue-once warm start ran) are worth in the
truth. Caveat: prior and truth share the roofline baselines, the features and the analytical
DVFS model (the clock / power-limit effects), so holding a model out removes only the learned corrections of
that model; ranks stay close (rho ~0.96-0.99 over the feasible configs), which favours the warm start more than
real measurements of an unseen model would. The priors train on the current ``data/measurements``, which may
hold more rows than the shipped surrogate saw (its card lists its training rows). Hence a second, deliberately
mediocre prior (``tpe+rough-prior``): the LOMO predictions with every metric of every config multiplied by an
independent log-normal factor (sigma 0.25) and both latencies by a further 1.3 (pessimistic, like the 8B prior,
and worse), a different draw for each scenario and seed. Its error is unstructured, the hardest kind for a
correction learnt from neighbours.

Per ground truth, method and seed (20 seeds; each study in one of ``--jobs`` processes with one BLAS thread): a
study with in-memory storage runs until the grid is exhausted or
``--cap`` evaluations; we record the evaluation (1-based, counting real evaluations only) at which a config
meeting the SLO with energy within 5% of the best feasible energy was first evaluated (``--cap + 1`` when
never: censored), and the hypervolume of the feasible front after 10/20/40 evaluations, as a fraction of the
true feasible front's (objectives scaled to [0, 1] over the feasible configs, reference point (1.1, 1.1)).
The full grid needs every runnable config evaluated to know its best, so its cost is the runnable count.

Usage: ``python benchmarks/search_efficiency.py [--seeds 20] [--cap 100] [--jobs 2] [--plot PATH]
[--shared-data ../shared/data] [--no-mlenergy | --no-grids] [--methods tpe+prior,random]``. ``--no-grids``
(only the ML.ENERGY sweeps) and ``--methods`` (a subset) are for quick checks: the LOMO fits (one per model,
the slow part) are skipped when no prior method runs, and the grids' truth is not loaded without grids. The
plot, table and CSV go to ``--plot`` and its siblings: point it elsewhere for a check, so that the published
results are not overwritten.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
import math
import os
import statistics
import sys
import time
import zlib
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # --jobs processes share the cores
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recommender.config import Hardware, Scenario, ServingConfig  # noqa: E402
from recommender.evaluators.replay import ReplayEvaluator, TableSpace, mlenergy_v3_groups  # noqa: E402
from recommender.measurement import Measurement  # noqa: E402
from recommender.pareto import ENERGY_KEY, hypervolume_2d, meets_slo, pareto_front  # noqa: E402
from recommender.search._space import config_key  # noqa: E402
from recommender.slo import SLO, SLOTarget  # noqa: E402

DEFAULT_SHARED = ROOT.parent / "shared" / "data"
MLENERGY_REL = Path("mlenergy-leaderboard-v3") / "llm_configs_flat.csv"
MEASUREMENTS = ROOT / "data" / "measurements"
HV_AT = (10, 20, 40)
METHODS = ("tpe+prior", "tpe+rough-prior", "tpe", "random", "nsga2")
CHECKED = ("tpe+prior", "tpe+rough-prior", "tpe")  # methods checked against the targets
ROUGH_SIGMA, ROUGH_LATENCY = 0.25, 1.3  # the rough prior: log-normal noise per config and metric, latency factor
WARM_K = 5  # run_study's default warm_start_k
SLO_QUANTILES = {"tpot_p90_s": 0.6, "ttft_p99_s": 0.7}  # grid SLO limits: these quantiles of the runnable grid


@dataclass(frozen=True)
class GridSpec:
    model: str
    gpus: int
    tensor_parallel: tuple[int, ...]
    replicas: tuple[int, ...]
    clocks: tuple[int | None, ...]
    power_limits: tuple[float | None, ...]

    def configs(self) -> list[ServingConfig]:
        """The full knob product (runnable or not)."""
        return [ServingConfig(tensor_parallel_size=tp, replicas=rep, max_num_seqs=seqs, max_num_batched_tokens=btok,
                              enable_chunked_prefill=chunk, precision=prec, kv_cache_dtype=kv, gpu_clock_mhz=clk,
                              power_limit_w=pw)  # type: ignore[arg-type]
                for tp, rep, seqs, btok, chunk, prec, kv, clk, pw in itertools.product(
                    self.tensor_parallel, self.replicas, (8, 16, 32, 64, 128, 256, 512, 1024), (2048, 8192),
                    (True, False), ("bf16", "fp8"), ("auto", "fp8"), self.clocks, self.power_limits)]


GRIDS = (
    GridSpec("Llama-3.1-8B", 1, (1,), (1,), (None, 1095, 1410, 1755), (None, 400.0)),
    GridSpec("Llama-3.1-70B", 4, (2, 4), (1, 2), (None, 1410, 1755), (None, 450.0)),
    GridSpec("Qwen3-30B-A3B", 2, (1, 2), (1, 2), (None, 1410, 1755), (None, 450.0)),
)


@dataclass
class Truth:
    name: str
    kind: str  # "ml.energy" or "surrogate"
    table: list[Measurement]  # runnable configs with their true metrics
    slo: SLO
    objective: str
    space_configs: list[ServingConfig] | None = None  # the searched product (None: the table's configs)
    check_feasible: bool = False  # the product's feasibility check prunes space configs outside the table
    prior: list[Measurement] | None = None  # the LOMO surrogate's predictions over the table's configs
    prior_note: str = ""
    rho: dict[str, float] | None = None  # Spearman rank correlation of prior vs truth, per metric

    @property
    def scenario(self) -> Scenario:
        return self.table[0].scenario

    @property
    def feasible(self) -> list[Measurement]:
        return [m for m in self.table if meets_slo(m, self.slo)]

    @property
    def best_energy(self) -> float:
        return min(m.value(ENERGY_KEY) for m in self.feasible)  # type: ignore[type-var, return-value]


def _quantile_limit(table: list[Measurement], key: str, q: float) -> SLOTarget:
    metric, pct, _ = key.split("_")
    vals = sorted(v for m in table if (v := m.value(key)) is not None)
    return SLOTarget(metric=metric, percentile=pct, limit_s=float(np.quantile(vals, q)))  # type: ignore[arg-type]


def mlenergy_truths(csv_path: Path, min_rows: int = 5) -> list[Truth]:
    logging.getLogger("recommender.evaluators.replay").setLevel(logging.ERROR)
    out = []
    for ev in mlenergy_v3_groups(csv_path, gpu="H100", min_rows=min_rows):
        sc = ev.scenarios()[0]
        task = sc.workload.name.removeprefix("mlenergy-")
        # one truth per sweep of max_num_seqs: a group measured at two precisions is two sweeps, not a grid
        # (its cartesian product would hold configs nobody measured)
        sweeps: dict[str, list[Measurement]] = {}
        for m in ev.table:
            other = m.config.model_dump(exclude={"max_num_seqs"})
            sweeps.setdefault(json.dumps(other, sort_keys=True, default=str), []).append(m)
        for table in sweeps.values():
            if len(table) < min_rows:
                continue
            slo = SLO(targets=(_quantile_limit(table, "itl_p99_s", 0.5),))
            name = f"{sc.model} {sc.hardware.count}xH100 {task} ({table[0].config.precision})"
            out.append(Truth(name, "ml.energy", table, slo, "itl_p99_s"))
    return out


def grid_truths(surrogate: Any) -> list[Truth]:
    """The shipped surrogate's predictions over each grid's runnable configs (priors are added later)."""
    from recommender.presets import mlenergy_chat

    out = []
    for g in GRIDS:
        sc = Scenario(model=g.model, hardware=Hardware(gpu="H100", count=g.gpus), workload=mlenergy_chat())
        configs = g.configs()
        table = [m for m in surrogate.evaluate_many(configs, sc) if m.ok]  # failed = rejected by check_feasibility
        for m in table:
            missing = [k for k in (ENERGY_KEY, *SLO_QUANTILES) if m.value(k) is None]
            assert not missing, f"{g.model}: no {missing} predicted for {m.config.short()}"
        slo = SLO(targets=tuple(_quantile_limit(table, k, q) for k, q in SLO_QUANTILES.items()))
        out.append(Truth(f"{g.model} {g.gpus}xH100 grid", "surrogate", table, slo, "tpot_p90_s",
                         space_configs=configs, check_feasible=True))
    return out


# ---- the leave-one-model-out prior --------------------------------------------------------------------------
def load_training_measurements(shared: Path) -> list[Measurement]:
    """What ``train_surrogate(measurement_paths=["data/measurements"], shared_data=shared)`` trains on."""
    from recommender.dataset import load_training_measurements
    from recommender.surrogate.build import DEFAULT_PUBLIC
    from recommender.surrogate.public_data import load_public

    logging.getLogger("recommender.surrogate").setLevel(logging.WARNING)
    own = load_training_measurements([MEASUREMENTS])[0] if MEASUREMENTS.exists() else []
    return own + [m for ld in load_public(DEFAULT_PUBLIC, shared) for m in ld.measurements]


def train_lomo(measurements: list[Measurement], model: str) -> tuple[Any, dict[str, Any]]:
    """A surrogate fitted like the shipped one (``recommender.surrogate.build.fit_surrogate``, with the
    leave-one-model-out validation that calibrates its intervals) on every row whose catalog model is not
    ``model``."""
    from recommender.surrogate.build import fit_surrogate

    t0 = time.perf_counter()
    kept = [m for m in measurements if m.scenario.model_spec.name != model]
    fitted = fit_surrogate(kept, validate_workloads=False)
    assert model not in set(fitted.data.meta["model"]), model
    sur = fitted.surrogate
    sur.card["name"] = f"lomo-{model}"
    info = {"model": model, "rows": len(fitted.data), "dropped_rows": len(measurements) - len(kept),
            "engine": sur.engine_version, "seconds": time.perf_counter() - t0}
    return sur, info


def _spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def attach_prior(truth: Truth, surrogate: Any, info: dict[str, Any]) -> None:
    from recommender.evaluators.surrogate import SurrogateEvaluator
    from recommender.search.warm_start import rank_predictions

    preds = SurrogateEvaluator(surrogate).evaluate_many([m.config for m in truth.table], truth.scenario)
    assert all(p.ok for p in preds), "the prior rejected a config the truth ran"
    truth.prior = preds
    keys = (ENERGY_KEY, *dict.fromkeys(f"{x.metric}_{x.percentile}_s" for x in truth.slo.targets))
    rho = {k: _spearman([m.value(k) for m in truth.table], [p.value(k) for p in preds])  # type: ignore[misc]
           for k in keys}
    feas = [i for i, m in enumerate(truth.table) if meets_slo(m, truth.slo)]
    rho["feasible energy"] = _spearman([truth.table[i].value(ENERGY_KEY) for i in feas],  # type: ignore[misc]
                                       [preds[i].value(ENERGY_KEY) for i in feas])
    true_of = {config_key(m.config): m for m in truth.table}
    picks = [true_of[config_key(p.config)] for p in rank_predictions(preds, truth.slo, truth.objective, k=WARM_K)]
    ok = [m for m in picks if meets_slo(m, truth.slo)]
    best = min((m.value(ENERGY_KEY) for m in ok), default=math.nan)  # type: ignore[type-var]
    pred_best = min((p for p in preds if meets_slo(p, truth.slo)), key=lambda p: p.value(ENERGY_KEY), default=None)
    truth.prior_note = (
        f"prior of {truth.name}: surrogate without {info['model']} ({info['rows']} rows, {info['dropped_rows']} "
        f"dropped, vLLM {info['engine']}, fit {info['seconds']:.0f} s); Spearman rho vs truth: energy "
        f"{rho[ENERGY_KEY]:.2f} (over the {len(feas)} SLO-feasible configs only: {rho['feasible energy']:.2f}), "
        + "".join(f"{k.removesuffix('_s').replace('_', ' ')} {rho[k]:.2f}, " for k in keys[1:])
        + f"predicted-feasible {sum(meets_slo(p, truth.slo) for p in preds)} vs true {len(truth.feasible)}; "
        f"its {WARM_K} static top picks (uncorrected): {len(ok)} truly feasible, best "
        + (f"{100 * (best / truth.best_energy - 1):+.0f}% vs best feasible energy" if ok else "n/a")
        + ("; its predicted best misses the SLO in the truth" if pred_best is not None
           and not meets_slo(true_of[config_key(pred_best.config)], truth.slo) else ""))
    truth.rho = rho
    roughs = [roughen(preds, rough_seed(truth, s)) for s in range(20)]
    rough_rho = _median([_spearman([truth.table[i].value(ENERGY_KEY) for i in feas],  # type: ignore[misc]
                                   [r[i].value(ENERGY_KEY) for i in feas]) for r in roughs])
    rough_feasible = _median([sum(meets_slo(p, truth.slo) for p in r) for r in roughs])
    truth.prior_note += (f"; rough priors (median of 20 draws): Spearman rho energy {rough_rho:.2f} over the "
                         f"SLO-feasible configs, predicted-feasible {rough_feasible:g}")


def rough_seed(truth: Truth, seed: int) -> int:
    """The rough prior's draw for one study: per scenario and study seed."""
    return zlib.crc32(truth.name.encode()) + seed


def roughen(preds: list[Measurement], seed: int) -> list[Measurement]:
    """``preds`` with each metric x exp(N(0, ROUGH_SIGMA)) per config, and latencies x ROUGH_LATENCY on top."""
    from recommender.measurement import Metrics

    rng = np.random.default_rng(seed)
    out = []
    for p in preds:
        vals = {k: v for k, v in p.metrics.model_dump().items() if v is not None}  # type: ignore[union-attr]
        for k in sorted(vals):
            vals[k] *= math.exp(rng.normal(0.0, ROUGH_SIGMA)) * (ROUGH_LATENCY if k.endswith("_s") else 1.0)
        out.append(p.model_copy(update={"metrics": Metrics(**vals), "intervals": {}}))
    return out


# ---- one study ------------------------------------------------------------------------------------------------
def run_one(truth: Truth, method: str, seed: int, cap: int) -> dict[str, Any]:
    """Evaluations to within 5 % of the best feasible energy, and HV ratios after 10/20/40 evaluations."""
    import optuna

    from recommender.search import run_study

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("recommender").setLevel(logging.ERROR)
    ev = ReplayEvaluator(truth.table)
    space = TableSpace(truth.space_configs or [m.config for m in truth.table], name="truth")
    n = min(cap, len(truth.table))
    t0 = time.perf_counter()
    warm = None
    if method.endswith("prior"):
        if truth.prior is None:
            return {}
        prior = roughen(truth.prior, rough_seed(truth, seed)) if method.endswith("rough-prior") else truth.prior
        warm = ReplayEvaluator(prior)
        warm.name = "lomo-surrogate"
    r = run_study(truth.scenario, space, truth.slo, ev, n, objective=truth.objective, sampler=method.split("+")[0],
                  seed=seed, storage="memory", check_feasible=truth.check_feasible, save_measurements=False,
                  warm_start=warm, warm_start_k=WARM_K)
    order = r.measurements  # evaluation order (trial order), real evaluations only
    assert all(m.ok for m in order), "a replayed config was not in the table"
    target = truth.best_energy * 1.05
    hit = next((i + 1 for i, m in enumerate(order) if meets_slo(m, truth.slo) and m.value(ENERGY_KEY) <= target), None)
    return {"truth": truth.name, "method": method, "seed": seed, "evals_to_5pct": hit if hit is not None else cap + 1,
            "found": hit is not None, "hv": {k: _hv_ratio(truth, order[:k]) for k in HV_AT},
            "seconds": time.perf_counter() - t0, "evaluations": r.evaluations}


def run_many(truth: Truth, method: str, seeds: list[int], cap: int) -> list[dict[str, Any]]:
    return [r for s in seeds if (r := run_one(truth, method, s, cap))]


def _norm(truth: Truth) -> tuple[tuple[float, float], tuple[float, float]]:
    e = [m.value(ENERGY_KEY) for m in truth.feasible]
    lat = [m.value(truth.objective) for m in truth.feasible]
    return (min(e), max(e)), (min(lat), max(lat))  # type: ignore[type-var, return-value]


def _hv(truth: Truth, ms: list[Measurement]) -> float:
    (e0, e1), (l0, l1) = _norm(truth)
    front = pareto_front(ms, (ENERGY_KEY, truth.objective), slo=truth.slo)
    pts = [((m.value(ENERGY_KEY) - e0) / max(e1 - e0, 1e-12), (m.value(truth.objective) - l0) / max(l1 - l0, 1e-12))
           for m in front]
    return hypervolume_2d(pts, (1.1, 1.1))


def _hv_ratio(truth: Truth, ms: list[Measurement]) -> float:
    return _hv(truth, ms) / max(_hv(truth, truth.table), 1e-12)


# ---- report ---------------------------------------------------------------------------------------------------
def _median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def summarize(truths: list[Truth], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for t in truths:
        base = {"ground truth": t.name, "source": t.kind, "configs": len(t.table), "feasible": len(t.feasible)}
        for method in (*METHODS, "grid"):
            if method == "grid":
                rows.append({**base, "method": "grid", "median evals to 5%": len(t.table), "found": "100%",
                             **{f"HV@{k}": float("nan") for k in HV_AT}})
                continue
            rs = [r for r in results if r["truth"] == t.name and r["method"] == method]
            if not rs:
                continue
            rows.append({
                **base, "method": method, "median evals to 5%": _median([r["evals_to_5pct"] for r in rs]),
                "found": f"{100 * sum(r['found'] for r in rs) / len(rs):.0f}%",
                **{f"HV@{k}": _median([r["hv"][k] for r in rs]) for k in HV_AT},
            })
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    cols = list(rows[0])
    fmt = [[(f"{v:.2f}" if isinstance(v, float) and not math.isnan(v) else ("-" if isinstance(v, float) else str(v)))
             for v in (r[c] for c in cols)] for r in rows]
    w = [max(len(c), *(len(f[i]) for f in fmt)) for i, c in enumerate(cols)]
    lines = ["| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(cols)) + " |",
             "|" + "|".join("-" * (x + 2) for x in w) + "|"]
    lines += ["| " + " | ".join(v.ljust(w[i]) for i, v in enumerate(f)) + " |" for f in fmt]
    return "\n".join(lines)


def _check(v: float, limit: float) -> str:
    return f"{v:.2f} (target <= {limit:.2f}: {'PASS' if v <= limit else 'FAIL'})"


def headline(truths: list[Truth], rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for t in truths:
        if t.kind == "surrogate":
            limits = ", ".join(f"{x.metric} {x.percentile} <= {x.limit_s:.4g} s" for x in t.slo.targets)
            share = 1 - len(t.feasible) / len(t.table)
            out.append(f"SLO of {t.name}: {limits} ({share:.0%} of {len(t.table)} runnable configs miss it; "
                       f"space {len(t.space_configs or t.table)} configs)")
    for kind in ("surrogate", "ml.energy"):
        names = [t.name for t in truths if t.kind == kind]
        if not names:
            continue
        med = {m: _median([r["median evals to 5%"] for r in rows if r["ground truth"] in names and r["method"] == m])
               for m in (*METHODS, "grid")}
        out.append(f"{kind}: median over {len(names)} ground truths of the median evaluations to 5%: "
                   + ", ".join(f"{m} {v:g}" for m, v in med.items() if not math.isnan(v)))
        for m in CHECKED:
            if not math.isnan(med[m]) and not math.isnan(med["random"]):
                out.append(f"  target check {m}: /random = {_check(med[m] / med['random'], 1 / 3)}, "
                           f"/grid = {_check(med[m] / med['grid'], 0.10)}")
        if kind == "surrogate":
            for name in names:
                per = {r["method"]: r["median evals to 5%"] for r in rows if r["ground truth"] == name}
                ratios = [f"{m}/{base} = {per[m] / per[base]:.{3 if base == 'grid' else 2}f}"
                          for m, base in (("tpe+prior", "random"), ("tpe+prior", "grid"),
                                          ("tpe+rough-prior", "random"), ("tpe", "random"))
                          if m in per and base in per]
                if ratios:
                    out.append(f"  {name}: " + ", ".join(ratios))
    out += [t.prior_note for t in truths if t.prior_note]
    if any(t.prior_note for t in truths):
        out.append("caveat (grids): prior and truth share the roofline baselines and the analytical DVFS model (clock "
                   "and power-limit effects); leaving a model out removes only its learned corrections, so this is "
                   "an optimistic test of the prior-guided search; the rough prior is the pessimistic one; on the "
                   "ML.ENERGY sweeps the truth is measured and the prior never saw the model")
    return out


def plot(truths: list[Truth], results: list[dict[str, Any]], path: Path, seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = dict(zip(METHODS, ("tab:red", "tab:purple", "tab:blue", "tab:green", "tab:orange"), strict=True))
    fig, axes = plt.subplots(1, 2, figsize=(15, 0.45 * len(truths) + 2.5), gridspec_kw={"width_ratios": [3, 2]})
    ax = axes[0]
    ys = np.arange(len(truths))
    for j, method in enumerate(METHODS):
        med = [_median([r["evals_to_5pct"] for r in results if r["truth"] == t.name and r["method"] == method])
               for t in truths]
        ax.barh(ys + (j - 2) * 0.16, med, height=0.16, label=method, color=colors[method])
    ax.scatter([len(t.table) for t in truths], ys, marker="|", s=200, color="k", label="grid (all runnable configs)")
    ax.set_yticks(ys, [f"{t.name} [{t.kind}]" for t in truths], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel(f"median evaluations to a config within 5% of the best feasible energy ({seeds} seeds)")
    ax.legend(fontsize=8, loc="lower right")
    ax = axes[1]
    grids = [t for t in truths if t.kind == "surrogate"]
    for t, style in zip(grids, ("-", "--", ":", "-."), strict=False):
        for method in METHODS:
            runs = [r for r in results if r["truth"] == t.name and r["method"] == method]
            hv = [_median([r["hv"][k] for r in runs]) for k in HV_AT]
            ax.plot(HV_AT, hv, style, marker="o", color=colors[method], label=f"{method}: {t.name}")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("feasible hypervolume / true front's (median)")
    ax.set_title("multi-knob grids; truth = shipped surrogate, prior = LOMO surrogate", fontsize=9)
    if grids:
        ax.legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _methods(text: str) -> tuple[str, ...]:
    """``--methods``: a comma-separated subset of :data:`METHODS`, kept in that order."""
    asked = {m.strip() for m in text.split(",") if m.strip()}
    unknown = sorted(asked - set(METHODS))
    if unknown or not asked:
        raise argparse.ArgumentTypeError(f"unknown method(s) {', '.join(unknown) or '(none)'}; choose from "
                                         f"{', '.join(METHODS)}")
    return tuple(m for m in METHODS if m in asked)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--cap", type=int, default=100, help="most evaluations per study")
    ap.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "results" / "search_efficiency.png")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--shared-data", type=Path, default=DEFAULT_SHARED)
    ap.add_argument("--no-mlenergy", action="store_true", help="only the multi-knob grids")
    ap.add_argument("--no-grids", action="store_true", help="only the ML.ENERGY sweeps")
    ap.add_argument("--methods", type=_methods, default=METHODS,
                    help=f"comma-separated subset of {','.join(METHODS)} (default: all)")
    args = ap.parse_args(argv)
    if args.no_mlenergy and args.no_grids:
        ap.error("--no-mlenergy and --no-grids leave no ground truth")
    methods: tuple[str, ...] = args.methods
    t0 = time.time()
    from recommender.evaluators.surrogate import SurrogateEvaluator

    surrogate = None if args.no_grids else SurrogateEvaluator.load_default()  # the grids' ground truth
    grids = [] if surrogate is None else grid_truths(surrogate)
    csv_path = args.shared_data / MLENERGY_REL
    mle = [] if args.no_mlenergy or not csv_path.is_file() else mlenergy_truths(csv_path)
    with_prior = any("prior" in m for m in methods)
    train_rows = load_training_measurements(args.shared_data) if with_prior else []
    setup = (f"truth: {surrogate.source if surrogate is not None else 'ML.ENERGY v3 only'}; "
             + (f"LOMO priors from {len(train_rows)} rows (data/measurements + public sources) minus the "
                "scenario's model" if with_prior else "no prior") + f"; methods {','.join(methods)}")
    print(f"# {setup}; setup {time.time() - t0:.0f} s", flush=True)
    seeds = list(range(args.seeds))
    chunks = [seeds[i:i + 5] for i in range(0, len(seeds), 5)]
    results: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        priors: dict[str, Future[Any]] = {}
        for t in (grids + mle) if with_prior else []:  # one fit per model, cached for every scenario of that model
            if t.scenario.model not in priors:
                priors[t.scenario.model] = pool.submit(train_lomo, train_rows, t.scenario.model)
        # methods without a prior start at once; the prior ones once their truth's LOMO prior is fitted
        futs = [pool.submit(run_many, t, m, c, args.cap) for t in mle + grids for m in methods if "prior" not in m
                for c in chunks]
        for t in (grids + mle) if with_prior else []:
            attach_prior(t, *priors[t.scenario.model].result())
            print(f"# {t.prior_note}", flush=True)
            futs += [pool.submit(run_many, t, m, c, args.cap) for m in methods if "prior" in m for c in chunks]
        for f in futs:
            results += f.result()
    truths = mle + grids
    rows = summarize(truths, results)
    table = render(rows)
    lines = [setup, *headline(truths, rows)]
    elapsed = time.time() - t0
    print(table)
    print()
    for line in lines:
        print(line)
    foot = (f"{len(results)} studies, {elapsed:.0f} s with --jobs {args.jobs}; censored runs count as cap+1 = "
            f"{args.cap + 1}")
    print(f"\n{foot}")
    plot(truths, results, args.plot, args.seeds)
    md = args.plot.with_suffix(".md")
    cmd = "python benchmarks/search_efficiency.py " + " ".join(sys.argv[1:] if argv is None else argv)
    md.write_text(table + "\n\n" + "\n".join(lines) + f"\n\n{foot}\n\n`{cmd.strip()}`\n")
    with open(args.plot.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"plot: {args.plot}; table: {md} and {args.plot.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
