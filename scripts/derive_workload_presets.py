"""Derive the small workload trace files shipped in ``recommender/data/workloads`` from ``../shared/data``.

Run from the repo root: ``python scripts/derive_workload_presets.py [--shared ../shared]``. Each output is a
gzip CSV with ``arrival_s,input_tokens,output_tokens`` (arrival relative to the first request), so the
package needs nothing from ``../shared`` at run time. Sources: Azure LLM inference trace 2023 (CC-BY-4.0,
Patel et al., Splitwise, ISCA'24) and Mooncake FAST'25 conversation trace (Apache-2.0, Qin et al.).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
from datetime import datetime
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "recommender" / "data" / "workloads"


def _write(name: str, rows: list[tuple[float, int, int]]) -> None:
    rows.sort()
    t0 = rows[0][0]
    path = OUT / f"{name}.csv.gz"
    with gzip.open(path, "wt", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arrival_s", "input_tokens", "output_tokens"])
        for t, i, o in rows:
            w.writerow([f"{t - t0:.3f}", i, o])
    print(f"{path}: {len(rows)} requests over {rows[-1][0] - t0:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared")
    data = Path(ap.parse_args().shared) / "data"
    OUT.mkdir(parents=True, exist_ok=True)
    for kind in ("code", "conv"):
        rows = []
        with open(data / "azure-llm-inference-2023" / f"AzureLLMInferenceTrace_{kind}.csv") as f:
            for r in csv.DictReader(f):
                ts = datetime.strptime(r["TIMESTAMP"][:26], "%Y-%m-%d %H:%M:%S.%f").timestamp()
                rows.append((ts, int(r["ContextTokens"]), int(r["GeneratedTokens"])))
        _write(f"azure-{kind}-2023", rows)
    rows = []
    with open(data / "mooncake-fast25-traces" / "conversation_trace.jsonl") as f:
        for line in f:
            d = json.loads(line)
            rows.append((d["timestamp"] / 1e3, int(d["input_length"]), int(d["output_length"])))
    _write("mooncake-conversation", rows)


if __name__ == "__main__":
    main()
