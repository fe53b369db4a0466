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

