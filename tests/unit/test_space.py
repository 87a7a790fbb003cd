from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from recommender.config import ServingConfig
from recommender.errors import InputError
from recommender.space import KNOB_NAMES, load_space

pytestmark = pytest.mark.unit


def test_bundled_spaces_cover_every_knob() -> None:
    full = load_space("vllm-default")
    assert set(full.knobs) == set(KNOB_NAMES)
    smoke = load_space("smoke")
    assert smoke.size() == 10 and len(smoke.grid()) == 10
    assert all(c.tensor_parallel_size == 1 for c in smoke.grid())
    for k in full.knobs.values():
        assert k.maps_to


def test_distributions_and_suggest_round_trip() -> None:
    space = load_space("vllm-default")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(20):
        trial = study.ask()
        cfg = space.suggest(trial)
        assert isinstance(cfg, ServingConfig)
        assert space.to_config(space.params_of(cfg)) == cfg
        assert 8 <= (cfg.max_num_seqs or 0) <= 1024
        seen.add(cfg.gpu_clock_mhz)
        study.tell(trial, 0.0)
    assert None in seen or len(seen) > 1


def test_grid_values_for_log_int_range() -> None:
    k = load_space("vllm-default").knobs["max_num_seqs"]
    assert k.values() == [8, 16, 32, 64, 128, 256, 512, 1024]


def test_hash_changes_with_content(tmp_path: Path) -> None:
    a = load_space("smoke")
    text = Path("search_spaces/smoke.yaml").read_text().replace("256]", "512]")
    p = tmp_path / "s.yaml"
    p.write_text(text)
    assert load_space(str(p)).hash() != a.hash()


BASE = """schema_version: 1
name: t
knobs:
{knobs}
"""


@pytest.mark.parametrize(
    ("knobs", "field", "hint"),
    [
        ("  max_num_seq:\n    type: int\n    choices: [8]\n    maps_to: x", "knobs.max_num_seq", "did you mean 'max_num_seqs'"),
        ("  max_num_seqs:\n    type: int\n    low: 64\n    high: 8\n    maps_to: x", "max_num_seqs", "empty range"),
        ("  max_num_seqs:\n    type: int\n    low: 8\n    high: 100\n    step: 16\n    maps_to: x", "max_num_seqs", "bad step"),
        ("  max_num_seqs:\n    type: int\n    low: 8\n    high: 64\n    step: -8\n    maps_to: x", "max_num_seqs", "greater than 0"),
        ("  max_num_seqs:\n    type: int\n    low: 8\n    maps_to: x", "max_num_seqs", "both low and high"),
        ("  precision:\n    type: categorical\n    choices: [bf16, int4]\n    maps_to: x", "knobs.precision", "'bf16' or 'fp8'"),
        ("  max_num_seqs:\n    type: int\n    low: 0\n    high: 8\n    log: true\n    maps_to: x", "max_num_seqs", "log scale needs low > 0"),
        ("  max_num_seqs:\n    type: integer\n    choices: [8]\n    maps_to: x", "max_num_seqs.type", "'int', 'float', 'bool' or 'categorical'"),
        ("  max_num_seqs:\n    type: int\n    choices: [8]", "max_num_seqs.maps_to", "required"),
        ("  gpu_memory_utilization:\n    type: float\n    low: 0.5\n    high: 1.5\n    maps_to: x", "gpu_memory_utilization", "less than or equal to 0.99"),
        ("  max_num_seqs:\n    type: int\n    choices: [8, 8]\n    maps_to: x", "max_num_seqs", "duplicates"),
        ("  max_num_seqs:\n    type: int\n    choices: [8]\n    maps_to: x\n    colour: red", "max_num_seqs.colour", "unknown field"),
    ],
)
def test_bad_space_files(tmp_path: Path, knobs: str, field: str, hint: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(BASE.format(knobs=knobs))
    with pytest.raises(InputError) as ei:
        load_space(str(p))
    assert field in ei.value.field and str(p) in ei.value.field
    assert hint in str(ei.value)


def test_bad_yaml_syntax_and_shapes(tmp_path: Path) -> None:
    p = tmp_path / "broken.yaml"
    p.write_text("name: t\nknobs: [\n")
    with pytest.raises(InputError, match="not valid YAML at line"):
        load_space(str(p))
    p.write_text("- just a list\n")
    with pytest.raises(InputError, match="must be a mapping"):
        load_space(str(p))
    with pytest.raises(InputError, match="does not exist"):
        load_space(str(tmp_path / "missing.yaml"))
    with pytest.raises(InputError, match="did you mean 'smoke'"):
        load_space("smoek")


def test_fixed_and_searched_conflict(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(BASE.format(knobs="  max_num_seqs:\n    type: int\n    choices: [8]\n    maps_to: x") +
                 "fixed:\n  max_num_seqs: 16\n")
    with pytest.raises(InputError, match="either searched"):
        load_space(str(p))


def test_to_config_rejects_unknown_param() -> None:
    with pytest.raises(InputError, match="not a knob of space"):
        load_space("smoke").to_config({"precision": "fp8"})
