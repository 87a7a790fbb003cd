"""Progress while a study runs (a tqdm bar) and the summary table after it.

The bar counts evaluations (not trials) toward the budget, so its ETA is the time left for real runs; its
postfix shows the best feasible energy per output token so far (J/tok), the feasible Pareto size, failures
and feasibility rejections. It writes to stderr and is off unless asked for (the CLI turns it on); log
records go through ``tqdm.write`` (``recommender.logging_setup``), so they do not break it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from recommender.pareto import ENERGY_KEY, meets_slo, pareto_front, pick_best, slo_headroom

if TYPE_CHECKING:
    import pandas as pd

    from recommender.measurement import Measurement
    from recommender.search.trials import Tally
    from recommender.slo import SLO


class Progress:
    """A tqdm bar over evaluations; a no-op when ``enabled`` is False."""

    def __init__(self, total: int, initial: int, enabled: bool, desc: str = "optimize") -> None:
        self._bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=min(initial, total), desc=desc, unit="eval", dynamic_ncols=True)
        self._n = initial

    def update(self, evaluations: int, tally: Tally, measurements: list[Measurement], slo: SLO, objective: str) -> None:
        """Move the bar to ``evaluations`` and refresh the postfix."""
        if self._bar is None:
            return
        step = max(0, min(evaluations, self._bar.total) - self._n)
        self._n += step
        best = pick_best(measurements, slo, objective)
        front = pareto_front(measurements, (ENERGY_KEY, objective), slo=slo)
        post = {
            "best": f"{best.value(ENERGY_KEY):.4g} J/tok" if best is not None else "-",
            "pareto": len(front),
            "failed": tally.failed,
            "infeasible": tally.infeasible,
        }
        self._bar.set_postfix(post, refresh=False)
        self._bar.update(step)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def summary_frame(measurements: list[Measurement], slo: SLO, objective: str) -> pd.DataFrame:
    """The feasible Pareto front as a table (least energy first), the SLO pick marked ``best``.

    Columns: ``best``, ``config``, ``energy_per_output_token_j``, the latency objective and each SLO metric
    (seconds), ``slo_headroom`` (:func:`recommender.pareto.slo_headroom`), ``throughput_output_tok_s``,
    ``avg_power_w``, ``provenance``, ``measurement_id``. Empty (with those columns) when no evaluated config meets
    the SLO.
    """
    import pandas as pd

    keys = list(dict.fromkeys([objective, *(t.key for t in slo.targets)]))
    front = pareto_front(measurements, (ENERGY_KEY, objective), slo=slo)
    best = pick_best(measurements, slo, objective)
    rows = []
    for m in front:
        row: dict[str, Any] = {"best": m is best, "config": m.config.short(), ENERGY_KEY: m.value(ENERGY_KEY)}
        for k in keys:
            row[k] = m.value(k)
        row["slo_headroom"] = round(slo_headroom(m, slo), 4)
        row.update(throughput_output_tok_s=m.value("throughput_output_tok_s"), avg_power_w=m.value("avg_power_w"),
                   provenance=m.provenance, measurement_id=m.id, meets_slo=meets_slo(m, slo))
        rows.append(row)
    cols = ["best", "config", ENERGY_KEY, *keys, "slo_headroom", "throughput_output_tok_s", "avg_power_w", "provenance",
            "measurement_id", "meets_slo"]
    return pd.DataFrame(rows, columns=cols)
