#!/usr/bin/env python3
"""Asserts the invariants covet-server's deploy files share, on *rendered* manifests.

Usage: check_manifests.py RENDERED.yaml...   (output of `kubectl kustomize` or `helm template`)

For every Deployment running covet-server (DESIGN.md, "Shutdown sequence"; REFERENCES.md, "Health"):
  - terminationGracePeriodSeconds >= preStop sleep + COVET_PRE_STOP_DELAY + COVET_DRAIN_TIMEOUT
    + COVET_ADMIN_LINGER + FLUSH_MARGIN, with the durations resolved from env, envFrom
    ConfigMaps or the server's defaults (server_settings.defaults(): 5s, 30s, 0s);
  - scraped by a rendered ServiceMonitor: COVET_ADMIN_LINGER >= every scraping endpoint's
    `interval` (set explicitly), so the last scrape after the drain holds the final shutdown
    metrics; and the scraped admin Service sets publishNotReadyAddresses, or the Endpoints
    controller drops the terminating pod (and Prometheus the target) before the linger;
  - startupProbe /health/startup, livenessProbe /health/live, readinessProbe /health/ready,
    all httpGet on the admin port (COVET_ADMIN_LISTEN's port, 9090 by default);
  - non-root, read-only root filesystem, ALL capabilities dropped, seccomp RuntimeDefault,
    no service-account token;
  - every COVET_* variable it gets is a setting the server reads (server_settings.py);
  - no `spec.replicas` when an HPA targets it (the HPA owns the count);
  - Helm: the pod template carries checksum/config, and checksum/secret when the chart renders
    the Secret, so a changed setting rolls the pods;
  - behind an ingress-nginx Ingress: proxy-read/send-timeout >= COVET_DRAIN_TIMEOUT, and
    COVET_IDLE_TIMEOUT set explicitly and longer than the controller's upstream-keepalive-timeout
    (INGRESS_NGINX_UPSTREAM_KEEPALIVE); the custom-headers ConfigMap never sets a
    Permissions-Policy weaker than the app's;
and for the rendered set: a Service exposes the admin port, a ServiceMonitor scrapes it at
/metrics, a PrometheusRule carries exactly the groups of deploy/prometheus/*-rules.yml (every
alert with expr, labels.severity and annotations), an HPA and a PodDisruptionBudget target the
Deployment, and a Helm render has a `helm test` Pod probing /health/ready on the admin Service.
For every container of every workload: a `$(VAR)` in an env value refers to a variable defined
earlier in the same `env` list or by `envFrom` (Kubernetes leaves any other reference literal).
Exits 1 listing every violation.
"""
import pathlib
import re
import sys

import yaml

import server_settings
from server_settings import app_permissions_policy, permissions_features, seconds

FLUSH_MARGIN = 5  # seconds: OTLP flush and pool close after the drain deadline
DEFAULTS = {"COVET_PRE_STOP_DELAY": "5s", "COVET_DRAIN_TIMEOUT": "30s",
            "COVET_ADMIN_LISTEN": "127.0.0.1:9090", "COVET_IDLE_TIMEOUT": "75s",
            **server_settings.defaults()}
PROBES = {"startupProbe": "/health/startup", "livenessProbe": "/health/live",
          "readinessProbe": "/health/ready"}
# ingress-nginx's controller-wide `upstream-keepalive-timeout` (its ConfigMap; no per-Ingress
# annotation). The deploy files keep the controller default and require the app's idle timeout
# above it; whoever raises it on the controller must raise COVET_IDLE_TIMEOUT too.
INGRESS_NGINX_UPSTREAM_KEEPALIVE = 60
INGRESS_NGINX_PROXY_TIMEOUT_DEFAULT = 60  # proxy-read-timeout / proxy-send-timeout when unset
NGINX_ANNOTATION = "nginx.ingress.kubernetes.io/"
RULE_SOURCES = [pathlib.Path(__file__).resolve().parents[1] / "prometheus" / name
                for name in ("recording-rules.yml", "alert-rules.yml")]
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}
VAR_REF = re.compile(r"(\$+)\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def main(paths):
    errors = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        errors += [f"{path}: {e}" for e in check(docs)]
    for e in errors:
        print(f"check_manifests: {e}", file=sys.stderr)
    if not errors:
        print(f"check_manifests: {len(paths)} rendered file(s) keep the probe/shutdown invariants")
    return 1 if errors else 0


def check(docs):
    errors = []
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d.get("kind"), []).append(d)
    configmaps = {d["metadata"]["name"]: d.get("data") or {} for d in by_kind.get("ConfigMap", [])}
    deployments = [d for d in by_kind.get("Deployment", [])
                   if any(c["name"] == "covet-server" for c in d["spec"]["template"]["spec"]["containers"])]
    if not deployments:
        return ["no Deployment with a covet-server container"]
    errors += check_env_references(docs, configmaps)
    errors += check_prometheus_rules(by_kind)
    helm = any("helm.sh/chart" in (d["metadata"].get("labels") or {}) for d in deployments)
    for dep in deployments:
        name = dep["metadata"]["name"]
        pod = dep["spec"]["template"]["spec"]
        c = next(c for c in pod["containers"] if c["name"] == "covet-server")
        env = dict(DEFAULTS)
        for src in c.get("envFrom") or []:
            ref = src.get("configMapRef")
            if ref:
                if ref["name"] not in configmaps:
                    errors.append(f"{name}: envFrom ConfigMap {ref['name']} is not rendered")
                env.update(configmaps.get(ref["name"], {}))
        for e in c.get("env") or []:
            if "value" in e:
                env[e["name"]] = e["value"]
            elif (e.get("valueFrom") or {}).get("configMapKeyRef"):
                ref = e["valueFrom"]["configMapKeyRef"]
                env[e["name"]] = configmaps.get(ref["name"], {}).get(ref["key"], DEFAULTS.get(e["name"], ""))
        explicit = {e["name"] for e in c.get("env") or []}
        for src in c.get("envFrom") or []:
            explicit |= set(configmaps.get((src.get("configMapRef") or {}).get("name"), {}))
        known = server_settings.env_names()
        for key in sorted(k for k in explicit if k.startswith("COVET_") and k not in known):
            errors.append(f"{name}: {key} is not a covet-server setting (example-server/src/config.rs)")

        # Shutdown budget.
        grace = pod.get("terminationGracePeriodSeconds", 30)
        pre_stop = ((c.get("lifecycle") or {}).get("preStop") or {})
        sleep = (pre_stop.get("sleep") or {}).get("seconds", 0)
        if "exec" in pre_stop:
            errors.append(f"{name}: preStop exec needs a shell the distroless image lacks; use sleep")
        if "COVET_ADMIN_LINGER" not in env:
            errors.append(f"{name}: COVET_ADMIN_LINGER has no default: example-server/src/config.rs does not "
                          "declare it (add it to PENDING in deploy/tools/server_settings.py meanwhile)")
            env["COVET_ADMIN_LINGER"] = "0s"
        try:
            linger = seconds(env["COVET_ADMIN_LINGER"])
            budget = (sleep + seconds(env["COVET_PRE_STOP_DELAY"]) + seconds(env["COVET_DRAIN_TIMEOUT"])
                      + linger + FLUSH_MARGIN)
        except ValueError as err:
            errors.append(f"{name}: {err}")
            linger, budget = 0, 0
        if grace < budget:
            errors.append(
                f"{name}: terminationGracePeriodSeconds {grace} < preStop {sleep} + COVET_PRE_STOP_DELAY "
                f"{env['COVET_PRE_STOP_DELAY']} + COVET_DRAIN_TIMEOUT {env['COVET_DRAIN_TIMEOUT']} + "
                f"COVET_ADMIN_LINGER {env['COVET_ADMIN_LINGER']} + {FLUSH_MARGIN}s flush = {budget:g}s")

        # Probes on the admin port.
        admin_port = int(str(env["COVET_ADMIN_LISTEN"]).rsplit(":", 1)[1])
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
        if admin_port not in ports.values():
            errors.append(f"{name}: container does not declare the admin port {admin_port}")
        for probe, want in PROBES.items():
            get = (c.get(probe) or {}).get("httpGet")
            if not get:
                errors.append(f"{name}: no {probe} httpGet")
                continue
            port = ports.get(get["port"], get["port"])
            if get.get("path") != want or port != admin_port:
                errors.append(f"{name}: {probe} is {get.get('path')} on {get['port']}, want {want} on {admin_port}")

        # Hardening.
        sc, psc = c.get("securityContext") or {}, pod.get("securityContext") or {}
        if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
            errors.append(f"{name}: runAsNonRoot is not set")
        if sc.get("readOnlyRootFilesystem") is not True:
            errors.append(f"{name}: readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            errors.append(f"{name}: allowPrivilegeEscalation is not false")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            errors.append(f"{name}: capabilities do not drop ALL")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            errors.append(f"{name}: no seccomp profile")
        if pod.get("automountServiceAccountToken") is not False:
            errors.append(f"{name}: the service-account token is mounted")

        # Scaling and disruption.
        hpas = [h for h in by_kind.get("HorizontalPodAutoscaler", []) if h["spec"]["scaleTargetRef"]["name"] == name]
        if not hpas:
            errors.append(f"{name}: no HorizontalPodAutoscaler")
        if hpas and "replicas" in dep["spec"]:
            errors.append(f"{name}: sets spec.replicas ({dep['spec']['replicas']}) although an HPA owns the count "
                          "(every apply would reset it)")
        for h in hpas:
            if not 1 <= h["spec"].get("minReplicas", 1) <= h["spec"]["maxReplicas"]:
                errors.append(f"{name}: HPA replicas {h['spec'].get('minReplicas')}..{h['spec']['maxReplicas']}")
        labels = dep["spec"]["template"]["metadata"]["labels"]
        selects = lambda sel: sel and all(labels.get(k) == v for k, v in (sel.get("matchLabels") or {}).items())
        if not any(selects(p["spec"].get("selector")) for p in by_kind.get("PodDisruptionBudget", [])):
            errors.append(f"{name}: no PodDisruptionBudget selects its pods")

        # Metrics: a Service maps a port to the admin port and a ServiceMonitor scrapes /metrics there.
        admin_services = []
        for svc in by_kind.get("Service", []):
            if not all(labels.get(k) == v for k, v in (svc["spec"].get("selector") or {}).items()):
                continue
            for p in svc["spec"].get("ports", []):
                if ports.get(p.get("targetPort"), p.get("targetPort")) == admin_port:
                    admin_services.append((svc, p))
        if not admin_services:
            errors.append(f"{name}: no Service targets the admin port {admin_port}")
        monitors = by_kind.get("ServiceMonitor", [])
        scraped = False
        for sm in monitors:
            sel = sm["spec"].get("selector") or {}
            for svc, p in admin_services:
                svc_labels = svc["metadata"].get("labels") or {}
                if not all(svc_labels.get(k) == v for k, v in (sel.get("matchLabels") or {}).items()):
                    continue
                scrapes = [e for e in sm["spec"].get("endpoints", [])
                           if e.get("port") == p.get("name") and e.get("path", "/metrics") == "/metrics"]
                scraped |= bool(scrapes)
                if scrapes:
                    errors += check_linger(name, env, sm, svc, scrapes)
        if monitors and not scraped:
            errors.append(f"{name}: no ServiceMonitor scrapes /metrics on the admin port")
        if not monitors:
            errors.append(f"{name}: no ServiceMonitor")

        # Helm: roll the pods when the chart-made ConfigMap or Secret changes.
        annotations = dep["spec"]["template"]["metadata"].get("annotations") or {}
        chart_made = lambda kind, ref: any(
            d["metadata"]["name"] == ref and (d["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") == "Helm"
            for d in by_kind.get(kind, []))
        secret_refs = {(e.get("valueFrom") or {}).get("secretKeyRef", {}).get("name") for e in c.get("env") or []}
        secret_refs |= {(s.get("secretRef") or {}).get("name") for s in c.get("envFrom") or []}
        config_refs = {(s.get("configMapRef") or {}).get("name") for s in c.get("envFrom") or []}
        if any(chart_made("ConfigMap", r) for r in config_refs) and "checksum/config" not in annotations:
            errors.append(f"{name}: the chart renders its ConfigMap but the pod template has no checksum/config")
        if any(chart_made("Secret", r) for r in secret_refs) and "checksum/secret" not in annotations:
            errors.append(f"{name}: the chart renders its Secret but the pod template has no checksum/secret "
                          "(a changed secret would not roll the pods)")

        # The edge (ingress-nginx) in front of the API Service.
        api_services = {svc["metadata"]["name"] for svc in by_kind.get("Service", [])
                        if svc["spec"].get("selector")
                        and all(labels.get(k) == v for k, v in svc["spec"]["selector"].items())}
        for ing in by_kind.get("Ingress", []):
            backends = {p["backend"]["service"]["name"] for r in ing["spec"].get("rules") or []
                        for p in (r.get("http") or {}).get("paths") or [] if "service" in p.get("backend", {})}
            if not backends & api_services:
                continue
            errors += check_ingress(name, ing, env, explicit, configmaps)

        # `helm test`: a hook Pod that probes readiness on the admin Service.
        if helm:
            admin_targets = {f"{svc['metadata']['name']}:{p['port']}" for svc, p in admin_services}
            tests = [p for p in by_kind.get("Pod", [])
                     if (p["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"]
            probes = any("/health/ready" in cmd and any(t in cmd for t in admin_targets)
                         for p in tests for k in p["spec"]["containers"]
                         for cmd in [" ".join(map(str, (k.get("command") or []) + (k.get("args") or [])))])
            if not probes:
                errors.append(f"{name}: no `helm test` Pod (helm.sh/hook: test) fetches /health/ready from "
                              f"the admin Service ({', '.join(sorted(admin_targets)) or 'none'})")
    return errors


def check_linger(name, env, sm, svc, endpoints):
    """A ServiceMonitor scrapes the admin Service `svc` through `endpoints`: the admin port must
    outlive the drain by at least the scrape interval, and the terminating pod stay a target."""
    errors = []
    where = f"{name}: ServiceMonitor {sm['metadata']['name']}"
    linger = env["COVET_ADMIN_LINGER"]
    try:
        linger_s = seconds(linger)
    except ValueError:
        return []  # reported with the shutdown budget
    for e in endpoints:
        interval = e.get("interval")
        if not interval:
            errors.append(f"{where}: set the endpoint's `interval` explicitly (the Prometheus default varies), "
                          f"so COVET_ADMIN_LINGER ({linger}) can be checked against it")
            continue
        try:
            short = linger_s < seconds(interval)
        except ValueError as err:
            errors.append(f"{where}: {err}")
            continue
        if short:
            errors.append(f"{where}: COVET_ADMIN_LINGER {linger} < the scrape interval {interval}: Prometheus may "
                          "not scrape the admin port between the end of the drain and the exit, and loses the "
                          "final shutdown metrics")
    if linger_s > 0 and svc["spec"].get("publishNotReadyAddresses") is not True:
        errors.append(f"{where}: Service {svc['metadata']['name']} needs publishNotReadyAddresses: true, or a "
                      f"terminating pod leaves its Endpoints (and Prometheus's targets) before COVET_ADMIN_LINGER "
                      f"({linger}) runs")
    return errors


def check_ingress(name, ing, env, explicit, configmaps):
    errors = []
    where = f"{name}: Ingress {ing['metadata']['name']}"
    annotations = ing["metadata"].get("annotations") or {}
    nginx = ing["spec"].get("ingressClassName") == "nginx" or any(k.startswith(NGINX_ANNOTATION) for k in annotations)
    if not nginx:
        return [f"{where}: not an ingress-nginx Ingress; add the edge-timeout checks for its controller"]
    drain = seconds(env["COVET_DRAIN_TIMEOUT"])
    for key in ("proxy-read-timeout", "proxy-send-timeout"):
        value = float(annotations.get(NGINX_ANNOTATION + key, INGRESS_NGINX_PROXY_TIMEOUT_DEFAULT))
        if value < drain:
            errors.append(f"{where}: {key} {value:g}s < COVET_DRAIN_TIMEOUT {env['COVET_DRAIN_TIMEOUT']} "
                          "(the edge cuts requests the app lets finish while draining)")
    if "COVET_IDLE_TIMEOUT" not in explicit:
        errors.append(f"{where}: set COVET_IDLE_TIMEOUT explicitly, so its relation to the controller's "
                      f"upstream-keepalive-timeout ({INGRESS_NGINX_UPSTREAM_KEEPALIVE}s) is visible")
    idle = seconds(env["COVET_IDLE_TIMEOUT"])
    if idle <= INGRESS_NGINX_UPSTREAM_KEEPALIVE:
        errors.append(f"{where}: COVET_IDLE_TIMEOUT {env['COVET_IDLE_TIMEOUT']} is not longer than ingress-nginx's "
                      f"upstream-keepalive-timeout ({INGRESS_NGINX_UPSTREAM_KEEPALIVE}s)")
    headers_ref = annotations.get(NGINX_ANNOTATION + "custom-headers", "")
    headers = configmaps.get(headers_ref.split("/")[-1], {}) if headers_ref else {}
    app_pp = app_permissions_policy()
    for key, value in headers.items():
        if key.lower() == "permissions-policy" and app_pp - permissions_features(value):
            errors.append(f"{where}: custom-headers Permissions-Policy replaces the app's with a weaker one "
                          "(missing " + ", ".join(sorted(app_pp - permissions_features(value))) + ")")
    return errors


def pod_spec(d):
    if d["kind"] == "Pod":
        return d["spec"]
    if d["kind"] == "CronJob":
        return d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return d["spec"]["template"]["spec"]


def check_env_references(docs, configmaps):
    """Kubernetes expands $(VAR) in an env value only if VAR is defined by envFrom or earlier in
    the same env list; `$$(VAR)` is an escaped literal."""
    errors = []
    for d in docs:
        if d.get("kind") not in WORKLOADS:
            continue
        spec = pod_spec(d)
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            defined = set()
            for src in c.get("envFrom") or []:
                ref = (src.get("configMapRef") or {}).get("name")
                defined |= {(src.get("prefix") or "") + k for k in configmaps.get(ref, {})}
            for e in c.get("env") or []:
                for dollars, var in VAR_REF.findall(str(e.get("value", ""))):
                    if len(dollars) % 2 == 1 and var not in defined:
                        errors.append(f"{d['kind']} {d['metadata']['name']}: container {c['name']}: env "
                                      f"{e['name']} uses $({var}), which is not defined earlier in env "
                                      "(Kubernetes leaves it literal)")
                defined.add(e["name"])
    return errors


def check_prometheus_rules(by_kind):
    errors = []
    rules = by_kind.get("PrometheusRule", [])
    if not rules:
        return ["no PrometheusRule (the alert rules of deploy/prometheus/ for the Prometheus Operator)"]
    want = [g for src in RULE_SOURCES for g in yaml.safe_load(src.read_text(encoding="utf-8"))["groups"]]
    for pr in rules:
        where = f"PrometheusRule {pr['metadata']['name']}"
        groups = (pr.get("spec") or {}).get("groups")
        if not groups:
            errors.append(f"{where}: no spec.groups")
            continue
        for g in groups:
            if not g.get("name") or not g.get("rules"):
                errors.append(f"{where}: group {g.get('name')!r} needs a name and rules")
            for r in g.get("rules") or []:
                if "alert" in r:
                    missing = [k for k, ok in (("expr", r.get("expr")),
                                               ("labels.severity", (r.get("labels") or {}).get("severity")),
                                               ("annotations", r.get("annotations"))) if not ok]
                    if missing:
                        errors.append(f"{where}: alert {r['alert']} lacks {', '.join(missing)}")
                elif not (r.get("record") and r.get("expr")):
                    errors.append(f"{where}: a rule of group {g.get('name')} is neither an alert nor a record with expr")
        if groups != want:
            errors.append(f"{where}: its groups differ from deploy/prometheus/recording-rules.yml + alert-rules.yml "
                          "(run deploy/tools/sync_rules.py)")
    return errors


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
