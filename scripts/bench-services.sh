#!/usr/bin/env bash
# Starts the benchmark's own PostgreSQL cluster and Redis on loopback and prints the
# DATABASE_URL / REDIS_URL to use. Separate from the test cluster (scripts/test-services.sh,
# port 55432) so a benchmark neither slows down nor is slowed down by test runs, and its
# data (1 M and 10 M audit rows, minutes to generate) is kept between runs.
# Idempotent: reuses running servers.
#   eval "$(bash scripts/bench-services.sh)"          # what `npm run bench` does itself
#   bash scripts/bench-services.sh stop               # stop both (the data stays on disk)
# Settings a dedicated 2-4 GB database host would have: 1 GB shared_buffers so the hot part
# of a 10 M-row audit_log (~3 GB with indexes) stays cached the way it would in production,
# default planner costs (random_page_cost 4: nothing tuned to flatter the plans).
set -euo pipefail
PGPORT="${WARDEN_BENCH_PGPORT:-55442}"
REDISPORT="${WARDEN_BENCH_REDISPORT:-56389}"
BASE="${WARDEN_BENCH_DIR:-/var/tmp/warden-bench-services}"
mkdir -p "$BASE"

PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
[ -x "$PGBIN/initdb" ] || { echo "PostgreSQL server binaries not found (apt-get install -y postgresql)" >&2; exit 1; }
RUNAS=()
if [ "$(id -u)" = "0" ]; then
  RUNAS=(runuser -u postgres --)
  chown postgres "$BASE"
fi
PGDATA="$BASE/pg"

if [ "${1:-}" = "stop" ]; then
  "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null 2>&1 || true
  redis-cli -p "$REDISPORT" shutdown nosave >/dev/null 2>&1 || true
  exit 0
fi

if ! "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
  [ -f "$PGDATA/PG_VERSION" ] || "${RUNAS[@]}" "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust >/dev/null
  "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -l "$BASE/pg.log" -w -t 120 \
    -o "-p $PGPORT -k $BASE -c listen_addresses=127.0.0.1 -c max_connections=200 \
        -c shared_buffers=1GB -c effective_cache_size=3GB -c work_mem=16MB -c maintenance_work_mem=512MB \
        -c max_wal_size=8GB -c checkpoint_timeout=30min -c synchronous_commit=off" start >/dev/null
fi

if ! redis-cli -p "$REDISPORT" ping >/dev/null 2>&1; then
  redis-server --port "$REDISPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --logfile "$BASE/redis.log" >/dev/null
  for _ in $(seq 1 50); do redis-cli -p "$REDISPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

echo "export DATABASE_URL=postgres://postgres@127.0.0.1:$PGPORT/postgres"
echo "export REDIS_URL=redis://127.0.0.1:$REDISPORT/0"
