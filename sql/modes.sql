-- Load modes: append, upsert (duplicates collapse inside a batch), replace.
CREATE EXTENSION pipeline;
\set VERBOSITY terse

CREATE TABLE changes (seq bigserial PRIMARY KEY, k int, v text);
CREATE TABLE latest (k int PRIMARY KEY, v text);

-- upsert: three versions of k=1 in one batch; the highest watermark wins,
-- instead of "ON CONFLICT DO UPDATE command cannot affect row a second time"
INSERT INTO changes (k, v) VALUES (1, 'a'), (2, 'b'), (1, 'c'), (1, 'd');
SELECT pipeline_create('latest', 'changes', 'latest', watermark => 'seq',
  mode => 'upsert', transform => 'SELECT seq, k, v FROM batch ORDER BY seq DESC');
SELECT rows_read, rows_loaded FROM pipeline_run('latest');
SELECT * FROM latest ORDER BY k;
INSERT INTO changes (k, v) VALUES (2, 'e'), (3, 'f'), (2, 'g');
SELECT rows_read, rows_loaded FROM pipeline_run('latest');
SELECT * FROM latest ORDER BY k;

-- upsert without the watermark in the output: the last row out wins
CREATE TABLE latest2 (k int PRIMARY KEY, v text);
SELECT pipeline_create('latest2', 'changes', 'latest2', watermark => 'seq',
  mode => 'upsert', transform => 'SELECT k, v FROM batch');
SELECT rows_read, rows_loaded FROM pipeline_run('latest2');
SELECT * FROM latest2 ORDER BY k;

-- upsert on a composite key given explicitly, with a unique index
CREATE TABLE pairs (a int, b int, n int, UNIQUE (a, b));
CREATE TABLE pair_src (id serial, a int, b int, n int);
INSERT INTO pair_src (a, b, n) VALUES (1, 1, 10), (1, 2, 20), (1, 1, 30);
SELECT pipeline_create('pairs', 'pair_src', 'pairs', watermark => 'id',
  mode => 'upsert', key => '{a,b}', transform => 'SELECT id, a, b, n FROM batch');
SELECT rows_read, rows_loaded FROM pipeline_run('pairs');
SELECT * FROM pairs ORDER BY a, b;

-- upsert where every column is key: DO NOTHING
CREATE TABLE seen (k int PRIMARY KEY);
SELECT pipeline_create('seen', 'changes', 'seen', watermark => 'seq',
  mode => 'upsert', transform => 'SELECT DISTINCT k FROM batch');
SELECT rows_loaded FROM pipeline_run('seen');
SELECT pipeline_reset('seen');
SELECT rows_loaded FROM pipeline_run('seen');
SELECT * FROM seen ORDER BY k;

-- replace: the target's whole content is swapped in one transaction
CREATE TABLE totals (k int, n bigint);
INSERT INTO totals VALUES (99, 99);
SELECT pipeline_create('totals', 'changes', 'totals', mode => 'replace',
  transform => 'SELECT k, count(*) AS n FROM batch GROUP BY k');
SELECT rows_read, rows_loaded FROM pipeline_run('totals');
SELECT * FROM totals ORDER BY k;
-- a failing replace keeps the old content
SELECT pipeline_alter('totals', '{"transform": "SELECT k, 1 / (k - 3) AS n FROM batch"}');
SELECT status, sqlstate FROM pipeline_run('totals');
SELECT * FROM totals ORDER BY k;

-- append into a table with defaults for the columns the transform leaves out
CREATE TABLE log (id bigint, v text, loaded_by text DEFAULT current_user);
SELECT pipeline_create('log', 'changes', 'log', watermark => 'seq',
  transform => 'SELECT seq AS id, v FROM batch');
SELECT rows_loaded FROM pipeline_run('log');
SELECT count(*), count(DISTINCT loaded_by) FROM log;

DROP EXTENSION pipeline;
DROP TABLE changes, latest, latest2, pairs, pair_src, seen, totals, log;
