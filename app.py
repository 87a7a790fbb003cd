"""Streamlit UI: pick a model, GPUs, traffic and latency SLOs; get the least-energy vLLM config.

A thin shell over :mod:`recommender.api`: widgets build the request, one library call answers it, and this
file only renders. Run with ``streamlit run app.py``.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from recommender import api
from recommender.catalog import list_gpus, list_models
from recommender.errors import RecommenderError
from recommender.export import export as export_rec
from recommender.logging_setup import configure
from recommender.presets import PRESETS

configure()
st.set_page_config(page_title="LLM Energy Recommender", page_icon="⚡", layout="wide")


@st.cache_resource(show_spinner="Loading the surrogate model…")
def _surrogate():  # type: ignore[no-untyped-def]
    return api.load_surrogate()


@st.cache_data(show_spinner="Scoring every feasible config…", max_entries=32)
def _explore(scenario_json: str, slo_text: str, risk: str):  # type: ignore[no-untyped-def]
    from recommender.config import Scenario

    scen = Scenario.model_validate_json(scenario_json)
    rec, frame = api.explore(scen, slo_text, risk=risk, surrogate=_surrogate())
    return rec.model_dump_json(), frame


def sidebar() -> tuple[str, str, int, str, dict, str, str]:
    sb = st.sidebar
    sb.header("Scenario")
    models = [m.name for m in list_models()]
    model = sb.selectbox("Model", models, index=models.index("Llama-3.1-8B") if "Llama-3.1-8B" in models else 0)
    gpus = [g.name for g in list_gpus()]
    gpu = sb.selectbox("GPU", gpus, index=gpus.index("H100-SXM") if "H100-SXM" in gpus else 0)
    count = int(sb.number_input("GPUs available", min_value=1, max_value=64, value=1, step=1))
    presets = [p for p in PRESETS if not p.endswith("replay")]
    workload = sb.selectbox("Workload", presets, index=presets.index("azure-conv-2023"))
    overrides: dict = {}
    if workload.startswith("azure"):
        rate = sb.number_input("Arrival rate (req/s, 0 = the trace's own)", min_value=0.0, value=0.0, step=0.5)
        if rate > 0:
            overrides["rate_rps"] = float(rate)
    sb.header("Latency SLO")
    ttft = sb.number_input("TTFT p99 ≤ (ms)", min_value=1, value=2000, step=100)
    tpot = sb.number_input("TPOT p90 ≤ (ms)", min_value=1, value=60, step=5)
    extra = sb.text_input("More targets (e.g. itl:p99<=100ms)", value="")
    slo = f"ttft:p99<={ttft}ms,tpot:p90<={tpot}ms" + (f",{extra}" if extra.strip() else "")
    risk = sb.radio("Meet the SLO with", ["guarded", "point", "upper"], format_func=lambda r: {
        "guarded": "the one-sided 75% upper bound (validated default)", "point": "the predicted value",
        "upper": "the interval's upper end (cautious)"}[r])
    return model, gpu, count, workload, overrides, slo, risk


def plot(frame: pd.DataFrame, objective: str) -> go.Figure:
    fig = go.Figure()
    for meets, name, color in ((False, "misses the SLO", "#c8c8c8"), (True, "meets the SLO", "#7aa6d6")):
        sub = frame[frame["meets_slo"] == meets]
        fig.add_trace(go.Scattergl(x=sub[objective] * 1e3, y=sub["energy_per_output_token_j"], mode="markers",
                                   name=name, marker={"size": 5, "color": color}, hovertext=sub["label"]))
    par = frame[frame["pareto"]].sort_values(objective)
    fig.add_trace(go.Scatter(x=par[objective] * 1e3, y=par["energy_per_output_token_j"], mode="lines+markers",
                             name="Pareto set", line={"color": "#1f4e79"}, hovertext=par["label"]))
    for mask, name, sym, color in ((frame["chosen"], "recommended", "star", "#2ca02c"),
                                   (frame.get("is_default", False), "vLLM default", "x", "#d62728")):
        sub = frame[mask] if isinstance(mask, pd.Series) else frame.iloc[0:0]
        fig.add_trace(go.Scatter(x=sub[objective] * 1e3, y=sub["energy_per_output_token_j"], mode="markers",
                                 name=name, marker={"size": 16, "symbol": sym, "color": color}, hovertext=sub["label"]))
    fig.update_layout(xaxis_title=f"{objective.removesuffix('_s')} (ms)", yaxis_title="energy per output token (J)",
                      height=480, margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"orientation": "h"})
    return fig


def main() -> None:
    st.title("⚡ LLM Energy Recommender")
    st.caption("The vLLM serving config that spends the least GPU energy while meeting your latency SLOs. "
               "Answers come from a surrogate trained on public and our own measurements.")
    model, gpu, count, workload, overrides, slo, risk = sidebar()
    try:
        scen = api.scenario(model, gpu, count, workload, **overrides)
        rec_json, frame = _explore(scen.model_dump_json(), slo, risk)
    except RecommenderError as e:
        st.error(str(e))
        return
    from recommender.measurement import Recommendation

    rec = Recommendation.model_validate_json(rec_json)
    frame = frame.copy()
    frame["label"] = [_label(r) for _, r in frame.iterrows()]
    st.subheader(f"{model} on {count} × {gpu}, {workload}; SLO {rec.slo}")
    if rec.chosen is None:
        st.warning(rec.reason)
    else:
        c = rec.chosen
        e = c.value("energy_per_output_token_j") or 0.0
        cols = st.columns(4)
        cols[0].metric("Energy per output token", f"{e:.3f} J")
        cols[1].metric("Saving vs vLLM default", _pct(rec.savings_vs_default_frac))
        cols[2].metric("Saving vs fastest config", _pct(rec.savings_vs_fastest_frac))
        thr = c.value("throughput_output_tok_s")
        cols[3].metric("Output throughput", f"{thr:,.0f} tok/s" if thr else "-")
        st.success(f"Recommended: **{c.config.short()}**  ·  provenance: {c.provenance}"
                   + (f"  ·  ⚠ {c.notes}" if c.notes else ""))
    if frame.empty or rec.objective not in frame:
        return
    st.plotly_chart(plot(frame, rec.objective), use_container_width=True)
    st.caption(f"{rec.evaluated} feasible configs scored, {rec.feasible} meet the SLO.")
    if rec.pareto:
        st.markdown("**Pareto set** (least energy for each latency)")
        st.dataframe(pd.DataFrame([_row(m) for m in rec.pareto]), hide_index=True, use_container_width=True)
    if rec.chosen is not None:
        st.markdown("**Export**")
        b = st.columns(3)
        b[0].download_button("vLLM config YAML", export_rec(rec, "vllm"), "vllm-config.yaml", "text/yaml")
        b[1].download_button("Kubernetes manifest", export_rec(rec, "k8s"), "vllm-k8s.yaml", "text/yaml")
        b[2].download_button("JSON report", export_rec(rec, "json"), "recommendation.json", "application/json")
        with st.expander("vLLM config YAML"):
            st.code(export_rec(rec, "vllm"), language="yaml")


def _label(r: pd.Series) -> str:
    return (f"tp{r['tensor_parallel_size']}x{r['replicas']} seqs={r['max_num_seqs']} {r['precision']}"
            f" kv={r['kv_cache_dtype']} clock={r['gpu_clock_mhz'] or 'auto'} pl={r['power_limit_w'] or 'default'}")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.0f}%"


def _row(m) -> dict:  # type: ignore[no-untyped-def]
    def ms(k: str) -> float | None:
        v = m.value(k)
        return None if v is None else round(v * 1e3, 1)

    return {"config": m.config.short(), "J/token": round(m.value("energy_per_output_token_j") or 0, 4),
            "TTFT p99 ms": ms("ttft_p99_s"), "TPOT p90 ms": ms("tpot_p90_s"), "ITL p50 ms": ms("itl_p50_s"),
            "tok/s": round(m.value("throughput_output_tok_s") or 0), "provenance": m.provenance}


main()
