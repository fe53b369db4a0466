/*-------------------------------------------------------------------------
 *
 * matview_query.c
 *	  Analysis of an incremental materialized view's query: what it groups
 *	  by, which base tables feed it, and the SQL that maintains it.
 *
 * The query is accepted only in shapes whose groups can be recomputed one
 * by one: GROUP BY over inner joins of plain tables (any aggregate), or a
 * select-project-join that carries the primary key of every table. The
 * statements that maintain the view are built by editing the raw parse
 * tree (so a predicate is written once, as SQL would), analysed as the
 * owner, and deparsed by ruleutils into text that resolves the same way
 * under search_path "pg_catalog, pg_temp", which maintenance pins.
 *
 * Three statements come out:
 *   capture   per base table: SELECT k1..kn, a1..am over the changed rows
 *             of that table (a transition table named CAPTURE_ROWS) joined
 *             with the other tables: the group keys a change touches and
 *             the arguments of count/sum/min/max for the algebraic path;
 *   recompute the query restricted to a set of groups, with
 *             KEY_PARAMS parameters per key (see pipeline.h): the keys,
 *             and for time buckets a range on the bucketed column, so
 *             that an index on it is used and, when the buckets are
 *             contiguous, the bucket expression is not even evaluated;
 *   full      the query itself.
 *
 *-------------------------------------------------------------------------
 */
#include "pipeline.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_aggregate.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/analyze.h"
#include "parser/parser.h"
#include "parser/parsetree.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

static const char *view_name;

static void
unsupported(const char *what, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("materialized view \"%s\" cannot be maintained incrementally: %s",
					view_name, what),
			 hint ? errhint("%s", hint) : 0));
}

/* Clauses of the raw statement that have no incremental meaning. */
static void
check_raw_statement(SelectStmt *sel)
{
	if (sel->op != SETOP_NONE)
		unsupported("UNION, INTERSECT and EXCEPT are not supported",
					"Create one view per branch.");
	if (sel->withClause)
		unsupported("WITH queries are not supported", NULL);
	if (sel->valuesLists)
		unsupported("VALUES is not supported", NULL);
	if (sel->intoClause || sel->lockingClause)
		unsupported("SELECT INTO and FOR UPDATE are not supported", NULL);
	if (sel->limitCount || sel->limitOffset)
		unsupported("LIMIT and OFFSET are not supported", NULL);
	if (sel->sortClause)
		unsupported("ORDER BY is not supported",
					"A table has no order: ORDER BY when reading the view.");
	if (sel->windowClause)
		unsupported("window functions are not supported", NULL);
	if (sel->distinctClause)
		unsupported("DISTINCT is not supported", "Use GROUP BY.");
}

/* now(), current_date and friends: a view of them goes stale as time passes. */
static bool
reads_the_clock(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, SQLValueFunction))
		return true;
	if (IsA(node, FuncExpr))
	{
		Oid			f = ((FuncExpr *) node)->funcid;

		if (f == F_NOW || f == F_STATEMENT_TIMESTAMP || f == F_TRANSACTION_TIMESTAMP)
			return true;
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, reads_the_clock, context, 0);
	return expression_tree_walker(node, reads_the_clock, context);
}

static void
check_query(Query *q)
{
	if (q->commandType != CMD_SELECT || q->utilityStmt)
		unsupported("only a SELECT can be maintained", NULL);
	if (q->hasWindowFuncs)
		unsupported("window functions are not supported", NULL);
	if (q->hasTargetSRFs)
		unsupported("set-returning functions are not supported", NULL);
	if (q->hasSubLinks)
		unsupported("subqueries are not supported",
					"Join the tables instead.");
	if (q->groupingSets)
		unsupported("GROUPING SETS, ROLLUP and CUBE are not supported", NULL);
	if (contain_volatile_functions((Node *) q))
		unsupported("volatile functions are not supported",
					"A view recomputed group by group must give the same result each time.");
	if (reads_the_clock((Node *) q, NULL))
		unsupported("now(), CURRENT_DATE and other values of the current time or user are not supported",
					"The view would go stale as time passes: filter when reading it, or use a pipeline.");
}

/* The columns of range table entry "varno" that the query reads. */
static Bitmapset *
columns_read(Query *q, int varno)
{
	Bitmapset  *columns = NULL;

	pull_varattnos((Node *) q->targetList, varno, &columns);
	pull_varattnos((Node *) q->jointree, varno, &columns);
	pull_varattnos(q->havingQual, varno, &columns);
	return columns;
}

/* Base tables from the range table; only inner joins of plain tables. */
static void
collect_bases(MatView *mv, Query *q)
{
	ListCell   *lc;

	foreach(lc, q->rtable)
	{
		RangeTblEntry *rte = lfirst(lc);

		if (rte->rtekind == RTE_JOIN)
		{
			if (rte->jointype != JOIN_INNER)
				unsupported("outer joins are not supported",
							"Use inner joins (a fact table with its dimensions).");
			continue;
		}
		if (rte->rtekind != RTE_RELATION)
			unsupported("subqueries, functions and VALUES in FROM are not supported",
						"Name the base tables directly.");
		switch (get_rel_relkind(rte->relid))
		{
			case RELKIND_RELATION:
				break;
			case RELKIND_PARTITIONED_TABLE:
				/* a write straight into a partition fires only its own triggers */
				unsupported(psprintf("\"%s\" is a partitioned table, whose partitions can be written directly",
									 get_rel_name(rte->relid)),
							"Keep the view over a plain table, or aggregate the partitions with pipelines.");
				break;
			case RELKIND_VIEW:
				unsupported(psprintf("\"%s\" is a view", get_rel_name(rte->relid)),
							"Use the view's base tables in the query.");
				break;
			case RELKIND_FOREIGN_TABLE:
				unsupported(psprintf("\"%s\" is a foreign table, whose changes cannot be captured",
									 get_rel_name(rte->relid)),
							"Load it into a local table with a pipeline first.");
				break;
			default:
				unsupported(psprintf("\"%s\" is not a table", get_rel_name(rte->relid)), NULL);
		}
		if (get_rel_relispartition(rte->relid))
			unsupported(psprintf("\"%s\" is a partition, which can be written through its parent",
								 get_rel_name(rte->relid)), NULL);
		if (find_inheritance_children(rte->relid, NoLock) != NIL)
			unsupported(psprintf("table \"%s\" has inheritance children, whose writes its triggers do not see",
								 get_rel_name(rte->relid)), NULL);
		if (list_member_oid(mv->bases, rte->relid))
			unsupported(psprintf("table \"%s\" appears twice (self-joins are not supported)",
								 get_rel_name(rte->relid)), NULL);
		mv->bases = lappend_oid(mv->bases, rte->relid);
		mv->base_columns = lappend(mv->base_columns, columns_read(q, foreach_current_index(lc) + 1));
	}
	if (mv->bases == NIL)
		unsupported("the query reads no table", NULL);
}

static bool
raw_has_star(SelectStmt *sel)
{
	ListCell   *lc;

	foreach(lc, sel->targetList)
	{
		ResTarget  *rt = lfirst(lc);

		if (IsA(rt->val, ColumnRef) &&
			IsA(llast(((ColumnRef *) rt->val)->fields), A_Star))
			return true;
	}
	return false;
}

/* A reference to a base table column as the query names its table. */
static Node *
column_ref(Query *q, Var *var)
{
	RangeTblEntry *rte = rt_fetch(var->varno, q->rtable);
	ColumnRef  *ref = makeNode(ColumnRef);

	ref->fields = list_make2(makeString(pstrdup(rte->eref->aliasname)),
							 makeString(get_attname(rte->relid, var->varattno, false)));
	ref->location = -1;
	return (Node *) ref;
}

/* A plain column of a base table (not of a join alias), or NULL. */
static Var *
base_var(Query *q, Node *expr)
{
	Var		   *var;

	if (!IsA(expr, Var))
		return NULL;
	var = (Var *) expr;
	if (var->varlevelsup != 0 || var->varattno <= 0 ||
		rt_fetch(var->varno, q->rtable)->rtekind != RTE_RELATION)
		return NULL;
	return var;
}

/*
 * date_trunc('unit', column) and date_bin(stride, column, origin) over a
 * timestamp column: the bucket b holds exactly the column's values in
 * [b, b + step). Returns the step as SQL, or NULL.
 */
static char *
bucket_step(Query *q, Node *expr, Var **column)
{
	FuncExpr   *f;
	char	   *fname;
	Node	   *first;
	Const	   *c;

	if (!IsA(expr, FuncExpr))
		return NULL;
	f = (FuncExpr *) expr;
	fname = get_func_name(f->funcid);
	if (get_func_namespace(f->funcid) != PG_CATALOG_NAMESPACE || fname == NULL)
		return NULL;
	if (!(f->funcresulttype == TIMESTAMPOID || f->funcresulttype == TIMESTAMPTZOID))
		return NULL;
	if (list_length(f->args) < 2 || !IsA(linitial(f->args), Const))
		return NULL;
	*column = base_var(q, lsecond(f->args));
	if (*column == NULL || exprType((Node *) *column) != f->funcresulttype)
		return NULL;
	first = linitial(f->args);
	c = (Const *) first;
	if (c->constisnull)
		return NULL;
	if (strcmp(fname, "date_trunc") == 0 && list_length(f->args) == 2)
	{
		static const char *const units[][2] = {
			{"second", "1 second"}, {"minute", "1 minute"}, {"hour", "1 hour"},
			{"day", "1 day"}, {"week", "7 days"}, {"month", "1 month"},
			{"quarter", "3 months"}, {"year", "1 year"}};
		char	   *unit = TextDatumGetCString(c->constvalue);

		for (int i = 0; i < lengthof(units); i++)
			if (pg_strcasecmp(unit, units[i][0]) == 0)
				return psprintf("'%s'::interval", units[i][1]);
		return NULL;
	}
	/*
	 * date_bin's bins are the stride long in absolute time, a day being 24
	 * hours: the step is recorded as a time ('24:00:00'), since b + '1 day'
	 * on a timestamptz is 23 or 25 hours across a DST change.
	 */
	if (strcmp(fname, "date_bin") == 0 && list_length(f->args) == 3 &&
		c->consttype == INTERVALOID)
	{
		Interval   *stride = DatumGetIntervalP(c->constvalue);
		Interval	width = {0};

		if (stride->month != 0)
			return NULL;		/* refused by date_bin itself */
		width.time = stride->time + stride->day * USECS_PER_DAY;
		return psprintf("%s::interval",
						quote_literal_cstr(OidOutputFunctionCall(F_INTERVAL_OUT,
																 IntervalPGetDatum(&width))));
	}
	return NULL;
}

/* count, exact sum, min and max follow inserts without a recompute. */
static DeltaKind
delta_kind(Aggref *agg)
{
	char	   *name = get_func_name(agg->aggfnoid);

	if (get_func_namespace(agg->aggfnoid) != PG_CATALOG_NAMESPACE ||
		agg->aggfilter || agg->aggdistinct || agg->aggorder ||
		agg->aggkind != AGGKIND_NORMAL)
		return DELTA_NONE;
	if (strcmp(name, "count") == 0)
		return DELTA_COUNT;
	if (list_length(agg->args) != 1)
		return DELTA_NONE;
	if (strcmp(name, "sum") == 0)
	{
		Oid			arg = exprType((Node *) ((TargetEntry *) linitial(agg->args))->expr);

		/* float sums depend on the order of addition: recompute them */
		return (arg == INT2OID || arg == INT4OID || arg == INT8OID ||
				arg == NUMERICOID) ? DELTA_SUM : DELTA_NONE;
	}
	if (strcmp(name, "min") == 0)
		return DELTA_MIN;
	if (strcmp(name, "max") == 0)
		return DELTA_MAX;
	return DELTA_NONE;
}

static ResTarget *
res_target(const char *name, Node *val)
{
	ResTarget  *rt = makeNode(ResTarget);

	rt->name = pstrdup(name);
	rt->val = copyObject(val);
	rt->location = -1;
	return rt;
}

typedef struct Analysis
{
	SelectStmt *sel;			/* the raw statement */
	Query	   *query;			/* analysed */
	List	   *key_raw;		/* raw expression per key */
	List	   *range_raw;		/* raw column per key, or NULL */
	List	   *arg_raw;		/* raw argument per a<n> */
} Analysis;

/* The keys: GROUP BY expressions, or every table's primary key columns. */
static void
find_keys(MatView *mv, Analysis *a, bool star)
{
	Query	   *q = a->query;
	bool		grouped = q->hasAggs || q->groupClause != NIL;
	ListCell   *lc;

	foreach(lc, q->groupClause)
	{
		SortGroupClause *sgc = lfirst(lc);

		if (get_sortgroupclause_tle(sgc, q->targetList)->resjunk)
			unsupported("every GROUP BY expression must be in the select list",
						"Add it to the select list: it identifies the view's rows.");
	}
	if (grouped && star)
		unsupported("* in the select list of a grouped query is not supported", NULL);
	if (!grouped)
	{
		foreach(lc, mv->bases)
		{
			Oid			base = lfirst_oid(lc);
			Relation	rel = table_open(base, AccessShareLock);
			Oid			pk = RelationGetPrimaryKeyIndex(rel);
			HeapTuple	tuple;
			Form_pg_index index;

			table_close(rel, AccessShareLock);
			if (!OidIsValid(pk))
				unsupported(psprintf("table \"%s\" has no primary key", get_rel_name(base)),
							"A view without aggregates needs the primary key of each table in its select list.");
			tuple = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(pk));
			index = (Form_pg_index) GETSTRUCT(tuple);
			for (int i = 0; i < index->indnkeyatts; i++)
			{
				AttrNumber	att = index->indkey.values[i];
				bool		found = false;
				ListCell   *tc;

				foreach(tc, q->targetList)
				{
					TargetEntry *te = lfirst(tc);
					Var		   *var = base_var(q, (Node *) te->expr);

					if (var && var->varattno == att &&
						rt_fetch(var->varno, q->rtable)->relid == base && !te->resjunk)
					{
						MatViewColumn *col = list_nth(mv->columns, te->resno - 1);

						col->key = true;
						found = true;
						break;
					}
				}
				if (!found)
					unsupported(psprintf("the select list lacks column \"%s\" of the primary key of \"%s\"",
										 get_attname(base, att, false), get_rel_name(base)),
								"A view without aggregates needs the primary key of each table in its select list.");
			}
			ReleaseSysCache(tuple);
		}
	}
	foreach(lc, q->targetList)
	{
		TargetEntry *te = lfirst(lc);
		MatViewColumn *col;
		Var		   *column = NULL;

		if (te->resjunk)
			continue;
		col = list_nth(mv->columns, te->resno - 1);
		if (grouped)
			col->key = te->ressortgroupref != 0 &&
				get_sortgroupref_clause_noerr(te->ressortgroupref, q->groupClause) != NULL;
		if (!col->key)
			continue;
		mv->nkeys++;
		if (star)
			a->key_raw = lappend(a->key_raw, column_ref(q, (Var *) te->expr));
		else
			a->key_raw = lappend(a->key_raw,
								 ((ResTarget *) list_nth(a->sel->targetList, te->resno - 1))->val);
		col->range_step = bucket_step(q, (Node *) te->expr, &column);
		a->range_raw = lappend(a->range_raw, col->range_step ? column_ref(q, column) : NULL);
		mv->key_types = lappend_oid(mv->key_types, exprType((Node *) te->expr));
	}
}

/* Algebraic when every other column is a count, exact sum, min or max. */
static void
find_deltas(MatView *mv, Analysis *a)
{
	Query	   *q = a->query;
	ListCell   *lc;

	mv->algebraic = q->groupClause != NIL && q->havingQual == NULL;
	foreach(lc, q->targetList)
	{
		TargetEntry *te = lfirst(lc);
		MatViewColumn *col;
		ResTarget  *raw;
		FuncCall   *call;

		if (te->resjunk)
			continue;
		col = list_nth(mv->columns, te->resno - 1);
		if (col->key)
			continue;
		raw = list_nth(a->sel->targetList, te->resno - 1);
		if (!IsA(te->expr, Aggref) || !IsA(raw->val, FuncCall) ||
			(col->delta = delta_kind((Aggref *) te->expr)) == DELTA_NONE)
		{
			mv->algebraic = false;
			continue;
		}
		call = (FuncCall *) raw->val;
		if (call->agg_star)
			continue;			/* count(*): the number of delta rows */
		if (list_length(call->args) != 1)
		{
			mv->algebraic = false;
			continue;
		}
		a->arg_raw = lappend(a->arg_raw, linitial(call->args));
		col->arg = list_length(a->arg_raw);
	}
	if (!mv->algebraic)
	{
		foreach(lc, mv->columns)
		{
			MatViewColumn *col = lfirst(lc);

			col->delta = DELTA_NONE;
			col->arg = 0;
		}
		a->arg_raw = NIL;
	}
	mv->nargs = list_length(a->arg_raw);
}

/*
 * Query text with every name outside pg_catalog schema-qualified. It is run
 * under the same search_path, "pg_catalog, pg_temp" (matview_enter), so it
 * means exactly what the analysed query meant.
 */
static char *
deparse(Query *q)
{
	int			level = NewGUCNestLevel();
	char	   *sql;

	(void) set_config_option("search_path", catalog_search_path, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	sql = pg_get_querydef(q, false);
	AtEOXact_GUC(true, level);
	return sql;
}

static Query *
analyze_raw(Node *stmt, const char *sql, Oid *param_types, int nparams)
{
	RawStmt    *raw = makeNode(RawStmt);

	raw->stmt = stmt;
	raw->stmt_location = -1;
	raw->stmt_len = 0;
	return parse_analyze_fixedparams(raw, sql, param_types, nparams, NULL);
}

/*
 * The changed rows of one base table, joined as the query joins them:
 * the query's FROM and WHERE with k<n> and a<n> as select list, and the
 * base table turned into a reference to CAPTURE_ROWS.
 */
static char *
capture_sql(MatView *mv, Analysis *a, Oid base)
{
	SelectStmt *sel = copyObject(a->sel);
	Query	   *q;
	ListCell   *lc;
	int			i = 0;

	sel->targetList = NIL;
	foreach(lc, a->key_raw)
		sel->targetList = lappend(sel->targetList,
								  res_target(psprintf("k%d", ++i), lfirst(lc)));
	i = 0;
	foreach(lc, a->arg_raw)
		sel->targetList = lappend(sel->targetList,
								  res_target(psprintf("a%d", ++i), lfirst(lc)));
	if (sel->targetList == NIL)
	{
		A_Const    *one = makeNode(A_Const);

		one->val.ival.type = T_Integer;
		one->val.ival.ival = 1;
		one->location = -1;
		sel->targetList = list_make1(res_target("changed", (Node *) one));
	}
	sel->groupClause = NIL;
	sel->havingClause = NULL;
	q = analyze_raw((Node *) sel, mv->query, NULL, 0);
	if (mv->arg_types == NIL && mv->nargs > 0)
	{
		for (i = mv->nkeys; i < mv->nkeys + mv->nargs; i++)
			mv->arg_types = lappend_oid(mv->arg_types,
										exprType((Node *) ((TargetEntry *) list_nth(q->targetList, i))->expr));
	}
	foreach(lc, q->rtable)
	{
		RangeTblEntry *rte = lfirst(lc);

		if (rte->rtekind == RTE_RELATION && rte->relid == base)
		{
			rte->rtekind = RTE_CTE;
			rte->ctename = CAPTURE_ROWS;
			rte->ctelevelsup = 0;
			rte->self_reference = false;
			rte->inh = false;
		}
	}
	return deparse(q);
}

static Node *
param_ref(int number)
{
	ParamRef   *p = makeNode(ParamRef);

	p->number = number;
	p->location = -1;
	return (Node *) p;
}

static Node *
is_null(Node *arg)
{
	NullTest   *n = makeNode(NullTest);

	n->arg = (Expr *) copyObject(arg);
	n->nulltesttype = IS_NULL;
	n->location = -1;
	return (Node *) n;
}

/*
 * The query with, per key i (parameters at base = KEY_PARAMS * i):
 *   ([$base+5 OR] key = ANY($base+1) OR (key IS NULL AND $base+2))
 *   AND ($base+2 OR (column >= $base+3 AND column < $base+4))	-- time buckets
 */
static char *
recompute_sql(MatView *mv, Analysis *a)
{
	SelectStmt *sel = copyObject(a->sel);
	List	   *quals = sel->whereClause ? list_make1(sel->whereClause) : NIL;
	Oid		   *types = palloc(sizeof(Oid) * KEY_PARAMS * Max(mv->nkeys, 1));
	ListCell   *kc,
			   *rc,
			   *tc;
	int			i = 0;

	forthree(kc, a->key_raw, rc, a->range_raw, tc, mv->key_types)
	{
		Node	   *key = lfirst(kc);
		Node	   *range = lfirst(rc);
		Oid			type = lfirst_oid(tc);
		int			base = KEY_PARAMS * i;
		List	   *match;

		types[base] = get_array_type(type);
		if (!OidIsValid(types[base]))
			unsupported(psprintf("type %s of a key has no array type", format_type_be(type)), NULL);
		types[base + 1] = BOOLOID;
		types[base + 2] = type;
		types[base + 3] = type;
		types[base + 4] = BOOLOID;
		match = list_make2(makeA_Expr(AEXPR_OP_ANY, list_make1(makeString("=")),
									  copyObject(key), param_ref(base + 1), -1),
						   makeBoolExpr(AND_EXPR,
										list_make2(is_null(key), param_ref(base + 2)), -1));
		if (range)
		{
			Node	   *from = (Node *) makeSimpleA_Expr(AEXPR_OP, ">=", copyObject(range),
														 param_ref(base + 3), -1);
			Node	   *to = (Node *) makeSimpleA_Expr(AEXPR_OP, "<", copyObject(range),
													   param_ref(base + 4), -1);

			match = lcons(param_ref(base + 5), match);
			quals = lappend(quals,
							makeBoolExpr(OR_EXPR,
										 list_make2(param_ref(base + 2),
													makeBoolExpr(AND_EXPR, list_make2(from, to), -1)),
										 -1));
		}
		quals = lappend(quals, makeBoolExpr(OR_EXPR, match, -1));
		i++;
	}
	if (quals != NIL)
		sel->whereClause = list_length(quals) == 1 ? linitial(quals) :
			(Node *) makeBoolExpr(AND_EXPR, quals, -1);
	return deparse(analyze_raw((Node *) sel, mv->query, types, KEY_PARAMS * mv->nkeys));
}

/* The view's columns, from the analysed select list. */
static void
describe_columns(MatView *mv, Query *q)
{
	ListCell   *lc;

	foreach(lc, q->targetList)
	{
		TargetEntry *te = lfirst(lc);
		MatViewColumn *col;
		ListCell   *oc;

		if (te->resjunk)
			continue;
		if (te->resname == NULL || strcmp(te->resname, "?column?") == 0)
			unsupported(psprintf("column %d has no name", te->resno),
						"Name it with AS.");
		foreach(oc, mv->columns)
			if (strcmp(((MatViewColumn *) lfirst(oc))->name, te->resname) == 0)
				unsupported(psprintf("column name \"%s\" appears twice", te->resname),
							"Rename one with AS.");
		col = palloc0(sizeof(MatViewColumn));
		col->name = pstrdup(te->resname);
		mv->columns = lappend(mv->columns, col);
	}
}

/*
 * Fill mv (query, search_path set by the caller, as the owner) with what
 * the view needs, or fail with 0A000 naming what is not supported.
 */
void
matview_analyze(MatView *mv, const char *name)
{
	List	   *raw;
	Analysis	a = {0};
	ListCell   *lc;
	bool		star;

	view_name = name;
	raw = raw_parser(mv->query, RAW_PARSE_DEFAULT);
	if (list_length(raw) != 1 || !IsA(((RawStmt *) linitial(raw))->stmt, SelectStmt))
		unsupported("the query must be exactly one SELECT statement", NULL);
	a.sel = (SelectStmt *) ((RawStmt *) linitial(raw))->stmt;
	check_raw_statement(a.sel);
	a.query = analyze_raw(copyObject((Node *) a.sel), mv->query, NULL, 0);
	check_query(a.query);
	collect_bases(mv, a.query);
	describe_columns(mv, a.query);
	star = raw_has_star(a.sel);
	find_keys(mv, &a, star);
	if (!star)
		find_deltas(mv, &a);
	foreach(lc, mv->bases)
		mv->capture = lappend(mv->capture, capture_sql(mv, &a, lfirst_oid(lc)));
	mv->recompute = recompute_sql(mv, &a);
	mv->full = deparse(a.query);
}
