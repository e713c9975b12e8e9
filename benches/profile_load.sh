#!/usr/bin/env bash
# Where a request's time goes under load: runs examples/load_app.rs (one Tokio worker, pinned
# to CPU 0) for each stack and recorder of benches/load.sh that misses its target, drives it
# with wrk pinned to CPU 1, records the server process with `perf record` for the middle of the
# run, and sorts the samples into components by the innermost frame's symbol (kernel, the
# allocator, hyper/axum/tokio, each covet layer, tracing, OpenTelemetry, …). Writes
# benches/PROFILE.md, which benches/report.py includes in BENCHMARKS.md.
#
# Usage: benches/profile_load.sh     (env: DURATION=12 PORT=38090)
# Needs wrk, perf and taskset. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-12}
PORT=${PORT:-38090}
ADDR="127.0.0.1:$PORT"
URL="http://$ADDR/users/42"
OUT=benches/PROFILE.md

for tool in wrk perf taskset curl python3; do
  command -v "$tool" >/dev/null || { echo "profile_load.sh needs $tool" >&2; exit 1; }
done
cargo build --release --locked --example load_app
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
APP="$target_dir/release/examples/load_app"

work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

CASES="none:bare none:covet info:covet telemetry:covet telemetry:peer"
for case in $CASES; do
  recorder=${case%%:*} mode=${case#*:}
  echo "=== $mode, recorder $recorder"
  taskset -c 0 "$APP" "$mode" "$ADDR" "$recorder" "$work/$case.log" >/dev/null 2>"$work/$case.err" &
  server=$!
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$URL" 2>/dev/null && break
    sleep 0.1
  done
  taskset -c 1 wrk -t1 -c32 -d"${DURATION}s" "$URL" >"$work/$case.wrk" &
  wrk_pid=$!
  sleep 2
  perf record -F 1999 -g -p "$server" -o "$work/$case.data" -- sleep $((DURATION - 4)) >/dev/null 2>&1
  wait "$wrk_pid"
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
  perf report -i "$work/$case.data" --no-children --sort sym --stdio -g none 2>/dev/null \
    | grep -E '^ +[0-9.]+%' >"$work/$case.syms"
  grep "Requests/sec" "$work/$case.wrk" | tr -s ' '
done

python3 - "$work" "$OUT" "$CASES" <<'PY'
import datetime, re, sys
from pathlib import Path

work, out, cases = Path(sys.argv[1]), sys.argv[2], sys.argv[3].split()
# First match wins: (component, pattern on the symbol).
RULES = [
    ("kernel: TCP/loopback, syscalls, scheduler", r"^\[k\]"),
    ("allocator (malloc/free/realloc)", r"\b(_int_malloc|_int_free|malloc|cfree|free|realloc|_int_realloc|unlink_chunk|malloc_consolidate|__libc_malloc|__libc_free|tcache)"),
    ("memcpy/memmove/memset", r"__mem(move|cpy|set)|memcpy|memmove"),
    ("clock reads (vDSO)", r"clock_gettime|Timespec>::now|__vdso"),
    ("covet: request id", r"covet_layers::request_id|MakeUuidV7|covet_layers::headers"),
    ("covet: trace (server span, ids, request log)", r"covet_layers::trace"),
    ("covet: JSON log layer and log queue", r"covet_layers::telemetry"),
    ("covet: metrics", r"covet_layers::metrics"),
    ("covet: rate limit", r"covet_layers::rate_limit|covet_layers::peer"),
    ("covet: security headers", r"covet_layers::security_headers"),
    ("OpenTelemetry SDK and API", r"opentelemetry"),
    ("tracing-subscriber / tracing-core (dispatch, registry, fmt)", r"tracing_subscriber|tracing_core|tracing::|sharded_slab|nu_ansi_term|tracing_opentelemetry|tracing_appender|crossbeam"),
    ("text formatting (core::fmt, float/int printing)", r"core::fmt|flt2dec|pad_integral|Display>::fmt|Debug>::fmt|LowerHex|itoa|ryu"),
    ("JSON (serde_json)", r"serde_json|serde::"),
    ("peer middleware (tower-http, axum-prometheus, metrics, governor)", r"tower_http|axum_prometheus|metrics_exporter|metrics::|governor|tower_governor|quanta|dashmap"),
    ("hyper, axum, http, tokio, bytes", r"hyper|axum|http::|http_body|tokio|mio|bytes::|matchit|tower::|futures|hashbrown|core::hash|std::"),
]
def bucket(sym):
    for name, pat in RULES:
        if re.search(pat, sym):
            return name
    return "other"
def load(case):
    shares = {}
    for line in (work / f"{case}.syms").read_text().splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(.*)", line)
        if not m:
            continue
        pct, sym = float(m.group(1)), m.group(2).strip()
        shares[bucket(sym)] = shares.get(bucket(sym), 0.0) + pct
    return shares
def rps(case):
    m = re.search(r"Requests/sec:\s+([\d.]+)", (work / f"{case}.wrk").read_text())
    return float(m.group(1))
data = {c: load(c) for c in cases}
names = [n for n, _ in RULES] + ["other"]
head = "| component | " + " | ".join(f"`{c}`" for c in cases) + " |"
sep = "|---|" + "---:|" * len(cases)
rows = [head, sep]
rows.append("| requests/s during the profile | " + " | ".join(f"{rps(c):,.0f}" for c in cases) + " |")
rows.append("| CPU µs a request (the worker's CPU) | " + " | ".join(f"{1e6 / rps(c):.1f}" for c in cases) + " |")
for n in names:
    if all(data[c].get(n, 0) < 0.05 for c in cases):
        continue
    cells = []
    for c in cases:
        share = data[c].get(n, 0.0)
        cells.append(f"{share:.1f} % ({share / 100 * 1e6 / rps(c):.2f} µs)")
    rows.append(f"| {n} | " + " | ".join(cells) + " |")
text = f"""## Where the time goes under load (benches/profile_load.sh)

Generated by `benches/profile_load.sh` on {datetime.date.today().isoformat()} — do not edit by hand.
`perf record -g` of the load app's process (one Tokio worker and, under telemetry, the log
writer thread, all pinned to CPU 0, which wrk keeps saturated) while `wrk -t1 -c32` drives
`GET /users/{{id}}`; each column is one stack and recorder as `recorder:stack` of the load
table. Samples are sorted by the innermost frame's symbol; time a request is the share of the
CPU times the CPU time per request (1 / throughput, the worker being the bottleneck).

""" + "\n".join(rows) + "\n"
Path(out).write_text(text)
print(text)
PY
echo "wrote $OUT"
