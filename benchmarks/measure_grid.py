#!/usr/bin/env python3
"""Measure a grid of ServingConfigs x workloads on one GPU: one server start per engine, compact tables.

Surrogate training data from our own measurements. Configs are compact specs, workloads are presets with
overrides; every (config, workload) pair is measured ``--repeats`` times on ONE server start per engine key
(configs with equal ``(model, engine_key())`` share a start). Results are saved as Measurement JSON plus
artifacts (run.json, requests.jsonl.gz, power.csv, server.log) under ``--out`` and, after every run, packed
into ``--archive`` (so a call killed at its limit still returns what finished). The script starts no server
and no run that would likely end after ``--deadline-s`` and bounds every run by it.

Config spec (``--config``, repeatable): comma-separated ``key=value``:
  seqs=<max_num_seqs>  btok=<max_num_batched_tokens>  chunked=0|1  precision=bf16|fp8  kv=auto|fp8
  prefix=0|1  eager=0|1  gmu=<gpu_memory_utilization>  tp=<n>  ep=0|1  model=<catalog name (default --model)>
  wl=<label>+<label>...  (only these workloads for this config; default all)
e.g. ``seqs=128,precision=fp8,wl=chat+az12``.

Workload spec (``--workload``, repeatable): ``[label:]preset[:key=value,...]``; values are numbers or
strings; ``num_requests=5x`` means 5 x max_num_seqs (at least ``--min-requests``). e.g.
``chat:mlenergy-chat:num_requests=5x`` or ``az4:azure-conv-2023:rate_rps=4,num_requests=200,max_tokens=2048``.

On the lent H100 (see ../shared/gpu/README.md), after the bundles:
  source /root/vllm_bundles/env.sh && PYTHONUNBUFFERED=1 python3 benchmarks/measure_grid.py --model Llama-3.1-8B
    --config seqs=32 --config seqs=128 --workload chat:mlenergy-chat:num_requests=5x
    --deadline-s 500 --out /tmp/grid --archive $OUT/grid1.tar.gz
Here, afterwards (extract into the dataset and print the tables):
  python benchmarks/measure_grid.py --summarize <files_at>/grid1.tar.gz --extract-to data/measurements/h100_grid
CPU test with the stand-in server:
  RECOMMENDER_VLLM_CMD='["python", "tests/integration/standin_server.py", "serve"]' STANDIN_ITL_S=0.002
    python benchmarks/measure_grid.py --no-energy --config seqs=8 --workload fixed:num_requests=16 ...
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from measure_h100 import THROUGHPUT_HINT, _f, _run_info, load_items, write_archive  # noqa: E402

MAX_MODEL_LEN = 8192  # mlenergy-chat clips inputs at 4096 and outputs at 2048 (runs before 2026-11-24: 4096)
START_EST_S = 150.0  # a cold Llama-3.1-8B start on the H100 took 113-147 s

_CFG_KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "seqs": ("max_num_seqs", int), "btok": ("max_num_batched_tokens", int),
    "chunked": ("enable_chunked_prefill", lambda v: v not in ("0", "false", "no", "off")),
    "precision": ("precision", str), "kv": ("kv_cache_dtype", str),
    "prefix": ("enable_prefix_caching", lambda v: v not in ("0", "false", "no", "off")),
    "eager": ("enforce_eager", lambda v: v not in ("0", "false", "no", "off")),
    "gmu": ("gpu_memory_utilization", float), "tp": ("tensor_parallel_size", int),
    "ep": ("enable_expert_parallel", lambda v: v not in ("0", "false", "no", "off")),
}  # fmt: skip


# ---- specs ------------------------------------------------------------------------------------------------
def parse_config(spec: str, default_model: str) -> tuple[str, Any, list[str] | None]:
    """``seqs=128,precision=fp8,wl=chat+az12`` -> (model, ServingConfig, workload labels or None)."""
    from recommender.config import ServingConfig

    kw: dict[str, Any] = {}
    model, only = default_model, None
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, _, val = part.partition("=")
        if key == "model":
            model = val
        elif key == "wl":
            only = [x for x in val.split("+") if x]
        elif key in _CFG_KEYS:
            field, conv = _CFG_KEYS[key]
            kw[field] = conv(val)
        else:
            raise SystemExit(f"config spec {spec!r}: unknown key {key!r} (use {sorted(_CFG_KEYS)}, model, wl)")
    return model, ServingConfig(**kw), only


def _value(v: str) -> Any:
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


def parse_workload(spec: str) -> tuple[str, str, dict[str, Any]]:
    """``[label:]preset[:k=v,...]`` -> (label, preset, overrides); ``num_requests`` may be ``<k>x``."""
    from recommender.presets import PRESETS

    parts = spec.split(":")
    if parts[0] in PRESETS:
        label, name, rest = None, parts[0], parts[1:]
    else:
        label, name, rest = parts[0], parts[1] if len(parts) > 1 else "", parts[2:]
    if name not in PRESETS:
        raise SystemExit(f"workload spec {spec!r}: unknown preset {name!r} (use {sorted(PRESETS)})")
    over: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in ":".join(rest).split(","))):
        k, _, v = part.partition("=")
        over[k] = v if (k == "num_requests" and v.endswith("x")) else _value(v)
    if label is None:
        label = name + (f"@{over['rate_rps']:g}" if "rate_rps" in over else "")
    return label, name, over


def build_workload(name: str, over: dict[str, Any], seqs: int | None, min_requests: int) -> Any:
    from recommender.presets import get_preset

    kw = dict(over)
    n = kw.get("num_requests")
    if isinstance(n, str) and n.endswith("x"):
        kw["num_requests"] = max(min_requests, int(round(float(n[:-1]) * (seqs or 256))))
    return get_preset(name, **kw)


def est_run_s(wl: Any, seqs: int | None, model: str) -> float:
    """Rough duration of one run on an H100 (Llama-3.1-8B throughput from ML.ENERGY; warm-up included)."""
    plan = wl.sample(max_total_tokens=MAX_MODEL_LEN)
    keys = sorted(THROUGHPUT_HINT)
    s = seqs or 256
    thr = THROUGHPUT_HINT[max([k for k in keys if k <= s] or keys[:1])]
    work_s = float(plan.output_tokens.sum()) / thr
    if plan.arrival_s is not None:
        return max(float(plan.arrival_s[-1]) + 10.0, 1.25 * work_s) + 8.0
    return 1.25 * work_s + 12.0


def wl_label(m: Any) -> str:
    """``mlenergy-chat i395 n640`` / ``azure-conv-2023 r4 n200``: name, rate, mean input (presets whose
    definition changed over time: mlenergy-chat had short single-turn inputs, mean ~198, before 2026-11-24) and
    request count."""
    w = m.scenario.workload
    rate = getattr(w.arrivals, "rate_rps", None)
    mean_in = f" i{w.stats()['input_tokens_mean']:.0f}" if w.name == "mlenergy-chat" else ""
    return f"{w.name}{f' r{rate:g}' if rate is not None else ''}{mean_in} n{w.num_requests}"


def cfg_label(m: Any) -> str:
    c = m.config
    s = c.short().removeprefix("tp1x1 ")
    return f"{m.scenario.model} {s}"


# ---- running ----------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    from measure_h100 import make_evaluator  # same folder: run as `python benchmarks/measure_grid.py`

    from recommender.config import Hardware, Scenario
    from recommender.errors import EnergyMeterError, ServerStartError

    t0 = time.monotonic()
    deadline = t0 + args.deadline_s
    out = Path(args.out)
    ev = make_evaluator(args, out)
    hw = Hardware(gpu=args.gpu_name, count=1)
    workloads = [parse_workload(w) for w in args.workload]
    labels = [w[0] for w in workloads]
    if len(set(labels)) != len(labels):
        raise SystemExit(f"workload labels must differ: {labels}")
    engines: dict[tuple[Any, ...], list[tuple[str, Any, list[str] | None]]] = {}
    for spec in args.config:
        model, cfg, only = parse_config(spec, args.model)
        bad = set(only or ()) - set(labels)
        if bad:
            raise SystemExit(f"config {spec!r}: unknown workload labels {sorted(bad)} (have {labels})")
        engines.setdefault((model, cfg.engine_key(), cfg.replicas), []).append((model, cfg, only))
    done: list[Any] = []

    def archive() -> None:
        if args.archive and done:
            write_archive(Path(args.archive), out, done)

    for members in engines.values():
        model, cfg0, _ = members[0]
        runs = []
        for model, cfg, only in members:
            for label, name, over in workloads:
                if only is None or label in only:
                    wl = build_workload(name, over, cfg.max_num_seqs, args.min_requests)
                    scen = Scenario(model=model, hardware=hw, workload=wl, max_model_len=MAX_MODEL_LEN)
                    runs.append((cfg, label, scen, est_run_s(wl, cfg.max_num_seqs, model)))
        if not runs:
            continue
        head = f"{model} {cfg0.short()}"
        left = deadline - time.monotonic()
        if left < args.start_est_s + min(r[3] for r in runs) + 10:
            print(f"[{head}] skipped: {left:.0f} s left, too close to the deadline for a server start", flush=True)
            continue
        ev.start_timeout_s = max(30.0, min(args.start_timeout_s, left - 30.0))
        try:
            with ev.serve(cfg0, runs[0][2]) as session:
                t_up = time.monotonic() - t0
                print(f"[{head}] healthy after {session.servers[0].startup_s:.0f} s (t={t_up:.0f} s); idle "
                      f"{_f(session.idle_power_w, 0)} W; vllm {session.versions.get('vllm')}", flush=True)
                for cfg, label, scen, est in runs:
                    left = deadline - time.monotonic()
                    if est > left:
                        print(f"[{head}] {label}: skipped, a run (~{est:.0f} s) would end after the deadline "
                              f"({left:.0f} s left)", flush=True)
                        continue
                    session.options.run_timeout_s = max(10.0, left - 8.0)  # hard stop before the deadline
                    t = time.monotonic()
                    ms = session.measure(cfg, scen, repeats=args.repeats, label=label, deadline_s=deadline - 5.0)
                    done.extend(ms)
                    for m in ms:
                        print_row(m, est, time.monotonic() - t)
                    archive()
        except ServerStartError as e:
            print(f"[{head}] server did not start ({e.reason}): {e.detail}\n--- log tail ---\n{e.log_tail[-3000:]}",
                  flush=True)
            done.append(ev.failed(cfg0, runs[0][2], e.reason, f"{e.detail}\n{e.log_tail}"))
            archive()
        except EnergyMeterError as e:
            print(f"no energy measurement possible here: {e}", flush=True)
            return 2
    archive()
    summarize([(m, out) for m in done])
    print(f"total {time.monotonic() - t0:.0f} s", flush=True)
    return 0 if any(m.ok for m in done) else 1


def print_row(m: Any, est: float, took: float) -> None:
    if not m.ok:
        print(f"  {cfg_label(m)} | {wl_label(m)}: FAILED {m.failure_reason}: {m.failure_detail[:800]}", flush=True)
        return
    s = m.steady_state
    print(f"  {cfg_label(m)} | {wl_label(m)}: {m.metrics.duration_s:.1f} s (est {est:.0f}, with warm-up "
          f"{took:.0f}); J/tok steady {_f(s.energy_per_output_token_j if s else None, 4)} whole "
          f"{_f(m.metrics.energy_per_output_token_j, 4)}; {_f(m.metrics.throughput_output_tok_s, 0)} tok/s; "
          f"{m.notes}", flush=True)


# ---- summarizing ------------------------------------------------------------------------------------------
def summarize(items: list[tuple[Any, Path]]) -> None:
    """Per-run table (both windows' J/tok; other columns steady state where one exists, else whole run)."""
    groups: dict[tuple[str, str], list[tuple[Any, Path]]] = defaultdict(list)
    for m, root in items:
        groups[(cfg_label(m), wl_label(m))].append((m, root))
    print("\n== runs: J/tok = J per output token (GPU energy, NVML counter); W, tok/s, batch: steady window "
          "(whole run where none);\n   latencies (ms): all requests of the run; start_s: server start to /health ==")
    hdr = (f"{'config':<44} {'workload':<26} {'rep':>3} {'J/tok_st':>8} {'J/tok_wh':>8} {'W':>4} {'tok/s':>6} "
           f"{'TTFT50':>6} {'TTFT99':>6} {'TPOT50':>6} {'TPOT90':>6} {'ITL50':>5} {'ITL99':>5} {'batch':>5} "
           f"{'dur_s':>5} {'start_s':>7} {'MHz':>4} {'ok/n':>9}")
    print(hdr)

    def order(k: tuple[str, str]) -> tuple[Any, ...]:
        return (k[0].split()[0], k[0], k[1])

    for key in sorted(groups, key=order):
        for m, root in sorted(groups[key], key=lambda x: x[0].notes or ""):
            rep = (m.notes or "").split(";")[0].removeprefix("repeat ").split("/")[0] or "-"
            if not m.ok:
                print(f"{key[0]:<44} {key[1]:<26} {rep:>3} FAILED {m.failure_reason}")
                continue
            w, s = m.metrics, m.steady_state
            x = s or w
            n = (w.completed_requests or 0) + (w.failed_requests or 0)
            start = _run_info(m, root).get("server_startup_s")
            print(f"{key[0]:<44} {key[1]:<26} {rep:>3} {_f(s.energy_per_output_token_j if s else None, 4):>8} "
                  f"{_f(w.energy_per_output_token_j, 4):>8} {_f(x.avg_power_w, 0):>4} "
                  f"{_f(x.throughput_output_tok_s, 0):>6} {_f(w.ttft_p50_s, 0, 1e3):>6} {_f(w.ttft_p99_s, 0, 1e3):>6} "
                  f"{_f(w.tpot_p50_s, 1, 1e3):>6} {_f(w.tpot_p90_s, 1, 1e3):>6} {_f(w.itl_p50_s, 1, 1e3):>5} "
                  f"{_f(w.itl_p99_s, 1, 1e3):>5} {_f(x.avg_batch_size, 1):>5} {_f(w.duration_s, 1):>5} "
                  f"{_f(start, 0):>7} {_f(x.mean_sm_clock_mhz, 0):>4} {f'{w.completed_requests}/{n}':>9}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="Llama-3.1-8B", help="catalog model (a config's model= overrides it)")
    ap.add_argument("--config", action="append", default=[], help="config spec (repeatable), see above")
    ap.add_argument("--workload", action="append", default=[], help="workload spec (repeatable), see above")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--min-requests", type=int, default=64, help="floor for num_requests=<k>x")
    ap.add_argument("--gpu-name", default="H100", help="catalog GPU of the scenario (default H100)")
    ap.add_argument("--out", default="runs/grid", help="dataset root for raw results")
    ap.add_argument("--archive", default=None, help="pack this call's results into this .tar.gz after each run")
    ap.add_argument("--deadline-s", type=float, default=560.0, help="start no run that would end later")
    ap.add_argument("--start-est-s", type=float, default=START_EST_S, help="expected server start time")
    ap.add_argument("--gpu", type=int, default=0, help="NVML index of the GPU to use")
    ap.add_argument("--start-timeout-s", type=float, default=420.0)
    ap.add_argument("--vllm-cmd", default=None, help="command that runs `vllm serve` (default: this python)")
    ap.add_argument("--vllm-extra-args", default="", help="appended to vllm serve")
    ap.add_argument("--skip-tokenizer-init", action="store_true", help="serve without our synthetic tokenizer")
    ap.add_argument("--no-energy", action="store_true", help="allow a host without NVML (latency only)")
    ap.add_argument("--summarize", nargs="+", default=None, metavar="DIR_OR_TAR", help="only print tables")
    ap.add_argument("--extract-to", default=None, help="with --summarize: extract archives into this root")
    ap.add_argument("--dry-run", action="store_true", help="print the plan (runs, estimates) and exit")
    ap.add_argument("--log-level", default="INFO", help="log level of the library's messages (stderr)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.summarize:
        summarize(load_items(args.summarize, args.extract_to))
        return 0
    if not args.config or not args.workload:
        ap.error("give at least one --config and one --workload")
    if args.dry_run:
        return dry_run(args)
    return run(args)


def dry_run(args: argparse.Namespace) -> int:
    workloads = [parse_workload(w) for w in args.workload]
    total = 0.0
    engines: dict[tuple[Any, ...], list[Any]] = {}
    for spec in args.config:
        model, cfg, only = parse_config(spec, args.model)
        engines.setdefault((model, cfg.engine_key()), []).append((model, cfg, only))
    for members in engines.values():
        total += args.start_est_s
        print(f"{members[0][0]} {members[0][1].short()}: start ~{args.start_est_s:.0f} s")
        for model, cfg, only in members:
            for label, name, over in workloads:
                if only is None or label in only:
                    wl = build_workload(name, over, cfg.max_num_seqs, args.min_requests)
                    st = wl.stats()
                    est = est_run_s(wl, cfg.max_num_seqs, model) * args.repeats
                    total += est
                    print(f"   {label:<6} {wl.name} n={wl.num_requests} in {st['input_tokens_mean']:.0f} "
                          f"out {st['output_tokens_mean']:.0f} rate {st['arrival_rate_rps']}: ~{est:.0f} s")
    print(f"total ~{total:.0f} s (deadline {args.deadline_s:.0f} s){'  OVER' if total > args.deadline_s else ''}")
    print(json.dumps({"engines": len(engines)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
