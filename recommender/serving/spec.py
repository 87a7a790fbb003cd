"""What a :class:`~recommender.serving.session.ServingSession` needs besides the knobs: the energy backend,
measurement options and the engine's launch details (plain dataclasses)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from recommender.slo import SLO


@dataclass
class EnergyBackend:
    """The pieces of :mod:`recommender.energy` a session uses (injectable for tests)."""

    get_energy_meter: Callable[..., Any]
    power_sampler: Callable[..., Any] | None
    gpu_actuator: Callable[..., Any]
    gpu_inventory: Callable[[], list[dict[str, Any]]]


def default_energy_backend() -> EnergyBackend:
    """The real NVML-backed backend (imported lazily: only ``recommender.energy`` touches pynvml)."""
    from recommender import energy

    return EnergyBackend(energy.get_energy_meter, energy.PowerSampler, energy.GPUActuator, energy.gpu_inventory)


@dataclass
class SessionOptions:
    """How a session measures. Durations in seconds.

    ``require_energy=False`` allows hosts without NVML (energy fields stay None). ``allow_gpu_tuning`` is the
    operator's opt-in for clock/power-limit knobs; without it such configs fail with
    ``gpu_tuning_not_allowed``. ``run_timeout_s`` bounds each run (open requests are cancelled and recorded).
    """

    repeats: int = 1
    warmup_requests: int = 4
    warmup_output_tokens: int = 16
    idle_power_s: float = 3.0
    request_timeout_s: float = 3600.0
    stall_timeout_s: float = 300.0
    run_timeout_s: float | None = 3600.0
    poll_metrics_s: float | None = 0.5
    power_interval_s: float = 0.1
    require_energy: bool = True
    allow_gpu_tuning: bool = False
    slo: SLO | None = None
    save_requests: bool = True


@dataclass
class EngineSpec:
    """Everything that fixes a server start, besides the knobs."""

    model_path: str
    gpu_groups: list[list[int]]
    vocab_size: int
    avoid_ids: frozenset[int]
    dummy_weights: bool = True
    command: list[str] | None = None
    vllm_version: str = "0.26.0"
    start_timeout_s: float | None = None
    skip_tokenizer_init: bool = False
    extra_args: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)

    @property
    def gpus(self) -> list[int]:
        """All GPU indices of all replicas."""
        return [g for grp in self.gpu_groups for g in grp]
