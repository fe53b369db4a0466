-- Differential test (issue 14): random scenarios, each step of a pipeline
-- compared with a plain-SQL reference of the docs. Seeded; the number of
-- steps and the seed come from PIPELINE_DIFF_STEPS (default 300) and
-- PIPELINE_DIFF_SEED (default 0.42).
--
-- A scenario picks a watermark type (int, numeric, timestamptz), a source
-- (table, view, UNION ALL view, partitioned table), a mode (append, upsert, replace) and
-- then takes random steps: inserts (ties, late rows, values that do not
-- convert or break the contract, NULL keys), runs, resets, batch_size and
-- lag changes, contract changes, replays and runs rolled back. After every run the target,
-- the quarantine, the watermark and the run's counts must equal the
-- reference's.
\getenv diff_steps PIPELINE_DIFF_STEPS
\getenv diff_seed PIPELINE_DIFF_SEED
\if :{?diff_steps}
\else
\set diff_steps 300
\endif
\if :{?diff_seed}
\else
\set diff_seed 0.42
\endif
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION pipeline;
SELECT plan(2);

CREATE SCHEMA diff;
-- the reference's state: its watermark, its target, its quarantine
CREATE TABLE diff.state (wm text, batch_size int, lag int, min int, mode text, wmtype text);
CREATE TABLE diff.ref_target (id int, wm text, v int);
CREATE TABLE diff.ref_quarantine (id int, wm text, v numeric, violations text[], replayed boolean DEFAULT false);
CREATE TABLE diff.mismatches (step int, what text);

-- The stored value of a numeric into int (assignment cast), or NULL.
CREATE FUNCTION diff.stored(v numeric) RETURNS int LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN round(v) BETWEEN -2147483648 AND 2147483647 THEN round(v)::int END
$$;

-- The rules a row breaks under the reference's contract (v.min, then implicit).
CREATE FUNCTION diff.violations(id int, v numeric, min int, mode text) RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
  SELECT array_remove(ARRAY[
    CASE WHEN diff.stored(v) < min THEN 'v.min' END,
    CASE WHEN v IS NOT NULL AND diff.stored(v) IS NULL THEN 'v.type' END,
    CASE WHEN mode = 'upsert' AND id IS NULL THEN 'id.not_null' END], NULL)
$$;

-- A watermark of the scenario's type for the number n.
CREATE FUNCTION diff.wm_sql(n numeric, wmtype text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE wmtype
    WHEN 'int' THEN floor(n)::int::text
    WHEN 'numeric' THEN (round(n * 2) / 2)::text
    ELSE ('2024-01-01 00:00:00+00'::timestamptz + floor(n) * interval '1 minute')::text END
$$;

CREATE FUNCTION diff.new_scenario(n int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  wmtype text := (ARRAY['int', 'numeric', 'timestamptz'])[1 + floor(random() * 3)];
  kind text := (ARRAY['table', 'view', 'partitioned', 'union'])[1 + floor(random() * 4)];
  mode text := (ARRAY['append', 'upsert', 'replace'])[1 + floor(random() * 3)];
BEGIN
  PERFORM pipeline_drop(name) FROM pipeline.pipelines;
  IF to_regclass('diff.base') IS NOT NULL THEN
    DROP VIEW diff.src;
  END IF;
  DROP TABLE IF EXISTS diff.base, diff.base2, diff.src, diff.dst;
  TRUNCATE diff.state, diff.ref_target, diff.ref_quarantine;
  DELETE FROM pipeline.quarantine;
  IF kind = 'partitioned' THEN
    EXECUTE format('CREATE TABLE diff.src (id int, wm %s, v numeric, keep boolean) PARTITION BY LIST (keep)', wmtype);
    CREATE TABLE diff.src_kept PARTITION OF diff.src FOR VALUES IN (true);
    CREATE TABLE diff.src_dropped PARTITION OF diff.src FOR VALUES IN (false);
  ELSIF kind = 'view' THEN
    EXECUTE format('CREATE TABLE diff.base (id int, wm %s, v numeric, keep boolean)', wmtype);
    CREATE VIEW diff.src AS SELECT * FROM diff.base;
  ELSIF kind = 'union' THEN
    EXECUTE format('CREATE TABLE diff.base (id int, wm %s, v numeric, keep boolean)', wmtype);
    CREATE TABLE diff.base2 (LIKE diff.base);
    CREATE VIEW diff.src AS SELECT * FROM diff.base UNION ALL SELECT * FROM diff.base2;
  ELSE
    EXECUTE format('CREATE TABLE diff.src (id int, wm %s, v numeric, keep boolean)', wmtype);
  END IF;
  EXECUTE format('CREATE TABLE diff.dst (id int, wm %s, v int)', wmtype);
  IF mode = 'upsert' THEN
    CREATE UNIQUE INDEX ON diff.dst (id);
  END IF;
  PERFORM pipeline_create('diff', 'diff.src', 'diff.dst', watermark => 'wm', mode => mode,
    key => CASE WHEN mode = 'upsert' THEN '{id}'::text[] END,
    transform => 'SELECT id, wm, v FROM batch WHERE keep');
  PERFORM pipeline_contract('diff', '{"columns": {"v": {"min": 0}}}');
  INSERT INTO diff.state VALUES (NULL, NULL, NULL, 0, mode, wmtype);
END $$;

CREATE FUNCTION diff.insert_rows() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  s diff.state := (SELECT st FROM diff.state st);
  top numeric;
  rel text;
BEGIN
  SELECT count(*) INTO top FROM diff.src;
  FOR i IN 1 .. 1 + floor(random() * 4) LOOP
    rel := CASE WHEN to_regclass('diff.base2') IS NOT NULL AND random() < 0.5 THEN 'diff.base2'
                WHEN to_regclass('diff.base') IS NOT NULL THEN 'diff.base' ELSE 'diff.src' END;
    -- mostly above the newest row, with ties, sometimes a late row below;
    -- an upsert key never repeats with the same watermark (no winner then)
    EXECUTE format('INSERT INTO %1$s SELECT $1, CAST($2 AS %2$s), $3, $4 WHERE $5 <> ''upsert'' '
                   'OR NOT EXISTS (SELECT FROM %1$s WHERE id = $1 AND wm = CAST($2 AS %2$s))', rel, s.wmtype)
      USING CASE WHEN s.mode = 'upsert' AND random() < 0.1 THEN NULL ELSE (1 + floor(random() * 40))::int END,
            diff.wm_sql((top + random() * 3 - CASE WHEN random() < 0.1 THEN 5 ELSE 0 END)::numeric, s.wmtype),
            (ARRAY[-1.6, -0.4, 0.4, 0.6, 1.5, 2, 7, 3000000000, NULL])[1 + floor(random() * 9)],
            random() < 0.85, s.mode;
  END LOOP;
END $$;

-- One run of the reference: the docs' batch, and what becomes of each row.
CREATE FUNCTION diff.reference_run(OUT idle boolean, OUT rows_read bigint, OUT rows_loaded bigint,
                                   OUT rows_quarantined bigint) LANGUAGE plpgsql AS $$
DECLARE
  s diff.state := (SELECT st FROM diff.state st);
  t text := s.wmtype;
  high text;
  cap text;
BEGIN
  -- the newest row, or with a lag the newest at least lag below it
  IF s.lag IS NULL THEN
    EXECUTE 'SELECT max(wm)::text FROM diff.src' INTO high;
  ELSE
    EXECUTE format('SELECT max(wm)::text FROM diff.src WHERE wm <= CAST(%s((SELECT max(wm) FROM diff.src)::numeric - $1) AS %s)',
                   CASE WHEN t = 'int' THEN 'floor' END, t)
      INTO high USING s.lag;
  END IF;
  EXECUTE format('SELECT $1::text IS NULL OR ($2::text IS NOT NULL AND CAST($1 AS %s) <= CAST($2 AS %s))', t, t)
    INTO idle USING high, s.wm;
  IF idle THEN
    rows_read := 0; rows_loaded := 0; rows_quarantined := 0;
    RETURN;
  END IF;
  IF s.batch_size IS NOT NULL THEN
    EXECUTE format('SELECT s.wm::text FROM diff.src s WHERE s.wm <= CAST($1 AS %s) AND ($2::text IS NULL OR s.wm > CAST($2 AS %s)) ORDER BY s.wm OFFSET $3 - 1 LIMIT 1', t, t)
      INTO cap USING high, s.wm, s.batch_size;
    high := coalesce(cap, high);
  END IF;
  EXECUTE format('CREATE TEMP TABLE diff_batch ON COMMIT DROP AS SELECT id, wm::text AS wm, wm AS wm_typed, v, keep, diff.violations(id, v, $3, $4) AS violations FROM diff.src WHERE wm <= CAST($1 AS %s) AND ($2::text IS NULL OR wm > CAST($2 AS %s))', t, t)
    USING high, s.wm, s.min, s.mode;
  SELECT count(*) INTO rows_read FROM diff_batch;
  SELECT count(*) INTO rows_quarantined FROM diff_batch WHERE keep AND violations <> '{}';
  INSERT INTO diff.ref_quarantine (id, wm, v, violations)
    SELECT id, wm, v, violations FROM diff_batch WHERE keep AND violations <> '{}';
  IF s.mode = 'replace' THEN
    DELETE FROM diff.ref_target;
  END IF;
  IF s.mode = 'upsert' THEN
    -- among duplicates of a key in the batch, the highest watermark wins
    CREATE TEMP TABLE winners ON COMMIT DROP AS
      SELECT DISTINCT ON (id) id, wm, diff.stored(v) AS v FROM diff_batch
      WHERE keep AND violations = '{}' ORDER BY id, wm_typed DESC;
    DELETE FROM diff.ref_target r USING winners w WHERE r.id = w.id;
    INSERT INTO diff.ref_target SELECT * FROM winners;
    SELECT count(*) INTO rows_loaded FROM winners;
    DROP TABLE winners;
  ELSE
    INSERT INTO diff.ref_target SELECT id, wm, diff.stored(v) FROM diff_batch WHERE keep AND violations = '{}';
    GET DIAGNOSTICS rows_loaded = ROW_COUNT;
  END IF;
  DROP TABLE diff_batch;
  UPDATE diff.state SET wm = high;
END $$;

-- Replay of the reference: rows that pass the current contract load.
CREATE FUNCTION diff.reference_replay(OUT loaded bigint) LANGUAGE plpgsql AS $$
DECLARE
  s diff.state := (SELECT st FROM diff.state st);
BEGIN
  UPDATE diff.ref_quarantine SET violations = diff.violations(id, v, s.min, s.mode) WHERE NOT replayed;
  INSERT INTO diff.ref_target SELECT id, wm, diff.stored(v) FROM diff.ref_quarantine
    WHERE NOT replayed AND violations = '{}';
  GET DIAGNOSTICS loaded = ROW_COUNT;
  UPDATE diff.ref_quarantine SET replayed = true WHERE NOT replayed AND violations = '{}';
END $$;

CREATE FUNCTION diff.check(step int, what text, ok boolean) RETURNS void LANGUAGE sql AS $$
  INSERT INTO diff.mismatches SELECT step, what WHERE ok IS NOT TRUE
$$;

CREATE FUNCTION diff.compare(step int, action text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  s diff.state := (SELECT st FROM diff.state st);
  same boolean;
BEGIN
  SELECT NOT EXISTS ((SELECT id, wm::text, v FROM diff.dst EXCEPT ALL SELECT id, wm, v FROM diff.ref_target)
                     UNION ALL (SELECT id, wm, v FROM diff.ref_target EXCEPT ALL SELECT id, wm::text, v FROM diff.dst))
    INTO same;
  PERFORM diff.check(step, action || ': target differs', same);
  EXECUTE format($q$
    WITH actual AS (SELECT (data->>'id')::int AS id, CAST(data->>'wm' AS %1$s) AS wm, (data->>'v')::numeric AS v,
                           ARRAY(SELECT x FROM unnest(violations) x ORDER BY x) AS violations
                    FROM pipeline.quarantine WHERE pipeline = 'diff' AND replayed_at IS NULL),
         expected AS (SELECT id, CAST(wm AS %1$s) AS wm, v, ARRAY(SELECT x FROM unnest(violations) x ORDER BY x)
                      FROM diff.ref_quarantine WHERE NOT replayed)
    SELECT NOT EXISTS ((TABLE actual EXCEPT ALL TABLE expected) UNION ALL (TABLE expected EXCEPT ALL TABLE actual))
    $q$, s.wmtype) INTO same;
  PERFORM diff.check(step, action || ': quarantine differs', same);
  EXECUTE format('SELECT CAST($1 AS %s) IS NOT DISTINCT FROM CAST($2 AS %s)', s.wmtype, s.wmtype)
    INTO same USING (SELECT last_watermark FROM pipeline.pipelines WHERE name = 'diff'), s.wm;
  PERFORM diff.check(step, action || ': watermark differs', same);
END $$;

CREATE FUNCTION diff.run(steps int, seed float8) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
  r record;
  ref record;
  dice float8;
  s diff.state;
  value text;
  replayed record;
BEGIN
  PERFORM setseed(seed);
  FOR step IN 1 .. steps LOOP
    IF step % 50 = 1 THEN
      PERFORM diff.new_scenario(step);
    END IF;
    s := (SELECT st FROM diff.state st);
    dice := random();
    IF dice < 0.40 THEN
      PERFORM diff.insert_rows();
    ELSIF dice < 0.75 THEN
      SELECT * INTO r FROM pipeline_run('diff');
      SELECT * INTO ref FROM diff.reference_run();
      PERFORM diff.check(step, format('run: status %s (%s), reference idle %s', r.status, r.error, ref.idle),
                         (r.status = 'skipped') = ref.idle AND r.status <> 'failed');
      PERFORM diff.check(step, format('run: counts %s/%s/%s, reference %s/%s/%s', r.rows_read, r.rows_loaded,
                                      r.rows_quarantined, ref.rows_read, ref.rows_loaded, ref.rows_quarantined),
                         (r.rows_read, r.rows_loaded, r.rows_quarantined)
                           = (ref.rows_read, ref.rows_loaded, ref.rows_quarantined));
      PERFORM diff.compare(step, 'run');
    ELSIF dice < 0.78 THEN
      -- a run rolled back (a savepoint) leaves nothing behind
      BEGIN
        PERFORM pipeline_run('diff');
        RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'roll back';
      EXCEPTION WHEN raise_exception THEN
        NULL;
      END;
      PERFORM diff.compare(step, 'rolled back run');
    ELSIF dice < 0.82 THEN
      -- back to a watermark of the source, or to the beginning
      EXECUTE 'SELECT wm::text FROM diff.src ORDER BY random() LIMIT 1' INTO value;
      IF random() < 0.3 THEN value := NULL; END IF;
      PERFORM pipeline_reset('diff', value);
      UPDATE diff.state SET wm = value;
      PERFORM diff.compare(step, 'reset');
    ELSIF dice < 0.87 THEN
      UPDATE diff.state SET batch_size = CASE WHEN random() < 0.4 THEN NULL ELSE 1 + floor(random() * 4) END,
                            lag = CASE WHEN wmtype = 'timestamptz' OR random() < 0.5 THEN NULL ELSE floor(random() * 3) END;
      s := (SELECT st FROM diff.state st);
      PERFORM pipeline_alter('diff', jsonb_build_object('batch_size', s.batch_size, 'lag', s.lag));
    ELSIF dice < 0.93 THEN
      UPDATE diff.state SET min = 1 - min;
      PERFORM pipeline_contract('diff', jsonb_build_object('columns', jsonb_build_object('v',
        jsonb_build_object('min', (SELECT min FROM diff.state)))));
    ELSIF s.mode <> 'upsert' THEN
      -- (an upsert replay orders duplicates of a key as they come: not compared)
      SELECT * INTO replayed FROM pipeline_replay('diff');
      SELECT * INTO ref FROM diff.reference_replay();
      PERFORM diff.check(step, format('replay: loaded %s, reference %s', replayed.loaded, ref.loaded),
                         replayed.loaded = ref.loaded);
      PERFORM diff.compare(step, 'replay');
    END IF;
  END LOOP;
  RETURN steps;
END $$;

SELECT diag('differential test: ' || :'diff_steps' || ' steps, seed ' || :'diff_seed');
SELECT is(diff.run(:'diff_steps'::int, :'diff_seed'::float8), :'diff_steps'::int, 'every step ran');
SELECT is((SELECT count(*) FROM diff.mismatches), 0::bigint,
  'every run, reset and replay matched the reference');
SELECT diag(step || ': ' || what) FROM (SELECT * FROM diff.mismatches ORDER BY step LIMIT 10) m;

SELECT * FROM finish();
ROLLBACK;
