# PGXS build for the pipeline extension.
EXTENSION  = pipeline
MODULE_big = pipeline
OBJS = \
	src/pipeline.o \
	src/security.o \
	src/sql_text.o \
	src/catalog.o \
	src/define.o \
	src/contract.o \
	src/target_checks.o \
	src/quarantine.o \
	src/depends.o \
	src/schedule.o \
	src/worker.o \
	src/extract.o \
	src/transform.o \
	src/load.o \
	src/run.o \
	src/matview_query.o \
	src/matview.o \
	src/matview_capture.o \
	src/matview_fastpath.o \
	src/cdc_source.o \
	src/cdc_apply.o \
	src/cdc.o

DATA = pipeline--0.1.sql pipeline--0.2.sql pipeline--0.1--0.2.sql \
	pipeline--0.2--0.3.sql pipeline--0.3--0.4.sql
# The full script of the current version is the previous one plus its
# update, so a fresh install and an updated one cannot differ.
DATA_built = pipeline--0.3.sql pipeline--0.4.sql
PGFILEDESC = "pipeline - in-database data pipelines"

PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = -Werror

# pg_regress suites (sql/ and expected/), run against a server that
# scripts/test.sh starts; see README.md.
REGRESS = create run modes explain contracts matviews
REGRESS_OPTS = --inputdir=. --outputdir=. --dbname=pipeline_regress

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies
$(OBJS): src/pipeline.h

pipeline--0.3.sql: pipeline--0.2.sql pipeline--0.2--0.3.sql
	( echo '/* pipeline--0.3.sql: generated from pipeline--0.2.sql and pipeline--0.2--0.3.sql */'; \
	  cat pipeline--0.2.sql; grep -v '^\\echo' pipeline--0.2--0.3.sql ) > $@

pipeline--0.4.sql: pipeline--0.3.sql pipeline--0.3--0.4.sql
	( echo '/* pipeline--0.4.sql: generated from pipeline--0.3.sql and pipeline--0.3--0.4.sql */'; \
	  cat pipeline--0.3.sql; grep -v '^\\echo' pipeline--0.3--0.4.sql ) > $@
