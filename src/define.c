/*-------------------------------------------------------------------------
 *
 * define.c
 *	  pipeline_create, pipeline_alter, pipeline_drop, pipeline_reset.
 *
 * A definition is validated completely before it is stored: relations,
 * privileges, the watermark, options, the key, and the generated load
 * statements through parse analysis as the owner. A bad definition fails
 * here with its own SQLSTATE, never first at run time, and since all of it
 * happens in the caller's transaction nothing is left behind.
 *
 *-------------------------------------------------------------------------
 */
#include "pipeline.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

PG_FUNCTION_INFO_V1(pipeline_create);
PG_FUNCTION_INFO_V1(pipeline_alter);
PG_FUNCTION_INFO_V1(pipeline_drop);
PG_FUNCTION_INFO_V1(pipeline_reset);

static const char *
arg_cstring(FunctionCallInfo fcinfo, int n)
{
	return PG_ARGISNULL(n) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(n));
}

static void
require_arg(const char *value, const char *what)
{
	if (value == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s of a pipeline must not be null", what)));
}

static void
invalid_option(const Pipeline *p, const char *key, const char *expected)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("option \"%s\" of pipeline \"%s\" must be %s", key, p->name,
					expected)));
}

/*
 * Apply one option from the jsonb object. "definition" allows the keys that
 * pipeline_alter may change besides the plain options.
 */
static void
apply_option(Pipeline *p, const char *key, const char *jtype,
			 const char *value, List *array, bool definition)
{
	bool		is_null = strcmp(jtype, "null") == 0;

	if (strcmp(key, "batch_size") == 0)
	{
		int64		n = 0;
		char	   *end;

		if (!is_null)
		{
			if (strcmp(jtype, "number") != 0)
				invalid_option(p, key, "a positive integer or null");
			errno = 0;
			n = strtoi64(value, &end, 10);
			if (*end != '\0' || errno != 0 || n <= 0)
				invalid_option(p, key, "a positive integer or null");
		}
		p->batch_size = n;
	}
	else if (strcmp(key, "lag") == 0)
	{
		if (!is_null && strcmp(jtype, "string") != 0 && strcmp(jtype, "number") != 0)
			invalid_option(p, key, "an interval or a number, as a string");
		p->lag = is_null ? NULL : pstrdup(value);
	}
	else if (strcmp(key, "enabled") == 0 || strcmp(key, "cascade") == 0 ||
			 strcmp(key, "continuous") == 0)
	{
		bool		on;

		if (strcmp(jtype, "boolean") != 0)
			invalid_option(p, key, "true or false");
		on = strcmp(value, "true") == 0;
		if (key[0] == 'e')
			p->enabled = on;
		else if (key[1] == 'a')
			p->cascade = on;
		else
			p->continuous = on;
	}
	else if (strcmp(key, "poll_interval") == 0)
	{
		if (strcmp(jtype, "string") != 0)
			invalid_option(p, key, "an interval as a string, at least \"100 milliseconds\"");
		p->poll_interval = pstrdup(value);
	}
	else if (strcmp(key, "retries") == 0)
	{
		char	   *end;
		long		n = strtol(value ? value : "", &end, 10);

		if (strcmp(jtype, "number") != 0 || *end != '\0' || n < 0 || n > 100)
			invalid_option(p, key, "a whole number from 0 to 100");
		p->retries = (int) n;
	}
	else if (strcmp(key, "retry_delay") == 0 || strcmp(key, "timeout") == 0)
	{
		bool		timeout = key[0] == 't';

		if (strcmp(jtype, "string") != 0 && !(timeout && is_null))
			invalid_option(p, key, timeout ? "an interval as a string, or null"
						   : "an interval as a string");
		if (timeout)
			p->timeout = is_null ? NULL : pstrdup(value);
		else
			p->retry_delay = pstrdup(value);
	}
	else if (strcmp(key, "depends_on") == 0)
	{
		if (!is_null && strcmp(jtype, "array") != 0)
			invalid_option(p, key, "an array of pipeline names, or null");
		p->depends_on = array;
	}
	else if (definition && strcmp(key, "transform") == 0)
	{
		if (!is_null && strcmp(jtype, "string") != 0)
			invalid_option(p, key, "a SELECT statement as a string, or null");
		p->transform = is_null ? NULL : pstrdup(value);
	}
	else if (definition && strcmp(key, "mode") == 0)
	{
		if (strcmp(jtype, "string") != 0)
			invalid_option(p, key, "\"append\", \"upsert\" or \"replace\"");
		p->mode = parse_load_mode(value);
	}
	else if (definition && strcmp(key, "key") == 0)
	{
		if (!is_null && strcmp(jtype, "array") != 0)
			invalid_option(p, key, "an array of column names, or null");
		p->key = array;
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unrecognized option \"%s\" for pipeline \"%s\"", key, p->name),
				 errhint(definition ?
						 "Valid options are batch_size, lag, enabled, depends_on, cascade, retries, retry_delay, timeout, continuous, poll_interval, transform, mode and key." :
						 "Valid options are batch_size, lag, enabled, depends_on, cascade, retries, retry_delay, timeout, continuous and poll_interval.")));
}

void
pipeline_apply_options(Pipeline *p, Jsonb *options, bool definition)
{
	IdentityFrame frame;
	Oid			type = JSONBOID;
	Datum		value = JsonbPGetDatum(options);
	SPITupleTable *tuptable;
	uint64		n;

	identity_enter_catalog(&frame);
	if (SPI_execute_with_args("SELECT CASE WHEN jsonb_typeof($1) = 'object' THEN 0 END",
							  1, &type, &value, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read options");
	if (SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options of pipeline \"%s\" must be a JSON object", p->name),
				 errhint("For example '{\"batch_size\": 10000}'.")));
	if (SPI_execute_with_args("SELECT key, jsonb_typeof(value), value #>> '{}', "
							  "CASE WHEN jsonb_typeof(value) = 'array' THEN "
							  "ARRAY(SELECT jsonb_array_elements_text(value)) END "
							  "FROM jsonb_each($1) ORDER BY key",
							  1, &type, &value, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read options");
	identity_leave(&frame);

	tuptable = SPI_tuptable;
	n = SPI_processed;
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tuple = tuptable->vals[i];
		TupleDesc	desc = tuptable->tupdesc;
		List	   *array = NIL;
		bool		isnull;
		Datum		d = SPI_getbinval(tuple, desc, 4, &isnull);

		if (!isnull)
		{
			Datum	   *elems;
			bool	   *nulls;
			int			nelems;

			deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false,
							  TYPALIGN_INT, &elems, &nulls, &nelems);
			for (int j = 0; j < nelems; j++)
				if (!nulls[j])
					array = lappend(array, makeString(TextDatumGetCString(elems[j])));
		}
		apply_option(p, SPI_getvalue(tuple, desc, 1), SPI_getvalue(tuple, desc, 2),
					 SPI_getvalue(tuple, desc, 3), array, definition);
	}
}

static List *
text_array_to_list(ArrayType *array)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	List	   *result = NIL;

	deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("key of a pipeline must not contain nulls")));
		result = lappend(result, makeString(TextDatumGetCString(elems[i])));
	}
	return result;
}

static void
check_privilege(const Pipeline *p, Oid relid, AclMode mode, const char *what)
{
	if (pg_class_aclcheck(relid, p->owner, mode) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", get_rel_name(relid)),
				 errdetail("Pipeline \"%s\" runs as role \"%s\", which needs %s on it.",
						   p->name, GetUserNameFromId(p->owner, false), what)));
}

static void
check_privileges(const Pipeline *p)
{
	check_privilege(p, p->source, ACL_SELECT, "SELECT");
	check_privilege(p, p->target, ACL_INSERT, "INSERT");
	if (p->mode == LOAD_UPSERT)
		check_privilege(p, p->target, ACL_UPDATE, "UPDATE");
	if (p->mode == LOAD_REPLACE)
		check_privilege(p, p->target, ACL_DELETE, "DELETE");
}

static void
check_key(Pipeline *p)
{
	ListCell   *lc;

	if (p->mode != LOAD_UPSERT)
	{
		if (p->key != NIL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("key of pipeline \"%s\" is only used in upsert mode",
							p->name),
					 errhint("Use mode => 'upsert', or leave key out.")));
		return;
	}
	if (p->key == NIL)
		p->key = default_key(p->target);
	if (p->key == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
				 errmsg("target \"%s\" of pipeline \"%s\" has no primary key",
						get_rel_name(p->target), p->name),
				 errhint("Pass key => '{column}' naming columns with a unique index.")));
	foreach(lc, p->key)
		if (get_attnum(p->target, strVal(lfirst(lc))) == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("key column \"%s\" does not exist in target \"%s\"",
							strVal(lfirst(lc)), get_rel_name(p->target))));
}

/* The generated statements must analyse as the owner would run them. */
static void
check_statements(const Pipeline *p)
{
	IdentityFrame frame;
	BatchRange	range = {NULL, NULL, false};
	List	   *statements;

	identity_enter(&frame, p->owner, p->search_path);
	if (p->mode == LOAD_UPSERT)
	{
		bool		has_watermark;
		List	   *output = transform_output(p, batch_query(p, &range),
											  &has_watermark);
		ListCell   *lc;

		foreach(lc, p->key)
			if (!output_has_column(output, strVal(lfirst(lc))))
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("key column \"%s\" is not an output column of pipeline \"%s\"",
								strVal(lfirst(lc)), p->name),
						 errhint("The transform must output every key column.")));
	}
	statements = load_statements(p, &range, NULL);
	analyze_statements(statements, p->name);
	identity_leave(&frame);
}

/*
 * retry_delay must be an interval from zero to a year, timeout a positive
 * one, poll_interval one from 100 milliseconds to a day. The upper bounds
 * keep the worker's and the retries' timestamp arithmetic from overflowing
 * (a poll_interval of millions of years made the worker poll without end).
 */
static void
check_interval(const Pipeline *p, const char *key, const char *value, const char *comparison,
			   const char *minimum, const char *maximum)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	Oid			type = TEXTOID;
	Datum		arg = CStringGetTextDatum(value);
	bool		ok = false;

	PG_TRY();
	{
		SPI_execute_with_args(psprintf("SELECT v OPERATOR(pg_catalog.%s) CAST(%s AS pg_catalog.interval) "
									   "AND v OPERATOR(pg_catalog.<=) CAST(%s AS pg_catalog.interval) "
									   "FROM CAST($1 AS pg_catalog.interval) AS v",
									   comparison, quote_literal_cstr(minimum),
									   quote_literal_cstr(maximum)),
							  1, &type, &arg, NULL, true, 1);
		ok = strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") == 0;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcontext);
		FlushErrorState();
	}
	PG_END_TRY();
	if (!ok)
		invalid_option(p, key, psprintf("an interval %s '%s' and at most '%s', such as \"5 minutes\"",
										comparison, minimum, maximum));
}

static void
check_intervals(const Pipeline *p)
{
	check_interval(p, "retry_delay", p->retry_delay, ">=", "0", "1 year");
	if (p->timeout)
		check_interval(p, "timeout", p->timeout, ">", "0", "1 year");
	check_interval(p, "poll_interval", p->poll_interval, ">=", "100 milliseconds", "1 day");
}

void
validate_pipeline(Pipeline *p)
{
	const char *source_name;

	check_intervals(p);
	/* a CDC pipeline's tables are checked against its publication */
	if (p->mode == LOAD_CDC)
		return;
	source_name = get_rel_name(p->source);

	check_source_kind(p->source, source_name);
	check_target_kind(p->target, get_rel_name(p->target));
	check_privileges(p);
	if (p->watermark)
		check_watermark_column(p->source, p->watermark, source_name);
	check_lag(p);
	check_key(p);
	if (p->transform)
		check_transform_syntax(p->transform, p->name);
	check_statements(p);
}

Datum
pipeline_create(PG_FUNCTION_ARGS)
{
	Pipeline   *p;
	const char *name = arg_cstring(fcinfo, 0);
	const char *source = arg_cstring(fcinfo, 1);
	const char *target = arg_cstring(fcinfo, 2);
	const char *mode = PG_ARGISNULL(5) ? "append" : arg_cstring(fcinfo, 5);
	Jsonb	   *options;

	require_arg(name, "name");
	require_arg(source, "source");
	require_arg(target, "target");
	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("pipeline name must not be empty")));

	SPI_connect();
	/* a name taken is refused before anything waits or locks */
	catalog_refuse_existing(name);

	p = palloc0(sizeof(Pipeline));
	p->name = pstrdup(name);
	p->owner = GetUserId();
	p->source = resolve_relation(source, "source");
	p->target = resolve_relation(target, "target");
	p->transform = (char *) arg_cstring(fcinfo, 3);
	p->watermark = (char *) arg_cstring(fcinfo, 4);
	p->mode = parse_load_mode(mode);
	p->key = PG_ARGISNULL(6) ? NIL : text_array_to_list(PG_GETARG_ARRAYTYPE_P(6));
	p->enabled = true;
	p->retry_delay = "5 minutes";
	p->poll_interval = "1 second";
	p->search_path = pstrdup(GetConfigOption("search_path", false, false));
	options = PG_ARGISNULL(7) ? NULL : PG_GETARG_JSONB_P(7);
	if (options)
		pipeline_apply_options(p, options, false);

	validate_pipeline(p);

	/*
	 * The name's lock only now, after every check that may wait (a lock on
	 * the source, say): a create that waits must not hold the lock that
	 * runs, alters and drops of an existing pipeline of that name take.
	 */
	catalog_lock_pipeline(name);
	catalog_insert_pipeline(p, options ? options :
							DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
															   CStringGetDatum("{}"))));
	check_dependencies(p);
	SPI_finish();
	PG_RETURN_VOID();
}

Datum
pipeline_alter(PG_FUNCTION_ARGS)
{
	const char *name = arg_cstring(fcinfo, 0);
	Pipeline   *p;

	SPI_connect();
	p = open_owned_pipeline(name);
	pipeline_apply_options(p, PG_GETARG_JSONB_P(1), p->mode != LOAD_CDC);
	if (p->mode != LOAD_UPSERT)
		p->key = NIL;
	validate_pipeline(p);
	catalog_update_pipeline(p);
	check_dependencies(p);
	SPI_finish();
	PG_RETURN_VOID();
}

Datum
pipeline_drop(PG_FUNCTION_ARGS)
{
	const char *name = arg_cstring(fcinfo, 0);
	bool		drop_slot = PG_NARGS() < 2 || PG_ARGISNULL(1) || PG_GETARG_BOOL(1);
	Pipeline   *p;

	SPI_connect();
	p = open_owned_pipeline(name);
	catalog_delete_pipeline(name);
	if (p->mode == LOAD_CDC)
		cdc_drop(p, drop_slot);
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * Set the watermark back (or forward) to reprocess from a point: replay.
 * NULL means from the beginning.
 */
Datum
pipeline_reset(PG_FUNCTION_ARGS)
{
	const char *name = arg_cstring(fcinfo, 0);
	const char *watermark = arg_cstring(fcinfo, 1);
	char	   *normalized = NULL;
	Pipeline   *p;

	require_arg(name, "name");
	SPI_connect();
	p = open_owned_pipeline(name);
	refuse_cdc(p, "reset");
	if (p->watermark == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("pipeline \"%s\" has no watermark to reset", p->name),
				 errhint("A pipeline without a watermark reads its whole source every run.")));
	/*
	 * The value reads as a literal the caller typed would, by the caller's
	 * DateStyle and TimeZone; it is stored in ISO style, as runs store it.
	 */
	if (watermark)
	{
		IdentityFrame frame;
		Oid			argtype = TEXTOID;
		Datum		arg = CStringGetTextDatum(watermark);
		Oid			type = watermark_type(p);
		Oid			base = getBaseType(type);	/* a domain's: no 'infinity' for it */
		bool		integer = base == INT2OID || base == INT4OID || base == INT8OID;
		char	   *sql = psprintf("SELECT v, %s FROM CAST($1 AS %s) AS v",
								   integer ? "false" :
								   psprintf("v OPERATOR(pg_catalog.>=) CAST('infinity' AS %s)",
											format_type_be_qualified(base)),
								   format_type_be_qualified(type));
		Oid			output;
		bool		varlena;
		bool		isnull;
		Datum		value;

		/* the cast may run the owner's code (a domain's CHECK): as the owner */
		identity_enter(&frame, p->owner, p->search_path);
		SPI_execute_with_args(sql, 1, &argtype, &arg, NULL, true, 1);
		value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		/* an infinite or NaN watermark would hide every later row */
		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("watermark \"%s\" of pipeline \"%s\" must be finite", watermark, p->name),
					 errhint("Reset to a finite value, or to NULL to start from the beginning.")));
		(void) set_config_option("DateStyle", "ISO, YMD", PGC_USERSET,
								 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
		getTypeOutputInfo(type, &output, &varlena);
		normalized = OidOutputFunctionCall(output, value);
		identity_leave(&frame);
	}
	catalog_set_watermark(p->name, normalized, false);
	SPI_finish();
	PG_RETURN_VOID();
}
