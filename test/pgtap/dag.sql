-- Dependencies form a DAG: declared or inferred, cycles refused, run in order.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION pipeline;
SELECT plan(18);

CREATE TABLE raw (id serial PRIMARY KEY, v int);
CREATE TABLE stage (id int, v int);
CREATE TABLE mart (n bigint);
CREATE TABLE other (id int, v int);
CREATE TABLE report (n bigint);
INSERT INTO raw (v) SELECT g FROM generate_series(1, 10) g;

-- created out of order on purpose
SELECT pipeline_create('to_mart', 'stage', 'mart', mode => 'replace',
                       transform => 'SELECT count(*) AS n FROM batch');
SELECT pipeline_create('to_stage', 'raw', 'stage', watermark => 'id');
SELECT pipeline_create('to_other', 'raw', 'other', watermark => 'id');
SELECT pipeline_create('to_report', 'other', 'report', mode => 'replace',
                       transform => 'SELECT count(*) AS n FROM batch',
                       options => '{"depends_on": ["to_mart"]}');

SELECT results_eq($$ SELECT upstream, downstream, kind FROM pipeline.dependencies ORDER BY 2, 1 $$,
  $$ VALUES ('to_stage', 'to_mart', 'inferred'), ('to_mart', 'to_report', 'declared'),
            ('to_other', 'to_report', 'inferred') $$,
  'dependencies are inferred from target = source, and declared with depends_on');

SELECT results_eq($$ SELECT pipeline, status FROM pipeline_run_all() $$,
  $$ VALUES ('to_other', 'succeeded'), ('to_stage', 'succeeded'),
            ('to_mart', 'succeeded'), ('to_report', 'succeeded') $$,
  'pipeline_run_all runs upstream before downstream');
SELECT is((SELECT n FROM mart), 10::bigint, 'the downstream pipeline saw its upstream''s rows in the same pass');

SELECT throws_ok($$ SELECT pipeline_create('back', 'mart', 'raw', transform => 'SELECT n::int AS id, n::int AS v FROM batch') $$,
  '42P17', NULL, 'a pipeline that closes a cycle is refused at create');
SELECT is((SELECT count(*) FROM pipeline.pipelines WHERE name = 'back'), 0::bigint, 'and nothing is left behind');
SELECT throws_ok($$ SELECT pipeline_alter('to_stage', '{"depends_on": ["to_report"]}') $$,
  '42P17', NULL, 'a dependency that closes a cycle is refused at alter');
SELECT is((SELECT depends_on FROM pipeline.pipelines WHERE name = 'to_stage'), NULL::text[],
  'and the old definition stays');
SELECT throws_ok($$ SELECT pipeline_alter('to_stage', '{"depends_on": ["nope"]}') $$,
  '42704', NULL, 'an unknown upstream is refused');
SELECT throws_ok($$ SELECT pipeline_alter('to_stage', '{"depends_on": "to_mart"}') $$,
  '22023', NULL, 'depends_on must be an array');

-- cascade: a run that loads rows queues its downstream for pipeline_run_due
SELECT pipeline_alter('to_stage', '{"cascade": true}');
SELECT is((SELECT count(*) FROM pipeline_run_due()), 0::bigint, 'nothing is due before any run queues it');
INSERT INTO raw (v) VALUES (11);
SELECT pipeline_run('to_stage');
SELECT is((SELECT queued_at IS NOT NULL FROM pipeline.status WHERE pipeline = 'to_mart'), true,
  'the upstream run queued its downstream');
SELECT results_eq($$ SELECT pipeline, status, trigger FROM pipeline_run_due() $$,
  $$ VALUES ('to_mart', 'succeeded', 'cascade') $$, 'pipeline_run_due runs it, with trigger cascade');
SELECT is((SELECT n FROM mart), 11::bigint, 'and it saw the new row');
SELECT pipeline_run('to_stage');
SELECT is((SELECT count(*) FROM pipeline_run_due()), 0::bigint, 'an idle upstream run queues nothing');

-- a failed upstream: its downstream is skipped in the same pass
ALTER TABLE stage ADD CONSTRAINT small CHECK (v < 100);
SELECT pipeline_contract('to_stage', '{"actions": {}, "columns": {"v": {"max": 1000}}, "max_bad_rows": 0}');
INSERT INTO raw (v) VALUES (500);
SELECT results_eq($$ SELECT pipeline, status, coalesce(error, '') FROM pipeline_run_all() WHERE pipeline IN ('to_stage', 'to_mart') $$,
  $$ VALUES ('to_stage', 'failed',
             'batch of pipeline "to_stage" has 1 bad rows of 1, over its contract''s max_bad_rows (0); most broken rules: {"small": 1}'),
            ('to_mart', 'skipped', 'upstream pipeline "to_stage" failed') $$,
  'downstream of a failed pipeline is skipped, with the reason');
SELECT is((SELECT state FROM pipeline.status WHERE pipeline = 'to_stage'), 'failed'::text,
  'the failure stays visible in pipeline.status');

-- without pg_cron in this database, scheduling says how to get it
SELECT throws_ok($$ SELECT pipeline_schedule('to_stage', '*/5 * * * *') $$, '55000', NULL,
  'pipeline_schedule without pg_cron fails with 55000 and a hint');
SELECT throws_ok($$ SELECT pipeline_unschedule('to_stage') $$, '55000', NULL,
  'so does pipeline_unschedule');

SELECT * FROM finish();
ROLLBACK;
