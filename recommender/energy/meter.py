"""Energy meters: named measurement windows over the GPUs a config occupies.

Contract shared by every :class:`EnergyMeter`:

* Units are in names: joules, seconds, watts. Times are ``time.monotonic()`` seconds.
* Windows are named and may overlap (``"whole_run"`` around ``"steady_state"``).
* Missing data is ``None``, never a number: a counter that went backwards, a window shorter than the
  counter's update period, or a host without NVML give ``energy_j=None`` and a ``status`` saying why.
* Idle power is measured separately by :meth:`EnergyMeter.measure_idle_power_w` and is never subtracted.
* The caller makes sure the work it wants counted has finished before ``end_window`` (for a vLLM server:
  every request has returned), since the meter cannot synchronize another process's GPU work.
* Meters are thread-safe; returned :class:`EnergyWindow` objects are immutable and owned by the caller.
"""

from __future__ import annotations

import abc
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, TypeVar

from recommender.energy.nvml import GPUReadError, NVMLDevice
from recommender.energy.sampler import PowerSample, PowerSampler
from recommender.errors import EnergyMeterError, InputError

logger = logging.getLogger(__name__)

_M = TypeVar("_M", bound="EnergyMeter")

Method = Literal["counter", "sampled_power", "none"]
Status = Literal["ok", "counter_reset", "too_short", "unsupported"]

#: NVML refreshes the total-energy counter about every 100 ms on Volta and newer GPUs; a shorter window
#: may see no update at all, so it reports ``too_short`` rather than a number.
DEFAULT_MIN_WINDOW_S = 0.1

NO_NVML_MESSAGE = (
    "no NVIDIA GPU/NVML on this host ({reason}); energy needs NVML (package nvidia-ml-py and an NVIDIA "
    "driver): run on a GPU machine or use --evaluator surrogate/replay"
)


@dataclass(frozen=True)
class EnergyWindow:
    """Energy of one named window, summed over the GPUs the config occupies.

    ``energy_j`` is None when there is no trustworthy number (see ``status`` and ``note``);
    ``per_gpu_energy_j`` maps NVML index to joules (None where that GPU has no data).
    """

    name: str
    start_s: float
    end_s: float
    duration_s: float
    energy_j: float | None
    per_gpu_energy_j: dict[int, float | None]
    avg_power_w: float | None
    method: Method
    status: Status
    note: str = ""

    def energy_per_output_token_j(self, output_tokens: int) -> float | None:
        """Joules per output token, or None without energy data or without output tokens."""
        if self.energy_j is None or output_tokens <= 0:
            return None
        return self.energy_j / output_tokens


@dataclass
class WindowHandle:
    """Filled in by :meth:`EnergyMeter.window` when its ``with`` block ends."""

    name: str
    result: EnergyWindow | None = None


class EnergyMeter(abc.ABC):
    """Measures energy of the GPUs in ``gpu_indices`` over named windows.

    Subclasses implement :meth:`begin_window`, :meth:`end_window` and :meth:`measure_idle_power_w`;
    :meth:`close` is a no-op hook. Conveniences (:meth:`window`, context management) are built on those.
    """

    gpu_indices: tuple[int, ...]

    @property
    def available(self) -> bool:
        """True when this meter can produce energy numbers on this host."""
        return True

    @abc.abstractmethod
    def begin_window(self, name: str) -> None:
        """Open the window ``name``. Raises InputError if a window of that name is already open."""

    @abc.abstractmethod
    def end_window(self, name: str) -> EnergyWindow:
        """Close the window ``name`` and return its energy. Raises InputError if it is not open."""

    @abc.abstractmethod
    def measure_idle_power_w(self, duration_s: float = 5.0) -> float:
        """Block ``duration_s`` seconds and return mean sampled power in W, summed over the GPUs.

        Call it while the GPUs are quiet (no server load). The value is reported alongside results; it is
        never subtracted from window energy.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (background threads). Idempotent."""

    @contextmanager
    def window(self, name: str) -> Iterator[WindowHandle]:
        """``with meter.window("run") as w: ...`` then ``w.result`` holds the :class:`EnergyWindow`.

        The window is ended also when the block raises, so no window is left open.
        """
        handle = WindowHandle(name)
        self.begin_window(name)
        try:
            yield handle
        finally:
            handle.result = self.end_window(name)

    def __enter__(self: _M) -> _M:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass
class _OpenWindow:
    start_s: float
    counters_mj: dict[int, int] = field(default_factory=dict)


def _integrate_w(samples: Sequence[PowerSample], start_s: float, end_s: float) -> float | None:
    """Trapezoid integral of power (J) over the samples inside the window, held flat to the window edges.

    Returns None with fewer than two samples: the window is too short for the sampling interval.
    """
    inside = [s for s in samples if start_s <= s.t_s <= end_s]
    if len(inside) < 2:
        return None
    energy = inside[0].power_w * (inside[0].t_s - start_s) + inside[-1].power_w * (end_s - inside[-1].t_s)
    for a, b in itertools.pairwise(inside):
        energy += 0.5 * (a.power_w + b.power_w) * (b.t_s - a.t_s)
    return energy


class NVMLEnergyMeter(EnergyMeter):
    """Energy from NVML's total-energy counter, summed over exactly ``gpu_indices``.

    Each GPU's counter (mJ) is read at both ends of a window and differenced. A GPU whose counter raises
    ``not_supported`` at the first read falls back to integrating power sampled every ``sampler_interval_s``
    (window ``method="sampled_power"``). A counter that goes backwards (driver reload, wrap) makes that GPU's
    energy None and the window ``status="counter_reset"`` with ``energy_j=None``. A window shorter than
    ``min_window_s`` is ``status="too_short"`` with ``energy_j=None`` and a logged warning.

    Args:
        gpu_indices: NVML indices of every GPU the config occupies (tensor/pipeline parallel ranks).
        min_window_s: shortest window trusted; NVML updates the counter about every 100 ms.
        sampler_interval_s: power sampling interval for the fallback and for idle power.
        sampler: an external sampler over the same GPUs to integrate from (not started/stopped here).
        devices: already-opened devices (tests); opened from NVML when None.
        clock: monotonic time source in seconds.
    """

    def __init__(
        self,
        gpu_indices: Sequence[int],
        *,
        min_window_s: float = DEFAULT_MIN_WINDOW_S,
        sampler_interval_s: float = 0.1,
        sampler: PowerSampler | None = None,
        devices: Sequence[NVMLDevice] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not gpu_indices:
            raise InputError("gpu_indices", list(gpu_indices), "name at least one GPU index, e.g. [0]")
        if len(set(gpu_indices)) != len(gpu_indices):
            raise InputError("gpu_indices", list(gpu_indices), "list each GPU index once")
        self.gpu_indices = tuple(gpu_indices)
        self.min_window_s = float(min_window_s)
        self.sampler_interval_s = float(sampler_interval_s)
        self._devices = list(devices) if devices is not None else [NVMLDevice(i) for i in self.gpu_indices]
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[str, _OpenWindow] = {}
        self._external_sampler = sampler is not None
        self._sampler = sampler
        self.counter_gpus: tuple[int, ...] = ()
        self.sampled_gpus: tuple[int, ...] = ()
        self._probe_counters()

    def _probe_counters(self) -> None:
        counter, sampled = [], []
        for device in self._devices:
            try:
                device.total_energy_mj()
                counter.append(device.index)
            except GPUReadError as e:
                if e.reason != "not_supported":
                    raise
                logger.warning("GPU %d has no energy counter; integrating sampled power instead", device.index)
                sampled.append(device.index)
        self.counter_gpus, self.sampled_gpus = tuple(counter), tuple(sampled)

    def _ensure_sampler(self) -> PowerSampler:
        if self._sampler is None:
            devices = [d for d in self._devices if d.index in self.sampled_gpus]
            self._sampler = PowerSampler(self.sampled_gpus, self.sampler_interval_s, devices=devices, clock=self._clock)
        if not self._external_sampler:
            self._sampler.start()
        return self._sampler

    def begin_window(self, name: str) -> None:
        with self._lock:
            if name in self._open:
                raise InputError("window", name, "end the open window of that name first, or use another name")
            if self.sampled_gpus:
                self._ensure_sampler()
            window = _OpenWindow(start_s=self._clock())
            for device in self._devices:
                if device.index in self.counter_gpus:
                    window.counters_mj[device.index] = device.total_energy_mj()
            self._open[name] = window

    def end_window(self, name: str) -> EnergyWindow:
        with self._lock:
            window = self._open.pop(name, None)
            if window is None:
                raise InputError("window", name, f"begin it first; open windows: {sorted(self._open)}")
            end_mj = {d.index: d.total_energy_mj() for d in self._devices if d.index in self.counter_gpus}
            end_s = self._clock()
            if self._sampler is not None and not self._external_sampler:
                earliest = min((w.start_s for w in self._open.values()), default=end_s)
                self._sampler.discard_before(earliest - 2 * self.sampler_interval_s)
            return self._finish(name, window, end_s, end_mj)

    def _finish(self, name: str, window: _OpenWindow, end_s: float, end_mj: dict[int, int]) -> EnergyWindow:
        duration = end_s - window.start_s
        method: Method = "sampled_power" if self.sampled_gpus else "counter"
        per_gpu: dict[int, float | None] = dict.fromkeys(self.gpu_indices)

        def result(status: Status, note: str) -> EnergyWindow:
            energies = list(per_gpu.values())
            total = None if status != "ok" or None in energies else sum(e for e in energies if e is not None)
            avg = total / duration if total is not None and duration > 0 else None
            return EnergyWindow(name, window.start_s, end_s, duration, total, per_gpu, avg, method, status, note)

        if duration < self.min_window_s:
            logger.warning(
                "energy window %r lasted %.3f s, shorter than the %.3f s counter update period: no energy reported",
                name, duration, self.min_window_s,
            )  # fmt: skip
            return result("too_short", f"window {duration:.3f} s < {self.min_window_s:.3f} s counter update period")

        reset = []
        for index in self.counter_gpus:
            delta_mj = end_mj[index] - window.counters_mj[index]
            if delta_mj < 0:
                reset.append(index)
            else:
                per_gpu[index] = delta_mj / 1000.0
        short = []
        for index in self.sampled_gpus:
            samples = self._sampler.samples_between(window.start_s, end_s, index) if self._sampler else []
            energy = _integrate_w(samples, window.start_s, end_s)
            per_gpu[index] = energy
            if energy is None:
                short.append(index)
        notes = []
        if self.sampled_gpus:
            notes.append(f"integrated sampled power on GPUs {list(self.sampled_gpus)} (no energy counter)")
        if reset:
            logger.warning("energy counter went backwards on GPUs %s in window %r: no energy reported", reset, name)
            return result("counter_reset", "; ".join([f"energy counter went backwards on GPUs {reset}", *notes]))
        if short:
            logger.warning("fewer than two power samples on GPUs %s in window %r: no energy reported", short, name)
            return result("too_short", "; ".join([f"fewer than two power samples on GPUs {short}", *notes]))
        return result("ok", "; ".join(notes))

    def measure_idle_power_w(self, duration_s: float = 5.0) -> float:
        if duration_s <= 0:
            raise InputError("duration_s", duration_s, "use a positive number of seconds, e.g. 5.0")
        sampler = PowerSampler(self.gpu_indices, self.sampler_interval_s, devices=self._devices)
        with sampler:
            time.sleep(duration_s)
        total = 0.0
        for index in self.gpu_indices:
            mean = sampler.mean_power_w(index)
            if mean is None:
                raise EnergyMeterError(f"no power sample of GPU {index} in {duration_s} s: cannot measure idle power")
            total += mean
        logger.info("idle power over %.1f s on GPUs %s: %.1f W", duration_s, list(self.gpu_indices), total)
        return total

    def close(self) -> None:
        if self._sampler is not None and not self._external_sampler:
            self._sampler.stop()


class NullMeter(EnergyMeter):
    """The meter for hosts without NVML: ``available`` is False and no number is ever made up.

    Contract: with ``strict=True`` (the default) every energy request (:meth:`begin_window`,
    :meth:`end_window`, :meth:`measure_idle_power_w`) raises :class:`EnergyMeterError` with
    :data:`NO_NVML_MESSAGE`. With ``strict=False`` windows still time the run and return
    ``method="none"``, ``status="unsupported"``, ``energy_j=None``; idle power still raises, since it is a
    number that cannot be None.
    """

    def __init__(
        self,
        gpu_indices: Sequence[int] = (),
        *,
        reason: str = "NVML not available",
        strict: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gpu_indices = tuple(gpu_indices)
        self.strict = strict
        self.message = NO_NVML_MESSAGE.format(reason=reason)
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[str, float] = {}

    @property
    def available(self) -> bool:
        return False

    def begin_window(self, name: str) -> None:
        if self.strict:
            raise EnergyMeterError(self.message)
        with self._lock:
            if name in self._open:
                raise InputError("window", name, "end the open window of that name first, or use another name")
            self._open[name] = self._clock()

    def end_window(self, name: str) -> EnergyWindow:
        if self.strict:
            raise EnergyMeterError(self.message)
        with self._lock:
            start_s = self._open.pop(name, None)
            if start_s is None:
                raise InputError("window", name, f"begin it first; open windows: {sorted(self._open)}")
        end_s = self._clock()
        per_gpu: dict[int, float | None] = dict.fromkeys(self.gpu_indices)
        return EnergyWindow(
            name, start_s, end_s, end_s - start_s, None, per_gpu, None, "none", "unsupported", self.message
        )

    def measure_idle_power_w(self, duration_s: float = 5.0) -> float:
        raise EnergyMeterError(self.message)
