/* pipeline--0.3--0.4.sql: security and correctness fixes of round three */

\echo Use "ALTER EXTENSION pipeline UPDATE TO '0.4'" to load this file. \quit

/*
 * Each part below belongs to one issue of the round; keep them in this
 * order so the script reads as the change log of 0.4.
 */

-- ---------------------------------------------------------------------
-- Security: ownership, identities, visibility
-- ---------------------------------------------------------------------

/*
 * A contract rule belongs to its pipeline by identity (name and owner) and
 * goes with it. The row-level policy used to check that the pipeline
 * exists in the inserting transaction's snapshot, so a rule inserted while
 * its pipeline was being dropped survived it, and a pipeline of the same
 * name created later by another role ran that rule's SQL as its own owner.
 * A foreign key sees concurrent drops (it locks the pipeline's row) and
 * takes the rules along; the policy still refuses, with 42501, a rule for a
 * pipeline the role cannot see. Rules left behind by 0.3 are removed.
 */
DELETE FROM pipeline.contract_rules r
WHERE NOT EXISTS (SELECT 1 FROM pipeline.pipelines p
                  WHERE p.name OPERATOR(pg_catalog.=) r.pipeline
                    AND p.owner OPERATOR(pg_catalog.=) r.owner);
ALTER TABLE pipeline.pipelines ADD CONSTRAINT pipelines_name_owner_key UNIQUE (name, owner);
ALTER TABLE pipeline.contract_rules ADD CONSTRAINT contract_rules_pipeline_fkey
    FOREIGN KEY (pipeline, owner) REFERENCES pipeline.pipelines (name, owner)
    ON DELETE CASCADE ON UPDATE CASCADE;


/*
 * Runs, alters and drops of a pipeline lock it by its id (src/catalog.c)
 * rather than by a 32-bit hash of its name, which anyone could invert to
 * hold another role's lock through a name of their own.
 */
ALTER TABLE pipeline.pipelines ADD COLUMN id bigserial NOT NULL;
SELECT pg_catalog.pg_extension_config_dump('pipeline.pipelines_id_seq', '');

/*
 * poll_interval is at most a day and retry_delay at most a year since 0.4:
 * larger values overflowed the worker's and the retries' timestamps.
 */
UPDATE pipeline.pipelines SET poll_interval = '1 day' WHERE poll_interval > '1 day';
UPDATE pipeline.pipelines SET retry_delay = '1 year' WHERE retry_delay > '1 year';

/*
 * pipeline_drain cannot pin search_path (a procedure with a SET clause
 * cannot COMMIT), so it runs under its caller's: every operator and
 * function is qualified, or a user's operator of a closer signature (say
 * public.||(text, bigint)) would run as whoever drains, a superuser too.
 */
CREATE OR REPLACE PROCEDURE pipeline_drain(name text)
LANGUAGE plpgsql
AS $$
DECLARE
    r pipeline.runs;
BEGIN
    LOOP
        r := pg_catalog.pipeline_run(name);
        COMMIT;
        -- A snapshot pipeline (no watermark) has no backlog: one run is all.
        EXIT WHEN r.status OPERATOR(pg_catalog.<>) 'succeeded'::pg_catalog.text
               OR r.watermark_to IS NULL;
    END LOOP;
    IF r.status OPERATOR(pg_catalog.=) 'failed'::pg_catalog.text THEN
        RAISE EXCEPTION 'pipeline "%" failed during drain: %', name, r.error
            USING ERRCODE = coalesce(r.sqlstate, 'XX000'::pg_catalog.text),
                  HINT = pg_catalog.format('See pipeline.runs for run %s.', r.run_id);
    END IF;
END
$$;

/*
 * The implicit rule of a target's CHECK constraint evaluates the stored
 * constraint (src/target_checks.c) rather than its deparsed text, which
 * the load would have parsed again under the owner's search_path.
 */
CREATE FUNCTION pipeline_breaks_check(constraint_oid oid, VARIADIC "any")
RETURNS boolean
AS 'MODULE_PATHNAME', 'pipeline_breaks_check'
LANGUAGE C VOLATILE;

/*
 * A rule row edited from psql with a NULL argument crashed the run that
 * compiled it: every rule has an argument (JSON null where it has none).
 */
UPDATE pipeline.contract_rules SET argument = 'null' WHERE argument IS NULL;
ALTER TABLE pipeline.contract_rules ALTER COLUMN argument SET NOT NULL;

/*
 * A view dropped with DROP TABLE takes its pg_cron job along too: the job
 * is the catalog owner's (a superuser's) and would go on refreshing a view
 * that anyone later creates under the same name.
 */
CREATE OR REPLACE FUNCTION pipeline.forget_dropped_matviews()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m record;
    t record;
    job_key text;
BEGIN
    FOR m IN
        DELETE FROM pipeline.matviews v
        USING pg_event_trigger_dropped_objects() d
        WHERE d.classid = 'pg_class'::regclass
          AND d.objsubid = 0
          AND d.objid = v.relation::oid
        RETURNING v.id, v.base_tables, v.schedule, d.schema_name, d.object_name
    LOOP
        FOR t IN
            SELECT tg.tgname, tg.tgrelid::regclass AS rel
            FROM pg_trigger tg
            WHERE tg.tgrelid = ANY (m.base_tables::oid[])
              AND tg.tgname LIKE 'pipeline\_matview\_' || m.id || '\_%'
        LOOP
            EXECUTE format('DROP TRIGGER %I ON %s', t.tgname, t.rel);
        END LOOP;
        IF to_regclass('pipeline.matview_log_' || m.id) IS NOT NULL THEN
            EXECUTE format('DROP TABLE pipeline.%I', 'matview_log_' || m.id);
        END IF;
        -- the job of the view, as src/schedule.c names it and removes it
        IF m.schedule IS NOT NULL AND to_regclass('cron.job') IS NOT NULL THEN
            job_key := quote_ident(m.schema_name) || '.' || quote_ident(m.object_name);
            EXECUTE 'SELECT cron.unschedule(jobid) FROM cron.job
                     WHERE jobname = $1 AND (username = current_user OR command = $2)'
              USING 'pipeline_view:' || job_key,
                    'SELECT pg_catalog.pipeline_refresh(' || quote_literal(job_key) || ')';
        END IF;
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------
-- CDC: exactly-once confirms, wedges
-- ---------------------------------------------------------------------

-- the tables copied at create: a table added to the publication later is
-- detected (its rows are not in the target) and pauses the pipeline
ALTER TABLE pipeline.cdc ADD COLUMN tables text[];
COMMENT ON COLUMN pipeline.cdc.tables IS
    'Published tables (schema.table) whose rows the initial copy took; NULL: not known (created before 0.4)';


-- ---------------------------------------------------------------------
-- Incremental views: correctness
-- ---------------------------------------------------------------------

/*
 * A change log belongs to the catalog's owner, who reads it for
 * pipeline.status and the worker; the view's owner keeps SELECT, INSERT
 * and DELETE (issue 11, item 2). Up to 0.3 the view's owner owned it and
 * could have given it rules, triggers, policies, indexes, statistics,
 * constraints, defaults, columns or inheritance, each a way to run code as
 * whoever reads or maintains it: all of that goes, so that a log repaired
 * here is the table a fresh install creates. A log turned into a view (or
 * moved away) cannot be repaired: the update stops and names the view.
 */
DO $matview_logs$
DECLARE
    catalog_owner regrole := (SELECT relowner FROM pg_class WHERE oid = 'pipeline.pipelines'::regclass);
    ours CONSTANT text := '^(sign|[ka][0-9]+)$';   -- the columns a log is created with
    m record;
    log regclass;
    r record;
BEGIN
    FOR m IN SELECT id, relation, owner FROM pipeline.matviews WHERE refresh = 'deferred' ORDER BY id
    LOOP
        log := to_regclass(format('pipeline.%I', 'matview_log_' || m.id));
        IF log IS NULL OR (SELECT relkind FROM pg_class WHERE oid = log) <> 'r'
           OR EXISTS (SELECT FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                      WHERE a.attrelid = log AND a.attnum > 0 AND NOT a.attisdropped AND a.attname ~ ours
                        AND CASE WHEN a.attname = 'sign' THEN t.oid <> 'int2'::regtype
                                 ELSE NOT (t.typtype = 'b' AND t.typelem <> 0 AND t.typlen = -1) END) THEN
            RAISE EXCEPTION 'the change log of materialized view % is no longer the table it was created as',
                            m.relation
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = format('Drop the view with pipeline_drop_matview(%L), update, and create it again.',
                                    m.relation::text);
        END IF;
        FOR r IN SELECT conname, conrelid::regclass AS rel FROM pg_constraint
                 WHERE conrelid = log OR confrelid = log LOOP
            EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.rel, r.conname);
        END LOOP;
        FOR r IN SELECT polname FROM pg_policy WHERE polrelid = log LOOP
            EXECUTE format('DROP POLICY %I ON %s', r.polname, log);
        END LOOP;
        FOR r IN SELECT rulename FROM pg_rewrite WHERE ev_class = log LOOP
            EXECUTE format('DROP RULE %I ON %s', r.rulename, log);
        END LOOP;
        FOR r IN SELECT tgname FROM pg_trigger WHERE tgrelid = log AND NOT tgisinternal LOOP
            EXECUTE format('DROP TRIGGER %I ON %s', r.tgname, log);
        END LOOP;
        FOR r IN SELECT indexrelid::regclass AS i FROM pg_index WHERE indrelid = log LOOP
            EXECUTE format('DROP INDEX %s', r.i);
        END LOOP;
        FOR r IN SELECT n.nspname, s.stxname FROM pg_statistic_ext s
                 JOIN pg_namespace n ON n.oid = s.stxnamespace WHERE s.stxrelid = log LOOP
            EXECUTE format('DROP STATISTICS %I.%I', r.nspname, r.stxname);
        END LOOP;
        FOR r IN SELECT inhrelid::regclass AS child, inhparent::regclass AS parent FROM pg_inherits
                 WHERE inhrelid = log OR inhparent = log LOOP
            EXECUTE format('ALTER TABLE %s NO INHERIT %s', r.child, r.parent);
        END LOOP;
        FOR r IN SELECT attname FROM pg_attribute
                 WHERE attrelid = log AND attnum > 0 AND NOT attisdropped ORDER BY attnum LOOP
            IF r.attname ~ ours THEN
                EXECUTE format('ALTER TABLE %s ALTER %I DROP DEFAULT, ALTER %I DROP IDENTITY IF EXISTS',
                               log, r.attname, r.attname);
            ELSE
                EXECUTE format('ALTER TABLE %s DROP COLUMN %I', log, r.attname);
            END IF;
        END LOOP;
        EXECUTE format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY, OWNER TO %s',
                       log, catalog_owner);
        -- the privileges of a fresh log: its owner's, and the view owner's below
        FOR r IN SELECT DISTINCT a.grantee FROM pg_class c, aclexplode(c.relacl) a
                 WHERE c.oid = log AND a.grantee <> catalog_owner LOOP
            EXECUTE format('REVOKE ALL ON %s FROM %s', log,
                           CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE r.grantee::regrole::text END);
        END LOOP;
        EXECUTE format('GRANT ALL ON %s TO %s', log, catalog_owner);
        EXECUTE format('GRANT SELECT, INSERT, DELETE ON %s TO %s', log, m.owner::regrole);
    END LOOP;
END
$matview_logs$;

/*
 * date_bin's bins have a fixed width: their step is recorded as a time
 * ('24:00:00', not '1 day', which is 23 or 25 hours across a DST change on
 * a timestamptz), as pipeline_create_matview now records it (issue 13,
 * item 5). A view keying on both date_bin and date_trunc cannot be told
 * apart here: recreate it (docs/matviews.md).
 */
UPDATE pipeline.matviews m
SET columns = (SELECT jsonb_agg(CASE WHEN c ? 'range_step' THEN
                                    jsonb_set(c, '{range_step}', to_jsonb(quote_literal(
                                        make_interval(secs => extract(epoch FROM
                                            regexp_replace(c->>'range_step', '^''(.*)''::interval$', '\1')::interval))::text)
                                        || '::interval'))
                                ELSE c END ORDER BY n)
               FROM jsonb_array_elements(m.columns) WITH ORDINALITY e(c, n))
WHERE m.full_query LIKE '%date_bin(%' AND m.full_query NOT LIKE '%date_trunc(%';

/*
 * Writers of an immediate view lock it before their statement locks rows
 * (issue 13, the deadlocks): a BEFORE statement trigger per base table, as
 * pipeline_create_matview now creates it, going with the view.
 */
DO $matview_locks$
DECLARE
    m record;
    base regclass;
    name text;
BEGIN
    FOR m IN SELECT id, relation, base_tables FROM pipeline.matviews WHERE refresh = 'immediate' ORDER BY id
    LOOP
        name := 'pipeline_matview_' || m.id || '_lock';
        FOREACH base IN ARRAY m.base_tables LOOP
            CONTINUE WHEN EXISTS (SELECT FROM pg_trigger WHERE tgrelid = base AND tgname = name);
            EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s '
                           'FOR EACH STATEMENT EXECUTE FUNCTION pg_catalog.pipeline_matview_capture(%L)',
                           name, base, m.id);
            EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', base, name);
            -- DROP TABLE of the view takes it along, as recordDependencyOn does for the others
            INSERT INTO pg_depend (classid, objid, objsubid, refclassid, refobjid, refobjsubid, deptype)
            SELECT 'pg_trigger'::regclass, t.oid, 0, 'pg_class'::regclass, m.relation, 0, 'a'
            FROM pg_trigger t WHERE t.tgrelid = base AND t.tgname = name;
        END LOOP;
    END LOOP;
END
$matview_locks$;


-- ---------------------------------------------------------------------
-- Pipelines: batches, lag, contracts and conversion
-- ---------------------------------------------------------------------

/*
 * The assignment cast of a transform's value into a target column, NULL
 * where it fails with a data error (only casts of built-in functions), so
 * the row breaks "<column>.type" instead of failing the run.
 */
CREATE FUNCTION pipeline_try_cast(value "any", type_of anyelement, typmod integer DEFAULT -1)
RETURNS anyelement
AS 'MODULE_PATHNAME', 'pipeline_try_cast'
LANGUAGE C STABLE PARALLEL SAFE;

/*
 * The creator's TimeZone and DateStyle, pinned for every run as the search
 * path is (and as incremental views pin them): text into date and timestamp
 * columns reads the same whoever runs the pipeline. Pipelines of an older
 * version take the settings of the session that updates the extension.
 */
ALTER TABLE pipeline.pipelines
    ADD COLUMN timezone text NOT NULL DEFAULT pg_catalog.current_setting('TimeZone'),
    ADD COLUMN datestyle text NOT NULL DEFAULT pg_catalog.current_setting('DateStyle');


-- ---------------------------------------------------------------------
-- Operations: workers, schedules, retries, the DAG
-- ---------------------------------------------------------------------


/*
 * The state of an object's pg_cron job, for pipeline.status: 'active',
 * 'inactive', 'missing' (no such job here, or no pg_cron: a restore into
 * another database), 'role missing' or 'role cannot log in' (pg_cron
 * cannot run it), 'other database'. One of the two arguments names the object. NULL for objects
 * the caller does not own.
 */
CREATE FUNCTION pipeline_job_state(pipeline text, matview regclass DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'pipeline_job_state'
LANGUAGE C STABLE;

/*
 * Topological order of the DAG in linear time (Kahn's algorithm): depth is
 * the longest upstream path. The recursive view of 0.1 walked every path.
 */
CREATE FUNCTION pipeline_run_order(OUT name text, OUT depth integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pipeline_run_order'
LANGUAGE C STABLE;

CREATE OR REPLACE VIEW pipeline.run_order
WITH (security_invoker = true) AS
SELECT o.name, o.depth FROM pg_catalog.pipeline_run_order() o;

/*
 * An inferred dependency (target = source) holds only when the upstream's
 * owner is the downstream's owner or owns the downstream's source: a role
 * that may merely INSERT into another role's landing table must not become
 * its upstream (and make pipeline_run_all skip it). Across owners without
 * that, declare the dependency with depends_on.
 */
CREATE OR REPLACE VIEW pipeline.dependencies
WITH (security_invoker = true) AS
SELECT d AS upstream, p.name AS downstream, 'declared' AS kind
FROM pipeline.pipelines p, unnest(p.depends_on) d
UNION
SELECT q.name, p.name, 'inferred'
FROM pipeline.pipelines p
JOIN pipeline.pipelines q ON q.target = p.source AND q.name <> p.name
JOIN pg_catalog.pg_class c ON c.oid = p.source::oid
WHERE q.owner = p.owner OR q.owner::oid = c.relowner;

/*
 * A pipeline dropped after the list of due ones was read (its upstream was
 * running) is left out, instead of failing the call and rolling back the
 * runs done so far.
 */
CREATE OR REPLACE FUNCTION pipeline_run_due()
RETURNS SETOF pipeline.runs
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    due record;
    r pipeline.runs;
BEGIN
    FOR due IN
        SELECT p.name, p.queued_at IS NOT NULL AS queued
        FROM pipeline.pipelines p JOIN pipeline.run_order o ON o.name = p.name
        WHERE p.enabled AND (p.queued_at IS NOT NULL OR p.retry_at <= now())
        ORDER BY o.depth, p.name
    LOOP
        BEGIN
            r := pipeline_run(due.name, CASE WHEN due.queued THEN 'cascade' ELSE 'retry' END);
        EXCEPTION WHEN undefined_object THEN
            CONTINUE;           -- dropped meanwhile
        END;
        RETURN NEXT r;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION pipeline_run_all()
RETURNS SETOF pipeline.runs
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current text;
    upstream_failed text;
    blocked text[] := '{}';
    r pipeline.runs;
BEGIN
    FOR current IN
        SELECT p.name
        FROM pipeline.pipelines p JOIN pipeline.run_order o ON o.name = p.name
        WHERE p.enabled
        ORDER BY o.depth, p.name
    LOOP
        SELECT min(dep.upstream) INTO upstream_failed
        FROM pipeline.dependencies dep
        WHERE dep.downstream = current AND dep.upstream = ANY (blocked);
        IF upstream_failed IS NOT NULL THEN
            blocked := blocked || current;
            r := NULL;
            r.pipeline := current;
            r.status := 'skipped';
            r.error := format('upstream pipeline "%s" failed', upstream_failed);
            RETURN NEXT r;
            CONTINUE;
        END IF;
        BEGIN
            r := pipeline_run(current, 'run_all');
        EXCEPTION WHEN undefined_object THEN
            CONTINUE;           -- dropped meanwhile
        END;
        IF r.status = 'failed' THEN
            blocked := blocked || current;
        END IF;
        RETURN NEXT r;
    END LOOP;
END
$$;

/*
 * pipeline.status: next_run_at counts a cron schedule only while its job
 * can run, and schedule_job tells the job's state.
 */
CREATE OR REPLACE VIEW pipeline.status
WITH (security_invoker = true) AS
SELECT p.name AS pipeline,
       p.owner,
       p.source,
       p.target,
       p.mode,
       CASE
           WHEN running.pid IS NOT NULL THEN 'running'
           WHEN NOT p.enabled THEN 'disabled'
           WHEN last.status = 'failed' THEN 'failed'
           ELSE 'idle'
       END AS state,
       p.enabled,
       p.schedule,
       CASE
           WHEN NOT p.enabled THEN NULL
           WHEN p.continuous THEN now()
           ELSE least(CASE WHEN job.state = 'active' THEN pg_catalog.pipeline_cron_next(p.schedule) END,
                      p.retry_at,
                      CASE WHEN p.queued_at IS NOT NULL THEN now() END)
       END AS next_run_at,
       p.failures,
       p.retry_at AS next_retry_at,
       p.queued_at,
       p.last_watermark AS watermark,
       last.run_id AS last_run_id,
       last.status AS last_status,
       last.finished_at AS last_run_at,
       p.last_success_at,
       last.rows_read AS last_rows_read,
       last.rows_loaded AS last_rows_loaded,
       last.error AS last_error,
       now() - p.last_success_at AS freshness,
       CASE WHEN p.mode = 'cdc' THEN pg_catalog.pg_size_pretty(slot.lag_bytes)
            ELSE pg_catalog.pipeline_lag(p.name) END AS lag,
       CASE WHEN p.mode = 'cdc' THEN 'cdc' ELSE 'pipeline' END AS kind,
       NULL::bigint AS pending_changes,
       slot.slot_lag_bytes,
       slot.wal_status,
       job.state AS schedule_job
FROM pipeline.pipelines p
LEFT JOIN LATERAL (
    -- only CDC pipelines ask their source (a gating qual: no call otherwise)
    SELECT * FROM pg_catalog.pipeline_cdc_slot(p.name) WHERE p.mode = 'cdc') slot ON true
LEFT JOIN LATERAL (
    SELECT pg_catalog.pipeline_job_state(p.name) AS state WHERE p.schedule IS NOT NULL) job ON true
LEFT JOIN LATERAL (
    SELECT r.run_id, r.status, r.finished_at, r.rows_read, r.rows_loaded,
           r.error
    FROM pipeline.runs r
    WHERE r.pipeline = p.name
    ORDER BY r.run_id DESC
    LIMIT 1) last ON true
LEFT JOIN LATERAL (
    SELECT l.pid
    FROM pg_catalog.pg_locks l
    WHERE l.locktype = 'object'
      AND l.classid = 'pipeline.pipelines'::regclass
      AND l.objid = pg_catalog.pipeline_lock_key(p.name)
      AND l.granted
      -- the caller's own finished run holds its lock until commit
      AND l.pid <> pg_catalog.pg_backend_pid()
    LIMIT 1) running ON true
UNION ALL
SELECT m.relation::text,
       m.owner,
       NULL::regclass,
       m.relation,
       m.refresh,
       CASE WHEN m.refresh = 'deferred' AND pending.n > 0 THEN 'stale' ELSE 'fresh' END,
       true,
       m.schedule,
       CASE WHEN m.continuous THEN now()
            WHEN mjob.state = 'active' THEN pg_catalog.pipeline_cron_next(m.schedule) END,
       0, NULL, NULL, NULL, NULL, NULL, NULL,
       m.last_refresh_at,
       NULL, NULL, NULL,
       now() - m.last_refresh_at,
       NULL,
       'matview',
       pending.n,
       NULL,
       NULL,
       mjob.state
FROM pipeline.matviews m
CROSS JOIN LATERAL (SELECT CASE WHEN m.refresh = 'immediate' THEN 0
                     ELSE pg_catalog.pipeline_pending_changes(m.relation) END AS n) pending
LEFT JOIN LATERAL (
    SELECT pg_catalog.pipeline_job_state(NULL, m.relation) AS state WHERE m.schedule IS NOT NULL) mjob ON true;

/*
 * Jobs of 0.3 belong to whoever scheduled them (a role that can be dropped
 * and then stops pg_cron), and a view's job shared the pipelines' names:
 * give each job of a pipeline or view to the catalog's owner, and the
 * views' jobs their own prefix. Jobs are recognised by their exact command.
 */
DO $$
DECLARE
    catalog_owner name := (SELECT r.rolname FROM pg_catalog.pg_class c
                           JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
                           WHERE c.oid = 'pipeline.pipelines'::regclass);
BEGIN
    IF pg_catalog.to_regclass('cron.job') IS NULL THEN
        RETURN;
    END IF;
    EXECUTE $sql$
        UPDATE cron.job j SET username = $1
        FROM pipeline.pipelines p
        WHERE j.jobname = 'pipeline:' || p.name
          AND j.command = pg_catalog.format('SELECT pg_catalog.pipeline_run(%L, ''cron'')', p.name)
    $sql$ USING catalog_owner;
    EXECUTE $sql$
        UPDATE cron.job j SET username = $1, jobname = 'pipeline_view:' || k.key
        FROM pipeline.matviews m,
             LATERAL (SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) AS key
                      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                      WHERE c.oid = m.relation) k
        WHERE j.jobname = 'pipeline:' || k.key
          AND j.command = pg_catalog.format('SELECT pg_catalog.pipeline_refresh(%L)', k.key)
    $sql$ USING catalog_owner;
END
$$;

/*
 * The running background workers of the cluster and the last error of
 * their own (outside a run's recorded failure: e.g. a database default
 * that makes every statement fail). The error text only for superusers
 * and members of pg_read_all_stats.
 */
CREATE FUNCTION pipeline_workers(OUT database name, OUT pid integer, OUT started_at timestamptz,
    OUT errors bigint, OUT last_error_at timestamptz, OUT last_error text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pipeline_workers'
LANGUAGE C STABLE;

CREATE VIEW pipeline.workers AS
SELECT w.database, w.pid, w.started_at, w.errors, w.last_error_at, w.last_error
FROM pg_catalog.pipeline_workers() w;

GRANT SELECT ON pipeline.workers TO PUBLIC;

COMMENT ON VIEW pipeline.workers IS 'Running background workers and their last error outside a run';
