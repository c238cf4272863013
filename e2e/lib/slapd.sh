# A throwaway OpenLDAP directory for the LDAP sign-in tests: a private slapd (Debian's package,
# its own slapd.conf and mdb database in a temporary directory; the system instance is never
# used), listening on 127.0.0.1 only, plain LDAP (for StartTLS) on one free port and LDAPS on
# another, with a server certificate (IP SAN 127.0.0.1) from a test CA made here.
#
# Source this file; slapd_start exports VERITY_TEST_LDAP_URL (ldap://), VERITY_TEST_LDAPS_URL,
# VERITY_TEST_LDAP_CA (PEM file), VERITY_TEST_LDAP_BASE, VERITY_TEST_LDAP_ADMIN_DN/_PASSWORD
# (the directory manager, for tests that change entries) and VERITY_TEST_LDAP_BIND_DN/_PASSWORD
# (the read-only service account Verity binds as); slapd_stop kills it by PID and removes it all.
#
# Seed (dc=verity,dc=test): people alice, bob (password "Secret-alice-1" / "Secret-bob-1") and
# carol (disabled: employeeType=disabled, which the tests' user search filter excludes), groups
# ldap-admins (alice) and ldap-labelers (alice, bob).

slapd_start() {
  local dir port tport admin_pw bind_pw base
  dir=$(mktemp -d /tmp/verity-slapd.XXXXXX)
  SLAPD_DIR=$dir
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  tport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  base="dc=verity,dc=test"
  admin_pw=$(openssl rand -hex 12)
  bind_pw=$(openssl rand -hex 12)
  mkdir -p "$dir/db" "$dir/tls"
  (
    cd "$dir/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=verity-ldap-test-ca \
      -keyout ca.key -out ca.crt &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=127.0.0.1 \
      -keyout server.key -out server.csr &&
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext &&
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out server.crt
  ) >/dev/null 2>&1 || { echo "openssl could not make the LDAP test certificates" >&2; return 1; }
  cat >"$dir/slapd.conf" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile $dir/slapd.pid
TLSCACertificateFile $dir/tls/ca.crt
TLSCertificateFile $dir/tls/server.crt
TLSCertificateKeyFile $dir/tls/server.key
disallow bind_anon
database mdb
maxsize 33554432
suffix "$base"
rootdn "cn=admin,$base"
rootpw $admin_pw
directory $dir/db
access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
access to *
  by dn.exact="cn=verity,ou=services,$base" read
  by self read
  by * none
CONF
  local alice bob carol svc
  alice=$(slappasswd -s Secret-alice-1)
  bob=$(slappasswd -s Secret-bob-1)
  carol=$(slappasswd -s Secret-carol-1)
  svc=$(slappasswd -s "$bind_pw")
  cat >"$dir/seed.ldif" <<LDIF
dn: $base
objectClass: dcObject
objectClass: organization
dc: verity
o: Verity test directory

dn: ou=people,$base
objectClass: organizationalUnit
ou: people

dn: ou=groups,$base
objectClass: organizationalUnit
ou: groups

dn: ou=services,$base
objectClass: organizationalUnit
ou: services

dn: cn=verity,ou=services,$base
objectClass: person
cn: verity
sn: service
userPassword: $svc

dn: uid=alice,ou=people,$base
objectClass: inetOrgPerson
uid: alice
cn: Alice Liddell
givenName: Alice
sn: Liddell
mail: alice@ldap.verity.test
userPassword: $alice

dn: uid=bob,ou=people,$base
objectClass: inetOrgPerson
uid: bob
cn: Bob Builder
givenName: Bob
sn: Builder
mail: bob@ldap.verity.test
userPassword: $bob

dn: uid=carol,ou=people,$base
objectClass: inetOrgPerson
uid: carol
cn: Carol Disabled
givenName: Carol
sn: Disabled
mail: carol@ldap.verity.test
employeeType: disabled
userPassword: $carol

dn: cn=ldap-admins,ou=groups,$base
objectClass: groupOfNames
cn: ldap-admins
member: uid=alice,ou=people,$base

dn: cn=ldap-labelers,ou=groups,$base
objectClass: groupOfNames
cn: ldap-labelers
member: uid=alice,ou=people,$base
member: uid=bob,ou=people,$base
LDIF
  slaptest -f "$dir/slapd.conf" -u >"$dir/slaptest.log" 2>&1 || { cat "$dir/slaptest.log" >&2; return 1; }
  slapadd -f "$dir/slapd.conf" -l "$dir/seed.ldif" >"$dir/slapadd.log" 2>&1 || { cat "$dir/slapadd.log" >&2; return 1; }
  slapd -f "$dir/slapd.conf" -h "ldap://127.0.0.1:$port/ ldaps://127.0.0.1:$tport/" >"$dir/slapd.log" 2>&1 \
    || { cat "$dir/slapd.log" >&2; return 1; }
  # slapd daemonizes and writes its pid file once it listens.
  local i
  for i in $(seq 1 100); do
    [ -s "$dir/slapd.pid" ] && LDAPTLS_CACERT="$dir/tls/ca.crt" ldapwhoami -x -H "ldaps://127.0.0.1:$tport/" \
      -D "cn=admin,$base" -w "$admin_pw" >/dev/null 2>&1 && break
    sleep 0.1
  done
  [ -s "$dir/slapd.pid" ] || { echo "slapd did not start" >&2; cat "$dir/slapd.log" >&2; return 1; }
  export VERITY_TEST_LDAP_URL="ldap://127.0.0.1:$port"
  export VERITY_TEST_LDAPS_URL="ldaps://127.0.0.1:$tport"
  export VERITY_TEST_LDAP_CA="$dir/tls/ca.crt"
  export VERITY_TEST_LDAP_BASE="$base"
  export VERITY_TEST_LDAP_ADMIN_DN="cn=admin,$base"
  export VERITY_TEST_LDAP_ADMIN_PASSWORD="$admin_pw"
  export VERITY_TEST_LDAP_BIND_DN="cn=verity,ou=services,$base"
  export VERITY_TEST_LDAP_BIND_PASSWORD="$bind_pw"
  export SLAPD_DIR
}

slapd_stop() {
  if [ -n "${SLAPD_DIR:-}" ] && [ -d "$SLAPD_DIR" ]; then
    if [ -s "$SLAPD_DIR/slapd.pid" ]; then
      local pid i
      pid=$(cat "$SLAPD_DIR/slapd.pid")
      kill "$pid" 2>/dev/null || true
      for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -rf "$SLAPD_DIR"
  fi
}
