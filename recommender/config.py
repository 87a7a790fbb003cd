"""The domain models at the edges: ServingConfig, Hardware, Scenario (and re-exports of the others).

Everything here is strict pydantic (unknown fields are errors) and frozen. Use :func:`parse` to build
any of them from untrusted data: it turns pydantic's ValidationError into our :class:`InputError` that
names the field, the bad value and what is allowed.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError, field_validator

from recommender._base import SCHEMA_VERSION, StrictModel
from recommender.errors import InputError
from recommender.slo import SLO, SLOTarget
from recommender.workload import Workload

if TYPE_CHECKING:
    from recommender.catalog import GPUSpec, ModelSpec

Precision = Literal["bf16", "fp8"]
KVCacheDtype = Literal["auto", "fp8"]
GiB = 1024**3

__all__ = [
    "SLO", "SLOTarget", "Workload", "ServingConfig", "Hardware", "Scenario", "parse", "Precision", "KVCacheDtype",
]


class ServingConfig(StrictModel):
    """One value per knob. ``None`` means "vLLM's default" (resolved with :meth:`resolved`) for batch
    limits, "unlocked" for ``gpu_clock_mhz`` and "the GPU's default" for ``power_limit_w``.

    Engine knobs need a server restart; GPU knobs (clock, power limit) do not; ``replicas`` is a fleet knob
    (independent servers of the same engine, each on ``tensor_parallel_size`` GPUs). ``enable_expert_parallel``
    (MoE models, ``tensor_parallel_size > 1``): each GPU of the group holds whole experts (expert parallelism of
    size ``tensor_parallel_size``) instead of a slice of every expert.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    tensor_parallel_size: int = Field(default=1, ge=1, le=64)
    replicas: int = Field(default=1, ge=1, le=1024)
    max_num_seqs: int | None = Field(default=None, ge=1, le=65_536)
    max_num_batched_tokens: int | None = Field(default=None, ge=16, le=1_048_576)
    enable_chunked_prefill: bool = True
    precision: Precision = "bf16"
    kv_cache_dtype: KVCacheDtype = "auto"
    enable_prefix_caching: bool = True
    enforce_eager: bool = False
    enable_expert_parallel: bool = False
    gpu_memory_utilization: float = Field(default=0.9, gt=0.05, le=0.99)
    gpu_clock_mhz: int | None = Field(default=None, ge=100, le=5000)
    power_limit_w: float | None = Field(default=None, ge=50, le=2000)

    @property
    def num_gpus(self) -> int:
        """GPUs the config occupies: tensor_parallel_size x replicas."""
        return self.tensor_parallel_size * self.replicas

    ENGINE_KNOBS: ClassVar[tuple[str, ...]] = (
        "tensor_parallel_size", "max_num_seqs", "max_num_batched_tokens", "enable_chunked_prefill", "precision",
        "kv_cache_dtype", "enable_prefix_caching", "enforce_eager", "enable_expert_parallel", "gpu_memory_utilization",
    )

    def engine_key(self) -> tuple[Any, ...]:
        """Values of the knobs that need a server restart; equal keys can share one server start."""
        return tuple(getattr(self, k) for k in self.ENGINE_KNOBS)

    def resolved(self, gpu: GPUSpec) -> ServingConfig:
        """Copy with vLLM's defaults filled in for ``max_num_seqs`` and ``max_num_batched_tokens``.

        vLLM (``EngineArgs._set_default_args``, OpenAI server usage context) uses 1024 sequences and 8192
        batched tokens on GPUs with >= 70 GiB that are not A100s, else 256 and 2048.
        """
        big = gpu.memory_bytes >= 70 * GiB and "a100" not in gpu.name.lower()
        return self.model_copy(update={
            "max_num_seqs": self.max_num_seqs or (1024 if big else 256),
            "max_num_batched_tokens": self.max_num_batched_tokens or (8192 if big else 2048),
        })

    def short(self) -> str:
        """Compact human-readable label, e.g. ``tp1x1 seqs=256 bf16``."""
        parts = [f"tp{self.tensor_parallel_size}x{self.replicas}", f"seqs={self.max_num_seqs or 'default'}"]
        if self.max_num_batched_tokens:
            parts.append(f"btok={self.max_num_batched_tokens}")
        parts.append(self.precision + ("/kv-fp8" if self.kv_cache_dtype == "fp8" else ""))
        if not self.enable_chunked_prefill:
            parts.append("no-chunk")
        if not self.enable_prefix_caching:
            parts.append("no-prefix")
        if self.enforce_eager:
            parts.append("eager")
        if self.enable_expert_parallel:
            parts.append("ep")
        if self.gpu_clock_mhz:
            parts.append(f"{self.gpu_clock_mhz}MHz")
        if self.power_limit_w:
            parts.append(f"{self.power_limit_w:g}W")
        return " ".join(parts)


class Hardware(StrictModel):
    """GPU type (a catalog name or alias, stored canonical) and how many GPUs the operator has."""

    gpu: str = Field(min_length=1)
    count: int = Field(default=1, ge=1, le=1024)

    @field_validator("gpu")
    @classmethod
    def _known(cls, v: str) -> str:
        from recommender.catalog import get_gpu

        try:
            return get_gpu(v).name
        except InputError as e:
            raise ValueError(e.allowed) from None

    @property
    def spec(self) -> GPUSpec:
        from recommender.catalog import get_gpu

        return get_gpu(self.gpu)


class Scenario(StrictModel):
    """What is held fixed while knobs vary: model, hardware and workload.

    ``model`` is a catalog name, a Hugging Face id from the catalog, or a path to a local ``config.json``
    (or a folder holding one). ``max_model_len`` caps context length (default: the workload's longest
    request rounded up, at most the model's limit).
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    model: str = Field(min_length=1)
    hardware: Hardware
    workload: Workload
    max_model_len: int | None = Field(default=None, ge=16, le=10_000_000)

    @field_validator("model")
    @classmethod
    def _model_known(cls, v: str) -> str:
        from recommender.catalog import get_model

        try:
            get_model(v)
        except InputError as e:
            raise ValueError(f"{e.allowed}") from None
        return v

    @property
    def model_spec(self) -> ModelSpec:
        from recommender.catalog import get_model

        return get_model(self.model)

    def effective_max_model_len(self) -> int:
        """``max_model_len`` or the workload's longest request rounded up to 256, capped by the model."""
        return _max_model_len(self.model_dump_json())

    def key(self) -> str:
        """Stable short id of the scenario (model, GPU, count, workload name) for run directories."""
        import hashlib

        h = hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:8]
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.model.split("/")[-1])
        return f"{safe}__{self.hardware.gpu}x{self.hardware.count}__{self.workload.name}__{h}"


@functools.lru_cache(maxsize=512)
def _max_model_len(scenario_json: str) -> int:
    sc = Scenario.model_validate_json(scenario_json)
    limit = sc.model_spec.max_position_embeddings
    if sc.max_model_len is not None:
        return min(sc.max_model_len, limit)
    w = sc.workload
    if w.arrivals.kind != "trace":
        w = w.model_copy(update={"num_requests": 2000, "duration_s": None})
    p = w.sample()
    need = int((p.input_tokens + p.output_tokens).max())
    return int(min(limit, max(256, -(-need // 256) * 256)))


M = TypeVar("M", bound=BaseModel)


def parse(cls: type[M], data: Any, source: str = "") -> M:
    """Validate ``data`` as ``cls``; on failure raise :class:`InputError` naming the first bad field.

    Args:
        cls: the pydantic model class.
        data: a dict (from YAML/JSON/UI) or a model instance.
        source: where it came from (file name, ``"--slo"``); prefixed to the field path.
    """
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise InputError(source or cls.__name__, data, f"expected a mapping of {cls.__name__} fields")
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise validation_to_input_error(e, source) from None


def validation_to_input_error(e: ValidationError, source: str = "") -> InputError:
    """Convert pydantic's first error into an InputError with a dotted field path and a fix."""
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p in _TAGS))
    field = ":".join(x for x in (source, loc) if x) or source or "input"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        allowed = "unknown field; remove it or check its spelling"
        parent = e.title
        try:
            model = _find_model(parent)
            from recommender.errors import suggest

            name = str(err["loc"][-1])
            allowed += suggest(name, list(model.model_fields)) if model else ""
        except Exception:  # noqa: BLE001 - a suggestion is best effort
            pass
    elif err["type"] == "missing":
        allowed = "this field is required"
    else:
        allowed = msg[0].lower() + msg[1:] if msg else "invalid value"
        allowed = allowed.removeprefix("value error, ")
    value = err.get("input", None) if err["type"] != "missing" else None
    return InputError(field, value, allowed)


_TAGS = {"fixed", "uniform", "lognormal", "empirical", "poisson", "gamma", "trace", "closed_loop"}


def _find_model(title: str) -> type[BaseModel] | None:
    for m in (ServingConfig, Hardware, Scenario, Workload, SLO, SLOTarget):
        if m.__name__ == title:
            return m
    return None
