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

cluster_psql test "$PORT" -q -c "DROP DATABASE $OLD" -c "DROP DATABASE $NEW"
done_testing
