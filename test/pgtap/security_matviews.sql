-- Incremental views: no code of a view's owner runs as the catalog's owner,
-- and no function or operator planted in the owner's search_path runs in
-- the SQL that maintains a view (issue 11, items 2 and 8).
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION pipeline;
SELECT plan(37);

CREATE ROLE tap_mvsec_mallory LOGIN;
CREATE ROLE tap_mvsec_victim LOGIN;
CREATE SCHEMA mvsec_m AUTHORIZATION tap_mvsec_mallory;
CREATE SCHEMA mvsec_v AUTHORIZATION tap_mvsec_victim;
GRANT USAGE ON SCHEMA mvsec_m TO tap_mvsec_victim;
GRANT USAGE ON SCHEMA mvsec_v TO tap_mvsec_mallory;

-- ---- item 2: the change log ----
SET ROLE tap_mvsec_mallory;
SET search_path = mvsec_m, public;
CREATE TABLE mvsec_m.t (id int PRIMARY KEY, g int, v int);
INSERT INTO mvsec_m.t VALUES (1, 1, 10), (2, 1, 20);
CREATE FUNCTION mvsec_m.pwn() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'ALTER ROLE tap_mvsec_mallory SUPERUSER';
  END IF;
  RETURN 1;
END$$;
SELECT lives_ok($$ SELECT pipeline_create_matview('mvsec_m.mv', 'SELECT g, count(*) AS n FROM t GROUP BY g') $$,
                'an ordinary role creates a deferred view');
SELECT 'pipeline.matview_log_' || id AS log FROM pipeline.matviews WHERE relation = 'mvsec_m.mv'::regclass \gset

SELECT is((SELECT relowner FROM pg_class WHERE oid = :'log'::regclass),
          (SELECT relowner FROM pg_class WHERE oid = 'pipeline.pipelines'::regclass),
          'its change log belongs to the catalog''s owner');
SELECT throws_ok(format($$ CREATE RULE "_RETURN" AS ON SELECT TO %s DO INSTEAD
                           SELECT 1::int2 AS sign, ARRAY[mvsec_m.pwn()] AS k1 $$, :'log'),
                 '42501', NULL, 'the view''s owner cannot turn the log into a view (the exploit of the issue)');
CREATE FUNCTION mvsec_m.nothing() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
SELECT throws_ok(format($$ CREATE TRIGGER x AFTER INSERT ON %s EXECUTE FUNCTION mvsec_m.nothing() $$, :'log'),
                 '42501', NULL, 'nor give it triggers');
SELECT throws_ok(format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', :'log'), '42501', NULL,
                 'nor row security');
SELECT throws_ok(format('CREATE INDEX ON %s ((mvsec_m.pwn()))', :'log'), '42501', NULL, 'nor indexes');
SELECT throws_ok(format('ALTER TABLE %s OWNER TO tap_mvsec_mallory', :'log'), '42501', NULL,
                 'nor take it back');

INSERT INTO t VALUES (3, 2, 5);
SELECT is(pipeline_pending_changes('mvsec_m.mv'), 1::bigint, 'the owner''s writes are logged');
SELECT is((SELECT changes FROM pipeline_refresh('mvsec_m.mv')), 1::bigint, 'and applied by the owner''s refresh');
SELECT bag_eq('SELECT g, n FROM mvsec_m.mv', 'SELECT g, count(*) FROM mvsec_m.t GROUP BY g',
              'the view equals its query');
RESET ROLE;
SET search_path = public;

SELECT is(pipeline_pending_changes('mvsec_m.mv'), 0::bigint, 'a superuser reads the pending changes');
SELECT is((SELECT pending_changes FROM pipeline.status WHERE pipeline = 'mvsec_m.mv'), 0::bigint,
          'and pipeline.status');

-- A log of a 0.3 catalog not updated yet is still the view owner's: the
-- library reads it as that owner, never as the catalog's owner.
SET pipeline_tap.log = :'log';
DO $$ BEGIN EXECUTE format('ALTER TABLE %s OWNER TO tap_mvsec_mallory', current_setting('pipeline_tap.log')); END $$;
SET ROLE tap_mvsec_mallory;
SELECT lives_ok(format($$ CREATE RULE "_RETURN" AS ON SELECT TO %s DO INSTEAD
                          SELECT 1::int2 AS sign, ARRAY[mvsec_m.pwn()] AS k1 $$, :'log'),
                'on such a log (0.3), its owner can plant a _RETURN rule');
RESET ROLE;
SELECT is(pipeline_pending_changes('mvsec_m.mv'), 1::bigint, 'a superuser reading it runs the rule...');
SELECT ok((SELECT count(*) FROM pipeline.status) > 0, '... as do pipeline.status');
SELECT ok((SELECT count(*) FROM pipeline.matview_status) > 0, '... and pipeline.matview_status');
UPDATE pipeline.matviews SET continuous = true WHERE relation = 'mvsec_m.mv'::regclass;
SELECT lives_ok('SELECT count(*) FROM pipeline_refresh_due()', '... and the worker''s due refresh');
SELECT is((SELECT rolsuper FROM pg_roles WHERE rolname = 'tap_mvsec_mallory'), false,
          'but as the view''s owner: she is not a superuser');

-- ---- item 8: the SQL that maintains a view ----
-- The victim's search_path lists a schema where mallory creates objects,
-- ahead of pg_catalog. His views are created before she plants anything.
SET ROLE tap_mvsec_victim;
SET search_path = mvsec_m, pg_catalog, public;
CREATE TABLE mvsec_v.f (id int PRIMARY KEY, d int, v int, ts timestamptz);
CREATE TABLE mvsec_v.dim (id int PRIMARY KEY, cat int);
INSERT INTO mvsec_v.dim VALUES (1, 1), (2, 2);
INSERT INTO mvsec_v.f VALUES (1, 1, 10, '2026-01-01 10:00'), (2, 2, 20, '2026-01-02 10:00');
GRANT INSERT, UPDATE, DELETE, SELECT ON mvsec_v.f TO tap_mvsec_mallory;
SELECT pipeline_create_matview('mvsec_v.per_cat',
  'SELECT dim.cat, count(*) AS n, sum(f.v) AS s, min(f.v) AS lo, max(f.v) AS hi
   FROM mvsec_v.f JOIN mvsec_v.dim ON dim.id = f.d GROUP BY dim.cat');
SELECT pipeline_create_matview('mvsec_v.per_cat_now',
  'SELECT dim.cat, count(*) AS n, sum(f.v) AS s FROM mvsec_v.f JOIN mvsec_v.dim ON dim.id = f.d GROUP BY dim.cat',
  'immediate');
SELECT pipeline_create_matview('mvsec_v.per_day',
  'SELECT date_trunc(''day'', ts) AS day, count(*) AS n, avg(v) AS a FROM mvsec_v.f GROUP BY 1');
SELECT pipeline_create_matview('mvsec_v.one_now',
  'SELECT v, count(*) AS n FROM mvsec_v.f WHERE v > 0 GROUP BY v', 'immediate');

CREATE FUNCTION mvsec_v.count_f() RETURNS bigint LANGUAGE sql
  SET search_path = mvsec_m, pg_catalog, public AS 'SELECT count(*) FROM mvsec_v.f';
RESET ROLE;

SET ROLE tap_mvsec_mallory;
SET search_path = public;
CREATE FUNCTION mvsec_m.trap() RETURNS void LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'a trap of mallory ran as %', current_user; END$$;
CREATE FUNCTION mvsec_m.t_bool2(int, int) RETURNS bool LANGUAGE plpgsql AS $$BEGIN PERFORM mvsec_m.trap(); RETURN true; END$$;
CREATE FUNCTION mvsec_m.t_bool3(int2, int) RETURNS bool LANGUAGE plpgsql AS $$BEGIN PERFORM mvsec_m.trap(); RETURN true; END$$;
CREATE FUNCTION mvsec_m.t_bool_ts(timestamptz, timestamptz) RETURNS bool LANGUAGE plpgsql AS $$BEGIN PERFORM mvsec_m.trap(); RETURN true; END$$;
CREATE FUNCTION mvsec_m.t_int8(int8, int8) RETURNS int8 LANGUAGE plpgsql AS $$BEGIN PERFORM mvsec_m.trap(); RETURN 0; END$$;
CREATE FUNCTION mvsec_m.t_int8_4(int8, int) RETURNS int8 LANGUAGE plpgsql AS $$BEGIN PERFORM mvsec_m.trap(); RETURN 0; END$$;
CREATE FUNCTION mvsec_m.t_ts(timestamptz, interval) RETURNS timestamptz LANGUAGE plpgsql AS $$BEGIN PERFORM mvsec_m.trap(); RETURN NULL; END$$;
CREATE FUNCTION mvsec_m.t_mul(int8, interval) RETURNS interval LANGUAGE plpgsql AS $$BEGIN PERFORM mvsec_m.trap(); RETURN NULL; END$$;
CREATE FUNCTION mvsec_m.t_s_int(int[], int) RETURNS int[] LANGUAGE plpgsql AS $$BEGIN PERFORM mvsec_m.trap(); RETURN NULL; END$$;
CREATE FUNCTION mvsec_m.t_s_ts(timestamptz[], timestamptz) RETURNS timestamptz[] LANGUAGE plpgsql AS $$BEGIN PERFORM mvsec_m.trap(); RETURN NULL; END$$;
CREATE FUNCTION mvsec_m.t_s_star(int8) RETURNS int8 LANGUAGE plpgsql AS $$BEGIN PERFORM mvsec_m.trap(); RETURN 0; END$$;
CREATE FUNCTION mvsec_m.t_s_sum(int8, int) RETURNS int8 LANGUAGE plpgsql AS $$BEGIN PERFORM mvsec_m.trap(); RETURN 0; END$$;
CREATE FUNCTION mvsec_m.t_s_min(int, int) RETURNS int LANGUAGE plpgsql AS $$BEGIN PERFORM mvsec_m.trap(); RETURN 0; END$$;
CREATE FUNCTION mvsec_m.t_s_bool(bool, bool) RETURNS bool LANGUAGE plpgsql AS $$BEGIN PERFORM mvsec_m.trap(); RETURN true; END$$;
CREATE FUNCTION mvsec_m.t_s_tsmin(timestamptz, timestamptz) RETURNS timestamptz LANGUAGE plpgsql AS $$BEGIN PERFORM mvsec_m.trap(); RETURN NULL; END$$;
CREATE FUNCTION mvsec_m.unnest(int[]) RETURNS SETOF int LANGUAGE plpgsql AS $$BEGIN PERFORM mvsec_m.trap(); END$$;
CREATE FUNCTION mvsec_m.unnest(timestamptz[]) RETURNS SETOF timestamptz LANGUAGE plpgsql AS $$BEGIN PERFORM mvsec_m.trap(); END$$;
CREATE FUNCTION mvsec_m.cardinality(int[]) RETURNS int LANGUAGE plpgsql AS $$BEGIN PERFORM mvsec_m.trap(); RETURN 0; END$$;
CREATE FUNCTION mvsec_m.cardinality(timestamptz[]) RETURNS int LANGUAGE plpgsql AS $$BEGIN PERFORM mvsec_m.trap(); RETURN 0; END$$;
CREATE AGGREGATE mvsec_m.array_agg(int) (sfunc = mvsec_m.t_s_int, stype = int[]);
CREATE AGGREGATE mvsec_m.array_agg(timestamptz) (sfunc = mvsec_m.t_s_ts, stype = timestamptz[]);
CREATE AGGREGATE mvsec_m.count(*) (sfunc = mvsec_m.t_s_star, stype = int8, initcond = '0');
CREATE AGGREGATE mvsec_m.sum(int) (sfunc = mvsec_m.t_s_sum, stype = int8);
CREATE AGGREGATE mvsec_m.min(int) (sfunc = mvsec_m.t_s_min, stype = int);
CREATE AGGREGATE mvsec_m.max(int) (sfunc = mvsec_m.t_s_min, stype = int);
CREATE AGGREGATE mvsec_m.min(timestamptz) (sfunc = mvsec_m.t_s_tsmin, stype = timestamptz);
CREATE AGGREGATE mvsec_m.max(timestamptz) (sfunc = mvsec_m.t_s_tsmin, stype = timestamptz);
CREATE AGGREGATE mvsec_m.bool_or(bool) (sfunc = mvsec_m.t_s_bool, stype = bool);
CREATE OPERATOR mvsec_m.= (LEFTARG = int, RIGHTARG = int, FUNCTION = mvsec_m.t_bool2);
CREATE OPERATOR mvsec_m.> (LEFTARG = int, RIGHTARG = int, FUNCTION = mvsec_m.t_bool2);
CREATE OPERATOR mvsec_m.= (LEFTARG = int2, RIGHTARG = int, FUNCTION = mvsec_m.t_bool3);
CREATE OPERATOR mvsec_m.> (LEFTARG = int2, RIGHTARG = int, FUNCTION = mvsec_m.t_bool3);
CREATE OPERATOR mvsec_m.< (LEFTARG = int2, RIGHTARG = int, FUNCTION = mvsec_m.t_bool3);
CREATE OPERATOR mvsec_m.= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = mvsec_m.t_bool_ts);
CREATE OPERATOR mvsec_m.>= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = mvsec_m.t_bool_ts);
CREATE OPERATOR mvsec_m.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = mvsec_m.t_bool_ts);
CREATE OPERATOR mvsec_m.+ (LEFTARG = int8, RIGHTARG = int8, FUNCTION = mvsec_m.t_int8);
CREATE OPERATOR mvsec_m.- (LEFTARG = int8, RIGHTARG = int, FUNCTION = mvsec_m.t_int8_4);
CREATE OPERATOR mvsec_m.+ (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = mvsec_m.t_ts);
CREATE OPERATOR mvsec_m.* (LEFTARG = int8, RIGHTARG = interval, FUNCTION = mvsec_m.t_mul);
SELECT throws_ok('SELECT mvsec_v.count_f()', 'P0001', NULL,
                   'the traps work: unqualified SQL under the victim''s search_path calls them');
-- mallory's own writes to the victim's table
SELECT lives_ok($$ INSERT INTO mvsec_v.f VALUES (3, 1, 5, '2026-01-01 11:00') $$,
                'mallory''s insert into a base table runs none of her traps');
RESET ROLE;

-- his views pinned the search_path they were created under; his session's
-- is pgTAP's (whose functions the traps would catch too)
SET ROLE tap_mvsec_victim;
SELECT lives_ok($$ INSERT INTO mvsec_v.f VALUES (4, 2, 7, '2026-01-03 10:00'), (5, 1, 1, '2026-01-03 11:00') $$,
                'inserts (log, merge) run none of them');
SELECT lives_ok($$ INSERT INTO mvsec_v.f VALUES (6, 2, 2, '2026-01-04 10:00') $$,
                'a one-row insert (the fast path) runs none of them');
SELECT lives_ok('UPDATE mvsec_v.f SET v = v + 1 WHERE id IN (1, 4)', 'updates (recompute) run none of them');
SELECT lives_ok('DELETE FROM mvsec_v.f WHERE id = 2', 'deletes run none of them');
SELECT lives_ok($$ SELECT pipeline_refresh('mvsec_v.per_cat') $$, 'a refresh of a join view runs none of them');
SELECT lives_ok($$ SELECT pipeline_refresh('mvsec_v.per_day') $$, 'a refresh of a time bucket view runs none of them');
SELECT lives_ok($$ SELECT pipeline_pending_changes('mvsec_v.per_day') $$, 'nor the pending changes');
SELECT bag_eq('SELECT cat, n, s, lo, hi FROM mvsec_v.per_cat',
              'SELECT dim.cat, count(*), sum(f.v), min(f.v), max(f.v) FROM mvsec_v.f JOIN mvsec_v.dim ON dim.id = f.d GROUP BY dim.cat',
              'the deferred join view equals its query');
SELECT bag_eq('SELECT cat, n, s FROM mvsec_v.per_cat_now',
              'SELECT dim.cat, count(*), sum(f.v) FROM mvsec_v.f JOIN mvsec_v.dim ON dim.id = f.d GROUP BY dim.cat',
              'the immediate join view equals its query');
SELECT bag_eq('SELECT v, n FROM mvsec_v.one_now', 'SELECT v, count(*) FROM mvsec_v.f WHERE v > 0 GROUP BY v',
              'the immediate single-table view equals its query');
SELECT bag_eq('SELECT day, n, a FROM mvsec_v.per_day',
              $$SELECT date_trunc('day', ts), count(*), avg(v) FROM mvsec_v.f GROUP BY 1$$,
              'the time bucket view equals its query');
RESET ROLE;
RESET search_path;

-- A writer's own settings do not reach another role's view: the captures
-- run in the writer's session, and its IntervalStyle put one group's rows
-- under two keys (review of 0.4).
RESET ROLE;
SET search_path = public;
CREATE SCHEMA mvsec_iv AUTHORIZATION tap_mvsec_victim;
SET ROLE tap_mvsec_victim;
CREATE TABLE mvsec_iv.e (a timestamptz, b timestamptz);
GRANT INSERT ON mvsec_iv.e TO tap_mvsec_mallory;
GRANT USAGE ON SCHEMA mvsec_iv TO tap_mvsec_mallory;
INSERT INTO mvsec_iv.e VALUES ('2026-01-01', '2026-01-03 01:00');
SELECT pipeline_create_matview('mvsec_iv.dur_i', 'SELECT (b - a)::text AS dur, count(*) AS n FROM mvsec_iv.e GROUP BY 1', 'immediate');
SELECT pipeline_create_matview('mvsec_iv.dur_d', 'SELECT (b - a)::text AS dur, count(*) AS n FROM mvsec_iv.e GROUP BY 1');
RESET ROLE;
SET ROLE tap_mvsec_mallory;
SET IntervalStyle = 'sql_standard';
INSERT INTO mvsec_iv.e VALUES ('2026-02-01', '2026-02-03 01:00');
RESET IntervalStyle;
RESET ROLE;
SELECT pipeline_refresh('mvsec_iv.dur_d');
SELECT results_eq($$ SELECT dur, n FROM mvsec_iv.dur_i $$, $$ VALUES ('2 days 01:00:00'::text, 2::bigint) $$,
                  'an immediate view keeps one group whatever IntervalStyle its writer uses');
SELECT results_eq($$ SELECT dur, n FROM mvsec_iv.dur_d $$, $$ VALUES ('2 days 01:00:00'::text, 2::bigint) $$,
                  'and so does a deferred one');
-- the maintaining SQL's names are reserved: a literal of the query that
-- spelled one was rewritten with it
SET ROLE tap_mvsec_victim;
SELECT throws_ok($$ SELECT pipeline_create_matview('mvsec_iv.trap', $q$SELECT a, count(*) AS n FROM mvsec_iv.e WHERE a::text <> '__pipeline_rows' GROUP BY a$q$) $$,
                 '42939', NULL, 'a query that spells __pipeline_ is refused');
SELECT is((SELECT count(*) FROM pipeline.matviews WHERE relation::text LIKE '%trap%'), 0::bigint, 'and leaves nothing');
-- a writer whose row breaks the maintenance of another role's view gets
-- the error, but not the view's query from its context
CREATE TABLE mvsec_iv.o (region text, amt int);
GRANT INSERT ON mvsec_iv.o TO tap_mvsec_mallory;
SELECT pipeline_create_matview('mvsec_iv.by_region', $q$SELECT region, sum(amt * 1000) AS s, count(*) AS n FROM mvsec_iv.o WHERE region <> 'topsecret-region' GROUP BY region$q$, 'immediate');
RESET ROLE;
SET ROLE tap_mvsec_mallory;
SELECT throws_ok($$ INSERT INTO mvsec_iv.o VALUES ('x', 2147483647), ('y', 1) $$, '22003', NULL,
                 'a writer gets the maintenance''s error');
CREATE FUNCTION pg_temp.context_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE c text;
BEGIN EXECUTE sql; RETURN NULL;
EXCEPTION WHEN OTHERS THEN GET STACKED DIAGNOSTICS c = PG_EXCEPTION_CONTEXT; RETURN c; END $$;
SELECT ok(pg_temp.context_of($$ INSERT INTO mvsec_iv.o VALUES ('x', 2147483647), ('y', 1) $$) NOT LIKE '%topsecret%',
          'without the view''s query in its context');
RESET ROLE;
DROP SCHEMA mvsec_iv CASCADE;

DROP OWNED BY tap_mvsec_mallory, tap_mvsec_victim CASCADE;
DROP ROLE tap_mvsec_mallory;
DROP ROLE tap_mvsec_victim;
SELECT * FROM finish();
ROLLBACK;
