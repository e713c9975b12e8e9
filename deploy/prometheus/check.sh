#!/usr/bin/env bash
# Validates the Prometheus scrape config, recording rules and alert rules, and runs their unit
# tests with Prometheus's promtool.
# Usage: deploy/prometheus/check.sh   (from anywhere; needs `promtool`, Debian package `prometheus`)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v promtool >/dev/null 2>&1; then
    echo "check.sh: promtool not found on PATH (Debian/Ubuntu: apt-get install -y prometheus)" >&2
    exit 1
fi

promtool check rules recording-rules.yml alert-rules.yml
# `check config` also checks the rule files the config names (same folder).
promtool check config prometheus.yml
promtool test rules tests/recording-rules.test.yml tests/alert-rules.test.yml
