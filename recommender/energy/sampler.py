"""Background power/clock/thermal sampling of the GPUs a config occupies.

A :class:`PowerSampler` polls every ``interval_s`` (100 ms by default) in a daemon thread and keeps one
:class:`PowerSample` per GPU per poll. It serves two purposes: the energy fallback where the total-energy
counter is unsupported (trapezoid integration in :mod:`recommender.energy.meter`), and diagnosing why a config
behaves as it does (clock actually reached, power cap or thermal throttling).
"""

from __future__ import annotations

import csv
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from recommender.energy.nvml import NVMLDevice, decode_throttle_reasons
from recommender.errors import EnergyMeterError, InputError

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

CSV_COLUMNS = (
    "t_s",
    "gpu_index",
    "power_w",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "temperature_c",
    "throttle_reasons",
    "throttle_reason_names",
    "energy_mj",
)


@dataclass(frozen=True, slots=True)
class PowerSample:
    """One reading of one GPU. ``t_s`` is ``time.monotonic()``; a field NVML could not read is None."""

    t_s: float
    gpu_index: int
    power_w: float
    sm_clock_mhz: int | None
    mem_clock_mhz: int | None
    temperature_c: int | None
    throttle_reasons: int | None
    throttle_reason_names: tuple[str, ...]
    energy_mj: int | None


class PowerSampler:
    """Samples every GPU in ``gpu_indices`` every ``interval_s`` seconds in a daemon thread.

    Use as a context manager (or :meth:`start` / :meth:`stop`). :meth:`poll` takes one round of samples
    synchronously, which is what the thread does each tick. All methods are thread-safe; returned lists are
    fresh copies owned by the caller. A field that fails to read is logged once per GPU and field and left
    None; a sample whose power cannot be read is skipped. Sampling never raises from the thread.

    Args:
        gpu_indices: NVML indices of the GPUs to sample.
        interval_s: seconds between polls (NVML refreshes power about every 100 ms on recent GPUs).
        devices: already-opened devices, mainly for tests; opened from NVML when None.
        clock: monotonic time source in seconds.
    """

    def __init__(
        self,
        gpu_indices: Sequence[int],
        interval_s: float = 0.1,
        *,
        devices: Sequence[NVMLDevice] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0:
            raise InputError("interval_s", interval_s, "use a positive number of seconds, e.g. 0.1")
        self.gpu_indices = tuple(gpu_indices)
        self.interval_s = float(interval_s)
        self._devices = list(devices) if devices is not None else [NVMLDevice(i) for i in self.gpu_indices]
        self._clock = clock
        self._samples: list[PowerSample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._logged: set[tuple[int, str]] = set()

    # ---- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the sampling thread (no-op when already running)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="PowerSampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it; samples are kept. Idempotent."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(1.0, 5 * self.interval_s))
        self._thread = None

    @property
    def running(self) -> bool:
        """True while the sampling thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def __enter__(self) -> PowerSampler:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        next_t = self._clock()
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # never let the thread die silently mid-run
                logger.exception("power sampler poll failed; continuing")
            next_t += self.interval_s
            delay = next_t - self._clock()
            if delay < 0:  # fell behind (slow NVML): skip missed ticks rather than burst
                next_t = self._clock()
                delay = 0.0
            self._stop.wait(delay)

    # ---- sampling --------------------------------------------------------------------------------------
    def poll(self) -> list[PowerSample]:
        """Take one sample of every GPU now, store it, and return the new samples."""
        new = []
        for device in self._devices:
            power_mw = self._read(device, "power_w", device.power_usage_mw)
            if power_mw is None:
                continue
            reasons = self._read(device, "throttle_reasons", device.clock_event_reasons)
            new.append(
                PowerSample(
                    t_s=self._clock(),
                    gpu_index=device.index,
                    power_w=power_mw / 1000.0,
                    sm_clock_mhz=self._read(device, "sm_clock_mhz", device.sm_clock_mhz),
                    mem_clock_mhz=self._read(device, "mem_clock_mhz", device.mem_clock_mhz),
                    temperature_c=self._read(device, "temperature_c", device.temperature_c),
                    throttle_reasons=reasons,
                    throttle_reason_names=tuple(decode_throttle_reasons(reasons)) if reasons is not None else (),
                    energy_mj=self._read(device, "energy_mj", device.total_energy_mj),
                )
            )
        with self._lock:
            self._samples.extend(new)
        return new

    def _read(self, device: NVMLDevice, field: str, read: Callable[[], _T]) -> _T | None:
        try:
            return read()
        except EnergyMeterError as e:
            key = (device.index, field)
            if key not in self._logged:
                self._logged.add(key)
                logger.warning("power sampler: cannot read %s of GPU %d (logged once): %s", field, device.index, e)
            return None

    # ---- access ----------------------------------------------------------------------------------------
    def samples(self, gpu_index: int | None = None) -> list[PowerSample]:
        """All samples so far in time order (optionally of one GPU)."""
        with self._lock:
            return [s for s in self._samples if gpu_index is None or s.gpu_index == gpu_index]

    def samples_between(self, start_s: float, end_s: float, gpu_index: int | None = None) -> list[PowerSample]:
        """Samples with ``start_s <= t_s <= end_s`` (optionally of one GPU), in time order."""
        with self._lock:
            return [
                s
                for s in self._samples
                if start_s <= s.t_s <= end_s and (gpu_index is None or s.gpu_index == gpu_index)
            ]

    def discard_before(self, t_s: float) -> None:
        """Drop samples older than ``t_s`` (bounds memory on long runs)."""
        with self._lock:
            self._samples = [s for s in self._samples if s.t_s >= t_s]

    def clear(self) -> None:
        """Drop every sample."""
        with self._lock:
            self._samples = []

    def to_csv(self, path: str | Path) -> Path:
        """Write every sample to ``path`` as CSV (columns :data:`CSV_COLUMNS`, reason names ``|``-joined)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_COLUMNS)
            for s in self.samples():
                writer.writerow(
                    [
                        f"{s.t_s:.6f}",
                        s.gpu_index,
                        f"{s.power_w:.3f}",
                        s.sm_clock_mhz,
                        s.mem_clock_mhz,
                        s.temperature_c,
                        s.throttle_reasons,
                        "|".join(s.throttle_reason_names),
                        s.energy_mj,
                    ]
                )
        return path

    # ---- summaries -------------------------------------------------------------------------------------
    def mean_power_w(self, gpu_index: int | None = None) -> float | None:
        """Mean sampled power in W over the samples (of one GPU, or of all pooled); None without samples."""
        values = [s.power_w for s in self.samples(gpu_index)]
        return sum(values) / len(values) if values else None

    def mean_sm_clock_mhz(self, gpu_index: int | None = None) -> float | None:
        """Mean SM clock in MHz over samples that have one; None without any."""
        values = [s.sm_clock_mhz for s in self.samples(gpu_index) if s.sm_clock_mhz is not None]
        return sum(values) / len(values) if values else None

    def throttle_fractions(self, gpu_index: int | None = None) -> dict[str, float]:
        """Fraction of samples (with a readable reason mask) in which each reason was set; absent means 0."""
        with_reasons = [s for s in self.samples(gpu_index) if s.throttle_reasons is not None]
        if not with_reasons:
            return {}
        counts: dict[str, int] = {}
        for s in with_reasons:
            for name in s.throttle_reason_names:
                counts[name] = counts.get(name, 0) + 1
        return {name: n / len(with_reasons) for name, n in sorted(counts.items())}
