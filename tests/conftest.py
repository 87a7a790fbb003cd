"""Shared fixtures and tier handling: ``gpu`` tests skip without an NVML device."""

from __future__ import annotations

import pytest


def _has_nvml_gpu() -> bool:
    try:
        import pynvml  # noqa: PLC0415 - only probing

        pynvml.nvmlInit()
        n = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
        return n > 0
    except Exception:  # noqa: BLE001 - any failure means no usable GPU
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if any(item.get_closest_marker("gpu") for item in items) and not _has_nvml_gpu():
        skip = pytest.mark.skip(reason="needs an NVIDIA GPU with NVML")
        for item in items:
            if item.get_closest_marker("gpu"):
                item.add_marker(skip)
