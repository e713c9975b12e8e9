#!/usr/bin/env bash
# Installs the real tools the test suite uses to judge covet's output, when missing:
# - promtool (Debian package `prometheus`): `promtool check metrics|rules`, `promtool test rules`;
# - the Prometheus Python client, whose strict OpenMetrics parser checks the OpenMetrics format.
set -euo pipefail

log() { printf 'tools: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v promtool >/dev/null 2>&1; then
  log "installing promtool (Debian package prometheus)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    prometheus >/dev/null
fi

if ! python3 -c 'import prometheus_client.openmetrics.parser' >/dev/null 2>&1; then
  log "installing the Prometheus Python client (PyPI prometheus-client)"
  python3 -m pip install --quiet --disable-pip-version-check prometheus-client
fi

log "promtool $(promtool --version 2>&1 | head -n 1 | awk '{print $3}') and prometheus_client ready"
