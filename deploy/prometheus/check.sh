#!/usr/bin/env bash
# Validates the Prometheus recording rules and runs their unit tests with Prometheus's promtool.
# Usage: deploy/prometheus/check.sh   (from anywhere; needs `promtool`, Debian package `prometheus`)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v promtool >/dev/null 2>&1; then
    echo "check.sh: promtool not found on PATH (Debian/Ubuntu: apt-get install -y prometheus)" >&2
    exit 1
fi

promtool check rules recording-rules.yml
promtool test rules tests/recording-rules.test.yml
