"""Locked SM clock vs throughput and energy per token, as the shipped surrogate predicts them (CPU only).

The clock's effect comes from the analytical DVFS model (``recommender.surrogate.dvfs``; no public data or
lent GPU sweeps clocks), applied on top of the surrogate's default-clock prediction. Prints, for one
scenario, every locked clock against the unlocked default, the clock of least energy per token, and the
row the issue asks about (1.6 GHz instead of H100's 1.98 GHz).

    python benchmarks/dvfs_clock_sweep.py [--model Llama-3.1-8B] [--gpu H100] [--seqs 256]
"""

from __future__ import annotations

import argparse

from recommender import api
from recommender.config import ServingConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="Llama-3.1-8B")
    ap.add_argument("--gpu", default="H100")
    ap.add_argument("--seqs", type=int, default=256)
    args = ap.parse_args()
    sc = api.scenario(args.model, args.gpu, 1, "mlenergy-chat")
    spec = sc.hardware.spec
    step = 45
    clocks = [None, *range(int(spec.sm_clock_min_mhz) + step, int(spec.sm_clock_max_mhz) + 1, step)]
    if 1600 not in clocks and spec.sm_clock_min_mhz <= 1600 <= spec.sm_clock_max_mhz:
        clocks.append(1600)
    configs = [ServingConfig(max_num_seqs=args.seqs, gpu_clock_mhz=c) for c in clocks]
    pred = api.load_surrogate().predict_frame(configs, sc)
    e0 = float(pred["energy_per_output_token_j"].iloc[0])
    t0 = float(pred["throughput_output_tok_s"].iloc[0])
    print(f"{sc.model} on 1 x {spec.name}, max_num_seqs {args.seqs}, workload {sc.workload.name}; "
          f"unlocked: {e0:.4f} J/token, {t0:.0f} tok/s")
    print(f"{'clock_MHz':>9} {'J/token':>8} {'tok/s':>7} {'W':>5} {'tput_loss':>9} {'energy_saved':>12}")
    rows = sorted(zip(clocks[1:], pred.iloc[1:].itertuples(index=False), strict=True))
    for c, r in rows:
        print(f"{c:>9} {r.energy_per_output_token_j:>8.4f} {r.throughput_output_tok_s:>7.0f} {r.avg_power_w:>5.0f} "
              f"{1 - r.throughput_output_tok_s / t0:>9.1%} {1 - r.energy_per_output_token_j / e0:>12.1%}")
    best = min(rows, key=lambda cr: cr[1].energy_per_output_token_j)
    print(f"least energy per token at {best[0]} MHz (U-shaped in clock: both ends cost more)")
    r1600 = dict(rows).get(1600)
    if r1600 is not None:
        loss = 1 - r1600.throughput_output_tok_s / t0
        print(f"1600 MHz vs unlocked ({spec.sm_clock_max_mhz:g} MHz max): throughput -{loss:.1%},"
              f" energy per token -{1 - r1600.energy_per_output_token_j / e0:.1%}, clock -{1 - 1600 / spec.sm_clock_max_mhz:.1%}")


if __name__ == "__main__":
    main()
