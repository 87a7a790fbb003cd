#!/usr/bin/env bash
# A real search on the lent H100 (MODEL, GPU, SLO, NUM_REQUESTS, SPACE, CONFIRM override the defaults below): `recommender optimize --evaluator vllm` over benchmarks/spaces/h100-engine.yaml
# (engine knobs only; clocks and power limit stay at their defaults), Llama-3.1-8B shape with dummy weights,
# mlenergy-chat with 1024 requests all at once, SLO tpot p90 <= 25 ms. The search strategy is optimize's default,
# now prior-guided (recommender/search/guided.py: the shipped surrogate's predictions corrected online by a GP over
# measured/predicted; TPE turns once the prior stops improving). data/measurements/h100_guided holds such a study;
# data/measurements/h100_optimize the earlier one with the old warm start (2 enqueued surrogate picks, then TPE).
# Re-running it resumes the same study (SQLite in $RUN_DIR) and adds trials up to N_EVALS. An evaluation cut by
# LIMIT_S is lost (a cold first engine start takes ~190 s, later ones 90-150 s, each run ~40-70 s more).
#
# On the device, after the vLLM bundles (../shared/gpu/README.md) and with the wheels the image lacks carried in
# .whl (6.3 MiB; it fits beside the small last bundle; here: echo /.whl/ >> .git/info/exclude; python3 -m pip download
#   --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
#   --platform manylinux_2_17_x86_64 -d .whl optuna==5.0.0 alembic==1.20.1 colorlog==6.12.0 Mako==1.4.3
#   SQLAlchemy==2.1.9 skops==0.16.0 prettytable==3.18.0 wcwidth scikit-learn==1.9.1):
#   source /root/vllm_bundles/env.sh && N_EVALS=2 RUN_DIR=/tmp/optimize_guided bash benchmarks/optimize_h100.sh
#   # then N_EVALS=4, 6, ... with the same RUN_DIR (a machine gone cold loses it: carry the last tarball's
#   # contents back in an ignored folder and cp -r it to RUN_DIR before resuming)
# Here, afterwards (each tarball holds the whole run dir, so replace the previous extraction):
#   rm -rf data/measurements/h100_guided/{study.db,measurements}
#   tar xzf <files_at>/optimize_h100.tar.gz -C data/measurements/h100_guided
set -euo pipefail
cd "$(dirname "$0")/.."
N_EVALS=${N_EVALS:-3}
MODEL=${MODEL:-Llama-3.1-8B}            # any catalog model that fits one H100
SLO=${SLO:-tpot:p90<=25ms}
NUM_REQUESTS=${NUM_REQUESTS:-1024}
GPU=${GPU:-H100}                        # the catalog name of the GPU the study runs on
RUN_DIR=${RUN_DIR:-/tmp/optimize_h100}
LIMIT_S=${LIMIT_S:-540}
SPACE=${SPACE:-benchmarks/spaces/h100-engine.yaml}
CONFIRM=${CONFIRM:-2}                   # --confirm-repeats: runs of a best config at the SLO boundary, after the budget
if [ -d .whl ] && [ ! -f /tmp/site2/optuna/__init__.py ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site2 .whl/*.whl
fi
export PYTHONPATH=/tmp/site2:${PYTHONPATH:-}
set +e
PYTHONUNBUFFERED=1 timeout --signal=INT --kill-after=30 "$LIMIT_S" python3 -m recommender.cli optimize \
  --model "$MODEL" --gpu "$GPU" --gpus 1 --workload mlenergy-chat --num-requests "$NUM_REQUESTS" \
  --space "$SPACE" --slo "$SLO" --evaluator vllm --confirm-repeats "$CONFIRM" \
  --n-evals "$N_EVALS" --batch-size 1 --run-dir "$RUN_DIR" --no-progress
rc=$?
set -e
if [ -n "${OUT:-}" ]; then
  tar czf "$OUT/optimize_h100.tar.gz" -C "$RUN_DIR" .
fi
exit "$rc"
