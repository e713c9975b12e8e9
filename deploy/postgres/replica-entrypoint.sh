#!/bin/sh
# PostgreSQL streaming replica for deploy/compose.prod.yaml (official postgres image, as root).
# On an empty volume, clones the primary with pg_basebackup (-R writes primary_conninfo and
# standby.signal, -S uses the primary's slot so no WAL it needs is recycled), then starts as a
# hot standby. Promote with `SELECT pg_promote();` (docs/operations/high-availability.md).
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA"
  chown postgres:postgres "$PGDATA"
  chmod 0700 "$PGDATA"
  PGPASSWORD=$(cat /run/secrets/postgres_replication_password)
  export PGPASSWORD
  until su-exec postgres pg_basebackup --host=postgres-primary --username=replicator \
      --pgdata="$PGDATA" --wal-method=stream --slot=replica1 --write-recovery-conf --progress; do
    echo "replica: waiting for the primary" >&2
    rm -rf "${PGDATA:?}"/*
    sleep 3
  done
  unset PGPASSWORD
fi
exec docker-entrypoint.sh postgres -c hot_standby=on
