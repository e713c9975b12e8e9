#!/bin/sh
# Starts redis-server with the shared config plus the password from the redis_password secret,
# written to a file on the data volume so it is not visible in the process list.
# Usage: start-redis.sh [extra redis-server options, e.g. --replicaof redis-primary 6379]
set -eu
password=$(cat /run/secrets/redis_password)
umask 077
printf 'requirepass "%s"\nmasterauth "%s"\n' "$password" "$password" > /data/auth.conf
exec redis-server /usr/local/etc/redis/redis.conf --include /data/auth.conf "$@"
