-- Batches that lose no row: watermarks, lag, batch_size (issue 14, items 1-7).
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION pipeline;
SELECT plan(18);

CREATE TABLE d (id int);

-- 1. an empty source with a time lag is idle; the watermark does not move
CREATE TABLE s_time (id int, wm timestamptz);
SELECT pipeline_create('lag_time', 's_time', 'd', watermark => 'wm',
  options => '{"lag": "1 minute"}');
SELECT results_eq($$ SELECT status, watermark_to FROM pipeline_run('lag_time') $$,
  $$ VALUES ('skipped', NULL::text) $$, 'an empty source with a time lag: the run is idle');
INSERT INTO s_time VALUES (1, now() - interval '1 hour'), (2, now());
SELECT results_eq($$ SELECT status, rows_read FROM pipeline_run('lag_time') $$,
  $$ VALUES ('succeeded', 1::bigint) $$, 'a row older than the lag inserted later loads; the newer one waits');
SELECT is((SELECT last_watermark FROM pipeline.pipelines WHERE name = 'lag_time'),
  (SELECT wm::text FROM s_time WHERE id = 1), 'the watermark is the loaded row''s, never the clock''s');
SELECT results_eq($$ SELECT status FROM pipeline_run('lag_time') $$, $$ VALUES ('skipped') $$,
  'rows younger than the lag keep the next run idle');
-- what pipeline_drain does (it commits, so not in this test's transaction)
SELECT is((SELECT count(*) FROM generate_series(1, 20) g, pipeline_run('lag_time') r
           WHERE r.status <> 'skipped'), 0::bigint,
  'a drain ends: no run moves the watermark by the clock alone');

-- 2. a negative lag is refused
CREATE TABLE s_int (id int, wm int);
SELECT throws_ok($$ SELECT pipeline_create('neg', 's_int', 'd', watermark => 'wm', options => '{"lag": -5}') $$,
  '22023', NULL, 'a negative numeric lag: 22023');
SELECT throws_ok($$ SELECT pipeline_create('neg', 's_time', 'd', watermark => 'wm', options => '{"lag": "-1 minute"}') $$,
  '22023', NULL, 'a negative interval lag: 22023');
SELECT throws_ok($$ SELECT pipeline_create('neg', 's_int', 'd', watermark => 'wm', options => '{"lag": "NaN"}') $$,
  '22023', NULL, 'a NaN lag: 22023');

-- 7. a numeric lag holds back from the newest row; a fraction rounds down
INSERT INTO s_int SELECT g, g FROM generate_series(1, 10) g;
SELECT pipeline_create('lag_num', 's_int', 'd', watermark => 'wm', options => '{"lag": 1.5}');
SELECT results_eq($$ SELECT rows_read, watermark_to FROM pipeline_run('lag_num') $$,
  $$ VALUES (8::bigint, '8') $$, 'max 10, lag 1.5: rows up to 8');

-- 3. and 5. a NaN, infinite or NULL watermark fails the run instead of hiding rows
CREATE TABLE s_num (id int, wm numeric);
INSERT INTO s_num VALUES (1, 1), (2, 'NaN');
SELECT pipeline_create('nan', 's_num', 'd', watermark => 'wm');
SELECT results_eq($$ SELECT status, sqlstate FROM pipeline_run('nan') $$,
  $$ VALUES ('failed', '22000') $$, 'a NaN watermark fails the run: 22000');
SELECT is((SELECT last_watermark FROM pipeline.pipelines WHERE name = 'nan'), NULL,
  'and the watermark does not become NaN');
UPDATE s_num SET wm = 5 WHERE id = 2;
SELECT results_eq($$ SELECT status, rows_read FROM pipeline_run('nan') $$,
  $$ VALUES ('succeeded', 2::bigint) $$, 'once the row is fixed, both load');

INSERT INTO s_time VALUES (3, 'infinity');
SELECT results_eq($$ SELECT status, sqlstate FROM pipeline_run('lag_time') $$,
  $$ VALUES ('failed', '22000') $$, 'an infinite timestamp watermark fails the run: 22000');
DELETE FROM s_time WHERE id = 3;

CREATE TABLE s_null (id int, wm int);
INSERT INTO s_null VALUES (1, 1), (2, NULL);
SELECT pipeline_create('nulls', 's_null', 'd', watermark => 'wm');
SELECT results_eq($$ SELECT status, sqlstate, error FROM pipeline_run('nulls') $$,
  $$ VALUES ('failed', '22004', 'source of pipeline "nulls" has rows whose watermark "wm" is null') $$,
  'a NULL watermark fails the run: 22004, never a row skipped uncounted');
UPDATE s_null SET wm = 2 WHERE id = 2;
SELECT results_eq($$ SELECT status, rows_read FROM pipeline_run('nulls') $$,
  $$ VALUES ('succeeded', 2::bigint) $$, 'once it has a watermark, it loads');

-- 6. batch_size caps in the watermark's order, not its text's
CREATE TABLE s_many (id int, wm int);
INSERT INTO s_many SELECT g, g FROM generate_series(1, 20) g;
SELECT pipeline_create('capped', 's_many', 'd', watermark => 'wm', options => '{"batch_size": 3}');
SELECT results_eq($$ SELECT rows_read, watermark_to FROM pipeline_run('capped') $$,
  $$ VALUES (3::bigint, '3') $$, 'batch_size 3 of 20 rows: the first run reads 1 to 3');
SELECT results_eq($$ SELECT rows_read, watermark_from, watermark_to FROM pipeline_run('capped') $$,
  $$ VALUES (3::bigint, '3', '6') $$, 'the next one 4 to 6');
SELECT is((SELECT max(rows_read) FROM (SELECT (pipeline_run('capped')).rows_read FROM generate_series(1, 6)) r),
  3::bigint, 'no batch of the backlog exceeds 3 rows');

SELECT * FROM finish();
ROLLBACK;
