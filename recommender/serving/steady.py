"""The steady-state window of a run: when the server's batch is saturated and its queue is non-empty.

Definition (the ML.ENERGY benchmark's, ``mlenergy/llm/benchmark.py``): with ``N`` requests and a batch
capacity ``B``, the server has ramped up once ``B`` requests have received their first token, and it starts
to ramp down once ``N - B`` requests have: from then on only ``B`` requests are left, the queue is empty, and
the batch shrinks with every completion. The window runs from the ``B``-th to the ``(N - B)``-th first-token
arrival (counting successful first tokens in time order); it exists only when ``N - B > B``.

``B`` (:func:`saturation_batch`):
- closed loop: ``min(concurrency, max_num_seqs x replicas, N)``; all-at-once (concurrency >= N) is the
  ML.ENERGY setting;
- open loop (Poisson, gamma, trace): there is no saturation by construction, so ``B = ceil(N / 10)``: the
  window trims the first and last 10 % of first tokens (ramp-up and drain) around the stationary middle.

The same rule runs live (:class:`SteadyStateTracker`, which opens and closes the energy meter's window at
those events) and after the fact (:func:`steady_state_window`, from the per-request records).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recommender.serving.records import RequestResult


def saturation_batch(
    num_requests: int, concurrency: int | None, max_num_seqs: int | None, replicas: int = 1
) -> int:
    """Batch capacity ``B`` of the steady-state rule (see module docstring).

    Args:
        num_requests: requests in the run (``N``).
        concurrency: closed-loop concurrency, or None for an open-loop workload.
        max_num_seqs: the server's resolved batch cap per replica (None: unknown, no cap).
        replicas: number of servers sharing the load.
    """
    n = max(int(num_requests), 0)
    if concurrency is None:
        return max(1, math.ceil(n / 10))
    cap = min(int(concurrency), n)
    if max_num_seqs is not None:
        cap = min(cap, int(max_num_seqs) * max(1, replicas))
    return max(1, cap)


def steady_state_counts(num_requests: int, batch: int) -> tuple[int, int] | None:
    """First-token counts ``(begin, end) = (B, N - B)`` bounding the window, or None when ``N - B <= B``."""
    begin, end = int(batch), int(num_requests) - int(batch)
    return (begin, end) if end > begin >= 1 else None


class SteadyStateTracker:
    """Counts first tokens live and fires ``on_begin(t)`` / ``on_end(t)`` at the window's bounds.

    Args:
        counts: ``(begin, end)`` from :func:`steady_state_counts`, or None (the tracker never fires).
        on_begin: called once with the monotonic time of the ``begin``-th first token.
        on_end: called once with the time of the ``end``-th first token (after ``on_begin``).

    Not thread-safe: call :meth:`first_token` from the load generator's event loop only.
    """

    def __init__(
        self,
        counts: tuple[int, int] | None,
        on_begin: Callable[[float], None] | None = None,
        on_end: Callable[[float], None] | None = None,
    ) -> None:
        self.counts = counts
        self.on_begin = on_begin
        self.on_end = on_end
        self.seen = 0
        self.begin_s: float | None = None
        self.end_s: float | None = None

    def first_token(self, t_s: float) -> None:
        """Record one request's first token at monotonic time ``t_s``."""
        self.seen += 1
        if self.counts is None:
            return
        begin, end = self.counts
        if self.seen == begin and self.begin_s is None:
            self.begin_s = t_s
            if self.on_begin is not None:
                self.on_begin(t_s)
        if self.seen == end and self.begin_s is not None and self.end_s is None:
            self.end_s = t_s
            if self.on_end is not None:
                self.on_end(t_s)

    @property
    def window(self) -> tuple[float, float] | None:
        """``(begin_s, end_s)`` once both bounds were seen, else None."""
        if self.begin_s is None or self.end_s is None:
            return None
        return (self.begin_s, self.end_s)

    @property
    def open(self) -> bool:
        """True between ``on_begin`` and ``on_end``."""
        return self.begin_s is not None and self.end_s is None


def steady_state_window(results: Sequence[RequestResult], counts: tuple[int, int] | None) -> tuple[float, float] | None:
    """The window from per-request records: times of the ``begin``-th and ``end``-th first tokens.

    Only requests with a first token count (a failed request that streamed one still counts, as it did live).
    Returns None when ``counts`` is None or too few first tokens arrived.
    """
    if counts is None:
        return None
    times = sorted(r.first_token_s for r in results if r.first_token_s is not None)
    begin, end = counts
    if len(times) < end:
        return None
    return (times[begin - 1], times[end - 1])
