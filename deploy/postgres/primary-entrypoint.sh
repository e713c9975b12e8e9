#!/bin/sh
# PostgreSQL primary for deploy/compose.prod.yaml (official postgres image, as root).
# Prepares the WAL archive, then starts the image's entrypoint with streaming replication and
# WAL archiving on: a finished WAL segment is archived at least every 60 s (archive_timeout),
# which bounds the data lost with the primary's volume to about a minute (RPO, see
# docs/operations/backup-and-dr.md).
set -eu
mkdir -p /backups/wal /backups/base
chown -R postgres:postgres /backups
chmod 0700 /backups/wal /backups/base
exec docker-entrypoint.sh postgres \
  -c wal_level=replica \
  -c max_wal_senders=10 \
  -c max_replication_slots=10 \
  -c wal_keep_size=1GB \
  -c hot_standby=on \
  -c archive_mode=on \
  -c archive_timeout=60 \
  -c 'archive_command=test ! -f /backups/wal/%f && cp %p /backups/wal/%f' \
  -c password_encryption=scram-sha-256
