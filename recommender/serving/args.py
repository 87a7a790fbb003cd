"""Turn a ServingConfig into ``vllm serve`` arguments: an argv list for launching, a YAML dict for export.

Both come from one list of long-form options (:func:`engine_options`), so the command we measure and the
config file we hand to operators cannot drift apart. Flags whose spelling changed between vLLM releases are
kept as data in :data:`VERSIONED_FLAGS`, not as branches. GPU knobs (locked clock, power limit) are not vLLM
flags and never appear here; ``replicas`` becomes several servers (see :func:`plan_replica_gpus`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from recommender.errors import InputError

if TYPE_CHECKING:
    from recommender.config import Scenario, ServingConfig

#: ``precision`` knob -> long-form options. fp8 = bf16 activations with fp8 weight quantization.
PRECISION_OPTIONS: Mapping[str, Mapping[str, str]] = {
    "bf16": {"dtype": "bfloat16"},
    "fp8": {"dtype": "bfloat16", "quantization": "fp8"},
}

#: Flag spellings that drifted between vLLM releases: rows of (first version, {logical key: argv tokens}).
#: Later rows override earlier ones for versions at or above their first version. Checked against the vLLM
#: source for 0.26.0: ``--disable-log-requests`` was deprecated by vllm-project/vllm#21739 (request logging
#: off by default, ``--[no-]enable-log-requests``) and removed in 0.17; ``--disable-uvicorn-access-log``
#: exists in every supported release.
VERSIONED_FLAGS: tuple[tuple[str, Mapping[str, tuple[str, ...]]], ...] = (
    ("0.6.0", {
        "quiet-request-log": ("--disable-log-requests",),
        "quiet-access-log": ("--disable-uvicorn-access-log",),
    }),
    ("0.10.2", {"quiet-request-log": ("--no-enable-log-requests",)}),
)

#: Boolean engine options whose ``False`` value is vLLM's default and is therefore left out of argv.
_OMIT_WHEN_FALSE = frozenset({"enforce-eager", "skip-tokenizer-init"})


def parse_version(version: str) -> tuple[int, ...]:
    """``"0.26.0rc1.dev3"`` -> ``(0, 26, 0)``: the leading dotted integers of a version string."""
    m = re.match(r"^\s*v?(\d+(?:\.\d+)*)", version)
    if not m:
        raise InputError("vllm_version", version, "give a version like '0.26.0'")
    return tuple(int(p) for p in m.group(1).split("."))


def flag_table(vllm_version: str) -> dict[str, tuple[str, ...]]:
    """The logical-key -> argv-tokens table in force for ``vllm_version``."""
    v = parse_version(vllm_version)
    table: dict[str, tuple[str, ...]] = {}
    for first, row in VERSIONED_FLAGS:
        if v >= parse_version(first):
            table.update(row)
    return table


def engine_options(config: ServingConfig, scenario: Scenario) -> dict[str, Any]:
    """Long-form ``vllm serve`` options of ``config`` in ``scenario`` (keys as in ``vllm serve --config``).

    ``max-num-seqs`` and ``max-num-batched-tokens`` appear only when set (None = vLLM's default);
    ``max-model-len`` is :meth:`Scenario.effective_max_model_len`.
    """
    opts: dict[str, Any] = {"tensor-parallel-size": config.tensor_parallel_size}
    if config.max_num_seqs is not None:
        opts["max-num-seqs"] = config.max_num_seqs
    if config.max_num_batched_tokens is not None:
        opts["max-num-batched-tokens"] = config.max_num_batched_tokens
    opts["enable-chunked-prefill"] = config.enable_chunked_prefill
    opts.update(PRECISION_OPTIONS[config.precision])
    opts["kv-cache-dtype"] = config.kv_cache_dtype
    opts["enable-prefix-caching"] = config.enable_prefix_caching
    opts["enforce-eager"] = config.enforce_eager
    if config.enable_expert_parallel:
        opts["enable-expert-parallel"] = True
    opts["gpu-memory-utilization"] = config.gpu_memory_utilization
    opts["max-model-len"] = scenario.effective_max_model_len()
    return opts


def to_vllm_config_yaml(
    config: ServingConfig,
    scenario: Scenario,
    *,
    model: str | None = None,
    served_model_name: str | None = None,
    dummy_weights: bool = False,
    host: str | None = None,
    port: int | None = None,
) -> dict[str, Any]:
    """The config as a ``vllm serve --config`` YAML mapping with long-form keys.

    Args:
        config: the knob values; GPU knobs and ``replicas`` are not vLLM options and are left out.
        scenario: gives ``max-model-len``.
        model: value of the ``model`` key (default: the catalog's Hugging Face id of ``scenario.model``, else
            ``scenario.model`` as given).
        served_model_name: name clients use in requests; omitted when None.
        dummy_weights: add ``load-format: dummy`` (random weights; shapes only).
        host: bind address; omitted when None.
        port: port; omitted when None.

    Returns:
        A plain dict (insertion-ordered) ready for ``yaml.safe_dump``.
    """
    out: dict[str, Any] = {"model": model or scenario.model_spec.hf_id or scenario.model}
    if served_model_name:
        out["served-model-name"] = served_model_name
    out.update(engine_options(config, scenario))
    if dummy_weights:
        out["load-format"] = "dummy"
    if host is not None:
        out["host"] = host
    if port is not None:
        out["port"] = port
    return out


def options_to_argv(opts: Mapping[str, Any]) -> list[str]:
    """Long-form options as ``vllm serve`` flags: ``--key value``; booleans as ``--key``/``--no-key`` (a False
    that is vLLM's default, e.g. ``enforce-eager``, is left out)."""
    argv: list[str] = []
    for key, value in opts.items():
        if isinstance(value, bool):
            if not value and key in _OMIT_WHEN_FALSE:
                continue
            argv.append(f"--{key}" if value else f"--no-{key}")
        else:
            argv += [f"--{key}", str(value)]
    return argv


def build_serve_args(
    config: ServingConfig,
    scenario: Scenario,
    model_path: str,
    port: int,
    *,
    served_model_name: str = "model",
    dummy_weights: bool = True,
    host: str = "127.0.0.1",
    skip_tokenizer_init: bool = False,
    vllm_version: str = "0.26.0",
    extra_args: Sequence[str] = (),
) -> list[str]:
    """Arguments that follow ``vllm serve`` (the model path first), as an argv list (no shell).

    Args:
        config: knob values (GPU knobs are ignored here: they are applied through NVML, not vLLM).
        scenario: gives ``--max-model-len``.
        model_path: local model folder (or hub id for real weights).
        port: TCP port on ``host``.
        served_model_name: ``--served-model-name``; clients send it as ``model``.
        dummy_weights: add ``--load-format dummy``.
        host: bind address; loopback by default.
        skip_tokenizer_init: add ``--skip-tokenizer-init`` (prompts are token ids; chunks carry no text).
        vllm_version: selects flag spellings from :data:`VERSIONED_FLAGS`.
        extra_args: appended verbatim (operator escape hatch).
    """
    table = flag_table(vllm_version)
    opts = engine_options(config, scenario)
    if dummy_weights:
        opts["load-format"] = "dummy"
    opts["skip-tokenizer-init"] = skip_tokenizer_init
    argv = [str(model_path), "--served-model-name", served_model_name, *options_to_argv(opts)]
    argv += ["--host", host, "--port", str(int(port))]
    for logical in ("quiet-request-log", "quiet-access-log"):
        argv += list(table.get(logical, ()))
    argv += list(extra_args)
    return argv


def plan_replica_gpus(
    tensor_parallel_size: int, replicas: int, gpu_indices: Sequence[int] | None = None
) -> list[list[int]]:
    """GPU index groups, one per replica, each of ``tensor_parallel_size`` GPUs, taken in order.

    Each replica's server is pinned to its group with ``CUDA_VISIBLE_DEVICES``; e.g. tp=2, replicas=2 on
    GPUs 0..3 gives ``[[0, 1], [2, 3]]``.

    Args:
        tensor_parallel_size: GPUs per replica (>= 1).
        replicas: number of independent servers (>= 1).
        gpu_indices: NVML indices available, in the order to use them (default ``0 .. tp*replicas-1``).

    Raises:
        InputError: fewer GPUs than ``tp * replicas``, repeated indices, or non-positive sizes.
    """
    if tensor_parallel_size < 1 or replicas < 1:
        raise InputError("tensor_parallel_size/replicas", (tensor_parallel_size, replicas), "use values >= 1")
    need = tensor_parallel_size * replicas
    gpus = list(range(need)) if gpu_indices is None else [int(i) for i in gpu_indices]
    if len(set(gpus)) != len(gpus):
        raise InputError("gpu_indices", gpus, "list each GPU index once")
    if len(gpus) < need:
        raise InputError(
            "gpu_indices", gpus,
            f"this config needs {need} GPUs (tp {tensor_parallel_size} x {replicas} replicas); give that many",
        )  # fmt: skip
    return [gpus[r * tensor_parallel_size : (r + 1) * tensor_parallel_size] for r in range(replicas)]
