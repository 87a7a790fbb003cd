#!/usr/bin/env bash
# Setup + the main job: a recommendation from the shipped surrogate, on CPU, in seconds.
# Extra arguments replace the example scenario, e.g.:
#   bash scripts/run.sh --model Qwen3-14B --gpu H100 --gpus 2 --workload azure-code-2023 --slo "ttft:p99<=1s,tpot:p90<=40ms"
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${VENV:-.venv}
if [ "$#" -eq 0 ]; then
  set -- --model Llama-3.1-8B --gpu H100 --gpus 1 --workload azure-conv-2023 --slo "ttft:p99<=2s,tpot:p90<=60ms"
fi
exec "$VENV/bin/recommender" recommend "$@"
