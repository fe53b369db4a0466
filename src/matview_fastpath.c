/*-------------------------------------------------------------------------
 *
 * matview_fastpath.c
 *	  A one-row INSERT into the only base table of an algebraic immediate
 *	  view, merged into the view's row without SQL.
 *
 * This is the commonest write an application makes, and through SPI it
 * costs an executor start-up for INSERT .. ON CONFLICT, more than the
 * write itself. Here the capture query's expressions are compiled once
 * (ExecInitExpr), evaluated on the new row, and the view's row is found
 * through its unique key index and updated, or inserted, with the
 * executor's simple-relation routines, as the logical replication apply
 * worker does. Anything unusual (a NULL key, triggers on the view) falls
 * back to the SQL path, which gives the same result.
 *
 *-------------------------------------------------------------------------
 */
#include "pipeline.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/analyze.h"
#include "parser/parse_coerce.h"
#include "parser/parse_oper.h"
#include "parser/parser.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/queryenvironment.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/tuplestore.h"
#include "utils/typcache.h"

/* How one view column changes with the new row. */
typedef struct FastColumn
{
	int			key;			/* 1-based k<n>, or 0 */
	DeltaKind	delta;
	int			arg;			/* 1-based a<n>, or 0 (count(*)) */
	Oid			type;			/* the view column's type */
	FmgrInfo	plus;			/* sum: the type's + */
	FmgrInfo	to_type;		/* sum: a<n> to the column's type, if needed */
	bool		convert;
	FmgrInfo	compare;		/* min, max: the btree comparison */
	Oid			collation;
} FastColumn;

struct FastPath
{
	MemoryContext context;		/* holds all of it */
	uint64		generation;		/* relcache generation it was built in */
	Oid			index;			/* the view's unique index on its keys */
	int			nkeys;
	ScanKeyData *probe;			/* equality on each index column, values unset */
	int		   *probe_key;		/* the k<n> each index column compares */
	int			nargs;
	ExprState **keys;
	ExprState **args;
	ExprState  *qual;
	int			ncolumns;
	FastColumn *columns;
	TupleTableSlot *row;		/* the base table's new row */
	TupleTableSlot *found;		/* the view's row of its group */
	TupleTableSlot *merged;		/* ... after the new row */
	ExprContext *econtext;
};

/* Any relcache invalidation may change what the expressions mean. */
static uint64 relcache_generation = 1;
static bool callback_registered = false;

static void
relcache_changed(Datum arg, Oid relid)
{
	relcache_generation++;
}

/* The capture query over the transition table, analysed into expressions. */
static Query *
analyze_capture(Oid base, const char *sql)
{
	QueryEnvironment *env = create_queryEnv();
	EphemeralNamedRelation enr = palloc0(sizeof(EphemeralNamedRelationData));
	List	   *raw;

	enr->md.name = "__pipeline_new";
	enr->md.reliddesc = base;
	enr->md.enrtype = ENR_NAMED_TUPLESTORE;
	enr->md.enrtuples = 1;
	register_ENR(env, enr);
	raw = raw_parser(sql, RAW_PARSE_DEFAULT);
	return parse_analyze_fixedparams(linitial_node(RawStmt, raw), sql, NULL, 0, env);
}

static ExprState *
compile(Expr *expr)
{
	return ExecInitExpr(expression_planner(expr), NULL);
}

static void
describe_column(FastColumn *fc, const MatView *mv, const MatViewColumn *col, int attnum,
				Query *q)
{
	int32		typmod;

	get_atttypetypmodcoll(mv->relid, attnum, &fc->type, &typmod, &fc->collation);
	fc->delta = col->delta;
	fc->arg = col->arg;
	if (col->delta == DELTA_SUM)
	{
		Oid			argtype = exprType((Node *) ((TargetEntry *) list_nth(q->targetList,
																		   mv->nkeys + col->arg - 1))->expr);
		Oid			cast;
		Operator	op = oper(NULL, list_make2(makeString("pg_catalog"), makeString("+")),
						  fc->type, fc->type, false, -1);

		fmgr_info(oprfuncid(op), &fc->plus);
		ReleaseSysCache(op);
		fc->convert = argtype != fc->type;
		if (fc->convert)
		{
			if (find_coercion_pathway(fc->type, argtype, COERCION_IMPLICIT, &cast) != COERCION_PATH_FUNC)
				elog(ERROR, "no cast from %s to %s", format_type_be(argtype), format_type_be(fc->type));
			fmgr_info(cast, &fc->to_type);
		}
	}
	if (col->delta == DELTA_MIN || col->delta == DELTA_MAX)
	{
		TypeCacheEntry *tc = lookup_type_cache(fc->type, TYPECACHE_CMP_PROC_FINFO);

		if (!OidIsValid(tc->cmp_proc_finfo.fn_oid))
			elog(ERROR, "type %s has no comparison function", format_type_be(fc->type));
		fmgr_info_copy(&fc->compare, &tc->cmp_proc_finfo, CurrentMemoryContext);
	}
}

/*
 * Scan keys for the view's unique index: index column i holds view column
 * indkey[i], which is key k<n>. Values are filled per row.
 */
static void
prepare_probe(FastPath *fp, const MatView *mv, Oid index)
{
	Relation	irel = index_open(index, AccessShareLock);
	int			ncols = IndexRelationGetNumberOfKeyAttributes(irel);

	fp->probe = palloc0(sizeof(ScanKeyData) * ncols);
	fp->probe_key = palloc0(sizeof(int) * ncols);
	for (int i = 0; i < ncols; i++)
	{
		AttrNumber	column = irel->rd_index->indkey.values[i];
		Oid			type = irel->rd_opcintype[i];
		Oid			eq = get_opfamily_member(irel->rd_opfamily[i], type, type,
											 BTEqualStrategyNumber);
		int			k = 0;

		for (int c = 0; c < column; c++)
			if (((MatViewColumn *) list_nth(mv->columns, c))->key)
				k++;
		fp->probe_key[i] = k;
		ScanKeyEntryInitialize(&fp->probe[i], 0, i + 1, BTEqualStrategyNumber, type,
							   irel->rd_indcollation[i], get_opcode(eq), (Datum) 0);
	}
	index_close(irel, AccessShareLock);
}

/* Compile, in the current (long-lived) memory context. */
static FastPath *
build(const MatView *mv, Oid base, const char *capture)
{
	FastPath   *fp = palloc0(sizeof(FastPath));
	Query	   *q = analyze_capture(base, capture);
	Relation	view = table_open(mv->relid, AccessShareLock);
	Relation	table = table_open(base, AccessShareLock);
	List	   *indexes = RelationGetIndexList(view);
	ListCell   *lc;
	int			i = 0;
	int			k = 0;

	fp->generation = relcache_generation;
	fp->index = list_length(indexes) == 1 ? linitial_oid(indexes) : InvalidOid;
	if (OidIsValid(fp->index))
		prepare_probe(fp, mv, fp->index);
	fp->nkeys = mv->nkeys;
	fp->nargs = mv->nargs;
	fp->keys = palloc(sizeof(ExprState *) * Max(fp->nkeys, 1));
	fp->args = palloc(sizeof(ExprState *) * Max(fp->nargs, 1));
	/* the capture's select list: k1..kn, then a1..am */
	foreach(lc, q->targetList)
	{
		Expr	   *expr = ((TargetEntry *) lfirst(lc))->expr;

		if (i < fp->nkeys)
			fp->keys[i] = compile(expr);
		else
			fp->args[i - fp->nkeys] = compile(expr);
		i++;
	}
	if (q->jointree->quals)
		fp->qual = ExecInitQual(make_ands_implicit((Expr *) expression_planner((Expr *) q->jointree->quals)),
								NULL);
	fp->ncolumns = list_length(mv->columns);
	fp->columns = palloc0(sizeof(FastColumn) * fp->ncolumns);
	i = 0;
	foreach(lc, mv->columns)
	{
		MatViewColumn *col = lfirst(lc);

		if (col->key)
			fp->columns[i].key = ++k;	/* keys in column order, as k<n> are */
		else
			describe_column(&fp->columns[i], mv, col, i + 1, q);
		i++;
	}
	fp->row = MakeSingleTupleTableSlot(CreateTupleDescCopy(RelationGetDescr(table)),
									   &TTSOpsMinimalTuple);
	fp->found = MakeSingleTupleTableSlot(CreateTupleDescCopy(RelationGetDescr(view)),
										 table_slot_callbacks(view));
	fp->merged = MakeSingleTupleTableSlot(CreateTupleDescCopy(RelationGetDescr(view)),
										  &TTSOpsVirtual);
	table_close(table, AccessShareLock);
	table_close(view, AccessShareLock);
	fp->econtext = CreateStandaloneExprContext();
	return fp;
}

/* The new row's keys and arguments; false when it does not enter the view. */
static bool
evaluate(FastPath *fp, Datum *keys, bool *keynull, Datum *args, bool *argnull)
{
	ExprContext *ec = fp->econtext;

	ec->ecxt_scantuple = fp->row;
	if (fp->qual && !ExecQual(fp->qual, ec))
		return false;
	for (int i = 0; i < fp->nkeys; i++)
		keys[i] = ExecEvalExprSwitchContext(fp->keys[i], ec, &keynull[i]);
	for (int i = 0; i < fp->nargs; i++)
		args[i] = ExecEvalExprSwitchContext(fp->args[i], ec, &argnull[i]);
	return true;
}

/* An aggregate column's value after the new row; "old" NULL for a new group. */
static Datum
merged(FastColumn *fc, Datum old, bool oldnull, Datum *args, bool *argnull, bool *isnull)
{
	Datum		x = fc->arg ? args[fc->arg - 1] : (Datum) 0;
	bool		xnull = fc->arg ? argnull[fc->arg - 1] : false;

	*isnull = false;
	switch (fc->delta)
	{
		case DELTA_COUNT:
			return Int64GetDatum((oldnull ? 0 : DatumGetInt64(old)) + (xnull ? 0 : 1));
		case DELTA_SUM:
			if (xnull)
				break;
			if (fc->convert)
				x = FunctionCall1(&fc->to_type, x);
			return oldnull ? x : FunctionCall2(&fc->plus, old, x);
		case DELTA_MIN:
		case DELTA_MAX:
			{
				int			cmp;

				if (xnull)
					break;
				if (oldnull)
					return x;
				cmp = DatumGetInt32(FunctionCall2Coll(&fc->compare, fc->collation, x, old));
				return (fc->delta == DELTA_MIN ? cmp < 0 : cmp > 0) ? x : old;
			}
		case DELTA_NONE:
			elog(ERROR, "no delta for a view column");
	}
	*isnull = oldnull;
	return old;
}

static EState *
executor_state(Relation view, ResultRelInfo *result)
{
	EState	   *estate = CreateExecutorState();
	RangeTblEntry *rte = makeNode(RangeTblEntry);

	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(view);
	rte->relkind = view->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
#if PG_VERSION_NUM >= 160000
	{
		List	   *perminfos = NIL;

		addRTEPermissionInfo(&perminfos, rte);
#if PG_VERSION_NUM >= 180000
		ExecInitRangeTable(estate, list_make1(rte), perminfos, bms_make_singleton(1));
#else
		ExecInitRangeTable(estate, list_make1(rte), perminfos);
#endif
	}
#else
	ExecInitRangeTable(estate, list_make1(rte));
#endif
	InitResultRelInfo(result, view, 1, NULL, 0);
	estate->es_output_cid = GetCurrentCommandId(true);
	ExecOpenIndices(result, false);
	return estate;
}

/*
 * The view's row of a group, through its unique index. No row lock: the
 * caller's ExclusiveLock on the view already keeps other writers out.
 */
static bool
find_group(FastPath *fp, Relation view, Relation irel, Datum *keys, TupleTableSlot *found)
{
	int			ncols = IndexRelationGetNumberOfKeyAttributes(irel);
	ScanKeyData probe[INDEX_MAX_KEYS];
	IndexScanDesc scan;
	bool		exists;

	for (int i = 0; i < ncols; i++)
	{
		probe[i] = fp->probe[i];
		probe[i].sk_argument = keys[fp->probe_key[i] - 1];
	}
#if PG_VERSION_NUM >= 180000
	scan = index_beginscan(view, irel, GetLatestSnapshot(), NULL, ncols, 0);
#else
	scan = index_beginscan(view, irel, GetLatestSnapshot(), ncols, 0);
#endif
	index_rescan(scan, probe, ncols, NULL, 0);
	exists = index_getnext_slot(scan, ForwardScanDirection, found);
	index_endscan(scan);
	return exists;
}

/* The key index among those ExecOpenIndices opened for the write. */
static Relation
key_index(FastPath *fp, ResultRelInfo *result)
{
	for (int i = 0; i < result->ri_NumIndices; i++)
		if (RelationGetRelid(result->ri_IndexRelationDescs[i]) == fp->index)
			return result->ri_IndexRelationDescs[i];
	elog(ERROR, "index %u of the materialized view is not open", fp->index);
	return NULL;
}

/* Write the view's row for the new row's group. */
static void
write_row(FastPath *fp, Relation view, Datum *keys, Datum *args, bool *argnull)
{
	ResultRelInfo *result = makeNode(ResultRelInfo);
	EState	   *estate = executor_state(view, result);
	TupleTableSlot *found = fp->found;
	TupleTableSlot *row = fp->merged;
	bool		exists;

	exists = find_group(fp, view, key_index(fp, result), keys, found);
	if (exists)
		slot_getallattrs(found);

	ExecClearTuple(row);
	for (int i = 0; i < fp->ncolumns; i++)
	{
		FastColumn *fc = &fp->columns[i];

		if (fc->key)
		{
			row->tts_values[i] = keys[fc->key - 1];
			row->tts_isnull[i] = false;
		}
		else
			row->tts_values[i] = merged(fc, exists ? found->tts_values[i] : (Datum) 0,
										exists ? found->tts_isnull[i] : true,
										args, argnull, &row->tts_isnull[i]);
	}
	ExecStoreVirtualTuple(row);
	if (exists)
	{
		EPQState	epq;

#if PG_VERSION_NUM >= 160000
		EvalPlanQualInit(&epq, estate, NULL, NIL, -1, NIL);
#else
		EvalPlanQualInit(&epq, estate, NULL, NIL, -1);
#endif
		ExecSimpleRelationUpdate(result, estate, &epq, found, row);
		EvalPlanQualEnd(&epq);
	}
	else
		ExecSimpleRelationInsert(result, estate, row);

	ExecClearTuple(found);		/* drops its buffer pin */
	ExecClearTuple(row);
	ExecCloseIndices(result);
	FreeExecutorState(estate);
}

/*
 * Merge the one new row of "rows" into the view. Returns false, having
 * changed nothing, when the SQL path must do it instead. The caller holds
 * the view's ExclusiveLock and runs as its owner; "cache" lives as long as
 * the trigger's cache entry, in "context".
 */
bool
matview_fast_insert(FastPath **cache, MemoryContext context, const MatView *mv, Oid base,
					const char *capture, Tuplestorestate *rows)
{
	FastPath   *fp;
	Datum		keys[INDEX_MAX_KEYS];
	bool		keynull[INDEX_MAX_KEYS];
	Datum	   *args;
	bool	   *argnull;
	Relation	view;
	int			reader;
	bool		have_row;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(relcache_changed, (Datum) 0);
		callback_registered = true;
	}
	if (mv->nkeys == 0 || mv->nkeys > INDEX_MAX_KEYS)
		return false;
	if (*cache == NULL || (*cache)->generation != relcache_generation)
	{
		MemoryContext fresh = AllocSetContextCreate(context, "pipeline matview fast path",
													ALLOCSET_SMALL_SIZES);
		MemoryContext old = MemoryContextSwitchTo(fresh);

		if (*cache != NULL)
			MemoryContextDelete((*cache)->context);
		*cache = NULL;
		*cache = build(mv, base, capture);
		(*cache)->context = fresh;
		MemoryContextSwitchTo(old);
	}
	fp = *cache;
	if (!OidIsValid(fp->index))
		return false;

	/* a read pointer of our own: the others may still be read by SQL */
	reader = tuplestore_alloc_read_pointer(rows, 0);
	tuplestore_select_read_pointer(rows, reader);
	have_row = tuplestore_gettupleslot(rows, true, false, fp->row);
	tuplestore_select_read_pointer(rows, 0);
	if (!have_row)
		return true;

	args = palloc(sizeof(Datum) * Max(fp->nargs, 1));
	argnull = palloc(sizeof(bool) * Max(fp->nargs, 1));
	if (!evaluate(fp, keys, keynull, args, argnull))
	{
		ResetExprContext(fp->econtext);
		return true;			/* the WHERE clause keeps it out */
	}
	for (int i = 0; i < fp->nkeys; i++)
		if (keynull[i])
		{
			ResetExprContext(fp->econtext);
			return false;		/* found through IS NULL by the SQL path */
		}

	view = table_open(mv->relid, RowExclusiveLock);
	if (view->trigdesc != NULL)
	{
		table_close(view, RowExclusiveLock);
		ResetExprContext(fp->econtext);
		return false;			/* the view's own triggers need the executor */
	}
	write_row(fp, view, keys, args, argnull);
	table_close(view, NoLock);
	ResetExprContext(fp->econtext);
	return true;
}
