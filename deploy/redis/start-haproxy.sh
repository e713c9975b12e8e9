#!/bin/sh
# Starts HAProxy (redis/haproxy.cfg) with the Redis password from the redis_password secret in
# its environment, where the config's health check reads it as ${REDIS_PASSWORD}.
set -eu
REDIS_PASSWORD=$(cat /run/secrets/redis_password)
export REDIS_PASSWORD
exec haproxy -W -db -f /usr/local/etc/haproxy/haproxy.cfg
