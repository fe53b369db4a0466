/*-------------------------------------------------------------------------
 *
 * sql_text.c
 *	  Pieces of generated SQL shared by the pipelines, the views and CDC.
 *
 *-------------------------------------------------------------------------
 */
#include "pipeline.h"

#include "access/htup_details.h"
#include "catalog/pg_operator.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

/*
 * A NULL of "type" for the anyelement argument that gives pipeline_try_input
 * and pipeline_try_cast their result type. NULL::domain would run the
 * domain's constraints on that NULL for every row (failing with a NOT NULL
 * domain, calling whatever its CHECK calls); a scalar subquery that returns
 * no row has the domain's type and runs nothing.
 */
char *
type_marker_sql(Oid type)
{
	if (get_typtype(type) == TYPTYPE_DOMAIN)
		return psprintf("(SELECT NULL::%s LIMIT 0)", format_type_be_qualified(type));
	return psprintf("NULL::%s", format_type_be_qualified(type));
}

/*
 * "=" on a value of "type" as generated SQL must write it: the equality
 * operator of the type's default btree class (the one of a primary key or
 * unique index on it), qualified with its schema. A bare "=" resolves
 * through the search_path of whoever runs the statement, where an
 * operator of a closer signature (pg_catalog has no varchar = varchar) in
 * a writable schema would win.
 */
char *
equality_operator_sql(Oid type)
{
	TypeCacheEntry *tc = lookup_type_cache(type, TYPECACHE_EQ_OPR);
	HeapTuple	tuple;
	Form_pg_operator op;
	char	   *name;

	if (!OidIsValid(tc->eq_opr))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("type %s has no default equality operator", format_type_be(type))));
	tuple = SearchSysCache1(OPEROID, ObjectIdGetDatum(tc->eq_opr));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for operator %u", tc->eq_opr);
	op = (Form_pg_operator) GETSTRUCT(tuple);
	name = psprintf("OPERATOR(%s.%s)", quote_identifier(get_namespace_name(op->oprnamespace)),
					NameStr(op->oprname));
	ReleaseSysCache(tuple);
	return name;
}
