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
source "$(dirname "${BASH_SOURCE[0]}")/lib/pg-cluster.sh"

if [ "${1:-}" = "stop" ]; then
  pg_stop
  redis-cli -p "$REDISPORT" shutdown nosave >/dev/null 2>&1 || true
  exit 0
fi

if ! pg_running; then
  # The data is kept: never initialised over, never removed.
  [ -f "$PGDATA/PG_VERSION" ] || pg_initdb
  pg_start "-c max_connections=200 -c shared_buffers=1GB -c effective_cache_size=3GB -c work_mem=16MB -c maintenance_work_mem=512MB \
    -c max_wal_size=8GB -c checkpoint_timeout=30min -c synchronous_commit=off" -t 120
fi
redis_ensure
print_urls
