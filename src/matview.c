/*-------------------------------------------------------------------------
 *
 * matview.c
 *	  pipeline_create_matview, pipeline_refresh, pipeline_drop_matview:
 *	  tables kept equal to a query by recomputing only what changed.
 *
 * A deferred view's base tables log, per statement, the group keys they
 * touched (and for inserts the arguments of count/sum/min/max) into the
 * view's change log, pipeline.matview_log_<id>, as arrays: one row per
 * statement keeps the triggers cheap. A refresh reads the log and the base
 * tables under ONE snapshot taken after locking the view, so a change is
 * either in both (applied, its log rows deleted) or in neither (left for
 * the next refresh): no change is lost or applied twice, whatever writers
 * commit meanwhile. Groups that lost rows are recomputed from the base
 * tables (delete + insert of the query restricted to them); groups that
 * only gained rows merge the delta when the view is algebraic.
 *
 *-------------------------------------------------------------------------
 */
#include "pipeline.h"

#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "nodes/makefuncs.h"
#include "utils/json.h"
#include "utils/regproc.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

PG_FUNCTION_INFO_V1(pipeline_create_matview);
PG_FUNCTION_INFO_V1(pipeline_refresh);
PG_FUNCTION_INFO_V1(pipeline_drop_matview);
PG_FUNCTION_INFO_V1(pipeline_pending_changes);

static const char *const delta_names[] = {"none", "count", "sum", "min", "max"};

char *
matview_log_name(int64 id)
{
	return psprintf("pipeline.matview_log_" INT64_FORMAT, id);
}

/*
 * Run as the owner, under the TimeZone and DateStyle the query was created
 * with. The search_path is "pg_catalog, pg_temp", the path the view's SQL
 * was deparsed under: every name outside pg_catalog in it is qualified, so
 * it means what it meant at create, and no function or operator that a
 * role planted in a schema of the owner's search_path (an exact match for
 * array_agg(int), say) can capture a call. (PostgreSQL 17 runs REFRESH
 * MATERIALIZED VIEW the same way.) The owner's own search_path applies
 * only while the query is analysed at create.
 */
void
matview_enter(const MatView *mv, IdentityFrame *frame)
{
	identity_enter(frame, mv->owner, catalog_search_path);
	identity_pin("TimeZone", mv->timezone);
	identity_pin("DateStyle", mv->datestyle);

	/*
	 * Every other setting a stable function's result depends on, at its
	 * default: the captures run in each writer's session, and a writer's
	 * IntervalStyle (say) would otherwise put rows of one group under two
	 * keys ('2 days 01:00:00' and '2 1:00:00').
	 */
	identity_pin("IntervalStyle", "postgres");
	identity_pin("extra_float_digits", "1");
	identity_pin("bytea_output", "hex");
	identity_pin("xmloption", "content");
}

static uint64
execute(const char *sql, int nparams, Oid *types, Datum *values, const char *nulls,
		Snapshot snapshot)
{
	int			rc;

	if (snapshot != InvalidSnapshot)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nparams, types);

		if (plan == NULL)
			elog(ERROR, "could not prepare \"%s\": %s", sql,
				 SPI_result_code_string(SPI_result));
		rc = SPI_execute_snapshot(plan, values, nulls, snapshot, InvalidSnapshot,
								  false, true, 0);
		SPI_freeplan(plan);
	}
	else
		rc = SPI_execute_with_args(sql, nparams, types, values, nulls, false, 0);
	if (rc < 0)
		elog(ERROR, "could not execute \"%s\": %s", sql, SPI_result_code_string(rc));
	return SPI_processed;
}

/* Key columns in order, as "prefix.name" or "prefix.k<n>". */
static char *
key_list(const MatView *mv, const char *prefix, bool numbered)
{
	StringInfoData s;
	ListCell   *lc;
	int			k = 0;

	initStringInfo(&s);
	foreach(lc, mv->columns)
	{
		MatViewColumn *col = lfirst(lc);

		if (!col->key)
			continue;
		k++;
		appendStringInfo(&s, "%s%s%s", k > 1 ? ", " : "", prefix,
						 numbered ? psprintf("k%d", k) : quote_identifier(col->name));
	}
	return s.data;
}

/* The groups to recompute, over the view's columns or the delta's k<n>. */
static char *
group_predicate(const MatView *mv, const char *prefix, bool numbered)
{
	StringInfoData s;
	ListCell   *lc;
	int			k = 0;
	AttrNumber	column = 0;

	initStringInfo(&s);
	foreach(lc, mv->columns)
	{
		MatViewColumn *col = lfirst(lc);
		char	   *ref;

		column++;
		if (!col->key)
			continue;
		ref = psprintf("%s%s", prefix,
					   numbered ? psprintf("k%d", k + 1) : quote_identifier(col->name));
		appendStringInfo(&s, "%s(%s %s ANY($%d) OR (%s IS NULL AND $%d))",
						 k > 0 ? " AND " : "", ref,
						 equality_operator_sql(get_atttype(mv->relid, column)),
						 KEY_PARAMS * k + 1, ref, KEY_PARAMS * k + 2);
		k++;
	}
	return s.data;
}

/* The rows (sign, k1.., a1..) of a deferred view's change log. */
char *
matview_delta_rows(const MatView *mv, const char *log)
{
	StringInfoData arrays,
				names;

	initStringInfo(&arrays);
	initStringInfo(&names);
	for (int i = 1; i <= mv->nkeys + mv->nargs; i++)
	{
		const char *name = i <= mv->nkeys ? psprintf("k%d", i) : psprintf("a%d", i - mv->nkeys);

		appendStringInfo(&arrays, "%spg_catalog.unnest(l.%s)", i > 1 ? ", " : "", name);
		appendStringInfo(&names, "%s%s", i > 1 ? ", " : "", name);
	}
	/* ROWS FROM: what unnest(a, b) means, qualified */
	return psprintf("SELECT l.sign, u.* FROM ONLY %s l "
					"CROSS JOIN LATERAL ROWS FROM (%s) AS u(%s)",
					log, arrays.data, names.data);
}

/* The value of one view column, aggregated over the delta rows d. */
static char *
merge_value(const MatViewColumn *col)
{
	char	   *arg = col->arg ? psprintf("d.a%d", col->arg) : "*";

	switch (col->delta)
	{
		case DELTA_COUNT:
			return psprintf("pg_catalog.count(%s)", arg);
		case DELTA_SUM:
			return psprintf("pg_catalog.sum(%s)", arg);
		case DELTA_MIN:
			return psprintf("pg_catalog.min(%s)", arg);
		case DELTA_MAX:
			return psprintf("pg_catalog.max(%s)", arg);
		case DELTA_NONE:
			break;
	}
	elog(ERROR, "column \"%s\" has no delta", col->name);
	return NULL;
}

/*
 * INSERT .. ON CONFLICT merging the inserted rows of the delta into an
 * algebraic view; "filtered": leave out the groups being recomputed.
 */
char *
matview_merge_sql(const MatView *mv, const char *delta, bool filtered)
{
	StringInfoData select,
				set;
	ListCell   *lc;
	int			k = 0,
				n = 0;

	initStringInfo(&select);
	initStringInfo(&set);
	foreach(lc, mv->columns)
	{
		MatViewColumn *col = lfirst(lc);
		const char *c = quote_identifier(col->name);

		if (n++ > 0)
			appendStringInfoString(&select, ", ");
		if (col->key)
		{
			appendStringInfo(&select, "d.k%d", ++k);
			continue;
		}
		appendStringInfoString(&select, merge_value(col));
		if (set.len > 0)
			appendStringInfoString(&set, ", ");
		if (col->delta == DELTA_COUNT)
			appendStringInfo(&set, "%s = m.%s OPERATOR(pg_catalog.+) excluded.%s", c, c, c);
		else if (col->delta == DELTA_SUM)
			appendStringInfo(&set, "%s = CASE WHEN m.%s IS NULL THEN excluded.%s "
							 "WHEN excluded.%s IS NULL THEN m.%s "
							 "ELSE m.%s OPERATOR(pg_catalog.+) excluded.%s END",
							 c, c, c, c, c, c, c);
		else
			appendStringInfo(&set, "%s = %s(m.%s, excluded.%s)", c,
							 col->delta == DELTA_MIN ? "LEAST" : "GREATEST", c, c);
	}
	return psprintf("INSERT INTO %s AS m SELECT %s FROM (%s) d "
					"WHERE d.sign OPERATOR(pg_catalog.>) 0%s%s "
					"GROUP BY %s ON CONFLICT (%s) DO %s%s",
					qualified_relation_name(mv->relid), select.data, delta,
					filtered ? " AND NOT coalesce(" : "",
					filtered ? psprintf("%s, false)", group_predicate(mv, "d.", true)) : "",
					key_list(mv, "d.", true), key_list(mv, "", false),
					set.len > 0 ? "UPDATE SET " : "NOTHING", set.data);
}

typedef struct GroupParams
{
	int64		groups;			/* delta rows naming groups to recompute */
	int			n;
	Oid		   *types;
	Datum	   *values;
	char	   *nulls;
} GroupParams;

/*
 * The end of the range of the last bucket b = max(k): b + step, or for a
 * calendar unit on timestamptz the start of the bucket of b + step. Where
 * a day starts at 01:00 because DST begins at midnight (America/Santiago),
 * b + 1 day is 01:00 of the next day, an hour into the next bucket.
 * (date_bin's buckets have a fixed width, recorded as a time, not days.)
 */
static char *
range_end(const char *step, Oid type)
{
	static const char *const units[][2] = {
		{"day", "'1 day'::interval"}, {"week", "'7 days'::interval"},
		{"month", "'1 month'::interval"}, {"quarter", "'3 months'::interval"},
		{"year", "'1 year'::interval"}};
	const char *end = psprintf("pg_catalog.max(k) OPERATOR(pg_catalog.+) %s", step);

	if (type == TIMESTAMPTZOID)
		for (int i = 0; i < lengthof(units); i++)
			if (strcmp(step, units[i][1]) == 0)
				return psprintf("pg_catalog.date_trunc('%s', %s)", units[i][0], end);
	return (char *) end;
}

/*
 * The groups to recompute, as the parameters of the recompute query: per
 * key, its distinct values (hashed, in a CTE over the delta) and for a
 * time bucket the range they span, exact when they are contiguous. An
 * infinite bucket has no range: like a NULL one, it turns the range off
 * (the flag also recomputes the NULL group, which is harmless).
 */
static GroupParams
groups_to_recompute(const MatView *mv, const char *delta, Snapshot snapshot)
{
	GroupParams g = {0};
	StringInfoData ctes,
				sql;
	ListCell   *lc;
	int			k = 0,
				column = 0;
	HeapTuple	row;
	TupleDesc	desc;

	initStringInfo(&ctes);
	initStringInfo(&sql);
	appendStringInfo(&ctes, "WITH d AS MATERIALIZED (SELECT * FROM (%s) d%s)",
					 delta, mv->algebraic ? " WHERE d.sign OPERATOR(pg_catalog.<) 0" : "");
	appendStringInfoString(&sql, "SELECT (SELECT pg_catalog.count(*) FROM d)");
	g.n = KEY_PARAMS * mv->nkeys;
	g.types = palloc0(sizeof(Oid) * Max(g.n, 1));
	g.values = palloc0(sizeof(Datum) * Max(g.n, 1));
	g.nulls = palloc(Max(g.n, 1));
	memset(g.nulls, 'n', Max(g.n, 1));
	foreach(lc, mv->columns)
	{
		MatViewColumn *col = lfirst(lc);
		Oid			type;
		int			base;

		column++;
		if (!col->key)
			continue;
		type = get_atttype(mv->relid, column);
		base = KEY_PARAMS * k++;
		g.types[base] = get_array_type(type);
		g.types[base + 1] = BOOLOID;
		g.types[base + 2] = type;
		g.types[base + 3] = type;
		g.types[base + 4] = BOOLOID;
		appendStringInfo(&ctes, ", k%d AS (SELECT DISTINCT k%d AS k FROM d)", k, k);
		appendStringInfo(&sql, ", (SELECT pg_catalog.array_agg(k) FROM k%d WHERE k IS NOT NULL), "
						 "(SELECT coalesce(pg_catalog.bool_or(k IS NULL%s), false) FROM k%d)",
						 k, col->range_step ? " OR NOT pg_catalog.isfinite(k)" : "", k);
		if (col->range_step)
			appendStringInfo(&sql, ", (SELECT pg_catalog.min(k) FROM k%d), "
							 "(SELECT %s FROM k%d), "
							 "(SELECT coalesce((pg_catalog.min(k) OPERATOR(pg_catalog.+) "
							 "((pg_catalog.count(k) OPERATOR(pg_catalog.-) 1) "
							 "OPERATOR(pg_catalog.*) %s)) OPERATOR(pg_catalog.=) pg_catalog.max(k) "
							 "AND NOT pg_catalog.bool_or(k IS NULL OR NOT pg_catalog.isfinite(k)), false) "
							 "FROM k%d)",
							 k, range_end(col->range_step, type), k, col->range_step, k);
	}
	appendStringInfo(&ctes, " %s", sql.data);
	execute(ctes.data, 0, NULL, NULL, NULL, snapshot);
	row = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	g.groups = DatumGetInt64(SPI_getbinval(row, desc, 1, &(bool){0}));

	column = 2;
	k = 0;
	foreach(lc, mv->columns)
	{
		MatViewColumn *col = lfirst(lc);
		int			width = col->range_step ? 5 : 2;

		if (!col->key)
			continue;
		for (int i = 0; i < width; i++)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(row, desc, column + i, &isnull);

			if (!isnull)
			{
				Form_pg_attribute att = TupleDescAttr(desc, column + i - 1);

				g.values[KEY_PARAMS * k + i] = SPI_datumTransfer(d, att->attbyval, att->attlen);
				g.nulls[KEY_PARAMS * k + i] = ' ';
			}
		}
		/* not a time bucket: the range is not used, "exact" is false */
		if (!col->range_step)
		{
			g.values[KEY_PARAMS * k + 4] = BoolGetDatum(false);
			g.nulls[KEY_PARAMS * k + 4] = ' ';
		}
		column += width;
		k++;
	}
	return g;
}

static bool
has_time_bucket(const MatView *mv)
{
	ListCell   *lc;

	foreach(lc, mv->columns)
		if (((MatViewColumn *) lfirst(lc))->range_step)
			return true;
	return false;
}

/*
 * Insert the query's rows for the groups to recompute. A time bucket of a
 * single table is read as a range of its column: there a bitmap heap scan
 * reads the heap in order, about twice as fast as the plain index scan the
 * planner prefers on a correlated column, so plain index scans are off for
 * this one statement.
 */
static int64
recompute(const MatView *mv, const char *relation, GroupParams *g, Snapshot snapshot)
{
	bool		bitmap = has_time_bucket(mv) && list_length(mv->bases) == 1;
	int			level = 0;
	int64		written;

	if (bitmap)
	{
		level = NewGUCNestLevel();
		(void) set_config_option("enable_indexscan", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	}
	written = execute(psprintf("INSERT INTO %s %s", relation, mv->recompute),
					  g->n, g->types, g->values, g->nulls, snapshot);
	if (bitmap)
		AtEOXact_GUC(true, level);
	return written;
}

/*
 * Bring the view up to date with a delta, rows (sign, k1.., a1..): -1 for
 * rows that left the query's input, +1 for rows that entered it. "full"
 * recomputes everything (TRUNCATE, or a view without keys). Returns the
 * groups written.
 */
int64
matview_apply(const MatView *mv, const char *delta, bool insert_only, bool full,
			  Snapshot snapshot)
{
	const char *relation = qualified_relation_name(mv->relid);
	GroupParams g = {0};
	int64		written = 0;

	if (full)
	{
		execute(psprintf("DELETE FROM %s", relation), 0, NULL, NULL, NULL, snapshot);
		return execute(psprintf("INSERT INTO %s %s", relation, mv->full), 0, NULL, NULL,
					   NULL, snapshot);
	}
	if (!(insert_only && mv->algebraic))
		g = groups_to_recompute(mv, delta, snapshot);
	if (g.groups > 0)
	{
		execute(psprintf("DELETE FROM %s WHERE %s", relation, group_predicate(mv, "", false)),
				g.n, g.types, g.values, g.nulls, snapshot);
		written += recompute(mv, relation, &g, snapshot);
	}
	if (mv->algebraic)
		written += execute(matview_merge_sql(mv, delta, g.groups > 0),
						   g.groups > 0 ? g.n : 0, g.types, g.values, g.nulls, snapshot);
	return written;
}

/* ---- catalog ---- */

static List *
read_columns(const char *json)
{
	Oid			type = JSONBOID;
	Datum		value = DirectFunctionCall1(jsonb_in, CStringGetDatum(json));
	List	   *columns = NIL;

	if (SPI_execute_with_args("SELECT c->>'name', (c->>'key')::bool, c->>'delta', "
							  "(c->>'arg')::int, c->>'range_step' "
							  "FROM jsonb_array_elements($1) c",
							  1, &type, &value, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the columns of a materialized view");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		MatViewColumn *col = palloc0(sizeof(MatViewColumn));
		char	   *delta = SPI_getvalue(t, d, 3);
		bool		isnull;

		col->name = SPI_getvalue(t, d, 1);
		col->key = DatumGetBool(SPI_getbinval(t, d, 2, &isnull));
		for (int k = 0; k < lengthof(delta_names); k++)
			if (strcmp(delta, delta_names[k]) == 0)
				col->delta = (DeltaKind) k;
		col->arg = DatumGetInt32(SPI_getbinval(t, d, 4, &isnull));
		col->range_step = SPI_getvalue(t, d, 5);
		columns = lappend(columns, col);
	}
	return columns;
}

static char *
columns_json(const MatView *mv)
{
	StringInfoData s;
	ListCell   *lc;

	initStringInfo(&s);
	appendStringInfoChar(&s, '[');
	foreach(lc, mv->columns)
	{
		MatViewColumn *col = lfirst(lc);

		if (s.len > 1)
			appendStringInfoString(&s, ", ");
		appendStringInfoString(&s, "{\"name\": ");
		escape_json(&s, col->name);
		appendStringInfo(&s, ", \"key\": %s, \"delta\": \"%s\", \"arg\": %d",
						 col->key ? "true" : "false", delta_names[col->delta], col->arg);
		if (col->range_step)
		{
			appendStringInfoString(&s, ", \"range_step\": ");
			escape_json(&s, col->range_step);
		}
		appendStringInfoChar(&s, '}');
	}
	appendStringInfoChar(&s, ']');
	return s.data;
}

static List *
oid_array_to_list(Datum array)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	List	   *result = NIL;

	deconstruct_array(DatumGetArrayTypeP(array), OIDOID, sizeof(Oid), true,
					  TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
		result = lappend_oid(result, DatumGetObjectId(elems[i]));
	return result;
}

static List *
text_array_to_list(Datum array)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	List	   *result = NIL;

	deconstruct_array(DatumGetArrayTypeP(array), TEXTOID, -1, false,
					  TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
		result = lappend(result, TextDatumGetCString(elems[i]));
	return result;
}

/*
 * pipeline.matviews exists: not before ALTER EXTENSION pipeline UPDATE TO
 * '0.2', while the new library already runs against a 0.1 catalog.
 */
bool
matviews_installed(void)
{
	Oid			nsp = get_namespace_oid("pipeline", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("matviews", nsp));
}

/* The definition of an incremental view, read as the catalog's owner. */
MatView *
matview_read(Oid relid, bool missing_ok)
{
	IdentityFrame frame;
	Oid			type = OIDOID;
	Datum		value = ObjectIdGetDatum(relid);
	MatView    *mv;
	HeapTuple	t;
	TupleDesc	d;
	bool		isnull;
	char	   *columns;

	if (!matviews_installed())
	{
		if (missing_ok)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("incremental materialized views need version 0.2 of extension pipeline"),
				 errhint("Run ALTER EXTENSION pipeline UPDATE.")));
	}
	identity_enter_catalog(&frame);
	if (SPI_execute_with_args("SELECT id, owner::oid, query, refresh = 'immediate', continuous, "
							  "search_path, timezone, datestyle, base_tables::oid[], "
							  "columns::text, algebraic, capture, recompute, full_query "
							  "FROM pipeline.matviews WHERE relation = $1",
							  1, &type, &value, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pipeline.matviews");
	if (SPI_processed == 0)
	{
		identity_leave(&frame);
		if (missing_ok)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("\"%s\" is not an incremental materialized view", get_rel_name(relid)),
				 errhint("Create one with pipeline_create_matview().")));
	}
	t = SPI_tuptable->vals[0];
	d = SPI_tuptable->tupdesc;
	mv = palloc0(sizeof(MatView));
	mv->relid = relid;
	mv->id = DatumGetInt64(SPI_getbinval(t, d, 1, &isnull));
	mv->owner = DatumGetObjectId(SPI_getbinval(t, d, 2, &isnull));
	mv->query = SPI_getvalue(t, d, 3);
	mv->immediate = DatumGetBool(SPI_getbinval(t, d, 4, &isnull));
	mv->continuous = DatumGetBool(SPI_getbinval(t, d, 5, &isnull));
	mv->search_path = SPI_getvalue(t, d, 6);
	mv->timezone = SPI_getvalue(t, d, 7);
	mv->datestyle = SPI_getvalue(t, d, 8);
	mv->bases = oid_array_to_list(SPI_getbinval(t, d, 9, &isnull));
	columns = SPI_getvalue(t, d, 10);
	mv->algebraic = DatumGetBool(SPI_getbinval(t, d, 11, &isnull));
	mv->capture = text_array_to_list(SPI_getbinval(t, d, 12, &isnull));
	mv->recompute = SPI_getvalue(t, d, 13);
	mv->full = SPI_getvalue(t, d, 14);
	mv->columns = read_columns(columns);
	identity_leave(&frame);

	for (ListCell *lc = list_head(mv->columns); lc; lc = lnext(mv->columns, lc))
	{
		MatViewColumn *col = lfirst(lc);

		mv->nkeys += col->key ? 1 : 0;
		mv->nargs = Max(mv->nargs, col->arg);
	}
	return mv;
}

static char *
copy_string(const char *s)
{
	return s ? pstrdup(s) : NULL;
}

/*
 * A deep copy in the current memory context. (Anything read through SPI
 * lives in the SPI procedure context, which SPI_finish frees.)
 */
MatView *
matview_copy(const MatView *src)
{
	MatView    *mv = palloc(sizeof(MatView));
	ListCell   *lc;

	*mv = *src;
	mv->query = copy_string(src->query);
	mv->search_path = copy_string(src->search_path);
	mv->timezone = copy_string(src->timezone);
	mv->datestyle = copy_string(src->datestyle);
	mv->recompute = copy_string(src->recompute);
	mv->full = copy_string(src->full);
	mv->bases = list_copy(src->bases);
	mv->columns = NIL;
	foreach(lc, src->columns)
	{
		MatViewColumn *col = palloc(sizeof(MatViewColumn));

		*col = *(MatViewColumn *) lfirst(lc);
		col->name = copy_string(col->name);
		col->range_step = copy_string(col->range_step);
		mv->columns = lappend(mv->columns, col);
	}
	mv->capture = NIL;
	foreach(lc, src->capture)
		mv->capture = lappend(mv->capture, copy_string(lfirst(lc)));
	mv->arg_types = mv->key_types = mv->base_columns = NIL;
	return mv;
}

MatView *
matview_read_by_id(int64 id)
{
	IdentityFrame frame;
	Oid			type = INT8OID;
	Datum		value = Int64GetDatum(id);
	Oid			relid;
	bool		isnull;

	identity_enter_catalog(&frame);
	if (SPI_execute_with_args("SELECT relation::oid FROM pipeline.matviews WHERE id = $1",
							  1, &type, &value, NULL, true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "materialized view " INT64_FORMAT " is missing from pipeline.matviews", id);
	relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
										   &isnull));
	identity_leave(&frame);
	return matview_read(relid, false);
}

/* The name in a view's pg_cron job: its schema-qualified name. */
char *
matview_job_key(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

/* The incremental view of that name, or InvalidOid. */
Oid
matview_relation(const char *name)
{
	Oid			relid = InvalidOid;
	List	   *names;
	MemoryContext context = CurrentMemoryContext;

	/* a pipeline name need not be a valid relation name */
	PG_TRY();
	{
		names = qualified_name_list(name);
		relid = RangeVarGetRelid(makeRangeVarFromNameList(names), NoLock, true);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(context);
		FlushErrorState();
		relid = InvalidOid;
	}
	PG_END_TRY();
	if (OidIsValid(relid) && matview_read(relid, true) == NULL)
		relid = InvalidOid;
	return relid;
}

static Oid
relation_of(const char *name, bool missing_ok)
{
	RangeVar   *rv = makeRangeVarFromNameList(qualified_name_list(name));
	Oid			relid = RangeVarGetRelid(rv, NoLock, true);

	if (!OidIsValid(relid) && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("materialized view \"%s\" does not exist", name)));
	return relid;
}

MatView *
open_owned_matview(const char *name)
{
	MatView    *mv = matview_read(relation_of(name, false), false);

	if (!has_privs_of_role(GetUserId(), mv->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for materialized view \"%s\"", name),
				 errdetail("It is owned by role \"%s\".", GetUserNameFromId(mv->owner, false)),
				 errhint("Only members of the owning role can use it.")));
	return mv;
}

static void
touch_refreshed(const MatView *mv)
{
	Oid			type = INT8OID;
	Datum		value = Int64GetDatum(mv->id);

	run_catalog_statement("UPDATE pipeline.matviews SET last_refresh_at = now() WHERE id = $1",
						  1, &type, &value, NULL, -1);
}

/* ---- create ---- */

static int64
insert_catalog_row(const MatView *mv, const char *refresh, Jsonb *options)
{
	IdentityFrame frame;
	Oid			types[15] = {OIDOID, OIDOID, TEXTOID, TEXTOID, JSONBOID, BOOLOID, TEXTOID,
		TEXTOID, TEXTOID, OIDARRAYOID, TEXTOID, BOOLOID, TEXTARRAYOID, TEXTOID, TEXTOID};
	Datum		values[15];
	Datum	   *bases = palloc(sizeof(Datum) * list_length(mv->bases));
	Datum	   *capture = palloc(sizeof(Datum) * list_length(mv->capture));
	int			i = 0;
	ListCell   *lc;
	int64		id;
	bool		isnull;

	foreach(lc, mv->bases)
		bases[i++] = ObjectIdGetDatum(lfirst_oid(lc));
	i = 0;
	foreach(lc, mv->capture)
		capture[i++] = CStringGetTextDatum(lfirst(lc));
	values[0] = ObjectIdGetDatum(mv->relid);
	values[1] = ObjectIdGetDatum(mv->owner);
	values[2] = CStringGetTextDatum(mv->query);
	values[3] = CStringGetTextDatum(refresh);
	values[4] = JsonbPGetDatum(options);
	values[5] = BoolGetDatum(mv->continuous);
	values[6] = CStringGetTextDatum(mv->search_path);
	values[7] = CStringGetTextDatum(mv->timezone);
	values[8] = CStringGetTextDatum(mv->datestyle);
	values[9] = PointerGetDatum(construct_array(bases, list_length(mv->bases), OIDOID,
												sizeof(Oid), true, TYPALIGN_INT));
	values[10] = CStringGetTextDatum(columns_json(mv));
	values[11] = BoolGetDatum(mv->algebraic);
	values[12] = PointerGetDatum(construct_array(capture, list_length(mv->capture), TEXTOID,
												 -1, false, TYPALIGN_INT));
	values[13] = CStringGetTextDatum(mv->recompute);
	values[14] = CStringGetTextDatum(mv->full);

	identity_enter_catalog(&frame);
	if (SPI_execute_with_args("INSERT INTO pipeline.matviews (relation, owner, query, refresh, "
							  "options, continuous, search_path, timezone, datestyle, "
							  "base_tables, columns, algebraic, capture, recompute, full_query, "
							  "last_refresh_at) "
							  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::regclass[], "
							  "$11::jsonb, $12, $13, $14, $15, now()) RETURNING id",
							  15, types, values, NULL, false, 1) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not insert into pipeline.matviews");
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	identity_leave(&frame);
	return id;
}

/*
 * The change log: one row per statement. It belongs to the catalog's owner,
 * who reads it for pipeline.status and the worker: the view's owner, who
 * writes and applies it, gets SELECT, INSERT and DELETE on it but cannot
 * turn it into a view, give it rules, triggers, policies or indexes, or
 * otherwise make reading it run code of theirs.
 */
static void
create_log(const MatView *mv)
{
	StringInfoData sql,
				storage;
	IdentityFrame frame;
	ListCell   *lc;
	int			i = 0;

	initStringInfo(&sql);
	/*
	 * Arrays are written once and read once: STORAGE EXTERNAL spares the
	 * writer's statement their compression.
	 */
	initStringInfo(&storage);
	appendStringInfo(&sql, "CREATE TABLE %s (sign int2 NOT NULL", matview_log_name(mv->id));
	foreach(lc, mv->key_types)
	{
		appendStringInfo(&sql, ", k%d %s", ++i,
						 format_type_be_qualified(get_array_type(lfirst_oid(lc))));
		appendStringInfo(&storage, "%s ALTER k%d SET STORAGE EXTERNAL",
						 storage.len > 0 ? "," : "", i);
	}
	i = 0;
	foreach(lc, mv->arg_types)
	{
		appendStringInfo(&sql, ", a%d %s", ++i,
						 format_type_be_qualified(get_array_type(lfirst_oid(lc))));
		appendStringInfo(&storage, "%s ALTER a%d SET STORAGE EXTERNAL",
						 storage.len > 0 ? "," : "", i);
	}
	appendStringInfoChar(&sql, ')');

	identity_enter_catalog(&frame);
	execute(sql.data, 0, NULL, NULL, NULL, InvalidSnapshot);
	if (storage.len > 0)
		execute(psprintf("ALTER TABLE %s%s", matview_log_name(mv->id), storage.data),
				0, NULL, NULL, NULL, InvalidSnapshot);
	execute(psprintf("GRANT SELECT, INSERT, DELETE ON %s TO %s", matview_log_name(mv->id),
					 quote_identifier(GetUserNameFromId(mv->owner, false))),
			0, NULL, NULL, NULL, InvalidSnapshot);
	identity_leave(&frame);

	/* DROP TABLE of the view takes its log along */
	{
		ObjectAddress log,
					view;
		RangeVar   *rv = makeRangeVar("pipeline",
									  psprintf("matview_log_" INT64_FORMAT, mv->id), -1);

		ObjectAddressSet(log, RelationRelationId, RangeVarGetRelid(rv, NoLock, false));
		ObjectAddressSet(view, RelationRelationId, mv->relid);
		recordDependencyOn(&log, &view, DEPENDENCY_AUTO);
	}
}

static const char *const trigger_events[][2] = {
	{"ins", "AFTER INSERT ON %s REFERENCING NEW TABLE AS __pipeline_new"},
	{"upd", "AFTER UPDATE ON %s REFERENCING OLD TABLE AS __pipeline_old NEW TABLE AS __pipeline_new"},
	{"del", "AFTER DELETE ON %s REFERENCING OLD TABLE AS __pipeline_old"},
	{"trunc", "AFTER TRUNCATE ON %s"},
	/* immediate views only: see pipeline_matview_capture */
	{"lock", "BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s"}};

#define LOCK_TRIGGER (lengthof(trigger_events) - 1)

static char *
trigger_name(const MatView *mv, int event)
{
	return psprintf("pipeline_matview_" INT64_FORMAT "_%s", mv->id, trigger_events[event][0]);
}

/*
 * Fire even under session_replication_role = replica, so that rows applied
 * by a logical replication subscription reach the view too. (ALTER TABLE
 * needs the table's owner; the view's owner may only have TRIGGER.)
 */
static void
enable_always(Oid base, const char *trigger)
{
	IdentityFrame frame;

	identity_enter_catalog(&frame);
	execute(psprintf("ALTER TABLE %s ENABLE ALWAYS TRIGGER %s", qualified_relation_name(base),
					 quote_identifier(trigger)), 0, NULL, NULL, NULL, InvalidSnapshot);
	identity_leave(&frame);
}

/* Statement triggers on every base table; they go when the view goes. */
static void
create_triggers(const MatView *mv)
{
	ObjectAddress view;
	ListCell   *lc;

	ObjectAddressSet(view, RelationRelationId, mv->relid);
	foreach(lc, mv->bases)
	{
		Oid			base = lfirst_oid(lc);
		ObjectAddress table;

		if (pg_class_aclcheck(base, mv->owner, ACL_TRIGGER) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to capture the changes of table \"%s\"",
							get_rel_name(base)),
					 errhint("Grant TRIGGER on it to role \"%s\", or let its owner create the view.",
							 GetUserNameFromId(mv->owner, false))));
		for (int e = 0; e < lengthof(trigger_events); e++)
		{
			ObjectAddress trigger;

			if (e == LOCK_TRIGGER && !mv->immediate)
				continue;
			execute(psprintf("CREATE TRIGGER %s %s FOR EACH STATEMENT "
							 "EXECUTE FUNCTION pg_catalog.pipeline_matview_capture('" INT64_FORMAT "')",
							 quote_identifier(trigger_name(mv, e)),
							 psprintf(trigger_events[e][1], qualified_relation_name(base)),
							 mv->id),
					0, NULL, NULL, NULL, InvalidSnapshot);
			ObjectAddressSet(trigger, TriggerRelationId,
							 get_trigger_oid(base, trigger_name(mv, e), false));
			recordDependencyOn(&trigger, &view, DEPENDENCY_AUTO);
			enable_always(base, trigger_name(mv, e));
		}
		/*
		 * DROP TABLE of a base table, or ALTER TABLE DROP COLUMN of a column
		 * the query reads, names the view instead of breaking every write
		 * to the table.
		 */
		ObjectAddressSet(table, RelationRelationId, base);
		recordDependencyOn(&view, &table, DEPENDENCY_NORMAL);
		{
			Bitmapset  *columns = list_nth(mv->base_columns, foreach_current_index(lc));
			int			c = -1;

			while ((c = bms_next_member(columns, c)) >= 0)
			{
				ObjectAddress column;
				AttrNumber	attnum = c + FirstLowInvalidHeapAttributeNumber;

				if (attnum <= 0)
					continue;	/* system columns and whole rows: the table */
				ObjectAddressSubSet(column, RelationRelationId, base, attnum);
				recordDependencyOn(&view, &column, DEPENDENCY_NORMAL);
			}
		}
	}
}

static void
read_options(MatView *mv, Jsonb *options, const char *name)
{
	Oid			type = JSONBOID;
	Datum		value = JsonbPGetDatum(options);

	if (SPI_execute_with_args("SELECT key, pg_catalog.jsonb_typeof(value), "
							  "value OPERATOR(pg_catalog.#>>) '{}' FROM pg_catalog.jsonb_each($1)",
							  1, &type, &value, NULL, true, 0) != SPI_OK_SELECT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options of materialized view \"%s\" must be a JSON object", name)));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *key = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *jtype = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		char	   *val = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3);

		if (strcmp(key, "continuous") == 0 && strcmp(jtype, "boolean") == 0)
			mv->continuous = strcmp(val, "true") == 0;
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown or invalid option \"%s\" of materialized view \"%s\"",
							key, name),
					 errhint("The only option is \"continuous\" (boolean).")));
	}
}

Datum
pipeline_create_matview(PG_FUNCTION_ARGS)
{
	const char *name;
	const char *refresh;
	Jsonb	   *options;
	RangeVar   *rv;
	MatView    *mv;
	IdentityFrame frame;
	const char *relation;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("name, query, refresh and options of a materialized view must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	refresh = text_to_cstring(PG_GETARG_TEXT_PP(2));
	options = PG_GETARG_JSONB_P(3);
	if (strcmp(refresh, "deferred") != 0 && strcmp(refresh, "immediate") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid refresh mode \"%s\" for materialized view \"%s\"", refresh, name),
				 errhint("Use 'deferred' or 'immediate'.")));

	mv = palloc0(sizeof(MatView));
	mv->query = text_to_cstring(PG_GETARG_TEXT_PP(1));
	/* the maintaining SQL names its relations so (CAPTURE_ROWS, ...) */
	if (strstr(mv->query, "__pipeline_") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_RESERVED_NAME),
				 errmsg("query of materialized view \"%s\" must not contain \"__pipeline_\"", name),
				 errhint("Names and text starting with __pipeline_ are reserved for the SQL that maintains the view.")));
	mv->immediate = strcmp(refresh, "immediate") == 0;
	mv->owner = GetUserId();
	mv->search_path = pstrdup(GetConfigOption("search_path", false, false));
	mv->timezone = pstrdup(GetConfigOption("TimeZone", false, false));
	mv->datestyle = pstrdup(GetConfigOption("DateStyle", false, false));

	SPI_connect();
	read_options(mv, options, name);
	if (mv->continuous && mv->immediate)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"continuous\" applies to deferred views only")));
	rv = makeRangeVarFromNameList(qualified_name_list(name));
	if (OidIsValid(RangeVarGetRelid(rv, NoLock, true)))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("relation \"%s\" already exists", name)));
	relation = rv->schemaname ? quote_qualified_identifier(rv->schemaname, rv->relname)
		: quote_identifier(rv->relname);

	matview_enter(mv, &frame);
	/* the query's names resolve as its owner wrote them */
	identity_pin("search_path", mv->search_path);
	matview_analyze(mv, name);
	/* room on each page, so that merging into a group's row is a HOT update */
	execute(psprintf("CREATE TABLE %s%s AS %s WITH NO DATA", relation,
					 mv->algebraic ? " WITH (fillfactor = 70)" : "", mv->full),
			0, NULL, NULL, NULL, InvalidSnapshot);
	mv->relid = RangeVarGetRelid(rv, NoLock, false);
	if (mv->nkeys > 0)
		execute(psprintf("CREATE UNIQUE INDEX ON %s (%s)%s", relation, key_list(mv, "", false),
#if PG_VERSION_NUM >= 150000
						 " NULLS NOT DISTINCT"
#else
						 ""
#endif
						 ), 0, NULL, NULL, NULL, InvalidSnapshot);
	identity_leave(&frame);

	mv->id = insert_catalog_row(mv, refresh, options);
	if (!mv->immediate)
		create_log(mv);

	matview_enter(mv, &frame);
	create_triggers(mv);
	/* the base tables are locked by the triggers: no change slips between */
	execute(psprintf("INSERT INTO %s %s", qualified_relation_name(mv->relid), mv->full),
			0, NULL, NULL, NULL, InvalidSnapshot);
	identity_leave(&frame);
	SPI_finish();
	PG_RETURN_VOID();
}

/* ---- refresh ---- */

/*
 * The changes a log holds, as an aggregate over its rows: one per key in
 * the arrays, or one per row (a TRUNCATE, or a view without keys).
 */
static const char *
pending_count(const MatView *mv)
{
	return mv->nkeys > 0 ?
		"coalesce(pg_catalog.sum(coalesce(pg_catalog.cardinality(k1), 1)), 0)::pg_catalog.int8"
		: "pg_catalog.count(*)";
}

/*
 * Apply a deferred view's log. Returns the changed base rows applied and
 * the groups written through "groups".
 */
static int64
refresh_view(const MatView *mv, int64 *groups)
{
	IdentityFrame frame;
	Snapshot	snapshot;
	const char *log = matview_log_name(mv->id);
	int64		changes;
	bool		truncated;
	bool		isnull;

	*groups = 0;
	if (mv->immediate)
		return 0;
	require_read_committed(psprintf("a refresh of materialized view \"%s\" cannot run",
									get_rel_name(mv->relid)),
						   "Use a READ COMMITTED transaction.");
	/* one refresher at a time; readers go on */
	LockRelationOid(mv->relid, ExclusiveLock);
	matview_enter(mv, &frame);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	execute(psprintf("SELECT %s, coalesce(pg_catalog.bool_or(sign OPERATOR(pg_catalog.=) 0), false) "
					 "FROM ONLY %s", pending_count(mv), log),
			0, NULL, NULL, NULL, snapshot);
	changes = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	truncated = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (changes > 0)
	{
		*groups = matview_apply(mv, matview_delta_rows(mv, log), false,
								truncated || mv->nkeys == 0, snapshot);
		execute(psprintf("DELETE FROM ONLY %s", log), 0, NULL, NULL, NULL, snapshot);
	}
	UnregisterSnapshot(snapshot);
	identity_leave(&frame);
	if (changes > 0)
		touch_refreshed(mv);
	return changes;
}

Datum
pipeline_refresh(PG_FUNCTION_ARGS)
{
	const char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	int64		groups;
	int64		changes;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pipeline_refresh must return a record");
	SPI_connect();
	changes = refresh_view(open_owned_matview(name), &groups);
	SPI_finish();
	values[0] = Int64GetDatum(changes);
	values[1] = Int64GetDatum(groups);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/* After a pipeline loads a table: refresh the deferred views over it. */
void
refresh_matviews_of(Oid base)
{
	IdentityFrame frame;
	Oid			type = OIDOID;
	Datum		value = ObjectIdGetDatum(base);
	List	   *views = NIL;
	ListCell   *lc;

	if (!matviews_installed())
		return;
	identity_enter_catalog(&frame);
	if (SPI_execute_with_args("SELECT relation::oid FROM pipeline.matviews "
							  "WHERE refresh = 'deferred' AND $1 = ANY (base_tables::oid[]) "
							  "ORDER BY id", 1, &type, &value, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pipeline.matviews");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		views = lappend_oid(views, DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
																   SPI_tuptable->tupdesc, 1, &isnull)));
	}
	identity_leave(&frame);
	foreach(lc, views)
	{
		int64		groups;

		(void) refresh_view(matview_read(lfirst_oid(lc), false), &groups);
	}
}

/*
 * The log is a plain table of the catalog's owner, without rules: reading
 * it as that owner runs nothing of another role. A log of a 0.3 catalog
 * not yet updated (ALTER EXTENSION pipeline UPDATE gives it to the catalog's
 * owner) is still the view owner's, and is read as that owner.
 */
static bool
log_is_catalogs(const MatView *mv)
{
	Oid			log = get_relname_relid(psprintf("matview_log_" INT64_FORMAT, mv->id),
										get_namespace_oid("pipeline", false));
	HeapTuple	tuple;
	Form_pg_class rel;
	bool		trusted;
	Oid			catalog_owner;

	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(catalog_relid()));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", catalog_relid());
	catalog_owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);

	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(log));
	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the change log of materialized view \"%s\" is missing",
						get_rel_name(mv->relid)),
				 errhint("Drop the view with pipeline_drop_matview() and create it again.")));
	rel = (Form_pg_class) GETSTRUCT(tuple);
	trusted = rel->relkind == RELKIND_RELATION && rel->relowner == catalog_owner &&
		!rel->relhasrules && !rel->relrowsecurity;
	ReleaseSysCache(tuple);
	return trusted;
}

Datum
pipeline_pending_changes(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	MatView    *mv;
	IdentityFrame frame;
	int64		pending = 0;
	bool		isnull;

	SPI_connect();
	mv = matview_read(relid, true);
	/* like pipeline.matviews: other roles' views are not there */
	if (mv && !has_privs_of_role(GetUserId(), mv->owner))
		mv = NULL;
	if (mv && !mv->immediate)
	{
		if (log_is_catalogs(mv))
			identity_enter_catalog(&frame);
		else
			matview_enter(mv, &frame);
		execute(psprintf("SELECT %s FROM ONLY %s", pending_count(mv), matview_log_name(mv->id)),
				0, NULL, NULL, NULL, InvalidSnapshot);
		pending = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
											  &isnull));
		identity_leave(&frame);
	}
	SPI_finish();
	if (mv == NULL)
		PG_RETURN_NULL();
	PG_RETURN_INT64(pending);
}

/* ---- drop ---- */

Datum
pipeline_drop_matview(PG_FUNCTION_ARGS)
{
	const char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	MatView    *mv;
	IdentityFrame frame;
	Oid			type = INT8OID;
	Datum		value;

	SPI_connect();
	mv = open_owned_matview(name);
	value = Int64GetDatum(mv->id);
	unschedule_dropped_matview(matview_job_key(mv->relid));
	/* triggers and change log depend on the view and go with it */
	identity_enter_catalog(&frame);
	execute(psprintf("DROP TABLE %s", qualified_relation_name(mv->relid)), 0, NULL, NULL, NULL,
			InvalidSnapshot);
	identity_leave(&frame);
	run_catalog_statement("DELETE FROM pipeline.matviews WHERE id = $1", 1, &type, &value, NULL, -1);
	SPI_finish();
	PG_RETURN_VOID();
}
