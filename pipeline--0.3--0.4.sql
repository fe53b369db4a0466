/* pipeline--0.3--0.4.sql: security and correctness fixes of round three */

\echo Use "ALTER EXTENSION pipeline UPDATE TO '0.4'" to load this file. \quit

/*
 * Each part below belongs to one issue of the round; keep them in this
 * order so the script reads as the change log of 0.4.
 */

-- ---------------------------------------------------------------------
-- Security: ownership, identities, visibility
-- ---------------------------------------------------------------------


-- ---------------------------------------------------------------------
-- CDC: exactly-once confirms, wedges
-- ---------------------------------------------------------------------


-- ---------------------------------------------------------------------
-- Incremental views: correctness
-- ---------------------------------------------------------------------


-- ---------------------------------------------------------------------
-- Pipelines: batches, lag, contracts and conversion
-- ---------------------------------------------------------------------


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
