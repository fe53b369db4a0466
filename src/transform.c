/*-------------------------------------------------------------------------
 *
 * transform.c
 *	  The user's transform: a SELECT over the relation "batch".
 *
 * The transform is parsed when the pipeline is created (a syntax error is
 * reported against the transform's own text) and analysed against the
 * source and target, so a bad definition fails at create, never first at
 * run time. Its output columns are matched to the target's by name and
 * converted to the target's types: by assignment cast where one exists,
 * else through the target type's input function for text and json values,
 * so that a landing table of text or jsonb loads into a typed target.
 *
 *-------------------------------------------------------------------------
 */
#include "pipeline.h"

#include "access/table.h"
#include "access/xact.h"
#include "fmgr.h"
#include "catalog/pg_type.h"
#include "nodes/nodeFuncs.h"
#include "parser/analyze.h"
#include "parser/parse_coerce.h"
#include "parser/parse_func.h"
#include "parser/parser.h"
#include "parser/scansup.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "access/htup_details.h"
#include "access/transam.h"
#include "executor/executor.h"
#include "optimizer/optimizer.h"
#include "utils/datum.h"
#if PG_VERSION_NUM >= 160000
#include "nodes/miscnodes.h"
#endif

typedef struct SqlErrorContext
{
	const char *sql;
	const char *pipeline;
} SqlErrorContext;

/*
 * Report errors in generated or user SQL against that SQL (as SPI does),
 * not against the statement the user typed, and name the pipeline.
 */
static void
sql_error_callback(void *arg)
{
	SqlErrorContext *ctx = (SqlErrorContext *) arg;
	int			position = geterrposition();

	if (position > 0)
	{
		errposition(0);
		internalerrposition(position);
		internalerrquery(ctx->sql);
	}
	errcontext("pipeline \"%s\"", ctx->pipeline);
}

void
sql_error_context_push(ErrorContextCallback *cb, const char *sql,
					   const char *pipeline)
{
	SqlErrorContext *ctx = palloc(sizeof(SqlErrorContext));

	ctx->sql = sql;
	ctx->pipeline = pipeline;
	cb->callback = sql_error_callback;
	cb->arg = ctx;
	cb->previous = error_context_stack;
	error_context_stack = cb;
}

/* The transform without trailing blanks and semicolons. */
char *
transform_sql(const Pipeline *p)
{
	char	   *sql;
	int			len;

	if (p->transform == NULL)
		return NULL;
	sql = pstrdup(p->transform);
	len = strlen(sql);
	while (len > 0 && (scanner_isspace(sql[len - 1]) || sql[len - 1] == ';'))
		sql[--len] = '\0';
	return sql;
}

void
check_transform_syntax(const char *transform, const char *name)
{
	ErrorContextCallback cb;
	List	   *stmts;

	sql_error_context_push(&cb, transform, name);
	stmts = raw_parser(transform, RAW_PARSE_DEFAULT);
	error_context_stack = cb.previous;

	if (list_length(stmts) != 1 ||
		!IsA(linitial_node(RawStmt, stmts)->stmt, SelectStmt))
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("transform of pipeline \"%s\" must be a single SELECT statement",
						name),
				 errhint("Write a query that reads the new rows from the relation \"batch\".")));
}

/* Output columns of the transform: name and type, from parse analysis. */
typedef struct ColumnType
{
	char	   *name;
	Oid			type;
} ColumnType;

static List *
analysed_columns(const Pipeline *p, const char *batch_sql)
{
	char	   *sql;
	ErrorContextCallback cb;
	List	   *raw;
	Query	   *query;
	List	   *columns = NIL;
	ListCell   *lc;

	sql = psprintf("WITH batch AS (%s) SELECT * FROM (\n%s\n) AS " OUTPUT_ALIAS,
				   batch_sql, transform_sql(p));
	sql_error_context_push(&cb, sql, p->name);
	raw = raw_parser(sql, RAW_PARSE_DEFAULT);
	query = parse_analyze_fixedparams(linitial_node(RawStmt, raw), sql,
									  NULL, 0, NULL);
	error_context_stack = cb.previous;

	foreach(lc, query->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		ColumnType *col;

		if (tle->resjunk)
			continue;
		col = palloc(sizeof(ColumnType));
		col->name = tle->resname;
		col->type = exprType((Node *) tle->expr);
		columns = lappend(columns, col);
	}
	return columns;
}

/* Without a transform, the source's columns that the target also has. */
static List *
source_columns(const Pipeline *p)
{
	Relation	source = table_open(p->source, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(source);
	List	   *columns = NIL;

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		ColumnType *col;

		if (att->attisdropped)
			continue;
		col = palloc(sizeof(ColumnType));
		col->name = pstrdup(NameStr(att->attname));
		col->type = att->atttypid;
		columns = lappend(columns, col);
	}
	table_close(source, AccessShareLock);
	return columns;
}

/*
 * Built-in types whose input functions only parse and allocate memory (and
 * arrays of them): pipeline_try_input may catch their data errors without a
 * subtransaction (on PostgreSQL 15, which has no soft input errors). The
 * input of any other type is tried in a subtransaction.
 */
static bool
input_errors_catchable(Oid type)
{
	Oid			element;

	switch (type)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
		case BOOLOID:
		case DATEOID:
		case TIMEOID:
		case TIMETZOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
		case INTERVALOID:
		case UUIDOID:
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
		case JSONOID:
		case JSONBOID:
		case INETOID:
		case CIDROID:
		case BYTEAOID:
		case BITOID:
		case VARBITOID:
		case MACADDROID:
		case MACADDR8OID:
			return true;
	}
	element = get_element_type(type);
	return OidIsValid(element) && type < FirstGenbkiObjectId &&
		input_errors_catchable(element);
}

/*
 * Text into the target type, through its input function with the column's
 * typmod, as INSERT takes a literal (too long a value into varchar(3)[] or
 * bit(3) is an error, not cut short as by an explicit cast). A value the
 * type does not take breaks "<column>.type".
 */
static char *
text_conversion(OutputColumn *out, const char *text)
{
	out->checked = true;
	return psprintf("pg_catalog.pipeline_try_input(%s, %s, %d)",
					text, type_marker_sql(out->type), out->typmod);
}

/*
 * The assignment cast from "from" to the target column's type and typmod,
 * as an expression over the Param $1, or NULL when none exists.
 */
static Node *
assignment_cast(Oid from, Oid to, int32 typmod)
{
	Param	   *param = makeNode(Param);
	Node	   *cast;

	param->paramkind = PARAM_EXTERN;
	param->paramid = 1;
	param->paramtype = from;
	param->paramtypmod = -1;
	param->paramcollid = get_typcollation(from);
	param->location = -1;
	cast = coerce_to_target_type(NULL, (Node *) param, from, to, typmod,
								 COERCION_ASSIGNMENT, COERCE_IMPLICIT_CAST, -1);
	return cast ? (Node *) expression_planner((Expr *) cast) : NULL;
}

/*
 * Does the cast call only built-in functions of built-in types, which
 * compute and allocate memory but take no locks, buffers or other
 * resources? Then, as for input functions (input_errors_catchable), a data
 * error of theirs may be caught without a subtransaction. A domain's
 * constraints, and any function a user wrote, may do anything: not those.
 */
static bool
cast_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	switch (nodeTag(node))
	{
		case T_Param:
		case T_Const:
		case T_CaseTestExpr:
		case T_RelabelType:
		case T_ArrayCoerceExpr:
			break;
		case T_FuncExpr:
			if (((FuncExpr *) node)->funcid >= FirstGenbkiObjectId)
				return true;
			break;
		case T_CoerceViaIO:
			if (!input_errors_catchable(((CoerceViaIO *) node)->resulttype) ||
				!input_errors_catchable(exprType((Node *) ((CoerceViaIO *) node)->arg)))
				return true;
			break;
		default:
			return true;
	}
	return expression_tree_walker(node, cast_walker, context);
}

/* Is pipeline_try_cast there (a catalog of 0.4 or later)? */
static bool
try_cast_installed(void)
{
	Oid			args[3] = {ANYOID, ANYELEMENTOID, INT4OID};

	return OidIsValid(LookupFuncName(list_make2(makeString("pg_catalog"),
												makeString("pipeline_try_cast")),
									 3, args, true));
}

/*
 * Casts that never fail need no check per row: binary coercions without a
 * typmod, integers into wider integers, numeric or float8, anything into
 * unlimited text.
 */
static bool
cast_cannot_fail(Oid from, Oid to, int32 typmod)
{
	Node	   *cast;

	if (typmod >= 0)
		return false;
	if (to == TEXTOID)
		return true;
	switch (from)
	{
		case INT2OID:
			if (to == INT4OID || to == INT8OID || to == NUMERICOID || to == FLOAT8OID)
				return true;
			break;
		case INT4OID:
			if (to == INT8OID || to == NUMERICOID || to == FLOAT8OID)
				return true;
			break;
		case INT8OID:
			if (to == NUMERICOID)
				return true;
			break;
		case FLOAT4OID:
			if (to == FLOAT8OID)
				return true;
			break;
	}
	cast = assignment_cast(from, to, typmod);
	return cast != NULL && (IsA(cast, Param) ||
							(IsA(cast, RelabelType) && IsA(((RelabelType *) cast)->arg, Param)));
}

/*
 * The SQL that turns one output value into the target column's type, or
 * NULL when no conversion exists. An assignment cast that may fail (to a
 * narrower type or typmod, into a domain, through a user's cast) goes
 * through pipeline_try_cast where its data errors are caught: the row then
 * breaks "<column>.type", and the rules see the value as it will be stored.
 * Casts that cannot fail are left to INSERT.
 */
static char *
conversion(OutputColumn *out, Oid from)
{
	Oid			to = out->type;
	Oid			from_base = getBaseType(from);
	Oid			to_base = getBaseType(to);
	bool		from_json = (from_base == JSONBOID || from_base == JSONOID);

	if (from == to && out->typmod < 0)
		return pstrdup(out->raw);
	/* a JSON scalar loads by its text ("a", not "\"a\""), unless into JSON */
	if (from_json && to_base != JSONBOID && to_base != JSONOID)
		return text_conversion(out, psprintf("(%s OPERATOR(pg_catalog.#>>) '{}'::pg_catalog.text[])",
											 out->raw));
	if (from == to || can_coerce_type(1, &from, &to, COERCION_ASSIGNMENT))
	{
		if (cast_cannot_fail(from, to, out->typmod) || !try_cast_installed())
			return pstrdup(out->raw);	/* INSERT applies the assignment cast */
		out->checked = true;
		return psprintf("pg_catalog.pipeline_try_cast(%s, %s, %d)",
						out->raw, type_marker_sql(to), out->typmod);
	}
	if (TypeCategory(from_base) == TYPCATEGORY_STRING || from == UNKNOWNOID)
		return text_conversion(out, psprintf("(%s)::pg_catalog.text", out->raw));
	return NULL;
}

/*
 * Does the column refuse NULL, by its own NOT NULL or a NOT NULL domain
 * (of any depth)? Either way a NULL breaks "<column>.not_null".
 */
static bool
column_not_null(Form_pg_attribute att)
{
	Oid			type = att->atttypid;

	if (att->attnotnull)
		return true;
	while (get_typtype(type) == TYPTYPE_DOMAIN)
	{
		HeapTuple	tuple = SearchSysCache1(TYPEOID, ObjectIdGetDatum(type));
		Form_pg_type typ;
		bool		not_null;

		if (!HeapTupleIsValid(tuple))
			elog(ERROR, "cache lookup failed for type %u", type);
		typ = (Form_pg_type) GETSTRUCT(tuple);
		not_null = typ->typnotnull;
		type = typ->typbasetype;
		ReleaseSysCache(tuple);
		if (not_null)
			return true;
	}
	return false;
}

/*
 * The transform's output columns as they go into the target: each one a
 * target column, with the SQL that converts its value. *has_watermark tells
 * whether the transform outputs the watermark column (loaded or not).
 */
List *
transform_output(const Pipeline *p, const char *batch_sql, bool *has_watermark)
{
	Relation	target = table_open(p->target, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(target);
	const char *target_name = RelationGetRelationName(target);
	List	   *columns;
	List	   *result = NIL;
	List	   *seen = NIL;
	ListCell   *lc;

	*has_watermark = false;
	columns = p->transform ? analysed_columns(p, batch_sql) : source_columns(p);
	foreach(lc, columns)
	{
		ColumnType *col = lfirst(lc);
		AttrNumber	attnum = get_attnum(p->target, col->name);
		Form_pg_attribute att;
		OutputColumn *out;
		bool		is_watermark = p->watermark && strcmp(col->name, p->watermark) == 0;

		*has_watermark |= is_watermark;
		if (attnum <= 0 || TupleDescAttr(desc, attnum - 1)->attgenerated)
		{
			/*
			 * Without a transform, unmatched columns stay behind. The
			 * watermark column may be output only to order duplicates.
			 */
			if (p->transform == NULL || is_watermark)
				continue;
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of the transform of pipeline \"%s\" does not exist in target \"%s\"",
							col->name, p->name, target_name),
					 errhint("Rename the column with AS, drop it from the transform, or add it to the target.")));
		}
		if (list_member(seen, makeString(col->name)))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_COLUMN),
					 errmsg("column \"%s\" appears more than once in the transform of pipeline \"%s\"",
							col->name, p->name)));
		seen = lappend(seen, makeString(col->name));

		att = TupleDescAttr(desc, attnum - 1);
		out = palloc0(sizeof(OutputColumn));
		out->name = col->name;
		out->raw = psprintf(OUTPUT_ALIAS ".%s", quote_identifier(col->name));
		out->type = att->atttypid;
		out->typmod = att->atttypmod;
		out->not_null = column_not_null(att);
		out->raw_type = col->type;
		out->expr = conversion(out, col->type);
		if (out->expr == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column \"%s\" of pipeline \"%s\" is of type %s but target column is of type %s",
							col->name, p->name, format_type_be(col->type),
							format_type_be(att->atttypid)),
					 errhint("Cast the value in the transform.")));
		result = lappend(result, out);
	}
	table_close(target, AccessShareLock);

	if (result == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("pipeline \"%s\" has no column in common with target \"%s\"",
						p->name, target_name),
				 errhint("Give a transform whose column names match the target's.")));
	return result;
}

/*
 * A target column fed by text (the values of a decoded change): the value
 * is __pipeline_out.<name>, converted as a transform's text would be.
 */
OutputColumn *
text_output_column(Oid target, const char *name)
{
	HeapTuple	tuple = SearchSysCacheAttName(target, name);
	Form_pg_attribute att;
	OutputColumn *out = palloc0(sizeof(OutputColumn));

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "column \"%s\" of relation %u does not exist", name, target);
	att = (Form_pg_attribute) GETSTRUCT(tuple);
	out->name = pstrdup(name);
	out->raw = psprintf(OUTPUT_ALIAS ".%s", quote_identifier(name));
	out->type = att->atttypid;
	out->typmod = att->atttypmod;
	out->not_null = column_not_null(att);
	ReleaseSysCache(tuple);
	out->raw_type = TEXTOID;
	out->expr = conversion(out, TEXTOID);
	return out;
}

/*
 * Is the error one about the value being converted? Data exceptions (class
 * 22), and for a domain the violation of its constraints. Anything else, a
 * cancel, a lock timeout or an error raised by a user's function, is not.
 */
static bool
is_data_error(const ErrorData *edata, bool domain)
{
	if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_DATA_EXCEPTION)
		return true;
	return domain &&
		(edata->sqlerrcode == ERRCODE_CHECK_VIOLATION ||
		 edata->sqlerrcode == ERRCODE_NOT_NULL_VIOLATION);
}

typedef Datum (*ConvertCall) (void *arg);

/*
 * call(arg) into *result, or false when it raised a data error. Code that
 * only computes and allocates memory (input_errors_catchable, cast_walker)
 * may have its error caught directly; any other code (a domain's CHECK, a
 * user's cast or input function) may hold locks, buffers or other resources
 * when it fails, so it runs in a subtransaction that is rolled back, as
 * PL/pgSQL's exception blocks do. Errors that are not data errors propagate.
 */
static bool
call_catching_data_errors(ConvertCall call, void *arg, bool subtransaction,
						  bool domain, Datum *result)
{
	MemoryContext callcontext = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = true;

	if (subtransaction)
	{
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(callcontext);
	}
	PG_TRY();
	{
		*result = call(arg);
		if (subtransaction)
		{
			ReleaseCurrentSubTransaction();
			CurrentResourceOwner = owner;
		}
		MemoryContextSwitchTo(callcontext);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(callcontext);
		edata = CopyErrorData();
		FlushErrorState();
		if (subtransaction)
		{
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(callcontext);
			CurrentResourceOwner = owner;
		}
		if (!is_data_error(edata, domain))
			ReThrowError(edata);
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * pipeline_try_input(value text, type_of anyelement, typmod int)
 *
 * The input function of type_of's type applied to value with typmod, as
 * INSERT takes a literal, or NULL when value is not valid input (see
 * call_catching_data_errors; on 16 and later the built-in parsers report
 * through the soft-error interface).
 */
typedef struct TryInputCache
{
	Oid			type;
	FmgrInfo	input;
	Oid			ioparam;
	bool		catchable;
	bool		domain;
	/* the call in progress */
	char	   *str;
	int32		typmod;
} TryInputCache;

PG_FUNCTION_INFO_V1(pipeline_try_input);

static Datum
input_call(void *arg)
{
	TryInputCache *cache = arg;

	return InputFunctionCall(&cache->input, cache->str, cache->ioparam, cache->typmod);
}

static bool
try_input_call(TryInputCache *cache, Datum *result)
{
#if PG_VERSION_NUM >= 160000
	if (cache->catchable)
	{
		ErrorSaveContext escontext = {T_ErrorSaveContext};

		return InputFunctionCallSafe(&cache->input, cache->str, cache->ioparam,
									 cache->typmod, (Node *) &escontext, result);
	}
#endif
	return call_catching_data_errors(input_call, cache, !cache->catchable,
									 cache->domain, result);
}

Datum
pipeline_try_input(PG_FUNCTION_ARGS)
{
	TryInputCache *cache = (TryInputCache *) fcinfo->flinfo->fn_extra;
	Oid			type = get_fn_expr_argtype(fcinfo->flinfo, 1);
	Datum		result;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (cache == NULL || cache->type != type)
	{
		Oid			func;

		if (!OidIsValid(type))
			elog(ERROR, "could not determine the type of pipeline_try_input's second argument");
		cache = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(TryInputCache));
		cache->type = type;
		getTypeInputInfo(type, &func, &cache->ioparam);
		fmgr_info_cxt(func, &cache->input, fcinfo->flinfo->fn_mcxt);
		cache->catchable = input_errors_catchable(type);
		cache->domain = get_typtype(type) == TYPTYPE_DOMAIN;
		fcinfo->flinfo->fn_extra = cache;
	}
	cache->str = text_to_cstring(PG_GETARG_TEXT_PP(0));
	cache->typmod = PG_ARGISNULL(2) ? -1 : PG_GETARG_INT32(2);
	if (!try_input_call(cache, &result))
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

/*
 * pipeline_try_cast(value "any", type_of anyelement, typmod int)
 *
 * The assignment cast of value to type_of's type and typmod, as INSERT
 * would apply it (numeric 0.8 into int is 1, too long text into varchar(n)
 * an error), or NULL where the cast fails with a data error (see
 * call_catching_data_errors: casts that cast_walker passes are caught
 * directly, others in a subtransaction).
 */
typedef struct TryCastCache
{
	Oid			from;
	Oid			to;
	int32		typmod;
	bool		catchable;
	bool		domain;
	ExprState  *cast;
	ExprContext *econtext;
	ParamListInfo params;
	int16		typlen;
	bool		typbyval;
	/* the call in progress */
	bool		isnull;
} TryCastCache;

PG_FUNCTION_INFO_V1(pipeline_try_cast);

static TryCastCache *
try_cast_cache(FunctionCallInfo fcinfo, Oid from, Oid to, int32 typmod)
{
	TryCastCache *cache = (TryCastCache *) fcinfo->flinfo->fn_extra;
	MemoryContext old;
	Node	   *cast;

	if (cache && cache->from == from && cache->to == to && cache->typmod == typmod)
		return cache;
	if (!OidIsValid(from) || !OidIsValid(to))
		elog(ERROR, "could not determine the types of pipeline_try_cast's arguments");
	old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	cast = assignment_cast(from, to, typmod);
	if (cast == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CANNOT_COERCE),
				 errmsg("no assignment cast from %s to %s",
						format_type_be(from), format_type_be(to))));
	cache = palloc0(sizeof(TryCastCache));
	cache->from = from;
	cache->to = to;
	cache->typmod = typmod;
	cache->catchable = !cast_walker(cast, NULL);
	cache->domain = get_typtype(to) == TYPTYPE_DOMAIN;
	cache->params = makeParamList(1);
	cache->params->numParams = 1;
	cache->params->params[0].ptype = from;
	cache->params->params[0].pflags = PARAM_FLAG_CONST;
	cache->cast = ExecInitExprWithParams((Expr *) cast, cache->params);
	cache->econtext = CreateStandaloneExprContext();
	cache->econtext->ecxt_param_list_info = cache->params;
	get_typlenbyval(to, &cache->typlen, &cache->typbyval);
	MemoryContextSwitchTo(old);
	fcinfo->flinfo->fn_extra = cache;
	return cache;
}

static Datum
cast_call(void *arg)
{
	TryCastCache *cache = arg;

	return ExecEvalExprSwitchContext(cache->cast, cache->econtext, &cache->isnull);
}

Datum
pipeline_try_cast(PG_FUNCTION_ARGS)
{
	TryCastCache *cache;
	Datum		result;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	cache = try_cast_cache(fcinfo, get_fn_expr_argtype(fcinfo->flinfo, 0),
						   get_fn_expr_argtype(fcinfo->flinfo, 1),
						   PG_ARGISNULL(2) ? -1 : PG_GETARG_INT32(2));
	cache->params->params[0].value = PG_GETARG_DATUM(0);
	cache->params->params[0].isnull = false;
	cache->isnull = false;
	ResetExprContext(cache->econtext);
	if (!call_catching_data_errors(cast_call, cache, !cache->catchable,
								   cache->domain, &result) || cache->isnull)
		PG_RETURN_NULL();
	/* the expression context is reset at the next row: copy the value out */
	PG_RETURN_DATUM(datumCopy(result, cache->typbyval, cache->typlen));
}
