#!/usr/bin/env bash
# Load run: the same small app (examples/load_app.rs, `GET /users/{id}` → small JSON) served
# as bare axum Router, the full covet stack and the peer stack, under three recorders: no
# `tracing` subscriber, an INFO fmt subscriber into a sink, and the production set-up (covet's
# telemetry init / the peer's hand-made equivalent: JSON lines into a file, every request
# sampled); with no subscriber also the covet stack sending the peer's response headers. Each
# with one Tokio worker pinned to CPU 0 and driven by wrk pinned to CPU 1 (2 s warm-up, then
# RUNS measured runs), all in one run, on 127.0.0.1 only. Writes benches/LOAD.md (median
# throughput, its ratio to bare under the same recorder, median p50/p99 latency), which
# benches/report.py includes in BENCHMARKS.md.
#
# Usage: benches/load.sh            (env: RUNS=3 DURATION=10s CONNECTIONS=32 PORT=38080)
# Needs wrk and taskset (apt-get install wrk util-linux). Not part of CI: it takes ~6 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
PORT=${PORT:-38080}
ADDR="127.0.0.1:$PORT"
URL="http://$ADDR/users/42"
OUT=benches/LOAD.md

for tool in wrk taskset curl python3; do
  command -v "$tool" >/dev/null || { echo "load.sh needs $tool (apt-get install wrk util-linux curl python3)" >&2; exit 1; }
done
if [ "$(nproc)" -lt 2 ]; then
  echo "load.sh needs 2 CPUs (server on CPU 0, wrk on CPU 1)" >&2
  exit 1
fi

echo "=== building the load app (release)"
cargo build --release --locked --example load_app
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
APP="$target_dir/release/examples/load_app"

export LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

CASES="none:bare none:covet none:covet-lean none:peer info:bare info:covet info:peer telemetry:bare telemetry:covet telemetry:peer"
for case in $CASES; do
  recorder=${case%%:*} mode=${case#*:}
  echo "=== $mode, recorder $recorder"
  log="$work/$case.log"
  taskset -c 0 "$APP" "$mode" "$ADDR" "$recorder" "$log" >"$work/$case.server.out" 2>"$work/$case.server.err" &
  server=$!
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$URL" 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || { cat "$work/$case.server.err" >&2; exit 1; }
    sleep 0.1
  done
  curl -fsS -D "$work/$case.headers" -o "$work/$case.body" "$URL" \
    || { echo "load_app $mode does not answer $URL" >&2; exit 1; }
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s "$URL" >/dev/null   # warm-up
  for run in $(seq 1 "$RUNS"); do
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$URL" >"$work/$case.$run.txt"
    grep -E "Requests/sec|^ +(50|99)%|Non-2xx|Socket errors" "$work/$case.$run.txt" | tr -s ' ' | sed "s/^/  run $run:/"
  done
  sleep 6   # one more report of the dropped-line counter
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
  if [ -f "$log" ]; then wc -l <"$log" >"$work/$case.lines"; else echo 0 >"$work/$case.lines"; fi
  # A run that dropped log lines did less work than it claims: it does not count.
  dropped=$(grep -o 'dropped log lines: [0-9]*' "$work/$case.server.err" | tail -1 | grep -o '[0-9]*$' || echo 0)
  echo "${dropped:-0}" >"$work/$case.dropped"
  echo "  log lines written: $(cat "$work/$case.lines"), dropped: ${dropped:-0}"
done

python3 - "$work" "$RUNS" "$DURATION" "$CONNECTIONS" "$OUT" "$CASES" <<'PY'
import datetime, os, re, statistics, subprocess, sys
from pathlib import Path

work, runs, duration, conns, out = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
cases = sys.argv[6].split()

def ms(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

def parse(path):
    text = path.read_text()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)
    if non2xx or errors:
        sys.exit(f"{path.name}: wrk saw failures: {(non2xx or errors).group(0)}")
    return rps, p50, p99

labels = {
    "bare": "bare axum Router",
    "covet": "covet full stack",
    "covet-lean": "covet full stack, the peer's response headers",
    "peer": "peer stack",
}
recorders = {
    "none": "no `tracing` subscriber",
    "info": "an INFO `fmt` subscriber into `io::sink`",
    "telemetry": "production telemetry: JSON lines into a file, every request sampled",
}
results = {c: [parse(work / f"{c}.{r}.txt") for r in range(1, runs + 1)] for c in cases}
med = {c: tuple(statistics.median(x[i] for x in rs) for i in range(3)) for c, rs in results.items()}
dropped = {c: int((work / f"{c}.dropped").read_text().strip() or 0) for c in cases}
lines = {c: int((work / f"{c}.lines").read_text().strip() or 0) for c in cases}
for c in cases:
    if dropped[c]:
        sys.exit(f"{c}: the log queue dropped {dropped[c]} lines: the run does not count")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
wrk = (wrk.stdout + wrk.stderr).splitlines()[0].split(" [")[0]
rows = []
summary = []
for recorder, title in recorders.items():
    bare = med[f"{recorder}:bare"][0]
    for c in cases:
        rec, mode = c.split(":")
        if rec != recorder:
            continue
        rps, p50, p99 = med[c]
        runs_text = ", ".join(f"{r[0]:,.0f}" for r in results[c])
        log = f"{lines[c]:,}" if recorder == "telemetry" else "—"
        rows.append(f"| {title} | {labels[mode]} | {rps:,.0f} | {rps / bare:.2f} | {p50:.3f} ms | {p99:.3f} ms | {log} | {runs_text} |")
    covet, peer = med[f"{recorder}:covet"][0], med[f"{recorder}:peer"][0]
    added = (1 / covet - 1 / bare) * 1e6
    summary.append(f"- {title}: covet / bare **{covet / bare:.2f}×** (+{added:.1f} µs a request on the one worker), covet / peer **{covet / peer:.2f}×**, peer / bare {peer / bare:.2f}×.")
lean = med["none:covet-lean"][0] / med["none:peer"][0]
header_bytes = ", ".join(f"{m} {len((work / f'none:{m}.headers').read_bytes()):,}" for m in labels)
text = f"""## Load (benches/load.sh)

Generated by `benches/load.sh` on {datetime.date.today().isoformat()} — do not edit by hand.
Machine: {os.cpu_count()} cores, {cpu}; load average {os.environ["LOAD_BEFORE"]} when the runs began.
`examples/load_app.rs` serves `GET /users/{{id}}` (small JSON) with one Tokio worker, the
process pinned to CPU 0 (`taskset -c 0`: its log-writer thread shares that CPU);
`{wrk} -t1 -c{conns} -d{duration} --latency` pinned to CPU 1 drives it over 127.0.0.1 after a
2 s warm-up; {runs} runs per row, medians shown, every response a 2xx. Ratios are to bare axum
under the same recorder. Under a subscriber the peer's tower-http `TraceLayer` records its span
and response line at INFO (one line a request, like covet's request log). "Production" is
`covet::telemetry` (`init` with the sampler always on and export off, JSON through its log
queue) for covet, and for bare and the peer tracing-subscriber's JSON formatter through
tracing-appender's non-blocking writer plus `tracing-opentelemetry` over the same SDK set-up.
"Log lines" counts the lines in the log file after the runs; no run dropped any.

| recorder | stack | requests/s (median) | ratio to bare | p50 | p99 | log lines | each run (req/s) |
|---|---|---:|---:|---:|---:|---:|---|
""" + "\n".join(rows) + f"""

""" + "\n".join(summary) + f"""
- With no subscriber and the peer's response headers, covet / peer: **{lean:.2f}×**. Response
  header bytes (one `curl -D` per stack): {header_bytes}.
"""
Path(out).write_text(text)
print(text)
PY
echo "wrote $OUT"
# BENCHMARKS.md = criterion's latest results (benches/run.sh) + this table + benches/NOTES.md.
python3 benches/report.py --command "benches/run.sh, then benches/load.sh"
