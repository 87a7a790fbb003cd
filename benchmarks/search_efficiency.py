"""Search efficiency: how many evaluations the study needs, against random search and a full grid (CPU only).

Ground truths (every config's metrics known in advance; the study sees them only through a ReplayEvaluator):

1. **ML.ENERGY v3 H100 groups** (``../shared/data/mlenergy-leaderboard-v3``): every (model, task, GPU count)
   group with >= 5 ``max_num_seqs`` points whose model is in our catalog. One knob, 5-12 configs per group, so
   the grid is tiny and no method can save much; reported as is. SLO: ITL p99 <= the group's median ITL p99
   (the export has no TTFT/TPOT), objective ITL p99.
2. **Multi-knob grids of >= 200 configs**: predictions of the shipped surrogate
   (``SurrogateEvaluator.load_default()``) over a knob grid when one loads; otherwise an analytical roofline
   model defined below (``synthetic_metrics``; marked ``synthetic`` in the output). Grids: Llama-3.1-8B on
   1 x H100 (max_num_seqs x max_num_batched_tokens x chunked prefill x SM clock = 320 configs) and
   Llama-3.1-70B on 4 x H100 (+ tensor parallel 2/4 = 512 configs). SLO: TPOT p90 <= the grid's 40th
   percentile; objective TPOT p90.

Per ground truth, method and seed (20 seeds): a study with in-memory storage runs until the grid is exhausted or
``--cap`` evaluations; we record the evaluation (1-based, counting real evaluations only) at which a config
meeting the SLO with energy within 5% of the best feasible energy was first evaluated (``--cap + 1`` when
never: censored), and the hypervolume of the feasible front after 10/20/40 evaluations, as a fraction of the
true feasible front's (objectives scaled to [0, 1] over the feasible configs, reference point (1.1, 1.1)).
The full grid needs every config evaluated to know its best, so its cost is the grid size. ``tpe+prior`` is
the study with a warm start (5 configs enqueued from a predictor): on the synthetic grids the predictor is a
deliberately wrong copy of the analytical model (other efficiency, power and stall constants, no noise; its
rank correlation with the truth is printed), standing in for the surrogate until one ships; on ML.ENERGY groups
it is skipped (no predictor independent of that data yet).
The feasibility check is off: every ground-truth config is known to run.

Usage: ``python benchmarks/search_efficiency.py [--seeds 20] [--cap 100] [--plot PATH] [--jobs 2]``
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recommender.config import Hardware, Scenario, ServingConfig  # noqa: E402
from recommender.evaluators.replay import ReplayEvaluator, TableSpace, mlenergy_v3_groups  # noqa: E402
from recommender.measurement import Measurement, Metrics  # noqa: E402
from recommender.pareto import ENERGY_KEY, hypervolume_2d, meets_slo, pareto_front  # noqa: E402
from recommender.slo import SLO, SLOTarget  # noqa: E402

MLENERGY_CSV = ROOT.parent / "shared" / "data" / "mlenergy-leaderboard-v3" / "llm_configs_flat.csv"
HV_AT = (10, 20, 40)
METHODS = ("tpe", "nsga2", "random", "tpe+prior")


@dataclass
class Truth:
    name: str
    kind: str  # "ml.energy", "surrogate" or "synthetic"
    table: list[Measurement]
    slo: SLO
    objective: str
    prior: list[Measurement] | None = None  # predictions for the warm-start row (None: no predictor)

    @property
    def scenario(self) -> Scenario:
        return self.table[0].scenario

    @property
    def feasible(self) -> list[Measurement]:
        return [m for m in self.table if meets_slo(m, self.slo)]

    @property
    def best_energy(self) -> float:
        return min(m.value(ENERGY_KEY) for m in self.feasible)  # type: ignore[type-var, return-value]


def _slo_at_quantile(table: list[Measurement], key: str, q: float) -> SLO:
    metric, pct, _ = key.split("_")
    vals = sorted(v for m in table if (v := m.value(key)) is not None)
    limit = float(np.quantile(vals, q))
    return SLO(targets=(SLOTarget(metric=metric, percentile=pct, limit_s=limit),))  # type: ignore[arg-type]


def mlenergy_truths(min_rows: int = 5) -> list[Truth]:
    logging.getLogger("recommender.evaluators.replay").setLevel(logging.ERROR)
    out = []
    for ev in mlenergy_v3_groups(MLENERGY_CSV, gpu="H100", min_rows=min_rows):
        sc = ev.scenarios()[0]
        table = list(ev.table)
        slo = _slo_at_quantile(table, "itl_p99_s", 0.5)
        task = sc.workload.name.removeprefix("mlenergy-")
        name = f"{sc.model} {sc.hardware.count}xH100 {task} ({table[0].config.precision})"
        out.append(Truth(name, "ml.energy", table, slo, "itl_p99_s"))
    return out


# ---- the analytical fallback ground truth -----------------------------------------------------------------------
def _noise(config: ServingConfig, salt: str) -> float:
    h = hashlib.sha256((config.model_dump_json() + salt).encode()).digest()
    return 1.0 + 0.04 * (int.from_bytes(h[:4], "little") / 2**32 - 0.5)  # +-2 %, deterministic


TRUE_K = {"bw_eff": 1.0, "peak_eff": 0.6, "cpu_s": 0.004, "p_base": 0.25, "p_cmp": 0.55, "f_exp": 1.5, "stall": 1.0,
          "noise": True, "error": 0.0}
# A deliberately wrong copy of the model: the "surrogate" of the warm-start row (a prior with model error).
# Besides other constants it carries a per-config lognormal error (sigma 15 %) on energy and latency.
PRIOR_K = {"bw_eff": 0.75, "peak_eff": 0.85, "cpu_s": 0.002, "p_base": 0.35, "p_cmp": 0.45, "f_exp": 1.0, "stall": 0.7,
           "noise": False, "error": 0.15}


def synthetic_metrics(scenario: Scenario, c: ServingConfig, k: dict[str, Any] = TRUE_K) -> Metrics:
    """Roofline-style steady state of one replica (documented assumptions, not a measurement).

    Decode step = max(weights + KV reads / HBM bandwidth, FLOPs / (peak x clock)) + TP all-reduce + 4 ms CPU;
    prefill mixes ``B x in/out`` prompt tokens per step (chunks of ``max_num_batched_tokens`` with chunked
    prefill, whole prompts without, which stalls decodes: the p90 TPOT penalty); power = idle + dynamic
    share ~ utilization x clock^1.5; energy per token = power / throughput.
    """
    model, gpu = scenario.model_spec, scenario.hardware.spec
    tp = c.tensor_parallel_size
    params = float(model.non_embedding_params + model.embedding_params)
    weights = 2.0 * params
    kv = float(model.kv_cache_bytes_per_token("bf16"))
    inp, out, inp_p90 = 200.0, 400.0, 600.0
    ctx = inp + out / 2
    usable = gpu.memory_gb * 1e9 * c.gpu_memory_utilization * tp - weights - 3e9 * tp
    batch = float(min(c.max_num_seqs or 256, max(1.0, usable / (kv * (inp + out))), 1024))
    f = (c.gpu_clock_mhz or gpu.sm_clock_max_mhz) / gpu.sm_clock_max_mhz
    bw, peak = gpu.memory_bandwidth_tb_s * 1e12 * tp * k["bw_eff"], gpu.peak_bf16_tflops * 1e12 * tp * k["peak_eff"] * f
    t_mem = (weights + batch * ctx * kv) / bw / (0.85 + 0.15 * f)
    t_cmp = batch * 2 * params / peak
    t_comm = (tp > 1) * (model.num_layers * 2 * (12e-6 + batch * model.hidden_size * 2 * (tp - 1) / tp / 300e9))
    t_step = max(t_mem, t_cmp) + t_comm + k["cpu_s"]
    t_tok = 2 * params / peak * 1.2
    btok = c.max_num_batched_tokens or 8192
    new_tokens = batch * inp / out  # prompt tokens per decode step in steady state
    chunks = math.ceil(new_tokens / btok) if c.enable_chunked_prefill else max(1.0, new_tokens / inp)
    t_prefill = new_tokens * t_tok + chunks * 0.002
    thr = batch / (t_step + t_prefill)
    stall = min(btok, new_tokens) * t_tok if c.enable_chunked_prefill else inp_p90 * max(1.0, new_tokens / inp) * t_tok
    stall *= k["stall"]
    def noise(salt: str) -> float:
        seed = int.from_bytes(hashlib.sha256((c.model_dump_json() + salt).encode()).digest()[:4], "little")
        z = float(np.random.default_rng(seed).standard_normal())
        return (_noise(c, salt) if k["noise"] else 1.0) * math.exp(k["error"] * z)
    tpot_p90 = (t_step + t_prefill / max(1.0, chunks) * 0.5 + stall) * noise("lat")
    util_c = (t_cmp + new_tokens * t_tok) / (t_step + t_prefill)
    util_m = t_mem / (t_step + t_prefill)
    dyn = (gpu.tdp_w - gpu.idle_power_w) * min(1.0, k["p_base"] + k["p_cmp"] * min(util_c, 1.0) * f ** k["f_exp"]
                                               + 0.2 * min(util_m, 1.0))
    power = tp * (gpu.idle_power_w + dyn)
    energy = power / thr * noise("energy")
    return Metrics(energy_per_output_token_j=energy, avg_power_w=power, throughput_output_tok_s=thr,
                   tpot_p90_s=tpot_p90, itl_p99_s=stall + t_step, avg_batch_size=batch)


def _grid_configs(tps: tuple[int, ...]) -> list[ServingConfig]:
    out = []
    for tp in tps:
        for seqs in (8, 16, 32, 64, 128, 256, 512, 1024):
            for btok in (2048, 4096, 8192, 16384):
                for chunk in (True, False):
                    for clk in ((None, 1095, 1410, 1755, 1980) if len(tps) == 1 else (None, 1410, 1755, 1980)):
                        if btok < seqs:
                            continue
                        out.append(ServingConfig(tensor_parallel_size=tp, max_num_seqs=seqs,
                                                 max_num_batched_tokens=btok, enable_chunked_prefill=chunk,
                                                 gpu_clock_mhz=clk))
    return out


def grid_truths() -> list[Truth]:
    from recommender.presets import mlenergy_chat

    specs = [("Llama-3.1-8B", 1, (1,)), ("Llama-3.1-70B", 4, (2, 4))]
    surrogate = None
    try:
        from recommender.evaluators.surrogate import SurrogateEvaluator  # type: ignore[import-not-found]

        surrogate = SurrogateEvaluator.load_default()
    except Exception as e:  # noqa: BLE001 - fall back to the analytical model, stated in the output
        print(f"# surrogate unavailable ({type(e).__name__}: {str(e)[:80]}); using the analytical model")
    out = []
    for model, n, tps in specs:
        sc = Scenario(model=model, hardware=Hardware(gpu="H100", count=n), workload=mlenergy_chat())
        configs = _grid_configs(tps)
        if surrogate is not None:
            table = [m for m in surrogate.evaluate_many(configs, sc) if m.ok]
            kind = "surrogate"
        else:
            table = [Measurement(scenario=sc, config=c, provenance="modeled", metrics=synthetic_metrics(sc, c),
                                 source="benchmarks/search_efficiency.py:synthetic_metrics") for c in configs]
            kind = "synthetic"
        prior = [Measurement(scenario=sc, config=c, provenance="predicted", metrics=synthetic_metrics(sc, c, PRIOR_K))
                 for c in configs] if kind == "synthetic" else None
        slo = _slo_at_quantile(table, "tpot_p90_s", 0.4)
        out.append(Truth(f"{model} {n}xH100 grid", kind, table, slo, "tpot_p90_s", prior))
    return out


# ---- one study ------------------------------------------------------------------------------------------------
def run_one(truth: Truth, method: str, seed: int, cap: int) -> dict[str, Any]:
    """Evaluations to within 5 % of the best feasible energy, and HV ratios after 10/20/40 evaluations."""
    import optuna

    from recommender.search import run_study

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    ev = ReplayEvaluator(truth.table)
    space = TableSpace([m.config for m in truth.table], name="truth")
    n = min(cap, len(truth.table))
    t0 = time.perf_counter()
    warm = None
    if method.endswith("+prior"):
        if truth.prior is None:
            return {}
        warm = ReplayEvaluator(truth.prior)
        warm.name = "prior"
    r = run_study(truth.scenario, space, truth.slo, ev, n, objective=truth.objective, sampler=method.split("+")[0],
                  seed=seed, storage="memory", check_feasible=False, save_measurements=False, warm_start=warm,
                  warm_start_k=5)
    order = r.measurements  # evaluation order (trial order)
    target = truth.best_energy * 1.05
    hit = next((i + 1 for i, m in enumerate(order) if meets_slo(m, truth.slo) and m.value(ENERGY_KEY) <= target), None)
    return {"truth": truth.name, "method": method, "seed": seed, "evals_to_5pct": hit if hit is not None else cap + 1,
            "found": hit is not None, "hv": {k: _hv_ratio(truth, order[:k]) for k in HV_AT},
            "seconds": time.perf_counter() - t0, "evaluations": r.evaluations}


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


def _run_args(a: tuple[Truth, str, int, int]) -> dict[str, Any]:
    return run_one(*a)


# ---- report ---------------------------------------------------------------------------------------------------
def _median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def summarize(truths: list[Truth], results: list[dict[str, Any]], cap: int) -> list[dict[str, Any]]:
    rows = []
    for t in truths:
        for method in (*METHODS, "grid"):
            if method == "grid":
                rows.append({"ground truth": t.name, "source": t.kind, "configs": len(t.table),
                             "feasible": len(t.feasible), "method": "grid", "median evals to 5%": len(t.table),
                             "found": "100%", **{f"HV@{k}": float("nan") for k in HV_AT}})
                continue
            rs = [r for r in results if r["truth"] == t.name and r["method"] == method]
            if not rs:
                continue
            ev = [r["evals_to_5pct"] for r in rs]
            rows.append({
                "ground truth": t.name, "source": t.kind, "configs": len(t.table), "feasible": len(t.feasible),
                "method": method, "median evals to 5%": _median(ev),
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


def headline(truths: list[Truth], rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for kind in sorted({t.kind for t in truths}):
        names = {t.name for t in truths if t.kind == kind}
        med = {m: _median([r["median evals to 5%"] for r in rows if r["ground truth"] in names and r["method"] == m])
               for m in (*METHODS, "grid")}
        out.append(f"{kind}: median over {len(names)} ground truths of the median evaluations to 5%: "
                   + ", ".join(f"{m} {v:g}" for m, v in med.items() if not math.isnan(v)))
        for m in ("tpe", "tpe+prior"):
            if not math.isnan(med[m]):
                out.append(f"  {m}/random = {med[m] / med['random']:.2f} (target <= 0.33), "
                           f"{m}/grid = {med[m] / med['grid']:.2f} (target <= 0.10)")
    for t in truths:
        if t.prior is not None:
            out.append(f"prior of {t.name}: Spearman rho(energy) = {_spearman(t):.2f} against the truth "
                       "(a deliberately wrong copy of the analytical model)")
    return out


def _spearman(t: Truth) -> float:
    assert t.prior is not None
    a = np.array([m.value(ENERGY_KEY) for m in t.table])
    b = np.array([m.value(ENERGY_KEY) for m in t.prior])
    ra, rb = a.argsort().argsort(), b.argsort().argsort()
    return float(np.corrcoef(ra, rb)[0, 1])


def plot(truths: list[Truth], results: list[dict[str, Any]], path: Path, seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = dict(zip(METHODS, ("tab:blue", "tab:orange", "tab:green", "tab:red"), strict=True))
    fig, axes = plt.subplots(1, 2, figsize=(14, 0.45 * len(truths) + 2.5), gridspec_kw={"width_ratios": [3, 2]})
    ax = axes[0]
    ys = np.arange(len(truths))
    for j, method in enumerate(METHODS):
        med = [_median([r["evals_to_5pct"] for r in results if r["truth"] == t.name and r["method"] == method])
               for t in truths]
        ax.barh(ys + (j - 1.5) * 0.2, med, height=0.2, label=method, color=colors[method])
    ax.scatter([len(t.table) for t in truths], ys, marker="|", s=200, color="k", label="grid (all configs)")
    ax.set_yticks(ys, [f"{t.name} [{t.kind}]" for t in truths], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel(f"median evaluations to a config within 5% of the best feasible energy ({seeds} seeds)")
    ax.legend(fontsize=8, loc="lower right")
    ax = axes[1]
    grids = [t for t in truths if t.kind != "ml.energy"]
    for t, style in zip(grids, ("-", "--", ":", "-."), strict=False):
        for method in METHODS:
            runs = [r for r in results if r["truth"] == t.name and r["method"] == method]
            hv = [_median([r["hv"][k] for r in runs]) for k in HV_AT]
            ax.plot(HV_AT, hv, style, marker="o", color=colors[method], label=f"{method}: {t.name}")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("feasible hypervolume / true front's (median)")
    ax.set_title("multi-knob grids (ML.ENERGY groups reach 1.0 by 10)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--cap", type=int, default=100, help="most evaluations per study")
    ap.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "results" / "search_efficiency.png")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--methods", default=",".join(METHODS))
    args = ap.parse_args(argv)
    methods = tuple(args.methods.split(","))
    t0 = time.time()
    truths = (mlenergy_truths() if MLENERGY_CSV.is_file() else []) + grid_truths()
    tasks = [(t, m, s, args.cap) for t in truths for m in methods for s in range(args.seeds)]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = [r for r in pool.map(_run_args, tasks, chunksize=4) if r]
    rows = summarize(truths, results, args.cap)
    table = render(rows)
    lines = headline(truths, rows)
    print(table)
    print()
    for line in lines:
        print(line)
    print(f"\n{len(tasks)} studies in {time.time() - t0:.0f} s; censored runs count as cap+1 = {args.cap + 1}")
    plot(truths, results, args.plot, args.seeds)
    md = args.plot.with_suffix(".md")
    md.write_text(table + "\n\n" + "\n".join(lines) + "\n")
    import csv

    with open(args.plot.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"plot: {args.plot}; table: {md} and {args.plot.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
