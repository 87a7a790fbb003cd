"""The Evaluator interface: one ServingConfig in one Scenario in, one Measurement out.

Contract (every implementation, checked by ``tests/unit/test_evaluator_contract.py``):
- ``evaluate`` never raises for a config that fails to run (OOM, start timeout, failed requests): it
  returns a Measurement with ``status="failed"`` and ``failure_reason`` set. It raises only
  :class:`~recommender.errors.RecommenderError` subclasses for bad input or a broken environment, and
  lets programmer errors propagate.
- The returned Measurement's ``config`` and ``scenario`` equal the arguments; ``provenance`` says whether
  it was measured, replayed from public data, predicted or modeled.
- ``evaluate_many`` may reorder work internally (e.g. to share a server start) but returns results in the
  order of ``configs``.
- Evaluators are used by one thread at a time; ``close`` releases servers/devices and is idempotent.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from recommender.config import Scenario, ServingConfig
    from recommender.measurement import Measurement


class Evaluator(abc.ABC):
    """Base class; subclasses implement :meth:`evaluate` (and may override :meth:`evaluate_many`)."""

    name: ClassVar[str] = "base"

    @abc.abstractmethod
    def evaluate(self, config: ServingConfig, scenario: Scenario) -> Measurement:
        """Measure or predict ``config`` in ``scenario``; failures come back as failed Measurements."""

    def evaluate_many(self, configs: Sequence[ServingConfig], scenario: Scenario) -> list[Measurement]:
        """Evaluate several configs; results in input order. Default: one by one."""
        return [self.evaluate(c, scenario) for c in configs]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Idempotent."""

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
