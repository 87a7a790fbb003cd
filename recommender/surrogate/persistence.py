"""Save and load a trained surrogate without executing arbitrary code: skops + a JSON model card.

``<dir>/<name>.skops`` holds the fitted estimator in skops' format, loaded with an explicit list of trusted
types (:data:`TRUSTED_TYPES`); anything else in the file is refused, as skops' own untrusted-type check
reports it. ``<dir>/<name>.card.json`` records what the artifact is and where it came from: the artifact's
SHA-256 and size, library versions, the feature list, the training data's hash and sizes per source, the
validation errors (leave-one-model-out, leave-one-workload-out), the interval calibration and the DVFS
parameters. :func:`load` refuses, with an :class:`~recommender.errors.ArtifactError` naming the fix:

- a missing card or artifact;
- an artifact whose SHA-256 differs from the card's (tampered or corrupted);
- a scikit-learn whose major.minor differs from the one that saved it;
- a feature list that differs from this code's :data:`~recommender.surrogate.features.FEATURE_NAMES`;
- types outside :data:`TRUSTED_TYPES` in the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from recommender.errors import ArtifactError
from recommender.surrogate import dvfs
from recommender.surrogate.features import FEATURE_NAMES
from recommender.surrogate.predictor import Surrogate

logger = logging.getLogger(__name__)

CARD_SCHEMA_VERSION = 1
#: Types beyond skops' defaults (numpy, builtins, standard sklearn internals) the artifact may contain.
TRUSTED_TYPES: tuple[str, ...] = (
    "recommender.surrogate.model.SurrogateRegressor",
    "sklearn.tree._tree.Tree",
)
ENV_MODEL_DIR = "RECOMMENDER_MODEL_DIR"
_FILE_MODE = 0o644  # mkstemp creates 0600; artifacts are meant to be read by everyone
DEFAULT_NAME = "surrogate-v1"


def default_model_dir() -> Path:
    """``$RECOMMENDER_MODEL_DIR`` when set, else the repository's top-level ``models/`` folder (a source
    checkout or editable install), else the copy installed with the package as ``recommender._models``."""
    env = os.environ.get(ENV_MODEL_DIR)
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2] / "models"
    if repo.is_dir():
        return repo
    import importlib.util

    spec = importlib.util.find_spec("recommender._models")  # a namespace package mapped from models/
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return repo


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of the libraries the artifact depends on."""
    import numpy
    import pandas
    import scipy
    import sklearn
    import skops

    from recommender import __version__

    return {
        "python": platform.python_version(), "scikit-learn": sklearn.__version__, "skops": skops.__version__,
        "numpy": numpy.__version__, "scipy": scipy.__version__, "pandas": pandas.__version__,
        "llm-energy-recommender": __version__,
    }


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def paths(directory: str | Path, name: str) -> tuple[Path, Path]:
    """(artifact path, card path) of model ``name`` in ``directory``."""
    d = Path(directory)
    return d / f"{name}.skops", d / f"{name}.card.json"


def save(surrogate: Surrogate, directory: str | Path, name: str = DEFAULT_NAME,
         card: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write the estimator (skops, deflate-compressed) and its card; return both paths.

    Args:
        surrogate: the fitted surrogate.
        directory: output folder (created).
        name: file stem.
        card: extra card fields (training data, validation...); the artifact hash, versions, feature list,
            interval quantiles, DVFS parameters and serving facts are filled in here.
    """
    import skops.io as sio

    art, card_path = paths(directory, name)
    art.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=art.parent, suffix=".skops.tmp")
    os.close(fd)
    try:
        sio.dump(surrogate.estimator, tmp, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, art)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    est = surrogate.estimator
    full: dict[str, Any] = dict(card or {})
    full.update({
        "schema_version": CARD_SCHEMA_VERSION,
        "name": name,
        "artifact": art.name,
        "artifact_sha256": sha256_file(art),
        "artifact_bytes": art.stat().st_size,
        "format": "skops",
        "trusted_types": list(TRUSTED_TYPES),
        "versions": library_versions(),
        "feature_names": list(getattr(est, "feature_names_in_", FEATURE_NAMES)),
        "estimator": {"class": type(est).__name__, "params": _jsonable(est.get_params())},
        "interval_quantiles": surrogate.interval_quantiles,
        "residual_quantiles_by_regime": surrogate.regime_quantiles,
        "tpot_learned": surrogate.tpot_learned,
        "engine_version": surrogate.engine_version,
        "dvfs": {"params": surrogate.dvfs_params.to_dict(), "sources": dvfs.PARAM_SOURCES},
    })
    fd, tmp = tempfile.mkstemp(dir=card_path.parent, suffix=".card.tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(full, f, indent=1, sort_keys=False, default=str)
        f.write("\n")
    os.chmod(tmp, _FILE_MODE)
    os.replace(tmp, card_path)
    logger.info("saved surrogate %s (%d bytes) and its card to %s", art.name, full["artifact_bytes"], art.parent)
    surrogate.card = full
    return art, card_path


def load(directory: str | Path | None = None, name: str = DEFAULT_NAME) -> Surrogate:
    """Load and verify model ``name`` from ``directory`` (default :func:`default_model_dir`).

    Raises:
        ArtifactError: missing files, hash mismatch, scikit-learn version mismatch, feature-list mismatch,
            untrusted types, or an unreadable card (each message says what to do).
    """
    import sklearn
    import skops.io as sio

    d = Path(directory) if directory is not None else default_model_dir()
    art, card_path = paths(d, name)
    if not card_path.is_file():
        raise ArtifactError(f"model card {card_path} is missing; retrain with `recommender train --out {d} "
                            f"--name {name}` or point {ENV_MODEL_DIR} at a folder holding {name}.card.json")
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"model card {card_path} is not readable JSON ({e}); retrain or restore it") from e
    if card.get("schema_version") != CARD_SCHEMA_VERSION:
        raise ArtifactError(f"model card {card_path} has schema_version {card.get('schema_version')!r}; this "
                            f"code reads {CARD_SCHEMA_VERSION}: retrain with `recommender train`")
    if not art.is_file():
        raise ArtifactError(f"surrogate artifact {art} is missing (its card is there); retrain or restore it")
    digest = sha256_file(art)
    if digest != card.get("artifact_sha256"):
        raise ArtifactError(f"surrogate artifact {art} does not match its card (sha256 {digest[:12]}... vs "
                            f"{str(card.get('artifact_sha256'))[:12]}...): the file was modified or corrupted; "
                            "retrain or restore both files together")
    saved = str(card.get("versions", {}).get("scikit-learn", "?"))
    if _major_minor(saved) != _major_minor(sklearn.__version__):
        raise ArtifactError(f"surrogate {art.name} was saved with scikit-learn {saved}, this is "
                            f"{sklearn.__version__}; install scikit-learn=={_major_minor(saved)}.* or retrain "
                            "with `recommender train`")
    if list(card.get("feature_names", [])) != list(FEATURE_NAMES):
        raise ArtifactError(f"surrogate {art.name} was trained on a different feature list than this code "
                            "computes; retrain with `recommender train`")
    try:
        untrusted = set(sio.get_untrusted_types(file=art)) - set(TRUSTED_TYPES)
    except Exception as e:  # noqa: BLE001 - a corrupt zip must become our error
        raise ArtifactError(f"surrogate artifact {art} is not a readable skops file ({e}); retrain") from e
    if untrusted:
        raise ArtifactError(f"surrogate artifact {art} contains types that are not trusted: "
                            f"{', '.join(sorted(untrusted))}; refusing to load it")
    try:
        est = sio.load(art, trusted=list(TRUSTED_TYPES))
    except Exception as e:  # noqa: BLE001
        raise ArtifactError(f"surrogate artifact {art} could not be loaded ({e}); retrain") from e
    if list(getattr(est, "feature_names_in_", [])) != list(FEATURE_NAMES):
        raise ArtifactError(f"surrogate {art.name}'s estimator expects other features than its card says; retrain")
    params = dvfs.DVFSParams(**card.get("dvfs", {}).get("params", {}))
    quantiles = {k: list(v) for k, v in card.get("interval_quantiles", {}).items()}
    by_regime = {r: {m: dict(q) for m, q in per.items()}
                 for r, per in card.get("residual_quantiles_by_regime", {}).items()}
    return Surrogate(estimator=est, interval_quantiles=quantiles, regime_quantiles=by_regime,
                     tpot_learned=bool(card.get("tpot_learned", False)), engine_version=card.get("engine_version"),
                     dvfs_params=params, card=card)


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in params.items():
        try:
            json.dumps(v)
            out[k] = v
        except TypeError:
            out[k] = repr(v)
    return out
