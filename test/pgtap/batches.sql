-- Batches that lose no row: watermarks, lag, batch_size (issue 14, items 1-7).
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION pipeline;
SELECT plan(29);

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
SELECT throws_ok($$ SELECT pipeline_reset('nan', 'NaN') $$, '22023', NULL,
  'pipeline_reset to NaN: 22023');
SELECT throws_ok($$ SELECT pipeline_reset('lag_time', 'infinity') $$, '22023', NULL,
  'pipeline_reset to infinity: 22023');
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

-- DateStyle and TimeZone are the creator's, pinned for every run
SET DateStyle = 'ISO, MDY';
SET TimeZone = 'UTC';
CREATE TABLE s_text (id int, day text, at text);
CREATE TABLE d_time (id int, day date, at timestamptz);
INSERT INTO s_text VALUES (1, '01/02/2024', '2024-01-01 00:00');
SELECT pipeline_create('dates', 's_text', 'd_time', watermark => 'id');
SET DateStyle = 'ISO, DMY';
SET TimeZone = 'America/New_York';
SELECT is((SELECT status FROM pipeline_run('dates')), 'succeeded', 'a run under another DateStyle and TimeZone');
SELECT results_eq($$ SELECT day, at FROM d_time $$,
  $$ VALUES ('2024-01-02'::date, '2024-01-01 00:00+00'::timestamptz) $$,
  'reads text as its creator would: January 2, midnight UTC');
SELECT results_eq($$ SELECT current_setting('DateStyle'), current_setting('TimeZone') $$,
  $$ VALUES ('ISO, DMY', 'America/New_York') $$, 'and leaves the caller''s settings as they were');

-- pipeline_reset reads its value as the caller's literal would be read
CREATE TABLE s_day (id int, day date);
SELECT pipeline_create('days', 's_day', 'd', watermark => 'day', transform => 'SELECT id FROM batch');
SELECT lives_ok($$ SELECT pipeline_reset('days', '13/01/2024') $$, 'pipeline_reset under DMY takes 13/01/2024');
SELECT is((SELECT last_watermark FROM pipeline.pipelines WHERE name = 'days'), '2024-01-13',
  'and stores it in ISO style');
RESET DateStyle;

-- a lag on a timestamp without time zone counts in the creator's TimeZone
SET TimeZone = 'America/Los_Angeles';
CREATE TABLE s_local (id int, wm timestamp);
INSERT INTO s_local VALUES (1, localtimestamp - interval '2 hours'), (2, localtimestamp);
SELECT pipeline_create('local', 's_local', 'd', watermark => 'wm', transform => 'SELECT id FROM batch',
  options => '{"lag": "1 hour"}');
SET TimeZone = 'UTC';
SELECT results_eq($$ SELECT rows_read FROM pipeline_run('local') $$, $$ VALUES (1::bigint) $$,
  'run in UTC, a row stamped now in Los Angeles is still younger than the lag');
RESET TimeZone;

-- replace: a batch whose every row is quarantined replaces the target with nothing
CREATE TABLE s_rep (id int, v text);
CREATE TABLE d_rep (id int, v int);
INSERT INTO s_rep VALUES (1, '1');
SELECT pipeline_create('rep', 's_rep', 'd_rep', mode => 'replace');
SELECT is((SELECT rows_loaded FROM pipeline_run('rep')), 1::bigint, 'replace loads the first batch');
UPDATE s_rep SET v = 'bad';
SELECT results_eq($$ SELECT rows_read, rows_loaded, rows_quarantined FROM pipeline_run('rep') $$,
  $$ VALUES (1::bigint, 0::bigint, 1::bigint) $$, 'replace with every row quarantined');
SELECT is((SELECT count(*) FROM d_rep), 0::bigint, 'empties the target (as documented)');

SELECT * FROM finish();
ROLLBACK;
