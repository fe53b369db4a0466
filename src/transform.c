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
#include "catalog/pg_type.h"
#include "nodes/nodeFuncs.h"
#include "parser/analyze.h"
#include "parser/parse_coerce.h"
#include "parser/parser.h"
#include "parser/scansup.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

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
 * The SQL that turns one output value into the target column's type, or
 * NULL when no conversion exists.
 */
static char *
conversion(const char *value, Oid from, Oid to, int32 typmod)
{
	const char *target_type = format_type_extended(to, typmod,
												   FORMAT_TYPE_TYPEMOD_GIVEN |
												   FORMAT_TYPE_FORCE_QUALIFY);
	Oid			from_base = getBaseType(from);

	Oid			to_base = getBaseType(to);
	bool		from_json = (from_base == JSONBOID || from_base == JSONOID);

	if (from == to)
		return pstrdup(value);
	/* a JSON scalar loads by its text ("a", not "\"a\""), unless into JSON */
	if (from_json && to_base != JSONBOID && to_base != JSONOID)
		return psprintf("CAST(%s OPERATOR(pg_catalog.#>>) '{}'::pg_catalog.text[] AS %s)",
						value, target_type);
	if (can_coerce_type(1, &from, &to, COERCION_ASSIGNMENT))
		return pstrdup(value);	/* INSERT applies the assignment cast */
	if (TypeCategory(from_base) == TYPCATEGORY_STRING || from == UNKNOWNOID)
		return psprintf("CAST(%s AS %s)", value, target_type);
	return NULL;
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
		char	   *value;
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
		value = psprintf(OUTPUT_ALIAS ".%s", quote_identifier(col->name));
		out = palloc(sizeof(OutputColumn));
		out->name = col->name;
		out->expr = conversion(value, col->type, att->atttypid, att->atttypmod);
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
