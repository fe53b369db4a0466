-- The article's orders ETL, in SQL: raw orders and customers, to an
-- enriched, upserted fact table, to a monthly summary. Run by scripts/demo.sh.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset footer off
SET client_min_messages = warning;

\echo
\echo '== 1. Raw landing tables, filled by an upstream system'
CREATE EXTENSION pipeline;
CREATE SCHEMA raw;
CREATE SCHEMA analytics;

CREATE TABLE raw.customers (
    customer_id int PRIMARY KEY, name text, country text, segment text);
CREATE TABLE raw.orders (
    ingest_id   bigserial PRIMARY KEY,      -- arrival order: the watermark
    order_id    bigint, customer_id int, total numeric, status text,
    created_at  timestamptz);
CREATE TEMP TABLE orders_file (
    line bigserial,                         -- the file's line order
    order_id bigint, customer_id int, total numeric, status text,
    created_at timestamptz);

\copy raw.customers FROM 'data/customers.csv' WITH (FORMAT csv, HEADER)
\copy orders_file (order_id, customer_id, total, status, created_at) FROM 'data/orders.csv' WITH (FORMAT csv, HEADER)

-- the first 3,000 orders arrive
INSERT INTO raw.orders (order_id, customer_id, total, status, created_at)
SELECT order_id, customer_id, total, status, created_at
FROM orders_file WHERE line <= 3000 ORDER BY line;
SELECT (SELECT count(*) FROM raw.orders) AS raw_orders,
       (SELECT count(*) FROM raw.customers) AS customers;

\echo
\echo '== 2. Two pipelines: enrich + upsert into a fact table, then a monthly summary'
CREATE TABLE analytics.fact_orders (
    order_id bigint PRIMARY KEY, customer_id int, customer_name text,
    country text, total numeric(12,2), status text, order_date date);
CREATE TABLE analytics.monthly_orders (
    month date PRIMARY KEY, orders bigint, revenue numeric(14,2),
    customers bigint);

SELECT pipeline_create(
    name      => 'fact_orders',
    source    => 'raw.orders',
    watermark => 'ingest_id',
    transform => $$ SELECT o.ingest_id, o.order_id, o.customer_id,
                           c.name AS customer_name, c.country, o.total,
                           o.status, o.created_at::date AS order_date
                    FROM batch o LEFT JOIN raw.customers c USING (customer_id) $$,
    target    => 'analytics.fact_orders',
    mode      => 'upsert', key => '{order_id}');

SELECT pipeline_create(
    name      => 'monthly_orders',
    source    => 'analytics.fact_orders',
    transform => $$ SELECT date_trunc('month', order_date)::date AS month,
                           count(*) AS orders,
                           sum(total) FILTER (WHERE status <> 'cancelled') AS revenue,
                           count(DISTINCT customer_id) AS customers
                    FROM batch GROUP BY 1 $$,
    target    => 'analytics.monthly_orders',
    mode      => 'replace');

-- an incremental materialized view over the fact table (the dbt model
-- int_order_metrics): every run that loads fact_orders brings it up to date
-- by merging the changed customers, never by a full refresh
SELECT pipeline_create_matview('analytics.customer_value', $$
    SELECT customer_id, count(*) AS orders, sum(total) AS lifetime_value,
           max(order_date) AS last_order
    FROM analytics.fact_orders GROUP BY customer_id $$);

-- the article's OrderContract: bad rows go to pipeline.quarantine
SELECT pipeline_contract('fact_orders', $${
  "columns": {"order_id": {"not_null": true},
              "total":    {"min": 0},
              "status":   {"in": ["pending", "completed", "cancelled"]},
              "country":  {"not_null": true}}
}$$);

SELECT name, source, target, mode, watermark FROM pipeline.pipelines ORDER BY created_at;
\echo 'the DAG (monthly_orders reads what fact_orders writes):'
SELECT * FROM pipeline.dependencies;

\echo
\echo '== 3. Run the DAG, upstream first'
SELECT pipeline, status, rows_read, rows_loaded, rows_quarantined, watermark_to
FROM pipeline_run_all();
SELECT * FROM analytics.monthly_orders ORDER BY month LIMIT 4;

\echo
\echo '== 4. The rest arrives, with 200 late corrections of earlier orders'
INSERT INTO raw.orders (order_id, customer_id, total, status, created_at)
SELECT order_id, customer_id, total, status, created_at
FROM orders_file WHERE line > 3000 ORDER BY line;
\echo '... and the feed sends three broken rows:'
INSERT INTO raw.orders (order_id, customer_id, total, status, created_at) VALUES
  (9001, 12, -15.00, 'completed', '2024-12-30 10:00+00'),   -- negative total
  (9002, 40, 80.00, 'shipped', '2024-12-30 11:00+00'),      -- unknown status
  (9003, 999, 25.00, 'pending', '2024-12-30 12:00+00');     -- unknown customer
\echo 'each run reads only the new rows; corrections upsert in place; bad rows are quarantined:'
SELECT pipeline, status, rows_read, rows_loaded, rows_quarantined, rule_failures
FROM pipeline_run_all();
SELECT count(*) AS fact_rows,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled
FROM analytics.fact_orders;
\echo 'the incremental view followed the runs (top customers, and its difference from a full recompute):'
SELECT * FROM analytics.customer_value ORDER BY lifetime_value DESC, customer_id LIMIT 3;
SELECT count(*) AS rows_differing_from_full_recompute FROM (
  (TABLE analytics.customer_value EXCEPT ALL
   SELECT customer_id, count(*), sum(total), max(order_date) FROM analytics.fact_orders GROUP BY 1)
  UNION ALL
  (SELECT customer_id, count(*), sum(total), max(order_date) FROM analytics.fact_orders GROUP BY 1
   EXCEPT ALL TABLE analytics.customer_value)) d;

\echo
\echo '== 5. The quarantine: every bad row, with every rule it broke'
SELECT id, data ->> 'order_id' AS order_id, data ->> 'status' AS status,
       data ->> 'total' AS total, violations
FROM pipeline.quarantine ORDER BY id;
\echo '"shipped" is a valid status after all: fix the contract and replay'
SELECT pipeline_contract('fact_orders', $${
  "columns": {"order_id": {"not_null": true},
              "total":    {"min": 0},
              "status":   {"in": ["pending", "shipped", "completed", "cancelled"]},
              "country":  {"not_null": true}}
}$$);
SELECT * FROM pipeline_replay('fact_orders');
SELECT data ->> 'order_id' AS still_quarantined, violations
FROM pipeline.quarantine WHERE replayed_at IS NULL ORDER BY id;

\echo
\echo '== 6. Nothing new: the run is skipped and leaves no history row'
SELECT pipeline, status, rows_read FROM pipeline_run('fact_orders');

\echo
\echo '== 7. Administration from psql'
SELECT pipeline, kind, state, watermark, last_status, last_rows_loaded, pending_changes FROM pipeline.status;
SELECT run_id, pipeline, trigger, status, rows_read, rows_loaded, rows_quarantined,
       watermark_from, watermark_to
FROM pipeline.runs ORDER BY run_id;
SELECT * FROM analytics.monthly_orders ORDER BY month DESC LIMIT 3;
