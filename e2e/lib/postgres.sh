# Throwaway PostgreSQL for the tests: a private cluster in a temporary directory, listening on
# 127.0.0.1 on a free port, trust authentication (loopback only), stopped by pg_stop.
# Source this file; pg_start sets VERITY_TEST_DATABASE_URL and PG_DIR.

pg_bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Runs a command as the unprivileged owner of the cluster (initdb refuses to run as root).
pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_start() {
  local bin port
  bin=$(pg_bindir) || { echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2; return 1; }
  port=$(free_port)
  PG_DIR=$(mktemp -d /tmp/verity-pg.XXXXXX)
  [ "$(id -u)" = 0 ] && chown postgres: "$PG_DIR"
  pg_as_owner "$bin/initdb" -D "$PG_DIR/data" -U verity --auth=trust -E UTF8 --no-sync >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log" >&2; return 1; }
  pg_as_owner "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_DIR -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null \
    || { cat "$PG_DIR/server.log" >&2; return 1; }
  export VERITY_TEST_DATABASE_URL="postgres://verity@127.0.0.1:$port/postgres"
  export PG_DIR PG_BIN="$bin"
}

pg_stop() {
  if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ]; then
    pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
}
