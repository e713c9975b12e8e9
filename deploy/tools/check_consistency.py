#!/usr/bin/env python3
"""Cross-file invariants of the deploy files, which no single tool sees.

Usage: check_consistency.py RENDERED_DIR
  RENDERED_DIR holds `kubectl kustomize` output as kustomize-<env>.yaml and `helm template`
  output as helm-<env>.yaml (deploy/validate.sh writes them).

Proxies in front of covet-server (deploy/README.md, "Timeouts between the edge and the app"):
  - every proxy's upstream keep-alive idle timeout is set explicitly and is SHORTER than the
    app's COVET_IDLE_TIMEOUT (default 75s): NGINX `keepalive_timeout` in each upstream (against
    compose.prod.yaml's app), the ALB `idle_timeout` (against the ECS task's environment);
  - every proxy lets a request run at least COVET_DRAIN_TIMEOUT: NGINX proxy_read_timeout and
    proxy_send_timeout (default 60s), the ALB idle_timeout;
  - ECS: deregistration delay >= pre-stop delay + drain, stopTimeout >= that + COVET_ADMIN_LINGER
    + a flush margin.
NGINX (deploy/nginx/nginx.conf):
  - every location that proxies clears a client-sent `Forwarded` (proxy_set_header Forwarded "");
  - upstream host names are re-resolved (`resolve` + `zone` + a `resolver`), and the NGINX image
    of compose.prod.yaml is new enough for open-source `resolve` (1.27.3);
  - the app's security headers are never hidden or overridden: an add_header for one of them
    must be a fill-in (a map of $upstream_http_<name> whose default is ""), and any
    Permissions-Policy value denies every feature the app's list denies
    (PERMISSIONS_POLICY_DENY_ALL of covet-layers, see server_settings.py).
Compose:
  - every service of compose.prod.yaml has a health check and resource limits (its header says
    so); no Swarm-only key (`docker compose up` ignores them) in either compose file;
  - Prometheus sends alerts to an Alertmanager service that both compose files run;
  - the app's stop_grace_period (default 10s) >= COVET_PRE_STOP_DELAY + COVET_DRAIN_TIMEOUT +
    COVET_ADMIN_LINGER + a flush margin, in both files.
Last scrape (COVET_ADMIN_LINGER, default 0s): the admin port outlives the drain by at least the
scrape interval of every Prometheus in these files that scrapes the app, so the final shutdown
metrics are scraped:
  - compose: a service that mounts deploy/prometheus/ runs prometheus.yml; each of its jobs
    (dns_sd_configs names, static_configs hosts) that names a compose service running
    covet-server requires that service's COVET_ADMIN_LINGER >= the job's scrape_interval (or the
    global one, Prometheus's default 1m);
  - ECS: nothing scrapes the tasks (ECS_SCRAPE_INTERVAL is None); the check fails if the tasks'
    admin port admits more than the ALB, or the Terraform (outside comments) names Prometheus,
    until ECS_SCRAPE_INTERVAL records the scraper's interval (then enforced);
  - Kubernetes and Helm: check_manifests.py (ServiceMonitor intervals).
Settings:
  - every COVET_* variable given to the app (compose, ECS) is a setting covet-server reads
    (server_settings.py: config.rs plus the pending list);
  - COVET_RATE_LIMIT and COVET_RATE_LIMIT_BURST agree across compose.prod.yaml, the kustomize
    production overlay, the Helm production values and the ECS task (DELIBERATE lists
    intended differences; dev and staging are not compared).
Docs: a runbook that names a Deployment in a kubectl command names the one of each install
path (kustomize and Helm name it differently). Helm's kubeVersion covers preStop `sleep` (1.30).
Exits 1 listing every violation.
"""
import json
import pathlib
import re
import sys

import hcl2
import yaml

import server_settings
from server_settings import app_permissions_policy, permissions_features, seconds

DEPLOY = pathlib.Path(__file__).resolve().parents[1]
ROOT = DEPLOY.parent
NGINX_CONF = DEPLOY / "nginx" / "nginx.conf"
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_PROD = DEPLOY / "compose.prod.yaml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
TF_MAIN = DEPLOY / "terraform" / "aws" / "main.tf"
TF_ALB = DEPLOY / "terraform" / "aws" / "modules" / "alb" / "main.tf"
CHART = DEPLOY / "helm" / "covet" / "Chart.yaml"
DOCS = [DEPLOY / "README.md", *sorted((ROOT / "docs" / "operations").glob("*.md"))]

FLUSH_MARGIN = 5  # seconds, as check_manifests.py
COMPOSE_STOP_GRACE_DEFAULT = 10  # stop_grace_period when unset
PROMETHEUS_SCRAPE_INTERVAL_DEFAULT = "1m"  # global.scrape_interval when unset
# The Prometheus scrape interval of the ECS tasks' admin port, or None: nothing scrapes them
# (the admin port admits only the ALB's health checks; metrics are CloudWatch's), so the task
# keeps COVET_ADMIN_LINGER at its default 0s. Whoever adds a scraper sets its interval here.
ECS_SCRAPE_INTERVAL = None
# In the parsed Terraform (comments excluded), a sign that something may scrape the tasks: an
# Amazon Managed Prometheus resource, or an ADOT / CloudWatch agent's Prometheus receiver config.
ECS_SCRAPER_HINT = re.compile(r"prometheus", re.I)
NGINX_PROXY_TIMEOUT_DEFAULT = 60  # proxy_read_timeout / proxy_send_timeout when unset
ALB_IDLE_TIMEOUT_DEFAULT = 60
NGINX_RESOLVE_MIN = (1, 27, 3)  # first open-source NGINX with `server ... resolve` in upstream
SWARM_ONLY = ("update_config", "rollback_config", "placement")
RATE_KEYS = ("COVET_RATE_LIMIT", "COVET_RATE_LIMIT_BURST")
# Intended per-environment differences of RATE_KEYS among the compared sources:
# {(source, key): reason}. None today: every production path uses 100/s with a burst of 200.
DELIBERATE = {}
# Response headers covet-server's SecurityHeadersLayer (API preset) sets.
APP_HEADERS = {
    "strict-transport-security", "x-content-type-options", "x-frame-options", "referrer-policy",
    "content-security-policy", "cross-origin-opener-policy", "cross-origin-resource-policy",
    "permissions-policy", "x-xss-protection", "x-dns-prefetch-control",
    "x-permitted-cross-domain-policies", "origin-agent-cluster", "cache-control",
}


# ---------------------------------------------------------------------------------------------
# NGINX configuration: a small parser into (name, args, children) tuples.
# ---------------------------------------------------------------------------------------------
def nginx_tokens(text):
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "{};":
            yield c, False
            i += 1
        elif c in "\"'":
            j, out = i + 1, []
            while text[j] != c:
                if text[j] == "\\":
                    j += 1
                out.append(text[j])
                j += 1
            yield "".join(out), True
            i = j + 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in "{};":
                j += 1
            yield text[i:j], False
            i = j


def nginx_parse(text):
    stack = [[]]
    words = []
    for tok, quoted in nginx_tokens(text):
        if not quoted and tok == ";":
            stack[-1].append((words[0], words[1:], None))
            words = []
        elif not quoted and tok == "{":
            block = (words[0], words[1:], [])
            stack[-1].append(block)
            stack.append(block[2])
            words = []
        elif not quoted and tok == "}":
            stack.pop()
        else:
            words.append(tok)
    return stack[0]


def blocks(tree, name):
    return [d for d in tree if d[0] == name and d[2] is not None]


def directives(tree, name):
    return [d[1] for d in tree if d[0] == name and d[2] is None]


def locations(tree, parents=()):
    """(location block, [enclosing blocks' children, innermost first]) for every location."""
    for d in tree:
        if d[2] is None:
            continue
        if d[0] == "location":
            yield d, [d[2], *parents]
        yield from locations(d[2], (d[2], *parents))


def inherited(chain, name):
    """The args of `name` directives at the innermost level of `chain` that has any (NGINX's
    inheritance: a level with its own directives of an array kind replaces the outer ones)."""
    for level in chain:
        found = directives(level, name)
        if found:
            return found
    return []


def check_nginx(app_env, nginx_image):
    errors = []
    tree = nginx_parse(NGINX_CONF.read_text(encoding="utf-8"))
    http = blocks(tree, "http")[0][2]
    idle = seconds(app_env.get("COVET_IDLE_TIMEOUT", server_settings.defaults()["COVET_IDLE_TIMEOUT"]))
    drain = seconds(app_env.get("COVET_DRAIN_TIMEOUT", server_settings.defaults()["COVET_DRAIN_TIMEOUT"]))

    # Upstreams: keep-alive below the app's idle timeout; names re-resolved.
    for _, args, body in blocks(http, "upstream"):
        name = args[0]
        if directives(body, "keepalive"):
            kat = directives(body, "keepalive_timeout")
            if not kat:
                errors.append(f"nginx upstream {name}: keepalive without an explicit keepalive_timeout "
                              f"(must be < the app's COVET_IDLE_TIMEOUT {idle:g}s)")
            elif seconds(kat[0][0]) >= idle:
                errors.append(f"nginx upstream {name}: keepalive_timeout {kat[0][0]} is not below the app's "
                              f"COVET_IDLE_TIMEOUT {idle:g}s (the app may close a connection NGINX reuses)")
        for server in directives(body, "server"):
            host = server[0].rsplit(":", 1)[0]
            if re.fullmatch(r"[\d.]+|\[[0-9a-fA-F:]+\]|unix:.*", host):
                continue
            if "resolve" not in server[1:]:
                errors.append(f"nginx upstream {name}: server {server[0]} is resolved once at start-up; "
                              "add `resolve` so new replica addresses are picked up")
                continue
            if not directives(body, "zone"):
                errors.append(f"nginx upstream {name}: `resolve` needs a `zone`")
            if not (directives(body, "resolver") or directives(http, "resolver")):
                errors.append(f"nginx upstream {name}: `resolve` needs a `resolver` (Docker: 127.0.0.11)")
            m = re.search(r":(\d+)\.(\d+)\.(\d+)", nginx_image)
            if not m or tuple(map(int, m.groups())) < NGINX_RESOLVE_MIN:
                errors.append(f"nginx upstream {name}: `resolve` needs open-source NGINX >= 1.27.3, "
                              f"compose.prod.yaml runs {nginx_image}")

    # Locations that proxy: no client Forwarded, timeouts >= drain.
    for (_, largs, lbody), chain in locations(http):
        if not directives(lbody, "proxy_pass"):
            continue
        where = f"nginx location {' '.join(largs)}"
        headers = {a[0].lower(): a[1] if len(a) > 1 else None for a in inherited(chain, "proxy_set_header")}
        if headers.get("forwarded") != "":
            errors.append(f"{where}: proxies without `proxy_set_header Forwarded \"\";` "
                          "(a client-sent Forwarded would reach the app next to X-Forwarded-For)")
        for timeout in ("proxy_read_timeout", "proxy_send_timeout"):
            value = inherited(chain, timeout)
            got = seconds(value[0][0]) if value else NGINX_PROXY_TIMEOUT_DEFAULT
            if got < drain:
                errors.append(f"{where}: {timeout} {got:g}s < the app's COVET_DRAIN_TIMEOUT {drain:g}s "
                              "(NGINX would cut requests the app lets finish while draining)")

    # Security headers: the app's pass through; NGINX only fills in missing ones.
    maps = {}
    for _, args, body in blocks(http, "map"):
        maps[args[1]] = (args[0], {d[0]: (d[1][0] if d[1] else "") for d in body if d[2] is None})
    app_pp = app_permissions_policy()

    def walk(tree):
        for d in tree:
            yield d
            if d[2] is not None:
                yield from walk(d[2])

    for name, args, _ in walk(tree):
        if name == "proxy_hide_header" and args[0].lower() in APP_HEADERS:
            errors.append(f"nginx: proxy_hide_header {args[0]} drops the app's own header")
        if name != "add_header" or args[0].lower() not in APP_HEADERS:
            continue
        header, value = args[0].lower(), args[1]
        values = [value]
        if not (value.startswith("$") and value[1:].replace("_", "").isalnum()):
            errors.append(f"nginx: add_header {args[0]} \"{value}\" replaces or duplicates the app's header; "
                          "add it only when the upstream sent none (map $upstream_http_... default \"\")")
        elif value not in maps:
            errors.append(f"nginx: add_header {args[0]} {value}: {value} is not a map")
        else:
            source, entries = maps[value]
            values = [v for v in entries.values() if v]
            if source != "$upstream_http_" + header.replace("-", "_") or entries.get("default", "") != "":
                errors.append(f"nginx: add_header {args[0]} {value} must be a fill-in: a map of "
                              f"$upstream_http_{header.replace('-', '_')} whose default is \"\"")
        if header == "permissions-policy":
            for v in values:
                missing = sorted(app_pp - permissions_features(v))
                if missing:
                    errors.append(f"nginx: Permissions-Policy \"{v}\" is weaker than the app's; it does not deny "
                                  + ", ".join(missing))
    return errors


# ---------------------------------------------------------------------------------------------
# Compose, Prometheus, Terraform, rendered manifests
# ---------------------------------------------------------------------------------------------
def env_map(environment):
    if isinstance(environment, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in environment)
    return {k: "" if v is None else str(v) for k, v in (environment or {}).items()}


def check_settings_names(where, env):
    known = server_settings.env_names()
    return [f"{where}: {k} is not a covet-server setting (example-server/src/config.rs)"
            for k in env if k.startswith("COVET_") and k not in known]


def check_compose(compose, prod):
    errors = []
    for path, doc in ((COMPOSE, compose), (COMPOSE_PROD, prod)):
        for name, svc in (doc.get("services") or {}).items():
            for key in SWARM_ONLY:
                if key in (svc.get("deploy") or {}):
                    errors.append(f"{path.name}: {name}: deploy.{key} is Swarm-only; `docker compose up` ignores it")
        app = (doc.get("services") or {}).get("app") or {}
        errors += check_settings_names(f"{path.name}: app", env_map(app.get("environment")))
    for name, svc in prod["services"].items():
        hc = svc.get("healthcheck") or {}
        if not hc.get("test") or hc.get("disable") or hc.get("test") in (["NONE"], "NONE"):
            errors.append(f"compose.prod.yaml: {name} has no health check")
        if not ((svc.get("deploy") or {}).get("resources") or {}).get("limits"):
            errors.append(f"compose.prod.yaml: {name} has no resource limits")
    if "COVET_IDLE_TIMEOUT" not in env_map(prod["services"]["app"].get("environment")):
        errors.append("compose.prod.yaml: app: set COVET_IDLE_TIMEOUT explicitly (NGINX's upstream "
                      "keepalive_timeout must stay below it)")

    prom = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    for path, doc in ((COMPOSE, compose), (COMPOSE_PROD, prod)):
        errors += check_compose_shutdown(path, doc, prom)

    # Alerts reach an Alertmanager in both stacks.
    targets = [t for am in ((prom.get("alerting") or {}).get("alertmanagers") or [])
               for sc in am.get("static_configs") or [] for t in sc.get("targets") or []]
    if not targets:
        errors.append("prometheus.yml: no alerting.alertmanagers target: alerts reach nobody")
    if "alert-rules.yml" not in (prom.get("rule_files") or []):
        errors.append("prometheus.yml: alert-rules.yml is not loaded")
    for path, doc in ((COMPOSE, compose), (COMPOSE_PROD, prod)):
        services = doc.get("services") or {}
        for target in targets:
            host = target.rsplit(":", 1)[0]
            if host not in services:
                errors.append(f"{path.name}: no service `{host}` for Prometheus's Alertmanager target {target}")
            elif not any("alertmanager/alertmanager.yml" in str(v) for v in services[host].get("volumes") or []):
                errors.append(f"{path.name}: {host} does not mount deploy/alertmanager/alertmanager.yml")
    return errors


def runs_covet_server(svc):
    """A compose service runs covet-server when it is given COVET_* settings."""
    return any(k.startswith("COVET_") for k in env_map(svc.get("environment")))


def prometheus_jobs(prom):
    """(job name, scrape interval, {host names it scrapes}) for each job of prometheus.yml."""
    default = (prom.get("global") or {}).get("scrape_interval", PROMETHEUS_SCRAPE_INTERVAL_DEFAULT)
    for job in prom.get("scrape_configs") or []:
        hosts = {n for sd in job.get("dns_sd_configs") or [] for n in sd.get("names") or []}
        hosts |= {str(t).rsplit(":", 1)[0] for sc in job.get("static_configs") or [] for t in sc.get("targets") or []}
        yield job.get("job_name"), job.get("scrape_interval", default), hosts


def check_compose_shutdown(path, doc, prom):
    """The app's stop_grace_period covers its shutdown, and its admin port outlives the drain by
    the scrape interval of the stack's Prometheus (one that mounts deploy/prometheus/)."""
    errors = []
    services = doc.get("services") or {}
    d = server_settings.defaults()
    rel_prom = PROMETHEUS.relative_to(DEPLOY)
    mounts = lambda svc: [(v.get("source", "") if isinstance(v, dict) else str(v).split(":", 1)[0]).rstrip("/")
                          for v in svc.get("volumes") or []]
    scraping = [name for name, svc in services.items() if "./prometheus" in mounts(svc)]
    for name, svc in services.items():
        if not runs_covet_server(svc):
            continue
        env = env_map(svc.get("environment"))
        where = f"{path.name}: {name}"
        if "COVET_ADMIN_LINGER" not in env and "COVET_ADMIN_LINGER" not in d:
            errors.append(f"{where}: COVET_ADMIN_LINGER has no default: example-server/src/config.rs does not "
                          "declare it (add it to PENDING in deploy/tools/server_settings.py meanwhile)")
        values = {k: env.get(k, d.get(k, "0s")) for k in ("COVET_PRE_STOP_DELAY", "COVET_DRAIN_TIMEOUT",
                                                            "COVET_ADMIN_LINGER")}
        try:
            parts = {k: seconds(v) for k, v in values.items()}
            grace = seconds(svc.get("stop_grace_period", COMPOSE_STOP_GRACE_DEFAULT))
        except ValueError as err:
            errors.append(f"{where}: {err}")
            continue
        budget = sum(parts.values()) + FLUSH_MARGIN
        if grace < budget:
            errors.append(f"{where}: stop_grace_period {svc.get('stop_grace_period', '(unset: 10s)')} < "
                          + " + ".join(f"{k} {v}" for k, v in values.items())
                          + f" + {FLUSH_MARGIN}s flush = {budget:g}s (Docker kills the app mid-shutdown)")
        for prom_svc in scraping:
            for job, interval, hosts in prometheus_jobs(prom):
                if name not in hosts:
                    continue
                if parts["COVET_ADMIN_LINGER"] < seconds(interval):
                    errors.append(f"{where}: COVET_ADMIN_LINGER {values['COVET_ADMIN_LINGER']} < the scrape "
                                  f"interval {interval} of job {job} in {rel_prom} (run by `{prom_svc}`): the "
                                  "last scrape after the drain, with the final shutdown metrics, may not happen")
    return errors


def hcl_value(v):
    """python-hcl2 wraps some attribute values in a one-element list."""
    while isinstance(v, list) and len(v) == 1:
        v = v[0]
    return v


def load_terraform():
    with open(TF_MAIN, encoding="utf-8") as f:
        main = hcl2.load(f)
    modules = {k: {a: hcl_value(b) for a, b in v.items()} for m in main.get("module", []) for k, v in m.items()}
    with open(TF_ALB, encoding="utf-8") as f:
        alb = hcl2.load(f)
    lb = next(hcl_value(r["aws_lb"]["this"]) for r in alb.get("resource", []) if "aws_lb" in r)
    idle = hcl_value(lb.get("idle_timeout", ALB_IDLE_TIMEOUT_DEFAULT))
    if isinstance(idle, str) and "var.idle_timeout" in idle:
        idle = modules["alb"].get("idle_timeout", ALB_IDLE_TIMEOUT_DEFAULT)
    return modules, float(idle)


def check_terraform(modules, alb_idle):
    errors = []
    env = {k: str(v) for k, v in (modules["ecs"].get("environment") or {}).items()}
    errors += check_settings_names("terraform ECS task", env)
    d = server_settings.defaults()
    if "COVET_IDLE_TIMEOUT" not in env:
        errors.append("terraform ECS task: set COVET_IDLE_TIMEOUT explicitly (the ALB idle_timeout must stay below it)")
    idle = seconds(env.get("COVET_IDLE_TIMEOUT", d["COVET_IDLE_TIMEOUT"]))
    drain = seconds(env.get("COVET_DRAIN_TIMEOUT", d["COVET_DRAIN_TIMEOUT"]))
    pre_stop = seconds(env.get("COVET_PRE_STOP_DELAY", d["COVET_PRE_STOP_DELAY"]))
    if alb_idle >= idle:
        errors.append(f"terraform: ALB idle_timeout {alb_idle:g}s is not below the ECS task's COVET_IDLE_TIMEOUT "
                      f"{idle:g}s (the ALB may reuse a connection the app is closing)")
    if alb_idle < drain:
        errors.append(f"terraform: ALB idle_timeout {alb_idle:g}s < COVET_DRAIN_TIMEOUT {drain:g}s")
    dereg = float(modules["alb"].get("deregistration_delay", 300))
    if dereg < pre_stop + drain:
        errors.append(f"terraform: ALB deregistration_delay {dereg:g}s < COVET_PRE_STOP_DELAY + COVET_DRAIN_TIMEOUT")
    if "COVET_ADMIN_LINGER" not in env and "COVET_ADMIN_LINGER" not in d:
        errors.append("terraform ECS task: COVET_ADMIN_LINGER has no default: example-server/src/config.rs does "
                      "not declare it (add it to PENDING in deploy/tools/server_settings.py meanwhile)")
    linger_text = env.get("COVET_ADMIN_LINGER", d.get("COVET_ADMIN_LINGER", "0s"))
    linger = seconds(linger_text)
    stop = float(modules["ecs"].get("stop_timeout", 30))
    if stop < pre_stop + drain + linger + FLUSH_MARGIN:
        errors.append(f"terraform: ECS stop_timeout {stop:g}s < pre-stop {pre_stop:g} + drain {drain:g} + "
                      f"admin linger {linger:g} + {FLUSH_MARGIN}s flush (main.tf)")
    if ECS_SCRAPE_INTERVAL is None:
        for reason in ecs_scrapers():
            errors.append(f"terraform: {reason}: if a Prometheus scrapes the ECS tasks, set COVET_ADMIN_LINGER to "
                          "its scrape interval in main.tf, budget it in stop_timeout, and record the interval as "
                          "ECS_SCRAPE_INTERVAL in deploy/tools/check_consistency.py")
    elif linger < seconds(ECS_SCRAPE_INTERVAL):
        errors.append(f"terraform/aws/main.tf: ECS COVET_ADMIN_LINGER {linger_text} < the scrape interval "
                      f"{ECS_SCRAPE_INTERVAL} of the tasks' scraper (ECS_SCRAPE_INTERVAL): the last scrape after "
                      "the drain, with the final shutdown metrics, may not happen")
    return errors, env


def ecs_scrapers():
    """Why something other than the ALB might scrape the tasks' admin port, if anything does:
    an ingress rule of the tasks' security group on the admin port from another source, or a
    scraper named in the Terraform (comments are not parsed, so they do not count)."""
    reasons = []
    for path in sorted(TF_MAIN.parent.rglob("*.tf")):
        with open(path, encoding="utf-8") as f:
            doc = hcl2.load(f)
        rel = path.relative_to(DEPLOY)
        for r in doc.get("resource", []):
            for kind, named in r.items():
                for rname, body in named.items():
                    if kind == "aws_security_group" and rname == "tasks":
                        for rule in body.get("ingress") or []:
                            rule = {k: hcl_value(v) for k, v in rule.items()}
                            if rule.get("from_port") == rule.get("to_port") == "${var.app_port}":
                                continue  # the API port, not the admin port
                            sources = {k: rule[k] for k in ("cidr_blocks", "ipv6_cidr_blocks", "security_groups",
                                                            "prefix_list_ids", "self") if rule.get(k)}
                            if sources != {"security_groups": "${var.alb_security_group_id}"}:
                                reasons.append(f"{rel}: the tasks' admin port admits {sources}, not only the ALB")
                    elif kind in ("aws_security_group_rule", "aws_vpc_security_group_ingress_rule") \
                            and "aws_security_group.tasks" in str(body):
                        reasons.append(f"{rel}: {kind}.{rname} opens the tasks' security group further")
        if ECS_SCRAPER_HINT.search(json.dumps(doc)):
            reasons.append(f"{rel} names Prometheus")
    return reasons


def rendered_env(path):
    """The environment of the covet-server container of a rendered manifest set."""
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    configmaps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d.get("kind") == "ConfigMap"}
    for d in docs:
        if d.get("kind") != "Deployment":
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            if c["name"] != "covet-server":
                continue
            env = {}
            for src in c.get("envFrom") or []:
                env.update(configmaps.get((src.get("configMapRef") or {}).get("name"), {}))
            env.update({e["name"]: e["value"] for e in c.get("env") or [] if "value" in e})
            return d["metadata"]["name"], env
    raise SystemExit(f"check_consistency: no covet-server Deployment in {path}")


def check_rate_limits(sources):
    errors = []
    for key in RATE_KEYS:
        values = {src: env.get(key, "(unset: the server default)") for src, env in sources.items()
                  if (src, key) not in DELIBERATE}
        if len(set(values.values())) > 1:
            errors.append(f"{key} differs between production paths: "
                          + ", ".join(f"{src}={v}" for src, v in values.items()))
    return errors


def check_docs(deployments):
    """deployments: {install path: Deployment name}."""
    errors = []
    names = set(deployments.values())
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        used = set(re.findall(r"kubectl[^`\n]*?\s(?:deploy|deployment)/([a-z0-9-]+)(?![\w./-])", text))
        if not used:
            continue
        rel = doc.relative_to(ROOT)
        for name in sorted(used - names):
            errors.append(f"{rel}: kubectl names deploy/{name}, which no install path renders ({sorted(names)})")
        for path, name in sorted(deployments.items()):
            if name not in used:
                errors.append(f"{rel}: names {sorted(used)} in kubectl commands but not deploy/{name}, "
                              f"the Deployment a {path} install creates")
    return errors


def check_kube_version(rendered_dir):
    uses_sleep = any("sleep:" in p.read_text(encoding="utf-8") for p in rendered_dir.glob("helm-*.yaml"))
    chart = yaml.safe_load(CHART.read_text(encoding="utf-8"))
    m = re.search(r">=\s*v?(\d+)\.(\d+)", str(chart.get("kubeVersion", "")))
    if uses_sleep and (not m or tuple(map(int, m.groups())) < (1, 30)):
        return ["Chart.yaml: kubeVersion must require >= 1.30 (preStop `sleep` action)"]
    return []


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    rendered = pathlib.Path(argv[1])
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    prod = yaml.safe_load(COMPOSE_PROD.read_text(encoding="utf-8"))
    app_env = env_map(prod["services"]["app"].get("environment"))

    errors = check_nginx(app_env, prod["services"]["nginx"]["image"])
    errors += check_compose(compose, prod)
    modules, alb_idle = load_terraform()
    tf_errors, ecs_env = check_terraform(modules, alb_idle)
    errors += tf_errors

    kustomize_dep, kustomize_env = rendered_env(rendered / "kustomize-production.yaml")
    helm_dep, helm_env = rendered_env(rendered / "helm-production.yaml")
    errors += check_rate_limits({"compose.prod.yaml": app_env, "kustomize production": kustomize_env,
                                 "helm values-production": helm_env, "terraform ECS": ecs_env})
    errors += check_docs({"kustomize": kustomize_dep, "Helm (release `covet`)": helm_dep})
    errors += check_kube_version(rendered)

    for e in errors:
        print(f"check_consistency: {e}", file=sys.stderr)
    if not errors:
        print("check_consistency: proxies, timeouts, rate limits, compose services and runbooks agree")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
