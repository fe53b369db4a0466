/*-------------------------------------------------------------------------
 *
 * target_checks.c
 *	  pipeline_breaks_check(constraint, VARIADIC values): does a row break
 *	  a CHECK constraint of the target? The implicit contract rule of each
 *	  CHECK constraint calls it, so a row that the INSERT would refuse is
 *	  quarantined instead.
 *
 * The constraint is evaluated from its stored expression (pg_constraint.
 * conbin), whose functions and operators are already resolved, as the
 * INSERT itself does (ExecRelCheck: ExecPrepareExpr, then ExecCheck, where
 * NULL passes). Deparsing the expression
 * and embedding its text in the load instead would re-resolve its names
 * under the pipeline owner's search_path, where a function or operator of
 * a closer signature in a writable schema could capture them.
 *
 * The values come in the order of the constraint's columns (conkey), with
 * the types of those columns (the load converts to the target's types
 * before rules are checked).
 *
 *-------------------------------------------------------------------------
 */
#include "pipeline.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "optimizer/optimizer.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(pipeline_breaks_check);

/* One constraint, prepared once per query (fn_extra). */
typedef struct CheckState
{
	Oid			constraint;
	int			ncolumns;
	AttrNumber *columns;		/* conkey: where each argument goes */
	TupleTableSlot *slot;		/* a row of the target's type */
	ExprState  *check;
	ExprContext *econtext;
} CheckState;

static AttrNumber *
constraint_columns(HeapTuple tuple, Oid constraint, int *ncolumns)
{
	bool		isnull;
	Datum		conkey = SysCacheGetAttr(CONSTROID, tuple, Anum_pg_constraint_conkey, &isnull);
	Datum	   *elems;
	AttrNumber *columns;

	if (isnull)
	{
		*ncolumns = 0;
		return NULL;
	}
	deconstruct_array(DatumGetArrayTypeP(conkey), INT2OID, 2, true, TYPALIGN_SHORT,
					  &elems, NULL, ncolumns);
	columns = palloc(sizeof(AttrNumber) * *ncolumns);
	for (int i = 0; i < *ncolumns; i++)
	{
		columns[i] = DatumGetInt16(elems[i]);
		/* a whole-row reference (0) or a system column (< 0): not a value we take */
		if (columns[i] <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("constraint %u refers to the whole row or a system column", constraint)));
	}
	return columns;
}

static CheckState *
prepare_check(FunctionCallInfo fcinfo, Oid constraint)
{
	MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	CheckState *state = palloc0(sizeof(CheckState));
	HeapTuple	tuple = SearchSysCache1(CONSTROID, ObjectIdGetDatum(constraint));
	Form_pg_constraint con;
	bool		isnull;
	Datum		conbin;
	Relation	rel;
	Expr	   *expr;

	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("constraint %u does not exist", constraint)));
	con = (Form_pg_constraint) GETSTRUCT(tuple);
	if (con->contype != CONSTRAINT_CHECK || !OidIsValid(con->conrelid))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("constraint \"%s\" is not a CHECK constraint of a table",
						NameStr(con->conname))));
	conbin = SysCacheGetAttr(CONSTROID, tuple, Anum_pg_constraint_conbin, &isnull);
	if (isnull)
		elog(ERROR, "null conbin for constraint %u", constraint);
	state->constraint = constraint;
	state->columns = constraint_columns(tuple, constraint, &state->ncolumns);

	rel = table_open(con->conrelid, AccessShareLock);
	state->slot = MakeSingleTupleTableSlot(CreateTupleDescCopy(RelationGetDescr(rel)),
										   &TTSOpsVirtual);
	table_close(rel, AccessShareLock);
	ReleaseSysCache(tuple);

	expr = expression_planner((Expr *) stringToNode(TextDatumGetCString(conbin)));
	state->check = ExecInitExpr(expr, NULL);
	state->econtext = CreateStandaloneExprContext();
	MemoryContextSwitchTo(old);
	return state;
}

/* Put the arguments into the row; a wrong type or count is a caller bug. */
static void
fill_row(FunctionCallInfo fcinfo, CheckState *state)
{
	TupleTableSlot *slot = state->slot;
	TupleDesc	desc = slot->tts_tupleDescriptor;

	if (PG_NARGS() - 1 != state->ncolumns)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("constraint %u has %d columns, got %d values",
						state->constraint, state->ncolumns, PG_NARGS() - 1)));
	ExecClearTuple(slot);
	for (int i = 0; i < desc->natts; i++)
		slot->tts_isnull[i] = true;
	for (int i = 0; i < state->ncolumns; i++)
	{
		int			att = state->columns[i] - 1;

		if (att >= desc->natts ||
			get_fn_expr_argtype(fcinfo->flinfo, i + 1) != TupleDescAttr(desc, att)->atttypid)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("value %d for constraint %u has type %s, not the column's",
							i + 1, state->constraint,
							format_type_be(get_fn_expr_argtype(fcinfo->flinfo, i + 1)))));
		slot->tts_values[att] = PG_GETARG_DATUM(i + 1);
		slot->tts_isnull[att] = PG_ARGISNULL(i + 1);
	}
	ExecStoreVirtualTuple(slot);
}

Datum
pipeline_breaks_check(PG_FUNCTION_ARGS)
{
	Oid			constraint = PG_GETARG_OID(0);
	CheckState *state = fcinfo->flinfo->fn_extra;
	bool		passes;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (state == NULL || state->constraint != constraint)
		fcinfo->flinfo->fn_extra = state = prepare_check(fcinfo, constraint);
	fill_row(fcinfo, state);
	state->econtext->ecxt_scantuple = state->slot;
	passes = ExecCheck(state->check, state->econtext);
	ResetExprContext(state->econtext);
	PG_RETURN_BOOL(!passes);
}
