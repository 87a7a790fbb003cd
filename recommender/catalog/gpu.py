"""GPU specifications from the bundled ``gpus.yaml`` catalog.

The catalog is package data (read through :mod:`importlib.resources`, so it works from an installed wheel),
validated once with pydantic and cached for the life of the process. Every numeric field carries a citation
in :attr:`GPUSpec.sources`; numbers that are estimates say so there.

Lookups are case-insensitive and ignore spaces, ``-`` and ``_`` and a leading ``NVIDIA``, so ``"h100"``,
``"H100-SXM"`` and the NVML device name ``"NVIDIA H100 80GB HBM3"`` all find the same entry.
"""

from __future__ import annotations

import functools
import logging
import re
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from recommender.errors import InputError, suggest

logger = logging.getLogger(__name__)

_CATALOG_FILE = "gpus.yaml"

#: Numeric fields of :class:`GPUSpec`; each must have an entry in ``sources`` (even when its value is None,
#: the citation says why).
NUMERIC_FIELDS: tuple[str, ...] = (
    "memory_gb",
    "memory_nvml_mib",
    "memory_bandwidth_tb_s",
    "peak_bf16_tflops",
    "peak_fp8_tflops",
    "tdp_w",
    "power_limit_min_w",
    "power_limit_max_w",
    "sm_clock_min_mhz",
    "sm_clock_max_mhz",
    "sm_clock_base_mhz",
    "idle_power_w",
    "nvlink_gb_s",
)


class GPUSpec(BaseModel):
    """One GPU product. Units are in the field names; FLOP/s numbers are dense (no 2:4 sparsity).

    Attributes:
        name: canonical name, e.g. ``"H100-SXM"``.
        aliases: other spellings, including the NVML device name (``"NVIDIA H100 80GB HBM3"``).
        architecture: ``ampere``, ``hopper``, ``ada`` or ``blackwell``.
        memory_gb: marketed memory capacity, decimal GB (80 for H100).
        memory_nvml_mib: total memory as NVML reports it, MiB (the usable capacity), or None if unknown.
        memory_bandwidth_tb_s: peak HBM/GDDR bandwidth, TB/s (10^12 bytes/s).
        peak_bf16_tflops: dense BF16 tensor-core peak, TFLOP/s.
        peak_fp8_tflops: dense FP8 tensor-core peak, TFLOP/s; None where the GPU has no FP8 (Ampere).
        tdp_w: board power at the default power limit, W.
        power_limit_min_w: lowest settable power limit, W.
        power_limit_max_w: highest settable power limit, W.
        sm_clock_min_mhz: lowest lockable SM clock, MHz.
        sm_clock_max_mhz: maximum boost SM clock, MHz.
        sm_clock_base_mhz: base SM clock, MHz, or None where unpublished.
        idle_power_w: typical idle draw at P0 with persistence mode on, W (see ``sources`` for estimate or not).
        nvlink_gb_s: per-GPU bidirectional NVLink bandwidth, GB/s; None for PCIe cards.
        sources: numeric field name -> citation (datasheet, measurement, or "estimate: ...").
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    aliases: tuple[str, ...] = ()
    architecture: Literal["ampere", "hopper", "ada", "blackwell"]
    memory_gb: float = Field(gt=0)
    memory_nvml_mib: int | None = Field(default=None, gt=0)
    memory_bandwidth_tb_s: float = Field(gt=0)
    peak_bf16_tflops: float = Field(gt=0)
    peak_fp8_tflops: float | None = Field(default=None, gt=0)
    tdp_w: float = Field(gt=0)
    power_limit_min_w: float = Field(gt=0)
    power_limit_max_w: float = Field(gt=0)
    sm_clock_min_mhz: int = Field(gt=0)
    sm_clock_max_mhz: int = Field(gt=0)
    sm_clock_base_mhz: int | None = Field(default=None, gt=0)
    idle_power_w: float = Field(gt=0)
    nvlink_gb_s: float | None = Field(default=None, ge=0)
    sources: dict[str, str]

    @model_validator(mode="after")
    def _check_ranges_and_sources(self) -> GPUSpec:
        problems: list[str] = []
        if not self.power_limit_min_w <= self.tdp_w <= self.power_limit_max_w:
            problems.append(
                f"need power_limit_min_w <= tdp_w <= power_limit_max_w, got "
                f"{self.power_limit_min_w} <= {self.tdp_w} <= {self.power_limit_max_w}"
            )
        if self.idle_power_w >= self.tdp_w:
            problems.append(f"idle_power_w {self.idle_power_w} must be below tdp_w {self.tdp_w}")
        base = self.sm_clock_base_mhz if self.sm_clock_base_mhz is not None else self.sm_clock_min_mhz
        if not self.sm_clock_min_mhz <= base <= self.sm_clock_max_mhz:
            problems.append(
                f"need sm_clock_min_mhz <= sm_clock_base_mhz <= sm_clock_max_mhz, got "
                f"{self.sm_clock_min_mhz}, {self.sm_clock_base_mhz}, {self.sm_clock_max_mhz}"
            )
        missing = [f for f in NUMERIC_FIELDS if not self.sources.get(f, "").strip()]
        if missing:
            problems.append(f"sources lacks a citation for {', '.join(missing)}")
        unknown = sorted(set(self.sources) - set(NUMERIC_FIELDS))
        if unknown:
            problems.append(f"sources names unknown fields {', '.join(unknown)}; allowed: {', '.join(NUMERIC_FIELDS)}")
        if problems:
            raise ValueError(f"GPU {self.name!r}: " + "; ".join(problems))
        return self

    def peak_tflops(self, dtype: str) -> float:
        """Dense tensor-core peak for a compute dtype, TFLOP/s.

        Args:
            dtype: ``bf16``/``fp16``/``bfloat16``/``float16`` or ``fp8``. FP8 on a GPU without FP8 falls back to
                the BF16 peak (the work runs in 16-bit there).

        Raises:
            InputError: unknown dtype.
        """
        key = dtype.strip().lower()
        if key in ("bf16", "fp16", "bfloat16", "float16", "half", "auto"):
            return self.peak_bf16_tflops
        if key.startswith("fp8"):
            return self.peak_fp8_tflops if self.peak_fp8_tflops is not None else self.peak_bf16_tflops
        raise InputError("dtype", dtype, "use one of bf16, fp16, fp8")

    @property
    def memory_bytes(self) -> int:
        """Usable memory in bytes: NVML's total where known, else the marketed decimal GB."""
        if self.memory_nvml_mib is not None:
            return self.memory_nvml_mib * 2**20
        return int(self.memory_gb * 1e9)

    @property
    def memory_bandwidth_bytes_s(self) -> float:
        """Peak memory bandwidth in bytes/s."""
        return self.memory_bandwidth_tb_s * 1e12


class _GPUCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1]
    gpus: tuple[GPUSpec, ...] = Field(min_length=1)


def _key(text: str) -> str:
    """Lookup key: lower case, no spaces/-/_, no leading 'nvidia'."""
    key = re.sub(r"[\s_\-]+", "", text.strip().lower())
    return key.removeprefix("nvidia") or key


@functools.cache
def _catalog() -> tuple[tuple[GPUSpec, ...], dict[str, GPUSpec]]:
    """Load and validate ``gpus.yaml`` once; return the specs and the lookup index."""
    text = resources.files("recommender.catalog").joinpath(_CATALOG_FILE).read_text(encoding="utf-8")
    try:
        catalog = _GPUCatalog.model_validate(yaml.safe_load(text))
    except ValidationError as e:  # a broken package file is a programmer error, but say where
        raise RuntimeError(f"recommender/catalog/{_CATALOG_FILE} is invalid: {e}") from e
    index: dict[str, GPUSpec] = {}
    for gpu in catalog.gpus:
        for spelling in (gpu.name, *gpu.aliases):
            key = _key(spelling)
            other = index.get(key)
            if other is not None and other.name != gpu.name:
                raise RuntimeError(f"{_CATALOG_FILE}: {spelling!r} names both {other.name!r} and {gpu.name!r}")
            index[key] = gpu
    logger.debug("loaded %d GPUs from %s", len(catalog.gpus), _CATALOG_FILE)
    return catalog.gpus, index


def list_gpus() -> list[GPUSpec]:
    """All catalog GPUs, in catalog order."""
    return list(_catalog()[0])


def get_gpu(name: str) -> GPUSpec:
    """Find a GPU by canonical name or alias (case-insensitive; spaces, ``-``, ``_`` ignored).

    Raises:
        InputError: field ``gpu``, listing the known names with a did-you-mean hint.
    """
    gpus, index = _catalog()
    gpu = index.get(_key(name)) if isinstance(name, str) else None
    if gpu is not None:
        return gpu
    names = [g.name for g in gpus]
    hint = suggest(str(name), names + [a for g in gpus for a in g.aliases])
    raise InputError("gpu", name, f"known GPUs: {', '.join(names)}{hint}")


def gpu_from_nvml_name(device_name: str | bytes) -> GPUSpec | None:
    """Map an NVML device name (``nvmlDeviceGetName``) to its catalog entry, or None when not in the catalog."""
    if isinstance(device_name, bytes):
        device_name = device_name.decode("utf-8", errors="replace")
    gpu = _catalog()[1].get(_key(device_name))
    if gpu is None:
        logger.debug("NVML device %r is not in the GPU catalog", device_name)
    return gpu
