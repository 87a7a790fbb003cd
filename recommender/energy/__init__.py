"""GPU energy measurement and control: the only package that talks to NVML.

* :func:`get_energy_meter` gives an :class:`EnergyMeter` for the GPUs a config occupies: an
  :class:`NVMLEnergyMeter` where NVML works, a :class:`NullMeter` elsewhere. Windows return
  :class:`EnergyWindow` with ``energy_j=None`` (never a made-up number) when there is no trustworthy data.
* :class:`PowerSampler` records power, clocks, temperature and throttle reasons every 100 ms.
* :class:`GPUActuator` locks the SM clock / sets the power limit for a run and always restores them;
  it is off unless the operator passes ``enabled=True``.
* :func:`gpu_inventory` describes the GPUs on this host (empty on CPU-only hosts).

``pynvml`` (NVIDIA's ``nvidia-ml-py``) is imported lazily inside :mod:`recommender.energy.nvml`.
"""

from __future__ import annotations

from recommender.energy.actuator import GPUActuator
from recommender.energy.factory import clear_energy_meter_cache, get_energy_meter
from recommender.energy.meter import EnergyMeter, EnergyWindow, NullMeter, NVMLEnergyMeter
from recommender.energy.nvml import gpu_inventory
from recommender.energy.sampler import PowerSample, PowerSampler

__all__ = [
    "EnergyMeter",
    "EnergyWindow",
    "GPUActuator",
    "NVMLEnergyMeter",
    "NullMeter",
    "PowerSample",
    "PowerSampler",
    "clear_energy_meter_cache",
    "get_energy_meter",
    "gpu_inventory",
]
