"""Lock the SM clock and set the power limit for a run, and always put them back.

Changing clocks or power limits affects every process on the GPU and needs root, so it is off unless the
operator opts in with ``enabled=True``; on shared machines it must stay off.

Restore happens on every path out: normal exit, an exception, SIGINT and SIGTERM (handlers installed in the
main thread restore, then chain to the previous handler, or re-deliver the signal with the default action),
and ``atexit`` as a last resort (which does not run on SIGKILL). Restoring is idempotent.

What "restore" means: the power limit goes back to the value read on entry. NVML cannot read a locked clock
range, so clocks are restored with ``nvmlDeviceResetGpuLockedClocks`` (driver default, unlocked); a lock the
operator had set before entry is not re-applied.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from types import FrameType, TracebackType
from typing import Any

from recommender.energy.nvml import NVMLDevice, load_nvml
from recommender.errors import ActuatorError, EnergyMeterError, InputError

logger = logging.getLogger(__name__)

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class _Undo:
    gpu_index: int
    what: str
    run: Callable[[], None]


class GPUActuator:
    """Context manager that applies ``sm_clock_mhz`` / ``power_limit_w`` to ``gpu_indices`` and restores them.

    On entry it first checks support, ranges and the current state of every GPU (nothing is changed if any
    check fails), then applies. If applying fails part-way (e.g. no permission), what was applied is
    restored before the error is raised.

    Args:
        gpu_indices: NVML indices of the GPUs to change.
        sm_clock_mhz: lock the SM clock to this value (min = max), or None to leave clocks alone.
        power_limit_w: power limit in W, or None to leave it alone.
        enabled: the operator's explicit opt-in; without it a requested change raises ActuatorError.
        handle_signals: install SIGINT/SIGTERM handlers while active (main thread only).

    Raises:
        ActuatorError: control is not enabled, unsupported, not permitted, or restoring failed.
        InputError: a requested value is outside what the GPU supports (``gpu_clock_mhz``/``power_limit_w``).
    """

    def __init__(
        self,
        gpu_indices: Sequence[int],
        sm_clock_mhz: int | None = None,
        power_limit_w: float | None = None,
        enabled: bool = False,
        *,
        handle_signals: bool = True,
    ) -> None:
        if sm_clock_mhz is not None and sm_clock_mhz <= 0:
            raise InputError("gpu_clock_mhz", sm_clock_mhz, "use a positive clock in MHz, or None to leave it")
        if power_limit_w is not None and power_limit_w <= 0:
            raise InputError("power_limit_w", power_limit_w, "use a positive limit in W, or None to leave it")
        self.gpu_indices = tuple(gpu_indices)
        self.sm_clock_mhz = sm_clock_mhz
        self.power_limit_w = power_limit_w
        self.enabled = enabled
        self.handle_signals = handle_signals
        self.previous_power_limit_w: dict[int, float] = {}
        self._undo: list[_Undo] = []
        self._lock = threading.RLock()  # re-entrant: a signal handler may interrupt a restore in progress
        self._previous_handlers: dict[int, Any] = {}
        self._atexit_registered = False
        self._entered = False

    @property
    def requested(self) -> bool:
        """True when a clock or power-limit change was asked for."""
        return self.sm_clock_mhz is not None or self.power_limit_w is not None

    @property
    def active(self) -> bool:
        """True while some change is applied and not yet restored."""
        return bool(self._undo)

    # ---- enter -----------------------------------------------------------------------------------------
    def __enter__(self) -> GPUActuator:
        if self._entered:
            raise ActuatorError("this GPUActuator is already active; create one per `with` block")
        if not self.requested:
            return self
        if not self.enabled:
            raise ActuatorError(
                f"GPU control is off: sm_clock_mhz={self.sm_clock_mhz}, power_limit_w={self.power_limit_w} were "
                f"requested for GPUs {list(self.gpu_indices)}. Changing clocks or power limits affects every "
                "process on those GPUs and needs root; the operator must opt in explicitly "
                "(GPUActuator(..., enabled=True)), and on shared machines it must stay off"
            )
        devices = self._check()
        self._entered = True
        self._install_guards()
        try:
            for device in devices:
                self._apply(device)
        except ActuatorError as e:
            try:
                self.restore()
            except ActuatorError as restore_error:
                self._remove_guards()
                self._entered = False
                raise ActuatorError(f"{e}; restoring the GPUs changed so far also failed: {restore_error}") from e
            self._remove_guards()
            self._entered = False
            raise
        return self

    def _check(self) -> list[NVMLDevice]:
        """Read support, ranges and current state of every GPU; validate; change nothing."""
        try:
            nvml = load_nvml()
            devices = [NVMLDevice(i, nvml) for i in self.gpu_indices]
        except EnergyMeterError as e:
            raise ActuatorError(f"cannot change GPU clocks or power limits: {e}") from e
        for device in devices:
            if self.sm_clock_mhz is not None:
                clocks = device.supported_graphics_clocks_mhz()
                if not clocks:
                    raise ActuatorError(f"GPU {device.index} reports no supported graphics clocks: cannot lock them")
                if not clocks[0] <= self.sm_clock_mhz <= clocks[-1]:
                    raise InputError(
                        "gpu_clock_mhz",
                        self.sm_clock_mhz,
                        f"GPU {device.index} supports {clocks[0]}..{clocks[-1]} MHz",
                    )
            if self.power_limit_w is not None:
                low_mw, high_mw = device.power_limit_constraints_mw()
                if not low_mw <= self.power_limit_w * 1000 <= high_mw:
                    raise InputError(
                        "power_limit_w",
                        self.power_limit_w,
                        f"GPU {device.index} allows {low_mw / 1000:g}..{high_mw / 1000:g} W",
                    )
                self.previous_power_limit_w[device.index] = device.power_limit_mw() / 1000
        return devices

    def _apply(self, device: NVMLDevice) -> None:
        # Each undo is registered before its change, so a signal arriving mid-change still restores it.
        if self.power_limit_w is not None:
            previous_mw = round(self.previous_power_limit_w[device.index] * 1000)
            with self._lock:
                self._undo.append(_Undo(device.index, "power limit", partial(device.set_power_limit_mw, previous_mw)))
            device.set_power_limit_mw(round(self.power_limit_w * 1000))
            logger.info(
                "GPU %d: power limit %g W -> %g W",
                device.index, self.previous_power_limit_w[device.index], self.power_limit_w,
            )  # fmt: skip
        if self.sm_clock_mhz is not None:
            with self._lock:
                self._undo.append(_Undo(device.index, "locked clocks", device.reset_locked_clocks))
            device.set_locked_clocks_mhz(self.sm_clock_mhz, self.sm_clock_mhz)
            logger.info("GPU %d: SM clock locked at %d MHz", device.index, self.sm_clock_mhz)

    # ---- restore ---------------------------------------------------------------------------------------
    def restore(self) -> None:
        """Undo every applied change, newest first, trying every GPU even after a failure. Idempotent.

        Raises:
            ActuatorError: some change could not be undone (each failure is logged at ERROR first).
        """
        with self._lock:
            failures = []
            for undo in reversed(list(self._undo)):
                try:
                    undo.run()
                except Exception as e:  # noqa: BLE001 - keep going: every GPU must get its chance
                    failures.append(f"GPU {undo.gpu_index} {undo.what}: {e}")
                    logger.error("FAILED to restore %s of GPU %d: %s", undo.what, undo.gpu_index, e)
                    continue
                if undo in self._undo:
                    self._undo.remove(undo)
                logger.info("GPU %d: %s restored", undo.gpu_index, undo.what)
            if failures:
                logger.critical(
                    "GPU settings were NOT fully restored; fix by hand (nvidia-smi -rgc / nvidia-smi -pl): %s",
                    "; ".join(failures),
                )
                raise ActuatorError("could not restore GPU settings: " + "; ".join(failures))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.restore()
        finally:
            self._remove_guards()
            self._entered = False

    # ---- guards: signals and atexit --------------------------------------------------------------------
    def _install_guards(self) -> None:
        atexit.register(self._restore_at_exit)
        self._atexit_registered = True
        if not self.handle_signals:
            return
        if threading.current_thread() is not threading.main_thread():
            logger.warning("GPUActuator entered outside the main thread: no signal handlers, atexit only")
            return
        for signum in _SIGNALS:
            self._previous_handlers[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)

    def _remove_guards(self) -> None:
        if self._atexit_registered:
            atexit.unregister(self._restore_at_exit)
            self._atexit_registered = False
        for signum, previous in list(self._previous_handlers.items()):
            if signal.getsignal(signum) == self._on_signal:
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
            else:
                logger.debug("signal %d handler was replaced while active; leaving it", signum)
            del self._previous_handlers[signum]

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        logger.warning("received %s: restoring GPU settings", signal.Signals(signum).name)
        with contextlib.suppress(ActuatorError):  # already logged loudly; the signal must still take effect
            self.restore()
        previous = self._previous_handlers.get(signum, signal.SIG_DFL)
        self._remove_guards()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_IGN:
            return
        else:  # SIG_DFL (or a handler not set from Python): die of the same signal
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def _restore_at_exit(self) -> None:
        with contextlib.suppress(ActuatorError):  # already logged loudly; nothing more to do at exit
            self.restore()
