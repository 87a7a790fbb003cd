#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on loopback for the `postgres`-marked tests (multi-worker Optuna studies).
#
# Usage (from .ci/run or a shell):
#   eval "$(bash .ci/postgres.sh)"          # starts (or reuses) the server, exports RECOMMENDER_TEST_POSTGRES_URL
#   bash .ci/postgres.sh --stop             # stops it and removes its data directory
#
# What it does, idempotently:
#   1. finds initdb/pg_ctl (PATH, then /usr/lib/postgresql/<newest>/bin); when missing and running as root,
#      installs Debian's `postgresql` package (apt-get update first);
#   2. keeps its state in $RECOMMENDER_PG_DIR (default: /tmp/recommender-ci-postgres): data directory, log, port;
#      if a server from an earlier call is still up there it is reused;
#   3. otherwise initialises a cluster (trust auth, superuser `postgres`), picks a free port and starts the server
#      on 127.0.0.1 only, with its Unix socket inside the state directory. PostgreSQL refuses to run as root, so as
#      root the server runs as the `postgres` system user (created by the Debian package) or, failing that, a
#      system user `recommender-pg` created here;
#   4. creates database $RECOMMENDER_PG_DB (default: recommender_test) if missing;
#   5. prints `export RECOMMENDER_TEST_POSTGRES_URL=postgresql+psycopg2://postgres@127.0.0.1:<port>/<db>` on
#      stdout (everything else goes to stderr), so `eval "$(...)"` sets it in the caller.
set -euo pipefail

STATE="${RECOMMENDER_PG_DIR:-/tmp/recommender-ci-postgres}"
DB="${RECOMMENDER_PG_DB:-recommender_test}"
DATA="$STATE/data"
LOG="$STATE/server.log"
log() { echo "postgres.sh: $*" >&2; }

find_bin() {
  local name=$1 d
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/$name" ]; then echo "$d/$name"; return 0; fi
  done
  return 1
}

ensure_installed() {
  if find_bin initdb >/dev/null && find_bin pg_ctl >/dev/null; then return 0; fi
  if [ "$(id -u)" != 0 ]; then
    log "initdb/pg_ctl not found and not root: install Debian's postgresql package first"; exit 1
  fi
  log "installing Debian's postgresql package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends postgresql >&2
  find_bin initdb >/dev/null || { log "postgresql installed but initdb not found"; exit 1; }
}

# Run a command as the server's user (root cannot run PostgreSQL).
RUN_AS=""
as_user() {
  if [ -n "$RUN_AS" ]; then
    if command -v runuser >/dev/null 2>&1; then runuser -u "$RUN_AS" -- "$@"
    else su -s /bin/sh "$RUN_AS" -c "$(printf '%q ' "$@")"; fi
  else "$@"; fi
}

pick_user() {
  [ "$(id -u)" = 0 ] || return 0
  if id postgres >/dev/null 2>&1; then RUN_AS=postgres
  else
    id recommender-pg >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin recommender-pg
    RUN_AS=recommender-pg
  fi
}

free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 30000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  log "no free port found"; exit 1
}

running() {
  [ -f "$STATE/port" ] && [ -f "$DATA/postmaster.pid" ] && as_user "$PG_CTL" -D "$DATA" status >/dev/null 2>&1
}

stop() {
  pick_user
  PG_CTL=$(find_bin pg_ctl) || { rm -rf "$STATE"; return 0; }
  if [ -f "$DATA/postmaster.pid" ]; then as_user "$PG_CTL" -D "$DATA" -m fast -w stop >&2 || true; fi
  rm -rf "$STATE"
  log "stopped and removed $STATE"
}

if [ "${1:-}" = "--stop" ]; then stop; exit 0; fi

ensure_installed
INITDB=$(find_bin initdb)
PG_CTL=$(find_bin pg_ctl)
PSQL=$(find_bin psql || echo psql)
pick_user

if running; then
  PORT=$(cat "$STATE/port")
  log "reusing the server on 127.0.0.1:$PORT ($DATA)"
else
  if [ -f "$DATA/postmaster.pid" ]; then as_user "$PG_CTL" -D "$DATA" -m immediate stop >/dev/null 2>&1 || true; fi
  rm -rf "$STATE"
  mkdir -p "$STATE"
  chmod 700 "$STATE"
  [ -n "$RUN_AS" ] && chown "$RUN_AS" "$STATE"
  log "initialising a cluster in $DATA"
  as_user "$INITDB" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --no-instructions >"$STATE/initdb.log" 2>&1 \
    || { cat "$STATE/initdb.log" >&2; exit 1; }
  PORT=$(free_port)
  log "starting on 127.0.0.1:$PORT"
  if ! as_user "$PG_CTL" -D "$DATA" -l "$LOG" -w -t 60 \
      -o "-p $PORT -c listen_addresses=127.0.0.1 -k $STATE -c max_connections=200 -c fsync=off" start >&2; then
    cat "$LOG" >&2 || true; exit 1
  fi
  echo "$PORT" >"$STATE/port"
fi

if ! as_user "$PSQL" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$DB'" \
    | grep -q 1; then
  as_user "$PSQL" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qc "CREATE DATABASE \"$DB\"" >&2
  log "created database $DB"
fi

URL="postgresql+psycopg2://postgres@127.0.0.1:$PORT/$DB"
export RECOMMENDER_TEST_POSTGRES_URL="$URL"
echo "export RECOMMENDER_TEST_POSTGRES_URL=$URL"
