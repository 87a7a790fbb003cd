"""Adapters that turn the public datasets in ``../shared/data`` into :class:`~recommender.measurement.Measurement`
objects (provenance ``public``, ``source`` naming the file), so the surrogate trains on them and on our own
measurement files through one path.

What is used, and what is not (and why):

- **ML.ENERGY v3** (``mlenergy-leaderboard-v3/llm_configs_flat.csv``, vLLM 0.11.1, H100): text tasks
  ``lm-arena-chat``, ``gpqa``, ``sourcegraph-fim``. Steady-state output throughput, power summed over the GPUs,
  J per output token for the whole server, ITL p50/p90/p95/p99. ``image-chat``/``video-chat`` rows are skipped
  (vision inputs), as are models whose architecture is not in the catalog (Mamba hybrids such as Nemotron
  Nano, DeciLM with per-layer KV heads, Phi-3-small with block-sparse attention).
  Expert-parallel MoE runs (TP 1 x EP n in the export) are recorded as ``tensor_parallel_size = n`` with
  ``enable_expert_parallel`` (vLLM's ``--enable-expert-parallel``: experts split whole over the n GPUs).
- **ML.ENERGY v2** (``llm_mllm_configs_flat.csv``, vLLM 0.5.4, A100-40GB and H100): text chat and code;
  J/token = energy per request / mean output tokens, power = J/token x throughput, mean TPOT.
- **LLM-Inference-Bench** (vLLM rows on A100/H100 only; other engines and accelerators skipped): static
  batches, ``in = out`` tokens; output tokens/s = total tokens/s x out / (in + out); power (mW, one GPU) only
  from ``Fig_16_a_b/power_results.csv``; fp8 weight / KV-cache rows from ``Fig_3``; TTFT from ``Fig_21``.
  ``Fig_10`` is excluded: its power column mixes W and mW and some rows exceed the board limit (SOURCE.md).
- **Splitwise perf model**: ``prompt_time`` (TTFT of the batch) and ``token_time`` (one decode iteration = ITL)
  per static batch, averaged over the repeats; nothing else. ``e2e_time`` is not used (it does not grow with
  ``token_size``: 6.3 s for 8,192 tokens but 19 s for 512, so generation evidently stopped early), hence no
  throughput, and no power or energy (they would need it). ``h100-80gb-pcap`` rows are excluded (synthetic:
  prompt_time is exactly 1.3x the uncapped rows, SOURCE.md), and so are batch-64 rows (their prompt_time is
  below batch 32's).

Workloads: ML.ENERGY exports give only the mean output length; inputs are assumptions stated per task in
:data:`TASK_INPUTS` (they are the main source of error for those rows' prefill share).
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from recommender.config import Hardware, Scenario, ServingConfig
from recommender.errors import InputError
from recommender.measurement import Measurement, Metrics
from recommender.workload import ClosedLoop, FixedLength, LengthDist, LognormalLength, Workload

logger = logging.getLogger(__name__)

#: Hugging Face id in the public data -> (catalog model, precision knob, note). ``bf16`` means "as published"
#: for checkpoints that ship quantized (gpt-oss's mxfp4 experts).
MODEL_MAP: dict[str, tuple[str, str, str]] = {
    "meta-llama/Llama-3.1-8B-Instruct": ("Llama-3.1-8B", "bf16", ""),
    "meta-llama/Meta-Llama-3.1-8B-Instruct": ("Llama-3.1-8B", "bf16", ""),
    "meta-llama/Meta-Llama-3-8B": ("Llama-3.1-8B", "bf16", "Llama 3 8B: same layer shapes and vocab as 3.1"),
    "meta-llama/Llama-3.1-70B-Instruct": ("Llama-3.1-70B", "bf16", ""),
    "meta-llama/Meta-Llama-3.1-70B-Instruct": ("Llama-3.1-70B", "bf16", ""),
    "meta-llama/Meta-Llama-3-70B": ("Llama-3.1-70B", "bf16", "Llama 3 70B: same layer shapes and vocab as 3.1"),
    "meta-llama/Llama-2-70b-hf": (
        "Llama-3.1-70B", "bf16", "Llama 2 70B: same layers/GQA as 3.1 70B, vocab 32000 (weights ~2% smaller)"
    ),
    "llama2-70b": ("Llama-3.1-70B", "bf16", "Llama 2 70B: same layers/GQA as 3.1 70B, vocab 32000 (~2% smaller)"),
    "mistralai/Mistral-7B-Instruct-v0.3": ("Mistral-7B-v0.3", "bf16", ""),
    "mistralai/Mistral-7B-v0.1": ("Mistral-7B-v0.3", "bf16", "v0.1: vocab 32000 vs 32768, 4k sliding window"),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": ("Mixtral-8x7B-v0.1", "bf16", ""),
    "mistralai/Mixtral-8x7B-v0.1": ("Mixtral-8x7B-v0.1", "bf16", ""),
    "Qwen/Qwen3-8B": ("Qwen3-8B", "bf16", ""),
    "Qwen/Qwen3-32B": ("Qwen3-32B", "bf16", ""),
    "Qwen/Qwen3-30B-A3B-Thinking-2507": ("Qwen3-30B-A3B", "bf16", ""),
    "Qwen/Qwen3-30B-A3B-Instruct-2507": ("Qwen3-30B-A3B", "bf16", ""),
    "Qwen/Qwen3-Coder-30B-A3B-Instruct": ("Qwen3-30B-A3B", "bf16", "Coder: same layer shapes as Qwen3-30B-A3B"),
    "Qwen/Qwen3-235B-A22B-Instruct-2507": ("Qwen3-235B-A22B", "bf16", ""),
    "Qwen/Qwen3-235B-A22B-Thinking-2507": ("Qwen3-235B-A22B", "bf16", ""),
    "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8": ("Qwen3-235B-A22B", "fp8", ""),
    "Qwen/Qwen3-235B-A22B-Thinking-2507-FP8": ("Qwen3-235B-A22B", "fp8", ""),
    "google/gemma-3-12b-it": ("Gemma-3-12B", "bf16", "text prompts only"),
    "google/gemma-3-27b-it": ("Gemma-3-27B", "bf16", "text prompts only"),
    "openai/gpt-oss-20b": ("gpt-oss-20b", "bf16", "served as published: mxfp4 experts"),
    "openai/gpt-oss-120b": ("gpt-oss-120b", "bf16", "served as published: mxfp4 experts"),
    "bloom-176b": ("BLOOM-176B", "bf16", ""),
    "meta-llama/Llama-2-7b-hf": ("Llama-2-7B", "bf16", ""),
    "huggyllama/llama-7b": ("Llama-2-7B", "bf16", "LLaMA 1 7B: same layer shapes and vocab as Llama 2 7B, 2k context"),
    "Qwen/Qwen2-7B": ("Qwen2-7B", "bf16", ""),
    "Qwen/Qwen2-72B": ("Qwen2-72B", "bf16", ""),
    "mistralai/Mixtral-8x22B-Instruct-v0.1": ("Mixtral-8x22B-Instruct-v0.1", "bf16", ""),
    "mistralai/Mistral-Large-Instruct-2407": ("Mistral-Large-2407", "bf16", ""),
    "mistralai/Mistral-Nemo-Instruct-2407": ("Mistral-Nemo-2407", "bf16", ""),
    "google/codegemma-1.1-2b": ("CodeGemma-1.1-2B", "bf16", ""),
    "google/codegemma-7b": ("CodeGemma-7B", "bf16", ""),
    "google/gemma-2-2b-it": ("Gemma-2-2B", "bf16", ""),
    "google/gemma-2-9b-it": ("Gemma-2-9B", "bf16", ""),
    "google/gemma-2-27b-it": ("Gemma-2-27B", "bf16", ""),
    "bigcode/starcoder2-3b": ("StarCoder2-3B", "bf16", ""),
    "bigcode/starcoder2-7b": ("StarCoder2-7B", "bf16", ""),
    "bigcode/starcoder2-15b": ("StarCoder2-15B", "bf16", ""),
    "codellama/CodeLlama-7b-hf": ("CodeLlama-7B", "bf16", ""),
    "codellama/CodeLlama-13b-hf": ("CodeLlama-13B", "bf16", ""),
    "codellama/CodeLlama-34b-hf": ("CodeLlama-34B", "bf16", ""),
    "codellama/CodeLlama-70b-hf": ("CodeLlama-70B", "bf16", ""),
    "microsoft/Phi-3-mini-4k-instruct": ("Phi-3-mini-4k", "bf16", ""),
    "microsoft/Phi-3-medium-4k-instruct": ("Phi-3-medium-4k", "bf16", ""),
    "meta-llama/Meta-Llama-3.1-405B-Instruct": ("Llama-3.1-405B", "bf16", ""),
    "meta-llama/Llama-3.1-405B-Instruct-FP8": ("Llama-3.1-405B", "fp8", "Meta's FP8 release, taken as 1 byte per weight"),
    "meta-llama/Llama-4-Scout-17B-16E-Instruct": ("Llama-4-Scout-17B-16E", "bf16", "text prompts only"),
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8": (
        "Llama-4-Maverick-17B-128E", "fp8", "text prompts only; Meta's FP8 release, taken as 1 byte per weight"
    ),
}

#: Assumed input-length distributions (lognormal median tokens, sigma, max) of each public task: the exports
#: do not carry input lengths. Output lengths come from each row group's mean generated length.
TASK_INPUTS: dict[str, tuple[float, float, int, str]] = {
    # lm-arena-chat: unused numbers; its inputs are the mlenergy-chat preset's multi-turn history model.
    "lm-arena-chat": (205, 1.0, 4096, "whole conversation history per turn, LMSYS-Chat-1M means"),
    "gpqa": (250, 0.4, 2048, "GPQA-diamond question with options and chat template, ~150-400 tokens"),
    "sourcegraph-fim": (800, 0.6, 8192, "code fill-in-the-middle with file context; the KV cache held ~750 such "
                        "requests of Qwen3-Coder-30B-A3B on 2 H100s, which bounds the mean prompt near 1,000 tokens"),
    "chat": (150, 1.0, 2048, "ShareGPT first-turn prompts (ML.ENERGY v2 chat)"),
    "code": (130, 0.45, 1024, "HumanEval+ prompts (ML.ENERGY v2 code)"),
}
#: Output-length spread (lognormal sigma) assumed for every public task; only the mean is published.
OUTPUT_SIGMA = 0.7
#: Requests per ML.ENERGY run as recorded here. Their metrics are steady-state (a saturated, refilled batch);
#: a large count makes the features see many waves, as in that steady state.
STEADY_STATE_REQUESTS = 100_000

GPU_MAP: dict[str, str] = {
    "H100": "H100-SXM", "H100 80GB HBM3": "H100-SXM", "A100-SXM4-40GB": "A100-SXM-40GB",
    "Nvidia H100 GPU": "H100-SXM", "Nvidia A100 GPU": "A100-SXM-40GB",
    "h100-80gb": "H100-SXM", "a100-80gb": "A100-SXM-80GB",
}


@dataclass
class PublicLoad:
    """What one adapter produced: measurements plus a count of rows skipped per reason."""

    source: str
    measurements: list[Measurement] = field(default_factory=list)
    rows_read: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        """One line: ``source: used/read rows; skipped: reason n, ...``."""
        skip = ", ".join(f"{k} {v}" for k, v in self.skipped.most_common()) or "none"
        return f"{self.source}: {len(self.measurements)} of {self.rows_read} rows used; skipped: {skip}"


def _workload(name: str, task: str, out_mean: float, requests: int = STEADY_STATE_REQUESTS) -> Workload:
    med, sigma, cap, why = TASK_INPUTS[task]
    inputs: LengthDist = LognormalLength(median_tokens=med, sigma=sigma, min_tokens=4, max_tokens=cap)
    input_text = f"input lognormal median {med:g} sigma {sigma:g} ({why})"
    if task == "lm-arena-chat":  # one source of truth with the preset operators use for this task
        from recommender.presets import mlenergy_chat

        inputs = mlenergy_chat().input_tokens
        input_text = f"input as preset mlenergy-chat ({why})"
    out_median = max(1.0, out_mean / np.exp(OUTPUT_SIGMA**2 / 2))
    return Workload(
        name=name,
        description=f"public task {task}: {input_text}; output mean "
        f"{out_mean:.0f} tokens (published), lognormal sigma {OUTPUT_SIGMA}; all requests at once, batch capped",
        input_tokens=inputs,
        output_tokens=LognormalLength(median_tokens=out_median, sigma=OUTPUT_SIGMA, min_tokens=1, max_tokens=32768),
        arrivals=ClosedLoop(concurrency=requests),
        num_requests=requests,
    )


def _static_workload(name: str, inp: int, out: int, batch: int) -> Workload:
    return Workload(
        name=name, description=f"static batch of {batch}: {inp} input and {out} output tokens each",
        input_tokens=FixedLength(tokens=inp), output_tokens=FixedLength(tokens=out),
        arrivals=ClosedLoop(concurrency=batch), num_requests=batch,
    )


def _measurement(model: str, gpu: str, gpus: int, workload: Workload, config: ServingConfig, metrics: Metrics,
                 source: str, vllm: str, note: str, steady: bool) -> Measurement:
    scenario = Scenario(model=model, hardware=Hardware(gpu=gpu, count=gpus), workload=workload)
    return Measurement(
        scenario=scenario, config=config, provenance="public", source=source, metrics=metrics,
        steady_state=metrics if steady else None, versions={"vllm": vllm}, notes=note,
    )


def _map_model(hf_id: str, load: PublicLoad, rows: int = 1) -> tuple[str, str, str] | None:
    """``MODEL_MAP`` entry of ``hf_id``; when absent, count ``rows`` skipped rows and return None."""
    hit = MODEL_MAP.get(hf_id)
    if hit is None:
        load.skipped["architecture not in catalog"] += rows
    return hit


MLENERGY_V3_CSV = "mlenergy-leaderboard-v3/llm_configs_flat.csv"
#: Workload name of the v3 rows of ``task``; :func:`mlenergy_v3_task` inverts it.
MLENERGY_V3_WORKLOAD = "mlenergy-v3-{task}"


def mlenergy_v3_task(workload_name: str) -> str | None:
    """The v3 task of a workload named by :func:`load_mlenergy_v3` (``mlenergy-v3-gpqa`` -> ``gpqa``), else None."""
    prefix = MLENERGY_V3_WORKLOAD.format(task="")
    return workload_name.removeprefix(prefix) if workload_name.startswith(prefix) else None


def load_mlenergy_v3(root: Path) -> PublicLoad:
    """ML.ENERGY leaderboard v3 H100 text rows of ``root`` (the shared data folder; see the module docstring)."""
    return load_mlenergy_v3_csv(_require(root / MLENERGY_V3_CSV), MLENERGY_V3_CSV)


def load_mlenergy_v3_csv(path: Path, source: str | None = None) -> PublicLoad:
    """The same from the flat CSV at ``path`` (``source`` names it in the measurements; default: the path).

    One measurement per text row whose model is in :data:`MODEL_MAP`: the scenario's workload is named
    :data:`MLENERGY_V3_WORKLOAD` with the task, the GPU count is the row's, and the config is
    ``ServingConfig(tensor_parallel_size=num_gpus, max_num_seqs, precision as mapped)``, with
    ``enable_expert_parallel`` where the row ran its experts expert-parallel (``expert_parallel > 1``: every
    multi-GPU MoE row of the export; vLLM's EP group is the TP group); metrics are the
    published steady-state ones (ITL in seconds; no TTFT/TPOT in the export).
    """
    rel = source or str(path)
    load, df = _read_table(path, rel)
    text = df[df["task"].isin(["lm-arena-chat", "gpqa", "sourcegraph-fim"])]
    load.skipped["vision task (image/video chat)"] += len(df) - len(text)
    for (task, hf_id, _gpus), grp in text.groupby(["task", "model_id", "num_gpus"], sort=True):
        hit = _map_model(str(hf_id), load, len(grp))
        if hit is None:
            continue
        model, precision, note = hit
        wl = _workload(MLENERGY_V3_WORKLOAD.format(task=task), str(task), float(grp["avg_output_len"].mean()))
        for r in grp.itertuples(index=False):
            cfg = ServingConfig(tensor_parallel_size=int(r.num_gpus), max_num_seqs=int(r.max_num_seqs),
                                precision=precision,  # type: ignore[arg-type]
                                enable_expert_parallel=int(r.expert_parallel) > 1)
            met = Metrics(
                energy_per_output_token_j=float(r.energy_per_token_joules), avg_power_w=float(r.avg_power_watts),
                throughput_output_tok_s=float(r.output_throughput_tokens_per_sec),
                avg_batch_size=float(r.avg_batch_size),
                itl_p50_s=r.median_itl_ms / 1e3, itl_p90_s=r.p90_itl_ms / 1e3, itl_p95_s=r.p95_itl_ms / 1e3,
                itl_p99_s=r.p99_itl_ms / 1e3,
            )
            ep = f"; expert parallel {int(r.expert_parallel)}" if int(r.expert_parallel) > 1 else ""
            load.measurements.append(_measurement(
                model, GPU_MAP[str(r.gpu_model)], int(r.num_gpus), wl, cfg, met, rel, "0.11.1",
                f"{hf_id}{'; ' + note if note else ''}{ep}", steady=True,
            ))
    return load


def load_mlenergy_v2(root: Path) -> PublicLoad:
    """ML.ENERGY leaderboard v2 text chat/code rows on A100-40GB and H100 (see the module docstring)."""
    rel = "mlenergy-leaderboard-v2/llm_mllm_configs_flat.csv"
    load, df = _read_table(_require(root / rel), rel)
    text = df[df["category"] == "llm_text_generation"]
    load.skipped["vision model (mllm)"] += len(df) - len(text)
    for (task, hf_id, gpu, tp, pp), grp in text.groupby(["task", "Model", "gpu_dir", "TP", "PP"], sort=True):
        hit = _map_model(str(hf_id), load, len(grp))
        if hit is None:
            continue
        if int(pp) != 1:
            load.skipped["pipeline parallel (not a knob)"] += len(grp)
            continue
        model, precision, note = hit
        wl = _workload(f"mlenergy-v2-{task}", str(task), float(grp["Avg Output Tokens"].mean()))
        for r in grp.to_dict("records"):
            j_tok = float(r["Energy/req (J)"]) / float(r["Avg Output Tokens"])
            tput = float(r["Token tput (tok/s)"])
            met = Metrics(energy_per_output_token_j=j_tok, throughput_output_tok_s=tput, avg_power_w=j_tok * tput,
                          tpot_mean_s=float(r["Avg TPOT (s)"]), avg_batch_size=float(r["Avg BS (reqs)"]))
            cfg = ServingConfig(tensor_parallel_size=int(tp), max_num_seqs=int(r["Max BS (reqs)"]),
                                precision=precision)  # type: ignore[arg-type]
            load.measurements.append(_measurement(
                model, GPU_MAP[str(gpu)], int(tp), wl, cfg, met, rel, "0.5.4", f"{hf_id}{'; ' + note if note else ''}",
                steady=True,
            ))
    return load


def _read_csv_rows(path: Path) -> list[dict[str, str]]:
    with open(_require(path), newline="") as f:
        return [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in csv.DictReader(f)
                if any((v or "").strip() for v in r.values())]


def load_llm_inference_bench(root: Path) -> PublicLoad:
    """LLM-Inference-Bench vLLM rows on A100/H100 (see the module docstring)."""
    base = root / "llm-inference-bench-argonne" / "Plots"
    load = PublicLoad("llm-inference-bench-argonne/Plots")
    seen: dict[tuple[object, ...], Measurement] = {}
    files = [("Fig_16_a_b/power_results.csv", "power"), ("Fig_3/A100_H100_quant_all_results.csv", "quant"),
             ("All_results.csv", "main"), ("Fig_21/all_results_TTFT.csv", "ttft")]
    for rel, kind in files:
        for r in _read_csv_rows(base / rel):
            load.rows_read += 1
            if r["Framework"] != "vLLM" or r["Hardware"] not in GPU_MAP:
                load.skipped["other engine or accelerator"] += 1
                continue
            hit = _map_model(r["Model"], load)
            if hit is None:
                continue
            model, _, note = hit
            precision, kv = "bf16", "auto"
            if kind == "quant":
                spec = r["kv_cache_dtype"].replace(" ", "").lower()
                if "int8" in spec:
                    load.skipped["int8 weights or KV (not a knob)"] += 1
                    continue
                precision = "fp8" if "weight=fp8" in spec else "bf16"
                kv = "fp8" if "kvcache=fp8" in spec else "auto"
            gpus, batch = int(r["Num of Hardware"]), int(r["Batch Size"])
            if kind == "ttft":
                inp, out = int(r["Input Length"]), int(r["Output Length"])
            else:
                inp = out = int(r["Input Output Length"])
            key = (r["Hardware"], model, r["Model"], gpus, inp, out, batch, precision, kv)
            if key in seen and kind != "ttft":
                load.skipped["duplicate of a richer row"] += 1
                continue
            latency = float(r.get("Latency") or r.get("latency") or "nan")
            met: dict[str, float] = {}
            if kind == "ttft":
                met.update(ttft_p50_s=latency, ttft_p90_s=latency, ttft_p99_s=latency, ttft_mean_s=latency)
            else:
                total = float(r.get("Throughput") or r.get("throughput") or "nan")
                met.update(throughput_output_tok_s=total * out / (inp + out), throughput_total_tok_s=total,
                           duration_s=latency, e2e_mean_s=latency)
                if kind == "power":
                    watts = float(r["avg_power"]) / 1e3 * gpus
                    met.update(avg_power_w=watts, energy_per_output_token_j=watts / met["throughput_output_tok_s"])
            wl = _static_workload("lib-static-batch", inp, out, batch)
            cfg = ServingConfig(tensor_parallel_size=gpus, precision=precision, kv_cache_dtype=kv)  # type: ignore[arg-type]
            m = _measurement(model, GPU_MAP[r["Hardware"]], gpus, wl, cfg, Metrics.model_validate(met),
                             f"{load.source}/{rel}", "0.5.0", f"{r['Model']}{'; ' + note if note else ''}",
                             steady=False)
            seen[key] = m
            load.measurements.append(m)
    return load


def load_splitwise(root: Path) -> PublicLoad:
    """Splitwise perf-model rows (a100-80gb, h100-80gb), averaged over repeats (see the module docstring)."""
    rel = "splitwise-sim-perf-model/perf_model.csv"
    load, df = _read_table(_require(root / rel), rel)
    pcap = df["hardware"] == "h100-80gb-pcap"
    load.skipped["synthetic power-capped rows (pcap)"] += int(pcap.sum())
    df = df[~pcap]
    keys = ["model", "hardware", "tensor_parallel", "prompt_size", "batch_size", "token_size"]
    for key, grp in df.groupby(keys, sort=True):
        model_id, hw, tp, inp, batch, out = key
        hit = _map_model(str(model_id), load, len(grp))
        if hit is None:
            continue
        load.skipped["repeat runs averaged"] += len(grp) - 1
        if int(batch) >= 64:
            load.skipped["batch 64 (prompt_time below batch 32's: not credible)"] += len(grp)
            continue
        model, _, note = hit
        ttft, itl = (float(grp[c].mean()) / 1e3 for c in ("prompt_time", "token_time"))
        met: dict[str, float] = dict(ttft_p50_s=ttft, ttft_p90_s=ttft, ttft_p99_s=ttft, ttft_mean_s=ttft,
                                     itl_p50_s=itl, itl_mean_s=itl)
        wl = _static_workload("splitwise-static-batch", int(inp), int(out), int(batch))
        cfg = ServingConfig(tensor_parallel_size=int(tp))
        load.measurements.append(_measurement(
            model, GPU_MAP[str(hw)], int(tp), wl, cfg, Metrics.model_validate(met), rel, "0.2.0",
            f"{model_id}{'; ' + note if note else ''}; {len(grp)} repeats averaged", steady=False,
        ))
    return load


#: Public source name -> adapter (reads under ``shared_data``).
PUBLIC_SOURCES: dict[str, Callable[[Path], PublicLoad]] = {
    "mlenergy-v3": load_mlenergy_v3,
    "mlenergy-v2": load_mlenergy_v2,
    "llm-inference-bench": load_llm_inference_bench,
    "splitwise": load_splitwise,
}


def load_public(names: Iterable[str], shared_data: str | Path) -> list[PublicLoad]:
    """Run the adapters ``names`` (keys of :data:`PUBLIC_SOURCES`) over the folder ``shared_data``.

    Raises:
        InputError: an unknown source name or a missing data file (naming it).
    """
    root = Path(shared_data)
    out = []
    for name in names:
        if name not in PUBLIC_SOURCES:
            from recommender.errors import suggest

            hint = suggest(name, PUBLIC_SOURCES)
            raise InputError("--public", name, f"use some of {', '.join(PUBLIC_SOURCES)}{hint}")
        load = PUBLIC_SOURCES[name](root)
        logger.info("%s", load.summary())
        out.append(load)
    return out


def _read_table(path: Path, source: str) -> tuple[PublicLoad, pd.DataFrame]:
    """The CSV at ``path`` and an empty :class:`PublicLoad` named ``source`` that has counted its rows."""
    df = pd.read_csv(path)
    load = PublicLoad(source)
    load.rows_read = len(df)
    return load, df


def _require(path: Path) -> Path:
    if not path.is_file():
        raise InputError("--shared-data", str(path), "point --shared-data at the folder holding the public datasets")
    return path
