#!/bin/sh
# Runs once, when the primary's data directory is created (docker-entrypoint-initdb.d):
# the replication role, its physical slot, and pg_hba access for the replica.
set -eu
replication_password=$(cat /run/secrets/postgres_replication_password)
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v pw="$replication_password" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'pw';
SELECT pg_create_physical_replication_slot('replica1');
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
