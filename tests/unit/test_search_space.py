"""Search-space helpers: cardinality, enumeration, random params, config identity, TableSpace, samplers."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from recommender.config import ServingConfig
from recommender.errors import InputError
from recommender.evaluators.replay import TableSpace
from recommender.search import SearchSpace, config_key, make_sampler
from recommender.search._space import cardinality, enumerate_params, params_of, random_params

pytestmark = pytest.mark.unit


def test_cardinality_and_enumeration() -> None:
    d = {"a": CategoricalDistribution([1, 2, 3]), "b": IntDistribution(8, 32, step=8),
         "c": FloatDistribution(0.8, 0.95, step=0.05)}
    assert cardinality(d) == 3 * 4 * 4
    grid = enumerate_params(d)
    assert grid is not None and len(grid) == 48
    assert {g["c"] for g in grid} == {0.8, 0.85, 0.9, 0.95}
    assert enumerate_params(d, limit=10) is None
    assert cardinality({"x": FloatDistribution(0, 1)}) == float("inf")


def test_random_params_stay_in_bounds() -> None:
    d = {"seqs": IntDistribution(8, 1024, log=True), "u": FloatDistribution(0.8, 0.95, step=0.05),
         "k": CategoricalDistribution([None, 400.0]), "f": FloatDistribution(1.0, 2.0, log=True)}
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = random_params(d, rng)
        assert 8 <= p["seqs"] <= 1024 and isinstance(p["seqs"], int)
        assert p["u"] in (0.8, 0.85, 0.9, 0.95)
        assert p["k"] in (None, 400.0)
        assert 1.0 <= p["f"] <= 2.0


def test_config_key_is_identity() -> None:
    a = ServingConfig(max_num_seqs=64)
    b = ServingConfig(max_num_seqs=64, tensor_parallel_size=1)
    assert config_key(a) == config_key(b)
    assert config_key(a) != config_key(ServingConfig(max_num_seqs=32))


def test_table_space_round_trip() -> None:
    configs = [ServingConfig(max_num_seqs=s, enable_chunked_prefill=c) for s in (8, 64, 256) for c in (True, False)]
    sp = TableSpace(configs)
    assert isinstance(sp, SearchSpace)
    assert set(sp.distributions()) == {"max_num_seqs", "enable_chunked_prefill"}
    assert sp.size() == 6 and len(sp.grid()) == 6 and len(sp.grid(limit=2)) == 2
    assert {config_key(c) for c in sp.grid()} == {config_key(c) for c in configs}
    assert sp.to_config(params_of(sp, configs[3])) == configs[3]
    assert sp.hash() == TableSpace(list(reversed(configs))).hash()
    with pytest.raises(InputError, match="not a knob"):
        sp.to_config({"precision": "fp8"})
    study = optuna.create_study()
    assert sp.suggest(study.ask()) in configs


def test_knob_space_satisfies_protocol() -> None:
    from recommender.space import load_space

    sp = load_space("smoke")
    assert isinstance(sp, SearchSpace)
    c = sp.grid()[3]
    assert sp.to_config(params_of(sp, c)) == c


@pytest.mark.parametrize("name", ["tpe", "nsga2", "random"])
def test_samplers_build(name: str) -> None:
    assert isinstance(make_sampler(name, 0, 20), optuna.samplers.BaseSampler)


def test_unknown_sampler_and_gp_without_torch() -> None:
    with pytest.raises(InputError, match="did you mean 'tpe'"):
        make_sampler("tpee", 0, 10)
    try:
        import torch  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="PyTorch"):
            make_sampler("gp", 0, 10)
    else:
        assert isinstance(make_sampler("gp", 0, 10), optuna.samplers.GPSampler)
