"""The analytical DVFS model reproduces the published shapes and inverts cleanly."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from recommender.config import Hardware, Scenario, ServingConfig
from recommender.presets import get_preset
from recommender.surrogate import dvfs
from recommender.surrogate.features import build_features

pytestmark = pytest.mark.unit
H100_MAX = 1980


def _frame(clocks: list[int | None], power_limits: list[float | None] | None = None, seqs: int = 256,
           workload=None) -> pd.DataFrame:
    sc = Scenario(model="Llama-3.1-8B", hardware=Hardware(gpu="H100"),
                  workload=workload or get_preset("mlenergy-chat", num_requests=2048))
    pls = power_limits or [None] * len(clocks)
    return build_features(sc, [ServingConfig(max_num_seqs=seqs, gpu_clock_mhz=c, power_limit_w=p)
                               for c, p in zip(clocks, pls, strict=True)])


def _default_pred(f: pd.DataFrame, itl: float = 0.026, power: float = 690.0) -> pd.DataFrame:
    """Default-clock metrics in the ML.ENERGY v3 Llama-3.1-8B range (batch 256: ~26 ms ITL, ~690 W)."""
    n = len(f)
    tput = f["batch_est"].to_numpy() / itl * 0.92
    return pd.DataFrame({
        "itl_p50_s": np.full(n, itl), "itl_p99_s": np.full(n, 3 * itl), "ttft_p50_s": np.full(n, 0.2),
        "throughput_output_tok_s": tput, "avg_power_w": np.full(n, power),
        "energy_per_output_token_j": power / tput,
    })


def test_default_clock_changes_nothing() -> None:
    f = _frame([None, H100_MAX])
    pred = _default_pred(f)
    out, r = dvfs.apply(f, pred)
    assert r == pytest.approx([1.0, 1.0])
    pd.testing.assert_frame_equal(out, pred)


def test_energy_per_token_is_u_shaped_in_clock() -> None:
    clocks = list(range(345, 1981, 45))
    f = _frame(clocks)
    out, r = dvfs.apply(f, _default_pred(f))
    e = out["energy_per_output_token_j"].to_numpy()
    best = int(np.argmin(e))
    assert 0 < best < len(clocks) - 1, "the minimum lies strictly inside the clock range"
    assert np.all(np.diff(e[: best + 1]) <= 1e-12) and np.all(np.diff(e[best:]) >= -1e-12)
    assert e[0] > e[best] * 1.1 and e[-1] > e[best] * 1.05


def test_h100_1600_vs_1980_mhz_decode_heavy() -> None:
    f = _frame([None, 1600])
    out, r = dvfs.apply(f, _default_pred(f))
    tput_loss = 1 - out["throughput_output_tok_s"][1] / out["throughput_output_tok_s"][0]
    saving = 1 - out["energy_per_output_token_j"][1] / out["energy_per_output_token_j"][0]
    clock_cut = 1 - 1600 / H100_MAX
    assert 0 < tput_loss < 0.10, "decode barely slows: memory-bound time hardly moves"
    assert 0 < saving < clock_cut, "energy falls, but by less than the clock"
    assert out["avg_power_w"][1] < out["avg_power_w"][0]


def test_compute_bound_time_scales_with_inverse_clock() -> None:
    r = np.array([1.0, 0.5])
    # pure compute: time doubles at half clock; pure memory (above the knee): unchanged
    assert dvfs.time_ratio(r, 1.0, 1.0, 0.0, 0.0) == pytest.approx([1.0, 2.0])
    assert dvfs.time_ratio(r, 1.0, 0.0, 1.0, 0.0) == pytest.approx([1.0, 1.0])
    # dynamic power grows faster than linearly with clock; static power stays
    p = dvfs.power_ratio_dynamic(np.array([0.6, 0.8, 1.0]))
    assert p[2] == pytest.approx(1.0)
    assert (1 - p[1]) / 0.2 > (1 - dvfs.DEFAULT_PARAMS.s_mem)  # steeper than linear in the SM share
    assert dvfs.power_at(np.array([0.3]), np.array([500.0]), np.array([78.0]))[0] > 78.0


def test_power_limit_caps_power_by_lowering_the_clock() -> None:
    f = _frame([None, None, None], power_limits=[None, 700, 400])
    out, r = dvfs.apply(f, _default_pred(f, power=690.0))
    assert r[0] == 1.0 and r[1] == 1.0  # 700 W does not bind at 690 W
    assert r[2] < 1.0
    assert out["avg_power_w"][2] == pytest.approx(400.0, rel=0.01)
    assert out["itl_p50_s"][2] >= out["itl_p50_s"][0]


def test_prefill_heavy_work_slows_more_than_decode() -> None:
    prefill_heavy = get_preset("fixed", input_tokens=4000, output_tokens=16, num_requests=512, concurrency=64)
    fp = _frame([None, 1200], seqs=64, workload=prefill_heavy)
    fd = _frame([None, 1200], seqs=64)
    op, _ = dvfs.apply(fp, _default_pred(fp, itl=0.05))
    od, _ = dvfs.apply(fd, _default_pred(fd, itl=0.012))
    slow = lambda o: o["throughput_output_tok_s"][0] / o["throughput_output_tok_s"][1]  # noqa: E731
    assert slow(op) > slow(od) > 1.0


def test_to_default_clock_inverts_apply() -> None:
    f = _frame([1400, 1700])
    pred = _default_pred(f)
    moved, _ = dvfs.apply(f, pred)
    back = dvfs.to_default_clock(f, moved)
    for k in ("itl_p50_s", "throughput_output_tok_s", "avg_power_w"):
        assert back[k].to_numpy() == pytest.approx(pred[k].to_numpy(), rel=0.03), k


def test_calibrate_recovers_parameters_from_locked_clock_measurements() -> None:
    truth = replace(dvfs.DEFAULT_PARAMS, s_mem=0.25, s_other_time=0.6)
    f = _frame([1100, 1300, 1500, 1700])
    pred = _default_pred(f)
    measured, _ = dvfs.apply(f, pred, truth)
    fitted, report = dvfs.calibrate(f, pred, measured)
    assert fitted.s_mem == pytest.approx(0.25, abs=0.06)
    assert fitted.s_other_time == pytest.approx(0.6, abs=0.15)
    assert report["mse_log_after"] < report["mse_log_before"]


def test_every_parameter_has_a_source() -> None:
    for name in dvfs.DVFSParams().to_dict():
        assert name in dvfs.PARAM_SOURCES and len(dvfs.PARAM_SOURCES[name]) > 20
