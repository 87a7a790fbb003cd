"""What the search needs from a knob space, and helpers over Optuna distributions.

:class:`SearchSpace` is the structural interface both :class:`recommender.space.KnobSpace` (YAML spaces) and
:class:`recommender.evaluators.replay.TableSpace` (the configs of a replay table) satisfy. Configs are
identified by :func:`config_key` (canonical JSON of every knob), never by Optuna params, so two params that
build the same config are the same config.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import optuna

    from recommender.config import ServingConfig

ENUMERATE_LIMIT = 100_000


@runtime_checkable
class SearchSpace(Protocol):
    """A knob space the study can search (see :class:`recommender.space.KnobSpace` for the contract)."""

    @property
    def name(self) -> str: ...

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]: ...

    def suggest(self, trial: optuna.trial.BaseTrial) -> ServingConfig: ...

    def to_config(self, params: dict[str, Any]) -> ServingConfig: ...

    def grid(self, limit: int | None = None) -> list[ServingConfig]: ...

    def hash(self) -> str: ...


def config_key(config: ServingConfig) -> str:
    """Canonical identity of a config: sorted JSON of every knob (schema version excluded)."""
    return json.dumps(config.model_dump(mode="json", exclude={"schema_version"}), sort_keys=True)


def params_of(space: SearchSpace, config: ServingConfig) -> dict[str, Any]:
    """Searched-knob params that build ``config`` in ``space`` (``space.params_of`` when it has one)."""
    fn = getattr(space, "params_of", None)
    if fn is not None:
        return dict(fn(config))
    return {k: getattr(config, k) for k in space.distributions()}


def _values(dist: optuna.distributions.BaseDistribution) -> list[Any] | None:
    """Every value of a finite distribution, or None for a continuous one."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution):
        return list(range(dist.low, dist.high + 1, dist.step))
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        n = int(round((dist.high - dist.low) / dist.step))
        return [round(dist.low + i * dist.step, 10) for i in range(n + 1)]
    return None


def cardinality(distributions: dict[str, optuna.distributions.BaseDistribution]) -> float:
    """Number of distinct param combinations (``inf`` when a knob is continuous)."""
    n = 1.0
    for d in distributions.values():
        vals = _values(d)
        if vals is None:
            return math.inf
        n *= len(vals)
    return n


def enumerate_params(
    distributions: dict[str, optuna.distributions.BaseDistribution], limit: int = ENUMERATE_LIMIT
) -> list[dict[str, Any]] | None:
    """Every param combination when there are at most ``limit``; None when more (or continuous)."""
    if cardinality(distributions) > limit:
        return None
    names = list(distributions)
    grids = [_values(distributions[n]) or [] for n in names]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grids)]


def random_params(
    distributions: dict[str, optuna.distributions.BaseDistribution], rng: np.random.Generator
) -> dict[str, Any]:
    """One uniformly random param combination (log-uniform for log-scaled numeric knobs)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for name, d in distributions.items():
        if isinstance(d, CategoricalDistribution):
            out[name] = d.choices[int(rng.integers(len(d.choices)))]
        elif isinstance(d, IntDistribution):
            if d.log:
                v = int(round(math.exp(rng.uniform(math.log(d.low), math.log(d.high)))))
            else:
                v = d.low + d.step * int(rng.integers((d.high - d.low) // d.step + 1))
            out[name] = min(max(v, d.low), d.high)
        elif isinstance(d, FloatDistribution):
            if d.step is not None:
                n = int(round((d.high - d.low) / d.step))
                out[name] = round(d.low + d.step * int(rng.integers(n + 1)), 10)
            elif d.log:
                out[name] = float(math.exp(rng.uniform(math.log(d.low), math.log(d.high))))
            else:
                out[name] = float(rng.uniform(d.low, d.high))
        else:  # pragma: no cover - Optuna has no other distribution kinds
            raise TypeError(f"unsupported distribution {d!r}")
    return out


class UnseenPicker:
    """Random configs of a space that pass a filter: the fallback when a sampler keeps proposing known configs.

    Enumerates the space once when it has at most :data:`ENUMERATE_LIMIT` configs (so "none left" is exact),
    else draws up to ``draws`` random configs per call.
    """

    def __init__(self, space: SearchSpace, rng: np.random.Generator, draws: int = 500) -> None:
        self.space, self.rng, self.draws = space, rng, draws
        self._grid: list[tuple[dict[str, Any], str]] | None = None
        self._enumerated = False

    def pick(self, exclude: Callable[[str], bool], ok: Callable[[ServingConfig], bool]) -> ServingConfig | None:
        """A random config whose key ``exclude`` does not reject and that ``ok`` accepts, or None."""
        dists = self.space.distributions()
        if not self._enumerated:
            grid = enumerate_params(dists)
            self._grid = None if grid is None else [(p, config_key(self.space.to_config(p))) for p in grid]
            self._enumerated = True
        if self._grid is not None:
            cands: Any = (self._grid[i] for i in self.rng.permutation(len(self._grid)))
        else:
            cands = ((p, config_key(self.space.to_config(p)))
                     for p in (random_params(dists, self.rng) for _ in range(self.draws)))
        for params, key in cands:
            if exclude(key):
                continue
            config = self.space.to_config(params)
            if ok(config):
                return config
        return None
