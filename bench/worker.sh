#!/usr/bin/env bash
# Benchmark of background workers (shared_preload_libraries = 'pipeline'):
#   - latency from the source commit to the row in the target, for a
#     continuous pipeline with poll_interval 100 ms, 300 single-row commits
#     30 ms apart (p50 and p99)
#   - CPU used by an idle worker over 60 seconds, with that pipeline
#     (100 ms polls) and with the default poll_interval (1 s)
# Usage: bench/worker.sh. Writes bench/results/worker.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_cluster benchw "${PORT:-55462}" "shared_preload_libraries = 'pipeline'
pipeline.database = 'postgres'"
bq >/dev/null <<'SQL'
CREATE EXTENSION pipeline;
CREATE TABLE events (id bigserial PRIMARY KEY, payload text,
                     committed_at timestamptz);
CREATE TABLE delivered (id bigint, payload text, committed_at timestamptz,
                        delivered_at timestamptz DEFAULT clock_timestamp());
SELECT pipeline_create('stream', 'events', 'delivered', watermark => 'id',
  options => '{"continuous": true, "poll_interval": "100 milliseconds"}');
SQL
sleep 3

log "measuring latency: 300 single-row commits, 30 ms apart"
# committed_at is set at the end of each one-statement transaction, as
# close to its commit as SQL can get
for i in $(seq 1 300); do
  echo "INSERT INTO events (payload, committed_at) VALUES ('event $i', clock_timestamp());"
  echo "SELECT pg_sleep(0.03);"
done >"$WORK/stream.sql"
bq -f "$WORK/stream.sql" >/dev/null
sleep 2
read -r n p50 p99 < <(bq -F ' ' -c "SELECT count(*),
  round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - committed_at) * 1000)::numeric, 1),
  round(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - committed_at) * 1000)::numeric, 1)
  FROM delivered")
[ "$n" = 300 ] || { echo "only $n of 300 events delivered"; exit 1; }

cpu_percent() {   # CPU of the worker over $1 seconds, in percent of one core
  local pid a b hz
  pid=$(bq -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline worker'")
  hz=$(getconf CLK_TCK)
  a=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  sleep "$1"
  b=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  awk -v d=$((b - a)) -v s="$1" -v hz="$hz" 'BEGIN { printf "%.2f", 100 * d / hz / s }'
}
log "measuring idle CPU: 60 s with 100 ms polls, 60 s with 1 s polls"
idle_fast=$(cpu_percent 60)
bq -c "SELECT pipeline_alter('stream', '{\"poll_interval\": \"1 second\"}')" >/dev/null
sleep 2
idle_default=$(cpu_percent 60)

{
  echo "| continuous pipeline, background worker | measured | target |"
  echo "|---|---|---|"
  echo "| commit-to-target latency, poll_interval 100 ms, p50 | **$p50 ms** | at most 300 ms |"
  echo "| same, p99 | **$p99 ms** | at most 1000 ms |"
  echo "| idle worker CPU, poll_interval 100 ms | **$idle_fast %** of a core | under 1% |"
  echo "| idle worker CPU, poll_interval 1 s (default) | **$idle_default %** of a core | under 1% |"
  echo
  echo "300 events, 30 ms apart; CPU from /proc over 60 s each; $(machine_line)"
} | tee "$OUT/worker.md"
