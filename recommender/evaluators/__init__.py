"""Evaluators: real vLLM measurement, surrogate prediction and replay of earlier measurements."""

from __future__ import annotations

from recommender.evaluators.base import Evaluator

__all__ = ["Evaluator"]
