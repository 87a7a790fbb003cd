"""Flags of the benchmark scripts: bad values get an argparse error naming the flag, not a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.benchmark_scripts import load_benchmark

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("flag", "value", "says"), [
    ("--static-weight", "-1", "give a finite weight >= 0"),
    ("--latency-physics-static-weight", "x", "is not a number"),
    ("--static-weight", "nan", "give a finite weight >= 0"),
    ("--balance-power", "-0.5", "give a finite weight >= 0"),
    ("--jackknife", "1", "give 0 (skip) or at least 2"),
    ("--guard-quantile", "0.4", "give a quantile in (0.5, 1)"),
    ("--guard-quantile", "high", "is not a number"),
    ("--jackknife", "two", "is not a whole number"),
])
def test_surrogate_lomo_refuses_bad_weights(flag: str, value: str, says: str) -> None:
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "surrogate_lomo.py"), flag, value],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2
    assert flag in r.stderr and says in r.stderr and "Traceback" not in r.stderr


def test_surrogate_lomo_weight_parser_accepts_zero() -> None:
    mod = load_benchmark("surrogate_lomo")
    assert mod._weight("0") == 0.0 and mod._weight("0.1") == pytest.approx(0.1)


def test_study_table_names_a_missing_model_dir(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "study_table.py"),
                        str(REPO / "data" / "measurements" / "h200_guided" / "study.db"), "--model-dir", str(tmp_path)],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2
    assert "--model-dir" in r.stderr and "card" in r.stderr and "Traceback" not in r.stderr
