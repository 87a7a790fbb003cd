"""A scriptable stand-in for the ``pynvml`` module, for tests on hosts without a GPU.

``FakeNVML`` has the ``pynvml`` functions, error classes and constants that ``recommender.energy.nvml``
uses, with the same names and argument order (checked against the real module in
``tests/unit/test_energy_nvml.py``). Its state is plain data you edit between calls::

    fake = FakeNVML(gpus=2)
    fake.install(monkeypatch)           # recommender.energy.nvml._load_pynvml now returns fake
    fake.gpus[0].energy_mj += 5_000     # +5 J on GPU 0
    fake.fail("nvmlDeviceGetTotalEnergyConsumption", fake.NVML_ERROR_NOT_SUPPORTED, gpu=1)

With ``state_path`` every change made *through NVML calls* (power limit, locked clocks) is written to a JSON
file, so a parent process can check what a subprocess left behind: ``FakeNVML.load(path).gpus[0]``.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# ---- errors, shaped like pynvml's: NVMLError(code) returns the subclass for that code ------------------
NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_UNKNOWN = 999

_ERROR_TEXT = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_TIMEOUT: "Timeout",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    """``NVMLError(code)`` builds the matching subclass and sets ``.value``, as pynvml does."""

    _by_code: dict[int, type[NVMLError]] = {}
    value: int

    def __new__(cls, value: int) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._by_code.get(value, NVMLError)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __init__(self, value: int) -> None:
        super().__init__(value)

    def __str__(self) -> str:
        return _ERROR_TEXT.get(self.value, f"NVML error {self.value}")


def _error_class(name: str, code: int) -> type[NVMLError]:
    cls = type(f"NVMLError_{name}", (NVMLError,), {})
    NVMLError._by_code[code] = cls
    return cls


NVMLError_Uninitialized = _error_class("Uninitialized", NVML_ERROR_UNINITIALIZED)
NVMLError_InvalidArgument = _error_class("InvalidArgument", NVML_ERROR_INVALID_ARGUMENT)
NVMLError_NotSupported = _error_class("NotSupported", NVML_ERROR_NOT_SUPPORTED)
NVMLError_NoPermission = _error_class("NoPermission", NVML_ERROR_NO_PERMISSION)
NVMLError_NotFound = _error_class("NotFound", NVML_ERROR_NOT_FOUND)
NVMLError_DriverNotLoaded = _error_class("DriverNotLoaded", NVML_ERROR_DRIVER_NOT_LOADED)
NVMLError_LibraryNotFound = _error_class("LibraryNotFound", NVML_ERROR_LIBRARY_NOT_FOUND)
NVMLError_FunctionNotFound = _error_class("FunctionNotFound", NVML_ERROR_FUNCTION_NOT_FOUND)
NVMLError_GpuIsLost = _error_class("GpuIsLost", NVML_ERROR_GPU_IS_LOST)
NVMLError_Timeout = _error_class("Timeout", NVML_ERROR_TIMEOUT)
NVMLError_Unknown = _error_class("Unknown", NVML_ERROR_UNKNOWN)


@dataclass
class FakeGPU:
    """State of one fake GPU; units as NVML reports them (mW, mJ, MHz, degrees C)."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    memory_total_bytes: int = 80 * 1024**3
    energy_mj: int = 1_000_000
    power_mw: int = 100_000
    sm_clock_mhz: int = 1980
    mem_clock_mhz: int = 2619
    temperature_c: int = 40
    throttle_reasons: int = 0
    power_limit_mw: int = 700_000
    default_power_limit_mw: int = 700_000
    power_limit_min_mw: int = 200_000
    power_limit_max_mw: int = 700_000
    supported_mem_clocks_mhz: list[int] = field(default_factory=lambda: [2619])
    supported_graphics_clocks_mhz: list[int] = field(default_factory=lambda: list(range(345, 1981, 15)))
    locked_clocks_mhz: list[int] | None = None  # [min, max] while locked


@dataclass(frozen=True)
class FakeHandle:
    index: int


class FakeNVML:
    """The fake module object. Attributes mirror pynvml; ``gpus`` holds the scriptable state.

    Args:
        gpus: number of default GPUs, or a list of :class:`FakeGPU`.
        state_path: JSON file to persist state to after each NVML-side change (and on :meth:`save`).
        init_error: NVML code ``nvmlInit`` raises (e.g. ``NVML_ERROR_DRIVER_NOT_LOADED`` for a CPU host).
    """

    NVMLError = NVMLError
    NVMLError_Uninitialized = NVMLError_Uninitialized
    NVMLError_InvalidArgument = NVMLError_InvalidArgument
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_NoPermission = NVMLError_NoPermission
    NVMLError_NotFound = NVMLError_NotFound
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_FunctionNotFound = NVMLError_FunctionNotFound
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVMLError_Timeout = NVMLError_Timeout
    NVMLError_Unknown = NVMLError_Unknown

    NVML_SUCCESS = NVML_SUCCESS
    NVML_ERROR_UNINITIALIZED = NVML_ERROR_UNINITIALIZED
    NVML_ERROR_INVALID_ARGUMENT = NVML_ERROR_INVALID_ARGUMENT
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_NO_PERMISSION = NVML_ERROR_NO_PERMISSION
    NVML_ERROR_NOT_FOUND = NVML_ERROR_NOT_FOUND
    NVML_ERROR_DRIVER_NOT_LOADED = NVML_ERROR_DRIVER_NOT_LOADED
    NVML_ERROR_LIBRARY_NOT_FOUND = NVML_ERROR_LIBRARY_NOT_FOUND
    NVML_ERROR_FUNCTION_NOT_FOUND = NVML_ERROR_FUNCTION_NOT_FOUND
    NVML_ERROR_GPU_IS_LOST = NVML_ERROR_GPU_IS_LOST
    NVML_ERROR_TIMEOUT = NVML_ERROR_TIMEOUT
    NVML_ERROR_UNKNOWN = NVML_ERROR_UNKNOWN

    NVML_CLOCK_GRAPHICS = 0
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0

    driver_version = "570.86.15"
    nvml_version = "12.570.86.15"

    def __init__(
        self, gpus: int | list[FakeGPU] = 1, *, state_path: str | Path | None = None, init_error: int | None = None
    ) -> None:
        if isinstance(gpus, int):
            gpus = [FakeGPU(uuid=f"GPU-{i:08d}-fake") for i in range(gpus)]
        self.gpus: list[FakeGPU] = gpus
        self.state_path = Path(state_path) if state_path is not None else None
        self.init_error = init_error
        self.initialized = False
        self.calls: list[str] = []
        self._failures: dict[tuple[str, int | None], int] = {}
        self._lock = threading.Lock()

    # ---- scripting ---------------------------------------------------------------------------------------
    def fail(self, function: str, code: int, gpu: int | None = None) -> None:
        """Make ``function`` raise ``NVMLError(code)`` (for GPU ``gpu``, or every GPU when None)."""
        self._failures[(function, gpu)] = code

    def clear_failures(self) -> None:
        self._failures.clear()

    def advance(self, seconds: float) -> None:
        """Add ``power * seconds`` to every GPU's energy counter."""
        for gpu in self.gpus:
            gpu.energy_mj += round(gpu.power_mw * seconds)

    def install(self, monkeypatch: Any = None) -> FakeNVML:
        """Make ``recommender.energy`` load this fake (monkeypatch in tests; plain assignment elsewhere)."""
        from recommender.energy import factory, nvml  # noqa: PLC0415 - import on use, not at collection

        if monkeypatch is not None:
            monkeypatch.setattr(nvml, "_load_pynvml", lambda: self)
        else:
            nvml._load_pynvml = lambda: self  # type: ignore[assignment]
        nvml._reset_cache()
        factory.clear_energy_meter_cache()
        return self

    # ---- persistence ---------------------------------------------------------------------------------------
    def save(self, path: str | Path | None = None) -> None:
        target = Path(path) if path is not None else self.state_path
        if target is None:
            return
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps({"gpus": [dataclasses.asdict(g) for g in self.gpus]}))
        tmp.replace(target)

    @classmethod
    def load(cls, path: str | Path, *, persist: bool = True) -> FakeNVML:
        data = json.loads(Path(path).read_text())
        return cls([FakeGPU(**g) for g in data["gpus"]], state_path=path if persist else None)

    # ---- helpers -----------------------------------------------------------------------------------------
    def _enter(self, function: str, handle: FakeHandle | None = None) -> FakeGPU | None:
        self.calls.append(function)
        if not self.initialized and function != "nvmlInit":
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        index = handle.index if handle is not None else None
        code = self._failures.get((function, index), self._failures.get((function, None)))
        if code is not None:
            raise NVMLError(code)
        return self.gpus[handle.index] if handle is not None else None

    def _gpu(self, function: str, handle: FakeHandle) -> FakeGPU:
        gpu = self._enter(function, handle)
        assert gpu is not None
        return gpu

    # ---- pynvml API (same names and argument order) -------------------------------------------------------
    def _nvmlGetFunctionPointer(self, name: str) -> None:  # noqa: N802 - marks "official bindings"
        return None

    def nvmlInit(self) -> None:  # noqa: N802
        self.calls.append("nvmlInit")
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialized = True

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.initialized = False

    def nvmlSystemGetDriverVersion(self) -> str:  # noqa: N802
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlSystemGetNVMLVersion(self) -> str:  # noqa: N802
        self._enter("nvmlSystemGetNVMLVersion")
        return self.nvml_version

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:  # noqa: N802
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return FakeHandle(index)

    def nvmlDeviceGetName(self, handle: FakeHandle) -> str:  # noqa: N802
        return self._gpu("nvmlDeviceGetName", handle).name

    def nvmlDeviceGetUUID(self, handle: FakeHandle) -> str:  # noqa: N802
        return self._gpu("nvmlDeviceGetUUID", handle).uuid

    def nvmlDeviceGetMemoryInfo(self, handle: FakeHandle, version: Any = None) -> Any:  # noqa: N802
        gpu = self._gpu("nvmlDeviceGetMemoryInfo", handle)
        return type("c_nvmlMemory_t", (), {"total": gpu.memory_total_bytes, "free": gpu.memory_total_bytes})()

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeHandle) -> int:  # noqa: N802
        return self._gpu("nvmlDeviceGetTotalEnergyConsumption", handle).energy_mj

    def nvmlDeviceGetPowerUsage(self, handle: FakeHandle) -> int:  # noqa: N802
        return self._gpu("nvmlDeviceGetPowerUsage", handle).power_mw

    def nvmlDeviceGetClockInfo(self, handle: FakeHandle, type: int) -> int:  # noqa: N802, A002
        gpu = self._gpu("nvmlDeviceGetClockInfo", handle)
        return gpu.mem_clock_mhz if type == self.NVML_CLOCK_MEM else gpu.sm_clock_mhz

    def nvmlDeviceGetTemperature(self, handle: FakeHandle, sensor: int) -> int:  # noqa: N802
        return self._gpu("nvmlDeviceGetTemperature", handle).temperature_c

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: FakeHandle) -> int:  # noqa: N802
        return self._gpu("nvmlDeviceGetCurrentClocksEventReasons", handle).throttle_reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: FakeHandle) -> int:  # noqa: N802
        return self._gpu("nvmlDeviceGetCurrentClocksThrottleReasons", handle).throttle_reasons

    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle: FakeHandle) -> list[int]:  # noqa: N802
        gpu = self._gpu("nvmlDeviceGetPowerManagementLimitConstraints", handle)
        return [gpu.power_limit_min_mw, gpu.power_limit_max_mw]

    def nvmlDeviceGetPowerManagementLimit(self, handle: FakeHandle) -> int:  # noqa: N802
        return self._gpu("nvmlDeviceGetPowerManagementLimit", handle).power_limit_mw

    def nvmlDeviceGetPowerManagementDefaultLimit(self, handle: FakeHandle) -> int:  # noqa: N802
        return self._gpu("nvmlDeviceGetPowerManagementDefaultLimit", handle).default_power_limit_mw

    def nvmlDeviceSetPowerManagementLimit(self, handle: FakeHandle, limit: int) -> None:  # noqa: N802
        gpu = self._gpu("nvmlDeviceSetPowerManagementLimit", handle)
        if not gpu.power_limit_min_mw <= limit <= gpu.power_limit_max_mw:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        with self._lock:
            gpu.power_limit_mw = int(limit)
            self.save()

    def nvmlDeviceGetSupportedMemoryClocks(self, handle: FakeHandle) -> list[int]:  # noqa: N802
        return list(self._gpu("nvmlDeviceGetSupportedMemoryClocks", handle).supported_mem_clocks_mhz)

    def nvmlDeviceGetSupportedGraphicsClocks(self, handle: FakeHandle, memoryClockMHz: int) -> list[int]:  # noqa: N802, N803
        gpu = self._gpu("nvmlDeviceGetSupportedGraphicsClocks", handle)
        if memoryClockMHz not in gpu.supported_mem_clocks_mhz:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return sorted(gpu.supported_graphics_clocks_mhz, reverse=True)  # NVML lists them high to low

    def nvmlDeviceSetGpuLockedClocks(self, handle: FakeHandle, minGpuClockMHz: int, maxGpuClockMHz: int) -> None:  # noqa: N802, N803
        gpu = self._gpu("nvmlDeviceSetGpuLockedClocks", handle)
        with self._lock:
            gpu.locked_clocks_mhz = [int(minGpuClockMHz), int(maxGpuClockMHz)]
            gpu.sm_clock_mhz = int(maxGpuClockMHz)
            self.save()

    def nvmlDeviceResetGpuLockedClocks(self, handle: FakeHandle) -> None:  # noqa: N802
        gpu = self._gpu("nvmlDeviceResetGpuLockedClocks", handle)
        with self._lock:
            gpu.locked_clocks_mhz = None
            self.save()
