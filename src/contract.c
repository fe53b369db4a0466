/*-------------------------------------------------------------------------
 *
 * contract.c
 *	  Data contracts: rules a transformed row must satisfy.
 *
 * A contract is stored one rule per row in pipeline.contract_rules. Each
 * rule compiles to a boolean SQL expression that is true when a row breaks
 * it, and never NULL: as in dbt and Great Expectations, NULL passes every
 * rule but not_null. Besides the explicit rules, the target table is an
 * implicit contract: a value that does not convert to its column's type
 * breaks "<column>.type", a NULL into a NOT NULL column breaks
 * "<column>.not_null", and a CHECK constraint breaks the rule named after
 * the constraint. load.c evaluates all rules in one pass over the batch.
 *
 *-------------------------------------------------------------------------
 */
#include "pipeline.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "parser/parse_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(pipeline_contract);

/* The rule kinds of "columns", in the order the docs list them. */
static const char *const column_kinds[] = {
	"not_null", "unique", "type", "min", "max", "in", "matches", "max_length",
	"references", NULL
};

static RuleAction
parse_action(const char *action, const char *rule)
{
	if (strcmp(action, "quarantine") == 0)
		return ACTION_QUARANTINE;
	if (strcmp(action, "fail") == 0)
		return ACTION_FAIL;
	if (strcmp(action, "warn") == 0)
		return ACTION_WARN;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid action \"%s\" for rule \"%s\"", action, rule),
			 errhint("Valid actions are \"quarantine\", \"fail\" and \"warn\".")));
	return ACTION_QUARANTINE;	/* keep compiler quiet */
}

static const char *
action_name(RuleAction action)
{
	switch (action)
	{
		case ACTION_QUARANTINE:
			return "quarantine";
		case ACTION_FAIL:
			return "fail";
		case ACTION_WARN:
			return "warn";
	}
	return NULL;
}

static Rule *
make_rule(const char *name, const char *kind, const char *column,
		  const char *argument, RuleAction action)
{
	Rule	   *r = palloc0(sizeof(Rule));

	r->name = pstrdup(name);
	r->kind = pstrdup(kind);
	r->column = column ? pstrdup(column) : NULL;
	r->argument = argument ? pstrdup(argument) : NULL;
	r->action = action;
	return r;
}

/*
 * Run a catalog query with one jsonb or text argument, with a fresh
 * snapshot (not read-only), so it sees what this transaction wrote.
 */
static void
query_with_arg(const char *sql, Oid type, Datum value)
{
	IdentityFrame frame;

	identity_enter_catalog(&frame);
	if (SPI_execute_with_args(sql, 1, &type, &value, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "contract query failed: %s", sql);
	identity_leave(&frame);
}

static void
contract_error(const Pipeline *p, const char *message, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid contract for pipeline \"%s\": %s", p->name, message),
			 hint ? errhint("%s", hint) : 0));
}

/*
 * The jsonb contract as rules, with actions and thresholds; the jsonb
 * structure is checked here, the rules' meaning by compiling them.
 */
static List *
parse_contract(Pipeline *p, Jsonb *contract)
{
	Datum		arg = JsonbPGetDatum(contract);
	List	   *rules = NIL;
	ListCell   *lc;

	query_with_arg("SELECT jsonb_typeof($1) = 'object', "
				   "(SELECT string_agg(k, ', ') FROM jsonb_object_keys(CASE WHEN jsonb_typeof($1) = 'object' THEN $1 ELSE '{}' END) k "
				   " WHERE k NOT IN ('columns', 'checks', 'max_bad_fraction', 'max_bad_rows', 'actions')), "
				   "(SELECT string_agg(key, ', ') FROM jsonb_each(CASE WHEN jsonb_typeof($1->'columns') = 'object' THEN $1->'columns' ELSE '{}' END) "
				   " WHERE jsonb_typeof(value) <> 'object'), "
				   "coalesce(jsonb_typeof($1->'columns'), 'object') = 'object' AND "
				   "coalesce(jsonb_typeof($1->'checks'), 'object') = 'object' AND "
				   "coalesce(jsonb_typeof($1->'actions'), 'object') = 'object', "
				   "$1->>'max_bad_fraction', jsonb_typeof($1->'max_bad_fraction'), "
				   "$1->>'max_bad_rows', jsonb_typeof($1->'max_bad_rows')",
				   JSONBOID, arg);
	{
		HeapTuple	t = SPI_tuptable->vals[0];
		TupleDesc	d = SPI_tuptable->tupdesc;
		char	   *unknown = SPI_getvalue(t, d, 2);
		char	   *not_objects = SPI_getvalue(t, d, 3);
		char	   *fraction = SPI_getvalue(t, d, 5);
		char	   *fraction_type = SPI_getvalue(t, d, 6);
		char	   *rows = SPI_getvalue(t, d, 7);
		char	   *rows_type = SPI_getvalue(t, d, 8);

		if (strcmp(SPI_getvalue(t, d, 1), "t") != 0)
			contract_error(p, "the contract must be a JSON object",
						   "For example '{\"columns\": {\"total\": {\"min\": 0}}}'.");
		if (unknown)
			contract_error(p, psprintf("unknown key %s", unknown),
						   "Valid keys are columns, checks, max_bad_fraction, max_bad_rows and actions.");
		if (not_objects)
			contract_error(p, psprintf("the rules of column %s must be a JSON object", not_objects), NULL);
		if (strcmp(SPI_getvalue(t, d, 4), "t") != 0)
			contract_error(p, "columns, checks and actions must be JSON objects", NULL);
		p->max_bad_fraction = -1;
		p->max_bad_rows = -1;
		if (fraction && strcmp(fraction_type, "null") != 0)
		{
			p->max_bad_fraction = strtod(fraction, NULL);
			if (strcmp(fraction_type, "number") != 0 || p->max_bad_fraction < 0 ||
				p->max_bad_fraction > 1)
				contract_error(p, "max_bad_fraction must be a number from 0 to 1", NULL);
		}
		if (rows && strcmp(rows_type, "null") != 0)
		{
			char	   *end;

			p->max_bad_rows = strtoi64(rows, &end, 10);
			if (strcmp(rows_type, "number") != 0 || *end != '\0' || p->max_bad_rows < 0)
				contract_error(p, "max_bad_rows must be a whole number, 0 or more", NULL);
		}
	}

	/* column rules, then named checks */
	query_with_arg("SELECT c.key, r.key, r.value::text, jsonb_typeof(r.value) "
				   "FROM jsonb_each(coalesce($1->'columns', '{}')) c, jsonb_each(c.value) r "
				   "UNION ALL "
				   "SELECT NULL, k.key, k.value::text, jsonb_typeof(k.value) "
				   "FROM jsonb_each(coalesce($1->'checks', '{}')) k ORDER BY 1, 2",
				   JSONBOID, arg);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		char	   *column = SPI_getvalue(t, d, 1);
		char	   *kind = SPI_getvalue(t, d, 2);
		char	   *argument = SPI_getvalue(t, d, 3);
		char	   *jtype = SPI_getvalue(t, d, 4);
		bool		known = false;

		if (column == NULL)
		{
			if (strcmp(jtype, "string") != 0)
				contract_error(p, psprintf("check \"%s\" must be an SQL expression as a string", kind), NULL);
			rules = lappend(rules, make_rule(kind, "check", NULL, argument, ACTION_QUARANTINE));
			continue;
		}
		for (int k = 0; column_kinds[k]; k++)
			known |= strcmp(kind, column_kinds[k]) == 0;
		if (!known)
			contract_error(p, psprintf("unknown rule \"%s\" for column \"%s\"", kind, column),
						   "Column rules are not_null, unique, type, min, max, in, matches, max_length and references.");
		/* {"not_null": false} and {"unique": false} switch a rule off */
		if ((strcmp(kind, "not_null") == 0 || strcmp(kind, "unique") == 0) &&
			strcmp(argument, "false") == 0)
			continue;
		rules = lappend(rules, make_rule(psprintf("%s.%s", column, kind), kind,
										 column, argument, ACTION_QUARANTINE));
	}

	/* actions name rules of this contract */
	query_with_arg("SELECT key, value #>> '{}', jsonb_typeof(value) "
				   "FROM jsonb_each(coalesce($1->'actions', '{}'))", JSONBOID, arg);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *rule = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *action = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		bool		found = false;

		foreach(lc, rules)
		{
			Rule	   *r = lfirst(lc);

			if (strcmp(r->name, rule) == 0)
			{
				r->action = parse_action(action ? action : "", rule);
				found = true;
			}
		}
		if (!found)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("action for unknown rule \"%s\" in the contract of pipeline \"%s\"",
							rule, p->name),
					 errhint("Rules are named <column>.<rule>, or by their key under \"checks\".")));
	}
	return rules;
}

/*
 * The stored rules of a pipeline: those of its name AND its owner. A rule
 * is an SQL expression that runs as the pipeline's owner, so a row left by
 * another role (a pipeline of the same name dropped and created again) must
 * never be read; since 0.4 a foreign key also removes rules with their
 * pipeline.
 */
List *
contract_read(const Pipeline *p)
{
	List	   *rules = NIL;

	/* a catalog older than 0.4 allows a NULL argument, which is JSON null */
	query_with_arg("SELECT rule, kind, column_name::text, coalesce(argument::text, 'null'), action "
				   "FROM pipeline.contract_rules WHERE pipeline = $1 AND owner = "
				   "(SELECT owner FROM pipeline.pipelines WHERE name = $1) ORDER BY rule",
				   TEXTOID, CStringGetTextDatum(p->name));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;

		rules = lappend(rules, make_rule(SPI_getvalue(t, d, 1), SPI_getvalue(t, d, 2),
										 SPI_getvalue(t, d, 3), SPI_getvalue(t, d, 4),
										 parse_action(SPI_getvalue(t, d, 5), "")));
	}
	return rules;
}

static void
contract_store(const Pipeline *p, List *rules)
{
	IdentityFrame frame;
	ListCell   *lc;
	Oid			types[7] = {TEXTOID, OIDOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Oid			ptypes[3] = {TEXTOID, FLOAT8OID, INT8OID};
	Datum		values[7];
	char		nulls[7];

	identity_enter_catalog(&frame);
	values[0] = CStringGetTextDatum(p->name);
	SPI_execute_with_args("DELETE FROM pipeline.contract_rules WHERE pipeline = $1",
						  1, types, values, NULL, false, 0);
	foreach(lc, rules)
	{
		Rule	   *r = lfirst(lc);

		memset(nulls, ' ', sizeof(nulls));
		values[1] = ObjectIdGetDatum(p->owner);
		values[2] = CStringGetTextDatum(r->name);
		values[3] = CStringGetTextDatum(r->kind);
		values[4] = text_arg(r->column, &nulls[4]);
		values[5] = CStringGetTextDatum(r->argument);
		values[6] = CStringGetTextDatum(action_name(r->action));
		SPI_execute_with_args("INSERT INTO pipeline.contract_rules (pipeline, owner, rule, kind, "
							  "column_name, argument, action) VALUES ($1, $2::regrole, $3, $4, $5, "
							  "$6::jsonb, $7)", 7, types, values, nulls, false, 0);
	}
	memset(nulls, ' ', 3);
	values[1] = Float8GetDatum(p->max_bad_fraction);
	nulls[1] = p->max_bad_fraction < 0 ? 'n' : ' ';
	values[2] = Int64GetDatum(p->max_bad_rows);
	nulls[2] = p->max_bad_rows < 0 ? 'n' : ' ';
	SPI_execute_with_args("UPDATE pipeline.pipelines SET max_bad_fraction = $2, "
						  "max_bad_rows = $3 WHERE name = $1", 3, ptypes, values, nulls,
						  false, 0);
	identity_leave(&frame);
}

/*
 * pipeline_contract(name, contract): replace the pipeline's contract (NULL
 * removes it). The rules are compiled into the pipeline's load statement and
 * checked there, as the owner, before they are stored.
 */
Datum
pipeline_contract(PG_FUNCTION_ARGS)
{
	const char *name;
	Pipeline   *p;
	List	   *rules = NIL;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("name of a pipeline must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));

	SPI_connect();
	p = open_owned_pipeline(name);
	p->max_bad_fraction = -1;
	p->max_bad_rows = -1;
	if (!PG_ARGISNULL(1))
		rules = parse_contract(p, PG_GETARG_JSONB_P(1));
	p->rules = rules;
	validate_pipeline(p);
	contract_store(p, rules);
	SPI_finish();
	PG_RETURN_VOID();
}

/* ---- compiling rules to SQL ---- */

/* The text of a JSON scalar given as jsonb text: "a\"b" becomes a"b. */
static char *
json_scalar_text(const char *json)
{
	Datum		object;

	if (strcmp(json, "null") == 0)
		return NULL;			/* a JSON null is SQL's NULL */
	object = DirectFunctionCall1(jsonb_in, CStringGetDatum(psprintf("{\"v\": %s}", json)));

	return TextDatumGetCString(DirectFunctionCall2(jsonb_object_field_text, object,
												   CStringGetTextDatum("v")));
}

/*
 * The type's catalog name, schema-qualified. Unlike its SQL spelling it
 * carries no default typmod: "character" would mean char(1) in a cast and
 * cut 'EUR' to 'E', where pg_catalog.bpchar keeps it whole.
 */
static char *
type_name_sql(Oid type)
{
	HeapTuple	tuple = SearchSysCache1(TYPEOID, ObjectIdGetDatum(type));
	Form_pg_type form;
	char	   *name;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for type %u", type);
	form = (Form_pg_type) GETSTRUCT(tuple);
	name = quote_qualified_identifier(get_namespace_name(form->typnamespace),
									  NameStr(form->typname));
	ReleaseSysCache(tuple);
	return name;
}

/*
 * Is "value" valid input for the column's type? Checked once per rule
 * value when the rules compile, in a subtransaction: the type may be any.
 */
static bool
valid_input(const char *value, Oid type)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool ok = true;
	Oid			input;
	Oid			ioparam;

	getTypeInputInfo(type, &input, &ioparam);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		(void) OidInputFunctionCall(input, (char *) value, ioparam, -1);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcontext);
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcontext);
	CurrentResourceOwner = oldowner;
	return ok;
}

/*
 * A JSON scalar (as jsonb text) of rule r as an SQL literal of the column's
 * type; NULL for a JSON null. A value the type does not take is a bad
 * contract (22023), not an error of the first run.
 */
static char *
typed_literal(const Rule *r, const char *json_scalar, const OutputColumn *col)
{
	char	   *text = json_scalar_text(json_scalar);

	if (text == NULL)
		return NULL;
	if (!valid_input(text, col->type))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rule \"%s\" has value %s, which is not a valid %s",
						r->name, json_scalar, format_type_be(col->type)),
				 errhint("Give values of the column's type.")));
	return psprintf("CAST(%s AS %s)", quote_literal_cstr(text), type_name_sql(col->type));
}

static const char *
value_ref(const char *column)
{
	return psprintf("__pipeline_v.%s", quote_identifier(column));
}

const char *
raw_alias(const char *column)
{
	return quote_identifier(psprintf("__pipeline_raw_%s", column));
}

/*
 * The transform's value of a checked column as text, as conversion reads
 * it: a JSON scalar by its text, and a JSON null as SQL's NULL.
 */
static char *
raw_text(const OutputColumn *col)
{
	Oid			base = getBaseType(col->raw_type);
	char	   *raw = psprintf("__pipeline_v.%s", raw_alias(col->name));

	if (base == JSONBOID || base == JSONOID)
		return psprintf("(%s OPERATOR(pg_catalog.#>>) '{}'::pg_catalog.text[])", raw);
	return psprintf("(%s)::pg_catalog.text", raw);
}

/* Does the row have a value to convert? Not for SQL's NULL or a JSON null. */
static char *
raw_present(const OutputColumn *col)
{
	Oid			base = getBaseType(col->raw_type);

	if (base == JSONBOID || base == JSONOID)
		return psprintf("%s IS NOT NULL", raw_text(col));
	return psprintf("__pipeline_v.%s IS NOT NULL", raw_alias(col->name));
}

static const OutputColumn *
find_output(List *output, const Rule *r, const Pipeline *p)
{
	ListCell   *lc;

	foreach(lc, output)
	{
		OutputColumn *col = lfirst(lc);

		if (strcmp(col->name, r->column) == 0)
			return col;
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("column \"%s\" of rule \"%s\" is not an output column of pipeline \"%s\"",
					r->column, r->name, p->name),
			 errhint("Contract rules apply to the transform's output columns that the target has.")));
	return NULL;				/* keep compiler quiet */
}

static void
check_argument(const Rule *r, const char *jtype, const char *expected)
{
	char	   *actual;

	if (strcmp(r->argument, "null") == 0 || r->argument[0] == '{')
		actual = r->argument[0] == '{' ? "object" : "null";
	else if (r->argument[0] == '[')
		actual = "array";
	else if (r->argument[0] == '"')
		actual = "string";
	else if (strcmp(r->argument, "true") == 0 || strcmp(r->argument, "false") == 0)
		actual = "boolean";
	else
		actual = "number";
	if (strstr(jtype, actual) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rule \"%s\" takes %s", r->name, expected)));
}

/* The elements of a JSON array of scalars, as jsonb texts. */
static List *
array_elements(const char *json_array)
{
	List	   *result = NIL;

	query_with_arg("SELECT value::text FROM jsonb_array_elements($1::jsonb)", TEXTOID,
				   CStringGetTextDatum(json_array));
	for (uint64 i = 0; i < SPI_processed; i++)
		result = lappend(result, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
	return result;
}

/* "schema.table(column)" of a references rule, checked. */
static char *
references_sql(const Rule *r, const char *value)
{
	char	   *spec = json_scalar_text(r->argument);
	char	   *open = strrchr(spec, '(');
	int			len = strlen(spec);
	char	   *column;
	Oid			relid;

	if (open == NULL || spec[len - 1] != ')' || open == spec)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rule \"%s\" takes \"schema.table(column)\", not \"%s\"", r->name, spec)));
	spec[len - 1] = '\0';
	column = open + 1;
	*open = '\0';
	relid = resolve_relation(spec, "referenced");
	if (get_attnum(relid, column) == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist", column, spec)));
	/* "= ANY (subquery)" is executed as a hashed subplan: one pass over the table */
	return psprintf("(%s IS NOT NULL AND (%s OPERATOR(pg_catalog.=) ANY (SELECT %s FROM %s)) IS NOT TRUE)",
					value, value, quote_identifier(column), qualified_relation_name(relid));
}

static char *
column_rule_sql(const Pipeline *p, const Rule *r, const OutputColumn *col)
{
	const char *v = value_ref(col->name);
	const char *kind = r->kind;

	if (strcmp(kind, "not_null") == 0)
	{
		check_argument(r, "boolean", "true or false");
		return psprintf("(%s IS NULL)", v);
	}
	if (strcmp(kind, "unique") == 0)
	{
		char	   *in_batch;

		check_argument(r, "boolean", "true or false");
		in_batch = psprintf("(%s IS NOT NULL AND pg_catalog.count(*) OVER (PARTITION BY %s) OPERATOR(pg_catalog.>) 1)",
							v, v);
		if (p->mode != LOAD_APPEND)
			return in_batch;
		return psprintf("(%s OR (%s IS NOT NULL AND EXISTS (SELECT FROM %s AS __pipeline_t WHERE __pipeline_t.%s OPERATOR(pg_catalog.=) %s)))",
						in_batch, v, qualified_relation_name(p->target),
						quote_identifier(col->name), v);
	}
	if (strcmp(kind, "type") == 0)
	{
		char	   *typename;
		char	   *value;
		Oid			type;
		int32		typmod;

		check_argument(r, "string", "a type name, such as \"numeric\"");
		typename = json_scalar_text(r->argument);
		parseTypeString(typename, &type, &typmod, false);
		value = col->checked ? raw_text(col) : psprintf("(%s)::pg_catalog.text", v);
		return psprintf("(%s IS NOT NULL AND pg_catalog.pipeline_try_input(%s, %s, %d) IS NULL)",
						value, value, type_marker_sql(type), typmod);
	}
	if (strcmp(kind, "min") == 0 || strcmp(kind, "max") == 0)
	{
		check_argument(r, "number string", "a number or a string");
		return psprintf("((%s OPERATOR(pg_catalog.%s) %s) IS TRUE)", v,
						kind[1] == 'i' ? "<" : ">", typed_literal(r, r->argument, col));
	}
	if (strcmp(kind, "in") == 0)
	{
		StringInfoData sql;
		ListCell   *lc;

		bool		first = true;

		check_argument(r, "array", "an array of values");
		initStringInfo(&sql);
		appendStringInfo(&sql, "((%s OPERATOR(pg_catalog.=) ANY (ARRAY[", v);
		/* a null in the list matches nothing, and NULL values pass anyway: leave it out */
		foreach(lc, array_elements(r->argument))
		{
			char	   *literal = typed_literal(r, lfirst(lc), col);

			if (literal == NULL)
				continue;
			appendStringInfo(&sql, "%s%s", first ? "" : ", ", literal);
			first = false;
		}
		appendStringInfo(&sql, "]::%s[])) IS FALSE)", type_name_sql(col->type));
		return sql.data;
	}
	if (strcmp(kind, "matches") == 0)
	{
		char	   *pattern;

		check_argument(r, "string", "a regular expression as a string");
		pattern = json_scalar_text(r->argument);
		/* compile the pattern now: a bad one fails here, not at the first run */
		query_with_arg("SELECT '' ~ $1", TEXTOID, CStringGetTextDatum(pattern));
		return psprintf("(((%s)::pg_catalog.text OPERATOR(pg_catalog.~) %s) IS FALSE)", v,
						quote_literal_cstr(pattern));
	}
	if (strcmp(kind, "max_length") == 0)
	{
		check_argument(r, "number", "a whole number");
		return psprintf("((pg_catalog.length((%s)::pg_catalog.text) OPERATOR(pg_catalog.>) %s) IS TRUE)",
						v, r->argument);
	}
	if (strcmp(kind, "references") == 0)
	{
		check_argument(r, "string", "\"schema.table(column)\"");
		return references_sql(r, v);
	}
	elog(ERROR, "unknown rule kind \"%s\"", kind);
	return NULL;
}

static char *
check_rule_sql(const Rule *r)
{
	char	   *sql = json_scalar_text(r->argument);

	return psprintf("((\n%s\n) IS FALSE)", sql);
}

/*
 * Add an implicit rule of the target. Implicit rules always quarantine: a
 * row that breaks one cannot be stored. A contract rule of the same name
 * does not replace it; it is checked as part of it, and quarantines too.
 */
static List *
add_implicit_rule(List *rules, const char *name, const char *kind,
				  const char *column, const char *violation)
{
	Rule	   *r;
	ListCell   *lc;

	foreach(lc, rules)
	{
		Rule	   *same = lfirst(lc);

		if (strcmp(same->name, name) != 0)
			continue;
		/* a copy: the stored contract keeps its own action */
		r = palloc(sizeof(Rule));
		*r = *same;
		r->action = ACTION_QUARANTINE;
		r->violation = psprintf("(%s OR %s)", violation, same->violation);
		lfirst(lc) = r;
		return rules;
	}
	r = make_rule(name, kind, column, NULL, ACTION_QUARANTINE);
	r->violation = pstrdup(violation);
	return lappend(rules, r);
}

/* The target's CHECK constraints whose columns the load writes. */
static List *
check_constraint_rules(const Pipeline *p, List *output, List *rules)
{
	/*
	 * The columns in conkey's order: pipeline_breaks_check takes them so. A
	 * catalog older than 0.4 lacks that function: there the INSERT alone
	 * enforces the constraints (a break fails the run) until the update.
	 */
	query_with_arg("SELECT c.conname::text, c.oid, "
				   "(SELECT pg_catalog.array_agg(a.attname::text ORDER BY k.n) "
				   " FROM pg_catalog.unnest(c.conkey) WITH ORDINALITY AS k(attnum, n) "
				   " JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum) "
				   "FROM pg_catalog.pg_constraint c WHERE c.conrelid = $1 AND c.contype = 'c' "
				   "AND pg_catalog.to_regprocedure('pg_catalog.pipeline_breaks_check(oid, \"any\")') IS NOT NULL "
				   /* a whole-row reference or a system column: the INSERT alone checks it */
				   "AND 0 OPERATOR(pg_catalog.<) ALL (c.conkey) "
				   "ORDER BY 1", OIDOID, ObjectIdGetDatum(p->target));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		char	   *name = SPI_getvalue(t, d, 1);
		bool		isnull;
		Oid			constraint = DatumGetObjectId(SPI_getbinval(t, d, 2, &isnull));
		Datum		columns = SPI_getbinval(t, d, 3, &isnull);
		bool		covered = !isnull;
		StringInfoData call;

		initStringInfo(&call);
		appendStringInfo(&call, "pg_catalog.pipeline_breaks_check(%u::pg_catalog.oid", constraint);
		if (!isnull)
		{
			Datum	   *elems;
			bool	   *enulls;
			int			n;

			deconstruct_array(DatumGetArrayTypeP(columns), TEXTOID, -1, false,
							  TYPALIGN_INT, &elems, &enulls, &n);
			for (int j = 0; j < n; j++)
			{
				char	   *column = TextDatumGetCString(elems[j]);

				covered &= output_has_column(output, column);
				appendStringInfo(&call, ", %s", quote_identifier(column));
			}
		}
		if (!covered)
			continue;			/* INSERT still enforces it: a break fails the run */
		appendStringInfoChar(&call, ')');
		rules = add_implicit_rule(rules, name, "check", NULL, call.data);
	}
	return rules;
}

/*
 * Does a unique index of the target on exactly the upsert key treat NULLs
 * as equal (NULLS NOT DISTINCT)? Then a NULL key is a key like any other.
 */
static bool
key_nulls_not_distinct(const Pipeline *p)
{
	Relation	rel = table_open(p->target, AccessShareLock);
	List	   *indexes = RelationGetIndexList(rel);
	bool		result = false;
	ListCell   *lc;

	foreach(lc, indexes)
	{
		HeapTuple	tuple = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index index;
		bool		same = true;

		if (!HeapTupleIsValid(tuple))
			elog(ERROR, "cache lookup failed for index %u", lfirst_oid(lc));
		index = (Form_pg_index) GETSTRUCT(tuple);
#if PG_VERSION_NUM >= 150000
		same = index->indisunique && index->indnullsnotdistinct &&
			index->indnkeyatts == list_length(p->key);
#else
		same = false;
#endif
		for (int i = 0; same && i < index->indnkeyatts; i++)
		{
			char	   *column = get_attname(p->target, index->indkey.values[i], true);

			same = column != NULL && list_member(p->key, makeString(column));
		}
		result |= same;
		ReleaseSysCache(tuple);
	}
	table_close(rel, AccessShareLock);
	return result;
}

/*
 * Every rule a batch of this pipeline is checked against: the stored (or
 * given) contract, then the target's implicit rules. Each gets its
 * violation SQL over the relation "__pipeline_v" (see load.c).
 */
List *
contract_rules(const Pipeline *p, List *output)
{
	List	   *rules = NIL;
	ListCell   *lc;
	bool		null_keys = p->mode == LOAD_UPSERT && !key_nulls_not_distinct(p);

	foreach(lc, p->rules)
	{
		Rule	   *r = lfirst(lc);

		r->violation = r->column ? column_rule_sql(p, r, find_output(output, r, p))
			: check_rule_sql(r);
		rules = lappend(rules, r);
	}
	foreach(lc, output)
	{
		OutputColumn *col = lfirst(lc);

		if (col->checked)
			rules = add_implicit_rule(rules, psprintf("%s.type", col->name), "type", col->name,
									  psprintf("(%s AND %s IS NULL)",
											   raw_present(col), value_ref(col->name)));

		/*
		 * An upsert key with a NULL would neither conflict nor collapse
		 * with its duplicates as DISTINCT ON does: it breaks not_null.
		 */
		if (col->not_null || (null_keys && list_member(p->key, makeString(col->name))))
			rules = add_implicit_rule(rules, psprintf("%s.not_null", col->name), "not_null",
									  col->name, psprintf("(%s IS NULL)", value_ref(col->name)));
	}
	return check_constraint_rules(p, output, rules);
}

/* The columns of a relation as output columns, for pipeline_check. */
static List *
relation_columns(Oid relid)
{
	List	   *columns = NIL;
	Relation	rel = table_open(relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		OutputColumn *col;

		if (att->attisdropped)
			continue;
		col = palloc0(sizeof(OutputColumn));
		col->name = pstrdup(NameStr(att->attname));
		col->type = att->atttypid;
		col->typmod = att->atttypmod;
		col->raw_type = col->type;
		columns = lappend(columns, col);
	}
	table_close(rel, AccessShareLock);
	return columns;
}

PG_FUNCTION_INFO_V1(pipeline_check);

/*
 * pipeline_check(relation, contract): the contract's rules applied to an
 * existing table, as dbt tests are: per rule, how many rows break it and a
 * few of them. Runs with the caller's privileges, in one pass for the counts.
 */
Datum
pipeline_check(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Pipeline	check = {0};
	List	   *output;
	List	   *rules;
	ListCell   *lc;
	StringInfoData sql;
	char	   *relation;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	SPI_connect();
	relation = qualified_relation_name(relid);
	check.name = get_rel_name(relid);
	check.source = check.target = InvalidOid;
	check.mode = LOAD_UPSERT;	/* unique means within the relation */
	check.owner = GetUserId();
	output = relation_columns(relid);
	rules = parse_contract(&check, PG_GETARG_JSONB_P(1));
	foreach(lc, rules)
	{
		Rule	   *r = lfirst(lc);

		r->violation = r->column ? column_rule_sql(&check, r, find_output(output, r, &check))
			: check_rule_sql(r);
	}

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	foreach(lc, rules)
		appendStringInfo(&sql, "%spg_catalog.count(*) FILTER (WHERE __pipeline_r%d)",
						 foreach_current_index(lc) > 0 ? ", " : "", foreach_current_index(lc));
	appendStringInfoString(&sql, " FROM (SELECT ");
	foreach(lc, rules)
		appendStringInfo(&sql, "%s%s AS __pipeline_r%d", foreach_current_index(lc) > 0 ? ", " : "",
						 ((Rule *) lfirst(lc))->violation, foreach_current_index(lc));
	appendStringInfo(&sql, " FROM %s AS __pipeline_v) AS __pipeline_w", relation);
	if (rules != NIL && SPI_execute(sql.data, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "pipeline_check failed");

	foreach(lc, rules)
	{
		Rule	   *r = lfirst(lc);
		int			i = foreach_current_index(lc);
		bool		isnull;
		int64		failing = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
														  SPI_tuptable->tupdesc, i + 1, &isnull));
		Datum		values[3];
		bool		nulls[3] = {false, false, true};
		SPITupleTable *counts = SPI_tuptable;

		values[0] = CStringGetTextDatum(r->name);
		values[1] = Int64GetDatum(failing);
		if (failing > 0)
		{
			/* LIMIT in a subquery, so that it applies to rows */
			char	   *samples = psprintf("SELECT pg_catalog.jsonb_agg(t.row) FROM (SELECT s.row FROM ("
							   "SELECT pg_catalog.to_jsonb(__pipeline_v) AS row, %s AS bad "
							   "FROM %s AS __pipeline_v) s WHERE s.bad LIMIT 3) t",
							   r->violation, relation);
			if (SPI_execute(samples, true, 0) != SPI_OK_SELECT)
				elog(ERROR, "pipeline_check failed");
			values[2] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &nulls[2]);
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		SPI_tuptable = counts;
	}
	SPI_finish();
	return (Datum) 0;
}
