#!/usr/bin/env bash
# Setup + the whole CPU test suite (unit + integration; gpu tests skip without a GPU).
# Starts a throwaway PostgreSQL on loopback for the multi-worker search tests when it can.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test bash scripts/setup.sh
VENV=${VENV:-.venv}
if [ -z "${RECOMMENDER_TEST_POSTGRES_URL:-}" ] && [ -f .ci/postgres.sh ]; then
  if out=$(bash .ci/postgres.sh); then
    eval "$out"
  else
    echo "warning: could not start PostgreSQL; postgres tests will be skipped" >&2
  fi
fi
# a real browser for the UI test (Debian's chromium + chromium-driver), when we may install packages
if ! command -v chromedriver >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 \
    || echo "warning: could not install chromium; the browser test will be skipped" >&2
fi
set +e
"$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
