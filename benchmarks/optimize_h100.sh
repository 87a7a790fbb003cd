#!/usr/bin/env bash
# A real search on the lent H100: `recommender optimize --evaluator vllm` over benchmarks/spaces/h100-engine.yaml
# (engine knobs only; clocks and power limit stay at their defaults), Llama-3.1-8B shape with dummy weights,
# mlenergy-chat with 1024 requests all at once, SLO tpot p90 <= 25 ms, warm-started by the shipped surrogate.
# Re-running it resumes the same study (SQLite in $RUN_DIR) and adds trials up to N_EVALS.
#
# On the device, after the vLLM bundles (../shared/gpu/README.md) and with the wheels the image lacks carried in
# .whl (one call of their own: 15 MiB; here: echo /.whl/ >> .git/info/exclude; python3 -m pip download --no-deps
#   --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
#   --platform manylinux_2_17_x86_64 -d .whl optuna==5.0.0 alembic==1.20.1 colorlog==6.12.0 Mako==1.4.3
#   SQLAlchemy==2.1.9 skops==0.16.0 prettytable==3.18.0 wcwidth scikit-learn==1.9.1):
#   source /root/vllm_bundles/env.sh && N_EVALS=3 bash benchmarks/optimize_h100.sh   # then N_EVALS=6, ...
# Here, afterwards: tar xzf <files_at>/optimize_h100.tar.gz -C data/measurements/h100_optimize
set -euo pipefail
cd "$(dirname "$0")/.."
N_EVALS=${N_EVALS:-3}
RUN_DIR=${RUN_DIR:-/tmp/optimize_h100}
LIMIT_S=${LIMIT_S:-540}
if [ -d .whl ] && [ ! -f /tmp/site2/optuna/__init__.py ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site2 .whl/*.whl
fi
export PYTHONPATH=/tmp/site2:${PYTHONPATH:-}
set +e
PYTHONUNBUFFERED=1 timeout --signal=INT --kill-after=30 "$LIMIT_S" python3 -m recommender.cli optimize \
  --model Llama-3.1-8B --gpu H100 --gpus 1 --workload mlenergy-chat --num-requests 1024 \
  --space benchmarks/spaces/h100-engine.yaml --slo 'tpot:p90<=25ms' --evaluator vllm \
  --n-evals "$N_EVALS" --batch-size 1 --run-dir "$RUN_DIR" --no-progress
rc=$?
set -e
if [ -n "${OUT:-}" ]; then
  tar czf "$OUT/optimize_h100.tar.gz" -C "$RUN_DIR" .
fi
exit "$rc"
