-- Incremental materialized views equal their query, always: thousands of
-- random inserts, updates and deletes (NULL keys, rows moving between
-- groups, deleted minimums and maximums, dimension changes, TRUNCATE),
-- with a fixed seed. Deferred views are compared after every refresh,
-- immediate ones after every statement.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION pipeline;
SELECT plan(10);

CREATE TABLE customers (id int PRIMARY KEY, region text);
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, total int, status text,
                     created_at timestamptz);
CREATE INDEX ON orders (customer_id);
CREATE INDEX ON orders (created_at);
INSERT INTO customers SELECT g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'r' || g % 4 END
FROM generate_series(1, 30) g;

-- the queries, and views of them in both modes
CREATE TABLE queries (view regclass, query text);
CREATE FUNCTION make_view(name text, query text, refresh text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pipeline_create_matview(name, query, refresh);
    INSERT INTO queries VALUES (name::regclass, query);
END $$;

SET TimeZone = 'America/New_York';  -- recorded: month buckets are New York months
SELECT make_view('v_customer', 'SELECT customer_id, count(*) AS n, count(total) AS n_total, sum(total) AS revenue, min(total) AS smallest, max(total) AS biggest FROM orders GROUP BY customer_id', 'deferred');
SELECT make_view('v_region', $$SELECT c.region, o.status, count(*) AS n, sum(o.total) AS revenue, avg(o.total) AS mean, count(DISTINCT o.customer_id) AS buyers FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.total IS DISTINCT FROM 13 GROUP BY c.region, o.status HAVING count(*) > 1$$, 'deferred');
SELECT make_view('v_month', $$SELECT date_trunc('month', created_at) AS month, status, count(*) AS n, sum(total) AS revenue, count(DISTINCT customer_id) AS buyers FROM orders GROUP BY 1, 2$$, 'deferred');
SELECT make_view('v_bin', $$SELECT date_bin('6 hours', created_at, '2026-01-01') AS slot, count(*) AS n, sum(total) AS revenue FROM orders GROUP BY 1$$, 'deferred');
SELECT make_view('v_joined', 'SELECT o.id, o.total, c.id AS cid, c.region FROM orders o JOIN customers c ON c.id = o.customer_id', 'deferred');
SELECT make_view('v_total', 'SELECT count(*) AS n, sum(total) AS revenue FROM orders', 'deferred');
SELECT make_view('v_now', 'SELECT customer_id, count(*) AS n, sum(total) AS revenue, max(total) AS biggest FROM orders GROUP BY customer_id', 'immediate');
SELECT make_view('v_now_region', 'SELECT c.region, count(*) AS n, min(o.total) AS smallest FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.region', 'immediate');
SET TimeZone = 'UTC';

SELECT is((SELECT array_agg(view::text ORDER BY view::text) FROM queries q
           JOIN pipeline.matviews m ON m.relation = q.view WHERE m.algebraic),
          '{v_bin,v_customer,v_now,v_now_region}'::text[], 'count/sum/min/max views take the algebraic path');

-- rows that differ between a view and its query, both ways (multisets)
CREATE FUNCTION mismatches(view regclass, query text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    SET LOCAL TimeZone = 'America/New_York';
    EXECUTE format('SELECT count(*) FROM ((TABLE %s EXCEPT ALL %s) UNION ALL (%s EXCEPT ALL TABLE %s)) x',
                   view, query, query, view) INTO n;
    SET LOCAL TimeZone = 'UTC';
    RETURN n;
END $$;

CREATE TABLE results (kind text, checks int DEFAULT 0, bad bigint DEFAULT 0);
INSERT INTO results VALUES ('deferred'), ('immediate');

CREATE FUNCTION random_change(next_id int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    r float8 := random();
    n int := 1 + floor(random() * 20)::int;
    cust int := CASE WHEN random() < 0.1 THEN NULL ELSE 1 + floor(random() * 32)::int END;
BEGIN
    IF r < 0.35 THEN
        INSERT INTO orders
        SELECT next_id + g,
               CASE WHEN random() < 0.1 THEN NULL ELSE 1 + floor(random() * 32)::int END,
               CASE WHEN random() < 0.1 THEN NULL ELSE floor(random() * 100)::int END,
               (ARRAY['new', 'paid', 'void'])[1 + floor(random() * 3)::int],
               CASE WHEN random() < 0.05 THEN NULL
                    ELSE '2026-01-01'::timestamptz + random() * interval '400 days' END
        FROM generate_series(1, n) g;
        RETURN next_id + n;
    ELSIF r < 0.5 THEN   -- move rows between groups
        UPDATE orders SET customer_id = cust,
                          created_at = created_at + random() * interval '40 days'
        WHERE id IN (SELECT id FROM orders ORDER BY random() LIMIT n);
    ELSIF r < 0.6 THEN
        UPDATE orders SET total = CASE WHEN random() < 0.2 THEN NULL ELSE floor(random() * 100)::int END
        WHERE customer_id IS NOT DISTINCT FROM cust;
    ELSIF r < 0.72 THEN
        DELETE FROM orders WHERE id IN (SELECT id FROM orders ORDER BY random() LIMIT n);
    ELSIF r < 0.8 THEN   -- the biggest and smallest of a group
        DELETE FROM orders o WHERE o.customer_id IS NOT DISTINCT FROM cust
          AND (o.total = (SELECT max(total) FROM orders WHERE customer_id IS NOT DISTINCT FROM cust)
            OR o.total = (SELECT min(total) FROM orders WHERE customer_id IS NOT DISTINCT FROM cust));
    ELSIF r < 0.9 THEN   -- dimension changes
        UPDATE customers SET region = CASE WHEN random() < 0.15 THEN NULL
                                           ELSE 'r' || floor(random() * 5)::int END
        WHERE id = cust;
    ELSIF r < 0.95 THEN
        INSERT INTO customers VALUES (coalesce(cust, 31), 'r9') ON CONFLICT (id) DO NOTHING;
    ELSIF r < 0.999 THEN
        DELETE FROM customers WHERE id = cust;
    ELSE
        TRUNCATE orders;
    END IF;
    RETURN next_id;
END $$;

CREATE FUNCTION check_views(refreshed boolean) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE q record;
BEGIN
    FOR q IN SELECT v.view, v.query, m.refresh FROM queries v
             JOIN pipeline.matviews m ON m.relation = v.view
             WHERE refreshed OR m.refresh = 'immediate'
    LOOP
        IF q.refresh = 'deferred' THEN
            PERFORM pipeline_refresh(q.view::text);
        END IF;
        UPDATE results SET checks = checks + 1, bad = bad + mismatches(q.view, q.query)
        WHERE kind = q.refresh;
    END LOOP;
END $$;

DO $$
DECLARE next_id int := 0;
BEGIN
    PERFORM setseed(0.42);
    FOR i IN 1 .. 3000 LOOP
        next_id := random_change(next_id);
        PERFORM check_views(i % 25 = 0);
    END LOOP;
END $$;

SELECT is((SELECT bad FROM results WHERE kind = 'deferred'), 0::bigint,
          'deferred views equal their query after every refresh');
SELECT cmp_ok((SELECT checks FROM results WHERE kind = 'deferred'), '>=', 720,
              '... checked 120 times each');
SELECT is((SELECT bad FROM results WHERE kind = 'immediate'), 0::bigint,
          'immediate views equal their query after every statement');
SELECT cmp_ok((SELECT checks FROM results WHERE kind = 'immediate'), '>=', 6000,
              '... checked 3000 times each');
SELECT cmp_ok((SELECT count(*) FROM orders), '>', 100::bigint, 'the data is not trivial');
SELECT cmp_ok((SELECT count(*) FROM v_region), '>', 3::bigint, 'nor is the join view');
SELECT cmp_ok((SELECT count(*) FROM v_customer WHERE customer_id IS NULL), '=', 1::bigint,
              'the NULL group is a group');
SELECT is((SELECT sum(pending_changes) FROM pipeline.status WHERE kind = 'matview'), 0::numeric,
          'nothing pending after the last refresh');

-- month buckets follow the TimeZone recorded at create, not the session's
INSERT INTO orders VALUES (1000000, 1, 5, 'new', '2026-02-01 02:00:00+00');  -- January in New York
SELECT pipeline_refresh('v_month');
SELECT is(mismatches('v_month', (SELECT query FROM queries WHERE view = 'v_month'::regclass)), 0::bigint,
          'a bucket on timestamptz uses the recorded TimeZone');

SELECT * FROM finish();
ROLLBACK;
