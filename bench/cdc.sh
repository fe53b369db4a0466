#!/usr/bin/env bash
# Benchmark of CDC apply against native logical replication, side by side:
# one source cluster, one consumer cluster with two databases, one holding
# a subscription (CREATE SUBSCRIPTION) and one a CDC pipeline, each with a
# slot on the same publication. Per round, 1,000,000 changes are written
# to the source in 10,000-row transactions while both consumers wait:
#   400,000 inserts, then 300,000 updates, then 300,000 deletes,
# and after each phase each consumer catches up on its own, timed from the
# moment it starts until it has applied the phase's last transaction:
#   native:   ALTER SUBSCRIPTION ... ENABLE, then poll for a marker row
#   pipeline: SELECT pipeline_run('bench') (one run applies the phase)
# Usage: bench/cdc.sh [rounds]. Writes bench/results/cdc.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ROUNDS=${1:-3}
SPORT=${PORT:-55470}
bench_cluster cdcbench_dst $((SPORT + 1))
start_cluster cdcbench_src "$SPORT" "max_wal_size = 8GB"
trap 'rm -rf "$WORK"; remove_cluster cdcbench_src; remove_cluster cdcbench_dst' EXIT
qs() { cluster_psql cdcbench_src "$SPORT" -d postgres -qAt "$@"; }
qn() { cluster_psql cdcbench_dst "$BENCH_PORT" -d native -qAt "$@"; }
qp() { cluster_psql cdcbench_dst "$BENCH_PORT" -d pipeline -qAt "$@"; }
SRC="host=$WORK_BASE/cdcbench_src port=$SPORT dbname=postgres user=postgres"
now_ms() { date +%s%3N; }
TABLES="CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL, payload text);
        CREATE TABLE marker (phase text PRIMARY KEY);"

qs -c "$TABLES" -c "CREATE PUBLICATION bench FOR TABLE t, marker" >/dev/null
cluster_psql cdcbench_dst "$BENCH_PORT" -q -c "CREATE DATABASE native" -c "CREATE DATABASE pipeline" >/dev/null
qn -c "$TABLES" >/dev/null
qp -c "CREATE EXTENSION pipeline" -c "CREATE SCHEMA r" -c "SET search_path = r" -c "$TABLES" >/dev/null
qp -c "CREATE TABLE timings (round int, phase text, variant text, changes int, ms float8)" >/dev/null

# phase SQL: the changes of one phase, 10,000 rows a transaction, then its marker
phase_sql() {
  local kind=$1 n=$2 i lo hi
  for i in $(seq 0 $((n / 10000 - 1))); do
    lo=$((i * 10000 + 1)); hi=$(((i + 1) * 10000))
    case $kind in
      insert) echo "INSERT INTO t SELECT g, g % 1000, md5(g::text) FROM generate_series($lo, $hi) g;" ;;
      update) echo "UPDATE t SET v = v + 1, payload = 'u' || payload WHERE id BETWEEN $lo AND $hi;" ;;
      delete) echo "DELETE FROM t WHERE id BETWEEN $((lo + 100000)) AND $((hi + 100000));" ;;
    esac
  done
  echo "INSERT INTO marker VALUES ('$kind');"
}

for round in $(seq 1 "$ROUNDS"); do
  log "round $round of $ROUNDS"
  qn -c "TRUNCATE t, marker" >/dev/null
  qp -c "TRUNCATE r.t, r.marker" >/dev/null
  qs -c "TRUNCATE t, marker" >/dev/null
  qn -c "CREATE SUBSCRIPTION sub CONNECTION '$SRC' PUBLICATION bench WITH (copy_data = false, enabled = false)" >/dev/null 2>&1
  qp -c "SELECT pipeline_create_cdc('bench', 'bench', 'r', connection => '$SRC', copy_data => false)" >/dev/null
  for spec in insert:400000 update:300000 delete:300000; do
    kind=${spec%%:*}; n=${spec#*:}
    phase_sql "$kind" "$n" | qs >/dev/null
    qs -c "CHECKPOINT" >/dev/null

    t0=$(now_ms)
    qn -c "ALTER SUBSCRIPTION sub ENABLE" >/dev/null
    until [ "$(qn -c "SELECT count(*) FROM marker WHERE phase = '$kind'")" = 1 ]; do sleep 0.01; done
    t1=$(now_ms)
    qn -c "ALTER SUBSCRIPTION sub DISABLE" >/dev/null
    # wait for the apply worker to stop, so the next phase starts cold too
    until [ "$(qn -c "SELECT count(*) FROM pg_stat_subscription WHERE pid IS NOT NULL")" = 0 ]; do sleep 0.05; done

    t2=$(now_ms)
    r=$(qp -c "SELECT status || ' ' || rows_read FROM pipeline_run('bench')")
    t3=$(now_ms)
    [ "$r" = "succeeded $((n + 1))" ] || { echo "pipeline run: $r"; exit 1; }
    qp -c "INSERT INTO timings VALUES ($round, '$kind', 'native', $n, $((t1 - t0))),
                                      ($round, '$kind', 'pipeline', $n, $((t3 - t2)))" >/dev/null
    echo "  $kind: native $((t1 - t0)) ms, pipeline $((t3 - t2)) ms"
  done
  # both consumers hold the source's rows
  [ "$(qn -c "SELECT count(*) || ' ' || sum(v) FROM t")" = "$(qs -c "SELECT count(*) || ' ' || sum(v) FROM t")" ] || { echo "native differs"; exit 1; }
  [ "$(qp -c "SELECT count(*) || ' ' || sum(v) FROM r.t")" = "$(qs -c "SELECT count(*) || ' ' || sum(v) FROM t")" ] || { echo "pipeline differs"; exit 1; }
  qn -c "DROP SUBSCRIPTION sub" >/dev/null 2>&1
  qp -c "SELECT pipeline_drop('bench')" >/dev/null
done

report=$(qp -F ' | ' <<'SQL'
WITH m AS (
    SELECT phase, variant, max(changes) AS changes,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms
    FROM timings GROUP BY phase, variant),
per AS (
    SELECT n.phase, n.changes, n.ms AS native_ms, p.ms AS pipeline_ms
    FROM m n JOIN m p ON p.phase = n.phase AND p.variant = 'pipeline'
    WHERE n.variant = 'native'),
total AS (
    SELECT 'all 1,000,000' AS phase, sum(changes) AS changes, sum(native_ms) AS native_ms,
           sum(pipeline_ms) AS pipeline_ms FROM per)
SELECT '| ' || phase, round(native_ms), round(changes / native_ms * 1000),
       round(pipeline_ms), round(changes / pipeline_ms * 1000),
       round((native_ms / pipeline_ms)::numeric, 2) || 'x |'
FROM (SELECT * FROM per ORDER BY CASE phase WHEN 'insert' THEN 1 WHEN 'update' THEN 2 ELSE 3 END) o
UNION ALL
SELECT '| **' || phase || '**', round(native_ms), round(changes / native_ms * 1000),
       round(pipeline_ms), round(changes / pipeline_ms * 1000),
       '**' || round((native_ms / pipeline_ms)::numeric, 2) || 'x** |'
FROM total;
SQL
)
{
  echo "# CDC apply vs native logical replication"
  echo
  echo "$(machine_line) Medians of $ROUNDS rounds; 10,000-row transactions."
  echo
  echo "| changes | native ms | native rows/s | pipeline ms | pipeline rows/s | pipeline throughput vs native |"
  echo "|---|---|---|---|---|---|"
  echo "$report"
} | tee "$OUT/cdc.md"
