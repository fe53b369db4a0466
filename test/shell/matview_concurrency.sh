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

# A dimension change racing a fact insert (issue 13, item 7), made
# deterministic with advisory locks: a holder session keeps lock 1 until
# the flag table has a row, so a transaction blocked on it stays open.
qd() { q test "$PORT" "$DB" "$1"; }
qd "CREATE TABLE s_d1 (id int PRIMARY KEY, cat text); CREATE TABLE s_f (id int PRIMARY KEY, d1 int, n int);
    CREATE TABLE flag (x int); INSERT INTO s_d1 VALUES (1, 'x'), (2, 'y'); INSERT INTO s_f VALUES (1, 1, 10), (2, 1, 20), (3, 2, 5);
    SELECT pipeline_create_matview('race_sum', 'SELECT s_d1.cat, count(*) AS cnt, sum(s_f.n) AS s FROM s_f JOIN s_d1 ON s_d1.id = s_f.d1 GROUP BY s_d1.cat');
    SELECT pipeline_create_matview('race_avg', 'SELECT s_d1.cat, count(*) AS cnt, avg(s_f.n) AS a FROM s_f JOIN s_d1 ON s_d1.id = s_f.d1 GROUP BY s_d1.cat')" >/dev/null
race_query='SELECT s_d1.cat, count(*) AS cnt, sum(s_f.n) AS s FROM s_f JOIN s_d1 ON s_d1.id = s_f.d1 GROUP BY s_d1.cat'
race_avg='SELECT s_d1.cat, count(*) AS cnt, avg(s_f.n) AS a FROM s_f JOIN s_d1 ON s_d1.id = s_f.d1 GROUP BY s_d1.cat'
hold() {   # hold advisory lock 1 until flag has a row
  qd "DELETE FROM flag" >/dev/null
  qd "DO \$\$BEGIN PERFORM pg_advisory_lock(1); WHILE NOT EXISTS (SELECT FROM flag) LOOP PERFORM pg_sleep(0.05); END LOOP; END\$\$" >/dev/null &
  holder=$!
  until [ "$(qd "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 1 AND granted")" = 1 ]; do sleep 0.05; done
}
wait_for_advisory() {   # until a session waits for lock 1
  until [ "$(qd "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 1 AND NOT granted")" = 1 ]; do sleep 0.05; done
}
release() { qd "INSERT INTO flag VALUES (1)" >/dev/null; wait "$holder"; }
race_mismatches() {
  qd "SELECT pipeline_refresh('race_sum'), pipeline_refresh('race_avg')" >/dev/null
  echo "$(qd "SELECT count(*) FROM ((TABLE race_sum EXCEPT ALL $race_query) UNION ALL ($race_query EXCEPT ALL TABLE race_sum)) x") $(qd "SELECT count(*) FROM ((TABLE race_avg EXCEPT ALL $race_avg) UNION ALL ($race_avg EXCEPT ALL TABLE race_avg)) x")"
}

# A moves dimension 2 to 'z' and stays open; B inserts a fact of dimension 2
hold
qd "BEGIN; UPDATE s_d1 SET cat = 'z' WHERE id = 2; SELECT pg_advisory_lock(1); COMMIT" >/dev/null &
a=$!
wait_for_advisory
qd "INSERT INTO s_f VALUES (4, 2, 7)" >/dev/null &
b=$!
release; wait $a; wait $b
is "$(race_mismatches)" "0 0" "a fact inserted while its dimension moves to another group is counted there"
is "$(qd "SELECT cnt || '|' || s FROM race_sum WHERE cat = 'z'")" "2|12" "the issue's expected z|2|12"

# the other way round: B inserts and stays open, A moves the dimension
hold
qd "BEGIN; INSERT INTO s_f VALUES (5, 1, 3); SELECT pg_advisory_lock(1); COMMIT" >/dev/null &
b=$!
wait_for_advisory
qd "UPDATE s_d1 SET cat = 'w' WHERE id = 1" >/dev/null &
a=$!
release; wait $b; wait $a
is "$(race_mismatches)" "0 0" "a dimension moved while a fact of it is inserted takes the fact along"

# a REPEATABLE READ writer whose snapshot predates the dimension change
hold
qd "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM s_d1; SELECT pg_advisory_lock(1);
    INSERT INTO s_f VALUES (6, 2, 100); COMMIT" >/dev/null &
b=$!
wait_for_advisory
qd "UPDATE s_d1 SET cat = 'v' WHERE id = 2" >/dev/null
release; wait $b
is "$(race_mismatches)" "0 0" "a REPEATABLE READ writer's change is applied by a full recompute"

# Two writers of an immediate view, each locking a row the other wants
# next: the view's lock comes before the rows, so the second waits for the
# first instead of deadlocking with it (40P01).
qd "CREATE TABLE dl (id int PRIMARY KEY, g int, v int); INSERT INTO dl VALUES (1, 1, 1), (2, 2, 2);
    SELECT pipeline_create_matview('dl_now', 'SELECT g, count(*) AS n, sum(v) AS s FROM dl GROUP BY g', 'immediate')" >/dev/null
hold
qd "BEGIN; UPDATE dl SET v = v + 1 WHERE id = 1; SELECT pg_advisory_lock(1); UPDATE dl SET v = v + 1 WHERE id = 2; COMMIT" \
  >/dev/null 2>"$work/dl1.err" &
first=$!
wait_for_advisory
qd "BEGIN; UPDATE dl SET v = v + 10 WHERE id = 2; UPDATE dl SET v = v + 10 WHERE id = 1; COMMIT" >/dev/null 2>"$work/dl2.err" &
second=$!
until [ "$(qd "SELECT count(*) FROM pg_locks WHERE locktype = 'relation' AND relation = 'dl_now'::regclass AND NOT granted")" = 1 ]; do
  sleep 0.05
done
release; wait $first; rc1=$?; wait $second; rc2=$?
is "$rc1/$rc2 $(cat "$work"/dl?.err)" "0/0 " "crossing writers of an immediate view wait for each other, without a deadlock"
is "$(qd "SELECT string_agg(g || ':' || n || ':' || s, ',' ORDER BY g) FROM dl_now")" "1:1:12,2:1:13" "and both are applied"

cluster_psql test "$PORT" -q -c "DROP DATABASE $DB" 2>/dev/null
done_testing
