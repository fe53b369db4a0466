-- Retries with exponential backoff, run triggers and attempts, timeouts.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION pipeline;
SELECT plan(27);

CREATE TABLE src (id serial PRIMARY KEY, v int);
CREATE TABLE dst (id int, v int);
INSERT INTO src (v) VALUES (0);
SELECT pipeline_create('flaky', 'src', 'dst', watermark => 'id',
  transform => 'SELECT id, 10 / v AS v FROM batch',
  options => '{"retries": 2, "retry_delay": "1 hour"}');

SELECT results_eq($$ SELECT status, attempt, trigger FROM pipeline_run('flaky') $$,
  $$ VALUES ('failed', 1, 'manual') $$, 'a failed run is attempt 1');
SELECT is((SELECT retry_at - now() FROM pipeline.pipelines WHERE name = 'flaky'), '1 hour'::interval,
  'its retry is due after retry_delay');
SELECT is((SELECT count(*) FROM pipeline_run_due()), 0::bigint, 'nothing runs before it is due');
SELECT is((SELECT attempt FROM pipeline_run('flaky')), 2, 'the next failure is attempt 2');
SELECT is((SELECT retry_at - now() FROM pipeline.pipelines WHERE name = 'flaky'), '2 hours'::interval,
  'and the delay doubles');
SELECT is((SELECT attempt FROM pipeline_run('flaky')), 3, 'attempt 3 fails too');
SELECT is((SELECT retry_at FROM pipeline.pipelines WHERE name = 'flaky'), NULL::timestamptz,
  'out of retries: no retry is scheduled');
SELECT results_eq($$ SELECT state, failures, enabled FROM pipeline.status WHERE pipeline = 'flaky' $$,
  $$ VALUES ('failed', 3, true) $$, 'the failure stays visible, and the pipeline is not disabled');

SELECT pipeline_alter('flaky', '{"retries": 5, "retry_delay": "0 seconds"}');
SELECT pipeline_run('flaky');
SELECT results_eq($$ SELECT pipeline, status, trigger, attempt FROM pipeline_run_due() $$,
  $$ VALUES ('flaky', 'failed', 'retry', 5) $$, 'a due retry runs with trigger retry');
UPDATE src SET v = 2;
SELECT results_eq($$ SELECT status, trigger, attempt, rows_loaded FROM pipeline_run_due() $$,
  $$ VALUES ('succeeded', 'retry', 6, 1::bigint) $$, 'the retry that succeeds loads the batch once');
SELECT results_eq($$ SELECT failures, retry_at FROM pipeline.pipelines WHERE name = 'flaky' $$,
  $$ VALUES (0, NULL::timestamptz) $$, 'a success resets the failure count');
SELECT is((SELECT count(*) FROM dst), 1::bigint, 'the target has the row once');

-- a run over its timeout is a failed run (57014), not a cancelled statement
SELECT pipeline_create('slow', 'src', 'dst',
  transform => $$ SELECT id, v FROM batch WHERE pg_sleep(0.3)::text = '' $$,
  options => '{"timeout": "50 milliseconds"}');
SELECT results_eq($$ SELECT status, sqlstate, error FROM pipeline_run('slow') $$,
  $$ VALUES ('failed', '57014', 'pipeline "slow" exceeded its timeout of 00:00:00.05') $$,
  'a run over its timeout fails with 57014 and says so');
SELECT lives_ok($$ SELECT pg_sleep(0.1) $$, 'the timeout does not outlive the run');

-- next_run_at in pipeline.status, from the pg_cron schedule (GMT)
SELECT results_eq($$ SELECT pipeline_cron_next(s, '2026-11-25 09:52:30+00') FROM unnest(ARRAY[
    '*/5 * * * *', '0 2 * * *', '30 8 * * 1-5', '0 12 13 * 5', '15 10 * 2 *']) s $$,
  $$ VALUES ('2026-11-25 09:55:00+00'::timestamptz), ('2026-11-26 02:00:00+00'), ('2026-11-26 08:30:00+00'),
            ('2026-11-27 12:00:00+00'), ('2027-02-01 10:15:00+00') $$,
  'pipeline_cron_next reads minutes, hours, ranges, steps, and either day field');
SELECT is(pipeline_cron_next('@daily'), NULL, 'a schedule it cannot read gives NULL, not an error');
SELECT pipeline_alter('slow', '{"continuous": true}');
SELECT is((SELECT next_run_at FROM pipeline.status WHERE pipeline = 'slow'), now(),
  'a continuous pipeline is always next');
SELECT throws_ok($$ SELECT pipeline_alter('slow', '{"poll_interval": "10 milliseconds"}') $$, '22023', NULL,
  'poll_interval is at least 100 milliseconds');

-- lag in pipeline.status: newest source watermark minus the committed one
INSERT INTO src (v) VALUES (5), (6), (7);
SELECT is((SELECT lag FROM pipeline.status WHERE pipeline = 'flaky'), '3',
  'lag counts the ids the pipeline is behind');
SELECT is((SELECT lag FROM pipeline.status WHERE pipeline = 'slow'), NULL,
  'a pipeline without watermark has no lag');

SELECT throws_ok($$ SELECT pipeline_alter('slow', '{"retries": -1}') $$, '22023', NULL, 'retries must be 0 or more');
SELECT throws_ok($$ SELECT pipeline_alter('slow', '{"retry_delay": "soon"}') $$, '22023', NULL, 'retry_delay must be an interval');
SELECT throws_ok($$ SELECT pipeline_alter('slow', '{"timeout": "0 seconds"}') $$, '22023', NULL, 'timeout must be positive');

-- many retries: the backoff is capped, never an interval overflow (issue 15, 6)
CREATE TABLE zero (id serial PRIMARY KEY, v int);
CREATE TABLE zero_dst (id int, v int);
INSERT INTO zero (v) VALUES (0);
SELECT pipeline_create('stubborn', 'zero', 'zero_dst', watermark => 'id',
  transform => 'SELECT id, 1 / v AS v FROM batch',
  options => '{"retries": 100, "retry_delay": "5 minutes"}');
UPDATE pipeline.pipelines SET failures = 40 WHERE name = 'stubborn';  -- the 41st failure next
SELECT results_eq($$ SELECT status, sqlstate FROM pipeline_run('stubborn') $$,
  $$ VALUES ('failed', '22012') $$, 'the 41st failure of a pipeline with 100 retries is recorded');
SELECT is((SELECT retry_at - now() FROM pipeline.pipelines WHERE name = 'stubborn'), '1 day'::interval,
  'and its next retry is due after at most a day');
SELECT is((SELECT failures FROM pipeline.status WHERE pipeline = 'stubborn'), 41, 'the failure is counted');
SELECT pipeline_alter('stubborn', '{"retry_delay": "3 days"}');
SELECT pipeline_run('stubborn');
SELECT is((SELECT retry_at - now() FROM pipeline.pipelines WHERE name = 'stubborn'), '3 days'::interval,
  'a retry_delay over a day is the cap itself');

SELECT * FROM finish();
ROLLBACK;
