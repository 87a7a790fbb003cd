"""The measurements dataset: one JSON file per Measurement, loadable as a list or a DataFrame.

Layout: ``<root>/<scenario key>/<measurement id>.json`` with raw artifacts (per-request records, power
timeline, server log) beside it in ``<measurement id>/``. Files are written atomically (temp + rename), so
an interrupted run never leaves a half-written measurement, and nothing already written is ever rewritten.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from recommender.errors import InputError
from recommender.measurement import Measurement

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)


def save_measurement(m: Measurement, root: str | Path) -> Path:
    """Write ``m`` as ``root/<scenario key>/<id>.json`` atomically and return the path."""
    d = Path(root) / m.scenario.key()
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{m.id}.json"
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(m.model_dump_json(indent=1))
    os.replace(tmp, path)
    return path


def artifact_dir(m: Measurement, root: str | Path) -> Path:
    """Folder for ``m``'s raw files; ``Measurement.artifacts`` paths are relative to ``root``."""
    d = Path(root) / m.scenario.key() / m.id
    d.mkdir(parents=True, exist_ok=True)
    return d


def load_measurements(paths: Iterable[str | Path]) -> list[Measurement]:
    """Load measurements from JSON files, JSON-lines files, or folders searched recursively.

    Raises:
        InputError: a path that does not exist or a file that is not a valid Measurement (naming it).
    """
    out: list[Measurement] = []
    for p in map(Path, paths):
        if not p.exists():
            raise InputError("measurements", str(p), "give an existing measurement file or folder")
        files = sorted(p.rglob("*.json")) + sorted(p.rglob("*.jsonl")) if p.is_dir() else [p]
        for f in files:
            out.extend(_load_file(f))
    return out


#: File, anywhere under a measurement folder (best: in the folder of the runs it names, so that folder and every
#: parent find it), listing measurements kept on disk but not trained on: one per line, ``<measurement id>
#: <reason>``; ``#`` starts a comment.
QUARANTINE_FILE = "QUARANTINE.txt"


def quarantined(paths: Iterable[str | Path]) -> dict[str, str]:
    """Measurement id -> reason, from every :data:`QUARANTINE_FILE` under the given folders (files: none).

    Raises:
        InputError: a line without a reason (naming the file and line).
    """
    out: dict[str, str] = {}
    for p in map(Path, paths):
        for f in sorted(p.rglob(QUARANTINE_FILE)) if p.is_dir() else []:
            for i, line in enumerate(f.read_text().splitlines(), 1):
                text = line.split("#", 1)[0].strip()
                if not text:
                    continue
                parts = text.split(None, 1)
                if len(parts) < 2:
                    raise InputError(f"{f}:{i}", text, "write '<measurement id> <reason>' (the reason is required)")
                out[parts[0]] = parts[1]
    return out


def load_training_measurements(paths: Iterable[str | Path]) -> tuple[list[Measurement], dict[str, str]]:
    """:func:`load_measurements` without the quarantined ones (see :func:`quarantined`), and those left out
    (id -> reason, only ids that were found)."""
    paths = list(paths)
    found = load_measurements(paths)
    q = quarantined(paths)
    left = {m.id: q[m.id] for m in found if m.id in q}
    return [m for m in found if m.id not in q], left


def _load_file(f: Path) -> list[Measurement]:
    try:
        text = f.read_text()
        if f.suffix == ".jsonl":
            return [Measurement.model_validate_json(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
        if isinstance(data, dict) and "scenario" not in data:
            return []  # some other JSON (a card, a summary) living in the same folder
        items = data if isinstance(data, list) else [data]
        return [Measurement.model_validate(d) for d in items]
    except (ValidationError, ValueError) as e:
        raise InputError("measurements", str(f), f"not a valid measurement file ({str(e).splitlines()[0]})") from e


def to_frame(measurements: Iterable[Measurement]) -> pd.DataFrame:
    """One row per measurement (``Measurement.row()``)."""
    import pandas as pd

    return pd.DataFrame([m.row() for m in measurements])
