"""The Streamlit app, headless through AppTest (real script, real library, the shipped surrogate)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def _app():  # type: ignore[no-untyped-def]
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(APP, default_timeout=120)


def test_default_scenario_renders_a_recommendation() -> None:
    at = _app().run()
    assert not at.exception, at.exception
    assert at.title[0].value.startswith("⚡ LLM Energy Recommender")
    assert any("Recommended:" in s.value for s in at.success), [s.value for s in at.success]
    labels = [m.label for m in at.metric]
    assert "Energy per output token" in labels and "Saving vs vLLM default" in labels
    energy = next(m for m in at.metric if m.label == "Energy per output token").value
    assert energy.endswith(" J") and float(energy.split()[0]) > 0
    assert len(at.dataframe) >= 1  # Pareto table


def test_changing_inputs_updates_the_answer_and_bad_slo_is_explained() -> None:
    at = _app().run()
    at.sidebar.selectbox[0].select("Llama-3.1-70B").run()
    assert not at.exception
    # 70B on one H100 cannot run at all: the UI says why instead of failing
    assert at.warning or at.error, "expected an explanation for an infeasible scenario"
    at.sidebar.number_input[0].set_value(4).run()
    assert not at.exception
    assert any("Recommended:" in s.value for s in at.success)
    at.sidebar.text_input[0].set_value("ttfb:p99<=1s").run()
    assert not at.exception
    assert at.error and "did you mean 'ttft'" in at.error[0].value
