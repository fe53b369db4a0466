-- The batch predicate reaches the source's index: a run reads only the rows
-- above the watermark.
CREATE EXTENSION pipeline;

CREATE TABLE big (id bigserial PRIMARY KEY, payload text);
INSERT INTO big (payload) SELECT 'row ' || g FROM generate_series(1, 20000) g;
CREATE TABLE big_out (id bigint, payload text);
ANALYZE big;
SELECT pipeline_create('big', 'big', 'big_out', watermark => 'id',
  transform => 'SELECT id, upper(payload) AS payload FROM batch');
SELECT rows_read FROM pipeline_run('big');
INSERT INTO big (payload) SELECT 'new ' || g FROM generate_series(1, 10) g;

-- the statement a run executes, and its plan
SELECT * FROM pipeline_explain('big');
SELECT * FROM pipeline_explain('big', plan => true);
SELECT rows_read, watermark_from, watermark_to FROM pipeline_run('big');

DROP EXTENSION pipeline;
DROP TABLE big, big_out;
