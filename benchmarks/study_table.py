#!/usr/bin/env python3
"""Print every trial of a saved study beside what the shipped surrogate predicts for the same config.

For a real search (e.g. ``benchmarks/optimize_h100.sh``, results in ``data/measurements/h100_optimize``): who
proposed each trial (warm start or the sampler), the measured J/token and latency objective, whether it met the
SLO, and the surrogate's point prediction with its error. CPU only.

Run: ``python benchmarks/study_table.py data/measurements/h100_optimize/study.db [--model-dir DIR]``; ``--model-dir``
names a folder with another surrogate (``surrogate-v1.skops`` + card), e.g. the one a study ran with, taken from git:
``mkdir -p /tmp/m && for f in skops card.json; do git show REV:models/surrogate-v1.$f > /tmp/m/surrogate-v1.$f; done``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study", help="SQLite file of the study (or an RDB URL)")
    ap.add_argument("--study-name", default=None, help="needed when the storage holds several studies")
    ap.add_argument("--model-dir", default=None, help="folder of the surrogate to compare with (default: models/)")
    args = ap.parse_args(argv)

    import optuna

    from recommender import api
    from recommender.config import Scenario, ServingConfig

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = args.study if "://" in args.study else f"sqlite:///{args.study}"
    study = optuna.load_study(study_name=args.study_name, storage=url)
    scenario = Scenario.model_validate(study.user_attrs["recommender"]["scenario"])
    slo = study.user_attrs["recommender"].get("slo")
    objective = study.user_attrs["recommender"].get("objective", "tpot_p90_s")
    from recommender.errors import RecommenderError

    try:
        surrogate = api.load_surrogate(args.model_dir)
    except RecommenderError as e:
        ap.error(f"--model-dir: {e}")
    print(f"study {study.study_name}: {scenario.model} on {scenario.hardware.count} x {scenario.hardware.gpu}, "
          f"workload {scenario.workload.name} n{scenario.workload.num_requests}; SLO {slo}; objective {objective}")
    print(f"surrogate {surrogate.source}")
    head = (f"{'#':>2} {'proposed_by':<22} {'config':<36} {'J/tok':>7} {'pred':>7} {'err':>5} "
            f"{objective + ' ms':>14} {'pred':>6} {'err':>5} {'SLO':>4}")
    print(head)
    print("-" * len(head))
    for t in study.trials:
        if "config" not in t.user_attrs:
            continue
        cfg = ServingConfig.model_validate(t.user_attrs["config"])
        met = t.user_attrs.get("metrics") or {}
        j, lat = met.get("energy_per_output_token_j"), met.get(objective)
        pred = surrogate.evaluate(cfg, scenario)
        pj, plat = pred.value("energy_per_output_token_j"), pred.value(objective)

        def err(a: float | None, b: float | None) -> str:
            return f"{100 * (b - a) / a:+.0f}%" if a and b else "-"

        reused = "" if t.user_attrs.get("kind") == "evaluated" else " (reused)"
        print(f"{t.number:>2} {str(t.user_attrs.get('proposed_by', 'sampler')) + reused:<22} "
              f"{t.user_attrs.get('config_short', ''):<36} {j or float('nan'):>7.4f} {pj or float('nan'):>7.4f} "
              f"{err(j, pj):>5} {1e3 * (lat or float('nan')):>14.1f} {1e3 * (plat or float('nan')):>6.1f} "
              f"{err(lat, plat):>5} {'yes' if t.user_attrs.get('meets_slo') else 'no':>4}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
