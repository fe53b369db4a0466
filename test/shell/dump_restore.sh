#!/usr/bin/env bash
# pg_dump and pg_restore carry pipelines, their watermarks and history; the
# restored pipelines continue from their watermark.
source "$(dirname "$0")/../tap.sh"
DB=pipeline_dump
RDB=pipeline_restored
work=$(mktemp -d)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
qd() { q test "$PORT" "$DB" "$1"; }
qr() { q test "$PORT" "$RDB" "$1"; }

cluster_psql test "$PORT" -q -c "DROP DATABASE IF EXISTS $DB" -c "DROP DATABASE IF EXISTS $RDB" \
  -c "CREATE DATABASE $DB" -c "DROP ROLE IF EXISTS dump_owner" -c "CREATE ROLE dump_owner" 2>/dev/null
cluster_psql test "$PORT" -d "$DB" -q >/dev/null <<'SQL'
CREATE EXTENSION pipeline;
CREATE SCHEMA app AUTHORIZATION dump_owner;
SET ROLE dump_owner;
CREATE TABLE app.src (id bigserial PRIMARY KEY, v int);
CREATE TABLE app.dst (id bigint PRIMARY KEY, v int);
CREATE TABLE app.totals (n bigint);
INSERT INTO app.src (v) SELECT g FROM generate_series(1, 1000) g;
SELECT pipeline_create('copy', 'app.src', 'app.dst', watermark => 'id', mode => 'upsert',
                       options => '{"batch_size": 400}');
SELECT pipeline_create('count', 'app.dst', 'app.totals', mode => 'replace',
                       transform => 'SELECT count(*) AS n FROM batch');
SELECT pipeline_contract('copy', '{"columns": {"v": {"max": 1000}}, "max_bad_rows": 10}');
SELECT pipeline_alter('count', '{"retries": 2, "retry_delay": "1 minute", "cascade": true}');
INSERT INTO app.src (v) VALUES (5000);
CALL pipeline_drain('copy');
SELECT pipeline_run('count');
-- incremental views: one deferred with changes pending at dump time, one immediate
SELECT pipeline_create_matview('app.by_tens', 'SELECT v / 10 AS tens, count(*) AS n, sum(v) AS total FROM app.dst GROUP BY 1');
SELECT pipeline_create_matview('app.by_hundreds', 'SELECT v / 100 AS hundreds, count(*) AS n, max(v) AS top FROM app.dst GROUP BY 1', 'immediate');
INSERT INTO app.dst VALUES (100000, 7);
SQL

export PGHOST="$WORK_BASE/test" PGPORT=$PORT PGUSER=postgres
"$PG_BIN/pg_dump" -Fc -f "$work/dump" "$DB"
ok $? "pg_dump of a database with pipelines"
"$PG_BIN/createdb" "$RDB"
"$PG_BIN/pg_restore" -d "$RDB" "$work/dump" 2>"$work/restore.err"
ok $? "pg_restore into a new database"
sed 's/^/# /' "$work/restore.err"

cols="name, owner, source, target, transform, watermark, last_watermark, mode, key, batch_size, lag, enabled, search_path"
is "$(qr "SELECT $cols FROM pipeline.pipelines ORDER BY name")" "$(qd "SELECT $cols FROM pipeline.pipelines ORDER BY name")" \
  "definitions, owners and watermarks are restored"
is "$(qr "SELECT count(*) FROM pipeline.runs")" "$(qd "SELECT count(*) FROM pipeline.runs")" "run history is restored"
is "$(qr "SELECT last_watermark FROM pipeline.pipelines WHERE name = 'copy'")" 1001 "the watermark is where the dump left it"
is "$(qr "SELECT rule, action FROM pipeline.contract_rules")" "$(qd "SELECT rule, action FROM pipeline.contract_rules")" \
  "contract rules are restored"
is "$(qr "SELECT data::text, violations FROM pipeline.quarantine")" '{"v": 5000, "id": 1001}|{v.max}' \
  "quarantined rows are restored"
is "$(qr "SELECT retries, retry_delay, cascade, max_bad_rows FROM pipeline.pipelines ORDER BY name")" \
  "$(qd "SELECT retries, retry_delay, cascade, max_bad_rows FROM pipeline.pipelines ORDER BY name")" \
  "options and limits are restored"

# (before any run: a run loading app.dst refreshes the deferred view over it)
is "$(qr "SELECT relation, refresh, pipeline_pending_changes(relation) FROM pipeline.matviews ORDER BY id")" \
  "app.by_tens|deferred|1
app.by_hundreds|immediate|0" "incremental views and their pending changes are restored"
qr "INSERT INTO app.src (v) SELECT g FROM generate_series(1, 50) g" >/dev/null
is "$(qr "SET ROLE dump_owner; SELECT rows_read || ' ' || watermark_from || ' ' || watermark_to FROM pipeline_run('copy')")" \
  "50 1001 1051" "the restored pipeline continues from its watermark"
is "$(qr "SELECT count(*) FROM app.dst")" 1051 "no row twice after the restore"
is "$(qr "SELECT replayed || ' ' || loaded || ' ' || still_bad FROM pipeline_replay('copy')")" "0 0 1" \
  "the restored quarantine replays against the restored contract"
is "$(qr "SELECT min(run_id) > (SELECT max(run_id) FROM pipeline.runs WHERE status = 'succeeded' AND rows_read <> 50) FROM pipeline.runs WHERE rows_read = 50")" t \
  "new run ids continue after the restored ones"
is "$(qr "SELECT status || ' ' || rows_loaded FROM pipeline_run('count')")" "succeeded 1" "the downstream pipeline runs too"
is "$(qr "SELECT n FROM app.totals")" 1051 "and sees the new rows"

# incremental views: their triggers follow changes after the restore
qr "INSERT INTO app.dst VALUES (100001, 77), (100002, 777)" >/dev/null
qr "SET ROLE dump_owner; SELECT pipeline_refresh('app.by_tens')" >/dev/null
for v in "by_tens|SELECT v / 10, count(*), sum(v) FROM app.dst GROUP BY 1" "by_hundreds|SELECT v / 100, count(*), max(v) FROM app.dst GROUP BY 1"; do
  view=${v%%|*}; query=${v#*|}
  is "$(qr "SELECT count(*) FROM ((TABLE app.$view EXCEPT ALL $query) UNION ALL ($query EXCEPT ALL TABLE app.$view)) x")" 0 \
    "the restored $view follows changes made before and after the dump"
done
qr "DROP TABLE app.by_tens" >/dev/null
is "$(qr "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pipeline_matview_1_%'") $(qr "SELECT to_regclass('pipeline.matview_log_1') IS NULL")" "0 t" \
  "DROP TABLE of a restored view removes its triggers and log"

cluster_psql test "$PORT" -q -c "DROP DATABASE $DB" -c "DROP DATABASE $RDB" -c "DROP ROLE dump_owner"
done_testing
