"""The NVML boundary: official-bindings check, error mapping, inventory, and the fake's fidelity."""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Iterator

import pytest

from recommender.energy import get_energy_meter, gpu_inventory
from recommender.energy import nvml as nv
from recommender.energy.factory import clear_energy_meter_cache
from recommender.energy.meter import NullMeter
from recommender.errors import ActuatorError, EnergyMeterError
from tests.unit.fake_nvml import FakeGPU, FakeNVML

pytestmark = pytest.mark.unit


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNVML]:
    yield FakeNVML(gpus=2).install(monkeypatch)
    nv._reset_cache()
    clear_energy_meter_cache()


@pytest.fixture
def real_pynvml() -> types.ModuleType:
    return pytest.importorskip("pynvml")


def test_fake_functions_match_real_pynvml_signatures(real_pynvml: types.ModuleType) -> None:
    names = [n for n in dir(FakeNVML) if n.startswith("nvml") and callable(getattr(FakeNVML, n))]
    assert len(names) > 15
    for name in names:
        real = getattr(real_pynvml, name)
        fake_params = list(inspect.signature(getattr(FakeNVML, name)).parameters)[1:]  # drop self
        assert fake_params == list(inspect.signature(real).parameters), name


def test_fake_constants_match_real_pynvml(real_pynvml: types.ModuleType) -> None:
    for name in dir(FakeNVML):
        if name.startswith("NVML_"):
            assert getattr(FakeNVML, name) == getattr(real_pynvml, name), name
    assert isinstance(FakeNVML.NVMLError(FakeNVML.NVML_ERROR_NOT_SUPPORTED), FakeNVML.NVMLError_NotSupported)


def test_installed_nvidia_ml_py_passes_official_check(real_pynvml: types.ModuleType) -> None:
    nv._check_official(real_pynvml)


def test_unofficial_pynvml_refused_when_distribution_missing(
    real_pynvml: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nv, "_official_module_file", lambda: None)
    with pytest.raises(EnergyMeterError, match="unofficial `pynvml`") as info:
        nv._check_official(real_pynvml)
    assert "pip uninstall pynvml" in str(info.value)
    assert "pip install nvidia-ml-py" in str(info.value)


def test_shadowing_pynvml_module_refused_by_loader_and_factory(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    shadow = types.ModuleType("pynvml")
    shadow.__file__ = str(tmp_path / "pynvml" / "__init__.py")
    shadow._nvmlGetFunctionPointer = lambda name: None  # type: ignore[attr-defined]  # even with the marker, the file is not NVIDIA's
    monkeypatch.setitem(sys.modules, "pynvml", shadow)
    nv._reset_cache()
    clear_energy_meter_cache()
    with pytest.raises(EnergyMeterError, match="unofficial"):
        nv._load_pynvml()
    with pytest.raises(EnergyMeterError, match="unofficial"):  # refused loudly, never a silent NullMeter
        get_energy_meter([0])
    nv._reset_cache()


def test_missing_bindings_mean_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    nv._reset_cache()
    clear_energy_meter_cache()
    with pytest.raises(nv.NVMLUnavailableError, match="nvidia-ml-py"):
        nv.load_nvml()
    assert isinstance(get_energy_meter([0]), NullMeter)
    assert gpu_inventory() == []
    clear_energy_meter_cache()


def test_init_failure_means_cpu_host(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeNVML(init_error=FakeNVML.NVML_ERROR_DRIVER_NOT_LOADED).install(monkeypatch)
    assert nv.nvml_available() is False
    assert gpu_inventory() == []
    with pytest.raises(nv.NVMLUnavailableError, match="Driver Not Loaded"):
        nv.load_nvml()
    nv._reset_cache()


@pytest.mark.parametrize(
    ("code", "reason", "hint"),
    [
        (FakeNVML.NVML_ERROR_NOT_SUPPORTED, "not_supported", "does not support"),
        (FakeNVML.NVML_ERROR_NO_PERMISSION, "no_permission", "root"),
        (FakeNVML.NVML_ERROR_GPU_IS_LOST, "gpu_lost", "nvidia-smi"),
        (FakeNVML.NVML_ERROR_UNKNOWN, "unknown", ""),
    ],
)
def test_read_errors_map_to_energy_meter_error(fake: FakeNVML, code: int, reason: str, hint: str) -> None:
    fake.fail("nvmlDeviceGetPowerUsage", code, gpu=1)
    device = nv.NVMLDevice(1)
    with pytest.raises(nv.GPUReadError) as info:
        device.power_usage_mw()
    err = info.value
    assert isinstance(err, EnergyMeterError)
    assert err.reason == reason
    assert isinstance(err.__cause__, FakeNVML.NVMLError)
    assert "GPU 1" in str(err) and "power_usage_mw" in str(err) and hint in str(err)
    assert nv.NVMLDevice(0).power_usage_mw() == 100_000  # other GPUs unaffected


def test_control_errors_map_to_actuator_error(fake: FakeNVML) -> None:
    fake.fail("nvmlDeviceSetGpuLockedClocks", FakeNVML.NVML_ERROR_NO_PERMISSION)
    with pytest.raises(nv.GPUControlError, match="root") as info:
        nv.NVMLDevice(0).set_locked_clocks_mhz(1200, 1200)
    assert isinstance(info.value, ActuatorError)
    assert info.value.reason == "no_permission"


def test_device_reads(fake: FakeNVML) -> None:
    fake.gpus[1].throttle_reasons = 0x4
    device = nv.NVMLDevice(1)
    assert device.name() == "NVIDIA H100 80GB HBM3"
    assert device.total_energy_mj() == 1_000_000
    assert (device.sm_clock_mhz(), device.mem_clock_mhz(), device.temperature_c()) == (1980, 2619, 40)
    assert device.clock_event_reasons() == 0x4
    assert device.power_limit_constraints_mw() == (200_000, 700_000)
    clocks = device.supported_graphics_clocks_mhz()
    assert clocks == sorted(clocks) and (clocks[0], clocks[-1]) == (345, 1980)


def test_old_bindings_use_throttle_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    class OldBindings(FakeNVML):
        nvmlDeviceGetCurrentClocksEventReasons = None  # type: ignore[assignment]  # introduced with driver 535

    old = OldBindings().install(monkeypatch)
    old.gpus[0].throttle_reasons = 0x20
    assert nv.NVMLDevice(0).clock_event_reasons() == 0x20
    assert "nvmlDeviceGetCurrentClocksThrottleReasons" in old.calls
    nv._reset_cache()


def test_bytes_from_old_bindings_are_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeNVML([FakeGPU(name=b"Tesla V100")]).install(monkeypatch)  # type: ignore[arg-type]
    assert nv.NVMLDevice(0).name() == "Tesla V100"
    nv._reset_cache()


def test_gpu_inventory(fake: FakeNVML) -> None:
    inventory = gpu_inventory()
    assert [g["index"] for g in inventory] == [0, 1]
    assert inventory[1] == {
        "index": 1,
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": "GPU-00000001-fake",
        "memory_total_bytes": 80 * 1024**3,
        "driver_version": FakeNVML.driver_version,
        "nvml_version": FakeNVML.nvml_version,
    }


def test_decode_throttle_reasons() -> None:
    assert nv.decode_throttle_reasons(0) == []
    assert nv.decode_throttle_reasons(0x1 | 0x4 | 0x40) == ["gpu_idle", "sw_power_cap", "hw_thermal"]
    assert nv.decode_throttle_reasons(0x2 | 0x8 | 0x20) == ["applications_clocks_setting", "hw_slowdown", "sw_thermal"]
    assert nv.decode_throttle_reasons(0x1000) == ["bit_0x1000"]


def test_nvml_initialized_once(fake: FakeNVML) -> None:
    nv.load_nvml()
    nv.load_nvml()
    assert fake.calls.count("nvmlInit") == 1
