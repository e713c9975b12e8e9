#!/usr/bin/env bash
# What each covet feature costs a new app: the crates it pulls in and the cold build time of a
# hello app (.ci/external-app, debug profile, a fresh target directory per row), with
# tower-http's nearest equivalents built the same way. Rewrites the table in README.md between
# the `feature-costs` markers. Takes 20-40 minutes on 2 cores; run it on a quiet machine.
#
#   scripts/feature-costs.sh            # every row
#   scripts/feature-costs.sh trace      # some rows (README.md is left alone)
set -euo pipefail
cd "$(dirname "$0")/.."

app=.ci/external-app/Cargo.toml
rows=("$@")
if [ ${#rows[@]} -eq 0 ]; then
  rows=(none request-id security-headers metrics metrics-gzip system-metrics rate-limit
    rate-limit-redis rate-limit-redis-tls trace telemetry otlp-http otlp-grpc shutdown serve
    health pools-postgres pools-redis tls tower-http-request-id tower-http-set-header tower-http-trace)
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Fetch everything first, so no row's time includes a download.
cargo fetch --manifest-path "$app" --locked >/dev/null

table=$work/table.md
{
  echo "| feature | crates in the build | cold \`cargo build\` |"
  echo "|---|---:|---:|"
} > "$table"
for row in "${rows[@]}"; do
  features=$row
  [ "$row" = none ] && features=""
  crates=$(cargo tree --manifest-path "$app" --locked --no-default-features --features "$features" \
    -e normal,build --prefix none --no-dedupe 2>/dev/null | sed 's/ (\*)$//' | sort -u | wc -l)
  start=$(date +%s%N)
  CARGO_TARGET_DIR=$work/target-$row cargo build --manifest-path "$app" --locked -q \
    --no-default-features --features "$features"
  seconds=$(( ($(date +%s%N) - start) / 1000000000 ))
  rm -rf "$work/target-$row"
  label=$row
  case $row in
    none) label="(none: covet's core, tokio, tower, http)" ;;
    tower-http-*) label="tower-http \`${row#tower-http-}\`" ;;
    *) label="\`$row\`" ;;
  esac
  printf '| %s | %s | %s s |\n' "$label" "$crates" "$seconds" | tee -a "$table"
done

if [ $# -eq 0 ]; then
  python3 - "$table" <<'PY'
import re, sys
table = open(sys.argv[1]).read().strip()
readme = open("README.md").read()
start, end = "<!-- feature-costs:start -->", "<!-- feature-costs:end -->"
if start not in readme:
    sys.exit("README.md has no feature-costs markers")
before, rest = readme.split(start, 1)
_, after = rest.split(end, 1)
open("README.md", "w").write(f"{before}{start}\n{table}\n{end}{after}")
print("README.md: feature table rewritten")
PY
fi
