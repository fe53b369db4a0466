#!/usr/bin/env bash
# CDC scenarios that lost changes or wedged a pipeline before 0.4 (issue
# 12), each against a second cluster (or this database), each ending with
# source and target compared by md5: confirms of uncommitted or unflushed
# LSNs, generated columns, a key change that breaks the contract, unique
# constraints besides the key, TRUNCATE of tables linked by a foreign key,
# NULL keys under REPLICA IDENTITY FULL, errors that pause the pipeline, a
# create that aborts after making its slot, a table added to the
# publication, WAL held while only unpublished tables change, and the
# replica role of a non-superuser's apply.
source "$(dirname "$0")/../tap.sh"
SPORT=$((PORT + 7))
CPORT=$((PORT + 8))
trap 'remove_cluster cdcfsrc; remove_cluster cdcfdst' EXIT

# the source flushes every commit; the consumer commits asynchronously
# (lib.sh) and its WAL writer waits 10 s, so an unflushed commit is lost by
# a crash
start_cluster cdcfsrc "$SPORT" "synchronous_commit = on
max_replication_slots = 20
max_wal_senders = 20" || { echo "Bail out! cannot start source"; exit 1; }
start_cluster cdcfdst "$CPORT" "wal_writer_delay = 10s" || { echo "Bail out! cannot start consumer"; exit 1; }
qs() { q cdcfsrc "$SPORT" postgres "$1"; }
qd() { q cdcfdst "$CPORT" postgres "$1"; }
SRC="host=$WORK_BASE/cdcfsrc port=$SPORT dbname=postgres user=postgres"
crash_consumer() { as_pg "$PG_BIN/pg_ctl" -D "$WORK_BASE/cdcfdst/data" -m immediate -w stop >/dev/null; }
restart_consumer() { as_pg "$PG_BIN/pg_ctl" -D "$WORK_BASE/cdcfdst/data" -l "$WORK_BASE/cdcfdst/server.log" -w start >/dev/null; }

# drain NAME: run until a run finds nothing new; prints the runs' statuses
drain() {
  local out s
  for _ in $(seq 1 30); do
    s=$(qd "SELECT status FROM pipeline_run('$1')" 2>&1)
    out="$out $s"
    [ "$s" = skipped ] && break
    [ "$s" = failed ] && break
  done
  echo "$out"
}
table_md5() { echo "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM $1 t"; }
# same TABLE DESCRIPTION: public.TABLE on the source equals replica.TABLE
same() { is "$(qd "$(table_md5 "replica.$1")")" "$(qs "$(table_md5 "public.$1")")" "$2"; }
# pipeline SOURCE-SQL TARGET-SQL NAME TABLE...: tables, publication NAME, pipeline NAME
pipeline() {
  local sql=$1 target=$2 name=$3
  qs "$sql; CREATE PUBLICATION $name FOR TABLE ${*:4}" >/dev/null
  qd "$target" >/dev/null
  qd "SELECT pipeline_create_cdc('$name', '$name', 'replica', connection => '$SRC')" >/dev/null
}
slots() { qs "SELECT count(*) FROM pg_replication_slots"; }

qd "CREATE EXTENSION pipeline; CREATE SCHEMA replica" >/dev/null

# --- 1. a run confirms only an LSN committed here -------------------------------
pipeline "CREATE TABLE t1 (id int PRIMARY KEY, v text)" \
  "CREATE TABLE replica.t1 (id int PRIMARY KEY, v text)" c1 t1
qs "INSERT INTO t1 SELECT g, 'a' FROM generate_series(1, 10) g" >/dev/null
# the second run of the transaction must not confirm the first one's LSN
cluster_psql cdcfdst "$CPORT" -qAt >/dev/null 2>&1 <<SQL
BEGIN;
SELECT status FROM pipeline_run('c1');
\! "$PG_BIN/psql" -X -qAt -h "$WORK_BASE/cdcfsrc" -p "$SPORT" -U postgres -d postgres -c "INSERT INTO t1 VALUES (11, 'b')"
SELECT status FROM pipeline_run('c1');
ROLLBACK;
SQL
is "$(qd "SELECT count(*) FROM replica.t1")" 0 "two runs in a transaction, rolled back: nothing applied"
drain c1 >/dev/null
same t1 "the next run applies all 11 rows: the rolled-back LSN was not confirmed"
# the same in one statement that fails after running the pipeline twice
pipeline "CREATE TABLE t1s (id int PRIMARY KEY, v text)" \
  "CREATE TABLE replica.t1s (id int PRIMARY KEY, v text); CREATE EXTENSION dblink" c1s t1s
qs "INSERT INTO t1s SELECT g, 'a' FROM generate_series(1, 10) g" >/dev/null
qd "SELECT pipeline_run('c1s') IS NULL, dblink_exec('$SRC', 'INSERT INTO t1s VALUES (11, ''b'')'),
           pipeline_run('c1s') IS NULL, (random() * 0)::int / 0" >/dev/null 2>&1
is "$(qd "SELECT count(*) FROM replica.t1s")" 0 "one statement ran it twice and failed: nothing applied"
drain c1s >/dev/null
same t1s "the next run applies the rows of both runs"

# --- 2. the confirmed commit is flushed first (synchronous_commit = off) --------
pipeline "CREATE TABLE t2 (id int PRIMARY KEY, v text); CREATE TABLE noise2 (id int)" \
  "CREATE TABLE replica.t2 (id int PRIMARY KEY, v text)" c2 t2
qs "INSERT INTO t2 SELECT g, 'a' FROM generate_series(1, 10) g" >/dev/null
qd "SELECT pipeline_run('c2')" >/dev/null          # commits asynchronously
qs "INSERT INTO noise2 VALUES (1)" >/dev/null       # moves the source on
qd "SELECT pipeline_run('c2')" >/dev/null          # confirms what the first stored
crash_consumer
restart_consumer
drain c2 >/dev/null
same t2 "a crash after an asynchronous commit and its confirm loses nothing"

# --- 3. generated columns are neither copied nor streamed ----------------------
qs "CREATE TABLE g3 (id int PRIMARY KEY, a int, b int GENERATED ALWAYS AS (a * 2) STORED);
    INSERT INTO g3 (id, a) SELECT g, g FROM generate_series(1, 10) g" >/dev/null
pipeline "SELECT 1" \
  "CREATE TABLE replica.g3 (id int PRIMARY KEY, a int, b int GENERATED ALWAYS AS (a * 2) STORED)" c3 g3
is "$(qd "SELECT count(*) FROM pipeline.cdc WHERE pipeline = 'c3'")" 1 "a target that generates the column itself is accepted"
qs "INSERT INTO g3 (id, a) VALUES (11, 11); UPDATE g3 SET a = 50 WHERE id = 1" >/dev/null
drain c3 >/dev/null
same g3 "generated columns: the copy and the stream leave them to the target"

# --- 4. a key change that breaks the contract keeps the old row ------------------
qs "CREATE TABLE k4 (id int PRIMARY KEY, v int); INSERT INTO k4 VALUES (1, 5), (2, 5)" >/dev/null
pipeline "SELECT 1" "CREATE TABLE replica.k4 (id int PRIMARY KEY, v int)" c4 k4
qd "SELECT pipeline_contract('c4', '{\"columns\": {\"v\": {\"min\": 0}}}')" >/dev/null
qs "UPDATE k4 SET id = 10, v = -1 WHERE id = 1; UPDATE k4 SET id = 20 WHERE id = 2" >/dev/null
r=$(qd "SELECT status || ' ' || rows_read || ' ' || rows_quarantined FROM pipeline_run('c4')")
is "$r" "succeeded 2 1" "the breaking key change is quarantined, the other applied"
is "$(qd "SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM replica.k4")" "1:5,20:5" \
  "the row of the quarantined key change stays at its old key"
is "$(qd "SELECT data->>'id' FROM pipeline.quarantine WHERE pipeline = 'c4'")" 10 "the new row is in the quarantine"
qs "UPDATE k4 SET v = 7 WHERE id = 10; DELETE FROM k4 WHERE id = 20" >/dev/null
qd "DELETE FROM replica.k4 WHERE id = 1" >/dev/null   # the operator resolves it
drain c4 >/dev/null
same k4 "after the source fixes the row, source and target agree"

# --- 5. unique constraints besides the key: history replayed in order ----------
qs "CREATE TABLE u5 (id int PRIMARY KEY, email text UNIQUE, n int);
    INSERT INTO u5 SELECT g, 'e' || g, 0 FROM generate_series(1, 20) g" >/dev/null
pipeline "SELECT 1" "CREATE TABLE replica.u5 (id int PRIMARY KEY, email text UNIQUE, n int)" c5 u5
qs "UPDATE u5 SET id = 100 WHERE id = 1" >/dev/null                  # key change, email kept
qs "UPDATE u5 SET email = 'tmp' WHERE id = 2; UPDATE u5 SET email = 'e2' WHERE id = 3" >/dev/null
qs "UPDATE u5 SET email = 'e3' WHERE id = 2" >/dev/null                # a swap over two transactions
qs "UPDATE u5 SET n = n + 1; UPDATE u5 SET n = n + 1 WHERE id > 10" >/dev/null
is "$(drain c5)" " succeeded skipped" "key changes and email swaps apply"
same u5 "the unique emails moved as on the source"

# --- 6. TRUNCATE of tables linked by a foreign key ------------------------------
pipeline "CREATE TABLE par6 (id int PRIMARY KEY); CREATE TABLE chi6 (id int PRIMARY KEY, par int REFERENCES par6);
          INSERT INTO par6 VALUES (1), (2); INSERT INTO chi6 VALUES (1, 1), (2, 2)" \
  "CREATE TABLE replica.par6 (id int PRIMARY KEY); CREATE TABLE replica.chi6 (id int PRIMARY KEY, par int REFERENCES replica.par6)" \
  c6 par6, chi6
qs "TRUNCATE par6, chi6; INSERT INTO par6 VALUES (3); INSERT INTO chi6 VALUES (3, 3)" >/dev/null
is "$(drain c6)" " succeeded skipped" "TRUNCATE of a parent and its child applies"
same par6 "the parent equals the source"
same chi6 "the child equals the source"

# --- 7. a NULL key under REPLICA IDENTITY FULL ------------------------------------
pipeline "CREATE TABLE nk7 (id int, v text); ALTER TABLE nk7 REPLICA IDENTITY FULL; INSERT INTO nk7 VALUES (1, 'a')" \
  "CREATE TABLE replica.nk7 (id int PRIMARY KEY, v text)" c7 nk7
qs "INSERT INTO nk7 VALUES (NULL, 'n'), (2, 'b')" >/dev/null
r=$(qd "SELECT status || ' ' || rows_quarantined FROM pipeline_run('c7')")
is "$r" "succeeded 1" "a NULL key is quarantined (the target's key is NOT NULL)"
qs "DELETE FROM nk7 WHERE id IS NULL; UPDATE nk7 SET v = 'c' WHERE id = 2" >/dev/null
is "$(drain c7)" " succeeded skipped" "the DELETE of the NULL-key row applies (it matches nothing)"
same nk7 "the table equals the source"

# --- 8. errors that recur pause the pipeline; keyless targets are refused ------
pipeline "CREATE TABLE u8 (id int PRIMARY KEY, v int)" \
  "CREATE TABLE replica.u8 (id int PRIMARY KEY, v int UNIQUE)" c8 u8
qs "INSERT INTO u8 VALUES (1, 5), (2, 5)" >/dev/null
r=$(qd "SELECT status || ' ' || sqlstate FROM pipeline_run('c8')")
is "$r" "failed 23505" "a change the target refuses fails the run"
is "$(qd "SELECT enabled FROM pipeline.pipelines WHERE name = 'c8'")" f "and pauses the pipeline"
is "$(qd "SELECT state || ' ' || (last_error LIKE '%duplicate key%pipeline paused%') FROM pipeline.status WHERE pipeline = 'c8'")" \
  "disabled true" "pipeline.status shows it disabled, with the error"
qd "ALTER TABLE replica.u8 DROP CONSTRAINT u8_v_key; SELECT pipeline_alter('c8', '{\"enabled\": true}')" >/dev/null
drain c8 >/dev/null
same u8 "after the fix, the waiting changes apply"
qs "CREATE TABLE f8 (id int, v text); ALTER TABLE f8 REPLICA IDENTITY FULL; CREATE PUBLICATION f8 FOR TABLE f8" >/dev/null
qd "CREATE TABLE replica.f8 (id int, v text)" >/dev/null
before=$(slots)
err=$(qd "SELECT pipeline_create_cdc('f8', 'f8', 'replica', connection => '$SRC')" 2>&1)
echo "$err" | grep -q 'target table replica.f8 of pipeline "f8" has no primary key'
ok $? "a target without a key for a REPLICA IDENTITY FULL source is refused at create"
is "$(slots)" "$before" "and leaves no slot"

# --- 9. a create whose transaction aborts drops its slot ------------------------
qs "CREATE TABLE t9 (id int PRIMARY KEY); CREATE PUBLICATION p9 FOR TABLE t9" >/dev/null
qd "CREATE TABLE replica.t9 (id int PRIMARY KEY)" >/dev/null
before=$(slots)
qd "SELECT pipeline_create_cdc('c9', 'p9', 'replica', connection => '$SRC'), (random() * 0)::int / 0" >/dev/null 2>&1
is "$(slots) $(qd "SELECT count(*) FROM pipeline.cdc WHERE pipeline = 'c9'")" "$before 0" \
  "an error after create in the same statement leaves no slot and no row"
qd "SELECT n / ((random() * 0)::int) FROM (SELECT count(pipeline_create_cdc(v.n, 'p9', 'replica', connection => '$SRC')::text) AS n
     FROM (VALUES ('c9a'), ('c9b')) v (n)) c" >/dev/null 2>&1
is "$(slots) $(qd "SELECT count(*) FROM pipeline.cdc WHERE pipeline LIKE 'c9%'")" "$before 0" \
  "two creates in one statement that then fails leave no slot and no row"
qd "SELECT pipeline_create_cdc('c9', 'p9', 'replica', connection => '$SRC')" >/dev/null
ok $? "creating it again works"

# --- 10. a table added to the publication pauses the pipeline ---------------------
pipeline "CREATE TABLE a10 (id int PRIMARY KEY); CREATE TABLE b10 (id int PRIMARY KEY); INSERT INTO b10 VALUES (1), (2)" \
  "CREATE TABLE replica.a10 (id int PRIMARY KEY); CREATE TABLE replica.b10 (id int PRIMARY KEY)" c10 a10
qs "ALTER PUBLICATION c10 ADD TABLE b10; INSERT INTO b10 VALUES (3); INSERT INTO a10 VALUES (1)" >/dev/null
r=$(qd "SELECT status || ' ' || sqlstate || ' ' || error FROM pipeline_run('c10')")
echo "$r" | grep -q 'failed 55000 table public.b10 was added to publication "c10" of pipeline "c10" after its initial copy'
ok $? "a table added after the copy fails the run, naming it"
is "$(qd "SELECT enabled FROM pipeline.pipelines WHERE name = 'c10'")" f "and pauses the pipeline"
qs "ALTER PUBLICATION c10 DROP TABLE b10; INSERT INTO a10 VALUES (2)" >/dev/null
qd "SELECT pipeline_alter('c10', '{\"enabled\": true}')" >/dev/null
is "$(drain c10)" " succeeded skipped" "once it is out of the publication again, the pipeline goes on"
same a10 "the copied table equals the source"
is "$(qd "SELECT count(*) FROM replica.b10")" 0 "the added table's changes were not applied to a partial target"

# --- 11. unpublished writes do not hold WAL behind the slot -----------------------
pipeline "CREATE TABLE t11 (id int PRIMARY KEY); CREATE TABLE noise11 (id int, pad text)" \
  "CREATE TABLE replica.t11 (id int PRIMARY KEY)" c11 t11
qs "INSERT INTO t11 VALUES (1)" >/dev/null
drain c11 >/dev/null
qs "INSERT INTO noise11 SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, 40000) g" >/dev/null
qs "CHECKPOINT" >/dev/null       # a running-transactions record the slot may restart from
written=$(qs "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) FROM pg_replication_slots WHERE slot_name LIKE 'pipeline_c11_%'")
echo "# $((written / 1048576)) MB of WAL behind the slot before the run"
ok $([ "$written" -gt $((32 * 1048576)) ]; echo $?) "the unpublished writes put more than 32 MB of WAL behind the slot"
drain c11 >/dev/null
held=$(qs "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) FROM pg_replication_slots WHERE slot_name LIKE 'pipeline_c11_%'")
echo "# $((held / 1048576)) MB of WAL behind the slot after the run"
ok $([ "$held" -lt $((16 * 1048576)) ]; echo $?) "after a run, less than 16 MB of WAL is held behind the slot"
qs "INSERT INTO t11 VALUES (2)" >/dev/null
drain c11 >/dev/null
same t11 "and the published table still follows"

# --- a slot the source lost pauses the pipeline and says why --------------------
pipeline "CREATE TABLE t12 (id int PRIMARY KEY); CREATE TABLE noise12 (id int, pad text)" \
  "CREATE TABLE replica.t12 (id int PRIMARY KEY)" c12 t12
qs "INSERT INTO t12 VALUES (1)" >/dev/null
drain c12 >/dev/null
qs "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'" >/dev/null
qs "SELECT pg_reload_conf()" >/dev/null
qs "INSERT INTO t12 VALUES (2)" >/dev/null
qs "INSERT INTO noise12 SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, 40000) g" >/dev/null
qs "SELECT pg_switch_wal()" >/dev/null
qs "CHECKPOINT" >/dev/null
is "$(qs "SELECT wal_status FROM pg_replication_slots WHERE slot_name LIKE 'pipeline_c12_%'")" lost \
  "the source invalidates the slot past max_slot_wal_keep_size"
is "$(qd "SELECT status || ' ' || sqlstate FROM pipeline_run('c12')")" "failed 55000" \
  "the next run fails with 55000, not a protocol error retried forever"
is "$(qd "SELECT enabled FROM pipeline.pipelines WHERE name = 'c12'")" f "and pauses the pipeline"
qd "SELECT last_error FROM pipeline.status WHERE pipeline = 'c12'" | grep -q 'replication slot "pipeline_c12_.*" is lost on the source'
ok $? "whose status names the lost slot"
qs "ALTER SYSTEM RESET max_slot_wal_keep_size" >/dev/null
qs "SELECT pg_reload_conf()" >/dev/null
qd "SELECT pipeline_drop('c12')" >/dev/null

# --- the replica role is a superuser's: a non-superuser's apply fires FK checks -----
cluster_psql cdcfdst "$CPORT" -q >/dev/null <<'SQL'
CREATE ROLE ownr LOGIN REPLICATION;
CREATE SCHEMA app AUTHORIZATION ownr;
CREATE SCHEMA mirror AUTHORIZATION ownr;
SET ROLE ownr;
CREATE TABLE app.acc (id int PRIMARY KEY, v int);
CREATE TABLE mirror.acc (id int PRIMARY KEY, v int);
INSERT INTO app.acc VALUES (1, 1), (2, 2);
RESET ROLE;
CREATE PUBLICATION app_pub FOR TABLE app.acc;
-- another role's table references the owner's target
CREATE TABLE public.child (acc int REFERENCES mirror.acc (id));
SQL
cluster_psql cdcfdst "$CPORT" -U ownr -d postgres -qAt -c "SELECT pipeline_create_cdc('own', 'app_pub', 'mirror')" >/dev/null
ok $? "a non-superuser creates a local CDC pipeline"
qd "INSERT INTO public.child VALUES (1)" >/dev/null
cluster_psql cdcfdst "$CPORT" -U ownr -d postgres -qAt -c "UPDATE app.acc SET v = 10 WHERE id = 2; INSERT INTO app.acc VALUES (3, 3)" >/dev/null
is "$(cluster_psql cdcfdst "$CPORT" -U ownr -d postgres -qAt -c "SELECT status FROM pipeline_run('own')")" succeeded \
  "its runs apply"
is "$(qd "$(table_md5 mirror.acc)")" "$(qd "$(table_md5 app.acc)")" "the target equals the source"
cluster_psql cdcfdst "$CPORT" -U ownr -d postgres -qAt -c "DELETE FROM app.acc WHERE id = 1" >/dev/null
r=$(cluster_psql cdcfdst "$CPORT" -U ownr -d postgres -qAt -c "SELECT status || ' ' || sqlstate FROM pipeline_run('own')")
is "$r" "failed 23503" "its apply cannot delete a row another role's foreign key references"
is "$(qd "SELECT count(*) FROM public.child c WHERE NOT EXISTS (SELECT 1 FROM mirror.acc a WHERE a.id = c.acc)")" 0 \
  "the other role's rows keep their reference"
is "$(qd "SELECT enabled FROM pipeline.pipelines WHERE name = 'own'")" f "and the pipeline is paused"
qd "DELETE FROM public.child" >/dev/null
qd "SELECT pipeline_alter('own', '{\"enabled\": true}')" >/dev/null
is "$(cluster_psql cdcfdst "$CPORT" -U ownr -d postgres -qAt -c "SELECT status FROM pipeline_run('own')")" succeeded \
  "once the reference is gone, the delete applies"
is "$(qd "$(table_md5 mirror.acc)")" "$(qd "$(table_md5 app.acc)")" "and the target equals the source"
qd "SELECT pipeline_drop('own')" >/dev/null

# --- the apply's key comparisons are qualified: a writable public captures none --
cluster_psql cdcfdst "$CPORT" -q >/dev/null <<'SQL'
GRANT CREATE ON SCHEMA public TO PUBLIC;
CREATE ROLE mal LOGIN;
CREATE TABLE public.eq_calls (who text);
GRANT INSERT ON public.eq_calls TO PUBLIC;
SET ROLE mal;
CREATE FUNCTION public.evil_eq(varchar, varchar) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.eq_calls VALUES (current_user); RETURN $1::text OPERATOR(pg_catalog.=) $2::text; END $$;
CREATE OPERATOR public.= (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = public.evil_eq);
RESET ROLE;
CREATE SCHEMA vsrc;
CREATE TABLE vsrc.acct (code varchar PRIMARY KEY, bal int);
CREATE TABLE mirror.acct (code varchar PRIMARY KEY, bal int);
INSERT INTO vsrc.acct VALUES ('a', 1), ('b', 2), ('c', 3);
CREATE PUBLICATION vpub FOR TABLE vsrc.acct;
SELECT pipeline_create_cdc('vkeys', 'vpub', 'mirror');
-- this session's own statements would call it (plain PostgreSQL): not counted
DELETE FROM vsrc.acct WHERE code OPERATOR(pg_catalog.=) 'b';
UPDATE vsrc.acct SET code = 'z' WHERE code OPERATOR(pg_catalog.=) 'c';
UPDATE vsrc.acct SET bal = 10 WHERE code OPERATOR(pg_catalog.=) 'a';
TRUNCATE public.eq_calls;
SQL
is "$(qd "SELECT status FROM pipeline_run('vkeys')")" succeeded "a superuser's CDC pipeline applies deletes and key changes of varchar keys"
is "$(qd "$(table_md5 mirror.acct)")" "$(qd "$(table_md5 vsrc.acct)")" "the target equals the source"
is "$(qd "SELECT count(*) FROM public.eq_calls")" 0 "and no operator of another role's in public was called"
qd "SELECT pipeline_drop('vkeys')" >/dev/null

# --- an events table that exists must be the owner's ---------------------------
qd "CREATE TABLE public.ev_trap (id bigserial PRIMARY KEY, lsn pg_lsn NOT NULL, op text NOT NULL,
      relation text NOT NULL, committed_at timestamptz, new jsonb, old jsonb);
    GRANT ALL ON public.ev_trap, public.ev_trap_id_seq TO PUBLIC" >/dev/null
err=$(cluster_psql cdcfdst "$CPORT" -U ownr -d postgres -qAt \
  -c "SELECT pipeline_create_cdc('own_ev', 'app_pub', NULL, options => '{\"events\": \"public.ev_trap\"}')" 2>&1)
echo "$err" | grep -q 'events table public.ev_trap is not owned by the pipeline'
ok $? "another role's events table is refused: its triggers would see every change"
is "$(qd "SELECT count(*) FROM pipeline.pipelines WHERE name = 'own_ev'")" 0 "and nothing is created"

done_testing
