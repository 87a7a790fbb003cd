"""SurrogateEvaluator: scikit-learn predictions in milliseconds, with intervals, OOD notes and provenance.

Implements the :class:`~recommender.evaluators.base.Evaluator` contract: ``evaluate`` never raises for a config
that cannot run; a config that :func:`recommender.space.check_feasibility` rejects comes back as a failed
Measurement with ``failure_reason="infeasible"``. Predictions carry provenance ``predicted``, or ``modeled``
when a locked clock or power limit was applied through the analytical DVFS model; ``intervals`` holds the
calibrated 80% interval of every predicted metric and ``notes`` says when the query lies outside the training
data (and which features). Thread-safety: one thread at a time, like every evaluator.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from recommender.evaluators.base import Evaluator

if TYPE_CHECKING:
    import pandas as pd

    from recommender.config import Scenario, ServingConfig
    from recommender.measurement import Measurement
    from recommender.surrogate.predictor import Surrogate

logger = logging.getLogger(__name__)


class SurrogateEvaluator(Evaluator):
    """Evaluate configs with a trained surrogate.

    Args:
        surrogate: a loaded :class:`~recommender.surrogate.predictor.Surrogate`.
        check_feasibility: reject configs that cannot run (memory, parallelism, clock range) before predicting.
    """

    name: ClassVar[str] = "surrogate"

    def __init__(self, surrogate: Surrogate, check_feasibility: bool = True) -> None:
        self.surrogate = surrogate
        self.check_feasibility = check_feasibility

    @classmethod
    def load_default(cls, name: str = "surrogate-v1", **kwargs: Any) -> SurrogateEvaluator:
        """The shipped surrogate (``$RECOMMENDER_MODEL_DIR`` or the repository's ``models/``), verified.

        Raises:
            ArtifactError: missing, tampered or mismatched artifact (the message says how to fix it).
        """
        from recommender.surrogate.persistence import load

        return cls(load(None, name), **kwargs)

    @classmethod
    def from_dir(cls, directory: str | Path, name: str = "surrogate-v1", **kwargs: Any) -> SurrogateEvaluator:
        """A surrogate saved by ``recommender train --out directory --name name``."""
        from recommender.surrogate.persistence import load

        return cls(load(directory, name), **kwargs)

    @property
    def source(self) -> str:
        """``surrogate:<name>@<sha256 prefix>`` for Measurement.source."""
        card = self.surrogate.card
        return f"surrogate:{card.get('name', 'unsaved')}@{str(card.get('artifact_sha256', ''))[:12]}"

    def predict_frame(self, configs: Sequence[ServingConfig] | pd.DataFrame, scenario: Scenario,
                      with_ood: bool = True) -> pd.DataFrame:
        """Vectorized predictions (no feasibility check): one row per config, see
        :meth:`recommender.surrogate.predictor.Surrogate.predict_features` for the columns."""
        return self.surrogate.predict_frame(configs, scenario, with_ood=with_ood)

    def evaluate(self, config: ServingConfig, scenario: Scenario) -> Measurement:
        """Predict one config (see :meth:`evaluate_many`)."""
        return self.evaluate_many([config], scenario)[0]

    def evaluate_many(self, configs: Sequence[ServingConfig], scenario: Scenario) -> list[Measurement]:
        """Predict ``configs`` in one vectorized pass; infeasible ones come back failed, in input order."""
        from recommender.measurement import Measurement

        configs = list(configs)
        reasons = [self._infeasible(c, scenario) for c in configs]
        todo = [i for i, r in enumerate(reasons) if r is None]
        frame = self.predict_frame([configs[i] for i in todo], scenario) if todo else None
        out: list[Measurement] = []
        row_of = {i: k for k, i in enumerate(todo)}
        versions = {"surrogate": str(self.surrogate.card.get("name", "unsaved")),
                    "vllm": str(self.surrogate.engine_version or "")}
        for i, c in enumerate(configs):
            if reasons[i] is not None:
                out.append(Measurement(
                    scenario=scenario, config=c, status="failed", failure_reason="infeasible",
                    failure_detail=reasons[i] or "", provenance="predicted", source=self.source, versions=versions,
                ))
                continue
            assert frame is not None
            out.append(self._measurement(frame.iloc[row_of[i]], c, scenario, versions))
        return out

    def _infeasible(self, config: ServingConfig, scenario: Scenario) -> str | None:
        if not self.check_feasibility:
            return None
        try:
            from recommender.space import check_feasibility
        except ImportError:  # the space module is optional for the surrogate
            return None
        result = check_feasibility(config, scenario)
        return None if result.ok else "; ".join(result.reasons)

    def _measurement(self, row: pd.Series, config: ServingConfig, scenario: Scenario,
                     versions: dict[str, str]) -> Measurement:
        from recommender.measurement import Measurement, Metrics
        from recommender.surrogate.targets import METRICS

        values = {m: _finite(row[m]) for m in METRICS}
        intervals = {m: (float(row[f"{m}_low"]), float(row[f"{m}_high"])) for m in METRICS
                     if values[m] is not None and np.isfinite(row[f"{m}_low"]) and np.isfinite(row[f"{m}_high"])}
        notes = []
        if row["provenance"] == "modeled":
            notes.append(f"GPU clock / power limit applied by the analytical DVFS model (SM clock at "
                         f"{row['clock_ratio']:.2f} of max)")
        if row["ood"]:
            notes.append(f"outside the training data: {row['ood_reasons']}; interval widened")
        if not row["fits_memory"]:
            notes.append("weights and runtime overhead leave no KV cache by the roofline memory model")
        return Measurement(
            scenario=scenario, config=config, provenance=row["provenance"], source=self.source,
            metrics=Metrics.model_validate(values), intervals=intervals, versions=versions, notes="; ".join(notes),
        )


def _finite(v: Any) -> float | None:
    f = float(v)
    return f if np.isfinite(f) else None
