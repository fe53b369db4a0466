-- Dependencies form a DAG: declared or inferred, cycles refused, run in order.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION pipeline;
SELECT plan(28);

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

-- a schedule without its pg_cron job (a restore into another database):
-- shown as such, no next run from it, and pipeline_unschedule clears it
UPDATE pipeline.pipelines SET schedule = '*/5 * * * *' WHERE name = 'to_other';
SELECT results_eq($$ SELECT schedule, schedule_job, next_run_at FROM pipeline.status WHERE pipeline = 'to_other' $$,
  $$ VALUES ('*/5 * * * *', 'missing', NULL::timestamptz) $$,
  'status shows a schedule whose job is missing, with no next run');
SELECT lives_ok($$ SELECT pipeline_unschedule('to_other') $$, 'pipeline_unschedule clears it without pg_cron');
SELECT is((SELECT schedule FROM pipeline.status WHERE pipeline = 'to_other'), NULL, 'and it is gone');

-- an inferred dependency across owners: writing into another role's source
-- does not make a pipeline its upstream (issue 11, 11)
CREATE ROLE dag_victim;
CREATE ROLE dag_mallory;
CREATE SCHEMA dag_v AUTHORIZATION dag_victim;
CREATE SCHEMA dag_m AUTHORIZATION dag_mallory;
SET ROLE dag_victim;
CREATE TABLE dag_v.landing (id int, v int);
CREATE TABLE dag_v.clean (id int, v int);
GRANT USAGE ON SCHEMA dag_v TO dag_mallory;
GRANT SELECT, INSERT ON dag_v.landing TO dag_mallory;
SELECT pipeline_create('victim_load', 'dag_v.landing', 'dag_v.clean');
SET ROLE dag_mallory;
CREATE TABLE dag_m.junk (id int, v int);
INSERT INTO dag_m.junk VALUES (1, 0);
SELECT pipeline_create('mallory_feed', 'dag_m.junk', 'dag_v.landing',
                       transform => 'SELECT id, 1 / v AS v FROM batch');
RESET ROLE;
SELECT is((SELECT count(*) FROM pipeline.dependencies WHERE upstream = 'mallory_feed'), 0::bigint,
  'a pipeline that only writes into another owner''s source is not its upstream');
SELECT results_eq($$ SELECT pipeline, status FROM pipeline_run_all()
                     WHERE pipeline IN ('mallory_feed', 'victim_load') ORDER BY 1 $$,
  $$ VALUES ('mallory_feed', 'failed'), ('victim_load', 'succeeded') $$,
  'its failure does not make pipeline_run_all skip the other owner''s pipeline');
-- the owner of the source is an upstream's owner the downstream can trust
ALTER TABLE dag_v.landing OWNER TO dag_mallory;
SELECT is((SELECT count(*) FROM pipeline.dependencies WHERE upstream = 'mallory_feed' AND downstream = 'victim_load'),
  1::bigint, 'a pipeline whose owner owns the downstream''s source is inferred as its upstream');
SELECT pipeline_drop('mallory_feed');
SELECT pipeline_drop('victim_load');

-- a 10-layer DAG, three wide, each node after the whole previous layer:
-- the order is computed without walking its 3^10 paths (issue 15, 13)
CREATE TABLE layer_src (id int);
CREATE TABLE layer_dst (id int);
DO $$
BEGIN
    FOR layer IN 1..20 LOOP
        FOR i IN 1..3 LOOP
            PERFORM pipeline_create(format('layer_%s_%s', layer, i), 'layer_src', 'layer_dst',
                options => CASE WHEN layer = 1 THEN '{}'::jsonb ELSE jsonb_build_object('depends_on',
                    jsonb_build_array(format('layer_%s_1', layer - 1), format('layer_%s_2', layer - 1),
                                      format('layer_%s_3', layer - 1))) END);
        END LOOP;
    END LOOP;
END
$$;
SET LOCAL statement_timeout = '20s';  -- the path-walking order of 0.3 would need days here
SELECT results_eq($$ SELECT depth, count(*) FROM pipeline.run_order WHERE name LIKE 'layer\_%' GROUP BY 1 ORDER BY 1 $$,
  $$ SELECT d - 1, 3::bigint FROM generate_series(1, 20) d $$,
  'pipeline.run_order puts each of 20 layers of a dense DAG at its own depth');
SELECT is((SELECT array_agg(pipeline ORDER BY ordinality) FILTER (WHERE pipeline LIKE 'layer\_1\_%' OR pipeline LIKE 'layer\_2\_%')
           FROM pipeline_run_all() WITH ORDINALITY),
  ARRAY['layer_1_1', 'layer_1_2', 'layer_1_3', 'layer_2_1', 'layer_2_2', 'layer_2_3'],
  'pipeline_run_all runs them layer by layer');
SELECT is((SELECT count(*) FROM pipeline_run_all() WHERE pipeline LIKE 'layer\_%' AND status = 'succeeded'),
  60::bigint, 'all 60 of them');
SELECT throws_ok($$ SELECT pipeline_alter('layer_1_1', '{"depends_on": ["layer_20_1"]}') $$,
  '42P17', NULL, 'a cycle through all 20 layers is found without walking every path');
RESET statement_timeout;

SELECT * FROM finish();
ROLLBACK;
