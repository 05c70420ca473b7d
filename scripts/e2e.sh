#!/usr/bin/env bash
# make e2e: the end-to-end tests on two sandboxes side by side, so the suite takes about the time of its longest
# part instead of the sum. tests/sandbox/test_ml.py (every ML stage on its own fresh node) and test_dask.py (the
# Dask backend on the node + a worker node) — about half of the suite — run in a copy of this checkout with its own
# emulator and nodes on other loopback addresses; the other tests run here, on the sandbox `make sandbox-up`
# started. Each test still gets an emulator and a node to itself.
#   scripts/e2e.sh [pytest args for both runs]       (the sandbox of this checkout must be up)
# FRAUD_DEMO_E2E_APART: the files for the second sandbox; FRAUD_DEMO_E2E_IGNORE: files neither run takes (run
# elsewhere); FRAUD_DEMO_E2E_ONLY_APART=1: the second sandbox's run alone (this checkout's sandbox not needed);
# FRAUD_DEMO_E2E_COPY: where the copy goes (two copies at once need two places and two sets of addresses).
# The copy shares this checkout's .venv and collections and hard-links its node caches; its log is printed
# when both runs are done, and its sandbox is stopped whatever happened.
set -euo pipefail
cd "$(dirname "$0")/.."

# Space-separated test files for the second sandbox.
APART=${FRAUD_DEMO_E2E_APART:-tests/sandbox/test_ml.py tests/sandbox/test_dask.py}
read -r -a APART_FILES <<<"$APART"
read -r -a IGNORE_FILES <<<"${FRAUD_DEMO_E2E_IGNORE:-}"
ONLY_APART=${FRAUD_DEMO_E2E_ONLY_APART:-0}
COPY=${FRAUD_DEMO_E2E_COPY:-.cache/e2e-copy}
# The copy's sandbox (this checkout's: the defaults 5055 / 127.0.0.2 / 2222, or what the caller exported).
SECOND_PORT=${FRAUD_DEMO_E2E_SANDBOX_PORT:-5065}
SECOND_ADDR=${FRAUD_DEMO_E2E_NODE_ADDR:-127.0.0.3}
SECOND_SSH=${FRAUD_DEMO_E2E_NODE_PORT:-2223}

log() { printf 'e2e: %s\n' "$*" >&2; }

in_copy() {
  (cd "$COPY" && FRAUD_DEMO_SANDBOX_PORT=$SECOND_PORT FRAUD_DEMO_NODE_ADDR=$SECOND_ADDR \
    FRAUD_DEMO_NODE_PORT=$SECOND_SSH "$@")
}

stop_copy() {
  [ -d "$COPY" ] || return 0
  in_copy scripts/sandbox-node.sh down >/dev/null 2>&1 || true
  in_copy scripts/sandbox.sh down >/dev/null 2>&1 || true
}

[ "$ONLY_APART" = 1 ] || [ -s .sandbox/env ] ||
  { log "the sandbox is not running: make sandbox-up first (or use make e2e)"; exit 2; }
[ "${FRAUD_DEMO_NODE_ADDR:-127.0.0.2}" != "$SECOND_ADDR" ] ||
  { log "FRAUD_DEMO_NODE_ADDR is the copy's address $SECOND_ADDR: set FRAUD_DEMO_E2E_NODE_ADDR to another one"; exit 2; }

# The copy: this working tree as it is (uncommitted changes included), without its state.
stop_copy
rm -rf "$COPY"
mkdir -p "$COPY/.cache"
tar -C . --exclude=./.git --exclude=./.venv --exclude=./collections --exclude=./.cache --exclude=./.sandbox \
  --exclude='./*/__pycache__' -cf - . | tar -C "$COPY" -xpf -
ln -s "$PWD/.venv" "$COPY/.venv"
ln -s "$PWD/collections" "$COPY/collections"
for cache in node node-pip jobs-wheel; do
  [ ! -d ".cache/$cache" ] || cp -al ".cache/$cache" "$COPY/.cache/$cache"
done
trap stop_copy EXIT

if [ "$ONLY_APART" = 1 ]; then
  log "$APART on a second sandbox (emulator 127.0.0.1:$SECOND_PORT, node $SECOND_ADDR:$SECOND_SSH)"
else
  log "$APART on a second sandbox (emulator 127.0.0.1:$SECOND_PORT, node $SECOND_ADDR:$SECOND_SSH), the rest here"
fi
in_copy scripts/sandbox.sh up >"$COPY.log" 2>&1 && in_copy scripts/sandbox-node.sh up >>"$COPY.log" 2>&1 &&
  in_copy bash -c 'set -a && . .sandbox/env && set +a && exec .venv/bin/python -m pytest "$@"' e2e \
    -m "sandbox or sandbox_node" "${APART_FILES[@]}" "$@" >>"$COPY.log" 2>&1 &
apart=$!

status=0
if [ "$ONLY_APART" != 1 ]; then
  ignore=()
  for file in "${APART_FILES[@]}" "${IGNORE_FILES[@]}"; do ignore+=(--ignore="$file"); done
  (set -a && . .sandbox/env && set +a && exec .venv/bin/python -m pytest -m "sandbox or sandbox_node" \
    "${ignore[@]}" "$@") || status=$?
fi
apart_status=0
wait "$apart" || apart_status=$?

log "---- $APART (second sandbox) ----"
cat "$COPY.log"
[ "$ONLY_APART" = 1 ] || log "the other e2e tests exited $status"
log "$APART exited $apart_status"
[ "$status" -eq 0 ] && [ "$apart_status" -eq 0 ]
