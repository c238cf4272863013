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
  # TLS is on (plain connections are still accepted) so tests can prove encrypted connections.
  local tls="$PG_DIR/tls"
  mkdir -p "$tls"
  {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=verity-test-ca \
      -keyout "$tls/ca.key" -out "$tls/ca.crt" &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=127.0.0.1 \
      -keyout "$PG_DIR/data/server.key" -out "$tls/server.csr" &&
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$tls/ext" &&
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial -days 2 \
      -extfile "$tls/ext" -out "$PG_DIR/data/server.crt"
  } >/dev/null 2>&1 || { echo "openssl could not create the test server certificate" >&2; return 1; }
  [ "$(id -u)" = 0 ] && chown postgres: "$PG_DIR/data/server.key" "$PG_DIR/data/server.crt"
  chmod 600 "$PG_DIR/data/server.key"
  pg_as_owner "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_DIR -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c ssl=on" start >/dev/null \
    || { cat "$PG_DIR/server.log" >&2; return 1; }
  export VERITY_TEST_DATABASE_URL="postgres://verity@127.0.0.1:$port/postgres"
  export VERITY_TEST_PG_CA="$PG_DIR/tls/ca.crt"
  export PG_DIR PG_BIN="$bin"
}

pg_stop() {
  if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ]; then
    pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
}
