#!/usr/bin/env bash
# Incremental views under concurrency: pgbench writers insert, move and
# delete rows (committing late, with sleeps inside their transactions)
# while other sessions refresh the deferred views in a loop and immediate
# views are maintained by the writers themselves. At the end every view
# equals its query: no change-log row was lost or applied twice.
source "$(dirname "$0")/../tap.sh"
DB=pipeline_matview_concurrency
work=$(mktemp -d)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT

cluster_psql test "$PORT" -q -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" 2>/dev/null
cluster_psql test "$PORT" -d "$DB" -q >/dev/null <<'SQL'
CREATE EXTENSION pipeline;
CREATE TABLE customers (id int PRIMARY KEY, region text);
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int, total int,
                     created_at timestamptz DEFAULT clock_timestamp());
CREATE INDEX ON orders (customer_id);
-- insert-only: its view only ever takes the algebraic path, which no
-- later recompute would heal
CREATE TABLE events (id bigserial PRIMARY KEY, k int, v int);
INSERT INTO customers SELECT g, 'r' || g % 5 FROM generate_series(1, 50) g;
INSERT INTO orders (customer_id, total) SELECT g % 50 + 1, g % 97 FROM generate_series(1, 5000) g;
CREATE TABLE queries (view text, query text);
INSERT INTO queries VALUES
  ('per_key', 'SELECT k, count(*) AS n, sum(v) AS total FROM events GROUP BY k'),
  ('per_customer', 'SELECT customer_id, count(*) AS n, sum(total) AS revenue, max(total) AS biggest FROM orders GROUP BY customer_id'),
  ('per_region', 'SELECT c.region, count(*) AS n, avg(o.total) AS mean, count(DISTINCT o.customer_id) AS buyers FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.region'),
  ('per_minute', $$SELECT date_trunc('minute', created_at) AS minute, count(*) AS n, sum(total) AS revenue FROM orders GROUP BY 1$$),
  ('now_customer', 'SELECT customer_id, count(*) AS n, sum(total) AS revenue FROM orders GROUP BY customer_id'),
  ('now_region', 'SELECT c.region, count(*) AS n, min(o.total) AS smallest FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.region');
SELECT pipeline_create_matview(view, query, CASE WHEN view LIKE 'now%' THEN 'immediate' ELSE 'deferred' END)
FROM queries;
SQL

cat > "$work/writer.sql" <<'SQL'
\set c random(1, 60)
\set d random(1, 60)
BEGIN;
INSERT INTO orders (customer_id, total) SELECT :c, g FROM generate_series(1, 5) g;
SELECT pg_sleep(random() * 0.02);
INSERT INTO events (k, v) SELECT :c % 10, g FROM generate_series(1, 3) g;
UPDATE orders SET customer_id = :d WHERE id = (SELECT max(id) - 7 FROM orders);
DELETE FROM orders WHERE id = (SELECT min(id) FROM orders WHERE customer_id = :d);
COMMIT;
SQL
cat > "$work/dimension.sql" <<'SQL'
\set c random(1, 50)
UPDATE customers SET region = 'r' || (random() * 6)::int WHERE id = :c;
SQL
cat > "$work/refresher.sql" <<'SQL'
SELECT pipeline_refresh('per_key');
SELECT pipeline_refresh('per_customer');
SELECT pipeline_refresh('per_region');
SELECT pipeline_refresh('per_minute');
SQL

export PGHOST="$WORK_BASE/test" PGPORT=$PORT PGUSER=postgres
"$PG_BIN/pgbench" -n -c 4 -j 2 -T 8 -f "$work/writer.sql" "$DB" >"$work/writers.log" 2>&1 &
writers=$!
"$PG_BIN/pgbench" -n -c 1 -j 1 -T 8 -f "$work/dimension.sql" "$DB" >"$work/dimension.log" 2>&1 &
dimension=$!
"$PG_BIN/pgbench" -n -c 2 -j 1 -T 8 -f "$work/refresher.sql" "$DB" >"$work/refreshers.log" 2>&1 &
refreshers=$!
wait $writers; wrc=$?
wait $dimension; drc=$?
wait $refreshers; rrc=$?
is "$wrc/$drc/$rrc" "0/0/0" "pgbench writers, dimension updates and refreshers finished without errors"
[ "$wrc/$drc/$rrc" = "0/0/0" ] || tail -5 "$work"/*.log >&2

tx=$(grep -o 'number of transactions actually processed: [0-9]*' "$work/writers.log" | grep -o '[0-9]*$')
ok $([ "${tx:-0}" -gt 100 ]; echo $?) "the writers committed a real load (${tx:-0} transactions)"
refreshes=$(grep -o 'number of transactions actually processed: [0-9]*' "$work/refreshers.log" | grep -o '[0-9]*$')
ok $([ "${refreshes:-0}" -gt 20 ]; echo $?) "refreshes interleaved with them (${refreshes:-0} rounds)"

q test "$PORT" "$DB" "SELECT pipeline_refresh(view) FROM queries WHERE view NOT LIKE 'now%'" >/dev/null
for view in per_key per_customer per_region per_minute now_customer now_region; do
  query=$(q test "$PORT" "$DB" "SELECT query FROM queries WHERE view = '$view'")
  is "$(q test "$PORT" "$DB" "SELECT count(*) FROM ((TABLE $view EXCEPT ALL $query) UNION ALL ($query EXCEPT ALL TABLE $view)) x")" 0 \
    "$view equals its query"
done
is "$(q test "$PORT" "$DB" "SELECT sum(pipeline_pending_changes(relation)) FROM pipeline.matviews")" 0 "the change log is empty after the last refresh"

cluster_psql test "$PORT" -q -c "DROP DATABASE $DB" 2>/dev/null
done_testing
