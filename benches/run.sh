#!/usr/bin/env bash
# Runs every criterion bench with short, fixed measurement times and regenerates BENCHMARKS.md
# from the results. Usage: benches/run.sh [extra criterion args]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --workspace --all-features --locked --bench '*' -- --warm-up-time 1 --measurement-time 3 "$@"
python3 benches/report.py --command "benches/run.sh"
