#!/usr/bin/env bash
# Background workers (shared_preload_libraries = 'pipeline'): continuous
# delivery, cascades, continuous views and CDC, a failing pipeline and its
# backoff, SIGTERM in the middle of a run, the worker's own statements
# under a writable public schema and a REPEATABLE READ database default, a
# killed launcher, DROP EXTENSION, DROP DATABASE, ALTER DATABASE RENAME and
# CREATE DATABASE TEMPLATE not blocked (and not stopping the worker for a
# role that may not run them), SIGHUP, the launcher's restart backoff.
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

# a writable public schema (databases from before PG 15): an operator there
# that would shadow one of the worker's own statements never runs (issue 11, 4)
qw "CREATE ROLE shadower LOGIN; GRANT CREATE ON SCHEMA public TO PUBLIC;
    CREATE TABLE shadow_calls (who text); GRANT INSERT ON shadow_calls TO PUBLIC" >/dev/null
cluster_psql workers "$WPORT" -U shadower -d postgres -q >/dev/null <<'SQL'
CREATE FUNCTION public.shadow_mul(numeric, integer) RETURNS numeric LANGUAGE plpgsql AS
  $$BEGIN INSERT INTO public.shadow_calls VALUES (current_user); RETURN $1 OPERATOR(pg_catalog.*) $2; END$$;
CREATE OPERATOR public.* (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = public.shadow_mul);
SQL
is "$(qw "SELECT count(*) FROM pg_operator WHERE oprname = '*' AND oprnamespace = 'public'::regnamespace")" 1 \
  "an ordinary role created public.* (numeric, integer)"
qw "INSERT INTO src (v) VALUES (1)" >/dev/null
wait_until "SELECT count(*) FROM dst" 1006 5
sleep 2.5   # the worker re-reads its pipelines every second
is "$(qw "SELECT count(*) FROM shadow_calls")" 0 "the worker never calls a public.* operator that shadows pg_catalog's"
qw "DELETE FROM src WHERE id = (SELECT max(id) FROM src); DELETE FROM dst WHERE id = (SELECT max(id) FROM dst)" >/dev/null
qw "DROP OPERATOR public.* (numeric, integer); DROP FUNCTION public.shadow_mul(numeric, integer);
    REVOKE CREATE ON SCHEMA public FROM PUBLIC; DROP TABLE shadow_calls; DROP ROLE shadower" >/dev/null

# one open writer on one source does not stall the worker's other pipelines (issue 15, 5)
qw "CREATE TABLE side_src (id bigserial PRIMARY KEY, v int); CREATE TABLE side_dst (id bigint, v int);
    SELECT pipeline_create('zz_side', 'side_src', 'side_dst', watermark => 'id',
      options => '{\"continuous\": true, \"poll_interval\": \"100 milliseconds\"}');
    CREATE TABLE down_src (id bigserial PRIMARY KEY); CREATE TABLE down_dst (id bigint);
    SELECT pipeline_create('zz_down', 'down_src', 'down_dst', watermark => 'id')" >/dev/null
before=$(qw "SELECT max(id) FROM src")
cluster_psql workers "$WPORT" -q -c "BEGIN" -c "INSERT INTO src (v) VALUES (2)" -c "INSERT INTO down_src DEFAULT VALUES" \
  -c "SELECT pg_sleep(6) /* open writer */" -c "COMMIT" >/dev/null &
writer=$!
wait_until "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%/* open writer */' AND wait_event = 'PgSleep'" 1 5
# a committed row after the open one: the run of live must wait for the writer
qw "INSERT INTO src (v) VALUES (3); INSERT INTO down_src DEFAULT VALUES;
    UPDATE pipeline.pipelines SET queued_at = now() WHERE name = 'zz_down'" >/dev/null
sleep 0.3
qw "INSERT INTO side_src (v) VALUES (1)" >/dev/null
wait_until "SELECT count(*) FROM side_dst" 1 3
ok $? "while a transaction writing into one source stays open, another pipeline's rows are delivered"
is "$(qw "SELECT count(*) FROM dst WHERE id > $before")" 0 "and the committed row after the open one waits for it"
sleep 1.5
is "$(qw "SELECT (queued_at IS NOT NULL) || ' ' || (SELECT count(*) FROM down_dst) FROM pipeline.pipelines WHERE name = 'zz_down'")" "true 0" \
  "a queued run that gave up on an open writer stays queued"
wait $writer
wait_until "SELECT (queued_at IS NULL) || ' ' || (SELECT count(*) FROM down_dst) FROM pipeline.pipelines WHERE name = 'zz_down'" "true 2" 5
ok $? "and runs, with both rows, once the writer commits"
wait_until "SELECT count(*) FROM dst WHERE id > $before" 2 5
ok $? "both rows are delivered once the writer commits"
qw "SELECT pipeline_drop('zz_side'); SELECT pipeline_drop('zz_down'); DROP TABLE side_src, side_dst, down_src, down_dst;
    DELETE FROM src WHERE id > $before; DELETE FROM dst WHERE id > $before" >/dev/null

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
sleep 3
failed_runs=$(qw "SELECT count(*) FROM pipeline.runs WHERE pipeline = 'broken' AND status = 'failed'")
# at a 100 ms poll, 3 s are 30 polls; the backoff (200 ms, 400, 800, 1.6 s) leaves about 5 (issue 15, 10)
ok $([ "$failed_runs" -le 8 ]; echo $?) "a failing continuous pipeline backs off: $failed_runs failed runs in 3 s, not one per poll"
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

# a REPEATABLE READ default in the database: the worker runs in READ
# COMMITTED all the same (issue 15, 9)
qw "ALTER DATABASE postgres SET default_transaction_isolation = 'repeatable read'" >/dev/null
pid_before=$(worker_pid)
qw "SELECT pg_terminate_backend($pid_before)" >/dev/null
wait_until "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline worker' AND datname = 'postgres' AND pid <> $pid_before" 1 15
qw "INSERT INTO src (v) VALUES (9)" >/dev/null
wait_until "SELECT count(*) FROM dst" 1008 5
ok $? "with default_transaction_isolation = 'repeatable read' on the database the worker still delivers"
qw "ALTER DATABASE postgres RESET default_transaction_isolation" >/dev/null

# DROP EXTENSION and DROP DATABASE do not wait for the workers
is "$(qw "SET lock_timeout = '3s'; DROP EXTENSION pipeline CASCADE; SELECT 'dropped'")" "dropped" \
  "DROP EXTENSION is not blocked by the worker"
qw "CREATE DATABASE wdb" >/dev/null
wait_until "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline worker' AND datname = 'wdb'" 1 15
ok $? "a worker started for the new database listed in pipeline.database"

# an error of the worker's own, outside a run's recorded failure, shows in
# pipeline.workers (issue 15, 9): a database whose transactions are read-only
q workers "$WPORT" wdb "CREATE EXTENSION pipeline; CREATE TABLE s (id bigserial PRIMARY KEY); CREATE TABLE d (id bigint);
  SELECT pipeline_create('ro', 's', 'd', watermark => 'id',
    options => '{\"continuous\": true, \"poll_interval\": \"100 milliseconds\"}');
  INSERT INTO s DEFAULT VALUES" >/dev/null
qwdb() { q workers "$WPORT" wdb "$1"; }
is "$(qwdb "SELECT string_agg(database || CASE WHEN database = 'wdb' THEN ':' || errors ELSE '' END, ',' ORDER BY database) FROM pipeline.workers")" "postgres,wdb:0" \
  "pipeline.workers lists the running workers, without errors"
qw "ALTER DATABASE wdb SET default_transaction_read_only = on" >/dev/null
wdb_pid=$(qw "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline worker' AND datname = 'wdb'")
qw "SELECT pg_terminate_backend($wdb_pid)" >/dev/null
for _ in $(seq 1 150); do
  [ "$(qwdb "SELECT count(*) FROM pipeline.workers WHERE database = 'wdb' AND errors > 0 AND last_error LIKE '%read-only transaction%'" 2>/dev/null)" = 1 ] && break
  sleep 0.1
done
is "$(qwdb "SELECT count(*) FROM pipeline.workers WHERE database = 'wdb' AND errors > 0 AND last_error LIKE '%read-only transaction%'")" 1 \
  "a worker whose every statement fails shows its error in pipeline.workers"
qw "CREATE ROLE watcher LOGIN" >/dev/null
is "$(cluster_psql workers "$WPORT" -U watcher -d wdb -qAt -c "SELECT coalesce(last_error, 'hidden') FROM pipeline.workers WHERE database = 'wdb'")" \
  "hidden" "the error text is not shown to an ordinary role"
qw "DROP ROLE watcher; ALTER DATABASE wdb RESET default_transaction_read_only" >/dev/null

# a killed launcher: the next one does not add a second worker per database (issue 15, 2)
launcher=$(qw "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline launcher'")
qw "SELECT pg_terminate_backend($launcher)" >/dev/null
wait_until "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline launcher' AND pid <> $launcher" 1 20
ok $? "the postmaster starts the launcher again"
sleep 2
workers_per_db="SELECT string_agg(datname || ':' || n, ',' ORDER BY datname) FROM (SELECT datname, count(*) AS n FROM pg_stat_activity WHERE backend_type = 'pipeline worker' GROUP BY 1) w"
wait_until "$workers_per_db" "postgres:1,wdb:1" 10
is "$(qw "$workers_per_db")" "postgres:1,wdb:1" "after a launcher restart there is one worker per database"

# ALTER DATABASE RENAME and CREATE DATABASE TEMPLATE are not blocked by the worker (issue 15, 4)
out=$(cluster_psql workers "$WPORT" -qAt -c "ALTER DATABASE wdb RENAME TO wdb_renamed" \
  -c "ALTER DATABASE wdb_renamed RENAME TO wdb" -c "SELECT 'renamed'" 2>&1)
is "$out" "renamed" "ALTER DATABASE RENAME of a database with a worker"
wait_until "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline worker' AND datname = 'wdb'" 1 15
out=$(cluster_psql workers "$WPORT" -qAt -c "CREATE DATABASE wdb_copy TEMPLATE wdb" -c "SELECT 'copied'" 2>&1)
is "$out" "copied" "CREATE DATABASE ... TEMPLATE of a database with a worker"
wait_until "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline worker' AND datname = 'wdb'" 1 15
ok $? "and the worker is back"
cluster_psql workers "$WPORT" -q -c "DROP DATABASE wdb_copy" >/dev/null

# a role that may not drop the database does not stop its worker (issue 15, 11)
qw "CREATE ROLE dropper LOGIN CREATEDB" >/dev/null
wdb_pid=$(qw "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline worker' AND datname = 'wdb'")
out=$(cluster_psql workers "$WPORT" -U dropper -d postgres -qAt -c "DROP DATABASE wdb" 2>&1)
echo "$out" | sed 's/^/# /'
echo "$out" | grep -q 'must be owner of database wdb'
ok $? "DROP DATABASE by a role that does not own it fails"
is "$(qw "SELECT count(*) FROM pg_stat_activity WHERE pid = $wdb_pid")" 1 \
  "DROP DATABASE by a role that does not own it fails and leaves the worker running"
qw "DROP ROLE dropper" >/dev/null

cluster_psql workers "$WPORT" -q -c "DROP DATABASE wdb" 2>&1 | sed 's/^/# /'
is "$(qw "SELECT count(*) FROM pg_database WHERE datname = 'wdb'")" 0 "DROP DATABASE is not blocked by its worker"

# SIGHUP: an emptied pipeline.database stops the workers
cluster_psql workers "$WPORT" -q -c "ALTER SYSTEM SET pipeline.database = ''" -c "SELECT pg_reload_conf()" >/dev/null
wait_until "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline worker'" 0 15
ok $? "after SIGHUP the launcher stops workers of databases no longer listed"
is "$(grep -c 'terminated by signal\|server process .* was terminated' "$WORK_BASE/workers/server.log")" 0 \
  "no process crashed"

# the launcher's restart backoff grows while a worker keeps failing at its
# start: one slot, two databases (issue 15, 1)
remove_cluster workers
trap 'remove_cluster launch' EXIT
start_cluster launch "$WPORT" "shared_preload_libraries = 'pipeline'
pipeline.max_workers = 1
pipeline.database = 'postgres, template1'" || { echo "Bail out! cannot start cluster"; exit 1; }
delays() { grep -o 'starting it again in [0-9]* ms' "$WORK_BASE/launch/server.log" | head -3 | grep -o '[0-9]*' | paste -sd,; }
for _ in $(seq 1 150); do
  [ "$(delays | tr ',' '\n' | grep -c .)" = 3 ] && break
  sleep 0.1
done
is "$(delays)" "1000,2000,4000" "a worker that fails at its start is restarted after 1 s, then 2 s, then 4 s"
done_testing
