-- Time bucket views equal their query with infinite timestamps and across
-- DST changes (issue 13, items 4 to 6): the range a recompute reads for a
-- bucket holds exactly the bucket's rows.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION pipeline;
SELECT plan(22);

CREATE TABLE views (view regclass, query text, zone text);
CREATE FUNCTION make_views(name text, zone text, query text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('TimeZone', zone, true);
    PERFORM pipeline_create_matview(name || '_d', query);
    PERFORM pipeline_create_matview(name || '_i', query, 'immediate');
    INSERT INTO views VALUES ((name || '_d')::regclass, query, zone), ((name || '_i')::regclass, query, zone);
    PERFORM set_config('TimeZone', 'UTC', true);
END $$;

-- refresh the deferred views, count the rows where a view and its query differ
CREATE FUNCTION mismatches(prefix text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v record; n bigint; total bigint := 0;
BEGIN
    FOR v IN SELECT * FROM views WHERE view::text LIKE prefix || '%' ORDER BY view::text LOOP
        IF v.view::text LIKE '%\_d' THEN
            PERFORM pipeline_refresh(v.view::text);
        END IF;
        PERFORM set_config('TimeZone', v.zone, true);
        EXECUTE format('SELECT count(*) FROM ((TABLE %s EXCEPT ALL %s) UNION ALL (%s EXCEPT ALL TABLE %s)) x',
                       v.view, v.query, v.query, v.view) INTO n;
        PERFORM set_config('TimeZone', 'UTC', true);
        total := total + n;
    END LOOP;
    RETURN total;
END $$;

-- 4. infinite timestamps
CREATE TABLE t (id serial PRIMARY KEY, ts timestamptz, tsl timestamp, v int);
INSERT INTO t (ts, tsl, v) VALUES ('infinity', 'infinity', 1), ('-infinity', '-infinity', 2),
                                  ('2026-01-01', '2026-01-01', 3), (NULL, NULL, 4);
SELECT make_views('inf_day', 'UTC', $$SELECT date_trunc('day', ts) AS d, count(*) AS cnt, avg(v) AS a FROM t GROUP BY 1$$);
SELECT make_views('inf_month', 'UTC', $$SELECT date_trunc('month', tsl) AS d, count(*) AS cnt, max(v) AS hi FROM t GROUP BY 1$$);
SELECT make_views('inf_bin', 'UTC', $$SELECT date_bin('6 hours', tsl, '2026-01-01') AS d, count(*) AS cnt, avg(v) AS a FROM t GROUP BY 1$$);
INSERT INTO t (ts, tsl, v) VALUES ('infinity', 'infinity', 5);
SELECT is(mismatches('inf_'), 0::bigint, 'inserting an infinite timestamp');
SELECT is((SELECT cnt FROM inf_day_d WHERE d = 'infinity'), 2::bigint, 'the infinity group is there');
INSERT INTO t (ts, tsl, v) VALUES ('-infinity', '-infinity', 6), ('2026-01-02', '2026-01-02', 7);
SELECT is(mismatches('inf_'), 0::bigint, 'inserting -infinity and a finite one');
DELETE FROM t WHERE v = 1;
SELECT is(mismatches('inf_'), 0::bigint, 'deleting an infinite one');
UPDATE t SET ts = 'infinity', tsl = 'infinity' WHERE v = 3;
SELECT is(mismatches('inf_'), 0::bigint, 'moving a row to infinity');
UPDATE t SET ts = '2026-01-05', tsl = '2026-01-05' WHERE ts = '-infinity';
SELECT is(mismatches('inf_'), 0::bigint, 'moving rows from -infinity');
DELETE FROM t WHERE v = 4;
SELECT is(mismatches('inf_'), 0::bigint, 'deleting the NULL one');

-- a timestamp every 37 minutes over a few days
CREATE FUNCTION fill(tab regclass, from_ts timestamptz, hours int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('INSERT INTO %s (ts, v) SELECT $1 + g * interval ''37 minutes'', g FROM generate_series(0, $2 * 60 / 37) g', tab)
    USING from_ts, hours;
END $$;

-- 5. date_bin with day strides on timestamptz under DST zones
CREATE TABLE b (id serial PRIMARY KEY, ts timestamptz, v int);
SELECT fill('b', '2026-03-06 00:00+00', 96);   -- New York springs forward on March 8
SELECT fill('b', '2026-10-30 00:00+00', 96);   -- and falls back on November 1
SELECT fill('b', '2026-03-27 00:00+00', 72);   -- Berlin on March 29
SELECT make_views('bin_ny', 'America/New_York',
                  $$SELECT date_bin('1 day', ts, '2026-01-01 00:00') AS d, count(*) AS cnt, avg(v) AS a FROM b GROUP BY 1$$);
SELECT make_views('bin_ny2', 'America/New_York',
                  $$SELECT date_bin('2 days 6 hours', ts, '2026-01-01 00:00') AS d, count(*) AS cnt, sum(v) AS s FROM b GROUP BY 1$$);
SELECT make_views('bin_berlin', 'Europe/Berlin',
                  $$SELECT date_bin('1 day', ts, '2026-01-01 00:00') AS d, count(*) AS cnt, avg(v) AS a FROM b GROUP BY 1$$);
SELECT is((SELECT count(*) FROM pipeline.matviews WHERE columns::text LIKE '%24:00:00%'), 4::bigint,
          'a date_bin stride of one day is recorded as 24 hours');
DELETE FROM b WHERE ts >= '2026-03-08 20:00+00' AND ts < '2026-03-09 04:50+00';
SELECT is(mismatches('bin_'), 0::bigint, 'deleting rows of the day New York springs forward');
UPDATE b SET v = v + 1 WHERE ts >= '2026-03-09 03:00+00' AND ts < '2026-03-09 06:00+00';
SELECT is(mismatches('bin_'), 0::bigint, 'updating rows at the end of that bin');
DELETE FROM b WHERE ts >= '2026-11-01 03:00+00' AND ts < '2026-11-02 06:00+00';
SELECT is(mismatches('bin_'), 0::bigint, 'deleting rows of the day it falls back');
UPDATE b SET ts = ts + interval '1 day' WHERE ts >= '2026-03-28 20:00+00' AND ts < '2026-03-29 02:00+00';
SELECT is(mismatches('bin_'), 0::bigint, 'moving rows across Berlin''s change');
DELETE FROM b WHERE id % 3 = 0;
SELECT is(mismatches('bin_'), 0::bigint, 'deleting every third row');
UPDATE b SET v = v + 1 WHERE id % 5 = 0;
SELECT is(mismatches('bin_'), 0::bigint, 'updating every fifth');

-- 6. date_trunc('day') in a zone whose DST starts at midnight
CREATE TABLE s (id serial PRIMARY KEY, ts timestamptz, v int);
SELECT fill('s', '2026-09-04 12:00+00', 96);   -- Santiago: September 6 starts at 01:00
SELECT fill('s', '2026-04-03 12:00+00', 72);   -- and April 5 has 25 hours
SELECT make_views('day_scl', 'America/Santiago',
                  $$SELECT date_trunc('day', ts) AS d, count(*) AS cnt, avg(v) AS a FROM s GROUP BY 1$$);
SELECT make_views('week_scl', 'America/Santiago',
                  $$SELECT date_trunc('week', ts) AS d, count(*) AS cnt, avg(v) AS a FROM s GROUP BY 1$$);
SELECT make_views('day_ny', 'America/New_York',
                  $$SELECT date_trunc('day', ts) AS d, count(*) AS cnt, max(v) AS hi FROM s GROUP BY 1$$);
SELECT is((SELECT count(*) FROM day_scl_d WHERE d = '2026-09-06 01:00-03'), 1::bigint,
          'Santiago''s September 6 starts at 01:00');
DELETE FROM s WHERE ts >= '2026-09-06 06:00+00' AND ts < '2026-09-06 08:00+00';
SELECT is(mismatches('day_scl'), 0::bigint, 'deleting rows of the day that starts at 01:00');
DELETE FROM s WHERE ts >= '2026-09-05 10:00+00' AND ts < '2026-09-05 12:00+00';
SELECT is(mismatches('day_scl'), 0::bigint, 'deleting rows of the day before');
DELETE FROM s WHERE ts >= '2026-09-06 10:00+00' AND ts < '2026-09-06 12:00+00';
SELECT is(mismatches('day_scl'), 0::bigint, 'and of the day that starts at 01:00 again');
UPDATE s SET v = v + 1 WHERE ts >= '2026-09-05 00:00+00' AND ts < '2026-09-08 00:00+00';
SELECT is(mismatches('day_scl'), 0::bigint, 'updating three contiguous days');
DELETE FROM s WHERE ts >= '2026-04-04 20:00+00' AND ts < '2026-04-05 06:00+00';
SELECT is(mismatches('day_scl'), 0::bigint, 'deleting rows of the day of 25 hours');
DELETE FROM s WHERE id % 4 = 0;
SELECT is(mismatches('week_scl'), 0::bigint, 'weeks in Santiago');
SELECT is(mismatches('day_ny'), 0::bigint, 'days in New York');

SELECT * FROM finish();
ROLLBACK;
