-- Ownership: runs execute as the owner under the pinned search_path; other
-- roles can neither see nor touch a pipeline.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION pipeline;
SELECT plan(33);

CREATE ROLE tap_alice;
CREATE ROLE tap_bob;
CREATE ROLE tap_team;
GRANT tap_team TO tap_bob;
CREATE SCHEMA alice AUTHORIZATION tap_alice;
CREATE SCHEMA bob AUTHORIZATION tap_bob;
CREATE TABLE public.secret (x int);
INSERT INTO public.secret VALUES (42);

SET ROLE tap_alice;
SET search_path = alice, public;
CREATE TABLE alice.src (id bigserial PRIMARY KEY, v int);
CREATE TABLE alice.dst (id bigint, v int, who text, path text);
CREATE TABLE alice.lookup (v int);
INSERT INTO alice.lookup VALUES (1);
INSERT INTO alice.src (v) VALUES (1), (2);
-- unqualified "lookup" resolves through the creator's search_path
SELECT lives_ok($$ SELECT pipeline_create('alice_p', 'src', 'dst', watermark => 'id',
  transform => 'SELECT id, v + (SELECT count(*) FROM lookup)::int AS v, current_user AS who,
                       current_setting(''search_path'') AS path FROM batch') $$,
  'a role without special privileges creates a pipeline on its own tables');
SELECT is((SELECT owner::text FROM pipeline.pipelines WHERE name = 'alice_p'), 'tap_alice',
          'the creator owns the pipeline');
SELECT is((SELECT count(*) FROM pipeline.pipelines), 1::bigint, 'alice sees her pipeline');
RESET ROLE;

-- bob: cannot see it, run it, alter, reset, drop or explain it
SET ROLE tap_bob;
SET search_path = bob, public;
SELECT is((SELECT count(*) FROM pipeline.pipelines), 0::bigint, 'bob does not see alice''s pipeline');
SELECT is((SELECT count(*) FROM pipeline.status), 0::bigint, 'nor in pipeline.status');
SELECT throws_ok($$ SELECT pipeline_run('alice_p') $$, '42501', NULL, 'bob cannot run it');
SELECT throws_ok($$ SELECT pipeline_alter('alice_p', '{"enabled": false}') $$, '42501', NULL, 'bob cannot alter it');
SELECT throws_ok($$ SELECT pipeline_reset('alice_p') $$, '42501', NULL, 'bob cannot reset it');
SELECT throws_ok($$ SELECT pipeline_drop('alice_p') $$, '42501', NULL, 'bob cannot drop it');
SELECT throws_ok($$ SELECT * FROM pipeline_explain('alice_p') $$, '42501', NULL, 'bob cannot explain it');
SELECT throws_ok($$ UPDATE pipeline.pipelines SET owner = 'tap_bob' $$, '42501', NULL,
                 'bob cannot write the catalog directly');
SELECT throws_ok($$ INSERT INTO pipeline.runs (pipeline, owner, status, started_at, finished_at)
                    VALUES ('alice_p', 'tap_bob', 'failed', now(), now()) $$, '42501', NULL,
                 'nor forge run history');
SELECT throws_ok($$ SELECT pipeline_create('bob_p', 'alice.src', 'bob.nothing') $$, '42501', NULL,
                 'bob cannot read alice''s schema through a pipeline');
RESET ROLE;

-- the superuser runs it: the run executes as alice, under alice's search_path
CREATE TABLE public.lookup (v int);
INSERT INTO public.lookup SELECT g FROM generate_series(1, 100) g;
SET search_path = public;
SELECT is((SELECT status FROM pipeline_run('alice_p')), 'succeeded', 'the superuser can run alice''s pipeline');
SELECT results_eq($$ SELECT DISTINCT who, path FROM alice.dst $$,
                  $$ VALUES ('tap_alice'::text, 'alice, public'::text) $$,
                  'it ran as alice, under the search_path pinned at create');
SELECT results_eq($$ SELECT v FROM alice.dst ORDER BY id $$, $$ VALUES (2), (3) $$,
                  'the caller''s search_path did not change what the transform read');

-- alice cannot read public.secret: neither create nor alter can reach it
SELECT throws_ok($$ SELECT pipeline_alter('alice_p',
  '{"transform": "SELECT id, (SELECT max(x) FROM public.secret) AS v FROM batch"}') $$,
  '42501', NULL, 'a transform reading a table the owner cannot read is refused at alter, even by a superuser');

-- members of the owning role may act for it
SET ROLE tap_alice;
CREATE TABLE alice.team_dst (id bigint, v int);
RESET ROLE;
GRANT tap_team TO tap_alice;
SET ROLE tap_team;
SELECT throws_ok($$ SELECT pipeline_create('team_p', 'alice.src', 'alice.team_dst') $$, '42501', NULL,
                 'a role without privileges on the tables cannot create a pipeline on them');
RESET ROLE;
GRANT USAGE ON SCHEMA alice TO tap_team;
GRANT SELECT ON alice.src TO tap_team;
GRANT INSERT ON alice.team_dst TO tap_team;
SET ROLE tap_team;
SELECT lives_ok($$ SELECT pipeline_create('team_p', 'alice.src', 'alice.team_dst', watermark => 'id') $$,
                'with SELECT on the source and INSERT on the target it can');
RESET ROLE;
SET ROLE tap_bob;
SELECT is((SELECT status FROM pipeline_run('team_p')), 'succeeded', 'a member of the owning role can run it');
SELECT is((SELECT count(*) FROM pipeline.runs WHERE pipeline = 'team_p'), 1::bigint,
          'and sees its runs');
SELECT is((SELECT count(*) FROM pipeline.runs WHERE pipeline = 'alice_p'), 0::bigint,
          'but not the runs of alice''s pipeline');
RESET ROLE;

-- contracts and quarantined rows belong to the pipeline's owner too
SET ROLE tap_alice;
SELECT lives_ok($$ SELECT pipeline_contract('alice_p', '{"columns": {"v": {"max": 50}}}') $$,
                'the owner sets a contract');
INSERT INTO alice.src (v) VALUES (1000);
RESET ROLE;
SELECT is((SELECT rows_quarantined FROM pipeline_run('alice_p')), 1::bigint,
          'a run quarantines the bad row');
SET ROLE tap_bob;
SELECT is((SELECT count(*) FROM pipeline.quarantine), 0::bigint, 'bob does not see alice''s quarantined rows');
SELECT is((SELECT count(*) FROM pipeline.contract_rules), 0::bigint, 'nor her contract''s rules');
SELECT throws_ok($$ SELECT pipeline_contract('alice_p', NULL) $$, '42501', NULL, 'bob cannot change her contract');
SELECT throws_ok($$ SELECT * FROM pipeline_replay('alice_p') $$, '42501', NULL, 'nor replay her quarantine');
RESET ROLE;
SET ROLE tap_bob;
UPDATE pipeline.contract_rules SET action = 'warn';
SELECT throws_ok($$ INSERT INTO pipeline.contract_rules (pipeline, owner, rule, kind, column_name, argument)
                    VALUES ('alice_p', 'tap_bob', 'v.min', 'min', 'v', '0') $$, '42501', NULL,
                 'bob cannot add a rule to her pipeline');
RESET ROLE;
SET ROLE tap_alice;
SELECT is((SELECT action FROM pipeline.contract_rules WHERE rule = 'v.max'), 'quarantine',
          'bob''s UPDATE did not reach her rules');
SELECT is((SELECT count(*) FROM pipeline.quarantine WHERE pipeline = 'alice_p'), 1::bigint,
          'alice sees her quarantined row');
-- the owner edits a rule from psql; the next run uses it
UPDATE pipeline.contract_rules SET action = 'warn' WHERE rule = 'v.max';
INSERT INTO alice.src (v) VALUES (2000);
RESET ROLE;
SELECT results_eq($$ SELECT rows_loaded, rows_quarantined, rule_failures::text FROM pipeline_run('alice_p') $$,
                  $$ VALUES (1::bigint, 0::bigint, '{"v.max": 1}'::text) $$,
                  'a rule edited in psql takes effect: the row loads with a warning');
SET ROLE tap_alice;
SELECT throws_ok($$ UPDATE pipeline.contract_rules SET owner = 'tap_bob' $$, '42501', NULL,
                 'a rule cannot be handed to another role');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
