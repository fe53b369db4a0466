-- Running pipelines: incremental batches, idle runs, failures, replay.
CREATE EXTENSION pipeline;
\set VERBOSITY terse

CREATE TABLE src (id bigserial PRIMARY KEY, v int, note text);
CREATE TABLE dst (id bigint, v int, note text UNIQUE);
SELECT pipeline_create('p', 'src', 'dst', watermark => 'id');

-- empty source: skipped, no history
SELECT status, rows_read, rows_loaded, watermark_from, watermark_to FROM pipeline_run('p');
INSERT INTO src (v, note) SELECT g, 'n' || g FROM generate_series(1, 100) g;
SELECT run_id, status, rows_read, rows_loaded, watermark_from, watermark_to FROM pipeline_run('p');
SELECT status, rows_read FROM pipeline_run('p');
INSERT INTO src (v, note) SELECT g, 'm' || g FROM generate_series(101, 150) g;
SELECT run_id, status, rows_read, rows_loaded, watermark_from, watermark_to FROM pipeline_run('p');
SELECT count(*), count(DISTINCT id), min(id), max(id) FROM dst;
SELECT count(*) AS history_rows FROM pipeline.runs;

-- a failing run: rolled back, watermark kept, 'failed' row returned and recorded
-- (a unique index is not part of the contract: breaking it fails the run)
INSERT INTO src (v, note) VALUES (1, 'dup'), (5000, 'dup'), (2, NULL);
SELECT status, rows_loaded, error, sqlstate, watermark_from, watermark_to FROM pipeline_run('p');
SELECT last_watermark FROM pipeline.pipelines WHERE name = 'p';
SELECT count(*) FROM dst;
SELECT state, last_status, last_error FROM pipeline.status WHERE pipeline = 'p';
-- fix the data and run again: the batch loads exactly once
UPDATE src SET note = 'unique' WHERE v = 5000;
SELECT status, rows_read, rows_loaded, watermark_from, watermark_to FROM pipeline_run('p');
SELECT count(*), count(DISTINCT id) FROM dst;

-- the caller's transaction decides: rolled back, nothing happened
INSERT INTO src (v) VALUES (7);
BEGIN;
SELECT status, rows_loaded FROM pipeline_run('p');
ROLLBACK;
SELECT last_watermark, (SELECT count(*) FROM dst) AS dst_rows FROM pipeline.pipelines WHERE name = 'p';

-- REPEATABLE READ would read the batch blind to waited-for writers
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT status FROM pipeline_run('p');
ROLLBACK;

-- batch_size caps a run; pipeline_drain commits batch after batch
SELECT pipeline_alter('p', '{"batch_size": 2}');
SELECT status, rows_read, watermark_from, watermark_to FROM pipeline_run('p');
INSERT INTO src (v) SELECT g FROM generate_series(1, 9) g;
CALL pipeline_drain('p');
SELECT count(*), count(DISTINCT id), max(id) FROM dst;
SELECT rows_read, watermark_from, watermark_to FROM pipeline.runs
WHERE pipeline = 'p' ORDER BY run_id DESC LIMIT 5;

-- replay: reset the watermark and reprocess from a point
SELECT pipeline_alter('p', '{"batch_size": null}');
SELECT pipeline_reset('p', '150');
DELETE FROM dst WHERE id > 150;
SELECT status, rows_read, rows_loaded, watermark_from, watermark_to FROM pipeline_run('p');
SELECT count(*), count(DISTINCT id) FROM dst;

-- a disabled pipeline is skipped
SELECT pipeline_alter('p', '{"enabled": false}');
INSERT INTO src (v) VALUES (8);
SELECT status, rows_read FROM pipeline_run('p');
SELECT state FROM pipeline.status WHERE pipeline = 'p';

-- watermark types: numeric, date, timestamptz (ISO whatever the DateStyle)
CREATE TABLE events (seq numeric, day date, at timestamptz, v int);
CREATE TABLE events_out (seq numeric, day date, at timestamptz, v int);
INSERT INTO events VALUES (1.5, '2024-01-01', '2024-01-01 10:00+00', 1),
                          (2.5, '2024-01-02', '2024-01-02 10:00+00', 2);
SELECT pipeline_create('by_seq', 'events', 'events_out', watermark => 'seq');
SELECT pipeline_create('by_day', 'events', 'events_out', watermark => 'day');
SELECT pipeline_create('by_at', 'events', 'events_out', watermark => 'at');
SET DateStyle = 'SQL, DMY';
SET TimeZone = 'America/New_York';
SELECT pipeline, rows_read, watermark_to FROM pipeline_run('by_seq');
SELECT pipeline, rows_read, watermark_to FROM pipeline_run('by_day');
SELECT pipeline, rows_read, watermark_to FROM pipeline_run('by_at');
INSERT INTO events VALUES (3.5, '2024-01-03', '2024-01-03 10:00+00', 3);
SET DateStyle = 'ISO, MDY';
SET TimeZone = 'Asia/Tokyo';
SELECT pipeline, rows_read, watermark_from, watermark_to FROM pipeline_run('by_seq');
SELECT pipeline, rows_read, watermark_from, watermark_to FROM pipeline_run('by_day');
SELECT pipeline, rows_read, watermark_from, watermark_to FROM pipeline_run('by_at');
RESET DateStyle;
RESET TimeZone;

-- a lag holds the watermark back: rows newer than now() - lag wait
CREATE TABLE recent (at timestamptz, v int);
CREATE TABLE recent_out (at timestamptz, v int);
INSERT INTO recent VALUES (now() - interval '2 hours', 1), (now(), 2);
SELECT pipeline_create('lagged', 'recent', 'recent_out', watermark => 'at',
                       options => '{"lag": "1 hour"}');
SELECT rows_read, rows_loaded FROM pipeline_run('lagged');
SELECT v FROM recent_out;

-- text and jsonb landing tables load into typed targets
CREATE TABLE landing (id bigserial, doc jsonb, amount text, day text);
CREATE TABLE typed (id bigint, qty int, amount numeric(8,2), day date, tag text);
INSERT INTO landing (doc, amount, day) VALUES
  ('{"qty": 3, "tag": "a"}', '12.345', '2024-05-01'),
  ('{"qty": "4", "tag": "b"}', '7', '2024-05-02');
SELECT pipeline_create('typed', 'landing', 'typed', watermark => 'id',
  transform => $$ SELECT id, doc->'qty' AS qty, amount, day, doc->'tag' AS tag FROM batch $$);
SELECT status, rows_loaded FROM pipeline_run('typed');
SELECT * FROM typed ORDER BY id;
-- a value that does not convert breaks the rule "qty.type": quarantined
INSERT INTO landing (doc, amount, day) VALUES ('{"qty": "many"}', '1', '2024-05-03'),
  ('{"qty": 5}', '2', '2024-05-04');
SELECT status, rows_read, rows_loaded, rows_quarantined FROM pipeline_run('typed');
SELECT data, violations FROM pipeline.quarantine WHERE pipeline = 'typed';

-- partitioned source and a view as source
CREATE TABLE measurements (id bigint, region text, v int) PARTITION BY LIST (region);
CREATE TABLE measurements_eu PARTITION OF measurements FOR VALUES IN ('eu');
CREATE TABLE measurements_us PARTITION OF measurements FOR VALUES IN ('us');
CREATE TABLE measurements_out (id bigint, region text, v int);
INSERT INTO measurements VALUES (1, 'eu', 1), (2, 'us', 2), (3, 'eu', 3);
SELECT pipeline_create('parts', 'measurements', 'measurements_out', watermark => 'id');
SELECT rows_read, rows_loaded FROM pipeline_run('parts');
INSERT INTO measurements_us VALUES (4, 'us', 4);
SELECT rows_read, rows_loaded, watermark_to FROM pipeline_run('parts');
CREATE VIEW eu_measurements AS SELECT id, v FROM measurements WHERE region = 'eu';
CREATE TABLE eu_out (id bigint, v int);
SELECT pipeline_create('eu', 'eu_measurements', 'eu_out', watermark => 'id');
SELECT rows_read, rows_loaded FROM pipeline_run('eu');

-- a dropped source is a failed run, not a crash
CREATE TABLE gone (id int);
CREATE TABLE gone_out (id int);
SELECT pipeline_create('gone', 'gone', 'gone_out', watermark => 'id');
DROP TABLE gone;
SELECT status, sqlstate FROM pipeline_run('gone');

DROP EXTENSION pipeline;
DROP TABLE src, dst, events, events_out, recent, recent_out, landing, typed,
  measurements, measurements_out, eu_out, gone_out CASCADE;
