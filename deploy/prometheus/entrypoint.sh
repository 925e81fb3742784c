#!/bin/sh
# Start Prometheus with the project's rules, their links pointing where this stack's users can open
# them. The rules are rendered (alert_rules/render.py) with the compose stack's own addresses;
# GRAFANA_URL, RUNBOOK_URL and JAEGER_URL (e.g. https://grafana.example.org) replace those bases,
# so a Slack reader elsewhere gets links that work. RUNBOOK_URL defaults to the runbook page this
# Prometheus serves (--web.user-assets) under PROMETHEUS_URL. Rules are copied from RULES_SOURCE
# (read-only mount of alert_rules/) to RULES_TARGET (the folder prometheus.yml loads).
set -eu
src="${RULES_SOURCE:-/etc/prometheus/rules-src}"
dst="${RULES_TARGET:-/etc/prometheus/rules}"
# The bases render.py writes (alert_rules/rules.py: DEFAULT_GRAFANA_URL, ...); a test keeps them in step.
default_grafana="http://localhost:3000"
default_runbook="http://localhost:9090/user/runbook.html"
default_jaeger="http://localhost:16686"

prometheus_url="${PROMETHEUS_URL:-http://localhost:9090}"
grafana="${GRAFANA_URL:-$default_grafana}"
runbook="${RUNBOOK_URL:-${prometheus_url%/}/user/runbook.html}"
jaeger="${JAEGER_URL:-$default_jaeger}"

# Escape what sed treats specially in a replacement (with | as the delimiter).
esc() { printf '%s' "${1%/}" | sed 's/[\\|&]/\\&/g'; }

mkdir -p "$dst"
for rules in "$src"/*.yml; do
  sed -e "s|$default_grafana|$(esc "$grafana")|g" \
      -e "s|$default_runbook|$(esc "$runbook")|g" \
      -e "s|$default_jaeger|$(esc "$jaeger")|g" \
      "$rules" > "$dst/$(basename "$rules")"
done
echo "prometheus entrypoint: alert links: grafana ${grafana%/}, runbook ${runbook%/}, jaeger ${jaeger%/}" >&2
exec "${PROMETHEUS_BIN:-/bin/prometheus}" "$@"
