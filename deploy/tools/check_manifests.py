#!/usr/bin/env python3
"""Asserts the invariants covet-server's deploy files share, on *rendered* manifests.

Usage: check_manifests.py RENDERED.yaml...   (output of `kubectl kustomize` or `helm template`)

For every Deployment running covet-server (DESIGN.md, "Shutdown sequence"; REFERENCES.md, "Health"):
  - terminationGracePeriodSeconds >= preStop sleep + COVET_PRE_STOP_DELAY + COVET_DRAIN_TIMEOUT
    + FLUSH_MARGIN, with the two durations resolved from env, envFrom ConfigMaps or the
    server's defaults (5s, 30s);
  - startupProbe /health/startup, livenessProbe /health/live, readinessProbe /health/ready,
    all httpGet on the admin port (COVET_ADMIN_LISTEN's port, 9090 by default);
  - non-root, read-only root filesystem, ALL capabilities dropped, seccomp RuntimeDefault,
    no service-account token;
and for the rendered set: a Service exposes the admin port, a ServiceMonitor scrapes it at
/metrics, an HPA and a PodDisruptionBudget target the Deployment.
Exits 1 listing every violation.
"""
import re
import sys

import yaml

FLUSH_MARGIN = 5  # seconds: OTLP flush and pool close after the drain deadline
DEFAULTS = {"COVET_PRE_STOP_DELAY": "5s", "COVET_DRAIN_TIMEOUT": "30s",
            "COVET_ADMIN_LISTEN": "127.0.0.1:9090"}
PROBES = {"startupProbe": "/health/startup", "livenessProbe": "/health/live",
          "readinessProbe": "/health/ready"}
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def seconds(text):
    """Parses the server's durations (`500ms`, `5s`, `2m`, `1h30m`, `0`)."""
    text = str(text).strip()
    if text == "0":
        return 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise ValueError(f"unparsable duration {text!r}")
    return sum(float(n) * UNITS[u] for n, u in parts)


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

        # Shutdown budget.
        grace = pod.get("terminationGracePeriodSeconds", 30)
        pre_stop = ((c.get("lifecycle") or {}).get("preStop") or {})
        sleep = (pre_stop.get("sleep") or {}).get("seconds", 0)
        if "exec" in pre_stop:
            errors.append(f"{name}: preStop exec needs a shell the distroless image lacks; use sleep")
        try:
            budget = sleep + seconds(env["COVET_PRE_STOP_DELAY"]) + seconds(env["COVET_DRAIN_TIMEOUT"]) + FLUSH_MARGIN
        except ValueError as err:
            errors.append(f"{name}: {err}")
            budget = 0
        if grace < budget:
            errors.append(
                f"{name}: terminationGracePeriodSeconds {grace} < preStop {sleep} + COVET_PRE_STOP_DELAY "
                f"{env['COVET_PRE_STOP_DELAY']} + COVET_DRAIN_TIMEOUT {env['COVET_DRAIN_TIMEOUT']} + {FLUSH_MARGIN}s flush")

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
                if all(svc_labels.get(k) == v for k, v in (sel.get("matchLabels") or {}).items()):
                    scraped |= any(e.get("port") == p.get("name") and e.get("path", "/metrics") == "/metrics"
                                   for e in sm["spec"].get("endpoints", []))
        if monitors and not scraped:
            errors.append(f"{name}: no ServiceMonitor scrapes /metrics on the admin port")
        if not monitors:
            errors.append(f"{name}: no ServiceMonitor")
    return errors


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
