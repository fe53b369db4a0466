-- Contracts and conversion count every row (issue 14, items 4 and 8-14).
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION pipeline;
SELECT plan(33);

-- 8. a value that fails its assignment cast is quarantined as <col>.type, per row
CREATE TABLE s8 (id int, b bigint, n numeric, t text);
CREATE TABLE d8 (id int, b int, n numeric(10,2), t varchar(3));
INSERT INTO s8 VALUES (1, 3000000000, 1, 'ab'), (2, 5, 99999999999, 'ab'),
  (3, 5, 1, 'abcd'), (4, 7, 2.555, 'x  '), (5, NULL, NULL, NULL);
SELECT pipeline_create('casts', 's8', 'd8', watermark => 'id');
SELECT results_eq($$ SELECT status, rows_read, rows_loaded, rows_quarantined FROM pipeline_run('casts') $$,
  $$ VALUES ('succeeded', 5::bigint, 2::bigint, 3::bigint) $$,
  'bigint into int, numeric into numeric(10,2), text into varchar(3): bad values are quarantined');
SELECT results_eq($$ SELECT (data->>'id')::int, violations FROM pipeline.quarantine WHERE pipeline = 'casts' ORDER BY 1 $$,
  $$ VALUES (1, '{b.type}'::text[]), (2, '{n.type}'), (3, '{t.type}') $$, 'each under the rule of its column');
SELECT results_eq($$ SELECT data->'b', data->'n', data->'t' FROM pipeline.quarantine WHERE pipeline = 'casts' ORDER BY id $$,
  $$ VALUES ('3000000000'::jsonb, '1'::jsonb, '"ab"'::jsonb), ('5', '99999999999', '"ab"'), ('5', '1', '"abcd"') $$,
  'the quarantine keeps the values as the transform made them');
SELECT results_eq($$ SELECT id, b, n, t FROM d8 ORDER BY id $$,
  $$ VALUES (4, 7, 2.56::numeric(10,2), 'x  '::varchar(3)), (5, NULL, NULL, NULL) $$,
  'good rows load as INSERT would cast them');
SELECT is((SELECT pipeline_try_cast(0.8::numeric, NULL::int)), 1, 'pipeline_try_cast: numeric 0.8 into int is 1');
SELECT is((SELECT pipeline_try_cast(3000000000::bigint, NULL::int)), NULL, 'pipeline_try_cast: out of range is NULL');

-- 8b. text into any type: a value its input refuses is quarantined, never cut short
CREATE TYPE color AS ENUM ('red', 'green');
CREATE DOMAIN positive AS int CHECK (VALUE > 0);
CREATE DOMAIN small_code AS text CHECK (length(VALUE) <= 2);
CREATE TABLE s8b (id int, a text, b text, bits text, codes text, c text, p text, sc text, m text);
CREATE TABLE d8b (id int, a int[], b bytea, bits bit(3), codes varchar(3)[], c color, p positive,
  sc small_code, m macaddr);
INSERT INTO s8b VALUES
  (1, '{1,2}', '\x01', '101', '{ab}', 'red', '5', 'ok', '08:00:2b:01:02:03'),
  (2, '{1,x}', '\x01', '101', '{ab}', 'red', '5', 'ok', '08:00:2b:01:02:03'),
  (3, '{1,2}', '\xzz', '101', '{ab}', 'red', '5', 'ok', '08:00:2b:01:02:03'),
  (4, '{1,2}', '\x01', '1011', '{ab}', 'red', '5', 'ok', '08:00:2b:01:02:03'),
  (5, '{1,2}', '\x01', '101', '{abcd}', 'red', '5', 'ok', '08:00:2b:01:02:03'),
  (6, '{1,2}', '\x01', '101', '{ab}', 'blue', '5', 'ok', '08:00:2b:01:02:03'),
  (7, '{1,2}', '\x01', '101', '{ab}', 'red', '-5', 'ok', '08:00:2b:01:02:03'),
  (8, '{1,2}', '\x01', '101', '{ab}', 'red', '5', 'too long', '08:00:2b:01:02:03'),
  (9, '{1,2}', '\x01', '101', '{ab}', 'red', '5', 'ok', 'not a mac'),
  (10, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
SELECT pipeline_create('any_type', 's8b', 'd8b', watermark => 'id');
SELECT results_eq($$ SELECT status, rows_read, rows_loaded, rows_quarantined FROM pipeline_run('any_type') $$,
  $$ VALUES ('succeeded', 10::bigint, 2::bigint, 8::bigint) $$,
  'arrays, bytea, bit, enum, domains and macaddr: the run succeeds and counts every row');
SELECT results_eq($$ SELECT (data->>'id')::int, violations FROM pipeline.quarantine WHERE pipeline = 'any_type' ORDER BY 1 $$,
  $$ VALUES (2, '{a.type}'::text[]), (3, '{b.type}'), (4, '{bits.type}'), (5, '{codes.type}'), (6, '{c.type}'),
            (7, '{p.type}'), (8, '{sc.type}'), (9, '{m.type}') $$,
  'each bad value under the rule of its column: a too long bit string or array element is not truncated');
SELECT results_eq($$ SELECT id, a, bits, codes, c, p::int, sc::text FROM d8b ORDER BY id $$,
  $$ VALUES (1, '{1,2}'::int[], B'101'::bit(3), '{ab}'::varchar(3)[], 'red'::color, 5, 'ok'),
            (10, NULL, NULL, NULL, NULL, NULL, NULL) $$,
  'the good rows load');
CREATE DOMAIN required AS int NOT NULL;
CREATE TABLE s8d (id int, n int);
CREATE TABLE d8d (id int, p positive, r required);
INSERT INTO s8d VALUES (1, 5), (2, -5), (3, NULL);
SELECT pipeline_create('domains', 's8d', 'd8d', watermark => 'id', transform => 'SELECT id, n AS p, n AS r FROM batch');
SELECT results_eq($$ SELECT status, rows_loaded, rows_quarantined FROM pipeline_run('domains') $$,
  $$ VALUES ('succeeded', 1::bigint, 2::bigint) $$, 'int into domains: a CHECK or NOT NULL of the domain quarantines');
SELECT results_eq($$ SELECT (data->>'id')::int, violations FROM pipeline.quarantine WHERE pipeline = 'domains' ORDER BY 1 $$,
  $$ VALUES (2, '{p.type}'::text[]), (3, '{r.not_null}') $$,
  'the domain''s CHECK breaks <column>.type, its NOT NULL <column>.not_null');
CREATE FUNCTION boom(text) RETURNS bool LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'boom %', $1 USING ERRCODE = 'P0001'; END$$;
CREATE DOMAIN exploding AS text CHECK (boom(VALUE));
CREATE TABLE d8c (id int, e exploding);
SELECT pipeline_create('not_data', 's8b', 'd8c', watermark => 'id', transform => 'SELECT id, sc AS e FROM batch');
SELECT results_eq($$ SELECT status, sqlstate, error FROM pipeline_run('not_data') $$,
  $$ VALUES ('failed', 'P0001', 'boom ok') $$,
  'an error that is not about the data (raised by the domain''s CHECK) still fails the run, and NULL is not checked for the type');

-- 9. rules see the values that will be stored
CREATE TABLE s9 (id int, c numeric);
CREATE TABLE d9 (id int, c int);
INSERT INTO s9 VALUES (1, 0.8), (2, 1.2), (3, 2.6), (4, 5);
SELECT pipeline_create('stored', 's9', 'd9', watermark => 'id');
SELECT pipeline_contract('stored', '{"columns": {"c": {"min": 1, "unique": true}}, "checks": {"not_3": "c <> 3"}}');
SELECT results_eq($$ SELECT rows_loaded, rows_quarantined FROM pipeline_run('stored') $$,
  $$ VALUES (1::bigint, 3::bigint) $$, 'numeric into int: rules checked after the cast');
SELECT results_eq($$ SELECT (data->>'id')::int, violations FROM pipeline.quarantine WHERE pipeline = 'stored' ORDER BY 1 $$,
  $$ VALUES (1, '{c.unique}'::text[]), (2, '{c.unique}'), (3, '{not_3}') $$,
  '0.8 and 1.2 both store 1 (min passes, unique breaks); 2.6 stores 3 and breaks the check');
SELECT results_eq($$ SELECT id, c FROM d9 $$, $$ VALUES (4, 5) $$, 'the clean row loads');

-- 10. implicit rules always quarantine
CREATE TABLE s10 (k int, t text);
CREATE TABLE d10 (k int NOT NULL, t numeric CHECK (t > 0));
INSERT INTO s10 VALUES (NULL, '1'), (2, 'n/a'), (3, '-1'), (4, '4'), (5, '200');
SELECT pipeline_create('implicit', 's10', 'd10');
SELECT pipeline_contract('implicit', '{"columns": {"k": {"not_null": true}, "t": {"type": "numeric"}},
  "checks": {"d10_t_check": "t < 100"},
  "actions": {"k.not_null": "warn", "t.type": "warn", "d10_t_check": "warn"}}');
SELECT results_eq($$ SELECT status, rows_loaded, rows_quarantined FROM pipeline_run('implicit') $$,
  $$ VALUES ('succeeded', 1::bigint, 4::bigint) $$, 'a warn rule named like an implicit one does not replace it');
SELECT results_eq($$ SELECT data->>'t', violations FROM pipeline.quarantine WHERE pipeline = 'implicit' ORDER BY 1 $$,
  $$ VALUES ('-1', '{d10_t_check}'::text[]), ('1', '{k.not_null}'), ('200', '{d10_t_check}'), ('n/a', '{t.type}') $$,
  'NULL into NOT NULL, n/a into numeric and a CHECK break are quarantined; the contract''s check is part of the CHECK''s rule');
SELECT results_eq($$ SELECT rule, action FROM pipeline.contract_rules WHERE pipeline = 'implicit' ORDER BY 1 $$,
  $$ VALUES ('d10_t_check', 'warn'), ('k.not_null', 'warn'), ('t.type', 'warn') $$,
  'the stored contract keeps its actions');

-- 4. upsert: NULL keys are quarantined, read = loaded + quarantined
CREATE TABLE s4 (id int, wm int);
CREATE TABLE d4 (id int, v int);
CREATE UNIQUE INDEX ON d4 (id);
INSERT INTO s4 VALUES (NULL, 1), (NULL, 2), (NULL, 3), (1, 4);
SELECT pipeline_create('null_keys', 's4', 'd4', watermark => 'wm', mode => 'upsert', key => '{id}',
  transform => 'SELECT id, wm AS v, wm FROM batch');
SELECT results_eq($$ SELECT rows_read, rows_loaded, rows_quarantined FROM pipeline_run('null_keys') $$,
  $$ VALUES (4::bigint, 1::bigint, 3::bigint) $$, 'NULL upsert keys break id.not_null');
SELECT is((SELECT count(*) FROM pipeline.quarantine WHERE pipeline = 'null_keys' AND violations = '{id.not_null}'),
  3::bigint, 'under id.not_null');
CREATE TABLE d4n (id int, v int);
CREATE UNIQUE INDEX ON d4n (id) NULLS NOT DISTINCT;
SELECT pipeline_create('null_key', 's4', 'd4n', watermark => 'wm', mode => 'upsert', key => '{id}',
  transform => 'SELECT id, wm AS v, wm FROM batch');
SELECT results_eq($$ SELECT rows_loaded, rows_quarantined FROM pipeline_run('null_key') $$,
  $$ VALUES (2::bigint, 0::bigint) $$, 'with NULLS NOT DISTINCT a NULL is one key, as in the index');
SELECT results_eq($$ SELECT id, v FROM d4n ORDER BY id $$, $$ VALUES (1, 4), (NULL, 3) $$,
  'the NULL key keeps its newest row');

-- 11. the quarantine keeps what the transform made, so a replay converts it again
CREATE TABLE s11 (id int, a text, c text, p text);
CREATE TABLE d11 (id int, a int[], c color, p positive);
INSERT INTO s11 VALUES (1, '{1,2}', 'red', '5'), (2, '{3}', 'green', '6');
SELECT pipeline_create('arrays', 's11', 'd11', watermark => 'id');
SELECT pipeline_contract('arrays', '{"checks": {"small": "id < 2"}}');
SELECT results_eq($$ SELECT rows_loaded, rows_quarantined FROM pipeline_run('arrays') $$,
  $$ VALUES (1::bigint, 1::bigint) $$, 'one row quarantined by the contract');
SELECT is((SELECT data FROM pipeline.quarantine WHERE pipeline = 'arrays'),
  '{"id": 2, "a": "{3}", "c": "green", "p": "6"}'::jsonb, 'array, enum and domain values are kept as text');
SELECT pipeline_contract('arrays', NULL);
SELECT results_eq($$ SELECT replayed, loaded, still_bad FROM pipeline_replay('arrays') $$,
  $$ VALUES (1::bigint, 1::bigint, 0::bigint) $$, 'and replay once the contract is gone');
SELECT results_eq($$ SELECT a, c, p::int FROM d11 WHERE id = 2 $$, $$ VALUES ('{3}'::int[], 'green'::color, 6) $$,
  'the replayed row is the one the transform made');

-- 12. a JSON null is SQL's NULL
CREATE TABLE s12 (id int, doc jsonb);
CREATE TABLE d12 (id int, qty int);
INSERT INTO s12 VALUES (1, '{"qty": null}'), (2, '{}'), (3, '{"qty": "x"}'), (4, '{"qty": 5}');
SELECT pipeline_create('json', 's12', 'd12', watermark => 'id', transform => $$SELECT id, doc->'qty' AS qty FROM batch$$);
SELECT pipeline_contract('json', '{"columns": {"qty": {"type": "int"}}}');
SELECT results_eq($$ SELECT rows_loaded, rows_quarantined FROM pipeline_run('json') $$,
  $$ VALUES (3::bigint, 1::bigint) $$, 'a JSON null loads as NULL, as a missing key does');
SELECT results_eq($$ SELECT data->>'qty', violations FROM pipeline.quarantine WHERE pipeline = 'json' $$,
  $$ VALUES ('x', '{qty.type}'::text[]) $$, 'only the value that does not convert is quarantined');

-- 13. null and invalid values in a rule's list
SELECT lives_ok($$ SELECT pipeline_contract('json', '{"columns": {"qty": {"in": [5, null]}}}') $$,
  'pipeline_contract takes a null in an "in" list');
SELECT results_eq($$ SELECT rule, failing_rows FROM pipeline_check('d12', '{"columns": {"qty": {"in": [5, null]}}}') $$,
  $$ VALUES ('qty.in', 0::bigint) $$, 'pipeline_check too: NULL values pass, 5 is in the list');
SELECT throws_ok($$ SELECT pipeline_contract('json', '{"columns": {"qty": {"in": ["abc"]}}}') $$,
  '22023', NULL, 'a value the column''s type does not take: 22023');
SELECT throws_ok($$ SELECT * FROM pipeline_check('d12', '{"columns": {"qty": {"min": "x"}}}') $$,
  '22023', NULL, 'in pipeline_check too: 22023');

-- 14. rows_read is the batch, whatever the transform keeps; the fraction is of it
CREATE TABLE s14 (id int, v text);
CREATE TABLE d14 (id int, v int);
INSERT INTO s14 SELECT g, CASE WHEN g = 2 THEN 'x' ELSE g::text END FROM generate_series(1, 10) g;
SELECT pipeline_create('filtered', 's14', 'd14', watermark => 'id', transform => 'SELECT id, v FROM batch WHERE id <= 2');
SELECT pipeline_contract('filtered', '{"max_bad_fraction": 0.2}');
SELECT results_eq($$ SELECT status, rows_read, rows_loaded, rows_quarantined FROM pipeline_run('filtered') $$,
  $$ VALUES ('succeeded', 10::bigint, 1::bigint, 1::bigint) $$,
  '10 rows, the transform keeps 2, 1 bad: read 10, and 1 of 10 is under 0.2');

SELECT * FROM finish();
ROLLBACK;
