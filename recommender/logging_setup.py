"""Logging configuration, called only by the CLI and ``app.py`` (the library itself only logs).

Log records go through ``tqdm.write`` so they do not break progress bars.
"""

from __future__ import annotations

import logging


class _TqdmHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def configure(level: int = logging.INFO) -> None:
    """Route ``recommender.*`` logs to stderr via tqdm at ``level``. Idempotent."""
    root = logging.getLogger("recommender")
    root.setLevel(level)
    if not any(isinstance(h, _TqdmHandler) for h in root.handlers):
        h = _TqdmHandler()
        h.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(h)
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    except ImportError:  # pragma: no cover - optuna is a core dependency
        pass
