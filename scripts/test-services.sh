#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster and Redis on loopback for the test suite and
# prints the DATABASE_URL / REDIS_URL to use. Idempotent: reuses running servers.
# Usage: eval "$(bash scripts/test-services.sh)"
set -euo pipefail
PGPORT="${WARDEN_TEST_PGPORT:-55432}"
REDISPORT="${WARDEN_TEST_REDISPORT:-56379}"
BASE="${WARDEN_TEST_DIR:-/tmp/warden-test-services}"
mkdir -p "$BASE"

PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
[ -x "$PGBIN/initdb" ] || { echo "PostgreSQL server binaries not found (apt-get install -y postgresql)" >&2; exit 1; }
RUNAS=()
if [ "$(id -u)" = "0" ]; then
  RUNAS=(runuser -u postgres --)
  chown postgres "$BASE"
fi
PGDATA="$BASE/pg"
pg_start() {
  "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -l "$BASE/pg.log" -w \
    -o "-p $PGPORT -k $BASE -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" start >/dev/null
}
pg_init() {
  rm -rf "$PGDATA"
  "${RUNAS[@]}" "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust --no-sync >/dev/null
}
if ! "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
  [ -f "$PGDATA/PG_VERSION" ] || pg_init
  # A cluster left behind by a killed run (stale lock file, half-written data) is throwaway:
  # start it afresh rather than fail.
  pg_start || { echo "restarting the throwaway PostgreSQL cluster from scratch" >&2; pg_init; pg_start; }
fi

if ! redis-cli -p "$REDISPORT" ping >/dev/null 2>&1; then
  redis-server --port "$REDISPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --logfile "$BASE/redis.log" >/dev/null
  for _ in $(seq 1 50); do redis-cli -p "$REDISPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

echo "export DATABASE_URL=postgres://postgres@127.0.0.1:$PGPORT/postgres"
echo "export REDIS_URL=redis://127.0.0.1:$REDISPORT/0"
