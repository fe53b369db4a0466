/* pipeline--0.1.sql: catalog and SQL API of the pipeline extension */

\echo Use "CREATE EXTENSION pipeline" to load this file. \quit

/*
 * The catalog lives in schema "pipeline". The functions live in pg_catalog
 * (the extension's schema) so that pipeline_run() and friends resolve
 * whatever the caller's search_path is.
 *
 * Users read the catalog through row-level security: a role sees the rows of
 * the pipelines it owns (or whose owner it inherits from). Users never write
 * the catalog directly; the C functions do, as the catalog's owner, after
 * checking that the caller owns the pipeline.
 */
CREATE SCHEMA pipeline;
GRANT USAGE ON SCHEMA pipeline TO PUBLIC;

CREATE TABLE pipeline.pipelines (
    name            text        PRIMARY KEY,
    owner           regrole     NOT NULL,
    source          regclass    NOT NULL,
    target          regclass    NOT NULL,
    transform       text,
    watermark       name,
    last_watermark  text,
    mode            text        NOT NULL DEFAULT 'append'
                    CHECK (mode IN ('append', 'upsert', 'replace')),
    key             name[],
    batch_size      bigint      CHECK (batch_size > 0),
    lag             text,
    enabled         boolean     NOT NULL DEFAULT true,
    search_path     text        NOT NULL,
    options         jsonb       NOT NULL DEFAULT '{}',
    depends_on      text[],
    schedule        text,
    retries         integer     NOT NULL DEFAULT 0 CHECK (retries >= 0),
    retry_delay     interval    NOT NULL DEFAULT '5 minutes',
    timeout         interval,
    failures        integer     NOT NULL DEFAULT 0,
    retry_at        timestamptz,
    cascade         boolean     NOT NULL DEFAULT false,
    queued_at       timestamptz,
    continuous      boolean     NOT NULL DEFAULT false,
    poll_interval   interval    NOT NULL DEFAULT '1 second'
                    CHECK (poll_interval >= '100 milliseconds'),
    max_bad_fraction float8     CHECK (max_bad_fraction BETWEEN 0 AND 1),
    max_bad_rows    bigint      CHECK (max_bad_rows >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_success_at timestamptz
);

COMMENT ON TABLE pipeline.pipelines IS 'One row per pipeline definition';

CREATE TABLE pipeline.runs (
    run_id           bigserial   PRIMARY KEY,
    pipeline         text        NOT NULL,
    owner            regrole     NOT NULL,
    trigger          text        NOT NULL DEFAULT 'manual',
    attempt          integer     NOT NULL DEFAULT 1,
    status           text        NOT NULL
                     CHECK (status IN ('succeeded', 'failed', 'skipped')),
    rows_read        bigint      NOT NULL DEFAULT 0,
    rows_loaded      bigint      NOT NULL DEFAULT 0,
    rows_quarantined bigint      NOT NULL DEFAULT 0,
    watermark_from   text,
    watermark_to     text,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz NOT NULL,
    error            text,
    sqlstate         text,
    rule_failures    jsonb
);

CREATE INDEX runs_pipeline_idx ON pipeline.runs (pipeline, run_id DESC);

COMMENT ON TABLE pipeline.runs IS 'History of pipeline runs that did work or failed';

CREATE TABLE pipeline.contract_rules (
    pipeline    text    NOT NULL,
    owner       regrole NOT NULL,
    rule        text    NOT NULL,
    kind        text    NOT NULL CHECK (kind IN ('not_null', 'unique', 'type', 'min',
                        'max', 'in', 'matches', 'max_length', 'references', 'check')),
    column_name name,
    argument    jsonb,
    action      text    NOT NULL DEFAULT 'quarantine'
                CHECK (action IN ('quarantine', 'fail', 'warn')),
    PRIMARY KEY (pipeline, rule)
);

COMMENT ON TABLE pipeline.contract_rules IS 'Data contract rules, one row per rule';

CREATE TABLE pipeline.quarantine (
    id             bigserial   PRIMARY KEY,
    pipeline       text        NOT NULL,
    owner          regrole     NOT NULL,
    run_id         bigint      NOT NULL,
    data           jsonb       NOT NULL,
    violations     text[]      NOT NULL,
    error          text,
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    replayed_at    timestamptz
);

CREATE INDEX quarantine_pipeline_idx ON pipeline.quarantine (pipeline, id)
    WHERE replayed_at IS NULL;
CREATE INDEX quarantine_run_idx ON pipeline.quarantine (run_id);

COMMENT ON TABLE pipeline.quarantine IS 'Rows that broke a contract rule, with every rule they broke';

-- pg_dump keeps the user rows of these tables (and their sequences).
SELECT pg_catalog.pg_extension_config_dump('pipeline.pipelines', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.runs', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.runs_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.contract_rules', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.quarantine', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.quarantine_id_seq', '');

ALTER TABLE pipeline.pipelines ENABLE ROW LEVEL SECURITY;
ALTER TABLE pipeline.runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE pipeline.contract_rules ENABLE ROW LEVEL SECURITY;
ALTER TABLE pipeline.quarantine ENABLE ROW LEVEL SECURITY;

CREATE POLICY pipelines_of_owner ON pipeline.pipelines
    FOR SELECT USING (pg_catalog.pg_has_role(owner, 'USAGE'));
CREATE POLICY runs_of_owner ON pipeline.runs
    FOR SELECT USING (pg_catalog.pg_has_role(owner, 'USAGE'));
CREATE POLICY rules_of_owner ON pipeline.contract_rules
    FOR SELECT USING (pg_catalog.pg_has_role(owner, 'USAGE'));
-- Rules are editable from psql by the pipeline's owner; a row must name a
-- pipeline of that owner. (A check rule's SQL runs as that same owner.)
CREATE POLICY rules_edited_by_owner ON pipeline.contract_rules
    FOR ALL USING (pg_catalog.pg_has_role(owner, 'USAGE'))
    WITH CHECK (pg_catalog.pg_has_role(owner, 'USAGE') AND EXISTS (
        SELECT 1 FROM pipeline.pipelines p
        WHERE p.name OPERATOR(pg_catalog.=) contract_rules.pipeline
          AND p.owner OPERATOR(pg_catalog.=) contract_rules.owner));
CREATE POLICY quarantine_of_owner ON pipeline.quarantine
    FOR SELECT USING (pg_catalog.pg_has_role(owner, 'USAGE'));

GRANT SELECT ON pipeline.pipelines, pipeline.runs, pipeline.contract_rules,
    pipeline.quarantine TO PUBLIC;
GRANT INSERT, UPDATE, DELETE ON pipeline.contract_rules TO PUBLIC;

/* The key of the heavyweight lock that serialises runs of one pipeline. */
CREATE FUNCTION pipeline_lock_key(name text)
RETURNS oid
AS 'MODULE_PATHNAME', 'pipeline_lock_key'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION pipeline_lock_key(text) IS
    'objid of the lock a running pipeline holds (pg_locks.objid)';

/* How far a pipeline is behind its source: newest watermark minus the committed one. */
CREATE FUNCTION pipeline_lag(name text)
RETURNS text
AS 'MODULE_PATHNAME', 'pipeline_lag'
LANGUAGE C STRICT STABLE;

/* When a pg_cron schedule next fires after a time (GMT, as pg_cron 1.4). */
CREATE FUNCTION pipeline_cron_next(schedule text, after timestamptz DEFAULT now())
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'pipeline_cron_next'
LANGUAGE C STRICT STABLE PARALLEL SAFE;

CREATE VIEW pipeline.status
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
       pg_catalog.pipeline_lag(p.name) AS lag
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
    LIMIT 1) running ON true;

GRANT SELECT ON pipeline.status TO PUBLIC;

COMMENT ON VIEW pipeline.status IS 'One row per pipeline: state, last run, freshness';

/*
 * The DAG: a pipeline runs after those it depends on, declared (option
 * depends_on) or inferred (its source is another pipeline's target).
 */
CREATE VIEW pipeline.dependencies
WITH (security_invoker = true) AS
SELECT d AS upstream, p.name AS downstream, 'declared' AS kind
FROM pipeline.pipelines p, unnest(p.depends_on) d
UNION
SELECT q.name, p.name, 'inferred'
FROM pipeline.pipelines p
JOIN pipeline.pipelines q ON q.target = p.source AND q.name <> p.name;

GRANT SELECT ON pipeline.dependencies TO PUBLIC;

COMMENT ON VIEW pipeline.dependencies IS 'Edges of the pipeline DAG: upstream runs before downstream';

/* Topological order: a pipeline's depth is its longest upstream path. */
CREATE VIEW pipeline.run_order
WITH (security_invoker = true) AS
WITH RECURSIVE depth(name, d) AS (
    SELECT p.name, 0 FROM pipeline.pipelines p
    UNION ALL
    SELECT dep.downstream, depth.d + 1
    FROM depth JOIN pipeline.dependencies dep ON dep.upstream = depth.name
    WHERE depth.d < 1000)
SELECT name, max(d) AS depth FROM depth GROUP BY name;

GRANT SELECT ON pipeline.run_order TO PUBLIC;

CREATE FUNCTION pipeline_create(
    name      text,
    source    text,
    target    text,
    transform text    DEFAULT NULL,
    watermark text    DEFAULT NULL,
    mode      text    DEFAULT 'append',
    key       text[]  DEFAULT NULL,
    options   jsonb   DEFAULT '{}')
RETURNS void
AS 'MODULE_PATHNAME', 'pipeline_create'
LANGUAGE C VOLATILE;

CREATE FUNCTION pipeline_alter(name text, options jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'pipeline_alter'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION pipeline_drop(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'pipeline_drop'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION pipeline_reset(name text, watermark text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'pipeline_reset'
LANGUAGE C VOLATILE;

CREATE FUNCTION pipeline_run(name text, trigger text DEFAULT 'manual')
RETURNS pipeline.runs
AS 'MODULE_PATHNAME', 'pipeline_run'
LANGUAGE C STRICT VOLATILE;

/*
 * Run the pipelines that are due: queued by an upstream run (option
 * cascade), or failed with retries left and their backoff elapsed. Upstream
 * first. Schedule it every minute, e.g.
 * SELECT cron.schedule('pipeline-due', '* * * * *', 'SELECT pipeline_run_due()').
 */
CREATE FUNCTION pipeline_run_due()
RETURNS SETOF pipeline.runs
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    due record;
BEGIN
    FOR due IN
        SELECT p.name, p.queued_at IS NOT NULL AS queued
        FROM pipeline.pipelines p JOIN pipeline.run_order o ON o.name = p.name
        WHERE p.enabled AND (p.queued_at IS NOT NULL OR p.retry_at <= now())
        ORDER BY o.depth, p.name
    LOOP
        RETURN NEXT pipeline_run(due.name, CASE WHEN due.queued THEN 'cascade' ELSE 'retry' END);
    END LOOP;
END
$$;

CREATE FUNCTION pipeline_explain(name text, plan boolean DEFAULT false)
RETURNS SETOF text
AS 'MODULE_PATHNAME', 'pipeline_explain'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION pipeline_contract(name text, contract jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'pipeline_contract'
LANGUAGE C VOLATILE;

CREATE FUNCTION pipeline_replay(name text, ids bigint[] DEFAULT NULL,
    OUT replayed bigint, OUT loaded bigint, OUT still_bad bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'pipeline_replay'
LANGUAGE C VOLATILE;

CREATE FUNCTION pipeline_check(relation regclass, contract jsonb)
RETURNS TABLE (rule text, failing_rows bigint, samples jsonb)
AS 'MODULE_PATHNAME', 'pipeline_check'
LANGUAGE C STRICT VOLATILE;

/*
 * Conversion without an error: the value of text in the type of the second
 * argument (with the given typmod), or NULL when the text is not valid
 * input. Generated load statements use it so a bad value breaks the rule
 * "<column>.type" instead of aborting the batch.
 */
CREATE FUNCTION pipeline_try_input(value text, type_of anyelement, typmod integer DEFAULT -1)
RETURNS anyelement
AS 'MODULE_PATHNAME', 'pipeline_try_input'
LANGUAGE C STABLE PARALLEL SAFE;

/* Row routing inside a run's load statement (not for direct use). */
CREATE FUNCTION pipeline_divert(violations text[], data jsonb)
RETURNS boolean
AS 'MODULE_PATHNAME', 'pipeline_divert'
LANGUAGE C VOLATILE;
CREATE FUNCTION pipeline_warn(rule text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'pipeline_warn'
LANGUAGE C VOLATILE;
CREATE FUNCTION pipeline_fail(rule text, data jsonb)
RETURNS boolean
AS 'MODULE_PATHNAME', 'pipeline_fail'
LANGUAGE C VOLATILE;
CREATE FUNCTION pipeline_diverted()
RETURNS TABLE (violations text[], data jsonb)
AS 'MODULE_PATHNAME', 'pipeline_diverted'
LANGUAGE C VOLATILE;
REVOKE EXECUTE ON FUNCTION pipeline_diverted() FROM PUBLIC;

CREATE FUNCTION pipeline_schedule(name text, cron text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'pipeline_schedule'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION pipeline_unschedule(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'pipeline_unschedule'
LANGUAGE C STRICT VOLATILE;

/*
 * Run every enabled pipeline the caller owns, upstream before downstream.
 * A pipeline whose upstream failed in this pass is skipped, not run on
 * stale input.
 */
CREATE FUNCTION pipeline_run_all()
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
        r := pipeline_run(current, 'run_all');
        IF r.status = 'failed' THEN
            blocked := blocked || current;
        END IF;
        RETURN NEXT r;
    END LOOP;
END
$$;

/*
 * Process everything available in batch_size chunks, committing after each,
 * so a large backfill never holds one giant transaction. No SET clause: a
 * procedure with one cannot COMMIT.
 */
CREATE PROCEDURE pipeline_drain(name text)
LANGUAGE plpgsql
AS $$
DECLARE
    r pipeline.runs;
BEGIN
    LOOP
        r := pg_catalog.pipeline_run(name);
        COMMIT;
        -- A snapshot pipeline (no watermark) has no backlog: one run is all.
        EXIT WHEN r.status <> 'succeeded' OR r.watermark_to IS NULL;
    END LOOP;
    IF r.status = 'failed' THEN
        RAISE EXCEPTION 'pipeline "%" failed during drain: %', name, r.error
            USING ERRCODE = coalesce(r.sqlstate, 'XX000'),
                  HINT = 'See pipeline.runs for run ' || r.run_id || '.';
    END IF;
END
$$;
