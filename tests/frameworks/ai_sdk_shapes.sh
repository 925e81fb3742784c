#!/bin/sh
# Regenerate shapes/ai_sdk_*.json: the Vercel AI SDK's spans (npm `ai`, its mock model), both formats.
# Needs `npm ci --prefix tests/node`. Run from the repository root.
set -e
for format in v7 legacy; do
  for scenario in ok tool_raises; do
    node tests/node/ai_sdk.mjs shape "$format" "$scenario" 2>/dev/null > "tests/frameworks/shapes/ai_sdk_${format}_${scenario}.json"
    echo "ai_sdk_${format}_${scenario}.json"
  done
done
