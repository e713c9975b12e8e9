#!/usr/bin/env bash
# Makes sure the real services the test suite talks to answer on 127.0.0.1:
# PostgreSQL on 5432 (trust auth, database `test`) and Redis on 6379 (no persistence).
# Starts them when installed and down; installs them (Debian packages) when missing.
# Exits non-zero, naming the service, when one cannot be brought up, so no test skips silently.
set -euo pipefail

log() { printf 'services: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  log "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_for() { # name, command...
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  log "$name does not answer on 127.0.0.1 after 30 s"
  return 1
}

postgres_up() { pg_isready -q -h 127.0.0.1 -p 5432; }

ensure_postgres() {
  if command -v pg_isready >/dev/null && postgres_up; then return 0; fi
  local fresh=0
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
    fresh=1
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  if [ "$fresh" -eq 1 ]; then
    # Tests connect over TCP as `postgres` without a password, as on developer machines.
    local hba=/etc/postgresql/$version/main/pg_hba.conf
    as_root sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
  fi
  log "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for PostgreSQL postgres_up
  if [ "$fresh" -eq 1 ]; then
    as_root su postgres -c "createdb test" || true
    as_root su postgres -c "createuser -s root" || true
    as_root su postgres -c "createdb -O root root" || true
  fi
}

redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

ensure_redis() {
  if command -v redis-cli >/dev/null && redis_up; then return 0; fi
  command -v redis-server >/dev/null || apt_install redis-server
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/covet-redis.log
  wait_for Redis redis_up
}

ensure_postgres
ensure_redis
log "PostgreSQL and Redis answer on 127.0.0.1"
