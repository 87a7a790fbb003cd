"""Persistence: skops artifact + card round-trips; tampered or mismatched files are refused."""

from __future__ import annotations

import functools
import json
import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from recommender.errors import ArtifactError
from recommender.surrogate import persistence
from recommender.surrogate.build import TrainResult, train_surrogate
from recommender.surrogate.model import SurrogateRegressor

pytestmark = pytest.mark.unit
PUBLIC = Path(__file__).parent / "data" / "public"
SOURCES = ("mlenergy-v3", "llm-inference-bench", "splitwise")


@functools.lru_cache(maxsize=1)
def _trained(out: str) -> TrainResult:
    return train_surrogate([], SOURCES, PUBLIC, out=out, name="tiny", params={"n_estimators": 15})


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("models")
    _trained(str(d))
    return d


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_round_trip_and_card_contents(saved: Path) -> None:
    loaded = persistence.load(saved, "tiny")
    original = _trained(str(saved)).surrogate
    from recommender.config import Hardware, Scenario, ServingConfig
    from recommender.presets import get_preset

    sc = Scenario(model="Qwen3-8B", hardware=Hardware(gpu="H100"), workload=get_preset("mlenergy-chat"))
    configs = [ServingConfig(max_num_seqs=s) for s in (8, 64, 512)]
    pd.testing.assert_frame_equal(loaded.predict_frame(configs, sc), original.predict_frame(configs, sc))
    card = loaded.card
    assert card["artifact_sha256"] == persistence.sha256_file(saved / "tiny.skops")
    assert card["versions"]["scikit-learn"] and card["versions"]["skops"] and card["versions"]["numpy"]
    assert card["training_data"]["rows"] > 10 and len(card["training_data"]["sha256"]) == 64
    assert set(card["training_data"]["rows_per_source"]) >= {"mlenergy-leaderboard-v3/llm_configs_flat.csv"}
    assert card["validation"]["leave_one_model_out"] and card["validation"]["leave_one_workload_out"]
    assert card["dvfs"]["params"] and card["dvfs"]["sources"]
    assert card["trusted_types"] == list(persistence.TRUSTED_TYPES)
    assert (saved / "tiny.skops").stat().st_size < 5_000_000


def test_tampered_artifact_is_refused(saved: Path, tmp_path: Path) -> None:
    d = _copy(saved, tmp_path / "m")
    art = d / "tiny.skops"
    data = bytearray(art.read_bytes())
    data[len(data) // 2] ^= 0xFF
    art.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match its card"):
        persistence.load(d, "tiny")


def test_missing_card_or_artifact(saved: Path, tmp_path: Path) -> None:
    d = _copy(saved, tmp_path / "m")
    (d / "tiny.card.json").unlink()
    with pytest.raises(ArtifactError, match="card .* is missing"):
        persistence.load(d, "tiny")
    d2 = _copy(saved, tmp_path / "m2")
    (d2 / "tiny.skops").unlink()
    with pytest.raises(ArtifactError, match="is missing"):
        persistence.load(d2, "tiny")


@pytest.mark.parametrize(("field", "value", "match"), [
    ("versions", {"scikit-learn": "0.24.2"}, "scikit-learn 0.24.2"),
    ("feature_names", ["a", "b"], "different feature list"),
    ("schema_version", 99, "schema_version"),
])
def test_mismatched_card_is_refused(saved: Path, tmp_path: Path, field: str, value: object, match: str) -> None:
    d = _copy(saved, tmp_path / "m")
    card_path = d / "tiny.card.json"
    card = json.loads(card_path.read_text())
    card[field] = value
    card_path.write_text(json.dumps(card))
    with pytest.raises(ArtifactError, match=match):
        persistence.load(d, "tiny")


class EvilRegressor(SurrogateRegressor):
    """A subclass the loader has never heard of: its type must not be trusted."""


def test_untrusted_types_are_refused(saved: Path, tmp_path: Path) -> None:
    import skops.io as sio

    d = _copy(saved, tmp_path / "m")
    est = _trained(str(saved)).surrogate.estimator
    evil = EvilRegressor(**est.get_params())
    evil.__dict__.update({k: v for k, v in est.__dict__.items() if k.endswith("_") or k.startswith("_")})
    sio.dump(evil, d / "tiny.skops", compression=zipfile.ZIP_DEFLATED)
    card = json.loads((d / "tiny.card.json").read_text())
    card["artifact_sha256"] = persistence.sha256_file(d / "tiny.skops")
    (d / "tiny.card.json").write_text(json.dumps(card))
    with pytest.raises(ArtifactError, match="not trusted"):
        persistence.load(d, "tiny")


def test_model_dir_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(persistence.ENV_MODEL_DIR, str(tmp_path))
    assert persistence.default_model_dir() == tmp_path
    monkeypatch.delenv(persistence.ENV_MODEL_DIR)
    assert persistence.default_model_dir().name == "models"
