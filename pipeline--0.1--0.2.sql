/* pipeline--0.1--0.2.sql: incremental materialized views */

\echo Use "ALTER EXTENSION pipeline UPDATE TO '0.2'" to load this file. \quit

/*
 * Incremental materialized views. The view is an ordinary table kept equal
 * to its query: statement triggers on the base tables log what changed, and
 * a refresh recomputes only the affected groups (or merges inserted rows
 * into count/sum/min/max columns). See docs/matviews.md.
 */
CREATE TABLE pipeline.matviews (
    id              bigserial   PRIMARY KEY,
    relation        regclass    NOT NULL UNIQUE,
    owner           regrole     NOT NULL,
    query           text        NOT NULL,
    refresh         text        NOT NULL CHECK (refresh IN ('deferred', 'immediate')),
    options         jsonb       NOT NULL DEFAULT '{}',
    continuous      boolean     NOT NULL DEFAULT false,
    search_path     text        NOT NULL,
    timezone        text        NOT NULL,
    datestyle       text        NOT NULL,
    base_tables     regclass[]  NOT NULL,
    columns         jsonb       NOT NULL,
    algebraic       boolean     NOT NULL,
    capture         text[]      NOT NULL,
    recompute       text        NOT NULL,
    full_query      text        NOT NULL,
    schedule        text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_refresh_at timestamptz
);

COMMENT ON TABLE pipeline.matviews IS 'One row per incremental materialized view';

SELECT pg_catalog.pg_extension_config_dump('pipeline.matviews', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.matviews_id_seq', '');
ALTER TABLE pipeline.matviews ENABLE ROW LEVEL SECURITY;
CREATE POLICY matviews_of_owner ON pipeline.matviews
    FOR SELECT USING (pg_catalog.pg_has_role(owner, 'USAGE'));
GRANT SELECT ON pipeline.matviews TO PUBLIC;

CREATE FUNCTION pipeline_create_matview(
    name    text,
    query   text,
    refresh text  DEFAULT 'deferred',
    options jsonb DEFAULT '{}')
RETURNS void
AS 'MODULE_PATHNAME', 'pipeline_create_matview'
LANGUAGE C VOLATILE;

CREATE FUNCTION pipeline_refresh(name text, OUT changes bigint, OUT groups bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'pipeline_refresh'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION pipeline_drop_matview(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'pipeline_drop_matview'
LANGUAGE C STRICT VOLATILE;

/* Changed base rows not yet applied to a deferred view. */
CREATE FUNCTION pipeline_pending_changes(matview regclass)
RETURNS bigint
AS 'MODULE_PATHNAME', 'pipeline_pending_changes'
LANGUAGE C STRICT STABLE;

/* The statement trigger that logs or applies changes of a base table. */
CREATE FUNCTION pipeline_matview_capture()
RETURNS trigger
AS 'MODULE_PATHNAME', 'pipeline_matview_capture'
LANGUAGE C;

/* Refresh the deferred views with option continuous that have changes. */
CREATE FUNCTION pipeline_refresh_due()
RETURNS SETOF regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m regclass;
BEGIN
    FOR m IN
        SELECT relation FROM pipeline.matviews
        WHERE continuous AND refresh = 'deferred'
          AND pipeline_pending_changes(relation) > 0
        ORDER BY id
    LOOP
        BEGIN
            PERFORM pipeline_refresh(m::text);
            RETURN NEXT m;
        EXCEPTION WHEN OTHERS THEN
            -- one broken view must not stop the others (nor the worker)
            RAISE WARNING 'refresh of materialized view % failed: %', m, SQLERRM;
        END;
    END LOOP;
END
$$;

CREATE VIEW pipeline.matview_status
WITH (security_invoker = true) AS
SELECT m.relation AS matview,
       m.owner,
       m.refresh,
       m.base_tables,
       m.algebraic,
       m.schedule,
       CASE WHEN m.refresh = 'immediate' THEN 0
            ELSE pg_catalog.pipeline_pending_changes(m.relation) END AS pending_changes,
       m.last_refresh_at,
       now() - m.last_refresh_at AS freshness
FROM pipeline.matviews m;

GRANT SELECT ON pipeline.matview_status TO PUBLIC;

COMMENT ON VIEW pipeline.matview_status IS 'One row per incremental materialized view: pending changes, last refresh';

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
           ELSE least(pg_catalog.pipeline_cron_next(p.schedule), p.retry_at,
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
       pg_catalog.pipeline_lag(p.name) AS lag,
       'pipeline'::text AS kind,
       NULL::bigint AS pending_changes
FROM pipeline.pipelines p
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
       CASE WHEN m.continuous THEN now() ELSE pg_catalog.pipeline_cron_next(m.schedule) END,
       0, NULL, NULL, NULL, NULL, NULL, NULL,
       m.last_refresh_at,
       NULL, NULL, NULL,
       now() - m.last_refresh_at,
       NULL,
       'matview',
       pending.n
FROM pipeline.matviews m,
LATERAL (SELECT CASE WHEN m.refresh = 'immediate' THEN 0
                     ELSE pg_catalog.pipeline_pending_changes(m.relation) END AS n) pending;

GRANT SELECT ON pipeline.status TO PUBLIC;

COMMENT ON VIEW pipeline.status IS 'One row per pipeline or incremental materialized view: state, last run, freshness';

/*
 * A view dropped with DROP TABLE (or with a base table, CASCADE) leaves the
 * catalog, and takes its triggers and change log along. (They depend on
 * the view in pg_depend too, but pg_restore does not recreate such
 * dependencies.)
 */
CREATE FUNCTION pipeline.forget_dropped_matviews()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m record;
    t record;
BEGIN
    FOR m IN
        DELETE FROM pipeline.matviews v
        USING pg_event_trigger_dropped_objects() d
        WHERE d.classid = 'pg_class'::regclass
          AND d.objsubid = 0
          AND d.objid = v.relation::oid
        RETURNING v.id, v.base_tables
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
    END LOOP;
END
$$;

CREATE EVENT TRIGGER pipeline_forget_dropped_matviews ON sql_drop
    EXECUTE FUNCTION pipeline.forget_dropped_matviews();
