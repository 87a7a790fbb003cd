"""The one factory for energy meters: NVML where it works, a NullMeter elsewhere, cached per GPU set."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from recommender.energy.meter import EnergyMeter, NullMeter, NVMLEnergyMeter
from recommender.energy.nvml import NVMLUnavailableError, device_count
from recommender.errors import InputError

logger = logging.getLogger(__name__)


_cache_lock = threading.Lock()
_meters: dict[tuple[tuple[int, ...], bool], EnergyMeter] = {}


def get_energy_meter(gpu_indices: Sequence[int], *, strict: bool = True) -> EnergyMeter:
    """The shared meter for ``gpu_indices``: NVML when it loads and sees GPUs, else a :class:`NullMeter`.

    Cached per index tuple (and ``strict``), so callers share one meter and one sampler per GPU set; use
    distinct window names when sharing. ``strict`` is passed to the NullMeter (see its contract).

    Raises:
        InputError: ``gpu_indices`` is empty, repeats an index, or names a GPU NVML does not see.
        EnergyMeterError: the unofficial ``pynvml`` package is installed (refused, never silently null).
    """
    indices = tuple(int(i) for i in gpu_indices)
    if not indices or len(set(indices)) != len(indices):
        raise InputError("gpu_indices", list(gpu_indices), "name each GPU index the config uses once, e.g. [0, 1]")
    key = (indices, strict)
    with _cache_lock:
        meter = _meters.get(key)
        if meter is not None:
            return meter
        try:
            count = device_count()
        except NVMLUnavailableError as e:
            meter = NullMeter(indices, reason=str(e), strict=strict)
        else:
            if count == 0:
                meter = NullMeter(indices, reason="NVML sees no GPU", strict=strict)
            else:
                missing = [i for i in indices if not 0 <= i < count]
                if missing:
                    raise InputError(
                        "gpu_indices", list(indices), f"use NVML indices 0..{count - 1} (this host has {count} GPUs)"
                    )
                meter = NVMLEnergyMeter(indices)
        logger.debug("energy meter for GPUs %s: %s", list(indices), type(meter).__name__)
        _meters[key] = meter
        return meter


def clear_energy_meter_cache() -> None:
    """Close and forget every cached meter (tests, or after a driver reload)."""
    with _cache_lock:
        for meter in _meters.values():
            meter.close()
        _meters.clear()
