"""Energy windows: counter differencing, summing over the GPUs in use, no-data cases, fallback, NullMeter."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import pytest

from recommender.energy import (
    EnergyMeter,
    EnergyWindow,
    NullMeter,
    NVMLEnergyMeter,
    PowerSampler,
    get_energy_meter,
)
from recommender.energy import nvml as nv
from recommender.energy.factory import clear_energy_meter_cache
from recommender.errors import EnergyMeterError, InputError
from tests.unit.fake_nvml import FakeNVML

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNVML]:
    yield FakeNVML(gpus=4).install(monkeypatch)
    nv._reset_cache()
    clear_energy_meter_cache()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_counter_difference_summed_over_exactly_the_gpus_in_use(fake: FakeNVML, clock: FakeClock) -> None:
    meter = NVMLEnergyMeter([1, 2], clock=clock)
    meter.begin_window("run")
    clock.now += 2.0
    fake.gpus[1].energy_mj += 150_000
    fake.gpus[2].energy_mj += 250_000
    fake.gpus[0].energy_mj += 9_999_000  # not in use: must be ignored
    fake.gpus[3].energy_mj += 9_999_000
    w = meter.end_window("run")
    assert (w.energy_j, w.per_gpu_energy_j) == (400.0, {1: 150.0, 2: 250.0})
    assert (w.duration_s, w.avg_power_w, w.method, w.status) == (2.0, 200.0, "counter", "ok")
    assert w.energy_per_output_token_j(1000) == pytest.approx(0.4)
    assert w.energy_per_output_token_j(0) is None


def test_windows_overlap(fake: FakeNVML, clock: FakeClock) -> None:
    meter = NVMLEnergyMeter([0], clock=clock)
    meter.begin_window("whole_run")
    clock.now += 1.0
    fake.gpus[0].energy_mj += 10_000
    meter.begin_window("steady_state")
    clock.now += 1.0
    fake.gpus[0].energy_mj += 30_000
    steady = meter.end_window("steady_state")
    clock.now += 1.0
    fake.gpus[0].energy_mj += 5_000
    whole = meter.end_window("whole_run")
    assert (steady.energy_j, whole.energy_j) == (30.0, 45.0)
    assert (steady.duration_s, whole.duration_s) == (1.0, 3.0)


def test_window_names_are_checked(fake: FakeNVML) -> None:
    meter = NVMLEnergyMeter([0])
    meter.begin_window("a")
    with pytest.raises(InputError, match="window"):
        meter.begin_window("a")
    with pytest.raises(InputError, match="open windows: \\['a'\\]"):
        meter.end_window("b")


def test_counter_reset_gives_none_never_a_number(fake: FakeNVML, clock: FakeClock) -> None:
    meter = NVMLEnergyMeter([0, 1], clock=clock)
    meter.begin_window("run")
    clock.now += 1.0
    fake.gpus[0].energy_mj += 50_000
    fake.gpus[1].energy_mj = 10  # driver reload: counter went backwards
    w = meter.end_window("run")
    assert (w.status, w.energy_j, w.avg_power_w) == ("counter_reset", None, None)
    assert w.per_gpu_energy_j == {0: 50.0, 1: None}
    assert "GPUs [1]" in w.note
    assert w.energy_per_output_token_j(100) is None


def test_window_shorter_than_counter_period_is_too_short(
    fake: FakeNVML, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    meter = NVMLEnergyMeter([0], clock=clock)
    meter.begin_window("blip")
    clock.now += 0.05
    fake.gpus[0].energy_mj += 5_000
    with caplog.at_level(logging.WARNING, logger="recommender.energy.meter"):
        w = meter.end_window("blip")
    assert (w.status, w.energy_j, w.per_gpu_energy_j) == ("too_short", None, {0: None})
    assert "shorter than" in caplog.text

    tuned = NVMLEnergyMeter([0], min_window_s=0.01, clock=clock)  # the period is configurable
    tuned.begin_window("blip")
    clock.now += 0.05
    fake.gpus[0].energy_mj += 5_000
    assert tuned.end_window("blip").energy_j == 5.0


def _ramp(fake: FakeNVML, clock: FakeClock, sampler: PowerSampler, gpu: int, power_w: Callable[[float], float]) -> None:
    """Poll at t = 0.05, 0.15, ..., 0.95 s after the window start, with power given as a function of t."""
    start = clock.now
    for k in range(10):
        clock.now = start + 0.05 + 0.1 * k
        fake.gpus[gpu].power_mw = round(power_w(clock.now - start) * 1000)
        sampler.poll()
    clock.now = start + 1.0


def test_fallback_integrates_sampled_power(fake: FakeNVML, clock: FakeClock) -> None:
    fake.fail("nvmlDeviceGetTotalEnergyConsumption", FakeNVML.NVML_ERROR_NOT_SUPPORTED, gpu=1)
    sampler = PowerSampler([1], devices=[nv.NVMLDevice(1)], clock=clock)
    meter = NVMLEnergyMeter([1], sampler=sampler, clock=clock)
    assert (meter.counter_gpus, meter.sampled_gpus) == ((), (1,))
    meter.begin_window("run")
    _ramp(fake, clock, sampler, 1, lambda t: 100.0 + 100.0 * t)  # linear: trapezoid is exact inside
    w = meter.end_window("run")
    # inside samples: integral of the ramp from 0.05 to 0.95 = 0.9 * 150 = 135 J;
    # edges held flat: 105 W * 0.05 s + 195 W * 0.05 s = 15 J
    assert w.energy_j == pytest.approx(150.0)
    assert (w.method, w.status) == ("sampled_power", "ok")
    assert "integrated sampled power" in w.note


def test_fallback_mixed_with_counter_gpus(fake: FakeNVML, clock: FakeClock) -> None:
    fake.fail("nvmlDeviceGetTotalEnergyConsumption", FakeNVML.NVML_ERROR_NOT_SUPPORTED, gpu=1)
    sampler = PowerSampler([1], devices=[nv.NVMLDevice(1)], clock=clock)
    meter = NVMLEnergyMeter([0, 1], sampler=sampler, clock=clock)
    meter.begin_window("run")
    _ramp(fake, clock, sampler, 1, lambda t: 80.0)
    fake.gpus[0].energy_mj += 300_000
    w = meter.end_window("run")
    assert w.per_gpu_energy_j == {0: 300.0, 1: pytest.approx(80.0)}
    assert w.energy_j == pytest.approx(380.0)
    assert w.method == "sampled_power"


def test_fallback_with_too_few_samples_is_too_short(fake: FakeNVML, clock: FakeClock) -> None:
    fake.fail("nvmlDeviceGetTotalEnergyConsumption", FakeNVML.NVML_ERROR_NOT_SUPPORTED)
    sampler = PowerSampler([0], devices=[nv.NVMLDevice(0)], clock=clock)
    meter = NVMLEnergyMeter([0], sampler=sampler, clock=clock)
    meter.begin_window("run")
    clock.now += 0.5
    sampler.poll()
    clock.now += 0.5
    w = meter.end_window("run")
    assert (w.status, w.energy_j) == ("too_short", None)


def test_fallback_with_own_sampler_thread(fake: FakeNVML) -> None:
    fake.fail("nvmlDeviceGetTotalEnergyConsumption", FakeNVML.NVML_ERROR_NOT_SUPPORTED)
    fake.gpus[0].power_mw = 200_000
    meter = NVMLEnergyMeter([0], sampler_interval_s=0.02)
    with meter, meter.window("run") as handle:
        time.sleep(0.25)
    w = handle.result
    assert w is not None and w.status == "ok"
    assert w.energy_j == pytest.approx(200.0 * w.duration_s)  # constant power: exact
    assert meter._sampler is not None and not meter._sampler.running  # closed with the meter


def test_other_counter_errors_propagate(fake: FakeNVML) -> None:
    fake.fail("nvmlDeviceGetTotalEnergyConsumption", FakeNVML.NVML_ERROR_NO_PERMISSION)
    with pytest.raises(nv.GPUReadError, match="no_permission"):
        NVMLEnergyMeter([0])


def test_idle_power_is_mean_sampled_power_summed(fake: FakeNVML) -> None:
    fake.gpus[0].power_mw, fake.gpus[1].power_mw, fake.gpus[2].power_mw = 60_000, 70_000, 999_000
    meter = NVMLEnergyMeter([0, 1], sampler_interval_s=0.02)
    assert meter.measure_idle_power_w(duration_s=0.1) == pytest.approx(130.0)
    with pytest.raises(InputError, match="duration_s"):
        meter.measure_idle_power_w(0)


def test_window_context_manager_ends_on_error(fake: FakeNVML, clock: FakeClock) -> None:
    meter = NVMLEnergyMeter([0], clock=clock)
    with pytest.raises(RuntimeError), meter.window("run") as handle:
        clock.now += 1.0
        fake.gpus[0].energy_mj += 1_000
        raise RuntimeError("boom")
    assert handle.result is not None and handle.result.energy_j == 1.0
    meter.begin_window("run")  # the name is free again


def test_factory_caches_per_index_tuple(fake: FakeNVML) -> None:
    meter = get_energy_meter([0, 1])
    assert isinstance(meter, NVMLEnergyMeter) and meter.available
    assert get_energy_meter((0, 1)) is meter
    assert get_energy_meter([2]) is not meter
    with pytest.raises(InputError, match="0..3"):
        get_energy_meter([4])
    with pytest.raises(InputError, match="gpu_indices"):
        get_energy_meter([])
    with pytest.raises(InputError, match="gpu_indices"):
        get_energy_meter([1, 1])


def test_factory_gives_null_meter_without_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeNVML(init_error=FakeNVML.NVML_ERROR_LIBRARY_NOT_FOUND).install(monkeypatch)
    meter = get_energy_meter([0])
    assert isinstance(meter, NullMeter) and not meter.available
    with pytest.raises(EnergyMeterError, match="no NVIDIA GPU/NVML on this host") as info:
        meter.begin_window("run")
    assert "--evaluator surrogate/replay" in str(info.value)
    assert "NVML Shared Library Not Found" in str(info.value)
    with pytest.raises(EnergyMeterError):
        meter.measure_idle_power_w()
    assert isinstance(get_energy_meter([0], strict=False), NullMeter)
    nv._reset_cache()
    clear_energy_meter_cache()


def test_factory_null_meter_when_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeNVML(gpus=0).install(monkeypatch)
    assert isinstance(get_energy_meter([0]), NullMeter)
    nv._reset_cache()
    clear_energy_meter_cache()


def test_non_strict_null_meter_times_windows_without_energy() -> None:
    meter = NullMeter([0, 1], strict=False)
    meter.begin_window("run")
    w = meter.end_window("run")
    assert (w.method, w.status, w.energy_j, w.avg_power_w) == ("none", "unsupported", None, None)
    assert w.per_gpu_energy_j == {0: None, 1: None} and w.duration_s >= 0
    assert "no NVIDIA GPU/NVML" in w.note
    with pytest.raises(EnergyMeterError):
        meter.measure_idle_power_w()
    strict = NullMeter([0])
    with pytest.raises(EnergyMeterError, match="run on a GPU machine"):
        strict.begin_window("x")
    with pytest.raises(EnergyMeterError, match="run on a GPU machine"):
        strict.end_window("x")


# ---- contract shared by every EnergyMeter ----------------------------------------------------------------
def _nvml_meter(fake: FakeNVML) -> EnergyMeter:
    return NVMLEnergyMeter([0, 2], min_window_s=0.0)


def _null_meter(fake: FakeNVML) -> EnergyMeter:
    return NullMeter([0, 2], strict=False)


@pytest.mark.parametrize("make", [_nvml_meter, _null_meter], ids=["nvml", "null"])
def test_energy_meter_contract(fake: FakeNVML, make: Callable[[FakeNVML], EnergyMeter]) -> None:
    with make(fake) as meter:
        assert meter.gpu_indices == (0, 2)
        meter.begin_window("outer")
        meter.begin_window("inner")
        fake.advance(1.0)
        inner, outer = meter.end_window("inner"), meter.end_window("outer")
        for w in (inner, outer):
            assert isinstance(w, EnergyWindow)
            assert set(w.per_gpu_energy_j) == {0, 2}
            assert w.duration_s == pytest.approx(w.end_s - w.start_s) and w.duration_s >= 0
            assert w.method in ("counter", "sampled_power", "none")
            assert w.status in ("ok", "counter_reset", "too_short", "unsupported")
            assert (w.energy_j is None) == (w.status != "ok")
            assert w.energy_j is None or w.energy_j >= 0
        assert outer.start_s <= inner.start_s and inner.end_s <= outer.end_s
        assert meter.available == (outer.method != "none")
