"""Measurements (metrics of one ServingConfig in one Scenario, with provenance) and Recommendations.

Metric names carry their unit: ``{metric}_{stat}_s`` for latencies (metric in ttft/tpot/itl/e2e, stat in
mean/p50/p90/p95/p99), ``energy_per_output_token_j``, ``avg_power_w``, ``throughput_output_tok_s``.
TTFT, TPOT, ITL and E2E follow ``vllm bench serve`` exactly (see ``recommender.serving.metrics``).
"""

from __future__ import annotations

import datetime as _dt
import uuid
from typing import Any, Literal

from pydantic import Field

from recommender._base import SCHEMA_VERSION, StrictModel
from recommender.config import Scenario, ServingConfig
from recommender.slo import SLO

Provenance = Literal["measured", "public", "predicted", "modeled"]
Status = Literal["ok", "failed"]
LATENCY_METRICS = ("ttft", "tpot", "itl", "e2e")
LATENCY_STATS = ("mean", "p50", "p90", "p95", "p99")


class Metrics(StrictModel):
    """Serving metrics over one window (whole run or steady state). Absent values are None, never 0."""

    energy_per_output_token_j: float | None = None
    energy_j: float | None = None
    avg_power_w: float | None = None
    idle_power_w: float | None = None
    duration_s: float | None = None
    throughput_output_tok_s: float | None = None
    throughput_total_tok_s: float | None = None
    throughput_requests_s: float | None = None
    completed_requests: int | None = None
    failed_requests: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    avg_batch_size: float | None = None
    mean_sm_clock_mhz: float | None = None
    slo_attainment: float | None = None
    goodput_requests_s: float | None = None
    ttft_mean_s: float | None = None
    ttft_p50_s: float | None = None
    ttft_p90_s: float | None = None
    ttft_p95_s: float | None = None
    ttft_p99_s: float | None = None
    tpot_mean_s: float | None = None
    tpot_p50_s: float | None = None
    tpot_p90_s: float | None = None
    tpot_p95_s: float | None = None
    tpot_p99_s: float | None = None
    itl_mean_s: float | None = None
    itl_p50_s: float | None = None
    itl_p90_s: float | None = None
    itl_p95_s: float | None = None
    itl_p99_s: float | None = None
    e2e_mean_s: float | None = None
    e2e_p50_s: float | None = None
    e2e_p90_s: float | None = None
    e2e_p95_s: float | None = None
    e2e_p99_s: float | None = None

    def get(self, key: str) -> float | None:
        """Value of metric ``key`` (a field name), or None."""
        v = getattr(self, key, None)
        return None if v is None else float(v)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class Measurement(StrictModel):
    """Metrics of one config in one scenario, with where they came from.

    ``status == "failed"`` carries ``failure_reason`` (e.g. ``oom``, ``timeout``, ``invalid_argument``,
    ``requests_failed``) and may have no metrics. ``intervals`` maps a metric key to a (low, high) prediction
    interval for predicted values. ``artifacts`` maps a name to a file (raw per-request records, power
    timeline, server log), relative to the dataset root the measurement was saved under
    (see :func:`recommender.dataset.artifact_dir`).
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    created_at: str = Field(default_factory=_now)
    scenario: Scenario
    config: ServingConfig
    status: Status = "ok"
    failure_reason: str | None = None
    failure_detail: str = ""
    provenance: Provenance
    source: str = ""
    metrics: Metrics | None = None
    steady_state: Metrics | None = None
    intervals: dict[str, tuple[float, float]] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    artifacts: dict[str, str] = Field(default_factory=dict)
    notes: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.metrics is not None

    def value(self, key: str, window: Literal["best", "whole", "steady"] = "best") -> float | None:
        """Metric ``key``: steady-state window when present (``best``), else the whole run."""
        if window in ("best", "steady") and self.steady_state is not None:
            v = self.steady_state.get(key)
            if v is not None or window == "steady":
                return v
        return self.metrics.get(key) if self.metrics is not None else None

    def row(self) -> dict[str, Any]:
        """Flat dict for a DataFrame: scenario summary, knobs, status, provenance and best-window metrics."""
        r: dict[str, Any] = {
            "id": self.id, "model": self.scenario.model, "gpu": self.scenario.hardware.gpu,
            "gpu_count": self.scenario.hardware.count, "workload": self.scenario.workload.name,
            "status": self.status, "failure_reason": self.failure_reason, "provenance": self.provenance,
            "source": self.source,
        }
        r.update(self.config.model_dump(exclude={"schema_version"}))
        for k in Metrics.model_fields:
            r[k] = self.value(k)
        return r


class Recommendation(StrictModel):
    """The answer for one scenario under one SLO.

    ``chosen`` is the least-energy config meeting every SLO target (None when nothing does; ``reason`` says
    why). ``pareto`` is the feasible energy/latency Pareto set, ``objective`` the latency metric key it is
    drawn against. Savings are fractions of energy per output token saved versus ``default`` (vLLM's default
    config) and ``fastest`` (lowest latency objective), None where a baseline is unknown.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    scenario: Scenario
    slo: SLO
    objective: str
    chosen: Measurement | None
    pareto: tuple[Measurement, ...] = ()
    default: Measurement | None = None
    fastest: Measurement | None = None
    savings_vs_default_frac: float | None = None
    savings_vs_fastest_frac: float | None = None
    evaluated: int = 0
    feasible: int = 0
    reason: str = ""
    created_at: str = Field(default_factory=_now)
