"""One exception family for the whole tool.

Every error a user can cause derives from :class:`RecommenderError` and carries a message that names the
field, the bad value and what is allowed (the fix). The CLI and the UI catch ``RecommenderError`` and show
``str(err)`` without a traceback; anything else is a programmer error and propagates.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RecommenderError(Exception):
    """Base class of every error the tool raises on purpose."""


class InputError(RecommenderError, ValueError):
    """Bad input: a YAML file, SLO string, CLI flag, UI field, API argument or data file.

    Args:
        field: dotted name of the offending field (``"slo.targets[0].limit"``, ``"--gpus"``, a file path).
        value: the bad value as the user gave it.
        allowed: what would be accepted, phrased as the fix.
    """

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}: got {value!r}; {allowed}")


class InfeasibleConfigError(RecommenderError):
    """A ServingConfig cannot run in a Scenario (memory, parallelism, clock range); ``reasons`` lists why."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = list(reasons)
        super().__init__("infeasible config: " + "; ".join(self.reasons))


class EnergyMeterError(RecommenderError):
    """Energy cannot be measured here (no NVML, unsupported counter, permission)."""


class ActuatorError(RecommenderError):
    """A GPU clock or power-limit change was refused, unsupported, or could not be restored."""


class ServerStartError(RecommenderError):
    """The vLLM server did not become healthy. ``reason`` is one of ``oom``, ``invalid_argument``,
    ``timeout``, ``crashed``, ``not_found``."""

    def __init__(self, reason: str, detail: str, log_tail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        self.log_tail = log_tail
        super().__init__(f"server failed to start ({reason}): {detail}")


class ArtifactError(RecommenderError):
    """A saved surrogate or dataset file is missing, mismatched or tampered with."""


def suggest(value: str, choices: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest of ``choices``, or ``""`` when none is close."""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
