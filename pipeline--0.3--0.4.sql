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


-- ---------------------------------------------------------------------
-- Operations: workers, schedules, retries, the DAG
-- ---------------------------------------------------------------------

