#!/usr/bin/env bash
# Attacks of one ordinary role (mallory) on another's pipelines (victim's)
# that need more than one session: a contract rule slipped in while its
# pipeline is dropped, LISTEN on the alert channel, and a create of a taken
# name that waits on a lock. Each must fail.
source "$(dirname "$0")/../tap.sh"
DB=pipeline_security
M=sec_mallory
V=sec_victim
work=$(mktemp -d)
chmod 755 "$work"
drop_objects() {
  cluster_psql test "$PORT" -q -c "DROP DATABASE IF EXISTS $DB" -c "DROP ROLE IF EXISTS $M" \
    -c "DROP ROLE IF EXISTS $V" >/dev/null 2>&1
}
trap 'rm -rf "$work"; drop_objects' EXIT
as() { local who=$1; shift; cluster_psql test "$PORT" -d "$DB" -U "$who" "$@"; }
qm() { as "$M" -qAt -c "$1"; }
qv() { as "$V" -qAt -c "$1"; }
qs() { q test "$PORT" "$DB" "$1"; }

drop_objects
cluster_psql test "$PORT" -q >/dev/null <<SQL
CREATE ROLE $M LOGIN;
CREATE ROLE $V LOGIN;
CREATE DATABASE $DB;
SQL
cluster_psql test "$PORT" -d "$DB" -q >/dev/null <<SQL
CREATE EXTENSION pipeline;
CREATE SCHEMA m AUTHORIZATION $M;
CREATE SCHEMA v AUTHORIZATION $V;
SQL

# --- a rule inserted while its pipeline is dropped does not survive it ---
as "$M" -q >/dev/null <<'SQL'
CREATE TABLE m.stolen (data text);
GRANT USAGE ON SCHEMA m TO PUBLIC;
-- runs as mallory whoever calls it, and keeps what it is given
CREATE FUNCTION m.steal(x text) RETURNS bool LANGUAGE sql SECURITY DEFINER
  AS $$ INSERT INTO m.stolen VALUES (x) RETURNING true $$;
CREATE TABLE m.s (id int, secret text);
CREATE TABLE m.d (id int, secret text);
SELECT pipeline_create('fact_orders', 'm.s', 'm.d');
SQL
# session A: mallory adds a rule to her pipeline and commits it late
as "$M" -q >"$work/rule.log" 2>&1 <<'SQL' &
BEGIN;
INSERT INTO pipeline.contract_rules (pipeline, owner, rule, kind, argument)
VALUES ('fact_orders', 'sec_mallory', 'spy', 'check', '"m.steal(secret)"');
SELECT pg_sleep(2);
COMMIT;
SQL
rule_session=$!
sleep 0.7
# session B: she drops the pipeline meanwhile
qm "SELECT pipeline_drop('fact_orders')" >/dev/null 2>"$work/drop.log"
wait $rule_session
is "$(qs "SELECT count(*) FROM pipeline.contract_rules WHERE pipeline = 'fact_orders'")" 0 \
  "a rule committed after its pipeline's drop began goes with the pipeline"
# victim creates a pipeline of the freed name: no rule of mallory's runs
as "$V" -q >/dev/null <<'SQL'
CREATE TABLE v.s (id int, secret text);
CREATE TABLE v.d (id int, secret text);
INSERT INTO v.s VALUES (1, 'card 4111-1111-1111-1111');
SELECT pipeline_create('fact_orders', 'v.s', 'v.d');
SQL
is "$(qv "SELECT status || ' ' || rows_loaded FROM pipeline_run('fact_orders')")" "succeeded 1" \
  "victim's pipeline of the same name runs"
is "$(qs "SELECT count(*) FROM m.stolen")" 0 "and no rule of mallory's ran on victim's rows"
is "$(qs "SELECT count(*) FROM pipeline.contract_rules")" 0 "victim's pipeline has no rules"
err=$(qm "INSERT INTO pipeline.contract_rules (pipeline, owner, rule, kind, argument)
          VALUES ('fact_orders', 'sec_mallory', 'spy', 'check', '\"m.steal(secret)\"')" 2>&1)
echo "$err" | grep -q "row-level security\|foreign key"
ok $? "mallory cannot attach a rule to victim's pipeline"

# --- alerts on the shared channel carry nothing of another role's run ---
as "$V" -q >/dev/null <<'SQL'
CREATE TABLE v.cards (id int, card text);
CREATE TABLE v.out (id int, n int);
INSERT INTO v.cards VALUES (1, 'card 4111-1111-1111-1111');
SELECT pipeline_create('victim_cards', 'v.cards', 'v.out', transform => 'SELECT id, card::int AS n FROM batch');
SQL
as "$M" -c "LISTEN pipeline_events" -c "SELECT pg_sleep(2)" >"$work/listen.log" 2>&1 &
listener=$!
sleep 0.5
qv "SELECT status FROM pipeline_run('victim_cards')" >/dev/null
wait $listener
grep -q 'Asynchronous notification "pipeline_events"' "$work/listen.log"
ok $? "mallory, listening, is told that a run failed"
! grep -q "victim_cards\|4111" "$work/listen.log"
ok $? "but not which pipeline, nor its error (victim's card number)"
run_id=$(sed -n 's/.*payload "{"run_id": \([0-9]*\).*/\1/p' "$work/listen.log" | head -1)
is "$(qm "SELECT count(*) FROM pipeline.runs WHERE run_id = ${run_id:-0}")" 0 \
  "and she cannot look the run up"
is "$(qv "SELECT pipeline || ' ' || sqlstate FROM pipeline.runs WHERE run_id = ${run_id:-0}")" \
  "victim_cards 22P02" "the owner looks the payload's run up in pipeline.runs"

# --- a create of a taken name cannot hold that pipeline's lock ---
qv "INSERT INTO v.cards VALUES (2, '2'); SELECT pipeline_alter('victim_cards', '{\"transform\": \"SELECT id, 7 AS n FROM batch\"}')" >/dev/null
as "$M" -q >/dev/null <<'SQL'
CREATE TABLE m.held (id int);
CREATE TABLE m.held_out (id int);
SQL
# mallory holds her own table, then creates a pipeline of victim's name on it
as "$M" -q -c "BEGIN" -c "LOCK TABLE m.held IN ACCESS EXCLUSIVE MODE" -c "SELECT pg_sleep(4)" \
  -c "COMMIT" >/dev/null 2>&1 &
holder=$!
sleep 0.5
as "$M" -qAt -c "BEGIN" -c "SELECT pipeline_create('victim_cards', 'm.held', 'm.held_out')" \
  -c "SELECT pg_sleep(3)" -c "COMMIT" >"$work/squat.log" 2>&1 &
squatter=$!
sleep 0.5
is "$(qv "SET lock_timeout = '1s'; SELECT status || ' ' || rows_loaded FROM pipeline_run('victim_cards')" 2>&1)" \
  "succeeded 2" "victim's run does not wait for mallory's create of the same name"
wait $holder $squatter
grep -q 'pipeline "victim_cards" already exists' "$work/squat.log"
ok $? "mallory's create is refused at once, naming the pipeline"

# --- pipeline_drain runs under its caller's search_path: nothing resolves
# to an operator of mallory's, even where she can create in public ---
cluster_psql test "$PORT" -d "$DB" -q -c "GRANT CREATE ON SCHEMA public TO $M" >/dev/null
as "$M" -q >/dev/null <<'SQL'
-- a failed drain rolls back what they write: they speak instead
CREATE FUNCTION public.spy_cat(text, bigint) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'spy ran as %', current_user; RETURN $1 OPERATOR(pg_catalog.||) $2::text; END $$;
CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = bigint, FUNCTION = public.spy_cat);
CREATE FUNCTION public.spy_ne(text, text) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'spy ran as %', current_user; RETURN $1 OPERATOR(pg_catalog.<>) $2; END $$;
CREATE OPERATOR public.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = public.spy_ne);
CREATE FUNCTION m.boom() RETURNS bool LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'boom'; END $$;
CREATE TABLE m.s_drain (id int);
CREATE TABLE m.d_drain (id int);
INSERT INTO m.s_drain VALUES (1);
SELECT pipeline_create('mdrain', 'm.s_drain', 'm.d_drain', transform => 'SELECT id FROM batch WHERE m.boom()');
SQL
err=$(cluster_psql test "$PORT" -d "$DB" -qAt -c "SET search_path = public, pg_catalog" \
  -c "CALL pipeline_drain('mdrain')" 2>&1)
echo "$err" | grep -q 'pipeline "mdrain" failed during drain: boom'
ok $? "a superuser's drain of mallory's failing pipeline fails with its error"
echo "$err" | grep -q 'See pipeline.runs for run [0-9]*\.'
ok $? "and its hint names the run"
! echo "$err" | grep -q 'spy ran'
ok $? "none of mallory's operators ran in the drain"

# --- a real cancel still cancels; a failed run is not recorded for it ---
as "$V" -q >/dev/null <<'SQL'
CREATE TABLE v.s_slow (id int);
CREATE TABLE v.d_slow (id int);
INSERT INTO v.s_slow VALUES (1);
SELECT pipeline_create('vslow', 'v.s_slow', 'v.d_slow', transform => 'SELECT id FROM batch, pg_sleep(2)');
SQL
err=$(as "$V" -qAt -c "SET statement_timeout = '300ms'" -c "SELECT pipeline_run('vslow')" 2>&1)
echo "$err" | grep -q 'canceling statement due to statement timeout'
ok $? "statement_timeout cancels a run as any statement"
is "$(qv "SELECT count(*) FROM pipeline.runs WHERE pipeline = 'vslow'")" 0 "and leaves no run row"

# --- pipelines lock by id: a name whose hash equals another's blocks nothing ---
# "}jtJUO9y90R" and "vp" have the same hash_any(), the lock key before 0.4
# (found by inverting the hash's final mix: attack code of the review)
as "$V" -q >/dev/null <<'SQL'
CREATE TABLE v.s_vp (id int);
CREATE TABLE v.d_vp (id int);
INSERT INTO v.s_vp VALUES (1);
SELECT pipeline_create('vp', 'v.s_vp', 'v.d_vp');
SQL
as "$M" -q >/dev/null <<'SQL'
CREATE TABLE m.s_col (id int);
CREATE TABLE m.d_col (id int);
SELECT pipeline_create('}jtJUO9y90R', 'm.s_col', 'm.d_col');
SQL
# mallory runs hers and keeps the transaction open
as "$M" -q -c "BEGIN" -c "SELECT pipeline_run('}jtJUO9y90R')" -c "SELECT pg_sleep(3)" -c "COMMIT" >/dev/null 2>&1 &
holder=$!
sleep 0.7
is "$(qv "SELECT status FROM pipeline_run('vp', 'cron')")" "succeeded" \
  "a scheduled run of victim's pipeline is not skipped while mallory holds her colliding pipeline"
is "$(qv "SET lock_timeout = '1s'; SELECT status FROM pipeline_run('vp')" 2>&1)" "succeeded" \
  "nor does a manual run wait for it"
wait $holder

done_testing
