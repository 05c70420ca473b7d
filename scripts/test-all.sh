#!/usr/bin/env bash
# make test, after lint and sandbox-up: every check CI runs, in two phases, each part under a time limit, with a
# summary at the end that names each part's result and time and, for a failed part, its first error.
#   Phase 1: the Molecule scenarios one after another on this checkout's sandbox; beside them (Molecule mostly
#            waits on the node) the unit tests, then tests/sandbox/test_dask.py on a sandbox of its own
#            (emulator 5075, node 127.0.0.4:2224, workers 127.0.4.i) in a copy of this checkout.
#   Phase 2: make e2e (test_ml.py on a second sandbox beside the other e2e tests; test_dask.py already ran).
# A part that outlives its limit is stopped and fails with "timed out", so a hang still ends in a summary.
# Logs: .cache/test/<part>.log (each is shown when its part is done).
#   FRAUD_DEMO_TEST_LIMITS="unit=1800 dask=1800 molecule=1200 e2e=2700"  seconds per part (Molecule: per scenario)
#   FRAUD_DEMO_TEST_DEADLINE=<epoch seconds>  no part runs past it (.ci/run sets it below CI's own limit)
set -uo pipefail
cd "$(dirname "$0")/.."

LOGS=.cache/test
declare -A LIMIT=([unit]=1800 [dask]=1800 [molecule]=1200 [e2e]=2700)
for pair in ${FRAUD_DEMO_TEST_LIMITS:-}; do LIMIT[${pair%%=*}]=${pair#*=}; done
DASK_E2E=tests/sandbox/test_dask.py

rm -rf "$LOGS" && mkdir -p "$LOGS"
start=$(date +%s)
since() { echo $(($(date +%s) - start)); }
DEADLINE=${FRAUD_DEMO_TEST_DEADLINE:-0}

# run_part NAME LIMIT LOG CMD...: CMD under `timeout` (TERM, then KILL a minute later); records status and time.
run_part() {
  local name=$1 limit=$2 log=$3 t0 status
  shift 3
  t0=$(date +%s)
  if [ "$DEADLINE" -gt 0 ] && [ $((DEADLINE - t0)) -lt "$limit" ]; then limit=$((DEADLINE - t0 > 1 ? DEADLINE - t0 : 1)); fi
  timeout --kill-after=60 "$limit" "$@" >"$log" 2>&1
  status=$?
  [ "$status" -ne 124 ] && [ "$status" -ne 137 ] || echo "test-all: $name timed out after $limit s" >>"$log"
  printf '%s %s %s %s\n' "$status" "$(($(date +%s) - t0))" "$(since)" "$name" >>"$LOGS/results"
}

# Beside Molecule: the unit tests, then test_dask.py on its own sandbox.
(
  run_part unit "${LIMIT[unit]}" "$LOGS/unit.log" make --no-print-directory unit
  FRAUD_DEMO_E2E_APART=$DASK_E2E FRAUD_DEMO_E2E_ONLY_APART=1 FRAUD_DEMO_E2E_COPY=.cache/e2e-dask-copy \
    FRAUD_DEMO_E2E_SANDBOX_PORT=5075 FRAUD_DEMO_E2E_NODE_ADDR=127.0.0.4 FRAUD_DEMO_E2E_NODE_PORT=2224 \
    run_part "$DASK_E2E" "${LIMIT[dask]}" "$LOGS/e2e-dask.log" scripts/e2e.sh --durations=5
) &
beside=$!

# The Molecule scenarios one by one (not `molecule test --all`, which stops at the first failure): every
# scenario's result and time, whatever happened to the others.
for scenario in $(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' | xargs -n1 basename | sort); do
  echo "test-all: molecule $scenario (after $(since) s)"
  run_part "molecule $scenario" "${LIMIT[molecule]}" "$LOGS/molecule-$scenario.log" \
    bash -c 'set -a && . .sandbox/env && set +a && exec molecule test -s "$1"' molecule "$scenario"
  cat "$LOGS/molecule-$scenario.log"
done
wait "$beside"
for part in unit e2e-dask; do
  echo "---- $part (beside Molecule) ----"
  cat "$LOGS/$part.log"
done

# Phase 2 (its own sandboxes; the Molecule scenarios leave this checkout's node stopped, e2e boots it).
FRAUD_DEMO_E2E_APART=tests/sandbox/test_ml.py FRAUD_DEMO_E2E_IGNORE=$DASK_E2E \
  run_part "make e2e" "${LIMIT[e2e]}" "$LOGS/e2e.log" make --no-print-directory e2e
cat "$LOGS/e2e.log"

# The summary CI's log ends with: every part, then the first error lines of each failed one.
failed=0
echo "==== make test: summary (after $(since) s) ===="
while read -r status seconds at name; do
  if [ "$status" -eq 0 ]; then result=passed; else result="FAILED (exit $status)"; failed=1; fi
  printf '  %-32s %-18s %5s s  (ended at %s s)\n' "$name" "$result" "$seconds" "$at"
done <"$LOGS/results"
while read -r status _ _ name; do
  [ "$status" -ne 0 ] || continue
  log=$LOGS/$(case "$name" in "molecule "*) echo "molecule-${name#molecule }" ;; unit) echo unit ;;
    "make e2e") echo e2e ;; *) echo e2e-dask ;; esac).log
  echo "---- $name: first errors ($log) ----"
  # CI shows the log's tail only: the first two error lines and the few after each (Ansible's message follows its
  # "fatal:" line), without colours.
  sed 's/\x1b\[[0-9;]*m//g' "$log" |
    grep -E -m 2 -A 5 'fatal:|FAILED|Error|ERROR|timed out|did not happen|AssertionError' | cut -c1-300
done <"$LOGS/results"
exit "$failed"
