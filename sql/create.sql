-- Creating pipelines: the catalog row, defaults, validation at create.
CREATE EXTENSION pipeline;
\set VERBOSITY terse

CREATE SCHEMA staging;
CREATE SCHEMA analytics;
CREATE TABLE staging.orders (
    order_id bigserial PRIMARY KEY, customer_id int, total numeric,
    status text, created_at timestamptz DEFAULT '2024-01-01 00:00:00+00');
CREATE TABLE analytics.fact_orders (
    order_id bigint PRIMARY KEY, customer_id int, total numeric,
    order_date date);

-- the design card's example, with named arguments
SELECT pipeline_create(
  name      => 'orders',
  source    => 'staging.orders',
  watermark => 'order_id',
  transform => $$ SELECT order_id, customer_id, total,
                         created_at::date AS order_date
                  FROM batch $$,
  target    => 'analytics.fact_orders',
  mode      => 'upsert', key => '{order_id}');

-- defaults: append, no transform, no watermark; upsert key from the primary key
SELECT pipeline_create('copy_all', 'staging.orders', 'analytics.fact_orders');
SELECT pipeline_create('by_pk', 'staging.orders', 'analytics.fact_orders',
                       mode => 'upsert', options => '{"batch_size": 500}');

SELECT name, owner, source, target, watermark, last_watermark, mode, key,
       batch_size, lag, enabled, search_path
FROM pipeline.pipelines ORDER BY name;

-- quoted and mixed-case names are resolved and stored as relations
CREATE TABLE "Mixed Case" ("Id" int, "Value" text);
CREATE TABLE mixed_target ("Id" int, "Value" text);
SELECT pipeline_create('mixed', '"Mixed Case"', 'mixed_target', watermark => 'Id');
SELECT source, watermark FROM pipeline.pipelines WHERE name = 'mixed';

-- bad definitions fail at create and leave nothing behind
SELECT pipeline_create('bad', 'staging.nope', 'analytics.fact_orders');
SELECT pipeline_create('bad', 'staging.orders', 'analytics.nope');
SELECT pipeline_create('bad', 'staging.orders', 'analytics.fact_orders',
                       transform => 'SELEC 1');
SELECT pipeline_create('bad', 'staging.orders', 'analytics.fact_orders',
                       transform => 'SELECT order_id, nope FROM batch');
SELECT pipeline_create('bad', 'staging.orders', 'analytics.fact_orders',
                       transform => 'SELECT order_id, 1 AS extra FROM batch');
SELECT pipeline_create('bad', 'staging.orders', 'analytics.fact_orders',
                       watermark => 'status');
SELECT pipeline_create('bad', 'staging.orders', 'analytics.fact_orders',
                       mode => 'merge');
SELECT pipeline_create('bad', 'staging.orders', 'analytics.fact_orders',
                       options => '{"batch_sise": 10}');
SELECT pipeline_create('bad', 'staging.orders', 'analytics.fact_orders',
                       options => '[1]');
SELECT pipeline_create('orders', 'staging.orders', 'analytics.fact_orders');
SELECT pipeline_create('bad', 'staging.orders', 'analytics.fact_orders',
                       transform => 'SELECT now() AS order_id FROM batch');
SELECT pipeline_create('bad', 'staging.orders', 'analytics.fact_orders',
                       mode => 'append', key => '{order_id}');
CREATE TABLE no_pk (order_id bigint, total numeric);
SELECT pipeline_create('bad', 'staging.orders', 'no_pk', mode => 'upsert');
SELECT pipeline_create('bad', 'staging.orders', 'no_pk', mode => 'upsert',
                       key => '{order_id}');
SELECT pipeline_create('bad', 'staging.orders', 'analytics.fact_orders',
                       mode => 'upsert', transform => 'SELECT total FROM batch');
SELECT pipeline_create('bad', 'staging.orders', 'analytics.fact_orders',
                       watermark => 'order_id', options => '{"lag": "1 hour"}');
SELECT pipeline_create('bad', 'staging.orders', 'staging.orders_order_id_seq');
SELECT count(*) AS left_behind FROM pipeline.pipelines WHERE name = 'bad';

-- alter, reset and drop
SELECT pipeline_alter('copy_all', '{"enabled": false, "batch_size": 10}');
SELECT enabled, batch_size FROM pipeline.pipelines WHERE name = 'copy_all';
SELECT pipeline_alter('copy_all', '{"mode": "upsert"}');
SELECT mode, key FROM pipeline.pipelines WHERE name = 'copy_all';
SELECT pipeline_alter('copy_all', '{"transform": "SELECT order_id FROM batch"}');
SELECT pipeline_alter('copy_all', '{"transform": "SELECT bogus FROM batch"}');
SELECT pipeline_alter('copy_all', '{"source": "x"}');
SELECT pipeline_reset('copy_all');
SELECT pipeline_reset('orders', '41');
SELECT last_watermark FROM pipeline.pipelines WHERE name = 'orders';
SELECT pipeline_reset('orders', 'not a number');
SELECT pipeline_drop('copy_all');
SELECT pipeline_drop('copy_all');
SELECT name FROM pipeline.pipelines ORDER BY name;

DROP EXTENSION pipeline;
DROP SCHEMA staging, analytics CASCADE;
DROP TABLE "Mixed Case", mixed_target, no_pk;
