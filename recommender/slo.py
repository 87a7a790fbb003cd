"""Latency SLOs: targets ``metric, percentile, limit`` plus an optional attainment fraction.

Operators write them as strings such as ``ttft:p99<=500ms,tpot:p90<=50ms`` (units ``s`` or ``ms``; a
bare number is seconds) and optionally ``attainment>=0.9``. Inside the library every limit is in seconds.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from recommender._base import StrictModel
from recommender.errors import InputError, suggest

SLOMetric = Literal["ttft", "tpot", "itl", "e2e"]
Percentile = Literal["p50", "p90", "p95", "p99"]
METRICS: tuple[str, ...] = ("ttft", "tpot", "itl", "e2e")
PERCENTILES: tuple[str, ...] = ("p50", "p90", "p95", "p99")

_TARGET_RE = re.compile(
    r"^\s*(?P<metric>[a-zA-Z][a-zA-Z0-9_]*)\s*:\s*(?P<pct>[a-zA-Z0-9_.]+)\s*(?P<op><=|<)\s*"
    r"(?P<num>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?P<unit>[a-zA-Z]*)\s*$"
)
_ATTAIN_RE = re.compile(r"^\s*attainment\s*(?:>=|=)\s*(?P<num>[0-9]*\.?[0-9]+)\s*(?P<pct>%?)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}


class SLOTarget(StrictModel):
    """One target: the ``percentile`` of ``metric`` over requests must be ``<= limit_s`` seconds."""

    metric: SLOMetric
    percentile: Percentile
    limit_s: float = Field(gt=0, le=3600)

    @property
    def key(self) -> str:
        """Metric column name in :class:`recommender.measurement.Metrics`, e.g. ``ttft_p99_s``."""
        return f"{self.metric}_{self.percentile}_s"

    def __str__(self) -> str:
        return f"{self.metric}:{self.percentile}<={self.limit_s * 1e3:g}ms"


class SLO(StrictModel):
    """A set of latency targets; all must hold. ``attainment`` (0, 1] is the fraction of requests that
    must meet every per-request target (goodput, as ``vllm bench serve --goodput`` defines it); None means
    only the percentile targets count."""

    targets: tuple[SLOTarget, ...] = Field(min_length=1)
    attainment: float | None = Field(default=None, gt=0, le=1)

    @model_validator(mode="after")
    def _unique(self) -> SLO:
        keys = [t.key for t in self.targets]
        dup = {k for k in keys if keys.count(k) > 1}
        if dup:
            raise ValueError(f"duplicate targets {sorted(dup)}: give each metric/percentile once")
        return self

    @classmethod
    def parse(cls, text: str, field: str = "slo") -> SLO:
        """Parse ``"ttft:p99<=500ms,tpot:p90<=50ms[,attainment>=0.9]"``.

        Raises:
            InputError: naming the bad part and the accepted form.
        """
        if not isinstance(text, str) or not text.strip():
            raise InputError(field, text, "give targets like 'ttft:p99<=500ms,tpot:p90<=50ms'")
        targets: list[SLOTarget] = []
        attainment: float | None = None
        for i, part in enumerate(p for p in text.split(",")):
            if not part.strip():
                raise InputError(f"{field}[{i}]", part, "remove the empty item between commas")
            m_att = _ATTAIN_RE.match(part)
            if m_att:
                attainment = float(m_att["num"]) / (100.0 if m_att["pct"] else 1.0)
                if not 0 < attainment <= 1:
                    raise InputError(f"{field}.attainment", part.strip(), "use a fraction in (0, 1] or a percent")
                continue
            m = _TARGET_RE.match(part)
            if not m:
                raise InputError(
                    f"{field}[{i}]", part.strip(), "write 'metric:percentile<=limit', e.g. 'ttft:p99<=500ms'"
                )
            metric, pct = m["metric"].lower(), m["pct"].lower()
            if metric not in METRICS:
                raise InputError(f"{field}[{i}].metric", metric, f"use one of {METRICS}{suggest(metric, METRICS)}")
            if pct not in PERCENTILES:
                raise InputError(f"{field}[{i}].percentile", pct, f"use one of {PERCENTILES}{suggest(pct, PERCENTILES)}")
            unit = m["unit"].lower()
            if unit not in _UNITS:
                raise InputError(f"{field}[{i}].unit", m["unit"], "use 's' or 'ms' (a bare number is seconds)")
            limit_s = float(m["num"]) * _UNITS[unit]
            if limit_s <= 0:
                raise InputError(f"{field}[{i}].limit", part.strip(), "the limit must be greater than zero")
            targets.append(SLOTarget(metric=metric, percentile=pct, limit_s=limit_s))  # type: ignore[arg-type]
        if not targets:
            raise InputError(field, text, "give at least one latency target besides attainment")
        keys = [t.key for t in targets]
        for k in keys:
            if keys.count(k) > 1:
                raise InputError(field, text, f"target {k} appears twice; give each metric/percentile once")
        return cls(targets=tuple(targets), attainment=attainment)

    def tightest(self) -> SLOTarget:
        """The target with the highest percentile (ties: smallest limit): the default latency objective."""
        order = {p: i for i, p in enumerate(PERCENTILES)}
        return max(self.targets, key=lambda t: (order[t.percentile], -t.limit_s))

    def __str__(self) -> str:
        s = ",".join(str(t) for t in self.targets)
        return s + (f",attainment>={self.attainment:g}" if self.attainment is not None else "")
