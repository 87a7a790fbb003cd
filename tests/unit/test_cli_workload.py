"""Workload flags applied to presets and to Workload YAML files (shared by measure, recommend, optimize)."""

from __future__ import annotations

from pathlib import Path

import pytest

from recommender.commands._common import build_workload
from recommender.errors import InputError

pytestmark = pytest.mark.unit

YAML = """input_tokens: {kind: fixed, tokens: 100}
output_tokens: {kind: fixed, tokens: 50}
arrivals: {kind: %s}
duration_s: 60
"""


def test_overrides_apply_to_yaml_fields(tmp_path: Path) -> None:
    p = tmp_path / "w.yaml"
    p.write_text(YAML % "poisson, rate_rps: 2")
    w = build_workload(str(p), num_requests=30, rate=5.0)
    assert w.num_requests == 30 and w.duration_s is None and w.arrivals.rate_rps == 5.0  # type: ignore[union-attr]
    w = build_workload(str(p), num_requests=12, concurrency=4)
    assert w.arrivals.kind == "closed_loop" and w.arrivals.concurrency == 4  # type: ignore[union-attr]


def test_rate_on_a_closed_loop_yaml_names_the_flag(tmp_path: Path) -> None:
    p = tmp_path / "w.yaml"
    p.write_text(YAML.replace("duration_s: 60", "num_requests: 8") % "closed_loop, concurrency: 2")
    with pytest.raises(InputError) as ei:
        build_workload(str(p), rate=3.0)
    assert ei.value.field == "--rate" and "poisson or gamma" in str(ei.value)


def test_overrides_go_to_presets() -> None:
    assert build_workload("azure-conv-2023", num_requests=7, rate=3.0).num_requests == 7
    with pytest.raises(InputError, match="does not take"):
        build_workload("fixed", rate=3.0)
