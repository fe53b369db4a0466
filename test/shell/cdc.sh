#!/usr/bin/env bash
# CDC pipelines: a publication on a second cluster (remote) and one of the
# consumer's own database (local), read through logical replication slots
# with pgoutput. Inserts, updates (key changes, unchanged TOAST values),
# deletes, truncate, the initial copy, contracts, errors that pause the
# pipeline, slot cleanup, a crash of the consumer during apply, and a
# pgbench TPC-B load replicated to identical tables.
source "$(dirname "$0")/../tap.sh"
SPORT=$((PORT + 5))
CPORT=$((PORT + 6))
trap 'remove_cluster cdcsrc; remove_cluster cdcdst' EXIT

# the source flushes every commit, so a run sees what was just committed
start_cluster cdcsrc "$SPORT" "synchronous_commit = on" || { echo "Bail out! cannot start source"; exit 1; }
start_cluster cdcdst "$CPORT" || { echo "Bail out! cannot start consumer"; exit 1; }
qs() { q cdcsrc "$SPORT" postgres "$1"; }
qd() { q cdcdst "$CPORT" postgres "$1"; }
SRC="host=$WORK_BASE/cdcsrc port=$SPORT dbname=postgres user=postgres"
crash_consumer() { as_pg "$PG_BIN/pg_ctl" -D "$WORK_BASE/cdcdst/data" -m immediate -w stop >/dev/null; }
restart_consumer() { as_pg "$PG_BIN/pg_ctl" -D "$WORK_BASE/cdcdst/data" -l "$WORK_BASE/cdcdst/server.log" -w start >/dev/null; }

# drain NAME: run until a run finds nothing new; prints the runs' statuses
drain() {
  local out s
  for _ in $(seq 1 60); do
    s=$(qd "SELECT status FROM pipeline_run('$1')" 2>&1)
    out="$out $s"
    [ "$s" = skipped ] && break
    [ "$s" = failed ] && break
  done
  echo "$out"
}
# same CLUSTER-A QUERY CLUSTER-B QUERY: the query's rows as one md5
table_md5() { echo "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM $1 t"; }

qs "CREATE TABLE orders (id int PRIMARY KEY, customer text NOT NULL, total numeric, note text);
    CREATE TABLE items (order_id int, sku text, qty int, PRIMARY KEY (order_id, sku));
    INSERT INTO orders SELECT g, 'c' || (g % 7), g * 1.5, NULL FROM generate_series(1, 1000) g;
    INSERT INTO items SELECT g, 'sku' || (g % 3), g % 5 FROM generate_series(1, 500) g;
    CREATE PUBLICATION shop FOR TABLE orders, items" >/dev/null
cluster_psql cdcdst "$CPORT" -q >/dev/null <<'SQL'
CREATE EXTENSION pipeline;
CREATE SCHEMA replica;
CREATE TABLE replica.orders (id int PRIMARY KEY, customer text NOT NULL, total numeric, note text,
                             loaded_at timestamptz DEFAULT now());
CREATE TABLE replica.items (order_id int, sku text, qty int, PRIMARY KEY (order_id, sku));
SQL

# --- errors at create leave nothing behind --------------------------------
err=$(qd "SELECT pipeline_create_cdc('bad', 'nopub', 'replica', connection => '$SRC')" 2>&1)
echo "$err" | grep -q 'publication "nopub" of pipeline "bad" does not exist on its source'
ok $? "an unknown publication is refused, naming it"
qs "CREATE TABLE lonely (id int PRIMARY KEY); CREATE PUBLICATION lonely_pub FOR TABLE lonely" >/dev/null
err=$(qd "SELECT pipeline_create_cdc('bad', 'lonely_pub', 'replica', connection => '$SRC')" 2>&1)
echo "$err" | grep -q 'target table replica.lonely of pipeline "bad" does not exist'
ok $? "a missing target table is refused, naming it"
is "$(qs "SELECT count(*) FROM pg_replication_slots")" 0 "a failed create leaves no slot on the source"
is "$(qd "SELECT count(*) FROM pipeline.pipelines")" 0 "and no catalog row"
err=$(qd "BEGIN; SELECT pipeline_create_cdc('bad', 'shop', 'replica', connection => '$SRC')" 2>&1)
echo "$err" | grep -q 'cannot run inside a transaction block'
ok $? "create refuses a transaction block (a slot is not transactional)"

# --- remote source: initial copy and every kind of change -----------------
qd "SELECT pipeline_create_cdc('shop', 'shop', 'replica', connection => '$SRC')" >/dev/null
ok $? "pipeline_create_cdc on a remote publication"
is "$(qd "SELECT count(*) FROM replica.orders") $(qd "SELECT count(*) FROM replica.items")" "1000 500" \
  "the initial copy holds every published row"
is "$(qs "SELECT count(*) FROM pg_replication_slots WHERE plugin = 'pgoutput'")" 1 "a pgoutput slot on the source"

qs "INSERT INTO orders VALUES (1001, 'new', 10, NULL);
    UPDATE orders SET total = total + 1 WHERE id <= 100;
    DELETE FROM orders WHERE id BETWEEN 101 AND 150;
    UPDATE orders SET id = 5000 WHERE id = 200;
    UPDATE orders SET id = 6000, customer = 'swap' WHERE id = 5000;
    UPDATE items SET sku = 'moved' WHERE order_id = 7;
    DELETE FROM items WHERE order_id > 400;
    INSERT INTO items VALUES (7, 'sku1', 1);" >/dev/null
r=$(qd "SELECT status || ' ' || rows_read FROM pipeline_run('shop')")
is "$r" "succeeded 255" "one run applies the 255 changes"
orders_md5() { table_md5 "(SELECT id, customer, total, note FROM $1)"; }
is "$(qd "$(orders_md5 replica.orders)")" "$(qs "$(orders_md5 orders)")" \
  "orders: inserts, updates, deletes and key changes applied"
is "$(qd "$(table_md5 replica.items)")" "$(qs "$(table_md5 items)")" "items: a two-column key, moved and deleted"
is "$(drain shop)" " skipped" "nothing is applied twice"

# --- unchanged TOAST values ('u') are kept ---------------------------------
qs "UPDATE orders SET note = (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 300) g) WHERE id <= 3" >/dev/null
drain shop >/dev/null
qs "UPDATE orders SET total = 0 WHERE id = 1; UPDATE orders SET id = 9001 WHERE id = 2;
    UPDATE orders SET customer = 'x' WHERE id IN (3, 4)" >/dev/null
is "$(drain shop)" " succeeded skipped" "updates that leave a TOASTed value unchanged apply"
is "$(qd "SELECT string_agg(id || ':' || length(note), ',' ORDER BY id) FROM replica.orders WHERE note IS NOT NULL")" \
  "1:9600,3:9600,9001:9600" "the TOASTed values survive, also on a moved key"
is "$(qd "$(orders_md5 replica.orders)")" "$(qs "$(orders_md5 orders)")" "orders equal the source after the TOAST updates"

# --- truncate ---------------------------------------------------------------
qs "INSERT INTO items VALUES (900, 'a', 1); TRUNCATE items; INSERT INTO items VALUES (1, 'after', 2)" >/dev/null
drain shop >/dev/null
is "$(qd "SELECT string_agg(order_id || sku, ',') FROM replica.items")" "1after" "TRUNCATE, and what follows it, applied in order"

# --- status: slot lag and wal_status ---------------------------------------
is "$(qd "SELECT kind || ' ' || state || ' ' || wal_status || ' ' || (slot_lag_bytes >= 0) || ' ' || (lag IS NOT NULL) FROM pipeline.status WHERE pipeline = 'shop'")" \
  "cdc idle reserved true true" "pipeline.status shows the slot's lag and wal_status"
is "$(qd "SELECT applied_lsn = (SELECT watermark::pg_lsn FROM pipeline.status WHERE pipeline = 'shop') FROM pipeline.cdc")" "t" \
  "the applied LSN is the pipeline's watermark"

# --- contracts: a bad change is quarantined with its LSN ---------------------
qd "SELECT pipeline_contract('shop', '{\"columns\": {\"total\": {\"min\": 0}}}')" >/dev/null
qs "INSERT INTO orders VALUES (2001, 'neg', -5, NULL), (2002, 'ok', 5, NULL); UPDATE orders SET total = -1 WHERE id = 10" >/dev/null
r=$(qd "SELECT rows_read || ' ' || rows_quarantined FROM pipeline_run('shop')")
is "$r" "3 2" "changes that break the contract are quarantined, the others applied"
is "$(qd "SELECT string_agg(relation || ' ' || (data->>'id') || ' ' || (lsn IS NOT NULL) || ' ' || violations::text, ';' ORDER BY data->>'id') FROM pipeline.quarantine")" \
  "public.orders 10 true {total.min};public.orders 2001 true {total.min}" "quarantined with table, LSN and broken rule"
is "$(qd "SELECT count(*) FROM replica.orders WHERE id IN (2001, 2002)")" 1 "the clean row landed"

# --- DDL on the source: an error naming the table, the pipeline paused --------
qs "ALTER TABLE orders ADD COLUMN channel text; INSERT INTO orders VALUES (3001, 'web', 1, NULL, 'web')" >/dev/null
r=$(qd "SELECT status || ' ' || sqlstate || ' ' || error FROM pipeline_run('shop')")
echo "$r" | grep -q 'failed 42703 column "channel" of published table public.orders does not exist in target table replica.orders'
ok $? "a column added on the source fails the run, naming table and column"
is "$(qd "SELECT enabled FROM pipeline.pipelines WHERE name = 'shop'")" f "and pauses the pipeline"
qd "ALTER TABLE replica.orders ADD COLUMN channel text" >/dev/null
qd "SELECT pipeline_alter('shop', '{\"enabled\": true}')" >/dev/null
drain shop >/dev/null
is "$(qd "SELECT channel FROM replica.orders WHERE id = 3001")" "web" "after the fix, the waiting change is applied"

# --- events: the change stream as rows --------------------------------------
qd "SELECT pipeline_create_cdc('feed', 'shop', NULL, connection => '$SRC', copy_data => false,
      options => '{\"events\": \"replica.shop_events\"}')" >/dev/null
qs "INSERT INTO items VALUES (50, 'ev', 3); UPDATE items SET qty = 4 WHERE order_id = 50; DELETE FROM items WHERE order_id = 50" >/dev/null
drain feed >/dev/null
is "$(qd "SELECT string_agg(op || ' ' || relation || ' ' || coalesce(new->>'qty', '-') || ' ' || coalesce(old->>'sku', '-'), ';' ORDER BY id) FROM replica.shop_events")" \
  "INSERT public.items 3 -;UPDATE public.items 4 -;DELETE public.items - ev" "events hold op, table, new and old rows in order"
is "$(qd "SELECT count(DISTINCT lsn) FROM replica.shop_events")" 3 "each event has its LSN"

# --- crash of the consumer during apply, and right after a commit -------------
qd "CREATE TABLE replica.log (id int, payload text)" >/dev/null   # no key: a duplicate would show
qs "CREATE TABLE log (id int, payload text); CREATE PUBLICATION logs FOR TABLE log" >/dev/null
qd "SELECT pipeline_create_cdc('logs', 'logs', 'replica', connection => '$SRC')" >/dev/null
for i in $(seq 0 9); do
  qs "INSERT INTO log SELECT g, md5(g::text) FROM generate_series($((i * 30000 + 1)), $(((i + 1) * 30000))) g" >/dev/null
done
( qd "SELECT pipeline_run('logs')" >/dev/null 2>&1 & )
for _ in $(seq 1 100); do
  [ "$(qd "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pipeline_run(''logs'')%' AND state = 'active'")" = 1 ] && break
  sleep 0.05
done
sleep 0.5
crash_consumer
restart_consumer
is "$(qd "SELECT count(*) FROM replica.log")" 0 "a crash during apply leaves nothing applied"
drain logs >/dev/null
is "$(qd "SELECT count(*) || ' ' || count(DISTINCT id) FROM replica.log")" "300000 300000" \
  "after the crash, every change applied exactly once"
qs "INSERT INTO log SELECT g, 'late' FROM generate_series(300001, 300100) g" >/dev/null
qd "SELECT pipeline_run('logs')" >/dev/null
crash_consumer          # committed, but the slot was not told yet
restart_consumer
qs "INSERT INTO log VALUES (300101, 'later')" >/dev/null
drain logs >/dev/null
is "$(qd "SELECT count(*) || ' ' || count(DISTINCT id) FROM replica.log")" "300101 300101" \
  "transactions already applied are skipped when the slot sends them again"

# --- local source: a publication of the consumer's own database ---------------
cluster_psql cdcdst "$CPORT" -q >/dev/null <<'SQL'
CREATE SCHEMA app;
CREATE SCHEMA mirror;
CREATE TABLE app.accounts (id bigint PRIMARY KEY, balance numeric NOT NULL);
CREATE TABLE mirror.accounts (id bigint PRIMARY KEY, balance numeric NOT NULL);
INSERT INTO app.accounts SELECT g, 100 FROM generate_series(1, 100) g;
CREATE PUBLICATION app_pub FOR TABLE app.accounts;
SQL
qd "SELECT pipeline_create_cdc('accounts', 'app_pub', 'mirror')" >/dev/null
ok $? "pipeline_create_cdc on a publication of this database (connection NULL)"
qd "UPDATE app.accounts SET balance = balance - 10 WHERE id <= 50; DELETE FROM app.accounts WHERE id > 90;
    INSERT INTO app.accounts VALUES (500, 1)" >/dev/null
is "$(qd "SELECT status FROM pipeline_run('accounts')")" succeeded "a local run right after the writes sees them"
is "$(qd "$(table_md5 mirror.accounts)")" "$(qd "$(table_md5 app.accounts)")" "the local target equals its source"
qd "CREATE PUBLICATION loop_pub FOR TABLE mirror.accounts" >/dev/null
err=$(qd "SELECT pipeline_create_cdc('loop', 'loop_pub', 'mirror')" 2>&1)
echo "$err" | grep -q 'publishes table mirror.accounts of its own target schema'
ok $? "a local publication of the target schema is refused (it would replicate onto itself)"

# --- privileges -------------------------------------------------------------------
qd "CREATE ROLE plain LOGIN; GRANT USAGE ON SCHEMA mirror TO plain" >/dev/null
err=$(cluster_psql cdcdst "$CPORT" -U plain -d postgres -qAt -c "SELECT pipeline_create_cdc('mine', 'app_pub', 'mirror')" 2>&1)
echo "$err" | grep -q 'role "plain" cannot read replication slots'
ok $? "a role without REPLICATION cannot create a CDC pipeline"
err=$(cluster_psql cdcdst "$CPORT" -U plain -d postgres -qAt -c "SELECT pipeline_create_cdc('mine', 'shop', 'mirror', connection => '$SRC')" 2>&1)
echo "$err" | grep -q 'only superusers can create CDC pipelines with a connection string'
ok $? "nor one with a connection string unless superuser"
is "$(cluster_psql cdcdst "$CPORT" -U plain -d postgres -qAt -c "SELECT count(*) FROM pipeline.cdc")" 0 \
  "other roles see no CDC pipeline (nor its connection string)"
err=$(cluster_psql cdcdst "$CPORT" -U plain -d postgres -qAt -c "SELECT pipeline_run('shop')" 2>&1)
echo "$err" | grep -q 'permission denied for pipeline "shop"'
ok $? "nor run one"

# --- pgbench TPC-B on the source, replicated ---------------------------------------
"$PG_BIN/pgbench" -h "$WORK_BASE/cdcsrc" -p "$SPORT" -U postgres -i -s 2 -q postgres >/dev/null 2>&1
qs "ALTER TABLE pgbench_history ADD COLUMN hid bigserial PRIMARY KEY;
    CREATE PUBLICATION tpcb FOR TABLE pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history" >/dev/null
"$PG_BIN/pg_dump" -h "$WORK_BASE/cdcsrc" -p "$SPORT" -U postgres -s -t 'pgbench_*' postgres 2>/dev/null |
  sed 's/public\./tpcb./g; s/SELECT pg_catalog.set_config.*//' |
  cluster_psql cdcdst "$CPORT" -q -c "CREATE SCHEMA tpcb" -f - >/dev/null 2>&1
qd "SELECT pipeline_create_cdc('tpcb', 'tpcb', 'tpcb', connection => '$SRC', options => '{\"batch_size\": 5000}')" >/dev/null
ok $? "a CDC pipeline of the pgbench tables"
"$PG_BIN/pgbench" -h "$WORK_BASE/cdcsrc" -p "$SPORT" -U postgres -c 4 -j 2 -T 8 -n postgres >/dev/null 2>&1 &
bench=$!
runs=0
while kill -0 "$bench" 2>/dev/null; do
  qd "SELECT pipeline_run('tpcb')" >/dev/null 2>&1 && runs=$((runs + 1))
done
drain tpcb >/dev/null
echo "# $runs runs while pgbench ran; $(qs "SELECT count(*) FROM pgbench_history") transactions"
ok $([ "$runs" -gt 1 ]; echo $?) "runs applied while pgbench was writing"
same=yes
for t in pgbench_accounts pgbench_branches pgbench_tellers pgbench_history; do
  [ "$(qd "$(table_md5 tpcb.$t)")" = "$(qs "$(table_md5 $t)")" ] || { same=no; echo "# $t differs"; }
done
is "$same" yes "after pgbench TPC-B, all four tables are identical to the source"

# --- batch_size bounds a run at a transaction's end; what CDC refuses ----------
qd "SELECT pipeline_alter('shop', '{\"batch_size\": 2}')" >/dev/null
qs "INSERT INTO items VALUES (60, 'b', 1); INSERT INTO items VALUES (61, 'b', 1), (62, 'b', 1);" >/dev/null
qs "INSERT INTO items VALUES (63, 'b', 1)" >/dev/null
qs "INSERT INTO items VALUES (64, 'b', 1)" >/dev/null
is "$(qd "SELECT rows_read FROM pipeline_run('shop')")" 3 "batch_size 2 stops after the transaction that reaches it"
cluster_psql cdcdst "$CPORT" -d postgres -q -c "CALL pipeline_drain('shop')" >/dev/null
is "$(qd "SELECT count(*) FROM replica.items WHERE order_id BETWEEN 60 AND 64")" 5 "pipeline_drain applies the rest"
qd "SELECT pipeline_alter('shop', '{\"batch_size\": null}')" >/dev/null
for call in "pipeline_reset('shop')" "pipeline_explain('shop')" "pipeline_replay('shop')"; do
  err=$(qd "SELECT * FROM $call" 2>&1)
  echo "$err" | grep -q 'cannot .* CDC pipeline "shop"'
  ok $? "$call is refused for a CDC pipeline"
done

# --- pg_dump and pg_restore keep the definition; the slot stays the original's --
"$PG_BIN/pg_dump" -h "$WORK_BASE/cdcdst" -p "$CPORT" -U postgres -Fc -f "$WORK_BASE/cdcdst/dump" postgres
ok $? "pg_dump of a database with CDC pipelines"
cluster_psql cdcdst "$CPORT" -q -c "CREATE DATABASE restored" >/dev/null
"$PG_BIN/pg_restore" -h "$WORK_BASE/cdcdst" -p "$CPORT" -U postgres -d restored "$WORK_BASE/cdcdst/dump" 2>/dev/null
qr() { q cdcdst "$CPORT" restored "$1"; }
is "$(qr "SELECT slot || ' ' || applied_lsn FROM pipeline.cdc WHERE pipeline = 'shop'")" \
  "$(qd "SELECT slot || ' ' || applied_lsn FROM pipeline.cdc WHERE pipeline = 'shop'")" \
  "the restored catalog has the pipeline's slot and applied LSN"
before=$(qs "SELECT count(*) FROM pg_replication_slots")
qr "SELECT pipeline_drop('shop', drop_slot => false)" >/dev/null
is "$(qs "SELECT count(*) FROM pg_replication_slots") $(qr "SELECT count(*) FROM pipeline.cdc WHERE pipeline = 'shop'")" \
  "$before 0" "drop_slot => false drops the restored copy and leaves the original's slot"
qs "INSERT INTO items VALUES (70, 'after-dump', 1)" >/dev/null
drain shop >/dev/null
is "$(qd "SELECT count(*) FROM replica.items WHERE order_id = 70")" 1 "the original pipeline goes on"

# --- dropping a pipeline drops its slot -------------------------------------------
before=$(qs "SELECT count(*) FROM pg_replication_slots")
qd "SELECT pipeline_drop('shop')" >/dev/null
is "$(qs "SELECT count(*) FROM pg_replication_slots")" "$((before - 1))" "pipeline_drop drops the remote slot"
qd "SELECT pipeline_drop('accounts')" >/dev/null
is "$(qd "SELECT count(*) FROM pg_replication_slots")" 0 "and the local one"
is "$(qd "SELECT count(*) FROM pipeline.cdc WHERE pipeline IN ('shop', 'accounts')")" 0 "and the catalog rows"

done_testing
