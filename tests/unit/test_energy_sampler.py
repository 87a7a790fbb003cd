"""PowerSampler: cadence, decoded throttle reasons, summaries, CSV, and failures that are not fatal."""

from __future__ import annotations

import csv
import itertools
import logging
import statistics
import time
from collections.abc import Iterator

import pytest

from recommender.energy import PowerSample, PowerSampler
from recommender.energy import nvml as nv
from recommender.energy.factory import clear_energy_meter_cache
from recommender.errors import InputError
from tests.unit.fake_nvml import FakeNVML

pytestmark = pytest.mark.unit


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNVML]:
    yield FakeNVML(gpus=3).install(monkeypatch)
    nv._reset_cache()
    clear_energy_meter_cache()


def test_samples_at_about_the_interval(fake: FakeNVML) -> None:
    with PowerSampler([0, 2], interval_s=0.02) as sampler:
        time.sleep(0.3)
    assert not sampler.running
    for gpu in (0, 2):
        times = [s.t_s for s in sampler.samples(gpu)]
        assert 8 <= len(times) <= 20  # ~15 expected; generous for a loaded CI machine
        assert statistics.median(b - a for a, b in itertools.pairwise(times)) == pytest.approx(0.02, abs=0.01)
    assert {s.gpu_index for s in sampler.samples()} == {0, 2}  # GPU 1 not in use, not sampled


def test_sample_fields_and_decoded_throttle_reasons(fake: FakeNVML) -> None:
    gpu = fake.gpus[1]
    gpu.power_mw, gpu.sm_clock_mhz, gpu.temperature_c, gpu.throttle_reasons = 312_500, 1410, 71, 0x4 | 0x20
    (sample,) = PowerSampler([1]).poll()
    assert sample == PowerSample(
        t_s=sample.t_s,
        gpu_index=1,
        power_w=312.5,
        sm_clock_mhz=1410,
        mem_clock_mhz=2619,
        temperature_c=71,
        throttle_reasons=0x24,
        throttle_reason_names=("sw_power_cap", "sw_thermal"),
        energy_mj=1_000_000,
    )


def test_summaries(fake: FakeNVML) -> None:
    sampler = PowerSampler([0])
    for clock, reasons, power in [(1980, 0x0, 100_000), (1500, 0x4, 300_000), (1200, 0x4 | 0x40, 500_000)]:
        fake.gpus[0].sm_clock_mhz, fake.gpus[0].throttle_reasons, fake.gpus[0].power_mw = clock, reasons, power
        sampler.poll()
    assert sampler.mean_sm_clock_mhz() == pytest.approx(1560.0)
    assert sampler.mean_power_w(0) == pytest.approx(300.0)
    assert sampler.throttle_fractions() == {"hw_thermal": pytest.approx(1 / 3), "sw_power_cap": pytest.approx(2 / 3)}
    assert sampler.mean_sm_clock_mhz(gpu_index=2) is None
    assert sampler.throttle_fractions(gpu_index=2) == {}


def test_read_errors_logged_once_and_skipped(fake: FakeNVML, caplog: pytest.LogCaptureFixture) -> None:
    fake.fail("nvmlDeviceGetTemperature", FakeNVML.NVML_ERROR_NOT_SUPPORTED, gpu=0)
    fake.fail("nvmlDeviceGetPowerUsage", FakeNVML.NVML_ERROR_GPU_IS_LOST, gpu=1)
    sampler = PowerSampler([0, 1])
    with caplog.at_level(logging.WARNING, logger="recommender.energy.sampler"):
        for _ in range(3):
            sampler.poll()
    assert [s.gpu_index for s in sampler.samples()] == [0, 0, 0]  # GPU 1 samples skipped, not fatal
    assert all(s.temperature_c is None and s.power_w == 100.0 for s in sampler.samples())
    assert caplog.text.count("temperature_c of GPU 0") == 1
    assert caplog.text.count("power_w of GPU 1") == 1


def test_thread_survives_failing_reads(fake: FakeNVML) -> None:
    fake.fail("nvmlDeviceGetPowerUsage", FakeNVML.NVML_ERROR_UNKNOWN)
    with PowerSampler([0], interval_s=0.01) as sampler:
        time.sleep(0.05)
        assert sampler.running
        fake.clear_failures()
        time.sleep(0.05)
    assert sampler.samples(0)


def test_to_csv(fake: FakeNVML, tmp_path) -> None:
    fake.gpus[0].throttle_reasons = 0x1 | 0x4
    sampler = PowerSampler([0, 1])
    sampler.poll()
    path = sampler.to_csv(tmp_path / "sub" / "power.csv")
    rows = list(csv.DictReader(path.open()))
    assert [r["gpu_index"] for r in rows] == ["0", "1"]
    assert rows[0]["throttle_reason_names"] == "gpu_idle|sw_power_cap"
    assert (rows[0]["power_w"], rows[0]["throttle_reasons"], rows[1]["energy_mj"]) == ("100.000", "5", "1000000")


def test_discard_and_window_selection(fake: FakeNVML) -> None:
    t = iter([1.0, 2.0, 3.0])
    sampler = PowerSampler([0], clock=lambda: next(t))
    for _ in range(3):
        sampler.poll()
    assert [s.t_s for s in sampler.samples_between(1.5, 3.0)] == [2.0, 3.0]
    sampler.discard_before(3.0)
    assert [s.t_s for s in sampler.samples()] == [3.0]
    sampler.clear()
    assert sampler.samples() == []


def test_interval_must_be_positive(fake: FakeNVML) -> None:
    with pytest.raises(InputError, match="interval_s"):
        PowerSampler([0], interval_s=0)
