"""Serving: vLLM server lifecycle, load generation, and serving metrics (pure functions).

* :mod:`~recommender.serving.args`: ServingConfig -> ``vllm serve`` argv / ``--config`` YAML; replica GPU plan.
* :mod:`~recommender.serving.model_folder`: dummy-weight model folders with a synthetic tokenizer.
* :mod:`~recommender.serving.server`: :class:`VLLMServer`, a process-group-owning context manager.
* :mod:`~recommender.serving.loadgen`: streaming OpenAI-completions client.
* :mod:`~recommender.serving.records`: :class:`RequestResult`/:class:`RunResult` and their JSONL files.
* :mod:`~recommender.serving.session`: :class:`ServingSession`, servers for one engine plus the measurement loop.
* :mod:`~recommender.serving.steady`: the steady-state window (batch saturated, queue non-empty).
* :mod:`~recommender.serving.metrics`: :func:`compute_metrics`, as ``vllm bench serve`` defines the metrics.

vLLM itself is never imported: it runs as a separate server process.
"""

from __future__ import annotations

from recommender.serving.args import build_serve_args, plan_replica_gpus, to_vllm_config_yaml
from recommender.serving.loadgen import make_prompts, run_load
from recommender.serving.metrics import compute_metrics
from recommender.serving.model_folder import write_model_folder
from recommender.serving.records import RequestResult, RunResult, load_results, save_results
from recommender.serving.server import VLLMServer, classify_start_failure
from recommender.serving.steady import SteadyStateTracker, saturation_batch, steady_state_counts, steady_state_window

__all__ = [
    "RequestResult",
    "RunResult",
    "SteadyStateTracker",
    "VLLMServer",
    "build_serve_args",
    "classify_start_failure",
    "compute_metrics",
    "load_results",
    "make_prompts",
    "plan_replica_gpus",
    "run_load",
    "saturation_batch",
    "save_results",
    "steady_state_counts",
    "steady_state_window",
    "to_vllm_config_yaml",
    "write_model_folder",
]
