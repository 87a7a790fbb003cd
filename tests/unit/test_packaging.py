"""Installed copies find their knob spaces and the shipped surrogate from any working directory."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from recommender.space import _space_dirs, list_spaces
from recommender.surrogate import persistence

pytestmark = pytest.mark.unit


def test_space_dirs_are_real_folders_from_any_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    dirs = _space_dirs()
    assert dirs and all(isinstance(d, Path) and d.is_dir() for d in dirs)
    assert {"smoke", "vllm-default", "recommend"} <= set(list_spaces())


def test_model_dir_falls_back_to_the_installed_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(persistence.ENV_MODEL_DIR, raising=False)
    d = persistence.default_model_dir()
    assert isinstance(d, Path) and "MultiplexedPath" not in str(d)
    assert (d / "surrogate-v1.card.json").is_file()
    spec = importlib.util.find_spec("recommender._models")
    if spec is not None and spec.submodule_search_locations:  # wheel or editable install
        installed = Path(next(iter(spec.submodule_search_locations)))
        assert (installed / "surrogate-v1.card.json").is_file()
    monkeypatch.setenv(persistence.ENV_MODEL_DIR, os.fspath(Path("/nonexistent")))
    assert persistence.default_model_dir() == Path("/nonexistent")
