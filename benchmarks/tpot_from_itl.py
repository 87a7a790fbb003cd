"""Benchmark: TPOT learned from the few models that measured it vs derived from ITL (CPU).

Our H100 runs are the only rows with TPOT (the public exports have none). Prints:

1. per tail (p90, p99), over our runs that measured TPOT and ITL: the median of
   ``log(tpot_pq / tpot_p50) / log(itl_pq / itl_p50)`` (what :data:`recommender.surrogate.targets.TPOT_TAIL_EXPONENT`
   is set from), and the MAPE of ``tpot_p50 * (itl_pq / itl_p50) ** a`` given the measured p50, for that exponent
   and for a square root;
2. leave-one-model-out over the models with TPOT (trained on our runs + the public sources, as ``recommender
   train``): TPOT MAPE per held-out model with TPOT learned (every fold) and derived from ITL (every fold), the
   evidence behind :data:`~recommender.surrogate.targets.MIN_TPOT_MODELS`.

Run: ``python benchmarks/tpot_from_itl.py [--shared-data ../shared/data] [--measurements data/measurements]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recommender.dataset import load_training_measurements  # noqa: E402
from recommender.surrogate import targets as T  # noqa: E402
from recommender.surrogate import training  # noqa: E402
from recommender.surrogate.build import DEFAULT_PUBLIC  # noqa: E402
from recommender.surrogate.public_data import load_public  # noqa: E402

TPOT = ("tpot_p50_s", "tpot_p90_s", "tpot_p99_s")


def _tail_mape(M: pd.DataFrame, q: str, exponent: float) -> float:
    """MAPE (percent) of ``tpot_p50 * (itl_pq / itl_p50) ** exponent`` against the measured TPOT ``q``."""
    pred = M["tpot_p50_s"] * (M[f"itl_{q}_s"] / M["itl_p50_s"]) ** exponent
    return float((pred / M[f"tpot_{q}_s"] - 1).abs().mean() * 100)


def tail_exponents(M: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for q in ("p90", "p99"):
        ratio_t, ratio_i = M[f"tpot_{q}_s"] / M["tpot_p50_s"], M[f"itl_{q}_s"] / M["itl_p50_s"]
        a = (np.log(ratio_t) / np.log(ratio_i)).replace([np.inf, -np.inf], np.nan).dropna()
        rows.append({"tail": q, "runs": len(a), "median_exponent": float(a.median()),
                     "shipped_exponent": T.TPOT_TAIL_EXPONENT[q],
                     "mape_shipped_pct": _tail_mape(M, q, T.TPOT_TAIL_EXPONENT[q]),
                     "mape_sqrt_pct": _tail_mape(M, q, 0.5)})
    return pd.DataFrame(rows)


def lomo(data: training.TrainingData, learned: bool) -> pd.DataFrame:
    has = data.Y["tpot_p50_s"].notna().to_numpy()
    saved = T.MIN_TPOT_MODELS, T.MIN_TPOT_ROWS
    T.MIN_TPOT_MODELS = T.MIN_TPOT_ROWS = 1 if learned else 10**9  # every fold learns TPOT / none does
    try:
        cv = training.grouped_cv(data, "model", eval_mask=has)
    finally:
        T.MIN_TPOT_MODELS, T.MIN_TPOT_ROWS = saved
    return cv.assign(**{t: (cv[f"{t}_pred"] / cv[t] - 1).abs() * 100 for t in TPOT}).groupby("model")[list(TPOT)].mean()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared-data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--measurements", type=Path, default=Path("data/measurements"))
    args = ap.parse_args()
    ours = [m for m in load_training_measurements([args.measurements])[0] if m.ok]
    data = training.training_data(ours + [m for ld in load_public(DEFAULT_PUBLIC, args.shared_data)
                                          for m in ld.measurements])
    has = data.Y["tpot_p50_s"].notna().to_numpy()
    pd.set_option("display.width", 200)
    fmt = lambda x: f"{x:.3f}"  # noqa: E731
    print(f"runs with TPOT: {int(has.sum())} ({data.meta['model'][has].value_counts().to_dict()})\n")
    print("ITL-derived TPOT tails, given the measured TPOT p50:")
    print(tail_exponents(data.M[has].reset_index(drop=True)).to_string(index=False, float_format=fmt))
    both = pd.concat({"learned": lomo(data, True), "derived": lomo(data, False)}, axis=1)
    print("\nleave-one-model-out TPOT MAPE (percent) per held-out model, TPOT learned vs derived from ITL:")
    print(both.to_string(float_format=lambda x: f"{x:.1f}"))


if __name__ == "__main__":
    main()
