#!/usr/bin/env bash
# Command 2 of the README: every test suite, ending in "N passed, N failed".
#
#   pg_regress  sql/*.sql against expected/*.out          (make installcheck)
#   pgTAP       test/pgtap/*.sql                          (pg_prove)
#   shell       test/shell/*.sh: concurrency, crash, FDW, dump/restore (prove)
#
# Installs what is missing, builds and installs the extension, starts a
# throwaway cluster as a non-root user and removes it at the end.
# SUITES="regress pgtap shell" picks suites; ONLY=name picks shell tests.
set -uo pipefail
source "$(dirname "$0")/lib.sh"

PORT=${PORT:-55450}
SUITES=${SUITES:-regress pgtap shell}
passed=0
failed=0
failures=()

install_dependencies || exit 1
build_and_install || exit 1

cleanup() { remove_cluster test; }
trap cleanup EXIT

log "starting a throwaway test cluster (port $PORT)"
start_cluster test "$PORT" "shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 16
track_commit_timestamp = on" || exit 1
export PGHOST="$WORK_BASE/test" PGPORT=$PORT PGUSER=postgres
cd "$ROOT_DIR"

count() {   # count SUITE PASSED FAILED
  passed=$((passed + $2))
  failed=$((failed + $3))
  [ "$3" -gt 0 ] && failures+=("$1: $3 failed")
  printf '%s: %d passed, %d failed\n' "$1" "$2" "$3"
}

run_regress() {
  log "pg_regress (sql/, expected/)"
  local out rc
  out=$(make -s PG_CONFIG="$PG_CONFIG" installcheck 2>&1); rc=$?
  echo "$out" | grep -E '^(test| ) |^ok|^not ok|tests passed|failed' || true
  local ok bad
  ok=$(echo "$out" | grep -cE '^(test |     )?[a-z_]+ +\.\.\. ok')
  bad=$(echo "$out" | grep -cE '\.\.\. FAILED')
  [ -f regression.diffs ] && [ "$bad" -gt 0 ] && head -80 regression.diffs
  # pg_regress that stopped early (a missing file, a crash) fails too
  if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; echo "$out" | tail -20; fi
  # keep results/ and regression.diffs only when something failed
  [ "$bad" -eq 0 ] && rm -rf results regression.diffs regression.out
  count pg_regress "$ok" "$bad"
}

# Count TAP results from prove/pg_prove -v output.
count_tap() {   # count_tap SUITE OUTPUT EXIT
  local ok bad
  ok=$(echo "$2" | grep -cE '^\s*ok [0-9]+')
  bad=$(echo "$2" | grep -cE '^\s*not ok [0-9]+')
  # a script that died or planned more than it ran is a failure too
  if [ "$3" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi
  count "$1" "$ok" "$bad"
}

run_pgtap() {
  log "pgTAP (test/pgtap/, pg_prove)"
  "$PG_BIN/psql" -X -q -c 'DROP DATABASE IF EXISTS pipeline_tap' -c 'CREATE DATABASE pipeline_tap' >/dev/null 2>&1
  local out rc
  out=$(pg_prove --psql-bin "$PG_BIN/psql" -v -d pipeline_tap test/pgtap/*.sql 2>&1); rc=$?
  echo "$out" | grep -vE '^\s*ok [0-9]+' || true
  count_tap pgTAP "$out" "$rc"
}

run_shell() {
  log "shell suites (test/shell/, prove)"
  local files out rc
  files=$(ls test/shell/*.sh | grep -E "${ONLY:-.}")
  out=$(PIPELINE_TEST_PORT=$PORT prove -v --exec bash $files 2>&1); rc=$?
  echo "$out" | grep -vE '^\s*ok [0-9]+' || true
  count_tap shell "$out" "$rc"
}

for suite in $SUITES; do
  case $suite in
    regress) run_regress ;;
    pgtap) run_pgtap ;;
    shell) run_shell ;;
  esac
done

echo
for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
