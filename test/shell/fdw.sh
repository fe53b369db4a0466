#!/usr/bin/env bash
# Foreign sources: a table on a second cluster through postgres_fdw (the
# watermark predicate is pushed to the remote server), and a CSV file
# through file_fdw.
source "$(dirname "$0")/../tap.sh"
RPORT=$((PORT + 2))
DB=pipeline_fdw
csv_dir="$WORK_BASE/fdw-files"
trap 'remove_cluster fdwremote; rm -rf "$csv_dir"' EXIT

start_cluster fdwremote "$RPORT" || { echo "Bail out! cannot start remote cluster"; exit 1; }
qr() { q fdwremote "$RPORT" postgres "$1"; }
ql() { q test "$PORT" "$DB" "$1"; }

qr "CREATE TABLE orders (id bigserial PRIMARY KEY, customer int, total numeric);
    INSERT INTO orders (customer, total) SELECT g % 50, g * 1.25 FROM generate_series(1, 5000) g;
    ANALYZE orders" >/dev/null

cluster_psql test "$PORT" -q -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" 2>/dev/null
cluster_psql test "$PORT" -d "$DB" -q >/dev/null <<SQL
CREATE EXTENSION pipeline;
CREATE EXTENSION postgres_fdw;
CREATE SERVER remote FOREIGN DATA WRAPPER postgres_fdw
  OPTIONS (host '$WORK_BASE/fdwremote', port '$RPORT', dbname 'postgres', use_remote_estimate 'true');
CREATE USER MAPPING FOR CURRENT_USER SERVER remote OPTIONS (user 'postgres');
CREATE FOREIGN TABLE remote_orders (id bigint, customer int, total numeric)
  SERVER remote OPTIONS (table_name 'orders');
CREATE TABLE local_orders (id bigint PRIMARY KEY, customer int, total numeric, big boolean);
SELECT pipeline_create('from_remote', 'remote_orders', 'local_orders', watermark => 'id',
  mode => 'upsert',
  transform => 'SELECT id, customer, total, total > 100 AS big FROM batch');
SQL

r=$(ql "SELECT status || ' ' || rows_read || ' ' || rows_loaded FROM pipeline_run('from_remote')")
is "$r" "succeeded 5000 5000" "first run copies the remote table"
qr "INSERT INTO orders (customer, total) SELECT 1, 2 FROM generate_series(1, 25)" >/dev/null
plan=$(ql "SELECT string_agg(p, E'\n') FROM pipeline_explain('from_remote', plan => true) p")
echo "$plan" | sed 's/^/# /'
echo "$plan" | grep -qE "Remote SQL: .*WHERE \(\(id <= 5025(::bigint)?\)\) AND \(\(id > 5000(::bigint)?\)\)"
ok $? "the watermark predicate is pushed to the remote server (Remote SQL)"
r=$(ql "SELECT rows_read || ' ' || watermark_from || ' ' || watermark_to FROM pipeline_run('from_remote')")
is "$r" "25 5000 5025" "the next run reads only the 25 new remote rows"
is "$(ql "SELECT count(*), sum(total) FROM local_orders")" "$(qr "SELECT count(*), sum(total) FROM orders")" \
  "local copy equals the remote table"

# a lag keeps the last N ids of a foreign source back (no writers to wait for there)
ql "SELECT pipeline_alter('from_remote', '{\"lag\": 10}')" >/dev/null
qr "INSERT INTO orders (customer, total) SELECT 1, 2 FROM generate_series(1, 30)" >/dev/null
is "$(ql "SELECT rows_read || ' ' || watermark_to FROM pipeline_run('from_remote')")" "20 5045" \
  "with lag 10 the run stops 10 ids short of the remote max"

# file_fdw: a CSV file with a messy amount column (text, empty) into a typed table
mkdir -p "$csv_dir"
cp "$ROOT_DIR/test/data/events.csv" "$csv_dir/events.csv"
chmod 755 "$csv_dir"; chmod 644 "$csv_dir/events.csv"
cluster_psql test "$PORT" -d "$DB" -q >/dev/null <<SQL
CREATE EXTENSION file_fdw;
CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;
CREATE FOREIGN TABLE events_csv (event_id int, occurred_at text, kind text, amount text, customer text)
  SERVER files OPTIONS (filename '$csv_dir/events.csv', format 'csv', header 'true');
CREATE TABLE events (event_id int PRIMARY KEY, occurred_at timestamptz, kind text,
                     amount numeric(10,2), customer text);
SELECT pipeline_create('from_csv', 'events_csv', 'events', watermark => 'event_id',
  transform => \$\$ SELECT event_id, occurred_at, kind, nullif(amount, '') AS amount, customer FROM batch \$\$);
SQL
is "$(ql "SELECT rows_read || ' ' || rows_loaded FROM pipeline_run('from_csv')")" "6 6" "the CSV file loads into typed columns"
is "$(ql "SELECT sum(amount) || ' ' || count(*) FILTER (WHERE amount IS NULL) FROM events")" "184.49 1" \
  "text amounts were converted, the empty one is NULL"
printf '7,2024-03-02 09:00:00+00,purchase,3.25,c-005\n8,2024-03-02 09:30:00+00,purchase,4.75,c-001\n' >>"$csv_dir/events.csv"
is "$(ql "SELECT rows_read || ' ' || watermark_from || ' ' || watermark_to FROM pipeline_run('from_csv')")" "2 6 8" \
  "lines appended to the file are picked up incrementally"
is "$(ql "SELECT count(*) FROM events")" 8 "the table holds every line once"

# a messy real-world CSV under a contract: every line loads or is quarantined
cp "$ROOT_DIR/test/data/messy_orders.csv" "$csv_dir/messy_orders.csv"
chmod 644 "$csv_dir/messy_orders.csv"
cluster_psql test "$PORT" -d "$DB" -q >/dev/null <<SQL
CREATE FOREIGN TABLE messy_csv (order_id text, customer_email text, order_date text,
                                amount text, currency text, status text)
  SERVER files OPTIONS (filename '$csv_dir/messy_orders.csv', format 'csv', header 'true');
CREATE TABLE clean_orders (order_id int NOT NULL, email text NOT NULL, order_date date,
                           amount numeric(10,2), currency char(3), status text);
SELECT pipeline_create('messy', 'messy_csv', 'clean_orders',
  transform => \$\$ SELECT order_id, trim(customer_email) AS email, order_date,
                         amount, upper(currency) AS currency, lower(status) AS status
                  FROM batch \$\$);
SELECT pipeline_contract('messy', \$\${
  "columns": {"order_id": {"unique": true},
              "email":    {"matches": "^[^@ ]+@[^@ ]+\\\\.[a-z]+\$"},
              "amount":   {"min": 0},
              "currency": {"in": ["EUR", "USD"]},
              "status":   {"in": ["pending", "completed", "cancelled"]}}}\$\$);
SQL
r=$(ql "SELECT rows_read || ' ' || rows_loaded || ' ' || rows_quarantined FROM pipeline_run('messy')")
is "$r" "15 4 11" "15 CSV lines: 4 loaded, 11 quarantined, none lost"
is "$(ql "SELECT string_agg(order_id::text, ',' ORDER BY order_id) FROM clean_orders")" "1001,1004,1009,1011" \
  "the clean lines loaded (US date, blank amount, case and blanks normalized)"
expected="1002:amount.type
1003:email.matches
1005:email.not_null
1006:order_date.type
1007:amount.type
1008:amount.min,status.in
1010:order_id.unique
1010:order_id.unique,amount.type
1013:amount.type
1014:currency.in
:order_id.not_null"
is "$(ql "SELECT coalesce(data ->> 'order_id', '') || ':' || array_to_string(violations, ',') FROM pipeline.quarantine WHERE pipeline = 'messy' ORDER BY 1")" \
  "$expected" "each bad line is quarantined with every rule it broke"

cluster_psql test "$PORT" -q -c "DROP DATABASE $DB"
done_testing
