#!/usr/bin/env bash
# Benchmarks of the core, side by side in one run on a throwaway cluster:
#   1. pipeline_run of 1,000,000 rows through a 5-column transform (append)
#      vs the hand-written INSERT ... SELECT of the same SQL
#   2. a run picking up 10,000 new rows from a 10,000,000-row source vs from
#      a 100,000-row source
#   3. an idle run (nothing new), in an open session
# Usage: bench/run.sh [REPS]   (default 5). Prints a markdown table and
# writes it to bench/results/core.md. docs/benchmarks.md records a run.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
REPS=${1:-5}
BENCH_DB=bench
# no autovacuum: with 2 cores, an analyze of a fresh million-row table
# would land inside whichever side runs next
bench_cluster bench "${PORT:-55460}" "autovacuum = off"
cluster_psql bench "$BENCH_PORT" -q -c "CREATE DATABASE $BENCH_DB"

log "loading data: 1M-row source, 10M-row and 100k-row delta sources"
bq -c "$BENCH_TIMER_SQL" >/dev/null
bq >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION pipeline;

CREATE TABLE src (id bigserial PRIMARY KEY, customer_id int, total numeric,
                  status text, created_at timestamptz);
INSERT INTO src (customer_id, total, status, created_at)
SELECT g % 10000, (g % 1000) * 1.5, (ARRAY['pending','completed','cancelled'])[g % 3 + 1],
       timestamptz '2024-01-01' + g * interval '30 seconds'
FROM generate_series(1, 1000000) g;
CREATE TABLE tgt (id bigint, customer_id int, total numeric(12,2), status text, order_date date);
SELECT pipeline_create('bench_1m', 'src', 'tgt', watermark => 'id',
  transform => $$ SELECT id, customer_id, round(total * 1.19, 2) AS total,
                         upper(status) AS status, created_at::date AS order_date FROM batch $$);

CREATE TABLE big_src (id bigserial PRIMARY KEY, v int, note text);
INSERT INTO big_src (v, note) SELECT g, 'row ' || g FROM generate_series(1, 10000000) g;
CREATE TABLE small_src (id bigserial PRIMARY KEY, v int, note text);
INSERT INTO small_src (v, note) SELECT g, 'row ' || g FROM generate_series(1, 100000) g;
CREATE TABLE big_tgt (id bigint, v int, note text);
CREATE TABLE small_tgt (id bigint, v int, note text);
SELECT pipeline_create('delta_big', 'big_src', 'big_tgt', watermark => 'id');
SELECT pipeline_create('delta_small', 'small_src', 'small_tgt', watermark => 'id');
SELECT pipeline_reset('delta_big', '10000000');
SELECT pipeline_reset('delta_small', '100000');
VACUUM ANALYZE;
CHECKPOINT;
SQL

hand="INSERT INTO tgt (id, customer_id, total, status, order_date) SELECT id, customer_id, round(total * 1.19, 2), upper(status), created_at::date FROM src WHERE id > 0 AND id <= 1000000"
{
  echo "SET client_min_messages = warning;"
  for r in $(seq 1 "$REPS"); do
    one_hand="TRUNCATE tgt; CHECKPOINT; INSERT INTO timings SELECT '1m', 'hand', bench_ms(\$q\$$hand\$q\$);"
    one_pipe="TRUNCATE tgt; SELECT pipeline_reset('bench_1m', '0'); CHECKPOINT; INSERT INTO timings SELECT '1m', 'pipeline', bench_ms(\$q\$SELECT pipeline_run('bench_1m')\$q\$);"
    # alternate the order so neither side always runs on a warmer cache
    if [ $((r % 2)) = 1 ]; then echo "$one_hand"; echo "$one_pipe"; else echo "$one_pipe"; echo "$one_hand"; fi
    echo "INSERT INTO big_src (v, note) SELECT g, 'new' FROM generate_series(1, 10000) g;"
    echo "INSERT INTO small_src (v, note) SELECT g, 'new' FROM generate_series(1, 10000) g;"
    echo "CHECKPOINT;"
    big="INSERT INTO timings SELECT 'delta', '10M source', bench_ms(\$q\$SELECT pipeline_run('delta_big')\$q\$);"
    small="INSERT INTO timings SELECT 'delta', '100k source', bench_ms(\$q\$SELECT pipeline_run('delta_small')\$q\$);"
    if [ $((r % 2)) = 1 ]; then echo "$big"; echo "$small"; else echo "$small"; echo "$big"; fi
  done
} >"$WORK/reps.sql"
log "measuring: $REPS interleaved repetitions"
bq -f "$WORK/reps.sql" >/dev/null

# sanity: every measured run did its full work
bad=$(bq -c "SELECT count(*) FROM pipeline.runs WHERE (pipeline = 'bench_1m' AND rows_loaded <> 1000000) OR (pipeline LIKE 'delta%' AND rows_loaded <> 10000) OR status <> 'succeeded'")
[ "$bad" = 0 ] || { echo "a measured run did not load what it should:"; bq -c "SELECT pipeline, status, rows_read, rows_loaded, error FROM pipeline.runs"; exit 1; }

log "measuring: idle runs (nothing new), 5000 calls in one open session"
history_before=$(bq -c "SELECT count(*) FROM pipeline.runs")
echo "SELECT pipeline_run('delta_small');" >"$WORK/idle.sql"
(cd "$WORK" && PGHOST="$WORK_BASE/bench" PGPORT=$BENCH_PORT PGUSER=postgres \
  "$PG_BIN/pgbench" -n -c 1 -t 5000 -f idle.sql -l --log-prefix=idle "$BENCH_DB" >/dev/null)
idle_client=$(sort -n -k3 "$WORK"/idle.* | awk '{a[NR]=$3} END {printf "%.3f", a[int((NR+1)/2)]/1000}')
idle_server=$(bq -c "DO \$\$ DECLARE t timestamptz; BEGIN FOR i IN 1..5000 LOOP t := clock_timestamp(); PERFORM pipeline_run('delta_small'); INSERT INTO timings VALUES ('idle', 'server', extract(epoch FROM clock_timestamp() - t) * 1000); END LOOP; END \$\$" >/dev/null;
              bq -c "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 3) FROM timings WHERE bench = 'idle'")
history_after=$(bq -c "SELECT count(*) FROM pipeline.runs")

med() { bq -c "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) FROM timings WHERE bench = '$1' AND variant = '$2'"; }
ratio() { bq -c "SELECT round(($1 / $2)::numeric, 3)"; }
h=$(med 1m hand); p=$(med 1m pipeline)
b=$(med delta '10M source'); s=$(med delta '100k source')

{
  echo "| benchmark | measured | target |"
  echo "|---|---|---|"
  echo "| 1M rows, 5-column transform, append: hand-written INSERT ... SELECT | $h ms | |"
  echo "| same through pipeline_run | $p ms (**$(ratio "$p" "$h")x**) | at most 1.05x |"
  echo "| 10,000 new rows from a 100,000-row source | $s ms | |"
  echo "| 10,000 new rows from a 10,000,000-row source | $b ms (**$(ratio "$b" "$s")x**) | at most 1.2x |"
  echo "| idle run, median, pgbench client in an open session | **$idle_client ms** | at most 0.5 ms |"
  echo "| idle run, median, measured inside the server | $idle_server ms | |"
  echo "| history rows written by 10,000 idle runs | $((history_after - history_before)) | 0 |"
  echo
  echo "Medians of $REPS interleaved repetitions; $(machine_line)"
} | tee "$OUT/core.md"
