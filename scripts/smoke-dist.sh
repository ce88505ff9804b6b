#!/usr/bin/env bash
# CI: build, then start the compiled output the way the Docker image does (plain node, no tsx,
# from a folder that holds only dist/, package.json and node_modules: no sources, no top-level
# sql/) and check that /healthz and /readyz answer 200 and that SIGTERM stops it cleanly.
# Uses the embedded database in a temp dir (never the shared test cluster's databases) and
# REDIS_URL when set.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run build
APP="$(mktemp -d)"
cp -r dist package.json "$APP/"
ln -s "$PWD/node_modules" "$APP/node_modules"
PORT="${SMOKE_PORT:-39$(( RANDOM % 90 + 10 ))$(( RANDOM % 10 ))}"
DATA_DIR="$(mktemp -d)"
LOG="$(mktemp)"
# /readyz needs a successful auth.test: a minimal stand-in for Slack's Web API on loopback
# answers it (CI has no route to Slack).
SLACK_PORT="$(( PORT + 1 ))"
node -e '
  require("node:http").createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ ok: true, url: "https://smoke.slack.com/", team: "smoke", user: "warden",
        team_id: "T0SMOKE", user_id: "U0WARDEN", bot_id: "B0WARDEN" }));
    });
  }).listen(Number(process.argv[1]), "127.0.0.1");
' "$SLACK_PORT" &
SLACK_PID=$!
env -u DATABASE_URL SLACK_API_URL="http://127.0.0.1:$SLACK_PORT/api/" SLACK_BOT_TOKEN=xoxb-smoke SLACK_SIGNING_SECRET=smoke-signing-secret PORT="$PORT" \
  WARDEN_DATA_DIR="$DATA_DIR" LOG_FORMAT=json NODE_ENV=production METRICS_TOKEN=smoke-metrics-token-0123 \
  node "$APP/dist/src/main.js" >"$LOG" 2>&1 &
PID=$!
cleanup() { kill "$PID" "$SLACK_PID" 2>/dev/null || true; rm -rf "$DATA_DIR" "$APP"; }
trap cleanup EXIT
ok=""
for _ in $(seq 1 150); do
  if curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then ok=1; break; fi
  if ! kill -0 "$PID" 2>/dev/null; then break; fi
  sleep 0.2
done
if [ -z "$ok" ]; then echo "compiled build did not become ready:"; cat "$LOG"; exit 1; fi
curl -fsS "http://127.0.0.1:$PORT/healthz"; echo
curl -fsS "http://127.0.0.1:$PORT/readyz"; echo
grep -q '"msg":"settings"' "$LOG" || { echo "no settings line at start"; cat "$LOG"; exit 1; }
# The bundle's packages at work: prom-client's registry, and the version read from dist/package.json.
VERSION="$(node -p 'require("./package.json").version')"
curl -fsS -H "Authorization: Bearer smoke-metrics-token-0123" "http://127.0.0.1:$PORT/metrics" | grep -q "^warden_build_info{version=\"$VERSION\"" \
  || { echo "/metrics has no warden_build_info for $VERSION"; cat "$LOG"; exit 1; }
if grep -q 'tsx' /proc/"$PID"/cmdline 2>/dev/null; then echo "the build ran through tsx"; exit 1; fi
kill -TERM "$PID"
wait "$PID" || { echo "compiled build did not exit cleanly on SIGTERM"; cat "$LOG"; exit 1; }
echo "compiled build: started, /healthz, /readyz and /metrics 200, stopped on SIGTERM"
