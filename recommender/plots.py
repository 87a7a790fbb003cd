"""Static plots (matplotlib, headless) for the CLI and benchmarks. The UI draws its own with plotly."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from recommender.measurement import Recommendation


def pareto_png(frame: pd.DataFrame, rec: Recommendation, path: str | Path) -> Path:
    """Energy per token vs the latency objective for every scored config; Pareto set, pick and default marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    obj = rec.objective
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    miss = frame[~frame["meets_slo"]]
    ok = frame[frame["meets_slo"]]
    ax.scatter(miss[obj] * 1e3, miss["energy_per_output_token_j"], s=4, c="#c8c8c8", label="misses SLO")
    ax.scatter(ok[obj] * 1e3, ok["energy_per_output_token_j"], s=4, c="#7aa6d6", label="meets SLO")
    par = frame[frame["pareto"]].sort_values(obj)
    ax.plot(par[obj] * 1e3, par["energy_per_output_token_j"], "-o", ms=3, c="#1f4e79", label="Pareto set")
    for m, label, marker, color in ((rec.chosen, "recommended", "*", "#2ca02c"), (rec.default, "vLLM default", "X", "#d62728")):
        if m is not None and m.value(obj) is not None:
            ax.scatter([m.value(obj) * 1e3], [m.value("energy_per_output_token_j")], s=160, marker=marker, c=color,
                       label=label, zorder=5)
    for t in rec.slo.targets:
        if t.key == obj:
            ax.axvline(t.limit_s * 1e3, ls="--", c="k", lw=0.8, label="SLO limit")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"{obj.removesuffix('_s')} (ms)")
    ax.set_ylabel("energy per output token (J)")
    ax.set_title(f"{rec.scenario.model} on {rec.scenario.hardware.count} x {rec.scenario.hardware.gpu}, "
                 f"{rec.scenario.workload.name}", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p)
    plt.close(fig)
    return p
