/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  Reading and writing pipeline definitions (pipeline.pipelines).
 *
 * Every statement here runs through SPI with parameters, as the catalog's
 * owner, under search_path "pg_catalog, pg_temp". Callers have SPI
 * connected. Runs of one pipeline are serialised by a heavyweight lock on
 * the pair (pipeline.pipelines, hash of the name), so that checking whether
 * a pipeline is running costs no catalog write.
 *
 *-------------------------------------------------------------------------
 */
#include "pipeline.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

PG_FUNCTION_INFO_V1(pipeline_lock_key);

#define PIPELINE_COLUMNS \
	"name, owner::oid, source::oid, target::oid, transform, watermark::text, " \
	"last_watermark, mode, key::text[], batch_size, lag, enabled, search_path, " \
	"max_bad_fraction, max_bad_rows, depends_on, retries, retry_delay::text, " \
	"timeout::text, (extract(epoch FROM timeout) * 1000)::int8, failures, " \
	"cascade, queued_at IS NOT NULL, continuous, poll_interval::text"

Oid
catalog_relid(void)
{
	Oid			nsp = get_namespace_oid("pipeline", false);
	Oid			relid = get_relname_relid("pipelines", nsp);

	if (!OidIsValid(relid))
		elog(ERROR, "relation pipeline.pipelines is missing");
	return relid;
}

/*
 * The lock of a pipeline is an object lock on pipeline.pipelines whose
 * objid is the pipeline's id (since 0.4). It used to be a 32-bit hash of the
 * name, which anyone could invert: a role holding the lock of a name of its
 * choosing blocked another role's pipeline. Ids come from a sequence, so no
 * two pipelines share a lock; objsubid 1 keeps these locks apart from the
 * hash locks of a library older than 0.4.
 */
#define LOCK_BY_ID 1

/* Has the catalog the id column (ALTER EXTENSION UPDATE to 0.4 done)? */
static bool
catalog_has_ids(void)
{
	return get_attnum(catalog_relid(), "id") != InvalidAttrNumber;
}

/*
 * The key of the pipeline's lock, read in a fresh snapshot; false if there
 * is no such pipeline. A catalog older than 0.4 has no ids: a hash of the
 * name, as that catalog's library used.
 */
static bool
lock_key_of(const char *name, Oid *key)
{
	static SPIPlanPtr plan = NULL;
	IdentityFrame frame;
	Datum		arg = CStringGetTextDatum(name);
	bool		found;
	bool		isnull;

	if (!catalog_has_ids())
	{
		*key = (Oid) DatumGetUInt32(hash_any((const unsigned char *) name, strlen(name)));
		return true;
	}
	SPI_connect();
	identity_enter_catalog(&frame);
	if (plan == NULL)
	{
		Oid			argtype = TEXTOID;
		SPIPlanPtr	fresh = SPI_prepare("SELECT id FROM pipeline.pipelines WHERE name = $1",
										1, &argtype);

		if (fresh == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(fresh);
		plan = fresh;
	}
	if (SPI_execute_plan(plan, &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the id of pipeline \"%s\"", name);
	found = SPI_processed == 1;
	if (found)
		*key = (Oid) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 1, &isnull));
	identity_leave(&frame);
	SPI_finish();
	return found;
}

static int
lock_subid(void)
{
	return catalog_has_ids() ? LOCK_BY_ID : 0;
}

Datum
pipeline_lock_key(PG_FUNCTION_ARGS)
{
	Oid			key;

	if (!lock_key_of(text_to_cstring(PG_GETARG_TEXT_PP(0)), &key))
		PG_RETURN_NULL();
	PG_RETURN_OID(key);
}

/*
 * Serialise runs, alters and drops of one pipeline until the end of the
 * transaction. A second caller waits, then sees the first one's results.
 * Nothing to lock when there is no pipeline of that name (the caller finds
 * it missing, or creates it). If the name was dropped and created again
 * while we waited, the lock we got is the old pipeline's: take the new one.
 */
void
catalog_lock_pipeline(const char *name)
{
	Oid			relid = catalog_relid();
	Oid			key;
	Oid			again;

	while (lock_key_of(name, &key))
	{
		LockDatabaseObject(relid, key, lock_subid(), ExclusiveLock);
		if (lock_key_of(name, &again) && again == key)
			return;
		UnlockDatabaseObject(relid, key, lock_subid(), ExclusiveLock);
	}
}

/* The same lock, only if it is free now (true: no such pipeline). */
bool
catalog_try_lock_pipeline(const char *name)
{
	Oid			relid = catalog_relid();
	Oid			key;
	Oid			again;

	while (lock_key_of(name, &key))
	{
		if (!ConditionalLockDatabaseObject(relid, key, lock_subid(), ExclusiveLock))
			return false;
		if (lock_key_of(name, &again) && again == key)
			return true;
		UnlockDatabaseObject(relid, key, lock_subid(), ExclusiveLock);
	}
	return true;
}

const char *
load_mode_name(LoadMode mode)
{
	switch (mode)
	{
		case LOAD_APPEND:
			return "append";
		case LOAD_UPSERT:
			return "upsert";
		case LOAD_REPLACE:
			return "replace";
		case LOAD_CDC:
			return "cdc";
	}
	return NULL;				/* keep compiler quiet */
}

LoadMode
parse_load_mode(const char *mode)
{
	if (strcmp(mode, "append") == 0)
		return LOAD_APPEND;
	if (strcmp(mode, "upsert") == 0)
		return LOAD_UPSERT;
	if (strcmp(mode, "replace") == 0)
		return LOAD_REPLACE;
	if (strcmp(mode, "cdc") == 0)
		return LOAD_CDC;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid pipeline mode \"%s\"", mode),
			 errhint("Valid modes are \"append\", \"upsert\" and \"replace\".")));
	return LOAD_APPEND;			/* keep compiler quiet */
}

static char *
text_column(HeapTuple tuple, TupleDesc desc, int column)
{
	return SPI_getvalue(tuple, desc, column);	/* NULL for SQL NULL */
}

static List *
name_array_to_list(Datum array)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	List	   *result = NIL;

	deconstruct_array(DatumGetArrayTypeP(array), TEXTOID, -1, false,
					  TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
		if (!nulls[i])
			result = lappend(result, makeString(TextDatumGetCString(elems[i])));
	return result;
}

static Datum
list_to_text_array(List *names)
{
	int			n = list_length(names);
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			i = 0;
	ListCell   *lc;

	foreach(lc, names)
		elems[i++] = CStringGetTextDatum(strVal(lfirst(lc)));
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false,
										   TYPALIGN_INT));
}

static Pipeline *
pipeline_from_tuple(HeapTuple tuple, TupleDesc desc)
{
	Pipeline   *p = palloc0(sizeof(Pipeline));
	bool		isnull;
	Datum		d;

	p->name = text_column(tuple, desc, 1);
	p->owner = DatumGetObjectId(SPI_getbinval(tuple, desc, 2, &isnull));
	p->source = DatumGetObjectId(SPI_getbinval(tuple, desc, 3, &isnull));
	p->target = DatumGetObjectId(SPI_getbinval(tuple, desc, 4, &isnull));
	p->transform = text_column(tuple, desc, 5);
	p->watermark = text_column(tuple, desc, 6);
	p->last_watermark = text_column(tuple, desc, 7);
	p->mode = parse_load_mode(text_column(tuple, desc, 8));
	d = SPI_getbinval(tuple, desc, 9, &isnull);
	p->key = isnull ? NIL : name_array_to_list(d);
	d = SPI_getbinval(tuple, desc, 10, &isnull);
	p->batch_size = isnull ? 0 : DatumGetInt64(d);
	p->lag = text_column(tuple, desc, 11);
	p->enabled = DatumGetBool(SPI_getbinval(tuple, desc, 12, &isnull));
	p->search_path = text_column(tuple, desc, 13);
	d = SPI_getbinval(tuple, desc, 14, &isnull);
	p->max_bad_fraction = isnull ? -1 : DatumGetFloat8(d);
	d = SPI_getbinval(tuple, desc, 15, &isnull);
	p->max_bad_rows = isnull ? -1 : DatumGetInt64(d);
	d = SPI_getbinval(tuple, desc, 16, &isnull);
	p->depends_on = isnull ? NIL : name_array_to_list(d);
	p->retries = DatumGetInt32(SPI_getbinval(tuple, desc, 17, &isnull));
	p->retry_delay = text_column(tuple, desc, 18);
	p->timeout = text_column(tuple, desc, 19);
	d = SPI_getbinval(tuple, desc, 20, &isnull);
	p->timeout_ms = isnull ? 0 : DatumGetInt64(d);
	p->failures = DatumGetInt32(SPI_getbinval(tuple, desc, 21, &isnull));
	p->cascade = DatumGetBool(SPI_getbinval(tuple, desc, 22, &isnull));
	p->queued = DatumGetBool(SPI_getbinval(tuple, desc, 23, &isnull));
	p->continuous = DatumGetBool(SPI_getbinval(tuple, desc, 24, &isnull));
	p->poll_interval = text_column(tuple, desc, 25);
	return p;
}

/*
 * Read one definition. The plan is prepared once per backend: the idle run
 * (nothing new) is dominated by this lookup and the source's max().
 */
Pipeline *
catalog_read_pipeline(const char *name, bool missing_ok)
{
	static SPIPlanPtr plan = NULL;
	IdentityFrame frame;
	Datum		arg = CStringGetTextDatum(name);
	Pipeline   *p = NULL;

	identity_enter_catalog(&frame);
	if (plan == NULL)
	{
		Oid			argtype = TEXTOID;
		SPIPlanPtr	fresh;

		fresh = SPI_prepare("SELECT " PIPELINE_COLUMNS
							" FROM pipeline.pipelines WHERE name = $1",
							1, &argtype);
		if (fresh == NULL)
			elog(ERROR, "SPI_prepare failed: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(fresh);
		plan = fresh;
	}
	if (SPI_execute_plan(plan, &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pipeline \"%s\"", name);
	if (SPI_processed == 1)
		p = pipeline_from_tuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc);
	identity_leave(&frame);

	if (p == NULL && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("pipeline \"%s\" does not exist", name),
				 errhint("See SELECT name FROM pipeline.pipelines for the pipelines you own.")));
	return p;
}

/*
 * Lock, read (with its contract) and check ownership: the start of every
 * change to a pipeline.
 */
Pipeline *
open_owned_pipeline(const char *name)
{
	Pipeline   *p;

	catalog_lock_pipeline(name);
	p = catalog_read_pipeline(name, false);
	check_pipeline_owner(p);
	p->rules = contract_read(p);
	return p;
}

/* The definition's columns as SPI arguments $1..$19, shared by insert and update. */
#define DEFINITION_NARGS 19

static void
definition_args(const Pipeline *p, Oid *types, Datum *values, char *nulls)
{
	memset(nulls, ' ', DEFINITION_NARGS);
	types[0] = TEXTOID;
	values[0] = CStringGetTextDatum(p->name);
	types[1] = OIDOID;
	values[1] = ObjectIdGetDatum(p->owner);
	types[2] = OIDOID;
	values[2] = ObjectIdGetDatum(p->source);
	nulls[2] = OidIsValid(p->source) ? ' ' : 'n';	/* none for CDC */
	types[3] = OIDOID;
	values[3] = ObjectIdGetDatum(p->target);
	nulls[3] = OidIsValid(p->target) ? ' ' : 'n';
	types[4] = TEXTOID;
	values[4] = text_arg(p->transform, &nulls[4]);
	types[5] = TEXTOID;
	values[5] = text_arg(p->watermark, &nulls[5]);
	types[6] = TEXTOID;
	values[6] = CStringGetTextDatum(load_mode_name(p->mode));
	types[7] = TEXTARRAYOID;
	values[7] = p->key ? list_to_text_array(p->key) : (Datum) 0;
	nulls[7] = p->key ? ' ' : 'n';
	types[8] = INT8OID;
	values[8] = Int64GetDatum(p->batch_size);
	nulls[8] = p->batch_size > 0 ? ' ' : 'n';
	types[9] = TEXTOID;
	values[9] = text_arg(p->lag, &nulls[9]);
	types[10] = BOOLOID;
	values[10] = BoolGetDatum(p->enabled);
	types[11] = TEXTOID;
	values[11] = CStringGetTextDatum(p->search_path);
	types[12] = TEXTARRAYOID;
	values[12] = p->depends_on ? list_to_text_array(p->depends_on) : (Datum) 0;
	nulls[12] = p->depends_on ? ' ' : 'n';
	types[13] = INT4OID;
	values[13] = Int32GetDatum(p->retries);
	types[14] = TEXTOID;
	values[14] = CStringGetTextDatum(p->retry_delay);
	types[15] = TEXTOID;
	values[15] = text_arg(p->timeout, &nulls[15]);
	types[16] = BOOLOID;
	values[16] = BoolGetDatum(p->cascade);
	types[17] = BOOLOID;
	values[17] = BoolGetDatum(p->continuous);
	types[18] = TEXTOID;
	values[18] = CStringGetTextDatum(p->poll_interval);
}

/* A statement on the catalog, as its owner; "expected" rows or -1: any. */
void
run_catalog_statement(const char *sql, int nargs, Oid *types, Datum *values,
					  char *nulls, int expected)
{
	IdentityFrame frame;
	int			rc;

	identity_enter_catalog(&frame);
	rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);
	if (rc < 0)
		elog(ERROR, "catalog statement failed: %s", SPI_result_code_string(rc));
	identity_leave(&frame);
	if (expected >= 0 && SPI_processed != (uint64) expected)
		elog(ERROR, "catalog statement affected " UINT64_FORMAT " rows, expected %d",
			 SPI_processed, expected);
}

/* The name is the primary key: say so in our words, not the index's. */
void
catalog_refuse_existing(const char *name)
{
	if (catalog_read_pipeline(name, true) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("pipeline \"%s\" already exists", name),
				 errhint("Choose another name, or use pipeline_alter() or pipeline_drop().")));
}

void
catalog_insert_pipeline(const Pipeline *p, Jsonb *options)
{
	Oid			types[DEFINITION_NARGS + 1];
	Datum		values[DEFINITION_NARGS + 1];
	char		nulls[DEFINITION_NARGS + 1];

	catalog_refuse_existing(p->name);
	definition_args(p, types, values, nulls);
	types[DEFINITION_NARGS] = JSONBOID;
	values[DEFINITION_NARGS] = JsonbPGetDatum(options);
	nulls[DEFINITION_NARGS] = ' ';
	run_catalog_statement("INSERT INTO pipeline.pipelines (name, owner, source, "
						  "target, transform, watermark, mode, key, batch_size, "
						  "lag, enabled, search_path, depends_on, retries, retry_delay, "
						  "timeout, cascade, continuous, poll_interval, options) VALUES ($1, "
						  "$2::regrole, $3::regclass, $4::regclass, $5, $6, $7, $8, $9, $10, "
						  "$11, $12, $13, $14, $15::interval, $16::interval, $17, $18, "
						  "$19::interval, $20)",
						  DEFINITION_NARGS + 1, types, values, nulls, 1);
}

void
catalog_update_pipeline(const Pipeline *p)
{
	Oid			types[DEFINITION_NARGS];
	Datum		values[DEFINITION_NARGS];
	char		nulls[DEFINITION_NARGS];

	definition_args(p, types, values, nulls);
	run_catalog_statement("UPDATE pipeline.pipelines SET owner = $2::regrole, "
						  "source = $3::regclass, target = $4::regclass, "
						  "transform = $5, watermark = $6, mode = $7, key = $8, "
						  "batch_size = $9, lag = $10, enabled = $11, "
						  "search_path = $12, depends_on = $13, retries = $14, "
						  "retry_delay = $15::interval, timeout = $16::interval, "
						  "cascade = $17, continuous = $18, poll_interval = $19::interval "
						  "WHERE name = $1",
						  DEFINITION_NARGS, types, values, nulls, 1);
}

/* A catalog statement whose only parameter ($1) is a pipeline's name. */
static void
statement_for(const char *sql, const char *name, int expected)
{
	Oid			type = TEXTOID;
	Datum		value = CStringGetTextDatum(name);

	run_catalog_statement(sql, 1, &type, &value, NULL, expected);
}

void
catalog_delete_pipeline(const char *name)
{
	unschedule_dropped(name);
	statement_for("DELETE FROM pipeline.runs WHERE pipeline = $1", name, -1);
	statement_for("DELETE FROM pipeline.contract_rules WHERE pipeline = $1", name, -1);
	statement_for("DELETE FROM pipeline.quarantine WHERE pipeline = $1", name, -1);
	statement_for("DELETE FROM pipeline.pipelines WHERE name = $1", name, 1);
}

/*
 * Move the watermark. Called in the same transaction as the load, so the
 * two commit together or not at all: that is the exactly-once guarantee.
 */
void
catalog_set_watermark(const char *name, const char *watermark, bool succeeded)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};

	values[0] = CStringGetTextDatum(name);
	values[1] = text_arg(watermark, &nulls[1]);
	run_catalog_statement(succeeded ?
						  "UPDATE pipeline.pipelines SET last_watermark = $2, "
						  "last_success_at = pg_catalog.now(), failures = 0, retry_at = NULL "
						  "WHERE name = $1" :
						  "UPDATE pipeline.pipelines SET last_watermark = $2 "
						  "WHERE name = $1",
						  2, types, values, nulls, 1);
}

/*
 * Count a failed run; while retries are left, the next one is due after
 * retry_delay * 2^(failures so far): 5 minutes, 10, 20, ... capped at a
 * day (or at retry_delay, if that is longer), so that many retries never
 * overflow an interval. Out of retries, retry_at is NULL and the failure
 * stays in pipeline.status.
 */
void
catalog_record_failure(const char *name)
{
	statement_for("UPDATE pipeline.pipelines SET failures = failures OPERATOR(pg_catalog.+) 1, "
				  "retry_at = CASE WHEN failures OPERATOR(pg_catalog.<) retries THEN "
				  "pg_catalog.now() OPERATOR(pg_catalog.+) "
				  "pg_catalog.make_interval(secs => GREATEST("
				  "pg_catalog.date_part('epoch', retry_delay), LEAST("
				  "pg_catalog.date_part('epoch', retry_delay) OPERATOR(pg_catalog.*) "
				  "pg_catalog.power(2, LEAST(failures, 30)), 86400))) END "
				  "WHERE name OPERATOR(pg_catalog.=) $1", name, 1);
}

/* Stop running a pipeline until pipeline_alter enables it again. */
void
catalog_pause(const char *name)
{
	statement_for("UPDATE pipeline.pipelines SET enabled = false, retry_at = NULL WHERE name = $1",
				  name, 1);
}

/* The pipeline ran: an upstream's request to run it is served. */
void
catalog_dequeue(const char *name)
{
	statement_for("UPDATE pipeline.pipelines SET queued_at = NULL WHERE name = $1", name, 1);
}

/*
 * Option cascade: a run that loaded rows queues its downstream pipelines,
 * in its own transaction, for pipeline_run_due().
 */
void
catalog_queue_downstream(const char *name)
{
	statement_for("UPDATE pipeline.pipelines SET queued_at = coalesce(queued_at, pg_catalog.now()) "
				  "WHERE name IN (SELECT downstream FROM pipeline.dependencies WHERE upstream = $1)",
				  name, -1);
}
