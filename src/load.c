/*-------------------------------------------------------------------------
 *
 * load.c
 *	  The statements that move one batch into the target, and their
 *	  execution.
 *
 *	  append:  INSERT ... SELECT
 *	  upsert:  INSERT ... SELECT DISTINCT ON (key) ... ON CONFLICT DO UPDATE;
 *	           duplicates of a key inside one batch collapse to one row, the
 *	           one with the highest watermark (or the last one out of the
 *	           transform when it does not output the watermark column)
 *	  replace: DELETE, then INSERT ... SELECT, in one transaction: readers
 *	           keep seeing the old contents until the run commits (MVCC),
 *	           never an empty or half-filled table
 *
 * Each batch is one set-based statement. The statements are run through the
 * executor directly, so that the number of rows read from the source can be
 * counted on the batch's own scan nodes instead of by a second pass.
 *
 *-------------------------------------------------------------------------
 */
#include "pipeline.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "executor/spi.h"
#include "executor/executor.h"
#include "executor/instrument.h"
#include "nodes/nodeFuncs.h"
#include "parser/parsetree.h"
#include "parser/parser.h"
#include "tcop/pquery.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

/* The target's primary key columns, NIL if it has none. */
List *
default_key(Oid target)
{
	Relation	rel = table_open(target, AccessShareLock);
	Oid			pk = RelationGetPrimaryKeyIndex(rel);
	List	   *key = NIL;

	if (OidIsValid(pk))
	{
		HeapTuple	tuple = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(pk));
		Form_pg_index index;

		if (!HeapTupleIsValid(tuple))
			elog(ERROR, "cache lookup failed for index %u", pk);
		index = (Form_pg_index) GETSTRUCT(tuple);
		for (int i = 0; i < index->indnkeyatts; i++)
			key = lappend(key, makeString(get_attname(target,
													  index->indkey.values[i],
													  false)));
		ReleaseSysCache(tuple);
	}
	table_close(rel, AccessShareLock);
	return key;
}

void
append_column_list(StringInfo sql, List *output)
{
	ListCell   *lc;

	foreach(lc, output)
	{
		OutputColumn *col = lfirst(lc);

		appendStringInfo(sql, "%s%s", foreach_current_index(lc) > 0 ? ", " : "",
						 quote_identifier(col->name));
	}
}

static void
append_key_list(StringInfo sql, List *key, const char *prefix)
{
	ListCell   *lc;

	foreach(lc, key)
		appendStringInfo(sql, "%s%s%s", foreach_current_index(lc) > 0 ? ", " : "",
						 prefix, quote_identifier(strVal(lfirst(lc))));
}

static bool
is_key_column(List *key, const char *name)
{
	ListCell   *lc;

	foreach(lc, key)
		if (strcmp(strVal(lfirst(lc)), name) == 0)
			return true;
	return false;
}

/* Does the load write the column "name"? */
bool
output_has_column(List *output, const char *name)
{
	ListCell   *lc;

	foreach(lc, output)
		if (strcmp(((OutputColumn *) lfirst(lc))->name, name) == 0)
			return true;
	return false;
}

/*
 * Is the column's value converted on its way into the target? Then the
 * quarantine keeps the value as the transform made it, which a replay
 * converts again (an enum, domain or array column's converted value would
 * not read back as the transform's type).
 */
static bool
carries_raw(const OutputColumn *col)
{
	return col->checked || strcmp(col->expr, col->raw) != 0;
}

/* jsonb_build_object takes at most 100 arguments: 50 columns a call. */
static char *
row_as_jsonb(List *output, const char *prefix)
{
	StringInfoData sql;
	ListCell   *lc;

	initStringInfo(&sql);
	foreach(lc, output)
	{
		OutputColumn *col = lfirst(lc);
		int			i = foreach_current_index(lc);

		if (i % 50 == 0)
			appendStringInfo(&sql, "%spg_catalog.jsonb_build_object(",
							 i > 0 ? ") OPERATOR(pg_catalog.||) " : "");
		else
			appendStringInfoString(&sql, ", ");
		/* the value as the transform made it, before conversion */
		appendStringInfo(&sql, "%s, %s%s", quote_literal_cstr(col->name), prefix,
						 carries_raw(col) ? raw_alias(col->name) : quote_identifier(col->name));
	}
	appendStringInfoChar(&sql, ')');
	return sql.data;
}

/*
 * The WHERE clause that routes rows: fail rules raise, warn rules count,
 * quarantine rules divert. A clean row passes on the OR of its rule
 * columns alone.
 */
static char *
route_condition(List *rules, List *output, List *carry)
{
	StringInfoData sql;
	StringInfoData any_bad;
	StringInfoData names;
	char	   *data = row_as_jsonb(output, "__pipeline_w.");
	ListCell   *lc;
	bool		first = true;

	/*
	 * Carried columns go into the quarantined row: a replayed row's
	 * quarantine id (to tell which stay bad), a change's LSN and table.
	 */
	foreach(lc, carry)
		data = psprintf("%s OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(%s, __pipeline_w.%s)",
						data, quote_literal_cstr(strVal(lfirst(lc))), strVal(lfirst(lc)));
	initStringInfo(&sql);
	initStringInfo(&any_bad);
	initStringInfo(&names);
	foreach(lc, rules)
	{
		Rule	   *r = lfirst(lc);
		char	   *flag = psprintf("__pipeline_w.__pipeline_r%d", foreach_current_index(lc));

		switch (r->action)
		{
			case ACTION_FAIL:
				appendStringInfo(&sql, "(NOT %s OR pg_catalog.pipeline_fail(%s, %s)) AND ",
								 flag, quote_literal_cstr(r->name), data);
				break;
			case ACTION_WARN:
				appendStringInfo(&sql, "(NOT %s OR pg_catalog.pipeline_warn(%s)) AND ",
								 flag, quote_literal_cstr(r->name));
				break;
			case ACTION_QUARANTINE:
				appendStringInfo(&any_bad, "%s%s", first ? "" : " OR ", flag);
				appendStringInfo(&names, "%sCASE WHEN %s THEN %s END", first ? "" : ", ",
								 flag, quote_literal_cstr(r->name));
				first = false;
				break;
		}
	}
	if (first)
		appendStringInfoString(&sql, "true");
	else
		appendStringInfo(&sql, "CASE WHEN NOT (%s) THEN true ELSE "
						 "pg_catalog.pipeline_divert(pg_catalog.array_remove(ARRAY[%s]::pg_catalog.text[], NULL), %s) END",
						 any_bad.data, names.data, data);
	return sql.data;
}

/*
 * The rows that go into the target: the transform's output converted to the
 * target's types, with the upsert order if wanted, and, when there are
 * rules, only the rows that break none. Rules are evaluated once per row in
 * __pipeline_w; OFFSET 0 keeps the planner from flattening the layers, which
 * would evaluate conversions and rules again in the outer WHERE clause.
 */
static char *
rows_query(const char *transform, List *output, List *rules,
		   const char *order, List *carry)
{
	StringInfoData v;
	StringInfoData sql;
	ListCell   *lc;

	initStringInfo(&v);
	appendStringInfoString(&v, "SELECT ");
	foreach(lc, output)
	{
		OutputColumn *col = lfirst(lc);

		appendStringInfo(&v, "%s%s AS %s", foreach_current_index(lc) > 0 ? ", " : "",
						 col->expr, quote_identifier(col->name));
		if (carries_raw(col) && rules != NIL)
			appendStringInfo(&v, ", %s AS %s", col->raw, raw_alias(col->name));
	}
	if (order)
		appendStringInfo(&v, ", %s AS __pipeline_order", order);
	foreach(lc, carry)
		appendStringInfo(&v, ", " OUTPUT_ALIAS ".%s", strVal(lfirst(lc)));
	appendStringInfo(&v, " FROM (\n%s\n) AS " OUTPUT_ALIAS, transform);
	if (rules == NIL)
		return v.data;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT __pipeline_w.* FROM (SELECT __pipeline_v.*");
	foreach(lc, rules)
		appendStringInfo(&sql, ", %s AS __pipeline_r%d",
						 ((Rule *) lfirst(lc))->violation, foreach_current_index(lc));
	appendStringInfo(&sql, " FROM (%s OFFSET 0) AS __pipeline_v OFFSET 0) AS __pipeline_w WHERE %s",
					 v.data, route_condition(rules, output, carry));
	return sql.data;
}

/* rows_query for the apply statements of CDC pipelines (cdc_apply.c) */
char *
load_rows_query(const char *transform, List *output, List *rules, List *carry)
{
	return rows_query(transform, output, rules, NULL, carry);
}

static char *
upsert_statement(const Pipeline *p, const char *with_batch, const char *target,
				 const char *rows, List *output)
{
	StringInfoData sql;
	ListCell   *lc;
	bool		any_update = false;

	initStringInfo(&sql);
	appendStringInfo(&sql, "%s\nINSERT INTO %s AS __pipeline_target (",
					 with_batch, target);
	append_column_list(&sql, output);
	appendStringInfoString(&sql, ")\nSELECT DISTINCT ON (");
	append_key_list(&sql, p->key, "");
	appendStringInfoString(&sql, ") ");
	append_column_list(&sql, output);
	appendStringInfo(&sql, " FROM (%s) AS __pipeline_rows\nORDER BY ", rows);
	append_key_list(&sql, p->key, "");
	/* among duplicates of a key, the highest watermark (or the last row) wins */
	appendStringInfoString(&sql, ", __pipeline_order DESC NULLS LAST\nON CONFLICT (");
	append_key_list(&sql, p->key, "");
	appendStringInfoString(&sql, ") DO ");
	foreach(lc, output)
	{
		OutputColumn *col = lfirst(lc);
		const char *name = quote_identifier(col->name);

		if (is_key_column(p->key, col->name))
			continue;
		appendStringInfo(&sql, "%s%s = EXCLUDED.%s", any_update ? ", " : "UPDATE SET ",
						 name, name);
		any_update = true;
	}
	if (!any_update)
		appendStringInfoString(&sql, "NOTHING");
	return sql.data;
}

static char *
insert_statement(const char *with_batch, const char *target, const char *rows,
				 List *output)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql, "%s\nINSERT INTO %s AS __pipeline_target (",
					 with_batch, target);
	append_column_list(&sql, output);
	appendStringInfoString(&sql, ")\nSELECT ");
	append_column_list(&sql, output);
	appendStringInfo(&sql, " FROM (%s) AS __pipeline_rows", rows);
	return sql.data;
}

/*
 * The statements of one run, in order. Call as the pipeline's owner under
 * its search_path: the transform is analysed there. "replay" reads the
 * given relation of already-transformed rows instead of the transform.
 */
List *
load_statements(const Pipeline *p, const BatchRange *range, const char *replay)
{
	char	   *batch_sql = batch_query(p, range);
	/*
	 * OFFSET 0 keeps the transform's WHERE out of the batch's scan, so the
	 * scan counts every row of the batch (rows_read), not the ones the
	 * transform keeps; the range still reaches the index.
	 */
	char	   *with_batch = psprintf("WITH batch AS (%s OFFSET 0)", batch_sql);
	char	   *target = qualified_relation_name(p->target);
	char	   *transform = p->transform ? transform_sql(p) : "SELECT * FROM batch";
	bool		has_watermark;
	List	   *output = transform_output(p, batch_sql, &has_watermark);
	List	   *rules = contract_rules(p, output);
	char	   *order = NULL;
	char	   *rows;

	if (p->mode == LOAD_UPSERT)
		order = has_watermark && replay == NULL ?
			psprintf(OUTPUT_ALIAS ".%s", quote_identifier(p->watermark)) :
			"pg_catalog.row_number() OVER ()";
	rows = rows_query(replay ? replay : transform, output, rules, order,
					  replay ? list_make1(makeString("__pipeline_qid")) : NIL);

	switch (p->mode)
	{
		case LOAD_APPEND:
			return list_make1(insert_statement(with_batch, target, rows, output));
		case LOAD_UPSERT:
			return list_make1(upsert_statement(p, with_batch, target, rows, output));
		case LOAD_REPLACE:
			/* a replay adds the rows it recovers; it never swaps the contents */
			if (replay)
				return list_make1(insert_statement(with_batch, target, rows, output));
			return list_make2(psprintf("DELETE FROM %s", target),
							  insert_statement(with_batch, target, rows, output));
		case LOAD_CDC:
			elog(ERROR, "pipeline \"%s\" is a CDC pipeline", p->name);
	}
	return NIL;					/* keep compiler quiet */
}

static List *
analyse_one(const char *sql, const char *pipeline)
{
	ErrorContextCallback cb;
	List	   *raw;
	List	   *queries;

	sql_error_context_push(&cb, sql, pipeline);
	raw = raw_parser(sql, RAW_PARSE_DEFAULT);
	if (list_length(raw) != 1)
		elog(ERROR, "generated statement of pipeline \"%s\" is not one statement",
			 pipeline);
	queries = pg_analyze_and_rewrite_fixedparams(linitial_node(RawStmt, raw),
												 sql, NULL, 0, NULL);
	error_context_stack = cb.previous;
	return queries;
}

/*
 * Parse analysis of every statement, without running them (for create),
 * and the executor's permission check on every table they touch, as the
 * current user (the owner): a transform that reads a table its owner may
 * not read fails here rather than at its first run.
 */
void
analyze_statements(List *statements, const char *pipeline)
{
	ListCell   *lc;

	foreach(lc, statements)
	{
		const char *sql = lfirst(lc);
		ListCell   *lp;

		/* the plan's range table includes those of sublinks and CTEs */
		foreach(lp, pg_plan_queries(analyse_one(sql, pipeline), sql, 0, NULL))
		{
			PlannedStmt *stmt = lfirst_node(PlannedStmt, lp);

#if PG_VERSION_NUM >= 160000
			ExecCheckPermissions(stmt->rtable, stmt->permInfos, true);
#else
			ExecCheckRTPerms(stmt->rtable, true);
#endif
		}
	}
}

/*
 * Counting the batch's rows costs no extra pass: after ExecutorStart, the
 * scans of the batch's source relation (by alias; partitions inherit it) get
 * row instrumentation of their own, and no other node does. The executor
 * wraps exactly those nodes (ExecProcNodeFirst picks ExecProcNodeInstr for a
 * node with an Instrumentation), so the load itself runs uninstrumented.
 */
typedef struct BatchScanWalk
{
	List	   *rtable;
	bool		attach;			/* true: attach counters; false: sum them */
	int64		rows;
} BatchScanWalk;

static bool
is_batch_scan(PlanState *ps, List *rtable)
{
	Index		scanrelid;
	RangeTblEntry *rte;

	switch (nodeTag(ps))
	{
		case T_SeqScanState:
		case T_SampleScanState:
		case T_IndexScanState:
		case T_IndexOnlyScanState:
		case T_BitmapHeapScanState:
		case T_TidScanState:
		case T_TidRangeScanState:
		case T_ForeignScanState:
		case T_CustomScanState:
			break;
		default:
			return false;
	}
	scanrelid = ((Scan *) ps->plan)->scanrelid;
	if (scanrelid == 0)
		return false;
	rte = rt_fetch(scanrelid, rtable);
	return rte->eref && strcmp(rte->eref->aliasname, BATCH_ALIAS) == 0;
}

static bool
batch_scan_walker(PlanState *ps, void *context)
{
	BatchScanWalk *walk = (BatchScanWalk *) context;

	if (ps == NULL)
		return false;
	if (is_batch_scan(ps, walk->rtable))
	{
		if (walk->attach && ps->instrument == NULL)
			ps->instrument = InstrAlloc(1, INSTRUMENT_ROWS, false);
		else if (!walk->attach && ps->instrument != NULL)
		{
			InstrEndLoop(ps->instrument);
			walk->rows += (int64) ps->instrument->ntuples;
		}
	}
	return planstate_tree_walker(ps, batch_scan_walker, context);
}

static void
execute_planned(PlannedStmt *stmt, const char *sql, LoadCounts *counts)
{
	QueryDesc  *qd;
	BatchScanWalk walk = {stmt->rtable, true, 0};

	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	qd = CreateQueryDesc(stmt, sql, GetActiveSnapshot(), InvalidSnapshot,
						 None_Receiver, NULL, NULL, 0);
	ExecutorStart(qd, 0);
	batch_scan_walker(qd->planstate, &walk);
#if PG_VERSION_NUM >= 180000
	ExecutorRun(qd, ForwardScanDirection, 0);
#else
	ExecutorRun(qd, ForwardScanDirection, 0, true);
#endif
	ExecutorFinish(qd);

	if (stmt->canSetTag && stmt->commandType == CMD_INSERT)
		counts->rows_loaded += qd->estate->es_processed;
	walk.attach = false;
	batch_scan_walker(qd->planstate, &walk);
	counts->rows_read += walk.rows;

	ExecutorEnd(qd);
	FreeQueryDesc(qd);
	PopActiveSnapshot();
	CommandCounterIncrement();
}

/* Run the statements of one batch, in order, counting rows. */
static LoadCounts
execute_statements(List *statements, const char *pipeline)
{
	LoadCounts	counts = {0, 0, 0};
	ListCell   *lc;

	foreach(lc, statements)
	{
		const char *sql = lfirst(lc);
		ErrorContextCallback cb;
		List	   *plans;
		ListCell   *lp;

		plans = pg_plan_queries(analyse_one(sql, pipeline), sql,
								CURSOR_OPT_PARALLEL_OK, NULL);
		sql_error_context_push(&cb, sql, pipeline);
		foreach(lp, plans)
		{
			PlannedStmt *stmt = lfirst_node(PlannedStmt, lp);

			if (stmt->commandType == CMD_UTILITY)
				elog(ERROR, "unexpected utility statement in pipeline \"%s\"",
					 pipeline);
			execute_planned(stmt, sql, &counts);
		}
		error_context_stack = cb.previous;
	}
	return counts;
}

/*
 * A view source is flattened into its base tables, whose scans no longer
 * carry the batch's alias: count its batch with a query of its own.
 */
static int64
count_view_batch(const Pipeline *p, const BatchRange *range)
{
	char	   *sql = psprintf("SELECT pg_catalog.count(*) FROM (%s) AS b",
							   batch_query(p, range));
	bool		isnull;

	if (SPI_execute(sql, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not count the batch of pipeline \"%s\"", p->name);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Text into date and time columns reads by TimeZone and DateStyle: pin the
 * creator's (pipeline.pipelines keeps them from 0.4 on), as the search_path
 * is, until the caller's identity_leave.
 */
void
pin_creator_settings(const Pipeline *p)
{
	IdentityFrame frame;
	Oid			type = TEXTOID;
	Datum		name = CStringGetTextDatum(p->name);
	char	   *timezone = NULL;
	char	   *datestyle = NULL;

	if (get_attnum(catalog_relid(), "datestyle") == InvalidAttrNumber)
		return;					/* a catalog older than 0.4 */
	identity_enter_catalog(&frame);
	if (SPI_execute_with_args("SELECT timezone, datestyle FROM pipeline.pipelines WHERE name = $1",
							  1, &type, &name, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the settings of pipeline \"%s\"", p->name);
	if (SPI_processed == 1)
	{
		timezone = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		datestyle = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	}
	identity_leave(&frame);
	if (timezone)
		identity_pin("TimeZone", timezone);
	if (datestyle)
		identity_pin("DateStyle", datestyle);
}

/* Load one batch; call as the owner, inside the run's subtransaction. */
LoadCounts
load_batch(const Pipeline *p, const BatchRange *range)
{
	LoadCounts	counts;

	pin_creator_settings(p);
	counts = execute_statements(load_statements(p, range, NULL), p->name);

	if (get_rel_relkind(p->source) == RELKIND_VIEW)
		counts.rows_read = count_view_batch(p, range);
	return counts;
}

/*
 * Load quarantined rows again: "replay" selects them, already transformed,
 * with their quarantine ids; they pass the same conversion and rules.
 */
LoadCounts
load_replay(const Pipeline *p, const char *replay)
{
	BatchRange	range = {NULL, NULL, false};

	pin_creator_settings(p);
	return execute_statements(load_statements(p, &range, replay), p->name);
}
