-- Incremental materialized views: what is refused and why, privileges,
-- the lifecycle of the view and its triggers, and refresh after a pipeline run.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION pipeline;
SELECT plan(46);

CREATE TABLE customers (id int PRIMARY KEY, region text);
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers,
                     total numeric, created_at timestamptz DEFAULT now());
CREATE TABLE nokey (a int, b int);
CREATE VIEW orders_view AS SELECT * FROM orders;
INSERT INTO customers VALUES (1, 'north'), (2, 'south');
INSERT INTO orders (customer_id, total) VALUES (1, 10), (1, 20), (2, 5);

-- refused at create, with 0A000 and what is unsupported
SELECT throws_ok($$ SELECT pipeline_create_matview('m', 'SELECT customer_id FROM orders UNION SELECT id FROM customers') $$,
  '0A000', 'materialized view "m" cannot be maintained incrementally: UNION, INTERSECT and EXCEPT are not supported',
  'UNION is refused');
SELECT throws_ok($$ SELECT pipeline_create_matview('m', 'SELECT customer_id, count(*) AS n FROM orders GROUP BY 1 LIMIT 3') $$,
  '0A000', NULL, 'LIMIT is refused');
SELECT throws_ok($$ SELECT pipeline_create_matview('m', 'SELECT id, rank() OVER (ORDER BY total) AS r FROM orders') $$,
  '0A000', NULL, 'window functions are refused');
SELECT throws_ok($$ SELECT pipeline_create_matview('m', 'SELECT customer_id, count(*) AS n FROM orders WHERE total > (SELECT 1) GROUP BY 1') $$,
  '0A000', 'materialized view "m" cannot be maintained incrementally: subqueries are not supported',
  'subqueries are refused');
SELECT throws_ok($$ SELECT pipeline_create_matview('m', 'SELECT c.region, count(o.id) AS n FROM customers c LEFT JOIN orders o ON o.customer_id = c.id GROUP BY 1') $$,
  '0A000', 'materialized view "m" cannot be maintained incrementally: outer joins are not supported',
  'outer joins are refused');
SELECT throws_ok($$ SELECT pipeline_create_matview('m', 'SELECT a.customer_id, count(*) AS n FROM orders a JOIN orders b ON a.id = b.id GROUP BY 1') $$,
  '0A000', 'materialized view "m" cannot be maintained incrementally: table "orders" appears twice (self-joins are not supported)',
  'self-joins are refused');
SELECT throws_ok($$ SELECT pipeline_create_matview('m', 'SELECT customer_id, count(*) AS n, random() AS r FROM orders GROUP BY 1') $$,
  '0A000', NULL, 'volatile functions are refused');
SELECT throws_ok($$ SELECT pipeline_create_matview('m', 'SELECT customer_id, count(*) AS n FROM orders WHERE created_at > now() - interval ''7 days'' GROUP BY 1') $$,
  '0A000', NULL, 'now() is refused: the view would go stale as time passes');
SELECT throws_ok($$ SELECT pipeline_create_matview('m', 'SELECT customer_id, count(*) AS n FROM orders WHERE created_at::date = CURRENT_DATE GROUP BY 1') $$,
  '0A000', NULL, 'so is CURRENT_DATE');
SELECT throws_ok($$ SELECT pipeline_create_matview('m', 'SELECT count(*) AS n FROM orders GROUP BY customer_id') $$,
  '0A000', 'materialized view "m" cannot be maintained incrementally: every GROUP BY expression must be in the select list',
  'a GROUP BY expression outside the select list is refused');
SELECT throws_ok($$ SELECT pipeline_create_matview('m', 'SELECT a, b FROM nokey') $$,
  '0A000', 'materialized view "m" cannot be maintained incrementally: table "nokey" has no primary key',
  'a select-project-join needs primary keys');
SELECT throws_ok($$ SELECT pipeline_create_matview('m', 'SELECT total FROM orders') $$,
  '0A000', 'materialized view "m" cannot be maintained incrementally: the select list lacks column "id" of the primary key of "orders"',
  '... in its select list');
SELECT throws_ok($$ SELECT pipeline_create_matview('m', 'SELECT customer_id, count(*) AS n FROM orders_view GROUP BY 1') $$,
  '0A000', 'materialized view "m" cannot be maintained incrementally: "orders_view" is a view',
  'views as sources are refused');
CREATE TABLE parted (id int, k int) PARTITION BY RANGE (id);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
CREATE TABLE parent_t (id int PRIMARY KEY, k int);
CREATE TABLE child_t () INHERITS (parent_t);
SELECT throws_ok($$ SELECT pipeline_create_matview('m', 'SELECT k, count(*) AS n FROM parted GROUP BY k') $$,
  '0A000', 'materialized view "m" cannot be maintained incrementally: "parted" is a partitioned table, whose partitions can be written directly',
  'partitioned tables are refused: a write into a partition would be missed');
SELECT throws_ok($$ SELECT pipeline_create_matview('m', 'SELECT k, count(*) AS n FROM parted_1 GROUP BY k') $$,
  '0A000', NULL, 'so are partitions');
SELECT throws_ok($$ SELECT pipeline_create_matview('m', 'SELECT k, count(*) AS n FROM ONLY parent_t GROUP BY k') $$,
  '0A000', NULL, 'and tables with inheritance children');
SELECT throws_ok($$ SELECT pipeline_create_matview('m', 'SELECT customer_id, count(*) + 1 FROM orders GROUP BY 1') $$,
  '0A000', 'materialized view "m" cannot be maintained incrementally: column 2 has no name',
  'unnamed columns are refused');
SELECT throws_ok($$ SELECT pipeline_create_matview('m', 'SELECT 1 AS a; SELECT 2 AS b') $$,
  '0A000', NULL, 'one statement only');
SELECT throws_ok($$ SELECT pipeline_create_matview('m', 'SELECT customer_id, count(*) AS n FROM orders GROUP BY 1', 'eager') $$,
  '22023', 'invalid refresh mode "eager" for materialized view "m"', 'refresh modes are checked');
SELECT throws_ok($$ SELECT pipeline_create_matview('m', 'SELECT customer_id, count(*) AS n FROM orders GROUP BY 1', options => '{"speed": 1}') $$,
  '22023', NULL, 'options are checked');
SELECT throws_ok($$ SELECT pipeline_create_matview('customers', 'SELECT customer_id, count(*) AS n FROM orders GROUP BY 1') $$,
  '42P07', 'relation "customers" already exists', 'an existing relation is not replaced');
SELECT throws_ok($$ SELECT pipeline_refresh('customers') $$,
  '42704', '"customers" is not an incremental materialized view', 'refresh needs a view');
SELECT throws_ok($$ SELECT pipeline_refresh('nothing_here') $$,
  '42P01', 'materialized view "nothing_here" does not exist', 'refresh of a missing view');
SELECT is((SELECT count(*) FROM pg_class WHERE relname = 'm'), 0::bigint, 'a refused view leaves nothing behind');

-- a schema-qualified view, what create leaves, and the lifecycle
CREATE SCHEMA marts;
SELECT lives_ok($$ SELECT pipeline_create_matview('marts.revenue', 'SELECT c.region, count(*) AS orders, sum(o.total) AS revenue FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.region') $$,
  'a join view in another schema');
SELECT results_eq($$ SELECT region, orders, revenue FROM marts.revenue ORDER BY region $$,
  $$ VALUES ('north', 2::bigint, 30::numeric), ('south', 1, 5) $$, 'it is filled at create');
SELECT is((SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pipeline_matview_%'), 8::bigint,
  'four statement triggers on each base table');
INSERT INTO orders (customer_id, total) VALUES (2, 100);
UPDATE customers SET region = 'east' WHERE id = 1;
SELECT is((SELECT pending_changes FROM pipeline.status WHERE pipeline = 'marts.revenue'), 4::bigint,
  'pipeline.status counts pending changes (group keys to recompute)');
SELECT is((SELECT state FROM pipeline.status WHERE pipeline = 'marts.revenue'), 'stale', '... and says stale');
SELECT results_eq($$ SELECT changes FROM pipeline_refresh('marts.revenue') $$, $$ VALUES (4::bigint) $$,
  'pipeline_refresh applies them');
SELECT results_eq($$ SELECT region, orders, revenue FROM marts.revenue ORDER BY region $$,
  $$ VALUES ('east', 2::bigint, 30::numeric), ('south', 2, 105) $$, 'a dimension change moves groups');
SELECT throws_ok($$ DROP TABLE orders $$, '2BP01', NULL, 'a base table cannot be dropped under the view');
SELECT throws_ok($$ ALTER TABLE orders DROP COLUMN total $$, '2BP01', NULL,
  'nor a column the view reads');
ALTER TABLE orders ADD COLUMN note text;
SELECT lives_ok($$ ALTER TABLE orders DROP COLUMN note $$, 'a column it does not read can go');

-- pipelines loading a base table refresh the deferred views over it
CREATE TABLE incoming (id serial PRIMARY KEY, customer_id int, total numeric);
SELECT pipeline_create('load_orders', 'incoming', 'orders', watermark => 'id',
                       transform => 'SELECT customer_id, total FROM batch');
INSERT INTO incoming (customer_id, total) VALUES (2, 1), (2, 2);
SELECT is((SELECT status FROM pipeline_run('load_orders')), 'succeeded', 'a pipeline loads orders');
SELECT results_eq($$ SELECT orders, revenue FROM marts.revenue WHERE region = 'south' $$,
  $$ VALUES (4::bigint, 108::numeric) $$, 'and the view over orders caught up in the same run');

-- privileges: another role neither sees nor touches the view
CREATE ROLE mv_intruder;
CREATE ROLE mv_writer;
GRANT INSERT, SELECT ON orders TO mv_writer;
GRANT USAGE ON SEQUENCE orders_id_seq TO mv_writer;
GRANT USAGE ON SCHEMA marts TO mv_intruder;
SET ROLE mv_intruder;
SELECT is((SELECT count(*) FROM pipeline.matviews), 0::bigint, 'another role does not see the view in the catalog');
SELECT is(pipeline_pending_changes('marts.revenue'), NULL, 'nor its pending changes');
SELECT throws_ok($$ SELECT pipeline_refresh('marts.revenue') $$, '42501', NULL, 'nor refreshes it');
SELECT throws_ok($$ SELECT pipeline_drop_matview('marts.revenue') $$, '42501', NULL, 'nor drops it');
RESET ROLE;
SET ROLE mv_writer;
INSERT INTO orders (customer_id, total) VALUES (1, 1);
RESET ROLE;
SELECT is((SELECT pending_changes FROM pipeline.status WHERE pipeline = 'marts.revenue'), 1::bigint,
  'a writer without any right on the view or its log is captured');

-- one-row INSERTs into an immediate single-table view merge without SQL:
-- new and existing groups, NULL arguments, rows the WHERE keeps out, NULL keys
CREATE TABLE readings (id serial PRIMARY KEY, sensor int, value int, ok boolean);
SELECT pipeline_create_matview('sensor_stats', 'SELECT sensor, count(*) AS n, count(value) AS n_value, sum(value) AS total, min(value) AS low, max(value) AS high FROM readings WHERE ok GROUP BY sensor', 'immediate');
INSERT INTO readings (sensor, value, ok) VALUES (1, 10, true);
INSERT INTO readings (sensor, value, ok) VALUES (1, 5, true);
INSERT INTO readings (sensor, value, ok) VALUES (1, NULL, true);
INSERT INTO readings (sensor, value, ok) VALUES (1, 50, false);
INSERT INTO readings (sensor, value, ok) VALUES (1, 12, true);
INSERT INTO readings (sensor, value, ok) VALUES (2, NULL, true);
INSERT INTO readings (sensor, value, ok) VALUES (2, 7, true);
INSERT INTO readings (sensor, value, ok) VALUES (NULL, 3, true);
INSERT INTO readings (sensor, value, ok) VALUES (NULL, 4, true);
SELECT results_eq('TABLE sensor_stats ORDER BY sensor',
  'SELECT sensor, count(*), count(value), sum(value), min(value), max(value) FROM readings WHERE ok GROUP BY sensor ORDER BY sensor',
  'one-row INSERTs into an immediate view give what the query gives');
SELECT pipeline_drop_matview('sensor_stats');

-- rows written with session_replication_role = replica (a logical
-- replication subscription's apply) are captured too
CREATE TABLE replicated (id int PRIMARY KEY, k int);
SELECT pipeline_create_matview('replicated_counts', 'SELECT k, count(*) AS n FROM replicated GROUP BY k', 'immediate');
SET session_replication_role = replica;
INSERT INTO replicated VALUES (1, 1), (2, 1);
RESET session_replication_role;
SELECT results_eq('TABLE replicated_counts', $$ VALUES (1, 2::bigint) $$,
  'changes applied in replica mode reach the view');
SELECT pipeline_drop_matview('replicated_counts');

-- drop removes the view, its triggers, its log and its catalog row
SELECT lives_ok($$ SELECT pipeline_drop_matview('marts.revenue') $$, 'drop');
SELECT is((SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pipeline_matview_%')
        + (SELECT count(*) FROM pg_class WHERE relname LIKE 'matview_log_%' OR relname = 'revenue')
        + (SELECT count(*) FROM pipeline.matviews), 0::bigint, 'nothing is left');

-- DROP TABLE on the view itself also cleans up
SELECT pipeline_create_matview('per_customer', 'SELECT customer_id, count(*) AS n FROM orders GROUP BY customer_id');
DROP TABLE per_customer;
SELECT is((SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pipeline_matview_%')
        + (SELECT count(*) FROM pipeline.matviews), 0::bigint, 'DROP TABLE of the view takes triggers and catalog row');

SELECT * FROM finish();
ROLLBACK;
