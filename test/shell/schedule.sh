#!/usr/bin/env bash
# Scheduling through pg_cron (the test cluster preloads it, with
# cron.database_name = postgres), and the pipeline_events alerts.
source "$(dirname "$0")/../tap.sh"
DB=postgres
qp() { q test "$PORT" "$DB" "$1"; }

cluster_psql test "$PORT" -d "$DB" -q >/dev/null <<'SQL'
DROP EXTENSION IF EXISTS pipeline CASCADE;
DROP EXTENSION IF EXISTS pg_cron CASCADE;
DROP TABLE IF EXISTS tick_src, tick_dst, tick_events CASCADE;
DROP SCHEMA IF EXISTS mallory, victim CASCADE;
DROP ROLE IF EXISTS sched_owner, sched_admin, sched_mallory, sched_victim, old_scheduler;
CREATE EXTENSION pg_cron;
CREATE EXTENSION pipeline;
CREATE ROLE sched_owner;
-- a LOGIN member of the owner schedules, and is dropped later on
CREATE ROLE sched_admin LOGIN IN ROLE sched_owner;
CREATE ROLE sched_mallory LOGIN;
CREATE ROLE sched_victim LOGIN;
CREATE SCHEMA mallory AUTHORIZATION sched_mallory;
CREATE SCHEMA victim AUTHORIZATION sched_victim;
CREATE TABLE tick_src (id serial PRIMARY KEY, v int);
CREATE TABLE tick_dst (id int, v int CHECK (v > 0), who text DEFAULT current_user);
ALTER TABLE tick_src OWNER TO sched_owner;
ALTER TABLE tick_dst OWNER TO sched_owner;
INSERT INTO tick_src (v) SELECT g FROM generate_series(1, 5) g;
CREATE TABLE tick_events (id serial PRIMARY KEY, k int);
SELECT pipeline_create_matview('tick_counts', 'SELECT k, count(*) AS n FROM tick_events GROUP BY k');
INSERT INTO tick_events (k) VALUES (1), (1), (1), (2);
SET ROLE sched_owner;
SELECT pipeline_create('tick', 'tick_src', 'tick_dst', watermark => 'id');
SQL

as_role() { cluster_psql test "$PORT" -d "$DB" -U "$1" -qAt -c "$2"; }

# the cron job's lifecycle
jobid=$(as_role sched_admin "SELECT pipeline_schedule('tick', '0 3 * * *')")
ok $([ -n "$jobid" ]; echo $?) "pipeline_schedule returns the cron job id ($jobid)"
is "$(qp "SELECT jobname || '|' || schedule || '|' || command || '|' || username FROM cron.job")" \
  "pipeline:tick|0 3 * * *|SELECT pg_catalog.pipeline_run('tick', 'cron')|postgres" \
  "one job named pipeline:tick calls pipeline_run, owned by the catalog's owner, not the scheduling role"
as_role sched_admin "SELECT pipeline_schedule('tick', '* * * * *')" >/dev/null
is "$(qp "SELECT count(*) || '|' || min(schedule) FROM cron.job")" "1|* * * * *" \
  "scheduling again changes the same job"
is "$(qp "SELECT schedule FROM pipeline.status WHERE pipeline = 'tick'")" "* * * * *" \
  "pipeline.status shows the schedule"

is "$(qp "SELECT schedule_job FROM pipeline.status WHERE pipeline = 'tick'")" "active" \
  "and that its job is active"

qp "SELECT pipeline_schedule('tick_counts', '* * * * *')" >/dev/null
is "$(qp "SELECT command FROM cron.job WHERE jobname = 'pipeline_view:public.tick_counts'")" \
  "SELECT pg_catalog.pipeline_refresh('public.tick_counts')" "an incremental view's job calls pipeline_refresh"
is "$(qp "SELECT schedule FROM pipeline.status WHERE pipeline = 'tick_counts'")" "* * * * *" \
  "pipeline.status shows the view's schedule"

# two ordinary roles: the drop of mallory's pipeline named like victim's
# view leaves the view's job (issue 11, 9)
as_role sched_victim "CREATE TABLE victim.ev (id serial PRIMARY KEY, k int);
  SELECT pipeline_create_matview('victim.ev_counts', 'SELECT k, count(*) AS n FROM victim.ev GROUP BY k');
  SELECT pipeline_schedule('victim.ev_counts', '0 4 * * *')" >/dev/null
as_role sched_mallory "CREATE TABLE mallory.s (id int); CREATE TABLE mallory.d (id int);
  SELECT pipeline_create('victim.ev_counts', 'mallory.s', 'mallory.d');
  SELECT pipeline_schedule('victim.ev_counts', '0 4 * * *');
  SELECT pipeline_drop('victim.ev_counts')" >/dev/null
is "$(qp "SELECT string_agg(jobname || '|' || command, ',') FROM cron.job WHERE jobname LIKE '%ev_counts'")" \
  "pipeline_view:victim.ev_counts|SELECT pg_catalog.pipeline_refresh('victim.ev_counts')" \
  "dropping another role's pipeline of the same name leaves the view's job"
is "$(as_role sched_victim "SELECT schedule_job FROM pipeline.status WHERE pipeline = 'victim.ev_counts'")" "active" \
  "and the view's owner sees it active"
as_role sched_victim "SELECT pipeline_drop_matview('victim.ev_counts')" >/dev/null

# mallory's pipeline named like victim's view does not keep victim from
# scheduling the view; and a view dropped with DROP TABLE takes its job
as_role sched_victim "SELECT pipeline_create_matview('victim.ev_n', 'SELECT k, count(*) AS n FROM victim.ev GROUP BY k')" >/dev/null
as_role sched_mallory "SELECT pipeline_create('victim.ev_n', 'mallory.s', 'mallory.d')" >/dev/null
is "$(as_role sched_victim "SELECT pipeline_schedule('victim.ev_n', '0 4 * * *') > 0" 2>&1)" t \
  "victim schedules her view although mallory has a pipeline of its name"
as_role sched_mallory "SELECT pipeline_drop('victim.ev_n')" >/dev/null
as_role sched_victim "DROP TABLE victim.ev_n" >/dev/null
is "$(qp "SELECT count(*) FROM cron.job WHERE jobname LIKE '%ev_n'")" 0 \
  "a view dropped with DROP TABLE takes its job along"

# the role that scheduled goes away: no job is left with a user pg_cron cannot
# find, which would stop pg_cron's scheduler for every job (issue 15, 3)
qp "DROP OWNED BY sched_admin; DROP ROLE sched_admin" >/dev/null
is "$(qp "SELECT count(*) FROM cron.job j WHERE NOT EXISTS (SELECT FROM pg_roles r WHERE r.rolname = j.username)")" 0 \
  "after DROP ROLE of the scheduling role every job still has its user"

# the job really runs pipeline_run (pg_cron 1.4 fires on the minute)
loaded=0
for _ in $(seq 1 80); do
  loaded=$(qp "SELECT count(*) FROM tick_dst")
  [ "$loaded" = 5 ] && break
  sleep 1
done
is "$loaded" 5 "within a minute the cron job ran the pipeline"
pending=1
for _ in $(seq 1 20); do
  pending=$(qp "SELECT pipeline_pending_changes('tick_counts')")
  [ "$pending" = 0 ] && break
  sleep 1
done
is "$pending|$(qp "SELECT string_agg(k || ':' || n, ',' ORDER BY k) FROM tick_counts")" "0|1:3,2:1" \
  "the same minute, the view's job refreshed it"
qp "SELECT pipeline_drop_matview('tick_counts')" >/dev/null
is "$(qp "SELECT count(*) FROM cron.job WHERE jobname = 'pipeline_view:public.tick_counts'")" 0 \
  "dropping the view removes its job"
is "$(qp "SELECT string_agg(DISTINCT status, ',') FROM cron.job_run_details")" "succeeded" \
  "cron.job_run_details records the job as succeeded"
is "$(qp "SELECT count(*) || ' ' || min(trigger) FROM pipeline.runs WHERE pipeline = 'tick' AND status = 'succeeded'")" "1 cron" \
  "pipeline.runs has the run, once, triggered by cron"
is "$(qp "SELECT string_agg(DISTINCT who, ',') FROM tick_dst")" "sched_owner" \
  "the scheduled run executed as the pipeline's owner, not as the job's user"

qp "SELECT pipeline_unschedule('tick')" >/dev/null
is "$(qp "SELECT count(*) FROM cron.job")" 0 "pipeline_unschedule removes the job"
qp "SELECT pipeline_schedule('tick', '0 3 * * *')" >/dev/null
qp "SELECT pipeline_drop('tick')" >/dev/null
is "$(qp "SELECT count(*) FROM cron.job")" 0 "dropping the pipeline removes its job"

# alerts: NOTIFY pipeline_events on a failure and on the recovery
qp "SELECT pipeline_create('alerting', 'tick_src', 'tick_dst', watermark => 'id',
      transform => 'SELECT id, 10 / (v - 6) AS v FROM batch')" >/dev/null
qp "INSERT INTO tick_src (v) VALUES (6)" >/dev/null
out=$(cluster_psql test "$PORT" -d "$DB" -qAt -c "LISTEN pipeline_events" \
  -c "SELECT status FROM pipeline_run('alerting')" \
  -c "SELECT pipeline_alter('alerting', '{\"transform\": \"SELECT id, v FROM batch\"}')" \
  -c "SELECT status FROM pipeline_run('alerting')" \
  -c "SELECT status FROM pipeline_run('alerting')" 2>&1)
echo "$out" | sed 's/^/# /'
is "$(echo "$out" | grep -c 'Asynchronous notification "pipeline_events"')" 2 \
  "two notifications: the failure and the recovery, none for an idle run"
failed_run=$(echo "$out" | sed -n 's/.*payload "{"run_id": \([0-9]*\), "status": "failed"}".*/\1/p')
is "$(qp "SELECT pipeline || ' ' || error || ' ' || sqlstate FROM pipeline.runs WHERE run_id = ${failed_run:-0}")" \
  "alerting division by zero 22012" "the failure's payload is the run's id, whose row has the error and SQLSTATE"
echo "$out" | grep -q '"status": "recovered"}'
ok $? "the recovery is announced"

# two concurrent alters that each close half of a cycle: the second waits and
# is refused (issue 15, 7)
qp "CREATE TABLE cyc (id int); CREATE TABLE cyc_a_dst (id int); CREATE TABLE cyc_b_dst (id int);
    SELECT pipeline_create('cyc_a', 'cyc', 'cyc_a_dst');
    SELECT pipeline_create('cyc_b', 'cyc', 'cyc_b_dst')" >/dev/null
cluster_psql test "$PORT" -d "$DB" -qAt -c "BEGIN" \
  -c "SELECT pipeline_alter('cyc_a', '{\"depends_on\": [\"cyc_b\"]}')" \
  -c "SELECT pg_sleep(2) /* first alter */" -c "COMMIT" >/dev/null 2>&1 &
first=$!
for _ in $(seq 1 50); do
  [ "$(qp "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%/* first alter */' AND wait_event = 'PgSleep'")" = 1 ] && break
  sleep 0.1
done
second=$(qp "SELECT pipeline_alter('cyc_b', '{\"depends_on\": [\"cyc_a\"]}')" 2>&1)
wait $first
echo "$second" | sed 's/^/# /'
echo "$second" | grep -q 'would form a cycle'
ok $? "the second of two concurrent alters closing a cycle is refused"
is "$(qp "SELECT coalesce(array_to_string(depends_on, ','), '-') FROM pipeline.pipelines WHERE name IN ('cyc_a', 'cyc_b') ORDER BY name")" \
  "cyc_b
-" "and the DAG has no cycle"

# a downstream dropped while pipeline_run_due runs its upstream: the call
# goes on, and the upstream's run stays (issue 15, 12)
qp "CREATE TABLE due_src (id int); CREATE TABLE due_mid (id int); CREATE TABLE due_end (id int);
    INSERT INTO due_src VALUES (1);
    SELECT pipeline_create('due_up', 'due_src', 'due_mid',
      transform => \$\$ SELECT id FROM batch WHERE pg_sleep(2)::text = '' \$\$);
    SELECT pipeline_create('due_down', 'due_mid', 'due_end');
    UPDATE pipeline.pipelines SET queued_at = now() WHERE name IN ('due_up', 'due_down')" >/dev/null
cluster_psql test "$PORT" -d "$DB" -qAt -c "SELECT pipeline || '|' || status FROM pipeline_run_due()" \
  >"$WORK_BASE/due.out" 2>&1 &
due=$!
for _ in $(seq 1 50); do
  [ "$(qp "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pipeline_run_due()%' AND wait_event = 'PgSleep'")" = 1 ] && break
  sleep 0.1
done
qp "SELECT pipeline_drop('due_down')" >/dev/null
wait $due
sed 's/^/# /' "$WORK_BASE/due.out"
is "$(cat "$WORK_BASE/due.out")" "due_up|succeeded" "pipeline_run_due returns the upstream's run, without the dropped downstream"
is "$(qp "SELECT count(*) FROM due_mid")" 1 "and the upstream's run is committed"

# a job pg_cron cannot run (its user is gone) shows in pipeline.status, and
# pipeline_unschedule removes it (issue 15, 3)
qp "SELECT pipeline_schedule('alerting', '0 5 * * *')" >/dev/null
qp "UPDATE cron.job SET username = 'ghost_role' WHERE jobname = 'pipeline:alerting'" >/dev/null
is "$(qp "SELECT schedule_job || '|' || coalesce(next_run_at::text, 'no next run') FROM pipeline.status WHERE pipeline = 'alerting'")" \
  "role missing|no next run" "status shows a job whose user is gone, with no next run"
qp "SELECT pipeline_unschedule('alerting')" >/dev/null
is "$(qp "SELECT count(*) FROM cron.job WHERE jobname = 'pipeline:alerting'")" 0 "pipeline_unschedule removes that job too"

# pg_cron cuts job names at 63 bytes: a name that does not fit is refused,
# or two long names would share one job (review of 0.4)
long=$(printf 'P%.0s' $(seq 1 60))
qp "SELECT pipeline_create('${long}_a', 'tick_src', 'tick_dst')" >/dev/null
err=$(qp "SELECT pipeline_schedule('${long}_a', '0 3 * * *')" 2>&1)
echo "$err" | grep -q 'is longer than 63 bytes'
ok $? "a pipeline whose job name would be cut is not scheduled"
is "$(qp "SELECT count(*) FROM cron.job WHERE jobname LIKE 'pipeline:PPP%'")" 0 "and no job is made"
qp "SELECT pipeline_drop('${long}_a')" >/dev/null

# jobs of 0.3 (owned by whoever scheduled them; a view's job named like a
# pipeline's) are given to the catalog's owner by the update to 0.4
qp "DROP EXTENSION pipeline CASCADE; CREATE EXTENSION pipeline VERSION '0.3';
    CREATE ROLE old_scheduler LOGIN;
    SELECT pipeline_create('old_tick', 'tick_src', 'tick_dst');
    SELECT pipeline_create_matview('old_counts', 'SELECT k, count(*) AS n FROM tick_events GROUP BY k');
    SELECT cron.schedule('pipeline:old_tick', '0 6 * * *', 'SELECT pg_catalog.pipeline_run(''old_tick'', ''cron'')');
    SELECT cron.schedule('pipeline:public.old_counts', '0 6 * * *', 'SELECT pg_catalog.pipeline_refresh(''public.old_counts'')');
    UPDATE cron.job SET username = 'old_scheduler' WHERE jobname LIKE 'pipeline:old%' OR jobname = 'pipeline:public.old_counts'" >/dev/null
qp "ALTER EXTENSION pipeline UPDATE TO '0.4'" >/dev/null
is "$(qp "SELECT string_agg(jobname || '|' || username, ',' ORDER BY jobname) FROM cron.job")" \
  "pipeline:old_tick|postgres,pipeline_view:public.old_counts|postgres" \
  "ALTER EXTENSION UPDATE gives 0.3's jobs to the catalog's owner and views' jobs their prefix"
qp "SELECT pipeline_drop('old_tick'); SELECT pipeline_drop_matview('old_counts'); DROP ROLE old_scheduler" >/dev/null
is "$(qp "SELECT count(*) FROM cron.job")" 0 "and the drops remove them"

cluster_psql test "$PORT" -d "$DB" -q -c "DROP EXTENSION pipeline CASCADE" -c "DROP EXTENSION pg_cron" \
  -c "DROP TABLE tick_src, tick_dst, tick_events, cyc, cyc_a_dst, cyc_b_dst, due_src, due_mid, due_end" \
  -c "DROP SCHEMA mallory, victim CASCADE" \
  -c "DROP OWNED BY sched_owner" -c "DROP ROLE sched_owner" -c "DROP ROLE sched_mallory, sched_victim" >/dev/null 2>&1
done_testing
