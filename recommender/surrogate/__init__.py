"""The surrogate: predicts serving metrics of a config in a scenario in milliseconds, with honest intervals.

- :mod:`~recommender.surrogate.roofline` / :mod:`~recommender.surrogate.features`: name-free features and physics;
- :mod:`~recommender.surrogate.model`: :class:`SurrogateRegressor`, the scikit-learn estimator;
- :mod:`~recommender.surrogate.targets`: what is learned and how served metrics derive from it;
- :mod:`~recommender.surrogate.dvfs`: the analytical GPU clock / power-limit model;
- :mod:`~recommender.surrogate.public_data`: adapters for the public datasets;
- :mod:`~recommender.surrogate.training`, :mod:`~recommender.surrogate.build`: training and validation;
- :mod:`~recommender.surrogate.persistence`: skops artifact + JSON card, verified on load;
- :mod:`~recommender.surrogate.predictor`: :class:`Surrogate`, the served bundle.

The evaluator is :class:`recommender.evaluators.surrogate.SurrogateEvaluator`.
"""

from __future__ import annotations

from recommender.surrogate.features import FEATURE_NAMES, build_features
from recommender.surrogate.model import SurrogateRegressor
from recommender.surrogate.predictor import Surrogate

__all__ = ["FEATURE_NAMES", "Surrogate", "SurrogateRegressor", "build_features"]
