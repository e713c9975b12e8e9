#!/bin/sh
# Daily base backup of the primary into the backup volume, keeping 7; together with the
# archived WAL (primary-entrypoint.sh) any point of the last 7 days can be restored
# (docs/operations/backup-and-dr.md). Runs in the postgres image as the postgres user.
set -eu
PGPASSWORD=$(cat /run/secrets/postgres_replication_password)
export PGPASSWORD
while true; do
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  if pg_basebackup --host=postgres-primary --username=replicator \
      --pgdata="/backups/base/$stamp" --format=tar --gzip --wal-method=none --checkpoint=fast; then
    echo "backup: /backups/base/$stamp done"
    # Keep the 7 newest base backups.
    find /backups/base -mindepth 1 -maxdepth 1 -type d | sort -r | tail -n +8 | xargs -r rm -rf
  else
    echo "backup: pg_basebackup failed" >&2
  fi
  sleep 86400
done
