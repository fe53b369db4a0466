#!/usr/bin/env bash
# Exactly-once across crashes: kill the server (pg_ctl stop -m immediate) in
# the middle of a run of over a million rows, and in the middle of a drain.
# Afterwards the target holds exactly the source rows up to the committed
# watermark, and the next run completes the rest exactly once.
source "$(dirname "$0")/../tap.sh"
CPORT=$((PORT + 1))
DB=postgres
trap 'remove_cluster crash' EXIT

start_cluster crash "$CPORT" || { echo "Bail out! cannot start cluster"; exit 1; }
qc() { q crash "$CPORT" "$DB" "$1"; }
crash_now() { as_pg "$PG_BIN/pg_ctl" -D "$WORK_BASE/crash/data" -m immediate -w stop >/dev/null; }
restart() { as_pg "$PG_BIN/pg_ctl" -D "$WORK_BASE/crash/data" -l "$WORK_BASE/crash/server.log" -w start >/dev/null; }

# wait_for_growth SQL LIMIT: poll until the value of SQL exceeds LIMIT
wait_for_growth() {
  for _ in $(seq 1 600); do
    [ "$(qc "$1" 2>/dev/null || echo 0)" -gt "$2" ] && return 0
    sleep 0.1
  done
  return 1
}

cluster_psql crash "$CPORT" -q >/dev/null <<'SQL'
CREATE EXTENSION pipeline;
CREATE TABLE src (id bigserial PRIMARY KEY, payload text);
CREATE TABLE dst (id bigint, payload text);
INSERT INTO src (payload) SELECT md5(g::text) FROM generate_series(1, 200000) g;
SELECT pipeline_create('big', 'src', 'dst', watermark => 'id');
SELECT pipeline_run('big');
INSERT INTO src (payload) SELECT md5(g::text) FROM generate_series(1, 1200000) g;
CHECKPOINT;
SQL
is "$(qc "SELECT last_watermark FROM pipeline.pipelines")" 200000 "first run committed watermark 200000"

# 1. one run of 1,200,000 rows, killed while it writes
cluster_psql crash "$CPORT" -q -c "SELECT pipeline_run('big')" >/dev/null 2>&1 &
runner=$!
base=$(qc "SELECT pg_relation_size('dst')")
wait_for_growth "SELECT pg_relation_size('dst')" $((base + 16000000))
ok $? "the big run was writing the target when the server was killed"
crash_now
wait $runner 2>/dev/null
restart

is "$(qc "SELECT last_watermark FROM pipeline.pipelines")" 200000 "after the crash the watermark is the committed one"
is "$(qc "SELECT count(*) FROM dst")" 200000 "the target holds exactly the rows up to it"
is "$(qc "SELECT count(*) FROM dst WHERE id > 200000")" 0 "nothing of the killed run is visible"
is "$(qc "SELECT count(*) FROM pipeline.runs")" 1 "the killed run left no run row"

# 2. a drain in batches of 100,000, killed after some batches committed
qc "SELECT pipeline_alter('big', '{\"batch_size\": 100000}')" >/dev/null
cluster_psql crash "$CPORT" -q -c "CALL pipeline_drain('big')" >/dev/null 2>&1 &
runner=$!
wait_for_growth "SELECT count(*) FROM pipeline.runs" 2
ok $? "the drain committed batches before the server was killed"
crash_now
wait $runner 2>/dev/null
restart

wm=$(qc "SELECT last_watermark FROM pipeline.pipelines")
ok $([ "$wm" -gt 200000 ] && [ "$wm" -lt 1400000 ]; echo $?) "the crash hit the middle of the drain (watermark $wm)"
is "$(qc "SELECT count(*) FROM dst")" "$wm" "the target holds exactly the source rows up to the committed watermark"
is "$(qc "SELECT count(*) - count(DISTINCT id) FROM dst")" 0 "no row twice"
is "$(qc "SELECT coalesce(sum(rows_loaded), 0) FROM pipeline.runs")" "$wm" "run rows account for exactly the committed batches"

# 3. the next drain completes the rest exactly once
cluster_psql crash "$CPORT" -q -c "CALL pipeline_drain('big')" >/dev/null
is "$(qc "SELECT count(*) FROM dst")" 1400000 "the next drain loaded the rest"
is "$(qc "SELECT count(*) - count(DISTINCT id) FROM dst")" 0 "still no row twice"
is "$(qc "SELECT count(*) FROM src s WHERE NOT EXISTS (SELECT FROM dst d WHERE d.id = s.id)")" 0 \
  "no source row is missing"
is "$(qc "SELECT count(*) FROM dst d JOIN src s USING (id) WHERE d.payload IS DISTINCT FROM s.payload")" 0 \
  "every loaded row equals its source row"
done_testing
