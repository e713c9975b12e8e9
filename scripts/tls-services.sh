#!/usr/bin/env bash
# TLS-only PostgreSQL and Redis for the TLS tests, beside (never instead of) the plain services
# of scripts/services.sh:
#
#   - a certificate authority and a server certificate for `localhost` (SAN DNS:localhost only,
#     so connecting by 127.0.0.1 fails a full verification), made fresh by openssl each run;
#   - a throw-away PostgreSQL cluster on 127.0.0.1:55432 with ssl=on that accepts only TLS
#     connections (hostssl, trust);
#   - a Redis on 127.0.0.1:6390 that speaks only TLS (no plain port) and wants a password, as
#     ElastiCache with transit encryption and an auth token does.
#
# Everything lives under $COVET_TLS_DIR (default /tmp/covet-tls). Idempotent: stops what a
# previous run started, then starts afresh. Prints the variables the tests read.
set -euo pipefail

dir=${COVET_TLS_DIR:-/tmp/covet-tls}
pg_port=${COVET_TLS_PG_PORT:-55432}
redis_port=${COVET_TLS_REDIS_PORT:-6390}
redis_password=covet-tls-test

log() { printf 'tls-services: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

pg_bin=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
  log "PostgreSQL's server binaries are missing; run scripts/services.sh first"
  exit 1
fi
if ! command -v openssl >/dev/null; then
  log "installing openssl"
  as_root apt-get update -qq >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
fi
command -v redis-server >/dev/null || { log "redis-server is missing; run scripts/services.sh first"; exit 1; }

# Stop what a previous run left.
if [ -f "$dir/pg/postmaster.pid" ]; then
  as_root runuser -u postgres -- "$pg_bin/pg_ctl" -D "$dir/pg" -m immediate stop >/dev/null 2>&1 || true
fi
if [ -f "$dir/redis.pid" ]; then
  kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
  sleep 0.2
fi
as_root rm -rf "$dir"
mkdir -p "$dir"

# A CA and a server certificate for localhost.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=covet test CA" \
  -keyout "$dir/ca.key" -out "$dir/ca.crt" >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
  -keyout "$dir/server.key" -out "$dir/server.csr" >/dev/null 2>&1
printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' > "$dir/server.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
  -CAcreateserial -days 2 -extfile "$dir/server.ext" -out "$dir/server.crt" >/dev/null 2>&1
chmod 0644 "$dir"/*.crt
chmod 0600 "$dir"/*.key

# PostgreSQL: its own cluster, owned by the postgres user, TLS only.
mkdir -p "$dir/pg" "$dir/pg-files"
cp "$dir/server.crt" "$dir/server.key" "$dir/pg-files/"
as_root chown -R postgres "$dir/pg" "$dir/pg-files"
as_root chmod 0700 "$dir/pg"
as_root chmod 0600 "$dir/pg-files/server.key"
as_root runuser -u postgres -- "$pg_bin/initdb" -D "$dir/pg" -U postgres --auth=trust >/dev/null
cat <<EOF | as_root tee -a "$dir/pg/postgresql.conf" >/dev/null
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$dir/pg'
ssl = on
ssl_cert_file = '$dir/pg-files/server.crt'
ssl_key_file = '$dir/pg-files/server.key'
EOF
printf 'hostssl all all 127.0.0.1/32 trust\nlocal all all trust\n' |
  as_root tee "$dir/pg/pg_hba.conf" >/dev/null
as_root runuser -u postgres -- "$pg_bin/pg_ctl" -D "$dir/pg" -l "$dir/pg/server.log" -w start >/dev/null

# Redis: TLS only.
redis-server --port 0 --tls-port "$redis_port" --bind 127.0.0.1 \
  --tls-cert-file "$dir/server.crt" --tls-key-file "$dir/server.key" \
  --tls-ca-cert-file "$dir/ca.crt" --tls-auth-clients no \
  --requirepass "$redis_password" \
  --save "" --appendonly no --dir "$dir" --daemonize yes \
  --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"

for _ in $(seq 1 50); do
  if "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" &&
     openssl s_client -connect "127.0.0.1:$redis_port" -CAfile "$dir/ca.crt" </dev/null >/dev/null 2>&1; then
    log "PostgreSQL (TLS) on 127.0.0.1:$pg_port, Redis (TLS) on 127.0.0.1:$redis_port, CA $dir/ca.crt"
    echo "COVET_TLS_CA_FILE=$dir/ca.crt"
    echo "COVET_TLS_DATABASE_URL=postgres://postgres@localhost:$pg_port/postgres"
    echo "COVET_TLS_REDIS_URL=rediss://:$redis_password@localhost:$redis_port"
    exit 0
  fi
  sleep 0.2
done
log "the TLS services did not come up; see $dir/pg/server.log and $dir/redis.log"
exit 1
