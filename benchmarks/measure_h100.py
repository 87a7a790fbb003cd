#!/usr/bin/env python3
"""Issue 3 GPU experiment: Llama-3.1-8B-shaped model (dummy weights, bf16, TP1) on one H100, closed loop,
all requests at once, max_num_seqs in {8, 64, 256}, 3 repeats, two settings on ONE server start per
max_num_seqs:

  (a) fixed 256 input / 400 output tokens, 3 x max_num_seqs requests;
  (b) preset ``mlenergy-chat`` (ML.ENERGY v3 lm-arena-chat as closely as its export allows), with
      CHAT_REQUESTS[max_num_seqs] requests: 96 / 512 / 1280, chosen so one run lasts ~35-60 s on an H100
      (ML.ENERGY's measured throughput x ~396 output tokens per request) and the steady state (from the
      S-th to the (N-S)-th first token) lasts ~25-35 s, above ML.ENERGY's 20 s stability floor.

Prints per run J/output token, average power, output throughput, TTFT p50/p99, ITL p50/p99, batch, for the
whole run and the steady state; the repeat spread (max-min)/mean of J/token; server start -> finished time;
and setting (b) beside the ML.ENERGY v3 rows (Llama-3.1-8B-Instruct, lm-arena-chat, 1 x H100) with % diffs.
``--summarize`` re-reads saved results (folders or the .tar.gz archives) and prints the same tables (CPU only).

On the lent H100 (see ../shared/gpu/README.md), one call per max_num_seqs (each call <= 10 min):

  first call, after sending bundle_01..09 (installs vLLM, ~70 s, then runs S=8, ~4 min):
    mkdir -p /root/vllm_bundles && cp -r .gpu/bundle_10 /root/vllm_bundles/ &&
    bash /root/vllm_bundles/bundle_10/install.sh && source /root/vllm_bundles/env.sh &&
    PYTHONUNBUFFERED=1 python3 benchmarks/measure_h100.py --seqs 8 --deadline-s 480
      --out /tmp/h100 --archive $OUT/h100_seqs8.tar.gz
  later calls on the warm machine (S=64 ~5 min, S=256 ~7-8 min):
    [ -f /tmp/site/vllm/__init__.py ] || { echo "machine went cold: resend bundles"; exit 3; };
    source /root/vllm_bundles/env.sh && PYTHONUNBUFFERED=1 python3 benchmarks/measure_h100.py --seqs 64
      --out /tmp/h100 --archive $OUT/h100_seqs64.tar.gz
  here, afterwards (extracts into the dataset and prints all tables):
    python benchmarks/measure_h100.py --summarize <files_at>/h100_seqs*.tar.gz --extract-to data/measurements/h100
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODEL = "Llama-3.1-8B"
ML_ENERGY_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
DEFAULT_CSV = REPO.parent / "shared" / "data" / "mlenergy-leaderboard-v3" / "llm_configs_flat.csv"
CHAT_REQUESTS = {8: 96, 64: 512, 256: 1280}
#: Both settings fit one engine: mlenergy-chat clips inputs at 4096 and outputs at 2048 (4096 before 2026-11-24).
MAX_MODEL_LEN = 8192
#: ML.ENERGY v3 H100 output throughput (tok/s) by max_num_seqs: only used to guess run lengths for --deadline-s.
THROUGHPUT_HINT = {8: 1070, 16: 1950, 32: 3390, 64: 5150, 96: 6260, 128: 7040, 192: 8220, 256: 9010, 384: 9250}
#: The ML.ENERGY rows used when the CSV is not reachable (the device machine does not get ../shared); copied
#: from llm_configs_flat.csv: max_num_seqs -> (avg_batch_size, avg_output_len, output tok/s, avg W, J/tok,
#: median ITL ms, p99 ITL ms).
ML_ENERGY_FALLBACK = {
    8: (7.978, 388.68, 1069.57, 486.44, 0.45480, 7.316, 10.867),
    64: (63.918, 395.54, 5147.15, 610.35, 0.11858, 11.500, 25.683),
    256: (255.190, 404.18, 9009.61, 690.51, 0.07664, 26.126, 59.664),
}
SETTING_OF = {"fixed-256-400": "a", "mlenergy-chat": "b"}


def chat_requests(seqs: int) -> int:
    return CHAT_REQUESTS.get(seqs, max(96, 4 * seqs))


def est_run_s(num_requests: int, mean_output: float, seqs: int) -> float:
    keys = sorted(THROUGHPUT_HINT)
    thr = THROUGHPUT_HINT[max([k for k in keys if k <= seqs] or keys[:1])]
    return 1.25 * num_requests * mean_output / thr + 10.0


# ---- running ----------------------------------------------------------------------------------------------
def make_evaluator(args: argparse.Namespace, out: Path) -> Any:
    """The VLLMEvaluator both benchmark scripts use, from their shared device flags."""
    from recommender.evaluators.vllm import VLLMEvaluator
    from recommender.serving.settings import parse_command

    return VLLMEvaluator(
        out, gpu_indices=[args.gpu], repeats=args.repeats, require_energy=not args.no_energy,
        start_timeout_s=args.start_timeout_s, skip_tokenizer_init=args.skip_tokenizer_init,
        vllm_command=parse_command(args.vllm_cmd) if args.vllm_cmd else None,
        extra_serve_args=args.vllm_extra_args.split() if args.vllm_extra_args else (),
        warmup_requests=8, idle_power_s=3.0, check_feasibility=False,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from recommender.config import Hardware, Scenario, ServingConfig
    from recommender.errors import EnergyMeterError, ServerStartError
    from recommender.presets import fixed, mlenergy_chat

    t_start = time.monotonic()
    deadline = t_start + args.deadline_s
    out = Path(args.out)
    ev = make_evaluator(args, out)
    hw = Hardware(gpu="H100", count=1)
    done: list[Any] = []
    for seqs in args.seqs:
        scen = {
            "a": Scenario(model=MODEL, hardware=hw, workload=fixed(256, 400, num_requests=3 * seqs),
                          max_model_len=MAX_MODEL_LEN),
            "b": Scenario(model=MODEL, hardware=hw, workload=mlenergy_chat(num_requests=args.chat_requests or
                          chat_requests(seqs)), max_model_len=MAX_MODEL_LEN),
        }  # fmt: skip
        cfg = ServingConfig(max_num_seqs=seqs, precision="bf16", tensor_parallel_size=1)
        if time.monotonic() + 150 > deadline:
            print(f"S={seqs}: skipped, too close to the deadline for a server start", flush=True)
            continue
        try:
            with ev.serve(cfg, scen[args.settings[0]]) as session:
                print(f"S={seqs}: server healthy after {session.servers[0].startup_s:.0f} s; idle "
                      f"{_f(session.idle_power_w, 0)} W; vllm {session.versions.get('vllm')}", flush=True)
                if args.warmup_s > 0:
                    warm_up(session, scen[args.settings[0]], args.warmup_s)
                for name in args.settings:
                    wl = scen[name].workload
                    n = len(wl.sample())
                    mean_out = float(wl.stats()["output_tokens_mean"])
                    if time.monotonic() + est_run_s(n, mean_out, seqs) > deadline:
                        print(f"S={seqs} ({name}): skipped, a run would end after the deadline", flush=True)
                        continue
                    label = f"setting {name}" + (f"; after {args.warmup_s:g} s warm-up" if args.warmup_s > 0 else "")
                    ms = session.measure(cfg, scen[name], repeats=args.repeats, label=label, deadline_s=deadline)
                    done += ms
                    for m in ms:
                        print_progress(seqs, name, m)
        except ServerStartError as e:
            print(f"S={seqs}: server did not start ({e.reason}): {e.detail}\n--- log tail ---\n{e.log_tail[-2500:]}",
                  flush=True)
            done.append(ev.failed(cfg, scen[args.settings[0]], e.reason, f"{e.detail}\n{e.log_tail}"))
        except EnergyMeterError as e:
            print(f"no energy measurement possible here: {e}", flush=True)
            return 2
    if args.archive:
        write_archive(Path(args.archive), out, done)
    summarize([(m, out) for m in done], args.mlenergy_csv)
    print(f"total {time.monotonic() - t_start:.0f} s", flush=True)
    return 0 if any(m.ok for m in done) else 1


def warm_up(session: Any, scenario: Any, seconds: float) -> None:
    """Send ``scenario``'s load (again and again, fresh prompts each pass) for ``seconds``; open requests are
    cancelled at the end. Nothing of it is measured: it only brings the GPU to its working temperature."""
    from recommender.serving.loadgen import make_prompts, run_load
    from recommender.serving.session import MODEL_NAME

    plan = scenario.workload.sample(max_total_tokens=scenario.effective_max_model_len())
    t0 = time.monotonic()
    passes = sent = 0
    while (left := t0 + seconds - time.monotonic()) > 1.0:
        prompts = make_prompts(plan.input_tokens, session.engine.vocab_size, session.engine.avoid_ids,
                               seed=7_777_777 + passes)
        r = run_load([s.base_url for s in session.servers], MODEL_NAME, plan, prompts, run_timeout_s=left,
                     request_id_prefix=f"warmup{passes}")
        passes += 1
        sent += sum(x.success for x in r.results)
    time.sleep(2.0)  # let the server finish aborting the cancelled requests
    print(f"  warm-up: {time.monotonic() - t0:.0f} s of {scenario.workload.name} load, {passes} pass(es), "
          f"{sent} requests completed (not measured)", flush=True)


def print_progress(seqs: int, setting: str, m: Any) -> None:
    s = m.steady_state
    if not m.ok:
        print(f"  S={seqs} {setting} {m.notes.split(';')[0]}: FAILED {m.failure_reason}: {m.failure_detail[:600]}",
              flush=True)
        return
    j = s.energy_per_output_token_j if s else None
    print(f"  S={seqs} {setting} {m.notes.split(';')[0]}: {m.metrics.duration_s:.1f} s, steady J/tok "
          f"{_f(j, 4)}, {_f(s.throughput_output_tok_s if s else None, 0)} tok/s", flush=True)


def write_archive(path: Path, root: Path, measurements: list[Any]) -> None:
    """Pack this invocation's measurements (JSON + artifact folder each) into one .tar.gz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for m in measurements:
            base = root / m.scenario.key()
            for p in (base / f"{m.id}.json", base / m.id):
                if p.exists():
                    tar.add(p, arcname=str(p.relative_to(root)))
    size = path.stat().st_size / 2**20
    print(f"archive {path} ({size:.1f} MiB){'  WARNING: over 16 MiB, it will not come back' if size > 16 else ''}")


# ---- summarizing ------------------------------------------------------------------------------------------
def _f(v: float | None, nd: int = 1, scale: float = 1.0) -> str:
    return "-" if v is None else f"{v * scale:.{nd}f}"


def _pct(ours: float | None, theirs: float | None) -> str:
    if ours is None or not theirs:
        return "-"
    return f"{100 * (ours - theirs) / theirs:+.0f}%"


def _mean(values: list[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return sum(v) / len(v) if v else None


def _run_info(m: Any, root: Path) -> dict[str, Any]:
    import json

    rel = m.artifacts.get("run_info")
    try:
        return json.loads((root / rel).read_text()) if rel else {}
    except OSError:
        return {}


def load_mlenergy(path: str | None) -> dict[int, tuple[float, ...]]:
    p = Path(path) if path else DEFAULT_CSV
    if not p.is_file():
        print(f"(ML.ENERGY CSV {p} not found: using the rows copied into this script)")
        return dict(ML_ENERGY_FALLBACK)
    rows: dict[int, tuple[float, ...]] = {}
    with p.open() as f:
        for r in csv.DictReader(f):
            key = (r["model_id"], r["task"], r["gpu_model"], r["num_gpus"])
            if key == (ML_ENERGY_MODEL, "lm-arena-chat", "H100", "1"):
                keys = ("avg_batch_size", "avg_output_len", "output_throughput_tokens_per_sec", "avg_power_watts",
                        "energy_per_token_joules", "median_itl_ms", "p99_itl_ms")
                rows[int(r["max_num_seqs"])] = tuple(float(r[k]) for k in keys)
    return rows


def setting_of(m: Any) -> str:
    """``a`` / ``b`` for the two settings; ``+w`` when the run followed a ``--warmup-s`` warm-up; ``b0`` for
    setting (b) under the first mlenergy-chat definition (single-turn inputs, before 2026-11-24)."""
    from recommender.presets import mlenergy_chat

    name = m.scenario.workload.name
    st = SETTING_OF.get(name, name)
    if st == "b" and m.scenario.workload.input_tokens != mlenergy_chat().input_tokens:
        st = "b0"
    return st + ("+w" if "warm-up" in (m.notes or "") else "")


def summarize(items: list[tuple[Any, Path]], mlenergy_csv: str | None) -> None:
    groups: dict[tuple[int, str], list[tuple[Any, Path]]] = defaultdict(list)
    for m, root in items:
        groups[(m.config.max_num_seqs or 0, setting_of(m))].append((m, root))
    print("\n== runs (ms for latencies; J/tok = J per output token, all GPUs) ==")
    print(f"{'S':>4} {'set':>3} {'rep':>3} {'win':<6} {'J/tok':>7} {'W':>5} {'tok/s':>6} {'TTFT50':>7} {'TTFT99':>7} "
          f"{'ITL50':>6} {'ITL99':>6} {'batch':>6} {'dur_s':>6} {'ok/n':>9} {'cli%':>5}")
    for (seqs, st), ms in sorted(groups.items()):
        for m, root in sorted(ms, key=lambda x: x[0].notes):
            info = _run_info(m, root)
            cpu, dur = info.get("client_cpu_s"), info.get("run_duration_s")
            cli = f"{100 * cpu / dur:.0f}" if cpu is not None and dur else "-"  # client CPU share of the run
            rep = m.notes.split(";")[0].removeprefix("repeat ").split("/")[0] if m.notes else "-"
            if not m.ok:
                print(f"{seqs:>4} {st:>3} {rep:>3} FAILED {m.failure_reason}")
                continue
            for win, x in (("whole", m.metrics), ("steady", m.steady_state)):
                if x is None:
                    continue
                n = (x.completed_requests or 0) + (x.failed_requests or 0)
                print(f"{seqs:>4} {st:>3} {rep:>3} {win:<6} {_f(x.energy_per_output_token_j, 4):>7} "
                      f"{_f(x.avg_power_w, 0):>5} {_f(x.throughput_output_tok_s, 0):>6} {_f(x.ttft_p50_s, 0, 1e3):>7} "
                      f"{_f(x.ttft_p99_s, 0, 1e3):>7} {_f(x.itl_p50_s, 1, 1e3):>6} {_f(x.itl_p99_s, 1, 1e3):>6} "
                      f"{_f(x.avg_batch_size, 1):>6} {_f(x.duration_s, 1):>6} {f'{x.completed_requests}/{n}':>9} "
                      f"{cli if win == 'whole' else '':>5}")
    print("\n== repeats: J/tok mean and spread (max-min)/mean; server start -> last repeat done ==")
    print(f"{'S':>4} {'set':>3} {'n':>2} {'steady':>7} {'spread':>7} {'whole':>7} {'spread':>7} {'idle_W':>6} "
          f"{'start_s':>7} {'done_s':>7}")
    for (seqs, st), ms in sorted(groups.items()):
        ok = [(m, r) for m, r in ms if m.ok]
        cells = []
        for win in ("steady", "whole"):
            v = [m.value("energy_per_output_token_j", win) for m, _ in ok]
            v = [x for x in v if x is not None]
            mean = sum(v) / len(v) if v else None
            cells += [_f(mean, 4), f"{100 * (max(v) - min(v)) / mean:.1f}%" if v and mean else "-"]
        infos = [_run_info(m, r) for m, r in ok]
        start = next((i.get("server_startup_s") for i in infos if i.get("server_startup_s")), None)
        end = max((i.get("run_end_since_server_start_s") or 0 for i in infos), default=None)
        idle = ok[0][0].metrics.idle_power_w if ok else None
        print(f"{seqs:>4} {st:>3} {len(ok):>2} {cells[0]:>7} {cells[1]:>7} {cells[2]:>7} {cells[3]:>7} "
              f"{_f(idle, 0):>6} {_f(start, 0):>7} {_f(end or None, 0):>7}")
    ref = load_mlenergy(mlenergy_csv)
    print("\n== (b) mlenergy-chat steady state vs ML.ENERGY v3 (Llama-3.1-8B-Instruct, lm-arena-chat, 1 x H100) ==")
    print("   ours: dummy weights, vLLM 0.26, forced lognormal outputs, input history MODELLED from LMSYS-Chat-1M means "
          "(presets.py); b0 rows (single-turn inputs) are not compared")
    print(f"{'S':>4} {'J/tok':>7} {'ML.E':>7} {'d%':>5} | {'W':>4} {'ML.E':>4} {'d%':>5} | {'tok/s':>5} {'ML.E':>5} "
          f"{'d%':>5} | {'ITL50':>5} {'ML.E':>5} | {'ITL99':>5} {'ML.E':>5} | {'batch':>5} {'ML.E':>5} | {'out':>4} "
          f"{'ML.E':>4}")
    for (seqs, st), ms in sorted(groups.items()):
        good = [m for m, _ in ms if m.ok and m.steady_state is not None]
        if st not in ("b", "b+w") or not good:
            continue

        def mean(key: str, window: str = "steady") -> float | None:
            return _mean([m.value(key, window) for m in good])  # noqa: B023 - used inside this iteration only

        out_len = mean("output_tokens", "whole")
        done = mean("completed_requests", "whole")
        out_len = out_len / done if out_len and done else None
        r = ref.get(seqs)
        b, ol, thr, w, j, i50, i99 = r if r else (None,) * 7
        ours = (mean("energy_per_output_token_j"), mean("avg_power_w"), mean("throughput_output_tok_s"))
        print(f"{seqs:>4} {_f(ours[0], 4):>7} {_f(j, 4):>7} {_pct(ours[0], j):>5} | {_f(ours[1], 0):>4} {_f(w, 0):>4} "
              f"{_pct(ours[1], w):>5} | {_f(ours[2], 0):>5} {_f(thr, 0):>5} {_pct(ours[2], thr):>5} | "
              f"{_f(mean('itl_p50_s'), 1, 1e3):>5} {_f(i50, 1):>5} | "
              f"{_f(mean('itl_p99_s'), 1, 1e3):>5} {_f(i99, 1):>5} | "
              f"{_f(mean('avg_batch_size'), 1):>5} {_f(b, 1):>5} | {_f(out_len, 0):>4} {_f(ol, 0):>4}")


def load_items(paths: list[str], extract_to: str | None) -> list[tuple[Any, Path]]:
    """Measurements (with their dataset root) from folders or from archives written by --archive."""
    from recommender.dataset import load_measurements

    items: list[tuple[Any, Path]] = []
    for p in map(Path, paths):
        if not (p.is_file() and p.name.endswith((".tar.gz", ".tgz"))):
            items += [(m, p) for m in load_measurements([p])]
            continue
        root = Path(extract_to) if extract_to else Path(tempfile.mkdtemp(prefix="h100-"))
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(p) as tar:
            names = tar.getnames()
            if hasattr(tarfile, "data_filter"):
                tar.extractall(root, filter="data")
            else:  # Python without extraction filters
                tar.extractall(root)  # noqa: S202 - our own archive
        ids = {Path(n).name.removesuffix(".json") for n in names if n.endswith(".json") and n.count("/") == 1}
        items += [(m, root) for m in load_measurements([root]) if m.id in ids]
    return items


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seqs", type=lambda s: [int(x) for x in s.split(",")], default=[8, 64, 256],
                    help="max_num_seqs values, comma-separated (default 8,64,256; one per call fits 10 min)")
    ap.add_argument("--settings", type=lambda s: s.split(","), default=["a", "b"], help="a, b or a,b")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chat-requests", type=int, default=None, help="requests of setting (b) (default per S)")
    ap.add_argument("--out", default="data/measurements", help="dataset root for raw results")
    ap.add_argument("--archive", default=None, help="also pack this call's results into this .tar.gz")
    ap.add_argument("--deadline-s", type=float, default=560.0, help="start no run that would end later")
    ap.add_argument("--gpu", type=int, default=0, help="NVML index of the GPU to use")
    ap.add_argument("--warmup-s", type=float, default=0.0,
                    help="after the server start, run the first setting's load this long (not measured)")
    ap.add_argument("--start-timeout-s", type=float, default=420.0)
    ap.add_argument("--vllm-cmd", default=None, help="command that runs `vllm serve` (default: this python)")
    ap.add_argument("--vllm-extra-args", default="", help="appended to vllm serve, e.g. '--async-scheduling'")
    ap.add_argument("--skip-tokenizer-init", action="store_true", help="serve without our synthetic tokenizer")
    ap.add_argument("--no-energy", action="store_true", help="allow a host without NVML (latency only)")
    ap.add_argument("--mlenergy-csv", default=None, help=f"ML.ENERGY v3 flat CSV (default {DEFAULT_CSV})")
    ap.add_argument("--summarize", nargs="+", default=None, metavar="DIR_OR_TAR", help="only print tables")
    ap.add_argument("--extract-to", default=None, help="with --summarize: extract archives into this root")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.summarize:
        summarize(load_items(args.summarize, args.extract_to), args.mlenergy_csv)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
