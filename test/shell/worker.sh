#!/usr/bin/env bash
# Background workers (shared_preload_libraries = 'pipeline'): continuous
# delivery, cascades, continuous views and CDC, a failing pipeline, SIGTERM
# in the middle of a run, DROP EXTENSION and DROP DATABASE not blocked,
# SIGHUP.
source "$(dirname "$0")/../tap.sh"
WPORT=$((PORT + 3))
trap 'remove_cluster workers' EXIT
start_cluster workers "$WPORT" "shared_preload_libraries = 'pipeline'
pipeline.database = 'postgres, wdb'" || { echo "Bail out! cannot start cluster"; exit 1; }
qw() { q workers "$WPORT" postgres "$1"; }
# wait_until SQL EXPECTED SECONDS
wait_until() {
  for _ in $(seq 1 $(($3 * 10))); do
    [ "$(qw "$1" 2>/dev/null)" = "$2" ] && return 0
    sleep 0.1
  done
  return 1
}
worker_pid() { qw "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline worker' AND datname = 'postgres'"; }

wait_until "SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('pipeline launcher', 'pipeline worker')" 2 15
ok $? "the launcher started a worker for the database"

cluster_psql workers "$WPORT" -q >/dev/null <<'SQL'
CREATE EXTENSION pipeline;
CREATE TABLE src (id bigserial PRIMARY KEY, v int);
CREATE TABLE dst (id bigint, v int);
SELECT pipeline_create('live', 'src', 'dst', watermark => 'id',
  options => '{"continuous": true, "poll_interval": "100 milliseconds", "batch_size": 100}');
SQL
qw "INSERT INTO src (v) SELECT g FROM generate_series(1, 5) g" >/dev/null
wait_until "SELECT count(*) FROM dst" 5 5
ok $? "rows committed to the source reach the target with no one calling pipeline_run"
qw "INSERT INTO src (v) SELECT g FROM generate_series(1, 1000) g" >/dev/null
wait_until "SELECT count(*) FROM dst" 1005 10
ok $? "a backlog of 1000 rows drains in batches of 100"
is "$(qw "SELECT count(*) - count(DISTINCT id) FROM dst")" 0 "each row once"
is "$(qw "SELECT string_agg(DISTINCT trigger, ',') FROM pipeline.runs WHERE pipeline = 'live'")" "continuous" \
  "its runs are recorded with trigger continuous"

# cascade without any scheduler: the worker runs what an upstream queued
qw "CREATE TABLE totals (n bigint);
    SELECT pipeline_create('count_live', 'dst', 'totals', mode => 'replace', transform => 'SELECT count(*) AS n FROM batch');
    SELECT pipeline_alter('live', '{\"cascade\": true}')" >/dev/null
qw "INSERT INTO src (v) VALUES (7)" >/dev/null
wait_until "SELECT n FROM totals" 1006 5
ok $? "a cascade queued by the continuous run is run by the worker"

# a continuous incremental view: refreshed by the worker when changes are pending
qw "CREATE TABLE events (id serial PRIMARY KEY, k int);
    SELECT pipeline_create_matview('live_counts', 'SELECT k, count(*) AS n FROM events GROUP BY k',
                                   options => '{\"continuous\": true}')" >/dev/null
qw "INSERT INTO events (k) SELECT g % 3 FROM generate_series(1, 30) g" >/dev/null
wait_until "SELECT string_agg(k || ':' || n, ',' ORDER BY k) FROM live_counts" "0:10,1:10,2:10" 5
ok $? "the worker refreshes a continuous incremental view, with no one calling pipeline_refresh"
is "$(qw "SELECT pipeline_pending_changes('live_counts')")" 0 "nothing is left pending"

# a continuous CDC pipeline: changes of a local publication applied by the worker
qw "CREATE SCHEMA app; CREATE SCHEMA mirror;
    CREATE TABLE app.acct (id int PRIMARY KEY, balance int);
    CREATE TABLE mirror.acct (id int PRIMARY KEY, balance int);
    CREATE PUBLICATION acct_pub FOR TABLE app.acct" >/dev/null
qw "SELECT pipeline_create_cdc('acct', 'acct_pub', 'mirror',
      options => '{\"continuous\": true, \"poll_interval\": \"100 milliseconds\"}')" >/dev/null
qw "INSERT INTO app.acct SELECT g, 100 FROM generate_series(1, 50) g" >/dev/null
qw "UPDATE app.acct SET balance = balance - 1 WHERE id <= 10; DELETE FROM app.acct WHERE id > 40" >/dev/null
wait_until "SELECT count(*) || ' ' || sum(balance) FROM mirror.acct" "40 3990" 10
ok $? "the worker applies a continuous CDC pipeline, with no one calling pipeline_run"
is "$(qw "SELECT count(*) FROM pipeline.runs WHERE pipeline = 'acct' AND status = 'failed'")" 0 "without a failed run"
qw "SELECT pipeline_drop('acct')" >/dev/null   # DROP EXTENSION would leave its slot

# a failing pipeline: failed runs, the worker goes on
pid_before=$(worker_pid)
qw "CREATE TABLE bad_dst (id bigint, v int);
    SELECT pipeline_create('broken', 'src', 'bad_dst', watermark => 'id',
      transform => 'SELECT id, 1 / (v - 7) AS v FROM batch',
      options => '{\"continuous\": true, \"poll_interval\": \"100 milliseconds\"}')" >/dev/null
wait_until "SELECT count(*) > 0 FROM pipeline.runs WHERE pipeline = 'broken' AND status = 'failed'" t 5
ok $? "the broken pipeline's runs are recorded as failed"
qw "INSERT INTO src (v) VALUES (8)" >/dev/null
wait_until "SELECT count(*) FROM dst" 1007 5
ok $? "the worker keeps delivering the other pipelines"
is "$(worker_pid)" "$pid_before" "the same worker process: no crash, no restart"
qw "SELECT pipeline_drop('broken')" >/dev/null

# a pipeline's timeout holds in the worker too
qw "CREATE TABLE late_dst (id bigint, v int);
    SELECT pipeline_create('late', 'src', 'late_dst', watermark => 'id',
      transform => \$\$ SELECT id, v FROM batch WHERE pg_sleep(0.05)::text = '' \$\$,
      options => '{\"continuous\": true, \"timeout\": \"200 milliseconds\"}')" >/dev/null
wait_until "SELECT count(*) > 0 FROM pipeline.runs WHERE pipeline = 'late' AND sqlstate = '57014'" t 10
ok $? "a run over its timeout in the worker is a failed run (57014)"
is "$(worker_pid)" "$pid_before" "and the worker goes on"
qw "SELECT pipeline_drop('late')" >/dev/null

# SIGTERM in the middle of a run: rolled back whole, then done once by the new worker
qw "CREATE TABLE slow_dst (id bigint, v int);
    SELECT pipeline_create('slow', 'src', 'slow_dst', watermark => 'id',
      transform => \$\$ SELECT id, v FROM batch WHERE pg_sleep(2)::text = '' \$\$,
      options => '{\"continuous\": true, \"batch_size\": 1}');
    SELECT pipeline_reset('slow', (SELECT max(id) - 1 FROM src)::text)" >/dev/null
wait_until "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline worker' AND datname = 'postgres' AND wait_event = 'PgSleep'" 1 10
ok $? "the worker is in the middle of the slow run"
watermark=$(qw "SELECT last_watermark FROM pipeline.pipelines WHERE name = 'slow'")
qw "SELECT pg_terminate_backend($(worker_pid))" >/dev/null
is "$(qw "SELECT count(*) FROM slow_dst")" 0 "after SIGTERM nothing of the interrupted run is in the target"
is "$(qw "SELECT last_watermark FROM pipeline.pipelines WHERE name = 'slow'")" "$watermark" "and the watermark did not move"
wait_until "SELECT count(*) FROM slow_dst" 1 15
ok $? "the launcher restarted the worker, which completed the run"
is "$(qw "SELECT count(*) - count(DISTINCT id) FROM slow_dst")" 0 "exactly once"
qw "SELECT pipeline_drop('slow')" >/dev/null

# DROP EXTENSION and DROP DATABASE do not wait for the workers
is "$(qw "SET lock_timeout = '3s'; DROP EXTENSION pipeline CASCADE; SELECT 'dropped'")" "dropped" \
  "DROP EXTENSION is not blocked by the worker"
qw "CREATE DATABASE wdb" >/dev/null
wait_until "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline worker' AND datname = 'wdb'" 1 15
ok $? "a worker started for the new database listed in pipeline.database"
cluster_psql workers "$WPORT" -q -c "DROP DATABASE wdb" 2>&1 | sed 's/^/# /'
is "$(qw "SELECT count(*) FROM pg_database WHERE datname = 'wdb'")" 0 "DROP DATABASE is not blocked by its worker"

# SIGHUP: an emptied pipeline.database stops the workers
cluster_psql workers "$WPORT" -q -c "ALTER SYSTEM SET pipeline.database = ''" -c "SELECT pg_reload_conf()" >/dev/null
wait_until "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline worker'" 0 15
ok $? "after SIGHUP the launcher stops workers of databases no longer listed"
is "$(grep -c 'terminated by signal\|server process .* was terminated' "$WORK_BASE/workers/server.log")" 0 \
  "no process crashed"
done_testing
