-- Incremental materialized views: the worked example of docs/matviews.md.
CREATE EXTENSION pipeline;
SET TimeZone = 'UTC';
CREATE TABLE customers (customer_id int PRIMARY KEY, name text, country text);
CREATE TABLE raw_orders (
    order_id    bigserial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customers,
    total       numeric(12,2) NOT NULL,
    status      text NOT NULL DEFAULT 'new',
    created_at  timestamptz NOT NULL DEFAULT now());
CREATE INDEX ON raw_orders (customer_id);
CREATE INDEX ON raw_orders (created_at);

SELECT pipeline_create_matview('mv_monthly_orders', $$
    SELECT date_trunc('month', created_at) AS month,
           count(*) AS order_count,
           sum(total) AS revenue,
           count(DISTINCT customer_id) AS unique_customers
    FROM raw_orders
    GROUP BY 1 $$);
SELECT pipeline_create_matview('int_order_metrics_base', $$
    SELECT o.customer_id,
           count(*) AS total_orders,
           sum(o.total) AS lifetime_value,
           min(o.created_at) AS first_order_date,
           max(o.created_at) AS last_order_date
    FROM raw_orders o
    GROUP BY o.customer_id $$);
CREATE VIEW int_order_metrics AS
SELECT c.*, m.total_orders, m.lifetime_value,
       round(m.lifetime_value / m.total_orders, 2) AS avg_order_value,
       m.first_order_date, m.last_order_date,
       m.last_order_date::date - m.first_order_date::date AS customer_tenure_days
FROM customers c
LEFT JOIN int_order_metrics_base m USING (customer_id);

-- what was derived from the queries
SELECT relation, refresh, algebraic, columns FROM pipeline.matviews ORDER BY id;

INSERT INTO customers VALUES (1, 'Ada', 'UK'), (2, 'Linus', 'FI');
INSERT INTO raw_orders (customer_id, total, created_at) VALUES
    (1, 120.00, '2026-10-03'), (1, 80.00, '2026-11-02'), (2, 35.50, '2026-11-20');
SELECT pipeline, state, pending_changes FROM pipeline.status WHERE kind = 'matview' ORDER BY 1;
SELECT * FROM pipeline_refresh('mv_monthly_orders');
SELECT * FROM mv_monthly_orders ORDER BY month;
SELECT * FROM pipeline_refresh('int_order_metrics_base');
SELECT name, total_orders, lifetime_value, avg_order_value, customer_tenure_days
FROM int_order_metrics ORDER BY name;

-- a refund moves no group; a deleted maximum is recomputed
UPDATE raw_orders SET total = 60.00 WHERE order_id = 2;
DELETE FROM raw_orders WHERE order_id = 1;
SELECT * FROM pipeline_refresh('int_order_metrics_base');
SELECT * FROM int_order_metrics_base ORDER BY customer_id;
SELECT * FROM pipeline_refresh('mv_monthly_orders');
SELECT * FROM mv_monthly_orders ORDER BY month;
-- nothing pending: a refresh is a no-op
SELECT * FROM pipeline_refresh('mv_monthly_orders');

DROP VIEW int_order_metrics;
SELECT pipeline_drop_matview('mv_monthly_orders');
SELECT pipeline_drop_matview('int_order_metrics_base');
DROP TABLE raw_orders, customers;
DROP EXTENSION pipeline;
