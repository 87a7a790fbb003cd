"""LLM Energy Recommender: the vLLM serving config that spends the least GPU energy under latency SLOs."""

from __future__ import annotations

__version__ = "0.1.0"
