#!/bin/sh
# Start Alertmanager with the Slack webhook where alertmanager.yml expects it
# (global.slack_api_url_file). The URL comes from $SLACK_WEBHOOK_URL, or from the file mounted at
# /run/secrets/slack_webhook_url (the compose file mounts $SLACK_WEBHOOK_URL_FILE there). Without
# either, Alertmanager still starts: alerts show in its UI and each Slack notification fails (logged).
set -eu
target="${SLACK_WEBHOOK_TARGET:-/etc/alertmanager/secrets/slack_webhook_url}"
source_file="${SLACK_WEBHOOK_SOURCE:-/run/secrets/slack_webhook_url}"
url="${SLACK_WEBHOOK_URL:-}"
if [ -z "$url" ] && [ -r "$source_file" ]; then
  url="$(grep -E '^https?://' "$source_file" | head -n 1 || true)"
fi
if [ -n "$url" ]; then
  umask 077
  mkdir -p "$(dirname "$target")"
  printf '%s\n' "$url" > "$target"
  echo "alertmanager entrypoint: Slack webhook configured" >&2
else
  echo "alertmanager entrypoint: no Slack webhook (set SLACK_WEBHOOK_URL or SLACK_WEBHOOK_URL_FILE);" \
    "alerts are visible in the Alertmanager UI only" >&2
fi
exec "${ALERTMANAGER_BIN:-/bin/alertmanager}" "$@"
