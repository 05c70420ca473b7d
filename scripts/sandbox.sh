#!/usr/bin/env bash
# The local sandbox AWS: a moto server on a loopback port, plus .sandbox/env for shells and tools.
#   scripts/sandbox.sh up      start (harmless when already running; a stale PID file is cleaned up)
#   scripts/sandbox.sh down    stop and forget all emulated resources
#   scripts/sandbox.sh status  exit 0 when running, 3 when stopped
set -euo pipefail
cd "$(dirname "$0")/.."

ADDR=${FRAUD_DEMO_SANDBOX_ADDR:-127.0.0.1}
PORT=${FRAUD_DEMO_SANDBOX_PORT:-5055}
REGION=${FRAUD_DEMO_SANDBOX_REGION:-us-east-1}
# Recognisable dummy credentials: the AWS target refuses to run with them (roles/fraud_demo preflight).
ACCESS_KEY=FRAUDDEMOSANDBOX
SECRET_KEY=fraud-demo-sandbox-not-a-secret
DIR=.sandbox
PIDFILE=$DIR/moto.pid
LOG=$DIR/moto.log
ENVFILE=$DIR/env
ENDPOINT="http://$ADDR:$PORT"
# The node's MLflow tracking server (roles/mlflow_server): it binds the node's own loopback address.
MLFLOW_URI="http://${FRAUD_DEMO_NODE_ADDR:-127.0.0.2}:${FRAUD_DEMO_MLFLOW_PORT:-5000}"
# The node's scoring service (roles/scoring_service) binds the node's address too; its bearer token is made once
# per sandbox (kept 0600 until `down`), so a re-run of the pipeline sees the same token and changes nothing.
SCORING_PORT=${FRAUD_DEMO_SCORING_PORT:-8080}
SCORING_URL="http://${FRAUD_DEMO_NODE_ADDR:-127.0.0.2}:$SCORING_PORT"
TOKENFILE=$DIR/scoring-token

log() { printf 'sandbox: %s\n' "$*" >&2; }

case "$ADDR" in
  127.*|localhost|::1) ;;
  *) log "ERROR: FRAUD_DEMO_SANDBOX_ADDR=$ADDR is not a loopback address; the emulator only listens on loopback"; exit 2 ;;
esac

running_pid() {
  # Prints the PID when the recorded process is alive and is our moto server; else nothing.
  [ -f "$PIDFILE" ] || return 0
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q moto_server; then
    echo "$pid"
  fi
}

healthy() {
  .venv/bin/python - "$ENDPOINT" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/moto-api/data.json", timeout=2).read()
PY
}

scoring_token() {
  # Prints the sandbox's scoring token, making a random one (0600) the first time.
  if [ ! -s "$TOKENFILE" ]; then
    (umask 077 && .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))' >"$TOKENFILE.tmp")
    mv "$TOKENFILE.tmp" "$TOKENFILE"
  fi
  cat "$TOKENFILE"
}

write_env() {
  mkdir -p "$DIR"
  local token
  token=$(scoring_token)
  cat >"$ENVFILE.tmp" <<ENV
# fraud-demo sandbox: source this file to point boto3, the aws CLI and Ansible at the local emulator,
# MLflow clients (or a browser: \$MLFLOW_TRACKING_URI) at the node's tracking server, and curl at the node's
# scoring service: curl -H "Authorization: Bearer \$FRAUD_DEMO_SCORING_TOKEN" \$FRAUD_DEMO_SCORING_URL/version
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN
export AWS_ENDPOINT_URL=$ENDPOINT
export AWS_DEFAULT_REGION=$REGION
export AWS_REGION=$REGION
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export MLFLOW_TRACKING_URI=$MLFLOW_URI
export FRAUD_DEMO_SCORING_URL=$SCORING_URL
export FRAUD_DEMO_SCORING_PORT=$SCORING_PORT
export FRAUD_DEMO_SCORING_TOKEN=$token
ENV
  chmod 600 "$ENVFILE.tmp"
  mv "$ENVFILE.tmp" "$ENVFILE"
}

up() {
  [ -x .venv/bin/moto_server ] || { log "ERROR: .venv/bin/moto_server is missing; run: make setup"; exit 1; }
  local pid
  pid=$(running_pid)
  if [ -n "$pid" ] && healthy; then
    write_env
    log "AWS emulator already running at $ENDPOINT (pid $pid)"
    return
  fi
  if [ -n "$pid" ]; then
    log "AWS emulator pid $pid is not answering; restarting it"
    kill "$pid" 2>/dev/null || true
  elif [ -f "$PIDFILE" ]; then
    log "removing stale PID file $PIDFILE"
  fi
  rm -f "$PIDFILE"
  if healthy; then
    log "ERROR: something else already answers at $ENDPOINT; stop it or set FRAUD_DEMO_SANDBOX_PORT"
    exit 1
  fi
  mkdir -p "$DIR"
  # Managed policies (AmazonSSMManagedInstanceCore, …) must exist for the role to attach them.
  MOTO_IAM_LOAD_MANAGED_POLICIES=true setsid .venv/bin/moto_server -H "$ADDR" -p "$PORT" >"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 100); do
    if healthy; then
      write_env
      log "AWS emulator running at $ENDPOINT (pid $(cat "$PIDFILE")); credentials in $ENVFILE"
      return
    fi
    if [ -z "$(running_pid)" ]; then break; fi
    sleep 0.2
  done
  log "ERROR: the AWS emulator did not start; last lines of $LOG:"
  tail -n 20 "$LOG" >&2 || true
  exit 1
}

down() {
  local pid
  pid=$(running_pid)
  if [ -n "$pid" ]; then
    kill "$pid"
    for _ in $(seq 1 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    [ -d "/proc/$pid" ] && kill -9 "$pid" 2>/dev/null || true
    log "AWS emulator stopped (its resources are gone)"
  else
    log "AWS emulator not running"
  fi
  rm -f "$PIDFILE" "$ENVFILE" "$TOKENFILE"
}

status() {
  local pid
  pid=$(running_pid)
  if [ -n "$pid" ] && healthy; then
    echo "AWS emulator: running at $ENDPOINT (pid $pid)"
  else
    echo "AWS emulator: stopped"
    return 3
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
