"""Training: our Measurement files and public data train together; locked-clock rows are normalised."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recommender.dataset import save_measurement
from recommender.measurement import Metrics
from recommender.surrogate import dvfs, training
from recommender.surrogate.build import train_surrogate
from recommender.surrogate.public_data import load_mlenergy_v3

pytestmark = pytest.mark.unit
PUBLIC = Path(__file__).parent / "data" / "public"


def _own_measurements(tmp_path: Path, clock: int | None) -> tuple[Path, list]:
    """Public v3 rows re-recorded as our own (provenance measured), optionally at a locked clock via DVFS."""
    base = [m for m in load_mlenergy_v3(PUBLIC).measurements if m.scenario.model == "Llama-3.1-8B"]
    out = []
    for m in base:
        cfg = m.config.model_copy(update={"gpu_clock_mhz": clock})
        metrics = m.metrics
        if clock is not None:
            from recommender.surrogate.features import build_features

            f = build_features(m.scenario, [cfg])
            cols = {k: [metrics.get(k)] for k in ("itl_p50_s", "itl_p99_s", "throughput_output_tok_s", "avg_power_w",
                                                  "energy_per_output_token_j")}
            moved, _ = dvfs.apply(f, pd.DataFrame(cols))
            metrics = Metrics(**{**metrics.model_dump(), **{k: float(moved[k][0]) for k in cols}})
        out.append(m.model_copy(update={"config": cfg, "metrics": metrics, "steady_state": None,
                                        "provenance": "measured", "source": "ours"}))
    root = tmp_path / f"own-{clock}"
    for m in out:
        save_measurement(m, root)
    return root, out


def test_measurement_files_and_public_data_train_together(tmp_path: Path) -> None:
    root, own = _own_measurements(tmp_path, None)
    result = train_surrogate([root], ("mlenergy-v3", "llm-inference-bench", "splitwise"), PUBLIC, out=None,
                             params={"n_estimators": 10})
    s = result.data_summary
    assert s["own_measurements"] == len(own) == 4
    assert s["rows_per_source"]["ours"] == 4
    assert s["rows"] == 4 + sum(a["rows_used"] for a in s["public_adapters"])
    assert set(result.lomo["metric"]) >= {"energy_per_output_token_j", "itl_p50_s"}
    assert result.seconds < 60


def test_locked_clock_rows_are_brought_back_to_the_default_clock(tmp_path: Path) -> None:
    _, plain = _own_measurements(tmp_path, None)
    _, locked = _own_measurements(tmp_path, 1400)
    data = training.training_data(locked)
    assert data.meta["locked_clock"].all()
    ref = training.training_data(plain)
    for k in ("itl_p50_s", "throughput_output_tok_s", "avg_power_w"):
        assert not np.allclose(data.M_raw[k], ref.M[k])  # measured at 1400 MHz: different
        assert data.M[k].to_numpy() == pytest.approx(ref.M[k].to_numpy(), rel=0.03), k


def test_failed_measurements_are_dropped_and_counted(tmp_path: Path) -> None:
    _, plain = _own_measurements(tmp_path, None)
    failed = plain[0].model_copy(update={"status": "failed", "failure_reason": "oom", "metrics": None})
    data = training.training_data([*plain, failed])
    assert len(data) == len(plain) and data.dropped == {"failed measurements": 1}


def test_residual_quantiles_are_calibrated_apart_per_regime() -> None:
    rng = np.random.default_rng(0)
    n = 40
    pred = np.full(2 * n, 0.02)
    measured = pred * np.exp(np.concatenate([rng.normal(0.0, 0.05, n), rng.normal(0.7, 0.2, n)]))
    cv = pd.DataFrame({"itl_p50_s": measured, "itl_p50_s_pred": pred,
                       "regime": ["continuous"] * n + ["static"] * n})
    q = training.regime_residual_quantiles(cv)
    pooled = training.residual_quantiles(cv)["itl_p50_s"]
    assert set(q) == {"continuous", "static"}
    assert q["continuous"]["itl_p50_s"]["0.8"] < 0.1 < pooled["0.8"] < q["static"]["itl_p50_s"]["0.8"]
    few = cv.iloc[: n + 5]  # 5 static rows: below min_rows, that regime is left out (the predictor falls back)
    assert set(training.regime_residual_quantiles(few)) == {"continuous"}
    assert training.regime_of([1.0, 0.5, 0.2, 0.0]).tolist() == ["continuous", "continuous", "static", "static"]


def test_tpot_is_learned_only_from_several_models() -> None:
    """TPOT measured on a few models would be a guess for the next: it is derived from ITL until
    ``MIN_TPOT_MODELS`` models (and 20 rows) measured it; each held-out fold decides for itself."""
    from recommender.surrogate import targets as T

    v3 = load_mlenergy_v3(PUBLIC).measurements
    data = training.training_data(v3)
    n = len(data)
    models = data.meta["model"].to_numpy()
    names = list(dict.fromkeys(models))
    data.Y["tpot_p50_s"] = np.nan
    assert not training.tpot_is_learned(data)
    data.Y["tpot_p50_s"] = np.where(np.isin(models, names[:2]), 0.01, np.nan)
    data.Y = pd.concat([data.Y] * 10, ignore_index=True)  # enough rows: only the model count is short
    data.meta = pd.concat([data.meta] * 10, ignore_index=True)
    data.X = pd.concat([data.X] * 10, ignore_index=True)
    assert len(data) == 10 * n and not training.tpot_is_learned(data)
    assert len(names) == 3
    data.Y["tpot_p50_s"] = np.where(np.isin(data.meta["model"], names), 0.01, np.nan)
    assert training.tpot_is_learned(data) == (T.MIN_TPOT_MODELS <= 3)
    data.meta.loc[data.meta.index[: T.MIN_TPOT_MODELS], "model"] = [f"m{i}" for i in range(T.MIN_TPOT_MODELS)]
    data.Y.loc[data.Y.index[: T.MIN_TPOT_MODELS], "tpot_p50_s"] = 0.01
    assert training.tpot_is_learned(data)


def test_quarantined_measurements_stay_on_disk_but_are_not_trained_on(tmp_path: Path) -> None:
    from recommender.dataset import QUARANTINE_FILE, load_measurements, load_training_measurements
    from recommender.errors import InputError

    root, own = _own_measurements(tmp_path, None)
    bad = own[0].id
    (root / QUARANTINE_FILE).write_text(f"# suspicious runs\n{bad}  dummy weights route oddly  # see notes\n")
    kept, left = load_training_measurements([root])
    assert len(load_measurements([root])) == 4 and len(kept) == 3
    assert left == {bad: "dummy weights route oddly"} and bad not in {m.id for m in kept}
    result = train_surrogate([root], ("mlenergy-v3",), PUBLIC, out=None, params={"n_estimators": 5}, validate=False)
    assert result.data_summary["own_measurements"] == 3 and result.data_summary["quarantined"] == left
    (root / QUARANTINE_FILE).write_text(f"{bad}\n")
    with pytest.raises(InputError, match="reason is required"):
        load_training_measurements([root])


def test_model_balance_weights_shrink_the_models_measured_most() -> None:
    models = ["big"] * 9 + ["small"]
    flat = training.model_balance_weights(models, 0.0)
    assert np.allclose(flat, 1.0)
    equal = training.model_balance_weights(models, 1.0)
    assert equal.mean() == pytest.approx(1.0)
    assert equal[:9].sum() == pytest.approx(equal[9])  # every model the same total weight
    half = training.model_balance_weights(models, 0.5)
    assert half[9] / half[0] == pytest.approx(3.0)  # sqrt(9 / 1)


def test_fit_estimator_balances_models_by_default() -> None:
    """The default fit weighs rows by model (MODEL_BALANCE_POWER); balance=0 is the unweighted fit."""
    data = training.training_data(load_mlenergy_v3(PUBLIC).measurements)
    X = data.X[list(training.FEATURE_NAMES)]
    assert data.meta["model"].value_counts().nunique() > 1  # unequal row counts, so the weights differ
    balanced = training.fit_estimator(data, n_estimators=10).predict(X)
    explicit = training.fit_estimator(data, sample_weight=training.model_balance_weights(data.meta["model"]),
                                      balance=0.0, n_estimators=10).predict(X)
    plain = training.fit_estimator(data, balance=0.0, n_estimators=10).predict(X)
    assert np.allclose(balanced, explicit, equal_nan=True)
    assert not np.allclose(balanced, plain, equal_nan=True)
