#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster and Redis on loopback for the test suite and
# prints the DATABASE_URL / REDIS_URL to use. Idempotent: reuses running servers.
# Usage: eval "$(bash scripts/test-services.sh)"
set -euo pipefail
PGPORT="${WARDEN_TEST_PGPORT:-55432}"
REDISPORT="${WARDEN_TEST_REDISPORT:-56379}"
BASE="${WARDEN_TEST_DIR:-/tmp/warden-test-services}"
source "$(dirname "${BASH_SOURCE[0]}")/lib/pg-cluster.sh"

start() {
  pg_start "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
}
init() {
  rm -rf "$PGDATA"
  pg_initdb --no-sync
}
if ! pg_running; then
  [ -f "$PGDATA/PG_VERSION" ] || init
  # A cluster left behind by a killed run (stale lock file, half-written data) is throwaway:
  # start it afresh rather than fail.
  start || { echo "restarting the throwaway PostgreSQL cluster from scratch" >&2; init; start; }
fi
redis_ensure
print_urls
