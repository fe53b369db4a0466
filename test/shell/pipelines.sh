#!/usr/bin/env bash
# Two sessions with uncommitted source inserts both run the same pipeline
# (issue 14): the first run waits for the second session's insert to commit,
# so the second must not wait for the first run. It is skipped, nothing
# deadlocks (40P01) and every row loads.
source "$(dirname "$0")/../tap.sh"
DB=pipeline_pipelines

cluster_psql test "$PORT" -q -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" 2>/dev/null
q test "$PORT" "$DB" "CREATE EXTENSION pipeline;
  CREATE TABLE s (id int, wm int);
  CREATE TABLE d (id int, wm int);
  SELECT pipeline_create('two', 's', 'd', watermark => 'wm');" >/dev/null

session() {   # session WM DELAY_BEFORE_RUN: insert, wait, run, commit
  cluster_psql test "$PORT" -d "$DB" -qAt -c "SET deadlock_timeout = '200ms'" -c "BEGIN" \
    -c "INSERT INTO s VALUES ($1, $1)" -c "SELECT pg_sleep($2)" \
    -c "SELECT status || coalesce(' ' || sqlstate, '') FROM pipeline_run('two')" -c "COMMIT" 2>&1
}

# B inserts first and runs late; A inserts, runs at once and waits for B's insert
session 2 1.5 >"$WORK_BASE/two_b.out" &
b=$!
sleep 0.5
session 1 0 >"$WORK_BASE/two_a.out" &
a=$!
wait $a $b
b_out=$(grep -v '^$' "$WORK_BASE/two_b.out" | tail -1)
a_out=$(grep -v '^$' "$WORK_BASE/two_a.out" | tail -1)
is "$b_out" "skipped" "the run in the session whose own insert the running run waits for is skipped, not deadlocked"
is "$a_out" "succeeded" "the waiting run succeeds once that insert commits"
is "$(q test "$PORT" "$DB" "SELECT count(*) FROM pipeline.runs WHERE status = 'failed'")" 0 "no run failed (no 40P01)"
q test "$PORT" "$DB" "SELECT pipeline_run('two')" >/dev/null
is "$(q test "$PORT" "$DB" "SELECT string_agg(id::text, ',' ORDER BY id) FROM d")" "1,2" "the next run loads the rest: every row once"

cluster_psql test "$PORT" -q -c "DROP DATABASE $DB" 2>/dev/null
done_testing
