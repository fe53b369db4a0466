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
DROP ROLE IF EXISTS sched_owner;
CREATE EXTENSION pg_cron;
CREATE EXTENSION pipeline;
CREATE ROLE sched_owner;
GRANT USAGE ON SCHEMA cron TO sched_owner;
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

# the cron job's lifecycle
jobid=$(qp "SELECT pipeline_schedule('tick', '0 3 * * *')")
ok $([ -n "$jobid" ]; echo $?) "pipeline_schedule returns the cron job id ($jobid)"
is "$(qp "SELECT jobname || '|' || schedule || '|' || command || '|' || username FROM cron.job")" \
  "pipeline:tick|0 3 * * *|SELECT pg_catalog.pipeline_run('tick', 'cron')|postgres" \
  "one job named pipeline:tick calls pipeline_run, owned by the role that scheduled it"
qp "SELECT pipeline_schedule('tick', '* * * * *')" >/dev/null
is "$(qp "SELECT count(*) || '|' || min(schedule) FROM cron.job")" "1|* * * * *" \
  "scheduling again changes the same job"
is "$(qp "SELECT schedule FROM pipeline.status WHERE pipeline = 'tick'")" "* * * * *" \
  "pipeline.status shows the schedule"

qp "SELECT pipeline_schedule('tick_counts', '* * * * *')" >/dev/null
is "$(qp "SELECT command FROM cron.job WHERE jobname = 'pipeline:public.tick_counts'")" \
  "SELECT pg_catalog.pipeline_refresh('public.tick_counts')" "an incremental view's job calls pipeline_refresh"
is "$(qp "SELECT schedule FROM pipeline.status WHERE pipeline = 'tick_counts'")" "* * * * *" \
  "pipeline.status shows the view's schedule"

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
is "$(qp "SELECT count(*) FROM cron.job WHERE jobname = 'pipeline:public.tick_counts'")" 0 \
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

cluster_psql test "$PORT" -d "$DB" -q -c "DROP EXTENSION pipeline CASCADE" -c "DROP EXTENSION pg_cron" \
  -c "DROP TABLE tick_src, tick_dst, tick_events" -c "DROP OWNED BY sched_owner" -c "DROP ROLE sched_owner" >/dev/null 2>&1
done_testing
