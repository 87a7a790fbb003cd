from __future__ import annotations

import pytest

from recommender.errors import InputError
from recommender.slo import SLO

pytestmark = pytest.mark.unit


def test_parse_units_and_attainment() -> None:
    slo = SLO.parse("ttft:p99<=500ms, tpot:p90<=0.05s, e2e:p50<=10, attainment>=90%")
    assert [t.key for t in slo.targets] == ["ttft_p99_s", "tpot_p90_s", "e2e_p50_s"]
    assert slo.targets[0].limit_s == pytest.approx(0.5)
    assert slo.targets[1].limit_s == pytest.approx(0.05)
    assert slo.targets[2].limit_s == pytest.approx(10.0)
    assert slo.attainment == pytest.approx(0.9)


def test_round_trip_string() -> None:
    slo = SLO.parse("ttft:p99<=500ms,itl:p50<=25ms,attainment>=0.95")
    assert SLO.parse(str(slo)) == slo


def test_tightest_is_highest_percentile() -> None:
    slo = SLO.parse("tpot:p50<=30ms,ttft:p99<=1s,itl:p99<=80ms")
    assert slo.tightest().key == "itl_p99_s"


@pytest.mark.parametrize(
    ("text", "field", "hint"),
    [
        ("", "slo", "targets like"),
        ("ttfb:p99<=500ms", "slo[0].metric", "did you mean 'ttft'"),
        ("ttft:p98<=500ms", "slo[0].percentile", "p99"),
        ("ttft:p99<=500min", "slo[0].unit", "'s' or 'ms'"),
        ("ttft:p99>=500ms", "slo[0]", "metric:percentile<=limit"),
        ("ttft:p99<=0ms", "slo[0].limit", "greater than zero"),
        ("ttft:p99<=1s,,tpot:p90<=50ms", "slo[1]", "empty item"),
        ("ttft:p99<=1s,ttft:p99<=2s", "slo", "appears twice"),
        ("attainment>=1.5", "slo.attainment", "(0, 1]"),
        ("attainment>=0.9", "slo", "at least one latency target"),
    ],
)
def test_bad_slo_strings_name_the_field(text: str, field: str, hint: str) -> None:
    with pytest.raises(InputError) as ei:
        SLO.parse(text)
    assert ei.value.field == field
    assert hint in str(ei.value)
