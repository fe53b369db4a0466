#!/usr/bin/env bash
# Benchmark of incremental materialized views, side by side in one run on a
# throwaway cluster. orders: 1,000,000 rows, 10,000 customers, 2 years;
# each repetition brings a new batch of 10,000 orders in the latest month.
#   per-customer view (customer_id, count(*), sum(total)):
#     - REFRESH MATERIALIZED VIEW of a plain matview
#     - the hand-written delta: INSERT ... SELECT ... GROUP BY ... ON CONFLICT
#     - pipeline_refresh of the deferred view after the batch
#   monthly view (date_trunc('month', created_at), status, count(*),
#   sum(total), count(DISTINCT customer_id)):
#     - REFRESH MATERIALIZED VIEW vs pipeline_refresh after the batch
#   writes:
#     - the 10,000-row INSERT into a table without views, with the deferred
#       view's capture triggers, with an immediate view
#     - 1,000 single-row INSERT statements, without views and with an
#       immediate view: in one PL/pgSQL loop, and from a client (pgbench)
# Usage: bench/matviews.sh [REPS]  (default 7). Writes bench/results/matviews.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
REPS=${1:-7}
BENCH_DB=bench
bench_cluster benchm "${PORT:-55462}" "autovacuum = off
shared_buffers = 2GB"
cluster_psql benchm "$BENCH_PORT" -q -c "CREATE DATABASE $BENCH_DB"

log "loading 4 x 1,000,000 orders"
bq -c "$BENCH_TIMER_SQL" >/dev/null
bq >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION pipeline;
SELECT setseed(0.42);
CREATE TABLE o_plain (id bigint PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL,
                      total numeric(10,2) NOT NULL, created_at timestamptz NOT NULL);
INSERT INTO o_plain
SELECT g, 1 + (random() * 9999)::int, (ARRAY['new', 'paid', 'shipped', 'cancelled'])[1 + g % 4],
       round((random() * 500)::numeric, 2),
       '2024-11-25'::timestamptz + (g / 1000000.0) * interval '730 days'
FROM generate_series(1, 1000000) g;
CREATE INDEX ON o_plain (customer_id);
CREATE INDEX ON o_plain (created_at);
CREATE TABLE o_cust (LIKE o_plain INCLUDING ALL);
CREATE TABLE o_month (LIKE o_plain INCLUDING ALL);
CREATE TABLE o_imm (LIKE o_plain INCLUDING ALL);
INSERT INTO o_cust SELECT * FROM o_plain;
INSERT INTO o_month SELECT * FROM o_plain;
INSERT INTO o_imm SELECT * FROM o_plain;

-- the baselines
CREATE MATERIALIZED VIEW mat_cust AS
  SELECT customer_id, count(*) AS orders, sum(total) AS revenue FROM o_plain GROUP BY customer_id;
CREATE MATERIALIZED VIEW mat_month AS
  SELECT date_trunc('month', created_at) AS month, status, count(*) AS orders, sum(total) AS revenue,
         count(DISTINCT customer_id) AS customers FROM o_month GROUP BY 1, 2;
CREATE TABLE hand_cust (customer_id int PRIMARY KEY, orders bigint, revenue numeric);
INSERT INTO hand_cust SELECT customer_id, count(*), sum(total) FROM o_plain GROUP BY customer_id;

-- the incremental views
SELECT pipeline_create_matview('mv_cust',
  'SELECT customer_id, count(*) AS orders, sum(total) AS revenue FROM o_cust GROUP BY customer_id');
SELECT pipeline_create_matview('mv_month',
  $$SELECT date_trunc('month', created_at) AS month, status, count(*) AS orders, sum(total) AS revenue,
           count(DISTINCT customer_id) AS customers FROM o_month GROUP BY 1, 2$$);
SELECT pipeline_create_matview('mv_imm',
  'SELECT customer_id, count(*) AS orders, sum(total) AS revenue FROM o_imm GROUP BY customer_id',
  'immediate');

CREATE TABLE batch (LIKE o_plain);
CREATE SEQUENCE batch_ids START 2000001;
VACUUM ANALYZE;
CHECKPOINT;
SQL

t() { echo "INSERT INTO timings SELECT '$1', '$2', bench_ms(\$q\$$3\$q\$);"; }
singles() {
  echo "DO \$d\$ BEGIN FOR i IN 1 .. 1000 LOOP INSERT INTO $1 VALUES (nextval('batch_ids'), 1 + i % 9999, 'new', 9.99, '2026-11-20'); END LOOP; END \$d\$"
}
{
  echo "SET client_min_messages = warning;"
  for r in $(seq 1 "$REPS"); do
    echo "TRUNCATE batch; INSERT INTO batch SELECT nextval('batch_ids'), 1 + (random() * 9999)::int, (ARRAY['new', 'paid', 'shipped', 'cancelled'])[1 + (random() * 3)::int], round((random() * 500)::numeric, 2), '2026-11-01'::timestamptz + random() * interval '24 days' FROM generate_series(1, 10000); ANALYZE batch;"
    t insert "plain" "INSERT INTO o_plain SELECT * FROM batch"
    t insert "deferred view (capture)" "INSERT INTO o_cust SELECT * FROM batch"
    t insert "immediate view" "INSERT INTO o_imm SELECT * FROM batch"
    t cust "hand-written delta" "INSERT INTO hand_cust AS h SELECT customer_id, count(*), sum(total) FROM batch GROUP BY customer_id ON CONFLICT (customer_id) DO UPDATE SET orders = h.orders + excluded.orders, revenue = h.revenue + excluded.revenue"
    t cust "pipeline_refresh" "SELECT pipeline_refresh('mv_cust')"
    t cust "REFRESH MATERIALIZED VIEW" "REFRESH MATERIALIZED VIEW mat_cust"
    # the monthly table holds the 1,000,000 rows plus this batch only, so
    # that every repetition measures the same latest month
    echo "DELETE FROM o_month WHERE id > 1000000;"
    echo "VACUUM ANALYZE o_month;"
    echo "SELECT pipeline_refresh('mv_month');"
    echo "INSERT INTO o_month SELECT * FROM batch;"
    t month "pipeline_refresh" "SELECT pipeline_refresh('mv_month')"
    t month "REFRESH MATERIALIZED VIEW" "REFRESH MATERIALIZED VIEW mat_month"
    t singles "plain" "$(singles o_plain)"
    t singles "immediate view" "$(singles o_imm)"
  done
} >"$WORK/reps.sql"
log "measuring: $REPS repetitions"
bq -f "$WORK/reps.sql" >/dev/null

# 1,000 single-row INSERT statements from a client (pgbench, autocommit,
# prepared), as an application sends them
echo "\\set c random(1, 10000)
INSERT INTO o_plain VALUES (nextval('batch_ids'), :c, 'new', 9.99, '2026-11-20');" >"$WORK/plain.sql"
echo "\\set c random(1, 10000)
INSERT INTO o_imm VALUES (nextval('batch_ids'), :c, 'new', 9.99, '2026-11-20');" >"$WORK/imm.sql"
for r in $(seq 1 "$REPS"); do
  for v in plain imm; do
    ms=$(PGHOST="$WORK_BASE/$BENCH_CLUSTER" PGPORT=$BENCH_PORT PGUSER=postgres \
         "$PG_BIN/pgbench" -n -M prepared -c 1 -t 1000 -f "$WORK/$v.sql" "$BENCH_DB" 2>&1 |
         awk '/latency average/ {print $4 * 1000}')
    bq -c "INSERT INTO timings VALUES ('client singles', '$v', $ms)"
  done
done

# the views must be right, or the timings mean nothing
for v in "mv_cust|SELECT customer_id, count(*), sum(total) FROM o_cust GROUP BY 1" \
         "mv_month|SELECT date_trunc('month', created_at), status, count(*), sum(total), count(DISTINCT customer_id) FROM o_month GROUP BY 1, 2" \
         "mv_imm|SELECT customer_id, count(*), sum(total) FROM o_imm GROUP BY 1"; do
  view=${v%%|*}; query=${v#*|}
  diff=$(bq -c "SELECT count(*) FROM ((TABLE $view EXCEPT ALL $query) UNION ALL ($query EXCEPT ALL TABLE $view)) x")
  [ "$diff" = 0 ] || { echo "$view differs from its query in $diff rows"; exit 1; }
done

med() { bq -c "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) FROM timings WHERE bench = '$1' AND variant = '$2'"; }
ratio() { bq -c "SELECT round(($1 / $2)::numeric, 2)"; }
pct() { bq -c "SELECT round(($1 / $2 * 100)::numeric, 1)"; }
ins_plain=$(med insert plain); ins_def=$(med insert 'deferred view (capture)'); ins_imm=$(med insert 'immediate view')
hand=$(med cust 'hand-written delta'); ref=$(med cust pipeline_refresh); full=$(med cust 'REFRESH MATERIALIZED VIEW')
mref=$(med month pipeline_refresh); mfull=$(med month 'REFRESH MATERIALIZED VIEW')
s_plain=$(med singles plain); s_imm=$(med singles 'immediate view')
c_plain=$(med 'client singles' plain); c_imm=$(med 'client singles' imm)
{
  echo "| measure | median | ratio | target | pg_ivm 1.15 (issue #4) |"
  echo "|---|---|---|---|---|"
  echo "| per-customer: REFRESH MATERIALIZED VIEW | $full ms | | | 131 ms |"
  echo "| per-customer: hand-written delta, 10,000-row batch | $hand ms | 1.00x | | 24 ms |"
  echo "| per-customer: pipeline_refresh after the batch | $ref ms | **$(ratio "$ref" "$hand")x** the hand-written delta | at most 1.5x | |"
  echo "| monthly: REFRESH MATERIALIZED VIEW | $mfull ms | | | |"
  echo "| monthly: pipeline_refresh after the batch | $mref ms | **$(pct "$mref" "$mfull")%** of the full refresh | at most 5% | refuses count(DISTINCT), date_trunc on timestamptz |"
  echo "| 10,000-row INSERT, no view | $ins_plain ms | 1.00x | | 10.6 ms |"
  echo "| 10,000-row INSERT, deferred view (capture triggers) | $ins_def ms | **$(ratio "$ins_def" "$ins_plain")x** | at most 1.3x | |"
  echo "| 10,000-row INSERT, immediate view | $ins_imm ms | **$(ratio "$ins_imm" "$ins_plain")x** | at most 4x | 55x |"
  echo "| 1,000 single-row INSERTs in a PL/pgSQL loop, no view | $s_plain ms | 1.00x | | |"
  echo "| 1,000 single-row INSERTs in a PL/pgSQL loop, immediate view | $s_imm ms | **$(ratio "$s_imm" "$s_plain")x** | at most 2x | 4.2x |"
  echo "| 1,000 single-row INSERT statements from a client, no view | $c_plain ms | 1.00x | | |"
  echo "| 1,000 single-row INSERT statements from a client, immediate view | $c_imm ms | **$(ratio "$c_imm" "$c_plain")x** | at most 2x | 4.2x |"
  echo
  echo "Medians of $REPS repetitions (autovacuum off); the loop is 1,000 INSERT statements in one DO block (one transaction, no client round trips, the strictest ratio); the client figures are pgbench -M prepared, one transaction per statement; $(machine_line)"
} | tee "$OUT/matviews.md"
