# A throwaway Redis configured like a tenant's (TLS only, client certificates from a CA made
# here, IP SAN 127.0.0.1, the job users' ACL rules as the operator writes them), on a free
# loopback port. Source this file; tls_redis_start DIR exports TLS_REDIS_PORT, TLS_REDIS_PASS
# (of user `verity`), TLS_REDIS_DIR and the VERITY_REDIS_* settings; tls_redis_stop stops it.

tls_redis_start() {
  local dir=$1
  mkdir -p "$dir"
  TLS_REDIS_DIR=$dir
  TLS_REDIS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  (
    cd "$dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=test-ca -keyout ca.key -out ca.crt
    for who in server client; do
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$who" -keyout "$who.key" -out "$who.csr"
      printf 'subjectAltName=IP:127.0.0.1\n' >ext
      openssl x509 -req -in "$who.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -extfile ext -out "$who.crt"
    done
  ) >/dev/null 2>&1 || { echo "openssl could not make the test certificates" >&2; return 1; }
  TLS_REDIS_PASS=$(openssl rand -hex 16)
  # The default user keeps its rights with a password nobody has (Redis 7.0 replays its AOF as
  # the default user); the job users may use rq:* without admin or dangerous commands.
  printf 'user default on resetpass >%s ~* &* +@all\nuser verity on >%s ~rq:* &rq:* +@all -@admin -@dangerous\n' \
    "$(openssl rand -hex 16)" "$TLS_REDIS_PASS" >"$dir/users.acl"
  cat >"$dir/redis.conf" <<CONF
port 0
tls-port $TLS_REDIS_PORT
bind 127.0.0.1
tls-cert-file $dir/server.crt
tls-key-file $dir/server.key
tls-ca-cert-file $dir/ca.crt
tls-auth-clients yes
aclfile $dir/users.acl
dir $dir
appendonly yes
save ""
logfile $dir/redis.log
CONF
  redis-server "$dir/redis.conf" &
  echo $! >"$dir/redis.pid"
  export TLS_REDIS_DIR TLS_REDIS_PORT TLS_REDIS_PASS
  export VERITY_REDIS_URL="rediss://127.0.0.1:$TLS_REDIS_PORT/0" VERITY_REDIS_USERNAME=verity \
    VERITY_REDIS_PASSWORD="$TLS_REDIS_PASS" VERITY_REDIS_TLS_CA="$dir/ca.crt" \
    VERITY_REDIS_TLS_CERT="$dir/client.crt" VERITY_REDIS_TLS_KEY="$dir/client.key"
  local _
  for _ in $(seq 1 100); do
    tls_redis_cli ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "redis-server did not start (see $dir/redis.log)" >&2
  return 1
}

tls_redis_cli() {
  redis-cli -p "$TLS_REDIS_PORT" --tls --cacert "$TLS_REDIS_DIR/ca.crt" --cert "$TLS_REDIS_DIR/client.crt" \
    --key "$TLS_REDIS_DIR/client.key" --user verity --pass "$TLS_REDIS_PASS" --no-auth-warning "$@"
}

# The same connection as a redis-py URL (RQ's --url).
tls_redis_py_url() {
  printf 'rediss://verity:%s@127.0.0.1:%s/0?ssl_ca_certs=%s&ssl_certfile=%s&ssl_keyfile=%s&ssl_cert_reqs=required' \
    "$TLS_REDIS_PASS" "$TLS_REDIS_PORT" "$TLS_REDIS_DIR/ca.crt" "$TLS_REDIS_DIR/client.crt" "$TLS_REDIS_DIR/client.key"
}

tls_redis_stop() {
  if [ -n "${TLS_REDIS_DIR:-}" ] && [ -f "$TLS_REDIS_DIR/redis.pid" ]; then
    kill "$(cat "$TLS_REDIS_DIR/redis.pid")" 2>/dev/null || true
    rm -f "$TLS_REDIS_DIR/redis.pid"
  fi
}
