#!/usr/bin/env bash
# Exactly-once under concurrency: writers take bigserial ids early and commit
# late (pg_sleep inside the transaction) while several sessions call
# pipeline_run in a loop. No source row may be skipped or loaded twice.
source "$(dirname "$0")/../tap.sh"
DB=pipeline_concurrency
work=$(mktemp -d)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT

cluster_psql test "$PORT" -q -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" 2>/dev/null
cluster_psql test "$PORT" -d "$DB" -q >/dev/null <<'SQL'
CREATE EXTENSION pipeline;
CREATE TABLE src (id bigserial PRIMARY KEY, client int, at timestamptz DEFAULT clock_timestamp());
CREATE TABLE dst (id bigint, client int, at timestamptz);
SELECT pipeline_create('conc', 'src', 'dst', watermark => 'id');
-- a second pipeline capped at small batches, so runs cut through in-flight ids
CREATE TABLE dst_small (id bigint, client int, at timestamptz);
SELECT pipeline_create('conc_small', 'src', 'dst_small', watermark => 'id',
                       options => '{"batch_size": 7}');
SQL

cat > "$work/writer.sql" <<'SQL'
BEGIN;
INSERT INTO src (client) VALUES (:client_id);
SELECT pg_sleep(random() * 0.03);
INSERT INTO src (client) VALUES (:client_id);
COMMIT;
SQL
cat > "$work/runner.sql" <<'SQL'
SELECT status FROM pipeline_run('conc');
SELECT status FROM pipeline_run('conc_small');
SQL

export PGHOST="$WORK_BASE/test" PGPORT=$PORT PGUSER=postgres
"$PG_BIN/pgbench" -n -c 6 -j 2 -T 8 -f "$work/writer.sql" "$DB" >"$work/writers.log" 2>&1 &
writers=$!
"$PG_BIN/pgbench" -n -c 3 -j 1 -T 8 -f "$work/runner.sql" "$DB" >"$work/runners.log" 2>&1 &
runners=$!
wait $writers; wrc=$?
wait $runners; rrc=$?
is "$wrc/$rrc" "0/0" "pgbench writers and runners finished without errors"

# catch up with whatever committed after the last loop iteration
q test "$PORT" "$DB" "SELECT pipeline_run('conc')" >/dev/null
q test "$PORT" "$DB" "CALL pipeline_drain('conc_small')" >/dev/null

src=$(q test "$PORT" "$DB" "SELECT count(*) FROM src")
ok $([ "$src" -gt 500 ]; echo $?) "the writers inserted a real load ($src rows)"
runs=$(q test "$PORT" "$DB" "SELECT count(*) FROM pipeline.runs WHERE pipeline = 'conc' AND rows_read > 0")
ok $([ "$runs" -gt 20 ]; echo $?) "runs interleaved with the writers ($runs runs that loaded rows)"
failed=$(q test "$PORT" "$DB" "SELECT count(*) FROM pipeline.runs WHERE status = 'failed'")
is "$failed" 0 "no run failed"

for t in dst dst_small; do
  is "$(q test "$PORT" "$DB" "SELECT count(*) FROM src s WHERE NOT EXISTS (SELECT FROM $t d WHERE d.id = s.id)")" 0 \
    "$t: no source row was skipped"
  is "$(q test "$PORT" "$DB" "SELECT count(*) - count(DISTINCT id) FROM $t")" 0 \
    "$t: no row was loaded twice"
  is "$(q test "$PORT" "$DB" "SELECT count(*) FROM $t")" "$src" "$t: target count equals source count"
done
is "$(q test "$PORT" "$DB" "SELECT coalesce(sum(rows_loaded), 0) FROM pipeline.runs WHERE pipeline = 'conc'")" "$src" \
  "the run history accounts for every row exactly once"

# Late commits really happened: some id committed after a larger id had
# committed, so a reader without the wait would have moved its watermark past
# it. (The test cluster runs with track_commit_timestamp = on.)
late=$(q test "$PORT" "$DB" "SELECT count(*) FROM (SELECT id, max(id) OVER (ORDER BY pg_xact_commit_timestamp(xmin) ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before FROM src) s WHERE before > id")
ok $([ "$late" -gt 0 ]; echo $?) "ids were taken early and committed late ($late rows), the race the wait must close"

# replace mode: a reader during the run sees the old contents, never an
# empty or half-filled table, and the new contents once the run commits
q test "$PORT" "$DB" "CREATE TABLE per_client (client int, n bigint);
  INSERT INTO per_client VALUES (-1, -1);
  SELECT pipeline_create('per_client', 'src', 'per_client', mode => 'replace',
    transform => 'SELECT client, count(*) AS n FROM batch GROUP BY client')" >/dev/null
cluster_psql test "$PORT" -d "$DB" -qAt -c "BEGIN" -c "SELECT pipeline_run('per_client')" \
  -c "SELECT pg_sleep(1.5)" -c "COMMIT" >/dev/null &
replacer=$!
sleep 0.7
is "$(q test "$PORT" "$DB" "SELECT count(*) || ' ' || sum(n) FROM per_client")" "1 -1" \
  "during a replace run, readers see the old contents"
wait $replacer
is "$(q test "$PORT" "$DB" "SELECT count(*) || ' ' || sum(n) FROM per_client")" "6 $src" \
  "after it commits, they see the new contents whole"

# a run in progress: a manual call waits for it, an automated one skips it
cluster_psql test "$PORT" -d "$DB" -qAt -c "BEGIN" -c "SELECT pipeline_run('conc')" \
  -c "SELECT pg_sleep(1.5)" -c "COMMIT" >/dev/null &
holder=$!
sleep 0.5
is "$(q test "$PORT" "$DB" "SELECT status || ': ' || error FROM pipeline_run('conc', 'cron')")" \
  'skipped: pipeline "conc" is already running' "an automated run skips a pipeline that is running"
q test "$PORT" "$DB" "SELECT status FROM pipeline_run('conc')" >"$work/manual.out" &
manual=$!
waiting=no
for _ in $(seq 1 30); do
  [ "$(q test "$PORT" "$DB" "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%pipeline_run(''conc'')%'")" = 1 ] && { waiting=yes; break; }
  sleep 0.1
done
is "$waiting" yes "a manual run waits on the pipeline's lock instead"
wait $holder
wait $manual
is "$(cat "$work/manual.out")" "skipped" "and runs once the first commits, finding nothing left"

cluster_psql test "$PORT" -q -c "DROP DATABASE $DB"
done_testing
