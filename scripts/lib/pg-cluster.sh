# Shared by scripts/test-services.sh and scripts/bench-services.sh (sourced, not run): a
# PostgreSQL cluster and a Redis on loopback under $BASE, as the postgres user when run as root.
# The caller sets BASE, PGPORT and REDISPORT first; this sets PGBIN, RUNAS and PGDATA.

mkdir -p "$BASE"
PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
[ -x "$PGBIN/initdb" ] || { echo "PostgreSQL server binaries not found (apt-get install -y postgresql)" >&2; exit 1; }
RUNAS=()
if [ "$(id -u)" = "0" ]; then
  RUNAS=(runuser -u postgres --)
  chown postgres "$BASE"
fi
PGDATA="$BASE/pg"

pg_running() {
  "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1
}

# pg_initdb [initdb options…]
pg_initdb() {
  "${RUNAS[@]}" "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust "$@" >/dev/null
}

# pg_start "<server settings>" [pg_ctl options…]: listens on 127.0.0.1:$PGPORT, socket in $BASE.
pg_start() {
  local settings="$1"
  shift
  "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -l "$BASE/pg.log" -w "$@" \
    -o "-p $PGPORT -k $BASE -c listen_addresses=127.0.0.1 $settings" start >/dev/null
}

pg_stop() {
  "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null 2>&1 || true
}

# A throwaway Redis (no persistence), started unless one answers on $REDISPORT.
redis_ensure() {
  if ! redis-cli -p "$REDISPORT" ping >/dev/null 2>&1; then
    redis-server --port "$REDISPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
      --logfile "$BASE/redis.log" >/dev/null
    for _ in $(seq 1 50); do redis-cli -p "$REDISPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
}

print_urls() {
  echo "export DATABASE_URL=postgres://postgres@127.0.0.1:$PGPORT/postgres"
  echo "export REDIS_URL=redis://127.0.0.1:$REDISPORT/0"
}
