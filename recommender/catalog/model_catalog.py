"""The bundled model catalog: ``models/*.json`` (real config.json files plus a ``_catalog`` block).

Each file is a model's published Hugging Face ``config.json`` with one extra top-level key::

    "_catalog": {"name": ..., "hf_id": ..., "aliases": [...], "source": <config.json URL>,
                 "published_params_b": ..., "published_active_params_b": ... (MoE), ...}

The files are package data, read through :mod:`importlib.resources` once and cached.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from recommender.catalog.architecture import ModelSpec, load_config_json
from recommender.errors import InputError, suggest

logger = logging.getLogger(__name__)

_MODELS_DIR = "models"


def _key(text: str) -> str:
    return re.sub(r"[\s_]+", "-", text.strip().lower())


@functools.cache
def _load() -> tuple[tuple[ModelSpec, ...], dict[str, ModelSpec], dict[str, dict[str, Any]]]:
    """(specs sorted by name, lookup index, name -> _catalog block). Raises RuntimeError on a broken file."""
    folder = resources.files("recommender.catalog").joinpath(_MODELS_DIR)
    specs: list[ModelSpec] = []
    index: dict[str, ModelSpec] = {}
    blocks: dict[str, dict[str, Any]] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".json"):
            continue
        where = f"recommender/catalog/{_MODELS_DIR}/{entry.name}"
        config = json.loads(entry.read_text(encoding="utf-8"))
        block = config.get("_catalog")
        if not isinstance(block, Mapping) or not block.get("name") or not block.get("source"):
            raise RuntimeError(f"{where}: needs a _catalog block with at least name and source")
        try:
            spec = ModelSpec.from_hf_config(config, source=where)
        except InputError as e:  # a broken package file is a programmer error
            raise RuntimeError(f"{where}: {e}") from e
        spellings = [spec.name, *(block.get("aliases") or [])]
        if spec.hf_id:
            spellings += [spec.hf_id, spec.hf_id.rsplit("/", 1)[-1]]
        for spelling in spellings:
            other = index.get(_key(spelling))
            if other is not None and other.name != spec.name:
                raise RuntimeError(f"{where}: {spelling!r} already names {other.name!r}")
            index[_key(spelling)] = spec
        specs.append(spec)
        blocks[spec.name] = dict(block)
    specs.sort(key=lambda s: s.name.lower())
    logger.debug("loaded %d models from %s/", len(specs), _MODELS_DIR)
    return tuple(specs), index, blocks


def list_models() -> list[ModelSpec]:
    """All catalog models, sorted by name."""
    return list(_load()[0])


def catalog_entry(name: str) -> dict[str, Any]:
    """The ``_catalog`` block (source URL, published parameter counts) of a catalog model, by name or alias.

    Raises:
        InputError: not a catalog model.
    """
    spec = _lookup(name)
    if spec is None:
        raise InputError("model", name, _unknown_hint(name))
    return dict(_load()[2][spec.name])


def _lookup(name: str) -> ModelSpec | None:
    return _load()[1].get(_key(name))


def _unknown_hint(value: str) -> str:
    specs = _load()[0]
    names = [s.name for s in specs]
    choices = names + [s.hf_id for s in specs if s.hf_id]
    return (
        f"known models: {', '.join(names)}; or give a path to a config.json or a folder containing one"
        f"{suggest(value, choices)}"
    )


def _looks_like_path(value: str) -> bool:
    return value.endswith(".json") or value.startswith(("/", "./", "../", "~")) or "\\" in value


def get_model(name_or_path: str) -> ModelSpec:
    """A model by catalog name, Hugging Face id or alias (case-insensitive), or from a local config.json.

    Args:
        name_or_path: ``"Llama-3.1-8B"``, ``"meta-llama/Llama-3.1-8B-Instruct"``, ``"/models/x/config.json"``
            or ``"/models/x"`` (a folder holding config.json). Catalog names win over same-named folders.

    Raises:
        InputError: field ``model`` for an unknown name (with did-you-mean and the path hint), or the file's
            own error for a path that exists but is not a usable config.json.
    """
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise InputError("model", name_or_path, _unknown_hint(""))
    spec = _lookup(name_or_path)
    if spec is not None:
        return spec
    path = Path(name_or_path).expanduser()
    if path.exists() or _looks_like_path(name_or_path):
        return load_config_json(path)
    raise InputError("model", name_or_path, _unknown_hint(name_or_path))
