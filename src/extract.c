/*-------------------------------------------------------------------------
 *
 * extract.c
 *	  Sources and watermarks: which rows make up the next batch.
 *
 * A batch is the source rows whose watermark lies in (from, to]. "to" must
 * be safe: no row with a smaller watermark may commit after the run. For
 * local sources we read max(watermark) first and then wait for every
 * transaction that holds a write lock on the source (WaitForLockers, as
 * CREATE INDEX CONCURRENTLY does): a writer that took a sequence value
 * below the max has the lock already, so once the wait is over, its row is
 * committed (or gone) and a fresh snapshot sees it. Foreign sources cannot
 * be waited for; there, and for time watermarks stamped at transaction
 * start, the "lag" option keeps "to" a safe distance behind the max.
 *
 *-------------------------------------------------------------------------
 */
#include "pipeline.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "pgstat.h"
#include "rewrite/rewriteHandler.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/regproc.h"
#include "utils/timestamp.h"

char *
qualified_relation_name(Oid relid)
{
	char	   *relname = get_rel_name(relid);

	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid),
				 errhint("A pipeline's source or target was dropped; drop the pipeline or recreate the relation.")));
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  relname);
}

/* Look up a possibly qualified, possibly quoted relation name. */
Oid
resolve_relation(const char *name, const char *what)
{
	List	   *names;
	Oid			relid;

	names = qualified_name_list(name);
	relid = RangeVarGetRelid(makeRangeVarFromNameList(names), AccessShareLock,
							 true);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("%s relation \"%s\" does not exist", what, name),
				 errhint("Create it first, or qualify its name with its schema.")));
	return relid;
}

void
check_source_kind(Oid relid, const char *name)
{
	switch (get_rel_relkind(relid))
	{
		case RELKIND_RELATION:
		case RELKIND_PARTITIONED_TABLE:
		case RELKIND_VIEW:
		case RELKIND_MATVIEW:
		case RELKIND_FOREIGN_TABLE:
			return;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("source \"%s\" is not a table, view or foreign table",
							name)));
	}
}

void
check_target_kind(Oid relid, const char *name)
{
	char		kind = get_rel_relkind(relid);

	if (kind != RELKIND_RELATION && kind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("target \"%s\" is not a table", name),
				 errhint("A pipeline loads into an ordinary or partitioned table.")));
}

typedef enum WatermarkKind
{
	WATERMARK_NUMBER,
	WATERMARK_TIME,
	WATERMARK_UNSUPPORTED
} WatermarkKind;

static WatermarkKind
watermark_kind(Oid type)
{
	switch (type)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case NUMERICOID:
			return WATERMARK_NUMBER;
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return WATERMARK_TIME;
		default:
			return WATERMARK_UNSUPPORTED;
	}
}

static Oid
column_type(Oid relid, const char *column, const char *relname)
{
	AttrNumber	attnum = get_attnum(relid, column);

	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist",
						column, relname)));
	return get_atttype(relid, attnum);
}

Oid
watermark_type(const Pipeline *p)
{
	return column_type(p->source, p->watermark, get_rel_name(p->source));
}

void
check_watermark_column(Oid source, const char *column, const char *source_name)
{
	Oid			type = column_type(source, column, source_name);

	if (watermark_kind(type) == WATERMARK_UNSUPPORTED)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("watermark column \"%s\" has unsupported type %s",
						column, format_type_be(type)),
				 errhint("Use a smallint, integer, bigint, numeric, date, timestamp or timestamptz column.")));
}

/* The lag is an interval for time watermarks and a number otherwise. */
static const char *
lag_type(Oid wmtype)
{
	return watermark_kind(wmtype) == WATERMARK_TIME ?
		"pg_catalog.interval" : "pg_catalog.numeric";
}

void
check_lag(const Pipeline *p)
{
	const char *type;
	char	   *sql;
	volatile bool valid = false;
	MemoryContext oldcontext = CurrentMemoryContext;

	if (p->lag == NULL)
		return;
	if (p->watermark == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"lag\" of pipeline \"%s\" needs a watermark", p->name)));

	/* a negative lag would move the watermark past rows not yet read */
	type = lag_type(watermark_type(p));
	sql = psprintf("SELECT l OPERATOR(pg_catalog.>=) CAST('0' AS %s)%s FROM CAST(%s AS %s) AS l",
				   type, strcmp(type, "pg_catalog.numeric") == 0 ?
				   " AND l OPERATOR(pg_catalog.<) CAST('Infinity' AS pg_catalog.numeric)" : "",
				   quote_literal_cstr(p->lag), type);
	PG_TRY();
	{
		SPI_execute(sql, true, 1);
		valid = strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") == 0;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcontext);
		FlushErrorState();
		valid = false;
	}
	PG_END_TRY();
	if (!valid)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid lag \"%s\" for pipeline \"%s\"", p->lag, p->name),
				 errhint("For a watermark of type %s, lag is %s, for example \"%s\".",
						 format_type_be(watermark_type(p)),
						 watermark_kind(watermark_type(p)) == WATERMARK_TIME ?
						 "an interval of zero or more" : "a finite number, zero or more",
						 watermark_kind(watermark_type(p)) == WATERMARK_TIME ?
						 "5 minutes" : "100")));
}

/* Collect the tables under a source whose writers a run must wait for. */
typedef struct BaseRelations
{
	List	   *relids;
	int			depth;
} BaseRelations;

static void collect_base_relations(Oid relid, BaseRelations *acc);

static bool
collect_walker(Node *node, BaseRelations *acc)
{
	if (node == NULL)
		return false;
	if (IsA(node, RangeTblEntry))
	{
		RangeTblEntry *rte = (RangeTblEntry *) node;

		if (rte->rtekind == RTE_RELATION)
			collect_base_relations(rte->relid, acc);
		return false;
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, collect_walker, acc,
								 QTW_EXAMINE_RTES_BEFORE);
	return expression_tree_walker(node, collect_walker, acc);
}

static void
collect_base_relations(Oid relid, BaseRelations *acc)
{
	char		kind = get_rel_relkind(relid);

	if (list_member_oid(acc->relids, relid) || acc->depth > 32)
		return;
	switch (kind)
	{
		case RELKIND_RELATION:
		case RELKIND_PARTITIONED_TABLE:
		case RELKIND_MATVIEW:
			/* a writer may lock only the partition it writes to */
			acc->relids = list_concat_unique_oid(acc->relids,
												 find_all_inheritors(relid, AccessShareLock, NULL));
			break;
		case RELKIND_VIEW:
			{
				Relation	view = table_open(relid, AccessShareLock);
				Query	   *query = copyObject(get_view_query(view));

				table_close(view, AccessShareLock);
				acc->relids = lappend_oid(acc->relids, relid);
				acc->depth++;
				collect_walker((Node *) query, acc);
				acc->depth--;
				break;
			}
		default:
			/* foreign tables: nothing to wait for here; see "lag" */
			break;
	}
}

/*
 * How long a run waits for the source's writers; < 0: as long as they take.
 * The background worker bounds it, so that one open transaction on one
 * source cannot hold up every other pipeline of its database: past the
 * bound the run is idle, and the next poll tries again.
 */
int			extract_writer_wait_ms = -1;

/* Wait for the writers holding a lock in locktags now, at most the bound. */
static bool
wait_for_lockers_bounded(List *locktags)
{
	TimestampTz give_up = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													  extract_writer_wait_ms);
	ListCell   *lc;

	foreach(lc, locktags)
	{
		VirtualTransactionId *holder = GetLockConflicts(lfirst(lc), ShareLock, NULL);

		for (; VirtualTransactionIdIsValid(*holder); holder++)
			while (!VirtualXactLock(*holder, false))
			{
				if (GetCurrentTimestamp() >= give_up)
					return false;
				(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 10, PG_WAIT_EXTENSION);
				ResetLatch(MyLatch);
				CHECK_FOR_INTERRUPTS();
			}
	}
	return true;
}

/* false: writers still open after extract_writer_wait_ms */
static bool
wait_for_writers(Oid source)
{
	BaseRelations acc = {NIL, 0};
	List	   *locktags = NIL;
	ListCell   *lc;

	collect_base_relations(source, &acc);
	foreach(lc, acc.relids)
	{
		LOCKTAG    *tag = palloc(sizeof(LOCKTAG));

		SET_LOCKTAG_RELATION(*tag, MyDatabaseId, lfirst_oid(lc));
		locktags = lappend(locktags, tag);
	}
	if (locktags == NIL)
		return true;
	if (extract_writer_wait_ms >= 0)
		return wait_for_lockers_bounded(locktags);
	WaitForLockersMultiple(locktags, ShareLock, false);
	return true;
}

/*
 * Has this transaction written to the source (holds a lock that a run's
 * wait for writers waits for)? Then it must not wait for another session's
 * run of the pipeline: that run waits for this transaction to end.
 */
bool
source_written_here(const Pipeline *p)
{
	BaseRelations acc = {NIL, 0};
	ListCell   *lc;

	if (p->mode == LOAD_CDC || p->watermark == NULL || get_rel_name(p->source) == NULL)
		return false;
	collect_base_relations(p->source, &acc);
	foreach(lc, acc.relids)
	{
		LOCKTAG		tag;

		SET_LOCKTAG_RELATION(tag, MyDatabaseId, lfirst_oid(lc));
		/* the modes that conflict with the ShareLock wait_for_writers waits with */
		for (LOCKMODE mode = RowExclusiveLock; mode <= AccessExclusiveLock; mode++)
		{
			if (mode == ShareLock)
				continue;
#if PG_VERSION_NUM >= 170000
			if (LockHeldByMe(&tag, mode, false))
#else
			if (LockHeldByMe(&tag, mode))
#endif
				return true;
		}
	}
	return false;
}

/*
 * Prepared watermark queries, by their text, for the life of the backend:
 * an idle run (cron ticks, worker polls) is two of them and a catalog read,
 * so it must not parse and plan each time. The plan cache revalidates them
 * after DDL; the text names the source, column and type, so pipelines do
 * not share entries by accident.
 */
typedef struct CachedQuery
{
	char	   *sql;
	SPIPlanPtr	plan;
} CachedQuery;

static List *cached_queries = NIL;

static SPIPlanPtr
prepared(const char *sql)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	ListCell   *lc;
	CachedQuery *q;
	SPIPlanPtr	plan;
	MemoryContext old;

	foreach(lc, cached_queries)
	{
		q = lfirst(lc);
		if (strcmp(q->sql, sql) == 0)
			return q->plan;
	}
	plan = SPI_prepare(sql, 2, types);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	old = MemoryContextSwitchTo(TopMemoryContext);
	q = palloc(sizeof(CachedQuery));
	q->sql = pstrdup(sql);
	q->plan = plan;
	cached_queries = lappend(cached_queries, q);
	MemoryContextSwitchTo(old);
	return plan;
}

/*
 * Run a one-row watermark query with text parameters $1 and $2; the row
 * stays in SPI_tuptable. False when there is no row.
 */
static bool
watermark_query(const char *sql, const char *arg1, const char *arg2)
{
	Datum		values[2];
	char		nulls[2];

	values[0] = text_arg(arg1, &nulls[0]);
	values[1] = text_arg(arg2, &nulls[1]);
	if (SPI_execute_plan(prepared(sql), values, nulls, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "watermark query failed: %s", sql);
	return SPI_processed > 0;
}

/*
 * The cast that holds a watermark back by the lag, compared in the column's
 * own type. A fractional lag on an integer watermark rounds down, so the
 * batch never reaches closer to the reference than the lag.
 */
static char *
lag_bound(const Pipeline *p, const char *column, const char *source,
		  const char *type)
{
	Oid			wmtype = watermark_type(p);

	/* time: rows at least "lag" older than the clock */
	if (watermark_kind(wmtype) == WATERMARK_TIME)
		return psprintf("CAST(pg_catalog.now() OPERATOR(pg_catalog.-) CAST($1 AS %s) AS %s)",
						lag_type(wmtype), type);
	/* numbers: rows at least "lag" below the source's newest */
	return psprintf("CAST(%s(CAST((SELECT pg_catalog.max(%s) FROM %s) AS pg_catalog.numeric) "
					"OPERATOR(pg_catalog.-) CAST($1 AS pg_catalog.numeric)) AS %s)",
					wmtype == NUMERICOID ? "" : "pg_catalog.floor",
					column, source, type);
}

/*
 * Rows whose watermark is NULL, or above every finite value (infinity, a
 * numeric NaN), have no place in the order of batches: a NULL one would
 * never be read, an infinite one would become the watermark and hide every
 * later row. Refuse to run while the source has one.
 */
static void
refuse_unordered_rows(const Pipeline *p, bool nulls, bool infinite)
{
	if (nulls)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("source of pipeline \"%s\" has rows whose watermark \"%s\" is null",
						p->name, p->watermark),
				 errhint("Give them a watermark above the pipeline's (%s), or filter them out in a view over the source.",
						 p->last_watermark ? p->last_watermark : "none yet")));
	if (infinite)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("source of pipeline \"%s\" has rows whose watermark \"%s\" is infinite or NaN",
						p->name, p->watermark),
				 errhint("Give them a finite watermark above the pipeline's (%s), or filter them out in a view over the source.",
						 p->last_watermark ? p->last_watermark : "none yet")));
}

/*
 * The highest watermark a run may take now: the newest row's, or with a lag
 * the newest row's at least "lag" behind (see lag_bound), as text in ISO
 * style, which reads back the same whatever the session's DateStyle; and
 * whether it is above the last one ($2), in the same query. Returns NULL
 * when nothing is new: an empty source, or no row old enough yet.
 */
static char *
high_watermark(const Pipeline *p, const char *column, const char *source,
			   const char *type)
{
	StringInfoData sql;
	Oid			wmtype = watermark_type(p);
	bool		has_infinity = wmtype != INT2OID && wmtype != INT4OID &&
		wmtype != INT8OID;
	bool		isnull;
	HeapTuple	row;
	TupleDesc	desc;
	char	   *high;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT h::pg_catalog.text, h OPERATOR(pg_catalog.>) CAST($2 AS %s), "
					 "EXISTS (SELECT FROM %s WHERE %s IS NULL), ", type, source, column);
	/* numeric NaN sorts above Infinity */
	if (has_infinity)
		appendStringInfo(&sql, "EXISTS (SELECT FROM %s WHERE %s OPERATOR(pg_catalog.>=) "
						 "CAST('infinity' AS %s))", source, column, type);
	else
		appendStringInfoString(&sql, "false");
	appendStringInfo(&sql, " FROM (SELECT pg_catalog.max(%s) AS h FROM %s", column, source);
	if (p->lag != NULL)
		appendStringInfo(&sql, " WHERE %s OPERATOR(pg_catalog.<=) %s", column,
						 lag_bound(p, column, source, type));
	appendStringInfoString(&sql, ") AS m");

	if (!watermark_query(sql.data, p->lag, p->last_watermark))
		return NULL;
	row = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	refuse_unordered_rows(p, DatumGetBool(SPI_getbinval(row, desc, 3, &isnull)),
						  DatumGetBool(SPI_getbinval(row, desc, 4, &isnull)));
	high = SPI_getvalue(row, desc, 1);
	if (high == NULL)
		return NULL;			/* an empty source, or nothing old enough */
	/* above the last watermark, or nothing processed yet */
	(void) SPI_getbinval(row, desc, 2, &isnull);
	if (!isnull && !DatumGetBool(SPI_getbinval(row, desc, 2, &isnull)))
		return NULL;
	return high;
}

/*
 * The batch_size-th watermark above "from": capping "to" there keeps the
 * batch a range predicate. Rows that tie on the cap all go in this batch,
 * so a batch may exceed batch_size by the number of ties. The ORDER BY
 * names the column qualified: unqualified, it would bind to the text
 * output column and order the watermarks as strings.
 */
static char *
capped_watermark(const Pipeline *p, const BatchRange *range,
				 const char *column, const char *source, const char *type)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT s.%s::pg_catalog.text FROM %s AS s WHERE s.%s "
					 "OPERATOR(pg_catalog.<=) CAST($2 AS %s)",
					 column, source, column, type);
	if (range->from)
		appendStringInfo(&sql, " AND s.%s OPERATOR(pg_catalog.>) CAST($1 AS %s)",
						 column, type);
	appendStringInfo(&sql, " ORDER BY s.%s OFFSET " INT64_FORMAT " LIMIT 1",
					 column, p->batch_size - 1);
	if (!watermark_query(sql.data, range->from, range->to))
		return NULL;
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

BatchRange
extract_range(const Pipeline *p, bool wait)
{
	BatchRange	range = {p->last_watermark, NULL, false};
	IdentityFrame frame;
	const char *column;
	const char *source;
	const char *type;
	char	   *capped;

	if (p->watermark == NULL)
		return range;			/* full snapshot: no bounds, never idle */

	column = quote_identifier(p->watermark);
	source = qualified_relation_name(p->source);
	type = format_type_be_qualified(watermark_type(p));

	identity_enter(&frame, p->owner, p->search_path);
	/* now() minus the lag as a timestamp without time zone is in TimeZone */
	if (p->lag && watermark_type(p) == TIMESTAMPOID)
		pin_creator_settings(p);
	(void) set_config_option("DateStyle", "ISO, YMD", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);

	range.to = high_watermark(p, column, source, type);
	if (range.to == NULL)
	{
		range.idle = true;
		range.to = range.from;
		identity_leave(&frame);
		return range;
	}

	if (wait && !wait_for_writers(p->source))
	{
		/* a writer is still open: nothing this time (worker runs only) */
		range.idle = true;
		range.writers_open = true;
		range.to = range.from;
		identity_leave(&frame);
		return range;
	}

	if (p->batch_size > 0 &&
		(capped = capped_watermark(p, &range, column, source, type)) != NULL)
		range.to = capped;

	identity_leave(&frame);
	return range;
}

/* The rows of one batch, as the relation "batch" the transform reads. */
char *
batch_query(const Pipeline *p, const BatchRange *range)
{
	StringInfoData sql;
	const char *column;
	const char *type;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT * FROM %s AS " BATCH_ALIAS,
					 qualified_relation_name(p->source));
	if (p->watermark == NULL)
		return sql.data;

	column = quote_identifier(p->watermark);
	type = format_type_be_qualified(watermark_type(p));
	/* "to" is NULL only when validating or explaining an empty source */
	appendStringInfo(&sql, " WHERE " BATCH_ALIAS ".%s OPERATOR(pg_catalog.<=) CAST(%s AS %s)",
					 column, range->to ? quote_literal_cstr(range->to) : "NULL",
					 type);
	if (range->from)
		appendStringInfo(&sql, " AND " BATCH_ALIAS ".%s OPERATOR(pg_catalog.>) CAST(%s AS %s)",
						 column, quote_literal_cstr(range->from), type);
	return sql.data;
}

/*
 * How far the committed watermark is behind the source's newest row: a
 * number, an interval or days, as text; NULL for a snapshot pipeline, an
 * empty source, or a source that no longer exists. For pipeline.status.
 */
char *
watermark_lag(const Pipeline *p)
{
	IdentityFrame frame;
	char	   *column;
	char	   *type;
	char	   *sql;
	char	   *lag = NULL;

	if (p->watermark == NULL || get_rel_name(p->source) == NULL ||
		get_attnum(p->source, p->watermark) == InvalidAttrNumber)
		return NULL;
	column = (char *) quote_identifier(p->watermark);
	type = format_type_be_qualified(watermark_type(p));
	sql = psprintf("SELECT (pg_catalog.max(%s) OPERATOR(pg_catalog.-) "
				   "coalesce(CAST($1 AS %s), pg_catalog.min(%s)))::pg_catalog.text "
				   "FROM %s WHERE $2 IS NULL",
				   column, type, column, qualified_relation_name(p->source));
	identity_enter(&frame, p->owner, p->search_path);
	(void) set_config_option("IntervalStyle", "postgres", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	if (watermark_query(sql, p->last_watermark, NULL))
		lag = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	identity_leave(&frame);
	return lag;
}
