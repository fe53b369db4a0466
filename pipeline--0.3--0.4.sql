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

