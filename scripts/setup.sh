#!/usr/bin/env bash
# Create (or reuse) a virtual environment and install the tool from this checkout.
#   VENV=path (default .venv)  EXTRAS=test (default "", e.g. "test,postgres")
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null
spec="."
[ -n "${EXTRAS:-}" ] && spec=".[${EXTRAS}]"
"$VENV/bin/python" -m pip install --quiet "$spec"
echo "installed into $VENV: $("$VENV/bin/recommender" --version)" >&2
