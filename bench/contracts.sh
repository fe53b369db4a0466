#!/usr/bin/env bash
# Benchmark of data contracts, side by side in one run on a throwaway cluster:
# 1,000,000 rows through 5 transforms under a 6-rule contract (4 regular
# expressions, 1 IN list, 1 minimum), bad rows to a jsonb quarantine,
# against the hand-written SQL doing the same split:
#   - plain INSERT ... SELECT of the 5 transforms (no validation), for scale
#   - two statements: INSERT the good rows, INSERT the bad ones
#   - one statement with a data-modifying CTE
#   - pipeline_run with the contract, on a clean batch
#   - pipeline_run on a batch where 1% of amounts fail the numeric cast, at
#     random positions (hand-written SQL cannot do this on PostgreSQL 15:
#     the first bad cast aborts the statement)
# Usage: bench/contracts.sh [REPS]  (default 5). Writes bench/results/contracts.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
REPS=${1:-5}
BENCH_DB=bench
bench_cluster benchc "${PORT:-55461}"
cluster_psql benchc "$BENCH_PORT" -q -c "CREATE DATABASE $BENCH_DB"

log "loading 2 x 1,000,000 landing rows (clean, and 1% bad amounts)"
bq -c "$BENCH_TIMER_SQL" >/dev/null
bq >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION pipeline;

-- text landing tables, as a raw feed arrives
CREATE TABLE clean_src (id bigserial PRIMARY KEY, order_ref text, email text, sku text,
                        phone text, status text, amount text);
INSERT INTO clean_src (order_ref, email, sku, phone, status, amount)
SELECT 'ord-' || g, 'User' || g || '@Example.com', ' ABC-' || lpad((g % 10000)::text, 4, '0') || ' ',
       '+49 ' || (1000000 + g), (ARRAY['pending','completed','cancelled'])[g % 3 + 1],
       ((g % 1000) * 1.5)::text
FROM generate_series(1, 1000000) g;
CREATE TABLE bad_src (LIKE clean_src);
ALTER TABLE bad_src ADD PRIMARY KEY (id);
INSERT INTO bad_src SELECT * FROM clean_src;
-- 1% of amounts that do not convert, at random positions (fixed seed)
SELECT setseed(0.42);
UPDATE bad_src SET amount = 'n/a' WHERE id IN (
    SELECT id FROM bad_src ORDER BY random() LIMIT 10000);

CREATE TABLE tgt (id bigint, order_ref text, email text, sku text, phone text,
                  status text, amount numeric(12,2));
CREATE TABLE quarantine_hand (data jsonb, violations text[]);

CREATE FUNCTION define(name text, source text) RETURNS void LANGUAGE sql AS $f$
  SELECT pipeline_create(name, source, 'tgt', watermark => 'id',
    transform => $$ SELECT id, upper(order_ref) AS order_ref, lower(email) AS email,
                           trim(sku) AS sku, replace(phone, ' ', '') AS phone,
                           status, amount FROM batch $$);
  SELECT pipeline_contract(name, $${"columns": {
      "order_ref": {"matches": "^ORD-[0-9]+$"},
      "email":     {"matches": "^[^@]+@[^@]+\\.[a-z]+$"},
      "sku":       {"matches": "^[A-Z]{3}-[0-9]{4}$"},
      "phone":     {"matches": "^\\+?[0-9]{7,15}$"},
      "status":    {"in": ["pending", "completed", "cancelled"]},
      "amount":    {"min": 0}}}$$);
$f$;
SELECT define('clean', 'clean_src');
SELECT define('bad', 'bad_src');
VACUUM ANALYZE;
CHECKPOINT;
SQL

T="SELECT id, upper(order_ref) AS order_ref, lower(email) AS email, trim(sku) AS sku, replace(phone, ' ', '') AS phone, status, amount::numeric(12,2) AS amount FROM clean_src WHERE id > 0 AND id <= 1000000"
V="(order_ref !~ '^ORD-[0-9]+\$') IS TRUE OR (email !~ '^[^@]+@[^@]+\\.[a-z]+\$') IS TRUE OR (sku !~ '^[A-Z]{3}-[0-9]{4}\$') IS TRUE OR (phone !~ '^\\+?[0-9]{7,15}\$') IS TRUE OR (status <> ALL (ARRAY['pending','completed','cancelled'])) IS TRUE OR (amount < 0) IS TRUE"
NAMES="array_remove(ARRAY[CASE WHEN (order_ref !~ '^ORD-[0-9]+\$') IS TRUE THEN 'order_ref.matches' END, CASE WHEN (email !~ '^[^@]+@[^@]+\\.[a-z]+\$') IS TRUE THEN 'email.matches' END, CASE WHEN (sku !~ '^[A-Z]{3}-[0-9]{4}\$') IS TRUE THEN 'sku.matches' END, CASE WHEN (phone !~ '^\\+?[0-9]{7,15}\$') IS TRUE THEN 'phone.matches' END, CASE WHEN (status <> ALL (ARRAY['pending','completed','cancelled'])) IS TRUE THEN 'status.in' END, CASE WHEN (amount < 0) IS TRUE THEN 'amount.min' END], NULL)"
plain="INSERT INTO tgt SELECT * FROM ($T) t"
two="INSERT INTO tgt SELECT * FROM ($T) t WHERE NOT ($V); INSERT INTO quarantine_hand SELECT to_jsonb(t), $NAMES FROM ($T) t WHERE $V"
# the rules evaluated once, in the materialized CTE; both inserts read it
cte="WITH v AS MATERIALIZED (SELECT t.*, ($V) AS bad FROM ($T) t), q AS (INSERT INTO quarantine_hand SELECT to_jsonb(v) - 'bad', $NAMES FROM v WHERE bad) INSERT INTO tgt SELECT id, order_ref, email, sku, phone, status, amount FROM v WHERE NOT bad"

reset="TRUNCATE tgt, quarantine_hand; TRUNCATE pipeline.quarantine; CHECKPOINT;"
{
  echo "SET client_min_messages = warning;"
  for r in $(seq 1 "$REPS"); do
    lines=(
      "$reset INSERT INTO timings SELECT 'contracts', 'plain INSERT ... SELECT (no validation)', bench_ms(\$q\$$plain\$q\$);"
      "$reset INSERT INTO timings SELECT 'contracts', 'hand-written, two statements', bench_ms(\$q\$$two\$q\$);"
      "$reset INSERT INTO timings SELECT 'contracts', 'hand-written, one statement with a data-modifying CTE', bench_ms(\$q\$$cte\$q\$);"
      "$reset SELECT pipeline_reset('clean', '0'); INSERT INTO timings SELECT 'contracts', 'pipeline_run, clean batch', bench_ms(\$q\$SELECT pipeline_run('clean')\$q\$);"
      "$reset SELECT pipeline_reset('bad', '0'); INSERT INTO timings SELECT 'contracts', 'pipeline_run, 1% bad casts', bench_ms(\$q\$SELECT pipeline_run('bad')\$q\$);"
    )
    # rotate the order in each repetition
    for i in 0 1 2 3 4; do echo "${lines[$(( (i + r) % 5 ))]}"; done
  done
} >"$WORK/reps.sql"
log "measuring: $REPS rotated repetitions"
bq -f "$WORK/reps.sql" >/dev/null

bad=$(bq -c "SELECT count(*) FROM pipeline.runs WHERE status <> 'succeeded' OR (pipeline = 'clean' AND (rows_loaded <> 1000000 OR rows_quarantined <> 0)) OR (pipeline = 'bad' AND (rows_loaded <> 990000 OR rows_quarantined <> 10000))")
[ "$bad" = 0 ] || { echo "a measured run did not do its full work:"; bq -c "SELECT pipeline, status, rows_read, rows_loaded, rows_quarantined, error FROM pipeline.runs"; exit 1; }

med() { bq -c "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) FROM timings WHERE variant = '$1'"; }
ratio() { bq -c "SELECT round(($1 / $2)::numeric, 2)"; }
plain_ms=$(med 'plain INSERT ... SELECT (no validation)')
two_ms=$(med 'hand-written, two statements')
cte_ms=$(med 'hand-written, one statement with a data-modifying CTE')
clean_ms=$(med 'pipeline_run, clean batch')
bad_ms=$(med 'pipeline_run, 1% bad casts')
{
  echo "| 1,000,000 rows, 5 transforms | median | vs plain | target |"
  echo "|---|---|---|---|"
  echo "| plain INSERT ... SELECT, no validation | $plain_ms ms | 1.00x | |"
  echo "| hand-written, two statements | $two_ms ms | $(ratio "$two_ms" "$plain_ms")x | |"
  echo "| hand-written, one statement with a data-modifying CTE | $cte_ms ms | $(ratio "$cte_ms" "$plain_ms")x | |"
  echo "| pipeline_run, 6-rule contract, clean batch | $clean_ms ms | $(ratio "$clean_ms" "$plain_ms")x | **$(ratio "$clean_ms" "$cte_ms")x** the CTE statement (at most 1.1x), **$(ratio "$clean_ms" "$two_ms")x** the two statements (below 1x) |"
  echo "| pipeline_run, 1% of rows failing the cast | $bad_ms ms | $(ratio "$bad_ms" "$plain_ms")x | **$(ratio "$bad_ms" "$clean_ms")x** the clean batch (at most 1.5x) |"
  echo
  echo "Medians of $REPS rotated repetitions; $(machine_line)"
} | tee "$OUT/contracts.md"
