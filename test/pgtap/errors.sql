-- Every misuse is an ERROR with its own SQLSTATE, and nothing is left behind.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION pipeline;
SELECT plan(24);

CREATE TABLE src (id bigserial PRIMARY KEY, v text, n int);
CREATE TABLE dst (id bigint PRIMARY KEY, v text);
CREATE TABLE dst_nopk (id bigint, v text);
CREATE VIEW v_dst AS SELECT * FROM dst;
SELECT pipeline_create('ok', 'src', 'dst', watermark => 'id');

SELECT throws_ok($$ SELECT pipeline_create('x', 'src', 'dst', transform => 'SELECT id, v FRM batch') $$,
                 '42601', NULL, 'transform syntax error: 42601');
SELECT throws_ok($$ SELECT pipeline_create('x', 'src', 'dst', transform => 'INSERT INTO dst VALUES (1)') $$,
                 '42601', NULL, 'transform that is not a SELECT: 42601');
SELECT throws_ok($$ SELECT pipeline_create('x', 'missing', 'dst') $$,
                 '42P01', 'source relation "missing" does not exist', 'missing source: 42P01');
SELECT throws_ok($$ SELECT pipeline_create('x', 'src', 'missing') $$,
                 '42P01', 'target relation "missing" does not exist', 'missing target: 42P01');
SELECT throws_ok($$ SELECT pipeline_create('x', 'src', 'dst', watermark => 'nope') $$,
                 '42703', NULL, 'unknown watermark column: 42703');
SELECT throws_ok($$ SELECT pipeline_create('x', 'src', 'dst', mode => 'upsert', key => '{nope}') $$,
                 '42703', NULL, 'unknown key column: 42703');
SELECT throws_ok($$ SELECT pipeline_create('x', 'src', 'dst', transform => 'SELECT id, n AS other FROM batch') $$,
                 '42703', NULL, 'transform column the target lacks: 42703');
SELECT throws_ok($$ SELECT pipeline_create('x', 'src', 'dst', transform => 'SELECT nope FROM batch') $$,
                 '42703', NULL, 'transform reading an unknown column: 42703');
SELECT throws_ok($$ SELECT pipeline_create('ok', 'src', 'dst') $$,
                 '42710', 'pipeline "ok" already exists', 'duplicate name: 42710');
SELECT throws_ok($$ SELECT pipeline_create('x', 'src', 'dst', mode => 'merge') $$,
                 '22023', NULL, 'invalid mode: 22023');
SELECT throws_ok($$ SELECT pipeline_create('x', 'src', 'dst', options => '{"nope": 1}') $$,
                 '22023', NULL, 'unknown option: 22023');
SELECT throws_ok($$ SELECT pipeline_create('x', 'src', 'dst', options => '{"batch_size": 0}') $$,
                 '22023', NULL, 'invalid batch_size: 22023');
SELECT throws_ok($$ SELECT pipeline_create('x', 'src', 'dst', options => '{"enabled": "yes"}') $$,
                 '22023', NULL, 'invalid enabled: 22023');
SELECT throws_ok($$ SELECT pipeline_create('x', 'src', 'dst', watermark => 'id', options => '{"lag": "soon"}') $$,
                 '22023', NULL, 'invalid lag: 22023');
SELECT throws_ok($$ SELECT pipeline_create('x', 'src', 'dst', watermark => 'v') $$,
                 '42804', NULL, 'watermark of an unsupported type: 42804');
SELECT throws_ok($$ SELECT pipeline_create('x', 'src', 'dst_nopk', mode => 'upsert') $$,
                 '42P10', NULL, 'upsert into a table without a key: 42P10');
SELECT throws_ok($$ SELECT pipeline_create('x', 'src', 'v_dst') $$,
                 '42809', NULL, 'target that is a view: 42809');
SELECT throws_ok($$ SELECT pipeline_run('nope') $$,
                 '42704', 'pipeline "nope" does not exist', 'pipeline_run of an unknown pipeline: 42704');
SELECT throws_ok($$ SELECT pipeline_alter('nope', '{}') $$,
                 '42704', NULL, 'pipeline_alter of an unknown pipeline: 42704');
SELECT throws_ok($$ SELECT pipeline_drop('nope') $$,
                 '42704', NULL, 'pipeline_drop of an unknown pipeline: 42704');
SELECT throws_ok($$ SELECT pipeline_reset('nope') $$,
                 '42704', NULL, 'pipeline_reset of an unknown pipeline: 42704');
SELECT throws_ok($$ SELECT * FROM pipeline_explain('nope') $$,
                 '42704', NULL, 'pipeline_explain of an unknown pipeline: 42704');
SELECT throws_ok($$ SELECT pipeline_create(NULL, 'src', 'dst') $$,
                 '22004', NULL, 'null name: 22004');
SELECT is((SELECT count(*) FROM pipeline.pipelines WHERE name = 'x'), 0::bigint,
          'failed creates left no catalog rows');

SELECT * FROM finish();
ROLLBACK;
