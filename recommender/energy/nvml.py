"""The vendor boundary: the only module in the code base that imports ``pynvml``.

``pynvml`` must come from NVIDIA's official distribution ``nvidia-ml-py``. The unofficial ``pynvml``
distribution (old versions ship their own ``pynvml`` package that shadows NVIDIA's module) is refused with a
clear :class:`~recommender.errors.EnergyMeterError`, as Zeus does.

The module is imported lazily by :func:`_load_pynvml`, so the package imports on CPU-only hosts; tests
monkeypatch ``_load_pynvml`` to return a fake module (see ``tests/unit/fake_nvml.py``).

GPU indices are NVML indices (the order ``nvidia-smi`` shows). They differ from CUDA indices when
``CUDA_VISIBLE_DEVICES`` or ``CUDA_DEVICE_ORDER`` reorder devices; callers pass NVML indices.

Every NVML call on a device goes through :func:`_nvml_errors`, which maps ``pynvml.NVMLError`` to
:class:`GPUReadError` (an :class:`EnergyMeterError`) for measurement reads, or to :class:`GPUControlError`
(an :class:`ActuatorError`) for clock and power-limit queries and changes, with ``raise ... from e``.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar

from recommender.errors import ActuatorError, EnergyMeterError

logger = logging.getLogger(__name__)

NVMLReason = Literal[
    "uninitialized",
    "invalid_argument",
    "not_supported",
    "no_permission",
    "not_found",
    "driver_not_loaded",
    "library_not_found",
    "function_not_found",
    "gpu_lost",
    "timeout",
    "unknown",
]

# NVML constant name -> our reason; resolved against the loaded module so the fake and the real one agree.
_ERROR_CONSTANTS: dict[str, NVMLReason] = {
    "NVML_ERROR_UNINITIALIZED": "uninitialized",
    "NVML_ERROR_INVALID_ARGUMENT": "invalid_argument",
    "NVML_ERROR_NOT_SUPPORTED": "not_supported",
    "NVML_ERROR_NO_PERMISSION": "no_permission",
    "NVML_ERROR_NOT_FOUND": "not_found",
    "NVML_ERROR_DRIVER_NOT_LOADED": "driver_not_loaded",
    "NVML_ERROR_LIBRARY_NOT_FOUND": "library_not_found",
    "NVML_ERROR_FUNCTION_NOT_FOUND": "function_not_found",
    "NVML_ERROR_GPU_IS_LOST": "gpu_lost",
    "NVML_ERROR_TIMEOUT": "timeout",
    "NVML_ERROR_UNKNOWN": "unknown",
}

_HINTS: dict[NVMLReason, str] = {
    "not_supported": "this GPU or driver does not support it",
    "no_permission": "it needs root (or CAP_SYS_ADMIN): run as root, or leave GPU control off",
    "driver_not_loaded": "the NVIDIA driver is not loaded: check `nvidia-smi`",
    "library_not_found": "libnvidia-ml.so was not found: install the NVIDIA driver",
    "gpu_lost": "the GPU fell off the bus: check `nvidia-smi` and the kernel log",
    "function_not_found": "the driver is too old for this call: upgrade the NVIDIA driver",
}

# Clock event ("throttle") reason bits, from nvml.h (nvmlClocksEventReason*); stable across driver versions.
THROTTLE_REASON_BITS: dict[int, str] = {
    0x001: "gpu_idle",
    0x002: "applications_clocks_setting",
    0x004: "sw_power_cap",
    0x008: "hw_slowdown",
    0x010: "sync_boost",
    0x020: "sw_thermal",
    0x040: "hw_thermal",
    0x080: "hw_power_brake",
    0x100: "display_clock_setting",
}

_INSTALL_HINT = "install NVIDIA's official bindings with `pip install nvidia-ml-py`"


class NVMLUnavailableError(EnergyMeterError):
    """NVML cannot be used on this host: bindings not installed, no driver, or no GPU."""


class GPUReadError(EnergyMeterError):
    """An NVML read used for measurement failed. ``reason`` names the NVML error (e.g. ``"not_supported"``)."""

    def __init__(self, message: str, reason: NVMLReason) -> None:
        self.reason: NVMLReason = reason
        super().__init__(message)


class GPUControlError(ActuatorError):
    """An NVML clock/power-limit query or change failed. ``reason`` names the NVML error."""

    def __init__(self, message: str, reason: NVMLReason) -> None:
        self.reason: NVMLReason = reason
        super().__init__(message)


def decode_throttle_reasons(mask: int) -> list[str]:
    """Names of the clock event reasons set in ``mask``, in bit order; unknown bits are named ``bit_0x...``."""
    names = [name for bit, name in THROTTLE_REASON_BITS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_REASON_BITS)
    bit = 1
    while unknown >= bit:
        if unknown & bit:
            names.append(f"bit_{bit:#x}")
        bit <<= 1
    return names


def _official_module_file() -> Path | None:
    """Where the ``nvidia-ml-py`` distribution installed ``pynvml.py``, or None if it is not installed."""
    try:
        dist = importlib.metadata.distribution("nvidia-ml-py")
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if str(file) == "pynvml.py":
            return Path(str(dist.locate_file(file))).resolve()
    return None


def _check_official(module: Any) -> None:
    """Refuse a ``pynvml`` module that is not NVIDIA's ``nvidia-ml-py``.

    Raises:
        EnergyMeterError: ``nvidia-ml-py`` is not installed, or the imported ``pynvml`` is another file.
    """
    official = _official_module_file()
    loaded = Path(getattr(module, "__file__", "") or "").resolve()
    if official is None or loaded != official or not hasattr(module, "_nvmlGetFunctionPointer"):
        logger.error("unofficial pynvml package detected at %s", loaded)
        raise EnergyMeterError(
            f"unofficial `pynvml` package detected (imported from {loaded}); it conflicts with NVIDIA's "
            f"official bindings. Remove it with `pip uninstall pynvml` and {_INSTALL_HINT}"
        )


def _load_pynvml() -> Any:
    """Import and vet ``pynvml``. Tests monkeypatch this function to return a fake module.

    Raises:
        NVMLUnavailableError: the bindings are not installed.
        EnergyMeterError: the unofficial ``pynvml`` package is installed.
    """
    try:
        import pynvml  # lazy on purpose: the package must import on CPU-only hosts
    except ImportError as e:
        raise NVMLUnavailableError(f"cannot import pynvml: {_INSTALL_HINT}") from e
    _check_official(pynvml)
    return pynvml


_lock = threading.Lock()
_module: Any = None


def load_nvml() -> Any:
    """Return the initialized ``pynvml`` module, initializing NVML once per process (thread-safe).

    Raises:
        NVMLUnavailableError: no bindings, no driver or no GPU here (``nvmlInit`` failed).
        EnergyMeterError: the unofficial ``pynvml`` package is installed.
    """
    global _module
    with _lock:
        if _module is not None:
            return _module
        module = _load_pynvml()
        try:
            module.nvmlInit()
        except module.NVMLError as e:
            raise NVMLUnavailableError(f"NVML could not initialize: {e}") from e
        logger.debug("NVML initialized")
        _module = module
        return module


def _reset_cache() -> None:
    """Forget the loaded module so the next :func:`load_nvml` loads again (tests only)."""
    global _module
    with _lock:
        _module = None


def nvml_available() -> bool:
    """True when NVML initializes here. The unofficial ``pynvml`` package still raises EnergyMeterError."""
    try:
        load_nvml()
    except NVMLUnavailableError as e:
        logger.debug("NVML unavailable: %s", e)
        return False
    return True


def _reason(nvml: Any, error: BaseException) -> NVMLReason:
    code = getattr(error, "value", None)
    for name, reason in _ERROR_CONSTANTS.items():
        if code is not None and getattr(nvml, name, object()) == code:
            return reason
    return "unknown"


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_P = ParamSpec("_P")
_R = TypeVar("_R")
_Method = Callable[Concatenate["NVMLDevice", _P], _R]


def _nvml_errors(
    family: type[GPUReadError | GPUControlError],
) -> Callable[[_Method[_P, _R]], _Method[_P, _R]]:
    """Decorate an :class:`NVMLDevice` method so ``pynvml.NVMLError`` becomes ``family`` (``raise ... from e``)."""

    def decorate(method: _Method[_P, _R]) -> _Method[_P, _R]:
        @functools.wraps(method)
        def wrapper(self: NVMLDevice, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return method(self, *args, **kwargs)
            except self._nvml.NVMLError as e:
                reason = _reason(self._nvml, e)
                hint = _HINTS.get(reason)
                message = f"GPU {self.index}: {method.__name__} failed: NVML {reason} ({e})"
                raise family(message + (f"; {hint}" if hint else ""), reason) from e

        return wrapper

    return decorate


class NVMLDevice:
    """One GPU, addressed by NVML index. A thin wrapper: no caching, no unit conversion beyond names.

    Thread-safety: NVML calls are thread-safe; this object holds only the index and handle.

    Raises:
        GPUReadError: from measurement reads. GPUControlError: from clock / power-limit calls.
    """

    def __init__(self, index: int, nvml: Any = None) -> None:
        self._nvml = nvml if nvml is not None else load_nvml()
        self.index = index
        self._handle = self._get_handle()

    @_nvml_errors(GPUReadError)
    def _get_handle(self) -> Any:
        return self._nvml.nvmlDeviceGetHandleByIndex(self.index)

    @_nvml_errors(GPUReadError)
    def name(self) -> str:
        """Product name, e.g. ``"NVIDIA H100 80GB HBM3"``."""
        return _text(self._nvml.nvmlDeviceGetName(self._handle))

    @_nvml_errors(GPUReadError)
    def uuid(self) -> str:
        """The GPU's UUID (``"GPU-..."``)."""
        return _text(self._nvml.nvmlDeviceGetUUID(self._handle))

    @_nvml_errors(GPUReadError)
    def memory_total_bytes(self) -> int:
        """Total device memory in bytes."""
        return int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).total)

    @_nvml_errors(GPUReadError)
    def total_energy_mj(self) -> int:
        """Energy since the driver loaded, in mJ (Volta and newer; ``not_supported`` before)."""
        return int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))

    @_nvml_errors(GPUReadError)
    def power_usage_mw(self) -> int:
        """Power draw in mW as NVML reports it (averaged over about a second on recent GPUs)."""
        return int(self._nvml.nvmlDeviceGetPowerUsage(self._handle))

    @_nvml_errors(GPUReadError)
    def sm_clock_mhz(self) -> int:
        """Current SM clock in MHz."""
        return int(self._nvml.nvmlDeviceGetClockInfo(self._handle, self._nvml.NVML_CLOCK_SM))

    @_nvml_errors(GPUReadError)
    def mem_clock_mhz(self) -> int:
        """Current memory clock in MHz."""
        return int(self._nvml.nvmlDeviceGetClockInfo(self._handle, self._nvml.NVML_CLOCK_MEM))

    @_nvml_errors(GPUReadError)
    def temperature_c(self) -> int:
        """GPU core temperature in degrees Celsius."""
        return int(self._nvml.nvmlDeviceGetTemperature(self._handle, self._nvml.NVML_TEMPERATURE_GPU))

    @_nvml_errors(GPUReadError)
    def clock_event_reasons(self) -> int:
        """Bitmask of current clock event (throttle) reasons; decode with :func:`decode_throttle_reasons`."""
        read = getattr(self._nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        if read is None:  # bindings older than the 535 rename
            read = self._nvml.nvmlDeviceGetCurrentClocksThrottleReasons
        return int(read(self._handle))

    @_nvml_errors(GPUControlError)
    def power_limit_constraints_mw(self) -> tuple[int, int]:
        """``(min, max)`` settable power limit in mW."""
        low, high = self._nvml.nvmlDeviceGetPowerManagementLimitConstraints(self._handle)
        return int(low), int(high)

    @_nvml_errors(GPUControlError)
    def power_limit_mw(self) -> int:
        """Current power management limit in mW."""
        return int(self._nvml.nvmlDeviceGetPowerManagementLimit(self._handle))

    @_nvml_errors(GPUControlError)
    def set_power_limit_mw(self, limit_mw: int) -> None:
        """Set the power management limit in mW (needs root)."""
        self._nvml.nvmlDeviceSetPowerManagementLimit(self._handle, int(limit_mw))

    @_nvml_errors(GPUControlError)
    def supported_graphics_clocks_mhz(self, memory_clock_mhz: int | None = None) -> list[int]:
        """Supported graphics clocks in MHz, ascending, at ``memory_clock_mhz`` (default: the highest one)."""
        if memory_clock_mhz is None:
            memory_clock_mhz = max(self._nvml.nvmlDeviceGetSupportedMemoryClocks(self._handle))
        return sorted(int(c) for c in self._nvml.nvmlDeviceGetSupportedGraphicsClocks(self._handle, memory_clock_mhz))

    @_nvml_errors(GPUControlError)
    def set_locked_clocks_mhz(self, min_mhz: int, max_mhz: int) -> None:
        """Lock the GPU (SM) clock into ``[min_mhz, max_mhz]`` (needs root)."""
        self._nvml.nvmlDeviceSetGpuLockedClocks(self._handle, int(min_mhz), int(max_mhz))

    @_nvml_errors(GPUControlError)
    def reset_locked_clocks(self) -> None:
        """Unlock the GPU clock (driver default). NVML cannot read a locked range, so this is the only undo."""
        self._nvml.nvmlDeviceResetGpuLockedClocks(self._handle)


def device_count() -> int:
    """Number of GPUs NVML sees. Raises NVMLUnavailableError without NVML."""
    nvml = load_nvml()
    try:
        return int(nvml.nvmlDeviceGetCount())
    except nvml.NVMLError as e:
        raise NVMLUnavailableError(f"NVML could not count GPUs: {e}") from e


def gpu_inventory() -> list[dict[str, Any]]:
    """Describe every GPU: index, name, uuid, memory_total_bytes, driver_version, nvml_version.

    Returns an empty list on hosts without NVML. Raises EnergyMeterError for the unofficial ``pynvml``.
    """
    if not nvml_available():
        return []
    nvml = load_nvml()
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        version = _text(nvml.nvmlSystemGetNVMLVersion())
    except nvml.NVMLError as e:
        raise GPUReadError(f"cannot read the NVML/driver version: {e}", _reason(nvml, e)) from e
    inventory = []
    for index in range(device_count()):
        device = NVMLDevice(index, nvml)
        inventory.append(
            {
                "index": index,
                "name": device.name(),
                "uuid": device.uuid(),
                "memory_total_bytes": device.memory_total_bytes(),
                "driver_version": driver,
                "nvml_version": version,
            }
        )
    return inventory
