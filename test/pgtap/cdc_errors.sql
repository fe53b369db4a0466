-- pipeline_create_cdc refuses misuse with its own SQLSTATE before it
-- touches a source; the rest of CDC is tested against real slots in
-- test/shell/cdc.sh (a slot cannot be made inside this test's transaction).
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION pipeline;
SELECT plan(14);

CREATE SCHEMA mirror;
CREATE TABLE src (id bigserial PRIMARY KEY, v text);
CREATE TABLE dst (id bigint PRIMARY KEY, v text);
SELECT pipeline_create('plain', 'src', 'dst', watermark => 'id');

SELECT throws_ok($$ SELECT pipeline_create_cdc(NULL, 'pub', 'mirror') $$,
                 '22004', 'name of a CDC pipeline must not be null', 'NULL name: 22004');
SELECT throws_ok($$ SELECT pipeline_create_cdc('c', NULL, 'mirror') $$,
                 '22004', 'publication of a CDC pipeline must not be null', 'NULL publication: 22004');
SELECT throws_ok($$ SELECT pipeline_create_cdc('', 'pub', 'mirror') $$,
                 '42602', 'pipeline name must not be empty', 'empty name: 42602');
SELECT throws_ok($$ SELECT pipeline_create_cdc('c', 'pub', 'mirror', slot => 'Bad-Slot') $$,
                 '42602', NULL, 'invalid slot name: 42602');
SELECT throws_ok($$ SELECT pipeline_create_cdc('c', 'pub', 'nowhere') $$,
                 '3F000', 'schema "nowhere" does not exist', 'missing target schema: 3F000');
SELECT throws_ok($$ SELECT pipeline_create_cdc('c', 'pub', NULL) $$,
                 '22004', 'CDC pipeline "c" needs a target schema or an events table',
                 'neither a target schema nor events: 22004');
SELECT throws_ok($$ SELECT pipeline_create_cdc('c', 'pub', 'mirror', options => '{"transform": "x"}') $$,
                 '22023', 'unrecognized option "transform" for pipeline "c"', 'an option CDC does not take: 22023');
SELECT throws_ok($$ SELECT pipeline_create_cdc('c', 'pub', 'mirror', options => '{"poll_interval": "1 ms"}') $$,
                 '22023', NULL, 'an invalid option value: 22023');
SELECT throws_ok($$ SELECT pipeline_create_cdc('plain', 'pub', 'mirror') $$,
                 '42710', 'pipeline "plain" already exists', 'duplicate name: 42710');
SELECT throws_ok($$ SELECT pipeline_create_cdc('c', 'pub', 'mirror') $$,
                 '25001', 'pipeline_create_cdc() cannot run inside a transaction block',
                 'a transaction block: 25001 (a slot is not transactional)');

CREATE ROLE cdc_plain;
GRANT USAGE ON SCHEMA mirror TO cdc_plain;
SET ROLE cdc_plain;
SELECT throws_ok($$ SELECT pipeline_create_cdc('c', 'pub', 'mirror') $$,
                 '42501', 'role "cdc_plain" cannot read replication slots',
                 'an owner without REPLICATION: 42501');
SELECT throws_ok($$ SELECT pipeline_create_cdc('c', 'pub', 'mirror', connection => 'host=elsewhere') $$,
                 '42501', 'only superusers can create CDC pipelines with a connection string',
                 'a connection string from a non-superuser: 42501');
RESET ROLE;

SELECT is((SELECT count(*) FROM pipeline.pipelines WHERE name = 'c'), 0::bigint,
          'failed creates left no catalog rows');
SELECT is((SELECT row(s.*)::text FROM pipeline_cdc_slot('plain') s), '(,,)',
          'pipeline_cdc_slot of a table pipeline is all NULL');

SELECT * FROM finish();
ROLLBACK;
