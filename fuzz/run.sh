#!/usr/bin/env bash
# Builds the covet fuzz targets and runs each for a bounded time, starting from the committed
# seed corpus (fuzz/corpus/<target>/). Fails on the first crash, panic, timeout or leak report;
# libFuzzer leaves the input that failed in fuzz/artifacts/<target>/.
#
#   fuzz/run.sh                 every target, 30 s each
#   FUZZ_SECONDS=300 fuzz/run.sh quota client_ip
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). libFuzzer needs nightly compiler
# flags; on a stable toolchain they are unlocked with RUSTC_BOOTSTRAP=1. The build uses its own
# target directory, fuzz/target. New inputs found during a run go to fuzz/target/corpus/, so the
# committed seeds only change on purpose (`cargo fuzz cmin`).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-30}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(request_id client_ip trace_context accept quota server_config)
fi

if ! command -v cargo-fuzz >/dev/null; then
  echo "fuzz/run.sh: cargo-fuzz is not installed; run: cargo install cargo-fuzz --locked" >&2
  exit 1
fi
export RUSTC_BOOTSTRAP=1
# No sanitizer: covet has no unsafe code, and safe Rust's bugs (panics, overflows with debug
# assertions on, runaway memory or time) are what the targets look for.
flags=(--sanitizer none --debug-assertions --target-dir fuzz/target)

started=$(date +%s)
cargo fuzz build "${flags[@]}"
echo "fuzz: built in $(($(date +%s) - started)) s"
bin_dir=fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release

for target in "${targets[@]}"; do
  work=fuzz/target/corpus/$target
  mkdir -p "$work" "fuzz/corpus/$target"
  echo "=== fuzz $target for ${seconds} s"
  log=fuzz/target/$target.log
  status=0
  mkdir -p "fuzz/artifacts/$target"
  # The built binary directly: `cargo fuzz run` would re-enter cargo (and its locks) per target.
  "$bin_dir/$target" -artifact_prefix="fuzz/artifacts/$target/" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -print_final_stats=1 "$work" "fuzz/corpus/$target" >"$log" 2>&1 || status=$?
  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log" >&2
    echo "fuzz: $target failed; the input is in fuzz/artifacts/$target/; replay it with" >&2
    echo "  RUSTC_BOOTSTRAP=1 cargo fuzz run ${flags[*]} $target fuzz/artifacts/$target/<file>" >&2
    exit 1
  fi
done
echo "fuzz: all targets ran ${seconds} s each without a finding ($(($(date +%s) - started)) s in all)"
