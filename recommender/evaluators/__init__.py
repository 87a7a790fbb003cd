"""Evaluators: real vLLM measurement, surrogate prediction and replay of earlier measurements."""

from __future__ import annotations

from typing import Any

from recommender.evaluators.base import Evaluator

__all__ = ["Evaluator", "ReplayEvaluator", "SurrogateEvaluator", "VLLMEvaluator"]


def __getattr__(name: str) -> Any:
    """Lazy access so importing the protocol does not import pandas, sklearn or the serving stack."""
    if name == "ReplayEvaluator":
        from recommender.evaluators.replay import ReplayEvaluator

        return ReplayEvaluator
    if name == "SurrogateEvaluator":
        from recommender.evaluators.surrogate import SurrogateEvaluator

        return SurrogateEvaluator
    if name == "VLLMEvaluator":
        from recommender.evaluators.vllm import VLLMEvaluator

        return VLLMEvaluator
    raise AttributeError(name)
