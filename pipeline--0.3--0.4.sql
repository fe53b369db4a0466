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


-- ---------------------------------------------------------------------
-- Operations: workers, schedules, retries, the DAG
-- ---------------------------------------------------------------------

