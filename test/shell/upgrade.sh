#!/usr/bin/env bash
# ALTER EXTENSION pipeline UPDATE from 0.1 to 0.2 to 0.3 to 0.4 on a populated
# catalog: pipelines keep their definitions, watermarks and history and go
# on running, the library runs an older catalog until the update, and the
# updated extension has exactly the objects of a fresh install.
source "$(dirname "$0")/../tap.sh"
OLD=pipeline_upgrade_old
NEW=pipeline_upgrade_fresh
qo() { q test "$PORT" "$OLD" "$1"; }
qn() { q test "$PORT" "$NEW" "$1"; }

cluster_psql test "$PORT" -q -c "DROP DATABASE IF EXISTS $OLD" -c "DROP DATABASE IF EXISTS $NEW" \
  -c "CREATE DATABASE $OLD" -c "CREATE DATABASE $NEW" 2>/dev/null
cluster_psql test "$PORT" -d "$OLD" -q >/dev/null <<'SQL'
CREATE EXTENSION pipeline VERSION '0.1';
CREATE TABLE src (id bigserial PRIMARY KEY, v int);
CREATE TABLE dst (id bigint, v int);
INSERT INTO src (v) SELECT g FROM generate_series(1, 100) g;
SELECT pipeline_create('copy', 'src', 'dst', watermark => 'id');
SELECT pipeline_contract('copy', '{"columns": {"v": {"max": 1000}}}');
SELECT pipeline_run('copy');
SQL
is "$(qo "SELECT extversion FROM pg_extension WHERE extname = 'pipeline'")" "0.1" "version 0.1 installed"

# the new library against the 0.1 catalog, before the update
qo "INSERT INTO src (v) VALUES (5000), (7)" >/dev/null
is "$(qo "SELECT status || ' ' || rows_loaded || ' ' || rows_quarantined FROM pipeline_run('copy')")" "succeeded 1 1" \
  "before the update, the new library runs 0.1 pipelines"
is "$(qo "SELECT count(*) FROM pipeline.status")" 1 "and pipeline.status of 0.1 works"

qo "ALTER EXTENSION pipeline UPDATE TO '0.2'" >/dev/null
ok $? "ALTER EXTENSION pipeline UPDATE TO '0.2'"
is "$(qo "SELECT extversion FROM pg_extension WHERE extname = 'pipeline'")" "0.2" "version 0.2 after the update"
is "$(qo "SELECT name, last_watermark FROM pipeline.pipelines")" "copy|102" "definitions and watermarks kept"
is "$(qo "SELECT count(*) FROM pipeline.runs")" 2 "run history kept"
is "$(qo "SELECT count(*) FROM pipeline.quarantine")" 1 "quarantine kept"
qo "INSERT INTO src (v) VALUES (8)" >/dev/null
is "$(qo "SELECT status || ' ' || rows_read || ' ' || watermark_from FROM pipeline_run('copy')")" "succeeded 1 102" \
  "the pipeline continues from its watermark"

qo "SELECT pipeline_create_matview('per_v', 'SELECT v % 2 AS odd, count(*) AS n FROM dst GROUP BY 1')" >/dev/null
qo "INSERT INTO src (v) VALUES (9), (11)" >/dev/null
qo "SELECT pipeline_run('copy')" >/dev/null
is "$(qo "SELECT string_agg(odd || ':' || n, ',' ORDER BY odd) FROM per_v")" "0:51,1:53" \
  "incremental views work after the update, refreshed by the pipeline's run"
is "$(qo "SELECT string_agg(kind, ',' ORDER BY kind) FROM pipeline.status")" "matview,pipeline" \
  "pipeline.status of 0.2 lists both"

# 0.2 to 0.3: CDC pipelines
qo "INSERT INTO src (v) VALUES (6000)" >/dev/null
is "$(qo "SELECT status || ' ' || rows_quarantined FROM pipeline_run('copy')")" "succeeded 1" \
  "before the update to 0.3, the new library quarantines into a 0.2 catalog"
qo "ALTER EXTENSION pipeline UPDATE TO '0.3'" >/dev/null
ok $? "ALTER EXTENSION pipeline UPDATE TO '0.3'"
is "$(qo "SELECT extversion FROM pg_extension WHERE extname = 'pipeline'")" "0.3" "version 0.3 after the update"
qo "INSERT INTO src (v) VALUES (7000), (12)" >/dev/null
is "$(qo "SELECT status || ' ' || rows_loaded || ' ' || rows_quarantined FROM pipeline_run('copy')")" "succeeded 1 1" \
  "the pipeline continues after the update to 0.3"
is "$(qo "SELECT count(*) || ' ' || count(lsn) FROM pipeline.quarantine")" "3 0" \
  "quarantined rows of table pipelines have no LSN"
is "$(qo "SELECT string_agg(kind || ':' || coalesce(wal_status, '-'), ',' ORDER BY kind) FROM pipeline.status")" \
  "matview:-,pipeline:-" "pipeline.status of 0.3 has the slot columns"

# 0.3 to 0.4: security and correctness fixes
# a rule whose pipeline is gone (0.3 let one survive a concurrent drop)
qo "INSERT INTO pipeline.contract_rules (pipeline, owner, rule, kind, argument)
    VALUES ('gone', 'postgres', 'spy', 'check', '\"true\"')" >/dev/null
# A 0.3 change log belongs to the view's owner, who may have dressed it up.
cluster_psql test "$PORT" -q -c "DROP ROLE IF EXISTS pipeline_upgrade_mv" -c "CREATE ROLE pipeline_upgrade_mv LOGIN" 2>/dev/null
mv_owner_setup="CREATE SCHEMA mvu AUTHORIZATION pipeline_upgrade_mv;
SET ROLE pipeline_upgrade_mv;
CREATE TABLE mvu.t (g int, v int);
INSERT INTO mvu.t VALUES (1, 1), (1, 2), (2, 3);
SELECT pipeline_create_matview('mvu.per_g', 'SELECT g, count(*) AS n, sum(v) AS s FROM mvu.t GROUP BY g');
INSERT INTO mvu.t VALUES (2, 4);
CREATE TABLE mvu.e (ts timestamptz);
SELECT pipeline_create_matview('mvu.per_day', \$\$SELECT date_bin('1 day', ts, '2026-01-01') AS day, count(*) AS n FROM mvu.e GROUP BY 1\$\$);
SELECT pipeline_create_matview('mvu.now_g', 'SELECT g, count(*) AS n FROM mvu.t GROUP BY g', 'immediate');"
cluster_psql test "$PORT" -d "$OLD" -q >/dev/null <<SQL
$mv_owner_setup
RESET ROLE;
-- as the 0.3 library created it: the log owned by the view's owner, date_bin's step in days
UPDATE pipeline.matviews SET columns = replace(columns::text, '24:00:00', '1 day')::jsonb
WHERE relation = 'mvu.per_day'::regclass;
-- and without the BEFORE trigger of an immediate view
DO \$\$ BEGIN EXECUTE format('DROP TRIGGER pipeline_matview_%s_lock ON mvu.t',
                             (SELECT id FROM pipeline.matviews WHERE relation = 'mvu.now_g'::regclass)); END \$\$;
DO \$\$ BEGIN EXECUTE format('ALTER TABLE pipeline.matview_log_%s OWNER TO pipeline_upgrade_mv',
                             (SELECT id FROM pipeline.matviews WHERE relation = 'mvu.per_g'::regclass)); END \$\$;
SET ROLE pipeline_upgrade_mv;
CREATE FUNCTION mvu.f() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
DO \$\$
DECLARE log text := (SELECT 'pipeline.matview_log_' || id FROM pipeline.matviews WHERE relation = 'mvu.per_g'::regclass);
BEGIN
  EXECUTE format('CREATE TRIGGER x BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION mvu.f()', log);
  EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', log);
  EXECUTE format('CREATE POLICY p ON %s USING (true)', log);
  EXECUTE format('CREATE STATISTICS mvu.s ON sign, k1 FROM %s', log);
  EXECUTE format('ALTER TABLE %s ADD COLUMN extra int DEFAULT 1', log);
  EXECUTE format('GRANT ALL ON %s TO PUBLIC', log);
END \$\$;
SQL
log_of="(SELECT ('pipeline.matview_log_' || id)::regclass FROM pipeline.matviews WHERE relation = 'mvu.per_g'::regclass)"
is "$(qo "SELECT count(*) FROM pg_trigger WHERE tgrelid = $log_of") $(qo "SELECT relowner::regrole FROM pg_class WHERE oid = $log_of")" \
  "1 pipeline_upgrade_mv" "a 0.3 change log, owned and altered by the view's owner"
qo "ALTER EXTENSION pipeline UPDATE TO '0.4'" >/dev/null
ok $? "ALTER EXTENSION pipeline UPDATE TO '0.4'"
is "$(qo "SELECT extversion FROM pg_extension WHERE extname = 'pipeline'")" "0.4" "version 0.4 after the update"
is "$(qo "SELECT string_agg(pipeline || ':' || rule, ',') FROM pipeline.contract_rules")" "copy:v.max" \
  "the update removes rules left without their pipeline and keeps the others"
qo "INSERT INTO src (v) VALUES (13)" >/dev/null
is "$(qo "SELECT status || ' ' || rows_loaded FROM pipeline_run('copy')")" "succeeded 1" \
  "the pipeline continues after the update to 0.4"

# the updated extension has the objects and definitions of a fresh install
cluster_psql test "$PORT" -d "$NEW" -q -c "CREATE EXTENSION pipeline" >/dev/null
cluster_psql test "$PORT" -d "$NEW" -q -c "$mv_owner_setup" >/dev/null
log_desc="SELECT c.relkind, c.relowner = (SELECT relowner FROM pg_class WHERE oid = 'pipeline.pipelines'::regclass),
                 c.relacl, c.relrowsecurity, c.relforcerowsecurity, c.relhasrules,
                 (SELECT count(*) FROM pg_trigger WHERE tgrelid = c.oid), (SELECT count(*) FROM pg_policy WHERE polrelid = c.oid),
                 (SELECT count(*) FROM pg_statistic_ext WHERE stxrelid = c.oid),
                 (SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || ' ' || attstorage::text || ' ' || atthasdef, ','
                                    ORDER BY attnum) FROM pg_attribute WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped)
          FROM pg_class c WHERE c.oid = $log_of"
is "$(qo "$log_desc")" "$(qn "$log_desc")" "a change log of 0.3 is repaired into the table a fresh install creates"
triggers="SELECT string_agg(regexp_replace(t.tgname, '[0-9]+', 'N') || ' ' || t.tgenabled::text || ' ' || t.tgtype
                            || ' ' || coalesce(d.deptype::text, '-'), ',' ORDER BY t.tgname)
          FROM pg_trigger t LEFT JOIN pg_depend d ON d.classid = 'pg_trigger'::regclass AND d.objid = t.oid
               AND d.refobjid = 'mvu.now_g'::regclass
          WHERE t.tgrelid = 'mvu.t'::regclass AND t.tgname ~ ('^pipeline_matview_' || (SELECT id FROM pipeline.matviews WHERE relation = 'mvu.now_g'::regclass) || '_')"
is "$(qo "$triggers")" "$(qn "$triggers")" "an immediate view of 0.3 gets the BEFORE trigger of a fresh install"
is "$(qo "$triggers" | grep -o '_lock A [0-9]* a')" "_lock A 62 a" "enabled always, going with the view"
steps="SELECT columns FROM pipeline.matviews WHERE relation = 'mvu.per_day'::regclass"
is "$(qo "$steps")" "$(qn "$steps")" "date_bin's step of 0.3 (1 day) is recorded as a fresh install records it (24:00:00)"
is "$(qo "SELECT changes FROM pipeline_refresh('mvu.per_g')") $(qo "SELECT string_agg(g || ':' || n || ':' || s, ',' ORDER BY g) FROM mvu.per_g")" \
  "1 1:2:3,2:2:7" "and its pending change is applied"
members="SELECT pg_describe_object(classid, objid, objsubid) FROM pg_depend
         WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
           AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pipeline') ORDER BY 1"
is "$(qo "$members")" "$(qn "$members")" "the same extension members as a fresh install"
defs="SELECT string_agg(c.relname || ':' || pg_get_viewdef(c.oid), ' ' ORDER BY c.relname) FROM pg_class c
      WHERE c.relnamespace = 'pipeline'::regnamespace AND c.relkind = 'v'"
is "$(qo "$defs")" "$(qn "$defs")" "the same view definitions"
funcs="SELECT string_agg(md5(pg_get_functiondef(p.oid)), ',' ORDER BY p.proname) FROM pg_proc p
       JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
       JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pipeline'"
is "$(qo "$funcs")" "$(qn "$funcs")" "the same function definitions"
cols="SELECT string_agg(attrelid::regclass || '.' || attname || ' ' || format_type(atttypid, atttypmod), ',' ORDER BY attrelid::regclass::text, attnum)
      FROM pg_attribute WHERE attrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'pipeline'::regnamespace
                                           AND relkind = 'r' AND relname NOT LIKE 'matview\\_log\\_%')
        AND attnum > 0 AND NOT attisdropped"
is "$(qo "$cols")" "$(qn "$cols")" "the same catalog tables and columns"
is "$(qo "SELECT array_length(extconfig, 1) FROM pg_extension WHERE extname = 'pipeline'")" \
  "$(qn "SELECT array_length(extconfig, 1) FROM pg_extension WHERE extname = 'pipeline'")" \
  "the same tables kept by pg_dump"

# a 0.3 change log its owner turned into a view cannot be repaired: the
# update stops and names the view
TAMPERED=pipeline_upgrade_tampered
cluster_psql test "$PORT" -q -c "DROP DATABASE IF EXISTS $TAMPERED" -c "CREATE DATABASE $TAMPERED" 2>/dev/null
cluster_psql test "$PORT" -d "$TAMPERED" -q >/dev/null <<'SQL'
CREATE EXTENSION pipeline VERSION '0.3';
CREATE SCHEMA mvu AUTHORIZATION pipeline_upgrade_mv;
SET ROLE pipeline_upgrade_mv;
CREATE TABLE mvu.t (g int);
SELECT pipeline_create_matview('mvu.per_g', 'SELECT g, count(*) AS n FROM mvu.t GROUP BY g');
RESET ROLE;
ALTER TABLE pipeline.matview_log_1 OWNER TO pipeline_upgrade_mv;
SET ROLE pipeline_upgrade_mv;
CREATE RULE "_RETURN" AS ON SELECT TO pipeline.matview_log_1 DO INSTEAD SELECT 1::int2 AS sign, ARRAY[1] AS k1;
SQL
out=$(cluster_psql test "$PORT" -d "$TAMPERED" -qAt -c "ALTER EXTENSION pipeline UPDATE TO '0.4'" 2>&1)
is "$(echo "$out" | grep -o 'ERROR:.*')" \
  "ERROR:  the change log of materialized view mvu.per_g is no longer the table it was created as" \
  "an update over a change log turned into a view stops and names the view"
is "$(q test "$PORT" "$TAMPERED" "SELECT extversion FROM pg_extension WHERE extname = 'pipeline'")" "0.3" "and changes nothing"

cluster_psql test "$PORT" -q -c "DROP DATABASE $OLD" -c "DROP DATABASE $NEW" -c "DROP DATABASE $TAMPERED" -c "DROP ROLE pipeline_upgrade_mv"
done_testing
