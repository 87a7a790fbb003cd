"""YAML knob spaces: load and validate, convert to Optuna distributions, enumerate grids.

A space file (``search_spaces/*.yaml``) declares, per knob of :class:`~recommender.config.ServingConfig`:
``type`` (int, float, bool, categorical), ``low``/``high`` with optional ``step`` or ``log``, or
``choices``; ``restart`` (does changing it need a server restart) and ``maps_to`` (the vLLM flag or NVML
call). ``fixed`` pins knobs to one value. Knobs in neither keep ServingConfig's default. Feasibility per
scenario lives in :mod:`recommender.feasibility` and is re-exported here.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from recommender._base import StrictModel
from recommender.config import ServingConfig, validation_to_input_error
from recommender.errors import InputError, suggest
from recommender.feasibility import Feasibility, check_feasibility

if TYPE_CHECKING:
    import optuna

__all__ = ["Knob", "KnobSpace", "load_space", "list_spaces", "check_feasibility", "Feasibility"]

KNOB_NAMES: tuple[str, ...] = tuple(k for k in ServingConfig.model_fields if k != "schema_version")
Scalar = int | float | bool | str | None


class Knob(StrictModel):
    """One searchable knob. Either ``choices`` or a ``low``..``high`` range (with ``step`` or ``log``)."""

    type: Literal["int", "float", "bool", "categorical"]
    low: float | None = None
    high: float | None = None
    step: float | None = Field(default=None, gt=0)
    log: bool = False
    choices: tuple[Scalar, ...] | None = Field(default=None, min_length=1)
    restart: bool = True
    maps_to: str = Field(min_length=1)
    description: str = ""

    @model_validator(mode="after")
    def _shape(self) -> Knob:
        if self.type == "bool":
            if self.low is not None or self.high is not None or self.step is not None:
                raise ValueError("a bool knob takes no low/high/step (it searches true and false)")
            return self
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.step is not None or self.log:
                raise ValueError("give either choices or low/high(/step/log), not both")
            if len(set(map(repr, self.choices))) != len(self.choices):
                raise ValueError("choices contain duplicates")
            return self
        if self.type == "categorical":
            raise ValueError("a categorical knob needs choices")
        if self.low is None or self.high is None:
            raise ValueError("a range knob needs both low and high (or give choices)")
        if self.low > self.high:
            raise ValueError(f"empty range: low {self.low:g} > high {self.high:g}; swap them")
        if self.log and self.low <= 0:
            raise ValueError("log scale needs low > 0")
        if self.log and self.step is not None and not (self.type == "int" and self.step == 1):
            raise ValueError("log scale and step cannot be combined (Optuna allows only step 1 for int)")
        if self.type == "int":
            for name, v in (("low", self.low), ("high", self.high), ("step", self.step)):
                if v is not None and float(v) != int(v):
                    raise ValueError(f"an int knob needs whole numbers; {name} is {v}")
        if self.step is not None:
            n = (self.high - self.low) / self.step
            if abs(n - round(n)) > 1e-9:
                raise ValueError(
                    f"bad step: high - low ({self.high - self.low:g}) is not a multiple of step {self.step:g}"
                )
        return self

    def values(self) -> list[Scalar]:
        """Every value of a discrete knob (a log int range without step gives powers of two plus ends)."""
        if self.type == "bool":
            return [False, True]
        if self.choices is not None:
            return list(self.choices)
        assert self.low is not None and self.high is not None
        if self.step is not None:
            n = int(round((self.high - self.low) / self.step))
            vals = [self.low + i * self.step for i in range(n + 1)]
        elif self.type == "int" and self.log:
            lo, hi = int(self.low), int(self.high)
            vals = sorted({lo, hi, *(2**k for k in range(math.ceil(math.log2(lo)), int(math.log2(hi)) + 1))})
        elif self.type == "int":
            vals = list(range(int(self.low), int(self.high) + 1))
        else:
            vals = [self.low + (self.high - self.low) * i / 4 for i in range(5)]  # float range: 5 points
        return [int(v) if self.type == "int" else round(float(v), 10) for v in vals]


class SpaceFile(StrictModel):
    """The YAML document of a knob space."""

    schema_version: Literal[1] = 1
    name: str = Field(min_length=1)
    description: str = ""
    knobs: dict[str, Knob] = Field(min_length=1)
    fixed: dict[str, Any] = Field(default_factory=dict)


class KnobSpace:
    """A validated knob space. Immutable after construction.

    Args:
        spec: the parsed file.
        source: where it came from (path or name), used in messages.
    """

    def __init__(self, spec: SpaceFile, source: str = "") -> None:
        self.spec = spec
        self.source = source or spec.name
        self._check_names()
        self._check_values()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def knobs(self) -> dict[str, Knob]:
        return dict(self.spec.knobs)

    def _check_names(self) -> None:
        for section in ("knobs", "fixed"):
            for k in getattr(self.spec, section):
                if k not in KNOB_NAMES:
                    raise InputError(f"{self.source}:{section}.{k}", k,
                                     f"unknown knob{suggest(k, KNOB_NAMES)}; knobs are {', '.join(KNOB_NAMES)}")
        both = set(self.spec.knobs) & set(self.spec.fixed)
        if both:
            k = sorted(both)[0]
            raise InputError(f"{self.source}:fixed.{k}", k, "a knob is either searched (knobs) or fixed, not both")

    def _check_values(self) -> None:
        """Every choice / range end must be a valid ServingConfig value (types and bounds)."""
        for name, knob in self.spec.knobs.items():
            ends = knob.values() if (knob.choices is not None or knob.type == "bool") else [knob.low, knob.high]
            for v in ends:
                self._validate_value(f"{self.source}:knobs.{name}", name, v)
        for name, v in self.spec.fixed.items():
            self._validate_value(f"{self.source}:fixed.{name}", name, v)

    def _validate_value(self, field: str, name: str, v: Any) -> None:
        try:
            ServingConfig(**{name: v})
        except ValidationError as e:
            err = validation_to_input_error(e)
            raise InputError(field, v, err.allowed) from None

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """Optuna distributions, one per searched knob (fixed knobs are not searched)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        out: dict[str, optuna.distributions.BaseDistribution] = {}
        for name, k in self.spec.knobs.items():
            if k.type == "bool":
                out[name] = CategoricalDistribution([False, True])
            elif k.choices is not None:
                out[name] = CategoricalDistribution(list(k.choices))
            elif k.type == "int":
                out[name] = IntDistribution(int(k.low), int(k.high), log=k.log, step=int(k.step or 1))  # type: ignore[arg-type]
            else:
                out[name] = FloatDistribution(float(k.low), float(k.high), log=k.log, step=k.step)  # type: ignore[arg-type]
        return out

    def suggest(self, trial: optuna.trial.BaseTrial) -> ServingConfig:
        """Sample one config through ``trial`` (``suggest_*`` per knob) and return it."""
        params = {name: trial._suggest(name, dist) for name, dist in self.distributions().items()}  # noqa: SLF001
        return self.to_config(params)

    def to_config(self, params: dict[str, Any]) -> ServingConfig:
        """Build a ServingConfig from searched ``params`` plus the fixed knobs.

        Raises:
            InputError: an unknown parameter or an invalid value (naming it).
        """
        for k in params:
            if k not in self.spec.knobs:
                raise InputError(f"params.{k}", params[k], f"not a knob of space {self.name!r}{suggest(k, self.spec.knobs)}")
        merged = {**self.spec.fixed, **params}
        try:
            return ServingConfig(**merged)
        except ValidationError as e:
            raise validation_to_input_error(e, "params") from None

    def params_of(self, config: ServingConfig) -> dict[str, Any]:
        """The searched knobs' values of ``config`` (inverse of :meth:`to_config` on this space)."""
        return {k: getattr(config, k) for k in self.spec.knobs}

    def size(self) -> int:
        """Number of configs in :meth:`grid` without a limit."""
        return math.prod(len(k.values()) for k in self.spec.knobs.values())

    def grid(self, limit: int | None = None) -> list[ServingConfig]:
        """Cartesian product of every knob's values (see :meth:`Knob.values`), first ``limit`` if given."""
        names = list(self.spec.knobs)
        combos = itertools.product(*(self.spec.knobs[n].values() for n in names))
        if limit is not None:
            combos = itertools.islice(combos, limit)
        return [self.to_config(dict(zip(names, c))) for c in combos]

    def hash(self) -> str:
        """Stable short hash of the space's content (knobs and fixed values, not comments)."""
        body = json.dumps(self.spec.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:12]

    def describe(self) -> list[dict[str, Any]]:
        """One row per knob (searched and fixed) for display."""
        rows: list[dict[str, Any]] = []
        for name, k in self.spec.knobs.items():
            if k.choices is not None or k.type == "bool":
                rng = ", ".join("null" if v is None else str(v) for v in k.values())
            else:
                rng = f"{k.low:g} .. {k.high:g}" + (f" step {k.step:g}" if k.step else "") + (" (log)" if k.log else "")
            rows.append({"knob": name, "type": k.type, "values": rng, "restart": k.restart, "maps_to": k.maps_to})
        for name, v in self.spec.fixed.items():
            rows.append({"knob": name, "type": "fixed", "values": str(v), "restart": "", "maps_to": ""})
        return rows


def _space_dirs() -> list[Path]:
    """Where bundled spaces live: ./search_spaces, the source checkout's, and the installed copy."""
    import importlib.util

    dirs = [Path.cwd() / "search_spaces", Path(__file__).resolve().parents[1] / "search_spaces"]
    spec = importlib.util.find_spec("recommender._spaces")  # a namespace package mapped from search_spaces/
    if spec is not None and spec.submodule_search_locations:
        dirs += [Path(p) for p in spec.submodule_search_locations]
    return [d for d in dirs if d.is_dir()]


def _bundled(name: str) -> Path | None:
    for base in _space_dirs():
        p = base / f"{name}.yaml"
        if p.is_file():
            return p
    return None


def list_spaces() -> list[str]:
    """Names of the bundled spaces."""
    return sorted({p.stem for base in _space_dirs() for p in base.glob("*.yaml")})


def load_space(path_or_name: str) -> KnobSpace:
    """Load and validate a knob space from a YAML path or a bundled name (``smoke``, ``vllm-default``).

    Raises:
        InputError: missing file, bad YAML, unknown knob (with a suggestion), empty range, bad step, a value
            ServingConfig rejects, ... always naming the file and field.
    """
    p = Path(path_or_name)
    if not (p.suffix in (".yaml", ".yml") or p.exists()):
        found = _bundled(path_or_name)
        if found is None:
            names = list_spaces()
            raise InputError("space", path_or_name, f"use a YAML path or one of {names}{suggest(path_or_name, names)}")
        p = found
    if not p.is_file():
        raise InputError("space", str(p), "the file does not exist; give a path to a knob-space YAML")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InputError(str(p), "(file)", f"not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise InputError(str(p), type(data).__name__, "the file must be a mapping with name and knobs")
    for k in data.get("knobs") or {}:
        if k not in KNOB_NAMES:
            raise InputError(f"{p}:knobs.{k}", k, f"unknown knob{suggest(k, KNOB_NAMES)}; knobs are {', '.join(KNOB_NAMES)}")
    try:
        spec = SpaceFile.model_validate(data)
    except ValidationError as e:
        raise validation_to_input_error(e, str(p)) from None
    return KnobSpace(spec, str(p))
