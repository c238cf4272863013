#!/bin/sh
# Entrypoint of the verity-test/postgres image (tests only): on first start it creates a cluster
# in $PGDATA whose only user is $POSTGRES_USER (password $POSTGRES_PASSWORD), a database
# $POSTGRES_DB, and client authentication that accepts TLS connections with a password and
# nothing else; then it runs the server with the certificate and key mounted at $PG_TLS_DIR.
set -eu
PGDATA=${PGDATA:-/var/lib/postgresql/data}
USER_NAME=${POSTGRES_USER:-verity}
DB_NAME=${POSTGRES_DB:-verity}
TLS=${PG_TLS_DIR:-/tls}
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
[ -f "$TLS/tls.crt" ] && [ -f "$TLS/tls.key" ] || { echo "no $TLS/tls.crt and $TLS/tls.key: this server speaks TLS only" >&2; exit 1; }

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    chmod 700 "$PGDATA"
    umask 077
    printf '%s' "$POSTGRES_PASSWORD" >/tmp/pwfile
    initdb -D "$PGDATA" -U "$USER_NAME" --pwfile=/tmp/pwfile --auth=scram-sha-256 -E UTF8 --locale=C >/tmp/initdb.log 2>&1 ||
        { cat /tmp/initdb.log >&2; exit 1; }
    rm -f /tmp/pwfile
    cat >"$PGDATA/pg_hba.conf" <<HBA
local     all all               scram-sha-256
hostssl   all all 0.0.0.0/0     scram-sha-256
hostssl   all all ::/0          scram-sha-256
HBA
    PGPASSWORD=$POSTGRES_PASSWORD
    export PGPASSWORD
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses= -c unix_socket_directories=/tmp" start >/tmp/start.log 2>&1 ||
        { cat /tmp/start.log >&2; exit 1; }
    if [ "$DB_NAME" != postgres ]; then
        psql -h /tmp -U "$USER_NAME" -d postgres -v ON_ERROR_STOP=1 -q -c "create database \"$DB_NAME\""
    fi
    pg_ctl -D "$PGDATA" -w stop >/dev/null
fi
umask 077
cat "$TLS/tls.crt" >"$PGDATA/server.crt"
cat "$TLS/tls.key" >"$PGDATA/server.key"
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/tmp \
    -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key -c ssl_min_protocol_version=TLSv1.2
