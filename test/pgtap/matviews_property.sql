-- Incremental materialized views equal their query, always: thousands of
-- random inserts, updates and deletes (NULL keys, rows moving between
-- groups, deleted minimums and maximums, dimension changes, TRUNCATE),
-- with a fixed seed. Deferred views are compared after every refresh,
-- immediate ones after every statement.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION pipeline;
SELECT plan(17);

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

-- Round two: statements that change a view more than once (writable CTEs
-- over several bases, cascading and SET NULL foreign keys, upserts, MERGE)
-- and time buckets over infinite and DST-crossing timestamps under several
-- zones (issue 13).
CREATE TABLE regions (id int PRIMARY KEY, name text);
CREATE TABLE shops (id int PRIMARY KEY, region_id int REFERENCES regions ON DELETE SET NULL ON UPDATE CASCADE,
                    kind text);
CREATE TABLE sales (id int PRIMARY KEY, shop_id int REFERENCES shops ON DELETE CASCADE ON UPDATE CASCADE,
                    amount int, at timestamptz);
CREATE INDEX ON sales (at);
INSERT INTO regions SELECT g, 'n' || g % 3 FROM generate_series(1, 6) g;
INSERT INTO shops SELECT g, CASE WHEN g % 5 = 0 THEN NULL ELSE 1 + g % 6 END, 'k' || g % 4
FROM generate_series(1, 20) g;

CREATE TABLE queries2 (view regclass, query text, zone text);
CREATE FUNCTION make_views2(name text, zone text, query text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('TimeZone', zone, true);
    PERFORM pipeline_create_matview(name || '_d', query);
    PERFORM pipeline_create_matview(name || '_i', query, 'immediate');
    INSERT INTO queries2 VALUES ((name || '_d')::regclass, query, zone), ((name || '_i')::regclass, query, zone);
    PERFORM set_config('TimeZone', 'UTC', true);
END $$;
SELECT make_views2('w_shop', 'UTC', 'SELECT shop_id, count(*) AS n, sum(amount) AS total, max(amount) AS biggest FROM sales GROUP BY shop_id');
SELECT make_views2('w_kind', 'UTC', 'SELECT s.kind, count(*) AS n, sum(x.amount) AS total, min(x.amount) AS smallest FROM sales x JOIN shops s ON s.id = x.shop_id GROUP BY s.kind');
SELECT make_views2('w_region', 'UTC', 'SELECT r.name, s.kind, count(*) AS n, avg(x.amount) AS mean FROM sales x JOIN shops s ON s.id = x.shop_id JOIN regions r ON r.id = s.region_id GROUP BY r.name, s.kind');
SELECT make_views2('w_day_scl', 'America/Santiago', $$SELECT date_trunc('day', at) AS day, count(*) AS n, sum(amount) AS total FROM sales GROUP BY 1$$);
SELECT make_views2('w_bin_ny', 'America/New_York', $$SELECT date_bin('1 day', at, '2026-01-01') AS day, count(*) AS n, avg(amount) AS mean FROM sales GROUP BY 1$$);
SELECT make_views2('w_week_ber', 'Europe/Berlin', $$SELECT date_trunc('week', at) AS week, s.kind, count(*) AS n, max(x.amount) AS biggest FROM sales x JOIN shops s ON s.id = x.shop_id GROUP BY 1, 2$$);

CREATE FUNCTION mismatches2(q queries2) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    PERFORM set_config('TimeZone', q.zone, true);
    EXECUTE format('SELECT count(*) FROM ((TABLE %s EXCEPT ALL %s) UNION ALL (%s EXCEPT ALL TABLE %s)) x',
                   q.view, q.query, q.query, q.view) INTO n;
    PERFORM set_config('TimeZone', 'UTC', true);
    RETURN n;
END $$;

-- around DST changes of the zones, and 5% infinite
CREATE FUNCTION random_at() RETURNS timestamptz LANGUAGE sql AS $$
    SELECT CASE WHEN random() < 0.03 THEN 'infinity'::timestamptz
                WHEN random() < 0.02 THEN '-infinity'::timestamptz
                WHEN random() < 0.03 THEN NULL
                ELSE (ARRAY['2026-03-08 07:00+00', '2026-11-01 06:00+00', '2026-09-06 04:00+00',
                            '2026-04-05 03:00+00', '2026-03-29 01:00+00'])[1 + floor(random() * 5)::int]::timestamptz
                     + (random() - 0.5) * interval '60 hours' END
$$;

UPDATE results SET checks = 0, bad = 0;
CREATE SEQUENCE merged_ids START 1000000;
CREATE FUNCTION random_change2(next_id int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    r float8 := random();
    n int := 1 + floor(random() * 8)::int;
    shop int := 1 + floor(random() * 24)::int;
    region int := 1 + floor(random() * 8)::int;
BEGIN
    IF r < 0.25 THEN
        INSERT INTO sales SELECT next_id + g, (SELECT id FROM shops WHERE id >= g * 0 + floor(random() * 30)
                                               ORDER BY id LIMIT 1),
                                 floor(random() * 100)::int, random_at()
        FROM generate_series(1, n) g WHERE true ON CONFLICT DO NOTHING;
        RETURN next_id + n;
    ELSIF r < 0.35 THEN   -- upserts, some of existing rows
        INSERT INTO sales SELECT id, shop_id, amount, random_at() FROM
            (SELECT DISTINCT ON (id) * FROM
                (SELECT next_id - floor(random() * 40)::int AS id, (SELECT min(id) FROM shops) AS shop_id,
                        floor(random() * 100)::int AS amount FROM generate_series(1, n)) c0) c
        WHERE c.shop_id IS NOT NULL
        ON CONFLICT (id) DO UPDATE SET amount = excluded.amount, at = excluded.at;
    ELSIF r < 0.42 THEN
        MERGE INTO sales t USING (SELECT DISTINCT ON (id) * FROM
                                      (SELECT next_id - floor(random() * 30)::int AS id, floor(random() * 100)::int AS amount
                                       FROM generate_series(1, n)) s0) s ON t.id = s.id
        WHEN MATCHED AND s.amount < 30 THEN DELETE
        WHEN MATCHED THEN UPDATE SET amount = s.amount, at = random_at()
        WHEN NOT MATCHED THEN INSERT VALUES (nextval('merged_ids'), (SELECT max(id) FROM shops), s.amount, random_at());
    ELSIF r < 0.5 THEN    -- a CTE deleting and re-inserting, moved in time
        WITH d AS (DELETE FROM sales WHERE id IN (SELECT id FROM sales ORDER BY random() LIMIT n) RETURNING *)
        INSERT INTO sales SELECT id, shop_id, amount + 1, random_at() FROM d;
    ELSIF r < 0.57 THEN   -- a CTE changing a dimension and its facts
        WITH u AS (UPDATE shops SET kind = 'k' || floor(random() * 5)::int WHERE id = shop RETURNING id)
        DELETE FROM sales WHERE shop_id IN (SELECT id FROM u) AND random() < 0.5;
    ELSIF r < 0.62 THEN   -- a CTE over three bases
        WITH u AS (UPDATE regions SET name = 'n' || floor(random() * 4)::int WHERE id = region RETURNING id),
             v AS (UPDATE shops SET region_id = (SELECT id FROM u) WHERE id = shop AND EXISTS (SELECT FROM u) RETURNING id)
        UPDATE sales SET amount = amount + 1 WHERE shop_id IN (SELECT id FROM v);
    ELSIF r < 0.67 THEN
        WITH i AS (INSERT INTO shops VALUES (100 + next_id, (SELECT min(id) FROM regions WHERE id >= region), 'k9')
                   ON CONFLICT DO NOTHING RETURNING id)
        INSERT INTO sales SELECT next_id + g, (SELECT id FROM i), g, random_at() FROM generate_series(1, n) g;
        RETURN next_id + n;
    ELSIF r < 0.72 THEN   -- ON DELETE CASCADE
        DELETE FROM shops WHERE id = shop;
    ELSIF r < 0.76 THEN   -- ON UPDATE CASCADE
        UPDATE shops SET id = id + 1000 WHERE id = shop AND NOT EXISTS (SELECT FROM shops WHERE id = shop + 1000);
    ELSIF r < 0.8 THEN    -- ON DELETE SET NULL
        DELETE FROM regions WHERE id = region;
    ELSIF r < 0.83 THEN   -- ON UPDATE CASCADE two levels down
        UPDATE regions SET id = id + 100 WHERE id = region AND NOT EXISTS (SELECT FROM regions WHERE id = region + 100);
    ELSIF r < 0.87 THEN
        INSERT INTO regions VALUES (region, 'n' || region % 3) ON CONFLICT (id) DO UPDATE SET name = 'n9';
        INSERT INTO shops VALUES (shop, region, 'k' || shop % 4) ON CONFLICT (id) DO UPDATE SET kind = excluded.kind;
    ELSIF r < 0.95 THEN   -- across DST changes, to and from infinity
        UPDATE sales SET at = CASE WHEN random() < 0.2 THEN 'infinity' ELSE at + (random() - 0.5) * interval '30 hours' END
        WHERE id IN (SELECT id FROM sales ORDER BY random() LIMIT n);
    ELSE
        DELETE FROM sales WHERE id IN (SELECT id FROM sales ORDER BY random() LIMIT n);
    END IF;
    RETURN next_id;
END $$;

CREATE FUNCTION check_views2(refreshed boolean) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE q queries2; mode text;
BEGIN
    FOR q IN SELECT * FROM queries2 LOOP
        mode := CASE WHEN q.view::text LIKE '%\_d' THEN 'deferred' ELSE 'immediate' END;
        CONTINUE WHEN mode = 'deferred' AND NOT refreshed;
        IF mode = 'deferred' THEN
            PERFORM pipeline_refresh(q.view::text);
        END IF;
        UPDATE results SET checks = checks + 1, bad = bad + mismatches2(q) WHERE kind = mode;
    END LOOP;
END $$;

DO $$
DECLARE next_id int := 0;
BEGIN
    PERFORM setseed(0.13);
    FOR i IN 1 .. 800 LOOP
        next_id := random_change2(next_id);
        PERFORM check_views2(i % 10 = 0);
    END LOOP;
END $$;

SELECT is((SELECT bad FROM results WHERE kind = 'deferred'), 0::bigint,
          'round two: deferred views equal their query after every refresh');
SELECT cmp_ok((SELECT checks FROM results WHERE kind = 'deferred'), '>=', 480,
              '... checked 80 times each');
SELECT is((SELECT bad FROM results WHERE kind = 'immediate'), 0::bigint,
          'round two: immediate views equal their query after every statement');
SELECT cmp_ok((SELECT checks FROM results WHERE kind = 'immediate'), '>=', 4800,
              '... checked 800 times each');
SELECT cmp_ok((SELECT count(*) FROM sales), '>', 100::bigint, 'the sales are not trivial');
SELECT cmp_ok((SELECT count(*) FROM sales WHERE NOT isfinite(at)), '>', 3::bigint, 'some are infinite');
SELECT cmp_ok((SELECT count(*) FROM w_region_d), '>', 3::bigint, 'the three-table view is not trivial');

SELECT * FROM finish();
ROLLBACK;
