"""GPUActuator: opt-in, range checks, and restore on every path (exit, exception, signals, atexit)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from recommender.energy import GPUActuator
from recommender.energy import nvml as nv
from recommender.energy.factory import clear_energy_meter_cache
from recommender.errors import ActuatorError, InputError
from tests.unit.fake_nvml import FakeGPU, FakeNVML

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]
PREVIOUS_W = 650.0


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNVML]:
    fake = FakeNVML([FakeGPU(power_limit_mw=650_000), FakeGPU(power_limit_mw=650_000)])
    yield fake.install(monkeypatch)
    nv._reset_cache()
    clear_energy_meter_cache()


def _assert_restored(fake: FakeNVML) -> None:
    for gpu in fake.gpus:
        assert gpu.locked_clocks_mhz is None
        assert gpu.power_limit_mw == PREVIOUS_W * 1000


def _assert_applied(fake: FakeNVML, clock: int = 1200, limit_w: float = 300) -> None:
    for gpu in fake.gpus:
        assert gpu.locked_clocks_mhz == [clock, clock]
        assert gpu.power_limit_mw == limit_w * 1000


def test_disabled_by_default(fake: FakeNVML) -> None:
    with pytest.raises(ActuatorError, match=r"enabled=True") as info, GPUActuator([0, 1], sm_clock_mhz=1200):
        pass
    assert "shared machines" in str(info.value)
    _assert_restored(fake)
    assert not [c for c in fake.calls if "Set" in c]


def test_nothing_requested_is_a_no_op(fake: FakeNVML) -> None:
    with GPUActuator([0, 1]) as act:
        assert not act.active
    assert fake.calls == []


@pytest.mark.parametrize(
    ("kwargs", "field", "allowed"),
    [
        ({"sm_clock_mhz": 2500}, "gpu_clock_mhz", "345..1980 MHz"),
        ({"sm_clock_mhz": 100}, "gpu_clock_mhz", "345..1980 MHz"),
        ({"power_limit_w": 150}, "power_limit_w", "200..700 W"),
        ({"power_limit_w": 701}, "power_limit_w", "200..700 W"),
    ],
)
def test_out_of_range_values_rejected_before_any_change(
    fake: FakeNVML, kwargs: dict[str, float], field: str, allowed: str
) -> None:
    with pytest.raises(InputError) as info, GPUActuator([0, 1], enabled=True, **kwargs):  # type: ignore[arg-type]
        pass
    assert info.value.field == field and allowed in str(info.value)
    assert not [c for c in fake.calls if "Set" in c]


def test_non_positive_values_rejected_at_construction() -> None:
    with pytest.raises(InputError, match="gpu_clock_mhz"):
        GPUActuator([0], sm_clock_mhz=0, enabled=True)
    with pytest.raises(InputError, match="power_limit_w"):
        GPUActuator([0], power_limit_w=-1, enabled=True)


def test_restore_on_normal_exit(fake: FakeNVML) -> None:
    previous = signal.getsignal(signal.SIGTERM)
    with GPUActuator([0, 1], sm_clock_mhz=1200, power_limit_w=300, enabled=True) as act:
        _assert_applied(fake)
        assert act.active and act.previous_power_limit_w == {0: PREVIOUS_W, 1: PREVIOUS_W}
        assert signal.getsignal(signal.SIGTERM) != previous
    _assert_restored(fake)
    assert not act.active
    assert signal.getsignal(signal.SIGTERM) == previous  # handlers put back


def test_restore_on_exception(fake: FakeNVML) -> None:
    with pytest.raises(RuntimeError, match="boom"), GPUActuator([0, 1], 1200, 300, enabled=True):
        _assert_applied(fake)
        raise RuntimeError("boom")
    _assert_restored(fake)


def test_partial_apply_failure_restores_what_was_applied(fake: FakeNVML) -> None:
    fake.fail("nvmlDeviceSetGpuLockedClocks", FakeNVML.NVML_ERROR_NO_PERMISSION, gpu=1)
    with pytest.raises(ActuatorError, match="root"), GPUActuator([0, 1], 1200, 300, enabled=True):
        pytest.fail("must not enter")
    _assert_restored(fake)


def test_restore_failure_tries_every_gpu_and_is_retryable(fake: FakeNVML, caplog: pytest.LogCaptureFixture) -> None:
    act = GPUActuator([0, 1], 1200, 300, enabled=True)
    with caplog.at_level(logging.ERROR, logger="recommender.energy.actuator"):
        with pytest.raises(ActuatorError, match="GPU 0 locked clocks") as info, act:
            fake.fail("nvmlDeviceResetGpuLockedClocks", FakeNVML.NVML_ERROR_GPU_IS_LOST, gpu=0)
        assert "GPU 1" not in str(info.value)
        assert "NOT fully restored" in caplog.text
    assert fake.gpus[1].locked_clocks_mhz is None and fake.gpus[1].power_limit_mw == 650_000  # GPU 1 still done
    assert fake.gpus[0].power_limit_mw == 650_000 and fake.gpus[0].locked_clocks_mhz == [1200, 1200]
    assert act.active
    fake.clear_failures()
    act.restore()  # idempotent: retries only what is left
    act.restore()
    _assert_restored(fake)
    assert fake.calls.count("nvmlDeviceSetPowerManagementLimit") == 4  # 2 applies + 2 restores, no repeats


def test_nvml_unavailable_is_an_actuator_error(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeNVML(init_error=FakeNVML.NVML_ERROR_DRIVER_NOT_LOADED).install(monkeypatch)
    with pytest.raises(ActuatorError, match="Driver Not Loaded"), GPUActuator([0], 1200, enabled=True):
        pass
    nv._reset_cache()


def test_unsupported_clock_control(fake: FakeNVML) -> None:
    fake.fail("nvmlDeviceGetSupportedGraphicsClocks", FakeNVML.NVML_ERROR_NOT_SUPPORTED)
    with pytest.raises(ActuatorError, match="not_supported"), GPUActuator([0], 1200, enabled=True):
        pass


def test_sigint_restores_then_chains_to_previous_handler(fake: FakeNVML) -> None:
    seen: list[tuple[int, list[int] | None]] = []

    def previous(signum: int, frame: FrameType | None) -> None:
        seen.append((signum, fake.gpus[0].locked_clocks_mhz))

    original = signal.signal(signal.SIGINT, previous)
    try:
        with GPUActuator([0, 1], 1200, 300, enabled=True):
            os.kill(os.getpid(), signal.SIGINT)
            _assert_restored(fake)  # restored by the handler, before the block ends
        assert seen == [(signal.SIGINT, None)]  # previous handler ran, after the restore
        assert signal.getsignal(signal.SIGINT) == previous
    finally:
        signal.signal(signal.SIGINT, original)


CHILD = textwrap.dedent(
    """
    import signal, sys, time
    from recommender.energy import GPUActuator
    from tests.unit.fake_nvml import FakeNVML

    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    FakeNVML.load(sys.argv[1]).install()
    act = GPUActuator([0, 1], sm_clock_mhz=1200, power_limit_w=300, enabled=True)
    if sys.argv[2] == "atexit":
        act.__enter__()
        print("ready", flush=True)
        sys.exit(0)  # never calls __exit__: atexit must restore
    with act:
        print("ready", flush=True)
        time.sleep(30)
    """
)


def _child(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[str], Path]:
    state = tmp_path / "nvml.json"
    FakeNVML([FakeGPU(power_limit_mw=650_000), FakeGPU(power_limit_mw=650_000)]).save(state)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(state), mode], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc, state


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_in_subprocess_restores_and_exits(tmp_path: Path, signum: int) -> None:
    proc, state = _child(tmp_path, "with")
    try:
        _assert_applied(FakeNVML.load(state, persist=False))
        proc.send_signal(signum)
        assert proc.wait(timeout=10) == -signum  # died of the same signal, as without the actuator
    finally:
        if proc.poll() is None:
            proc.kill()
    _assert_restored(FakeNVML.load(state, persist=False))


def test_atexit_restores_as_last_resort(tmp_path: Path) -> None:
    proc, state = _child(tmp_path, "atexit")
    assert proc.wait(timeout=10) == 0
    _assert_restored(FakeNVML.load(state, persist=False))
