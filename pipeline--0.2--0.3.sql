/* pipeline--0.2--0.3.sql: change data capture from logical replication */

\echo Use "ALTER EXTENSION pipeline UPDATE TO '0.3'" to load this file. \quit

/*
 * A CDC pipeline is a row of pipeline.pipelines with mode 'cdc' and no
 * single source or target: it applies the tables of a publication to the
 * tables of the same names in a target schema. Its source and stream
 * position live in pipeline.cdc. See docs/cdc.md.
 */
ALTER TABLE pipeline.pipelines ALTER COLUMN source DROP NOT NULL,
    ALTER COLUMN target DROP NOT NULL;
ALTER TABLE pipeline.pipelines DROP CONSTRAINT pipelines_mode_check;
ALTER TABLE pipeline.pipelines ADD CONSTRAINT pipelines_mode_check
    CHECK (mode IN ('append', 'upsert', 'replace', 'cdc'));
ALTER TABLE pipeline.pipelines ADD CONSTRAINT pipelines_cdc_check
    CHECK ((mode = 'cdc') = (source IS NULL AND target IS NULL));

CREATE TABLE pipeline.cdc (
    pipeline      text    PRIMARY KEY,
    owner         regrole NOT NULL,
    publication   text    NOT NULL,
    target_schema name,
    connection    text,               -- NULL: this server and database
    slot          name    NOT NULL,
    applied_lsn   pg_lsn  NOT NULL,   -- end of the last applied transaction
    events        regclass            -- the change stream as rows, or NULL
);

COMMENT ON TABLE pipeline.cdc IS 'Source and stream position of each CDC pipeline';

SELECT pg_catalog.pg_extension_config_dump('pipeline.cdc', '');
ALTER TABLE pipeline.cdc ENABLE ROW LEVEL SECURITY;
-- a connection string may hold a password: only the owner sees it
CREATE POLICY cdc_of_owner ON pipeline.cdc
    FOR SELECT USING (pg_catalog.pg_has_role(owner, 'USAGE'));
GRANT SELECT ON pipeline.cdc TO PUBLIC;

-- a quarantined change of a CDC pipeline keeps its position and table
ALTER TABLE pipeline.quarantine ADD COLUMN lsn pg_lsn, ADD COLUMN relation text;

CREATE FUNCTION pipeline_create_cdc(
    name          text,
    publication   text,
    target_schema text,
    connection    text    DEFAULT NULL,
    slot          text    DEFAULT NULL,
    copy_data     boolean DEFAULT true,
    options       jsonb   DEFAULT '{}')
RETURNS void
AS 'MODULE_PATHNAME', 'pipeline_create_cdc'
LANGUAGE C VOLATILE;

-- dropping a CDC pipeline drops its slot, unless drop_slot is false (a
-- source that is gone for good)
DROP FUNCTION pipeline_drop(text);
CREATE FUNCTION pipeline_drop(name text, drop_slot boolean DEFAULT true)
RETURNS void
AS 'MODULE_PATHNAME', 'pipeline_drop'
LANGUAGE C STRICT VOLATILE;

/*
 * The replication slot of a CDC pipeline, on its source: bytes of WAL the
 * pipeline has not applied (lag_bytes), bytes not yet confirmed to the slot
 * (slot_lag_bytes), and the slot's wal_status ('missing' without a slot,
 * 'unreachable' when the source cannot be reached). NULLs for other
 * pipelines and for pipelines the caller does not own.
 */
CREATE FUNCTION pipeline_cdc_slot(name text,
    OUT lag_bytes bigint, OUT slot_lag_bytes bigint, OUT wal_status text)
RETURNS record
AS 'MODULE_PATHNAME', 'pipeline_cdc_slot'
LANGUAGE C STRICT VOLATILE;

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
       CASE WHEN p.mode = 'cdc' THEN pg_catalog.pg_size_pretty(slot.lag_bytes)
            ELSE pg_catalog.pipeline_lag(p.name) END AS lag,
       CASE WHEN p.mode = 'cdc' THEN 'cdc' ELSE 'pipeline' END AS kind,
       NULL::bigint AS pending_changes,
       slot.slot_lag_bytes,
       slot.wal_status
FROM pipeline.pipelines p
LEFT JOIN LATERAL (
    -- only CDC pipelines ask their source (a gating qual: no call otherwise)
    SELECT * FROM pg_catalog.pipeline_cdc_slot(p.name) WHERE p.mode = 'cdc') slot ON true
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
       pending.n,
       NULL,
       NULL
FROM pipeline.matviews m,
LATERAL (SELECT CASE WHEN m.refresh = 'immediate' THEN 0
                     ELSE pg_catalog.pipeline_pending_changes(m.relation) END AS n) pending;

GRANT SELECT ON pipeline.status TO PUBLIC;

COMMENT ON VIEW pipeline.status IS 'One row per pipeline, CDC pipeline or incremental materialized view: state, last run, freshness, lag';
