-- Escalation attempts by an ordinary role through code it controls: a
-- domain's CHECK in a watermark cast, settings changed by a source view,
-- and quarantine ids forged through pipeline_divert() during a replay.
-- Each would run as (or leak into) the catalog owner or another role.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION pipeline;
SELECT plan(24);

CREATE ROLE tap_mallory;
CREATE ROLE tap_victim;
CREATE SCHEMA m AUTHORIZATION tap_mallory;
CREATE SCHEMA v AUTHORIZATION tap_victim;

-- 1. pipeline_reset casts the new watermark to the column's type. A domain
-- with a CHECK calling mallory's function ran it as the catalog owner.
SET ROLE tap_mallory;
CREATE TABLE m.calls (who text);
CREATE FUNCTION m.pwn(bigint) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO m.calls VALUES (current_user);
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'ALTER ROLE tap_mallory SUPERUSER';
  END IF;
  RETURN true;
END $$;
CREATE TABLE m.src (id bigint);
CREATE TABLE m.dst (id bigint);
SELECT pipeline_create('p_reset', 'm.src', 'm.dst', watermark => 'id');
CREATE DOMAIN m.wm AS bigint CHECK (m.pwn(VALUE));
ALTER TABLE m.src ALTER COLUMN id TYPE m.wm;
SELECT lives_ok($$ SELECT pipeline_reset('p_reset', '0') $$, 'mallory resets her pipeline through her domain');
RESET ROLE;
SELECT is((SELECT rolsuper FROM pg_roles WHERE rolname = 'tap_mallory'), false,
          'the domain''s CHECK did not make mallory superuser');
SELECT results_eq($$ SELECT DISTINCT who FROM m.calls $$, $$ VALUES ('tap_mallory'::text) $$,
                  'the cast of pipeline_reset ran as the pipeline''s owner');
SELECT is((SELECT last_watermark FROM pipeline.pipelines WHERE name = 'p_reset'), '0',
          'and the watermark was reset');

-- 3. A source view whose function changes settings for the session: the
-- change must not outlive the run, or the next statement a superuser plans
-- resolves names through mallory's schema.
SET ROLE tap_mallory;
CREATE FUNCTION m.leak() RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
  PERFORM set_config('search_path', 'm, pg_catalog', false);
  PERFORM set_config('work_mem', '77kB', false);
  PERFORM set_config('statement_timeout', '1ms', false);
  RETURN true;
END $$;
CREATE TABLE m.s3 (id int);
CREATE TABLE m.d3 (id int);
CREATE VIEW m.v3 AS SELECT id FROM m.s3 WHERE m.leak();
INSERT INTO m.s3 VALUES (1), (2);
SELECT pipeline_create('p_leak', 'm.v3', 'm.d3', watermark => 'id');
RESET ROLE;
SET search_path = public;
SET work_mem = '4MB';
SELECT is((SELECT status || ' ' || rows_loaded FROM pipeline_run('p_leak')), 'succeeded 2',
          'a superuser runs mallory''s pipeline, whose view changes settings');
SELECT is(current_setting('search_path'), 'public', 'the caller''s search_path is unchanged after the run');
SELECT is(current_setting('work_mem'), '4MB', 'and so is work_mem');
SELECT is(current_setting('statement_timeout'), '0', 'and statement_timeout');
-- the same through pipeline_run_all, whose SET clause covers only search_path
INSERT INTO m.s3 VALUES (3);
SET work_mem = '4MB';
SELECT is((SELECT status FROM pipeline_run_all() WHERE pipeline = 'p_leak'), 'succeeded',
          'pipeline_run_all runs it');
SELECT is(current_setting('work_mem'), '4MB', 'and leaves the caller''s work_mem alone');

-- 10. A replay marks the rows it loaded; the ids come from the diverted rows,
-- which the owner's trigger can forge with pipeline_divert(). Victim's
-- quarantined row must keep its violations.
SET ROLE tap_victim;
CREATE TABLE v.src (id bigserial PRIMARY KEY, n int);
CREATE TABLE v.dst (id bigint, n int);
SELECT pipeline_create('pv', 'v.src', 'v.dst', watermark => 'id');
SELECT pipeline_contract('pv', '{"columns": {"n": {"max": 10}}}');
INSERT INTO v.src (n) VALUES (100);
SELECT pipeline_run('pv');
RESET ROLE;
SET ROLE tap_mallory;
CREATE TABLE m.qid (id bigint);
CREATE TABLE m.s10 (id bigserial PRIMARY KEY, n int);
CREATE TABLE m.d10 (id bigint, n int);
CREATE FUNCTION m.forge() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_catalog.pipeline_divert(ARRAY['forged'],
                                     jsonb_build_object('__pipeline_qid', (SELECT id FROM m.qid)));
  RETURN NEW;
END $$;
CREATE TRIGGER forge BEFORE INSERT ON m.d10 FOR EACH ROW EXECUTE FUNCTION m.forge();
SELECT pipeline_create('pm', 'm.s10', 'm.d10', watermark => 'id');
SELECT pipeline_contract('pm', '{"columns": {"n": {"max": 10}}}');
INSERT INTO m.s10 (n) VALUES (50);
SELECT pipeline_run('pm');
SELECT pipeline_contract('pm', '{"columns": {"n": {"max": 1000}}}');
RESET ROLE;
INSERT INTO m.qid SELECT id FROM pipeline.quarantine WHERE pipeline = 'pv';
SET ROLE tap_mallory;
SELECT lives_ok($$ SELECT pipeline_replay('pm') $$, 'mallory replays her row through a forging trigger');
RESET ROLE;
SELECT results_eq($$ SELECT violations, replayed_at IS NULL FROM pipeline.quarantine WHERE pipeline = 'pv' $$,
                  $$ VALUES ('{n.max}'::text[], true) $$,
                  'victim''s quarantined row keeps its violations and stays to replay');

-- An owner's code that raises 57014 (query_canceled) itself is no cancel:
-- it fails its own run, and a superuser's pipeline_run_all goes on to the
-- other owners' pipelines.
SET ROLE tap_mallory;
CREATE FUNCTION m.fake_cancel() RETURNS bool LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'not a cancel' USING ERRCODE = 'query_canceled'; END $$;
CREATE TABLE m.s4 (id int);
CREATE TABLE m.d4 (id int);
INSERT INTO m.s4 VALUES (1);
SELECT pipeline_create('a_cancel', 'm.s4', 'm.d4', transform => 'SELECT id FROM batch WHERE m.fake_cancel()');
RESET ROLE;
SET ROLE tap_victim;
CREATE TABLE v.s4 (id int);
CREATE TABLE v.d4 (id int);
INSERT INTO v.s4 VALUES (1);
SELECT pipeline_create('z_victim', 'v.s4', 'v.d4');
RESET ROLE;
SELECT results_eq($$ SELECT pipeline, status, sqlstate FROM pipeline_run_all()
                     WHERE pipeline IN ('a_cancel', 'z_victim') ORDER BY 1 $$,
                  $$ VALUES ('a_cancel'::text, 'failed'::text, '57014'::text),
                            ('z_victim', 'succeeded', NULL) $$,
                  'a raised 57014 fails only its own run of pipeline_run_all');

-- A target's CHECK constraint is a rule of the contract. Its deparsed text
-- used to be parsed again in the load under the owner's search_path, where
-- mallory's public.array_length(text[], int) beat pg_catalog's anyarray one.
SET ROLE tap_victim;
SET search_path = v, public;
CREATE TABLE v.tsrc (id bigserial PRIMARY KEY, tags text[]);
CREATE TABLE v.tdst (id bigint, tags text[] CHECK (array_length(tags, 1) < 3));
INSERT INTO v.tsrc (tags) VALUES ('{secret-a,secret-b}'), ('{x,y,z}'), (NULL);
SELECT pipeline_create('vtags', 'v.tsrc', 'v.tdst', watermark => 'id');
RESET ROLE;
-- after victim's table and pipeline: mallory's closer match appears
GRANT CREATE ON SCHEMA public TO tap_mallory;
SET ROLE tap_mallory;
CREATE TABLE m.loot (who text, data text);
GRANT INSERT ON m.loot TO PUBLIC;
GRANT USAGE ON SCHEMA m TO PUBLIC;
CREATE FUNCTION public.array_length(text[], int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO m.loot VALUES (current_user, pg_catalog.array_to_string($1, ','));
  RETURN pg_catalog.array_length($1, $2);
END $$;
RESET ROLE;
SET ROLE tap_victim;
SET search_path = v, public;
SELECT results_eq($$ SELECT rows_loaded, rows_quarantined FROM pipeline_run('vtags') $$,
                  $$ VALUES (2::bigint, 1::bigint) $$,
                  'the CHECK constraint still quarantines the row that breaks it, and passes NULL');
SELECT results_eq($$ SELECT violations FROM pipeline.quarantine WHERE pipeline = 'vtags' $$,
                  $$ VALUES ('{tdst_tags_check}'::text[]) $$, 'under the constraint''s name');
RESET ROLE;
SET search_path = public;
SELECT is((SELECT count(*) FROM m.loot), 0::bigint, 'mallory''s array_length never ran in victim''s load');

-- A rule row edited with a NULL argument crashed the server at the next run.
SET ROLE tap_mallory;
SELECT throws_ok($$ INSERT INTO pipeline.contract_rules (pipeline, owner, rule, kind, column_name, argument)
                    VALUES ('p_leak', 'tap_mallory', 'id.not_null', 'not_null', 'id', NULL) $$,
                 '23502', NULL, 'a rule needs an argument (JSON null at least)');
RESET ROLE;

-- One owner's failing source does not make pipeline.status fail for the
-- superuser (its lag runs that source's view): that row's lag is NULL.
SET ROLE tap_mallory;
CREATE FUNCTION m.broken() RETURNS bool LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'broken source'; END $$;
CREATE TABLE m.s7 (id int);
INSERT INTO m.s7 VALUES (1);
CREATE VIEW m.v7 AS SELECT id FROM m.s7 WHERE m.broken();
SELECT pipeline_create('p_broken', 'm.v7', 'm.d3', watermark => 'id');
RESET ROLE;
SELECT ok((SELECT count(*) FROM pipeline.status) > 1, 'pipeline.status lists every pipeline although one source fails');
SELECT is((SELECT lag FROM pipeline.status WHERE pipeline = 'p_broken'), NULL, 'and the failing one''s lag is unknown');

-- pipeline_breaks_check is callable by everyone: a constraint on a system
-- column or the whole row (conkey 0 or below) read and wrote outside the row.
SET ROLE tap_mallory;
CREATE TABLE m.t_sys (a int, CONSTRAINT c_sys CHECK (tableoid <> 0));
SELECT throws_ok(format('SELECT pipeline_breaks_check(%s, 1)',
                        (SELECT oid FROM pg_constraint WHERE conname = 'c_sys')),
                 '0A000', NULL, 'a constraint on a system column is refused, not read out of bounds');
SELECT throws_ok(format('SELECT pipeline_breaks_check(%s, 1, 2)',
                        (SELECT oid FROM pg_constraint WHERE conname = 'tdst_tags_check')),
                 '42804', NULL, 'so are values that do not fit the constraint''s columns');
-- such constraints stay the INSERT's: a pipeline into the table runs
CREATE TABLE m.s_whole (id int, b int);
CREATE TABLE m.d_whole (id int, b int, CONSTRAINT whole CHECK (id > 0 AND d_whole IS NOT NULL));
INSERT INTO m.s_whole VALUES (1, 1), (2, 2);
SELECT pipeline_create('p_whole', 'm.s_whole', 'm.d_whole');
SELECT is((SELECT status || ' ' || rows_loaded FROM pipeline_run('p_whole')), 'succeeded 2',
          'a target with a whole-row CHECK is loaded, the INSERT checking it');
-- intervals that overflowed the worker's and the retries' arithmetic
SELECT throws_ok($$ SELECT pipeline_alter('p_whole', '{"poll_interval": "178000000 years"}') $$,
                 '22023', NULL, 'poll_interval is at most a day');
SELECT throws_ok($$ SELECT pipeline_alter('p_whole', '{"retry_delay": "5000 years"}') $$,
                 '22023', NULL, 'retry_delay is at most a year');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
