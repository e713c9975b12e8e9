#!/usr/bin/env python3
"""Proves the Grafana dashboards of grafana/dashboards/ against the real covet-server.

Usage (from the repository root, after `cargo build -p covet-server`):

    python3 grafana/verify.py --server-bin target/debug/covet-server

1. Structure: every dashboard is classic JSON with `schemaVersion` 39, a stable unique `uid`,
   the `datasource` / `job` / `instance` variables, `${datasource}` on every panel and target,
   a `unit` on every panel, `$__rate_interval` in every rate()/increase()/irate(), a description
   on every panel, and the panels the dashboard is for (a required-metric list per dashboard).
2. Metric names: the verifier starts covet-server (real PostgreSQL and Redis), drives traffic
   and scrapes its `/metrics`. Every metric name in every panel expression, variable query and
   Prometheus rule expression (deploy/prometheus/*.yml) must be exported by that scrape or be
   produced by a recording rule (or by Prometheus itself: `up`, `scrape_*`, `ALERTS`); label
   matchers must name labels the metric has. A renamed metric or label fails, naming the panel.
   Panels whose description starts with `Event-only:` may use a family that has no series
   until its event happens (a labelled counter such as `http_server_exceptions_total`), as long
   as the name is still registered in the workspace's Rust source.
3. Live: starts a real Prometheus (Debian package `prometheus`) on 127.0.0.1 scraping the server
   every second with the rule files of deploy/prometheus loaded, keeps driving traffic that
   touches every feature (notes, cache hits and misses, 404, 401, 429, a slow request, health
   probes), waits for enough samples, then evaluates every panel target through
   `/api/v1/query` with the template variables substituted (`$__rate_interval` -> 1m,
   `$__range` -> 1m, `$__interval` -> 15s, `$job`/`$instance` -> the values the dashboard's own
   variable queries return). Every query must succeed, and every target of every panel must
   return data, except in `Event-only:` panels.
4. Shutdown: SIGTERM to the server with a request longer than its drain deadline in flight,
   while Prometheus keeps scraping the admin port (it lingers past the drain). Every panel
   target on a `shutdown_*` metric must show the shutdown: a value while shutting down that it
   did not have before (lifecycle phase draining then stopping, readiness down, the cancelled
   request counted); `/health/ready` must answer 503 during the drain.

Prints one line per panel target and exits non-zero on any failure. Everything it starts is
stopped on the way out, and every wait is bounded. Python 3.11 standard library only, plus
`prometheus_client`'s text parser (installed by scripts/tools.sh).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DASHBOARDS = os.path.join(ROOT, "grafana", "dashboards")
RULES_DIR = os.path.join(ROOT, "deploy", "prometheus")
SOURCE_DIRS = ["layers", "pools", "health", "example-server", "src"]

JOB = "covet-server"  # the job name of deploy/prometheus/prometheus.yml
EVENT_ONLY = "Event-only:"
EXPECTED_FILES = {
    "overview.json": "covet-overview",
    "http-performance.json": "covet-http-performance",
    "database-performance.json": "covet-database-performance",
    "system-resources.json": "covet-system-resources",
    "error-tracking.json": "covet-error-tracking",
}
# The panels each dashboard is for (the list), as the metrics they must use.
REQUIRED_METRICS = {
    "overview.json": [
        "http_requests_total", "http_server_request_duration_seconds_bucket",
        "http_server_active_requests", "system_cpu_usage_ratio", "system_memory_used_bytes",
        "process_resident_memory_bytes", "health_check_status", "shutdown_phase", "ALERTS",
    ],
    "http-performance.json": [
        "http_requests_total", "http_server_request_duration_seconds_bucket",
        "http_server_active_requests", "http_server_request_body_size_bytes_bucket",
        "http_server_response_body_size_bytes_bucket", "rate_limit_decisions_total",
    ],
    "database-performance.json": [
        "db_queries_total", "db_query_duration_seconds_bucket", "db_connections_active",
        "db_connection_pool_size", "db_client_connection_wait_time_seconds_bucket",
        "db_client_connection_pending_requests", "db_slow_queries_total",
        "db_transactions_total", "job:cache_hit:ratio_rate5m", "cache_hits_total",
    ],
    "system-resources.json": [
        "system_cpu_usage_ratio", "system_memory_used_bytes", "system_disk_used_bytes",
        "system_network_received_bytes_total", "system_network_transmitted_bytes_total",
        "system_load1", "process_cpu_seconds_total", "process_resident_memory_bytes",
        "process_open_fds", "process_threads",
    ],
    "error-tracking.json": [
        "http_requests_total", "http_server_exceptions_total", "app_auth_failures_total",
        "app_rate_limit_exceeded_total", "health_check_status", "shutdown_phase",
    ],
}
# Series Prometheus writes itself.
PROMETHEUS_SERIES = {
    "up", "scrape_duration_seconds", "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling", "scrape_series_added", "ALERTS", "ALERTS_FOR_STATE",
}
# Labels Prometheus attaches to every scraped series.
TARGET_LABELS = {"job", "instance", "__name__"}
# The reference server's shutdown in the proof: long enough phases for 1 s scrapes to see each
# one, and an admin port that outlives the drain by a few scrapes.
PRE_STOP_S, DRAIN_S, LINGER_S = 2, 3, 3
# Evaluation values of Grafana's built-in variables (the data covers at least 30 s).
BUILTINS = {"__rate_interval": "1m", "__range": "1m", "__interval": "15s"}

TIMEOUT_START = 60.0  # server and Prometheus readiness
TIMEOUT_SAMPLES = 180.0  # waiting for enough scrapes


def log(message: str) -> None:
    print(f"verify: {message}", flush=True)


# --------------------------------------------------------------------------------------------
# PromQL: the metric names and label matchers of an expression.

IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
NUMBER = re.compile(r"[0-9.][0-9A-Za-z_.]*")
VARIABLE = re.compile(r"\$\{[^}]*\}|\$[A-Za-z0-9_]+|\[\[[A-Za-z0-9_]+\]\]")
MATCHER = re.compile(
    r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"
    r"(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`)\s*,?"
)
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
AGGREGATORS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}


def _skip_string(s: str, i: int) -> int:
    quote = s[i]
    i += 1
    while i < len(s):
        if s[i] == "\\" and quote != "`":
            i += 2
            continue
        if s[i] == quote:
            return i + 1
        i += 1
    raise ValueError(f"unterminated string in {s!r}")


def _close(s: str, i: int, open_: str, close: str) -> int:
    """Index of the bracket closing the one at s[i], skipping strings."""
    depth = 0
    while i < len(s):
        c = s[i]
        if c in "\"'`":
            i = _skip_string(s, i)
            continue
        if c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unbalanced {open_}{close} in {s!r}")


def _unquote(value: str) -> str:
    if value.startswith("`"):
        return value[1:-1]
    return re.sub(r"\\(.)", r"\1", value[1:-1])


def parse_matchers(text: str) -> list[tuple[str, str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = MATCHER.match(text, pos)
        if not m:
            raise ValueError(f"cannot parse label matchers {{{text}}}")
        out.append((m.group(1), m.group(2), _unquote(m.group(3))))
        pos = m.end()
    return out


def selectors(expr: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """The vector selectors of a PromQL expression: (metric name or '', label matchers)."""
    s, i, out = expr, 0, []
    while i < len(s):
        c = s[i]
        if c in "\"'`":
            i = _skip_string(s, i)
        elif c == "#":  # comment to end of line
            nl = s.find("\n", i)
            i = len(s) if nl < 0 else nl + 1
        elif c == "[" and not s.startswith("[[", i):
            i = _close(s, i, "[", "]") + 1
        elif c == "{":
            j = _close(s, i, "{", "}")
            out.append(("", parse_matchers(s[i + 1:j])))
            i = j + 1
        elif (m := VARIABLE.match(s, i)) and c in "$[":
            i = m.end()
        elif c.isdigit() or (c == "." and i + 1 < len(s) and s[i + 1].isdigit()):
            i = NUMBER.match(s, i).end()
        elif m := IDENT.match(s, i):
            word, j = m.group(), m.end()
            k = j
            while k < len(s) and s[k].isspace():
                k += 1
            lower = word.lower()
            if lower in GROUPING:
                i = _close(s, k, "(", ")") + 1 if k < len(s) and s[k] == "(" else j
            elif lower in KEYWORDS or lower in AGGREGATORS or (k < len(s) and s[k] == "("):
                i = j  # operator, aggregation or function call
            elif k < len(s) and s[k] == "{":
                e = _close(s, k, "{", "}")
                out.append((word, parse_matchers(s[k + 1:e])))
                i = e + 1
            else:
                out.append((word, []))
                i = j
        else:
            i += 1
    return out


RANGE_FUNCS = re.compile(r"\b(rate|irate|increase)\s*\(")


def range_windows(expr: str) -> list[tuple[str, str]]:
    """(function, range) for every rate()/irate()/increase() call."""
    out = []
    for m in RANGE_FUNCS.finditer(expr):
        start = m.end() - 1
        end = _close(expr, start, "(", ")")
        body = expr[start:end]
        ranges = re.findall(r"\[([^\]]*)\]", re.sub(r"\{[^}]*\}", "", body))
        out.append((m.group(1), ranges[0] if ranges else ""))
    return out


# --------------------------------------------------------------------------------------------
# Dashboards and rule files.

@dataclasses.dataclass
class Target:
    file: str
    dashboard: str
    panel_id: int
    panel: str
    event_only: bool
    ref: str
    expr: str
    instant: bool


@dataclasses.dataclass
class Rule:
    file: str
    kind: str  # record | alert
    name: str
    expr: str


def flat_panels(dashboard: dict) -> list[dict]:
    out = []
    for p in dashboard.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []) if p.get("type") == "row" else [])
    return out


def is_ds_var(ds) -> bool:
    return isinstance(ds, dict) and ds.get("uid") in ("${datasource}", "$datasource")


def load_dashboards(problems: list[str]) -> tuple[dict[str, dict], list[Target]]:
    dashboards, targets, uids = {}, [], {}
    files = sorted(os.path.basename(f) for f in glob.glob(os.path.join(DASHBOARDS, "*.json")))
    for missing in sorted(set(EXPECTED_FILES) - set(files)):
        problems.append(f"{missing}: dashboard file missing")
    for name in files:
        where = name
        try:
            with open(os.path.join(DASHBOARDS, name), encoding="utf-8") as f:
                d = json.load(f)
        except (OSError, ValueError) as e:
            problems.append(f"{where}: not valid JSON ({e})")
            continue
        dashboards[name] = d
        if d.get("schemaVersion") != 39:
            problems.append(f"{where}: schemaVersion is {d.get('schemaVersion')!r}, expected 39")
        if "elements" in d or "spec" in d:
            problems.append(f"{where}: schema v2 layout; use classic dashboard JSON")
        uid = d.get("uid")
        if not isinstance(uid, str) or not re.fullmatch(r"covet-[a-z0-9-]{1,34}", uid):
            problems.append(f"{where}: uid {uid!r} is not a stable `covet-…` uid (≤ 40 chars)")
        elif uid in uids:
            problems.append(f"{where}: uid {uid} also used by {uids[uid]}")
        else:
            uids[uid] = name
        if name in EXPECTED_FILES and uid != EXPECTED_FILES[name]:
            problems.append(f"{where}: uid {uid!r}, expected {EXPECTED_FILES[name]!r}")
        if d.get("id") not in (None,):
            problems.append(f"{where}: `id` must be null (Grafana assigns it)")
        variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
        ds = variables.get("datasource")
        if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
            problems.append(f"{where}: needs a `datasource` variable of type datasource, "
                            "query prometheus")
        for var in ("job", "instance"):
            v = variables.get(var)
            if not v or v.get("type") != "query":
                problems.append(f"{where}: needs a `{var}` query variable")
            elif not is_ds_var(v.get("datasource")):
                problems.append(f"{where}: variable `{var}` must use ${{datasource}}")
        title = d.get("title", "?")
        ids = set()
        for p in flat_panels(d):
            ptitle = p.get("title", "?")
            pw = f"{where} / panel '{ptitle}'"
            if p.get("type") == "row":
                continue
            if p.get("id") in ids:
                problems.append(f"{pw}: duplicate panel id {p.get('id')}")
            ids.add(p.get("id"))
            if not is_ds_var(p.get("datasource")):
                problems.append(f"{pw}: datasource must be ${{datasource}}")
            unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit")
            if not unit:
                problems.append(f"{pw}: no unit in fieldConfig.defaults")
            description = p.get("description", "")
            if not description.strip():
                problems.append(f"{pw}: no description")
            if "gridPos" not in p:
                problems.append(f"{pw}: no gridPos")
            if not p.get("targets"):
                problems.append(f"{pw}: no targets")
            for t in p.get("targets", []):
                ref = t.get("refId", "?")
                expr = t.get("expr", "")
                if not expr.strip():
                    problems.append(f"{pw} ({ref}): empty expr")
                    continue
                if "datasource" in t and not is_ds_var(t["datasource"]):
                    problems.append(f"{pw} ({ref}): target datasource must be ${{datasource}}")
                instant = bool(t.get("instant")) and not t.get("range")
                try:
                    for func, window in range_windows(expr):
                        ok = window in ("$__rate_interval", "${__rate_interval}")
                        # A total over the dashboard's time range (pie charts, instant only).
                        ok = ok or (func == "increase" and instant
                                    and window in ("$__range", "${__range}"))
                        if not ok:
                            problems.append(f"{pw} ({ref}): {func}() over [{window}], expected "
                                            "[$__rate_interval]")
                    selectors(expr)
                except ValueError as e:
                    problems.append(f"{pw} ({ref}): cannot parse the expression: {e}")
                    continue
                targets.append(Target(name, title, p.get("id"), ptitle,
                                      description.startswith(EVENT_ONLY), ref, expr, instant))
        used = {n for t in targets if t.file == name for n, _ in selectors(t.expr)}
        for metric in REQUIRED_METRICS.get(name, []):
            if metric not in used:
                problems.append(f"{where}: no panel uses {metric} (a panel this dashboard is for)")
    return dashboards, targets


def variable_queries(dashboard: dict) -> list[tuple[str, str]]:
    out = []
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        out.append((v.get("name"), q))
    return out


LABEL_VALUES = re.compile(
    r"^\s*label_values\(\s*(?:(.+?)\s*,\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$")


def rule_files() -> list[str]:
    out = []
    for path in sorted(glob.glob(os.path.join(RULES_DIR, "*.y*ml"))):
        with open(path, encoding="utf-8") as f:
            if re.search(r"^groups:", f.read(), re.M):
                out.append(path)
    return out


def parse_rules(path: str) -> list[Rule]:
    """record/alert names and expressions of a Prometheus rule file (a YAML subset)."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    items, current, i = [], None, 0
    key_re = re.compile(r"^(\s*)(-\s+)?([A-Za-z_]+)\s*:\s?(.*)$")
    while i < len(lines):
        line = lines[i]
        m = key_re.match(line)
        i += 1
        if not m or line.lstrip().startswith("#"):
            continue
        if m.group(2):
            current = {}
            items.append(current)
        key, value = m.group(3), m.group(4).strip()
        if current is None or key not in ("record", "alert", "expr"):
            continue
        column = len(m.group(1)) + len(m.group(2) or "")
        if value[:1] in ("|", ">"):
            block = []
            while i < len(lines) and (not lines[i].strip()
                                      or len(lines[i]) - len(lines[i].lstrip()) > column):
                block.append(lines[i].strip())
                i += 1
            value = "\n".join(block).strip()
        elif value[:1] == '"':
            value = json.loads(value)
        elif value[:1] == "'":
            value = value[1:-1].replace("''", "'")
        else:
            value = re.sub(r"\s+#.*$", "", value)
            while (i < len(lines) and lines[i].strip() and not key_re.match(lines[i])
                   and len(lines[i]) - len(lines[i].lstrip()) > column):
                value += " " + lines[i].strip()
                i += 1
        current[key] = value
    rules = []
    for item in items:
        kind = "record" if "record" in item else "alert" if "alert" in item else None
        if kind and "expr" in item:
            rules.append(Rule(os.path.relpath(path, ROOT), kind, item[kind], item["expr"]))
    return rules


def source_names() -> set[str]:
    """Every metric-like string literal in the workspace's Rust source."""
    names = set()
    for d in SOURCE_DIRS:
        for path in glob.glob(os.path.join(ROOT, d, "**", "*.rs"), recursive=True):
            with open(path, encoding="utf-8", errors="replace") as f:
                names.update(re.findall(r'"([a-z_:][a-z0-9_:]*)"', f.read()))
    return names


# --------------------------------------------------------------------------------------------
# Processes and HTTP.

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 10.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_until(what: str, check, timeout: float, proc: subprocess.Popen | None = None,
               interval: float = 0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with status {proc.returncode}")
        try:
            result = check()
            if result:
                return result
        except (OSError, ValueError) as e:
            last = e
        time.sleep(interval)
    raise RuntimeError(f"{what}: not reached within {timeout:.0f}s"
                       + (f" (last error: {last})" if last else ""))


def stop(proc: subprocess.Popen | None, name: str) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        log(f"{name} ignored SIGTERM for 15s; killing it")
        proc.kill()
        proc.wait(timeout=10)


def tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------
# Traffic.

class Traffic:
    """Drives requests that touch every feature of the reference server."""

    AGENTS = ["Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", "curl/8.5.0",
              "Googlebot/2.1 (+http://www.google.com/bot.html)", "python-requests/2.32"]

    def __init__(self, api: str, admin: str, token: str):
        self.api, self.admin, self.token = api, admin, token
        self.statuses: collections.Counter = collections.Counter()
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.kept_note: int | None = None
        self.errors = 0
        self.n = 0

    def request(self, method: str, path: str, body=None, token: str | None = None,
                admin: bool = False, content_type: str = "application/json") -> tuple[int, bytes]:
        headers = {"user-agent": self.AGENTS[self.n % len(self.AGENTS)]}
        self.n += 1
        data = None
        if body is not None:
            data = json.dumps(body).encode() if not isinstance(body, bytes) else body
            headers["content-type"] = content_type
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        url = (self.admin if admin else self.api) + path
        try:
            status, payload = http(method, url, data, headers, timeout=15)
        except OSError:
            with self.lock:
                self.errors += 1
            return 0, b""
        if not admin:
            with self.lock:
                self.statuses[status] += 1
        return status, payload

    def note_lifecycle(self) -> None:
        """Create, read twice (cache miss then hit), delete."""
        status, payload = self.request("POST", "/api/notes",
                                       {"title": "verify", "body": "grafana proof"}, self.token)
        if status == 201:
            note = json.loads(payload)["id"]
            self.request("GET", f"/api/notes/{note}")
            self.request("GET", f"/api/notes/{note}")
            self.request("DELETE", f"/api/notes/{note}", token=self.token)

    def rare(self) -> None:
        """Errors, a slow request and the health probes."""
        self.request("GET", "/api/notes/999999999")  # 404 of a route
        self.request("GET", "/api/no-such-route")  # 404 NOT_FOUND
        self.request("POST", "/api/notes", {"title": "x", "body": ""})  # 401 missing
        self.request("POST", "/api/notes", {"title": "x", "body": ""}, "wrong")  # 401 invalid
        self.request("POST", "/api/notes", b"title=x", self.token,
                     content_type="text/plain")  # 415
        self.request("GET", "/api/slow?ms=abc")  # 400
        self.request("GET", "/api/slow?ms=600")  # slow
        for path in ("/health", "/health/live", "/health/ready", "/health/startup"):
            self.request("GET", path, admin=True)

    def burst(self, n: int = 30) -> None:
        """More requests at once than the rate limit allows: some 429s."""
        threads = [threading.Thread(target=self.request, args=("GET", "/api/hello"))
                   for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)

    def every_feature(self) -> None:
        self.request("GET", "/api/hello")
        status, payload = self.request("POST", "/api/notes",
                                       {"title": "kept", "body": "read often"}, self.token)
        if status == 201:
            self.kept_note = json.loads(payload)["id"]
        self.request("GET", "/api/notes")
        self.note_lifecycle()
        self.rare()
        time.sleep(1.5)  # let the bucket refill so the burst is the only refusal
        self.burst()
        time.sleep(1.5)

    def _loop(self) -> None:
        i = 0
        while not self.stop_event.is_set():
            started = time.monotonic()
            self.request("GET", "/api/hello")
            self.request("GET", "/api/notes")
            if self.kept_note is not None:
                self.request("GET", f"/api/notes/{self.kept_note}")  # cache hit
            if i % 3 == 0:
                self.note_lifecycle()
            if i % 5 == 2:
                self.rare()
            if i % 12 == 7:
                self.burst()
            i += 1
            self.stop_event.wait(max(0.0, 1.0 - (time.monotonic() - started)))

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread:
            self.thread.join(timeout=30)


# --------------------------------------------------------------------------------------------
# Checks.

def scrape(admin: str) -> tuple[set[str], dict[str, set[str]], str]:
    status, body = http("GET", admin + "/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    text = body.decode()
    names: set[str] = set()
    labels: dict[str, set[str]] = collections.defaultdict(set)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names.add(sample.name)
            labels[sample.name].update(sample.labels)
    return names, labels, text


def check_names(targets: list[Target], dashboards: dict[str, dict], rules: list[Rule],
                exported: set[str], labels: dict[str, set[str]], declared: set[str],
                problems: list[str], notes: list[str]) -> dict[str, set[str]]:
    """Every metric name used must exist; returns, per failing name, where it is used."""
    recorded = {r.name for r in rules if r.kind == "record"}
    missing: dict[str, set[str]] = collections.defaultdict(set)

    def base(name: str) -> str:
        return re.sub(r"_(bucket|sum|count)$", "", name)

    def check(where: str, expr: str, event_only: bool) -> None:
        for name, matchers in selectors(expr):
            if not name:
                problems.append(f"{where}: a selector without a metric name cannot be checked")
                continue
            if name in exported:
                for label, op, value in matchers:
                    if label in TARGET_LABELS or label in labels[name]:
                        continue
                    if value == "" and op in ("=", "!~"):
                        continue  # matches the absent label
                    problems.append(f"{where}: metric {name} has no label `{label}` in the "
                                    f"scrape (labels: {', '.join(sorted(labels[name])) or '-'})")
            elif name in recorded or name in PROMETHEUS_SERIES:
                pass
            elif event_only and (name in declared or base(name) in declared):
                notes.append(f"{where}: {name} has no series until its event; the name is "
                             "registered in the workspace source")
            else:
                missing[name].add(where)

    for t in targets:
        check(f"{t.file} / panel '{t.panel}' ({t.ref})", t.expr, t.event_only)
    for file, d in dashboards.items():
        for var, query in variable_queries(d):
            m = LABEL_VALUES.match(query)
            if not m:
                problems.append(f"{file}: variable `{var}` query {query!r} is not "
                                "label_values(<selector>, <label>)")
                continue
            if m.group(1):
                check(f"{file} / variable `{var}`", m.group(1), False)
    for r in rules:
        check(f"{r.file} / {r.kind} {r.name}", r.expr, False)
    for name in sorted(missing):
        state = ("declared in the workspace source, not exported by covet-server yet "
                 "(not integrated?)" if is_declared(name, declared)
                 else "not found anywhere in the workspace source (renamed?)")
        users = sorted(missing[name])
        shown = "; ".join(users[:3]) + (f"; and {len(users) - 3} more" if len(users) > 3 else "")
        problems.append(f"metric {name} is not exported by covet-server (live scrape) nor "
                        f"produced by a recording rule: {state}. Used by {shown}")
    return missing


def is_declared(name: str, declared: set[str]) -> bool:
    return name in declared or re.sub(r"_(bucket|sum|count)$", "", name) in declared


def expanded_names(expr: str, rules: list[Rule], depth: int = 0) -> set[str]:
    """Metric names of an expression, through the recording rules it uses."""
    recorded = {}
    for r in rules:
        if r.kind == "record":
            recorded.setdefault(r.name, []).append(r.expr)
    out = set()
    for name, _ in selectors(expr):
        out.add(name)
        if name in recorded and depth < 5:
            for e in recorded[name]:
                out |= expanded_names(e, rules, depth + 1)
    return out


def status_hint(expr: str, statuses: collections.Counter) -> str:
    """Why a status-filtered query is empty: the traffic produced no such status."""
    for _, matchers in selectors(expr):
        for label, op, value in matchers:
            if label != "status" or op not in ("=", "=~"):
                continue
            pattern = re.escape(value) if op == "=" else value
            if not any(re.fullmatch(pattern, str(s)) for s in statuses):
                return f"the traffic got no response with status {value}"
    return ""


def substitute(expr: str, values: dict[str, str]) -> str:
    def repl(m: re.Match) -> str:
        name = m.group(0).strip("${}[]")
        name = name.split(":")[0]  # ${var:format}
        return values.get(name, m.group(0))
    return VARIABLE.sub(repl, expr)


def promql(base: str, query: str) -> dict:
    body = urllib.parse.urlencode({"query": query, "time": f"{time.time():.3f}"}).encode()
    status, payload = http("POST", base + "/api/v1/query", body,
                           {"content-type": "application/x-www-form-urlencoded"}, timeout=30)
    try:
        answer = json.loads(payload)
    except ValueError:
        return {"status": "error", "error": f"HTTP {status}: {payload[:200]!r}"}
    return answer


def label_values(base: str, selector: str | None, label: str) -> list[str]:
    params = [("start", f"{time.time() - 300:.3f}"), ("end", f"{time.time():.3f}")]
    if selector:
        params.append(("match[]", selector))
    url = f"{base}/api/v1/label/{label}/values?" + urllib.parse.urlencode(params)
    status, payload = http("GET", url)
    answer = json.loads(payload)
    if answer.get("status") != "success":
        raise RuntimeError(f"label_values({selector}, {label}): {answer.get('error')}")
    return answer["data"]


def range_values(base: str, query: str, start: float, end: float,
                 step: float = 0.5) -> list[float]:
    """Every finite value of every series of a range query."""
    body = urllib.parse.urlencode({"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                   "step": f"{step}"}).encode()
    status, payload = http("POST", base + "/api/v1/query_range", body,
                           {"content-type": "application/x-www-form-urlencoded"}, timeout=30)
    answer = json.loads(payload)
    if answer.get("status") != "success":
        raise RuntimeError(f"query_range({query}): HTTP {status} {answer.get('error')}")
    return [float(v) for series in answer["data"]["result"] for _, v in series["values"]
            if not math.isnan(float(v))]


def values_text(values: list[float]) -> str:
    """A short rendering of the distinct values of a range query."""
    distinct = sorted(set(values))
    if not distinct:
        return "no data"
    if len(distinct) <= 4:
        return ", ".join(f"{v:.4g}" for v in distinct)
    return f"{distinct[0]:.4g}..{distinct[-1]:.4g} ({len(distinct)} values)"


def shutdown_proof(prom: str, server: subprocess.Popen, api: str, admin: str,
                   targets: list["Target"], values_by_file: dict[str, dict[str, str]],
                   drain: float) -> list[str]:
    """Shuts covet-server down under Prometheus's eyes, with one request longer than the drain
    deadline in flight, and proves each shutdown panel shows it: its value during the shutdown
    differs from the value before the signal (phase 1 -> 2 -> 3, readiness 1 -> 0, cancelled
    requests 0 -> 1). Returns the failures."""
    failures = []
    cut: list[object] = []

    def long_request():
        try:
            cut.append(http("GET", api + f"/api/slow?ms={int((drain + 20) * 1000)}", timeout=60))
        except OSError as e:
            cut.append(e)

    client = threading.Thread(target=long_request, daemon=True)
    client.start()
    time.sleep(1.0)
    signalled = time.time()
    server.send_signal(signal.SIGTERM)
    ready_statuses: collections.Counter = collections.Counter()
    while server.poll() is None:
        try:
            ready_statuses[http("GET", admin + "/health/ready", timeout=2)[0]] += 1
        except OSError:
            ready_statuses["refused"] += 1
        time.sleep(0.2)
    exited = time.time()
    client.join(timeout=30)
    log(f"shutdown: exited {exited - signalled:.1f}s after SIGTERM (status {server.returncode}); "
        f"/health/ready answers meanwhile {dict(ready_statuses)}; the long request got "
        f"{cut[0] if cut else 'nothing'!r:.60}")
    if server.returncode != 0:
        failures.append(f"covet-server exited with status {server.returncode} after SIGTERM")
    if ready_statuses.get(503, 0) == 0:
        failures.append("shutdown: /health/ready never answered 503 during the drain")
    if cut and isinstance(cut[0], tuple):
        failures.append(f"shutdown: the request longer than the drain was not cut: {cut[0]!r:.80}")
    time.sleep(2.0)  # let Prometheus mark the target down and evaluate its rules
    print()
    print("shutdown panels (value before SIGTERM -> values while shutting down)")
    for t in targets:
        expr = substitute(t.expr, values_by_file[t.file])
        before = range_values(prom, expr, signalled - 3, signalled - 0.5)
        during = range_values(prom, expr, signalled + 0.5, exited + 1)
        changed = bool(during) and any(v not in before for v in during)
        verdict = "ok" if changed else "FAIL"
        print(f"  {t.file.removesuffix('.json')} / {t.panel} {t.ref}: "
              f"{values_text(before)} -> {values_text(during)}  {verdict}")
        if not changed:
            failures.append(f"{t.file} / panel '{t.panel}' {t.ref}: shows no shutdown "
                            f"(before {values_text(before)}, during {values_text(during)})")
    return failures


def grafana_regex(values: list[str]) -> str:
    """How Grafana formats a multi-value variable for a Prometheus regex matcher."""
    escaped = [re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def describe(answer: dict) -> tuple[str, bool, str]:
    """(state, has data, text) of a query answer; state is error|empty|data|nan."""
    if answer.get("status") != "success":
        return "error", False, f"query error: {answer.get('errorType', '')} {answer.get('error')}"
    data = answer["data"]
    kind, result = data["resultType"], data["result"]
    if kind == "scalar" or kind == "string":
        return "data", True, f"{kind} {result[1]}"
    if not result:
        return "empty", False, "no data"
    values = []
    for series in result:
        v = series["value"][1] if kind == "vector" else series["values"][-1][1]
        values.append(float(v))
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return "nan", True, f"{len(result)} series, all NaN (no observations in the window)"
    return "data", True, (f"{len(result)} series, "
                          f"{min(finite):.4g}..{max(finite):.4g}" if len(finite) > 1
                          else f"{len(result)} series, {finite[0]:.4g}")


# --------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-bin", default=os.path.join(ROOT, "target/debug/covet-server"))
    parser.add_argument("--prometheus-bin", default=shutil.which("prometheus")
                        or "/usr/bin/prometheus")
    parser.add_argument("--database-url", default=os.environ.get(
        "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--redis-url", default=os.environ.get(
        "REDIS_URL", "redis://127.0.0.1:6379"))
    parser.add_argument("--rate-limit-store", default="redis", choices=["memory", "redis"],
                        help="redis (default) also registers the rate-limit store metrics")
    parser.add_argument("--min-scrapes", type=int, default=35,
                        help="scrapes (1 s apart) to wait for before evaluating (default 35)")
    parser.add_argument("--static-only", action="store_true",
                        help="structure and metric names only (no Prometheus)")
    parser.add_argument("--dashboards", default=DASHBOARDS,
                        help="the dashboard folder (default grafana/dashboards)")
    args = parser.parse_args()
    globals()["DASHBOARDS"] = os.path.abspath(args.dashboards)

    problems: list[str] = []
    notes: list[str] = []
    dashboards, targets = load_dashboards(problems)
    rules = []
    for path in rule_files():
        rules.extend(parse_rules(path))
    n_panels = len({(t.file, t.panel_id) for t in targets})
    log(f"{len(dashboards)} dashboards, {n_panels} panels, {len(targets)} targets; "
        f"{len(rules)} rules in {', '.join(os.path.relpath(p, ROOT) for p in rule_files())}")
    for p in problems:
        print(f"  STRUCTURE  {p}")
    structure_problems = len(problems)

    for binary in [args.server_bin] + ([] if args.static_only else [args.prometheus_bin]):
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            hint = ("cargo build -p covet-server" if binary == args.server_bin
                    else "apt-get install -y prometheus")
            print(f"verify: {binary} is not an executable ({hint})", file=sys.stderr)
            return 2

    tmp = tempfile.mkdtemp(prefix="covet-grafana-verify-")
    server = prometheus = None
    traffic = None
    live_failures: list[str] = []
    missing: dict[str, set[str]] = {}
    explained_live = 0
    try:
        api_port, admin_port, prom_port = free_port(), free_port(), free_port()
        api, admin = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{admin_port}"
        server_log = os.path.join(tmp, "server.log")
        command = [
            args.server_bin, "--listen", f"127.0.0.1:{api_port}",
            "--admin-listen", f"127.0.0.1:{admin_port}",
            "--database-url", args.database_url, "--redis-url", args.redis_url,
            "--rate-limit", "10/s", "--rate-limit-burst", "10",
            "--rate-limit-store", args.rate_limit_store, "--api-token", "t",
            "--log-format", "json", "--pre-stop-delay", f"{PRE_STOP_S}s",
            "--drain-timeout", f"{DRAIN_S}s", "--admin-linger", f"{LINGER_S}s",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("COVET_")}
        with open(server_log, "wb") as out:
            server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                      stdin=subprocess.DEVNULL)
        log(f"covet-server: API {api}, admin {admin} (log {server_log})")
        try:
            wait_until("covet-server /health/ready",
                       lambda: http("GET", admin + "/health/ready", timeout=2)[0] == 200,
                       TIMEOUT_START, server)
        except RuntimeError:
            print(tail(server_log), file=sys.stderr)
            raise

        if not args.static_only:
            config = {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                           "evaluation_interval": "1s"},
                "rule_files": rule_files(),
                "scrape_configs": [{"job_name": JOB, "metrics_path": "/metrics",
                                    "static_configs": [{"targets": [f"127.0.0.1:{admin_port}"]}]}],
            }
            config_path = os.path.join(tmp, "prometheus.yml")
            with open(config_path, "w", encoding="utf-8") as f:
                json.dump(config, f, indent=2)  # JSON is YAML
            prom_log = os.path.join(tmp, "prometheus.log")
            prom = f"http://127.0.0.1:{prom_port}"
            with open(prom_log, "wb") as out:
                prometheus = subprocess.Popen(
                    [args.prometheus_bin, f"--config.file={config_path}",
                     f"--storage.tsdb.path={os.path.join(tmp, 'data')}",
                     f"--web.listen-address=127.0.0.1:{prom_port}",
                     "--storage.tsdb.retention.time=1h", "--log.level=warn"],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log(f"prometheus: {prom} (log {prom_log})")
            try:
                wait_until("prometheus /-/ready",
                           lambda: http("GET", prom + "/-/ready", timeout=2)[0] == 200,
                           TIMEOUT_START, prometheus)
            except RuntimeError:
                print(tail(prom_log), file=sys.stderr)
                raise

        traffic = Traffic(api, admin, "t")
        traffic.every_feature()
        traffic.start()
        log(f"traffic: API statuses so far {dict(sorted(traffic.statuses.items()))}")

        exported, labels, _ = scrape(admin)
        declared = source_names()
        log(f"scrape: {len(exported)} sample names exported by covet-server")
        missing = check_names(targets, dashboards, rules, exported, labels, declared,
                              problems, notes)
        for p in problems[structure_problems:]:
            print(f"  NAMES      {p}")
        for n in notes:
            print(f"  note       {n}")

        if not args.static_only:
            query = f'count_over_time(up{{job="{JOB}"}}[5m])'

            def enough():
                answer = promql(prom, query)
                result = answer.get("data", {}).get("result", [])
                return bool(result) and float(result[0]["value"][1]) >= args.min_scrapes

            log(f"waiting for {args.min_scrapes} scrapes while the traffic runs…")
            wait_until(f"{args.min_scrapes} scrapes", enough, TIMEOUT_SAMPLES, prometheus,
                       interval=1.0)
            log(f"traffic: API statuses {dict(sorted(traffic.statuses.items()))}"
                + (f", {traffic.errors} connection errors" if traffic.errors else ""))

            # Template variables, from each dashboard's own variable queries.
            values_by_file: dict[str, dict[str, str]] = {}
            for file, d in sorted(dashboards.items()):
                values = dict(BUILTINS)
                for var, q in variable_queries(d):
                    m = LABEL_VALUES.match(q)
                    if not m:
                        continue
                    selector = substitute(m.group(1), values) if m.group(1) else None
                    got = label_values(prom, selector, m.group(2))
                    if not got:
                        live_failures.append(f"{file}: variable `{var}` ({q}) has no values")
                        values[var] = ".*"
                    else:
                        values[var] = grafana_regex(got)
                values_by_file[file] = values
            v = values_by_file.get("overview.json", {})
            log(f"variables: job={v.get('job')} instance={v.get('instance')}")

            rows = []
            failing_panels: dict[tuple[str, str], list[str]] = collections.OrderedDict()
            panel_state: dict[tuple, list] = collections.OrderedDict()
            for t in targets:
                expr = substitute(t.expr, values_by_file[t.file])
                if VARIABLE.search(expr):
                    state, has, text = "error", False, f"unresolved variable in {expr!r}"
                else:
                    state, has, text = describe(promql(prom, expr))
                panel_state.setdefault((t.file, t.panel_id), []).append((t, state, has, text))
            for (file, _), entries in panel_state.items():
                t0 = entries[0][0]
                for t, state, has, text in entries:
                    if state == "error":
                        verdict = "FAIL"
                    elif t.event_only:
                        verdict = "ok (event-only)"
                    elif not has:
                        verdict = "FAIL"
                    else:
                        verdict = "ok"
                    why = ""
                    if verdict == "FAIL" and state != "error":
                        absent = sorted(expanded_names(t.expr, rules) & set(missing))
                        hint = status_hint(t.expr, traffic.statuses)
                        if absent:
                            why = f"not exported yet: {', '.join(absent)}"
                        elif hint and "429" in hint and "rate_limit_decisions_total" in missing:
                            why = ("not exported yet: rate_limit_decisions_total (no rate "
                                   "limiting in this covet-server, so no 429)")
                        elif hint:
                            why = hint
                        else:
                            why = "metrics exported, but the query matches nothing"
                        failing_panels.setdefault((file, t.panel), []).append(f"{t.ref}: {why}")
                    elif verdict == "FAIL":
                        failing_panels.setdefault((file, t.panel), []).append(f"{t.ref}: {text}")
                    rows.append((file.removesuffix(".json"), t.panel, t.ref, text, verdict, why))
                del t0
            w_d = max(len(r[0]) for r in rows)
            w_p = min(44, max(len(r[1]) for r in rows))
            w_r = min(58, max(len(r[3]) for r in rows))
            print()
            print(f"{'dashboard'.ljust(w_d)}  {'panel'.ljust(w_p)}  ref  "
                  f"{'result'.ljust(w_r)}  verdict")
            print("-" * (w_d + w_p + w_r + 25))
            for d_, p_, r_, text, verdict, why in rows:
                line = (f"{d_.ljust(w_d)}  {p_[:w_p].ljust(w_p)}  {r_.ljust(3)}  "
                        f"{text[:w_r].ljust(w_r)}  {verdict}")
                print(line + (f"  ({why})" if why else ""))
            print()
            n_panel_ok = sum(1 for entries in panel_state.values()
                             if all(s != "error" and (h or t.event_only)
                                    for t, s, h, _ in entries))
            n_event = sum(1 for entries in panel_state.values() if entries[0][0].event_only)
            n_nan = sum(1 for entries in panel_state.values() for _, s, _, _ in entries
                        if s == "nan")
            log(f"live: {n_panel_ok}/{len(panel_state)} panels proven ({n_event} event-only); "
                f"{n_nan} targets returned only NaN (series present, no observations)")
            for (file, panel), reasons in failing_panels.items():
                live_failures.append(f"{file} / panel '{panel}': no data or error "
                                     f"({'; '.join(reasons)})")
            explained_live = sum(
                1 for reasons in failing_panels.values()
                if all(r.split(": ", 1)[1].startswith("not exported yet") for r in reasons))

            # Last, the shutdown itself: the panels that exist for it must show it.
            traffic.stop()
            shutdown_targets = [t for t in targets if "shutdown_" in t.expr]
            if not shutdown_targets:
                live_failures.append("no panel shows the shutdown metrics (shutdown_*)")
            live_failures.extend(shutdown_proof(prom, server, api, admin, shutdown_targets,
                                                values_by_file, DRAIN_S))
    except RuntimeError as e:
        live_failures.append(str(e))
    finally:
        if traffic:
            traffic.stop()
        stop(prometheus, "prometheus")
        stop(server, "covet-server")
        shutil.rmtree(tmp, ignore_errors=True)

    failures = problems + live_failures
    if failures:
        print(f"\nverify: FAILED: {len(problems)} static problems, {len(live_failures)} panels "
              "without data or with query errors", file=sys.stderr)
        for f in live_failures:
            print(f"  - {f}", file=sys.stderr)
        if missing:
            declared = source_names()
            pending = sorted(n for n in missing if is_declared(n, declared))
            unknown = sorted(n for n in missing if not is_declared(n, declared))
            families = sorted({re.sub(r"_(bucket|sum|count)$", "", n) for n in pending})
            print(f"verify: {len(pending)} metric names are declared in the workspace source but "
                  f"not exported by this covet-server (not integrated yet): "
                  f"{', '.join(families)}", file=sys.stderr)
            if unknown:
                print(f"verify: {len(unknown)} metric names exist nowhere (renamed?): "
                      f"{', '.join(unknown)}", file=sys.stderr)
            only_pending = (not unknown and structure_problems == 0
                            and len(problems) == structure_problems + len(missing)
                            and explained_live == len(live_failures))
            if only_pending:
                print("verify: every failure is a metric family that covet-server does not "
                      "export yet", file=sys.stderr)
        return 1
    log("OK: every panel of every dashboard is proven against the live server")
    return 0


if __name__ == "__main__":
    sys.exit(main())
