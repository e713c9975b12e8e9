#!/usr/bin/env bash
# Soak test of the reference server (issue 13), run on demand — not part of CI.
#
# Builds covet-server in release, starts it with PostgreSQL and Redis, drives steady load with
# wrk (a mix of /api/hello, /api/notes/{id} through the Redis cache, /api/notes from PostgreSQL
# and unmatched paths) and samples every 10 s: resident memory, open file descriptors, the pool
# gauges and the request count from /metrics. Fails when resident memory after the warm-up grows
# by more than 10 %, or descriptors or pool connections keep growing (a leak). Writes the table
# to benches/SOAK.md (benches/report.py appends it to BENCHMARKS.md).
#
#   scripts/soak.sh                      10 minutes
#   SOAK_SECONDS=120 scripts/soak.sh     a short proof run
#
# Settings (environment): SOAK_SECONDS (600), SOAK_WARMUP (60, or a fifth of a shorter run),
# SOAK_INTERVAL (10), SOAK_CONNECTIONS (16), SOAK_OUT (benches/SOAK.md), DATABASE_URL, REDIS_URL.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${SOAK_SECONDS:-600}
interval=${SOAK_INTERVAL:-10}
warmup=${SOAK_WARMUP:-$((seconds / 5 < 60 ? seconds / 5 : 60))}
connections=${SOAK_CONNECTIONS:-16}
out=${SOAK_OUT:-benches/SOAK.md}
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"

log() { printf 'soak: %s\n' "$*" >&2; }

scripts/services.sh
if ! command -v wrk >/dev/null; then
  log "installing wrk"
  if [ "$(id -u)" -eq 0 ]; then apt-get install -y -qq wrk >/dev/null; else sudo apt-get install -y -qq wrk >/dev/null; fi
fi

log "building covet-server (release)"
cargo build --release --locked -p covet-server
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/release/covet-server"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
api="127.0.0.1:$(free_port)"
admin="127.0.0.1:$(free_port)"
work=$(mktemp -d)
server_pid=""
wrk_pid=""
cleanup() {
  [ -n "$wrk_pid" ] && kill "$wrk_pid" 2>/dev/null || true
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# No per-request rate limit worth the name (all load comes from one address) and no request log.
RUST_LOG=warn "$bin" --listen "$api" --admin-listen "$admin" --log-format json \
  --rate-limit 100000000/s --pre-stop-delay 0s --drain-timeout 5s 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 100); do
  curl -fs "http://$admin/health/ready" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; log "the server exited"; exit 1; }
  sleep 0.2
done
curl -fs "http://$admin/health/ready" >/dev/null || { log "the server never became ready"; exit 1; }
note=$(curl -fs -X POST -H 'content-type: application/json' \
  -d '{"title":"soak","body":"a note read through the cache"}' "http://$api/api/notes" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
log "server $server_pid on $api (admin $admin), note $note; load for ${seconds} s, warm-up ${warmup} s"

cat >"$work/mix.lua" <<LUA
local paths = { "/api/hello", "/api/notes/$note", "/api/notes/$note", "/api/notes", "/no/such/path" }
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
LUA
wrk -t1 -c"$connections" -d"$((seconds + interval))s" -s "$work/mix.lua" "http://$api" >"$work/wrk.txt" 2>&1 &
wrk_pid=$!

status=0
python3 - "$server_pid" "$admin" "$seconds" "$interval" "$warmup" "$out" "$connections" <<'PY' || status=$?
import os, sys, time, urllib.request, datetime, subprocess

pid, admin, seconds, interval, warmup, out, conns = sys.argv[1:]
seconds, interval, warmup = int(seconds), int(interval), int(warmup)

def rss_kib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

def fds():
    return len(os.listdir(f"/proc/{pid}/fd"))

def metrics():
    text = urllib.request.urlopen(f"http://{admin}/metrics", timeout=10).read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        found[name] = float(value)
    def pick(metric, *labels):
        return sum(v for k, v in found.items()
                   if k.split("{")[0] == metric and all(l in k for l in labels))
    return {
        "requests": pick("http_requests_total"),
        "pg": pick("db_connection_pool_size", 'pool_name="notes"'),
        "pg_max": pick("db_client_connection_max", 'pool_name="notes"'),
        "redis": pick("db_connection_pool_size", 'pool_name="cache"'),
        "redis_max": pick("db_client_connection_max", 'pool_name="cache"'),
        "errors": pick("http_requests_total", 'status="5'),
    }

rows, start = [], time.monotonic()
while True:
    elapsed = time.monotonic() - start
    m = metrics()
    rows.append((round(elapsed), rss_kib(), fds(), m))
    print(f"soak: t={elapsed:5.0f}s rss={rows[-1][1]/1024:.1f} MiB fds={rows[-1][2]} "
          f"pg={m['pg']:.0f} redis={m['redis']:.0f} requests={m['requests']:.0f}", file=sys.stderr)
    if elapsed >= seconds:
        break
    time.sleep(max(0.0, interval - (time.monotonic() - start - elapsed)))

after_warmup = [r for r in rows if r[0] >= warmup]
base, last = after_warmup[0], rows[-1]
rss_growth = (last[1] - base[1]) / base[1] * 100
peak_rss = max(r[1] for r in after_warmup)
fd_growth = last[2] - base[2]
throughput = (last[3]["requests"] - base[3]["requests"]) / max(1, last[0] - base[0])
failures = []
if (peak_rss - base[1]) / base[1] > 0.10:
    failures.append(f"resident memory grew {100 * (peak_rss - base[1]) / base[1]:.1f} % after the warm-up (limit 10 %)")
# Descriptors: the wrk connections and pool sockets are steady; a few may come and go.
if fd_growth > 8:
    failures.append(f"open descriptors grew by {fd_growth} after the warm-up")
for pool in ("pg", "redis"):
    over = [r for r in rows if r[3][pool] > r[3][pool + "_max"] > 0]
    if over:
        failures.append(f"the {pool} pool held more connections than its maximum")
    if last[3][pool] > base[3][pool] + 1:
        failures.append(f"the {pool} pool grew from {base[3][pool]:.0f} to {last[3][pool]:.0f} connections")
if last[3]["errors"] > 0:
    failures.append(f"{last[3]['errors']:.0f} requests answered 5xx")
if throughput <= 0:
    failures.append("no requests were served after the warm-up")

today = datetime.date.today().isoformat()
lines = [
    "## Soak (scripts/soak.sh)",
    "",
    f"Generated by `scripts/soak.sh` on {today}: release `covet-server` with PostgreSQL and Redis, "
    f"{seconds} s of steady load (wrk, 1 thread, {conns} connections; /api/hello, /api/notes/{{id}} "
    f"through the Redis cache, /api/notes from PostgreSQL, an unmatched path), sampled every "
    f"{interval} s; warm-up {warmup} s. Passes when resident memory after the warm-up grows by at "
    "most 10 % and descriptors and pool connections stay flat.",
    "",
    "| t (s) | RSS (MiB) | open fds | PostgreSQL pool | Redis pool | requests served |",
    "|---:|---:|---:|---:|---:|---:|",
]
for t, rss, fd, m in rows:
    lines.append(f"| {t} | {rss / 1024:.1f} | {fd} | {m['pg']:.0f} / {m['pg_max']:.0f} | "
                 f"{m['redis']:.0f} / {m['redis_max']:.0f} | {m['requests']:.0f} |")
lines += [
    "",
    f"After the warm-up: RSS {base[1] / 1024:.1f} → {last[1] / 1024:.1f} MiB ({rss_growth:+.1f} %, "
    f"peak {peak_rss / 1024:.1f} MiB), descriptors {base[2]} → {last[2]}, "
    f"{throughput:.0f} requests/s. Result: **{'FAIL' if failures else 'pass'}**"
    + (": " + "; ".join(failures) if failures else "") + ".",
    "",
]
with open(out, "w") as f:
    f.write("\n".join(lines))
print(f"soak: wrote {out}", file=sys.stderr)
for failure in failures:
    print(f"soak: FAIL: {failure}", file=sys.stderr)
sys.exit(1 if failures else 0)
PY
wait "$wrk_pid" 2>/dev/null || true
wrk_pid=""
log "wrk: $(grep -E 'Requests/sec|Non-2xx|Socket errors' "$work/wrk.txt" | tr -s ' ' | paste -sd ';' -)"
exit "$status"
