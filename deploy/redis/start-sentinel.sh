#!/bin/sh
# Starts a Sentinel from sentinel.conf plus the primary's password (redis_password secret),
# on a writable copy in /data because Sentinel persists its state into its config file.
set -eu
password=$(cat /run/secrets/redis_password)
umask 077
cp /usr/local/etc/redis/sentinel.conf /data/sentinel.conf
printf 'sentinel auth-pass covet "%s"\n' "$password" >> /data/sentinel.conf
exec redis-server /data/sentinel.conf --sentinel
