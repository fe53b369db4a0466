/*-------------------------------------------------------------------------
 *
 * quarantine.c
 *	  Routing rows that break the contract: to pipeline.quarantine, to a
 *	  warning count, or to a failed run.
 *
 * The load statement (load.c) keeps a row when it breaks no rule; otherwise
 * its WHERE clause calls pipeline_divert(), which appends the row and the
 * names of every rule it broke to a tuplestore of this run, and drops it
 * from the load. Clean rows are never materialized. After the statement,
 * the diverted rows go to pipeline.quarantine in one INSERT ... SELECT,
 * unless the run's thresholds are exceeded, in which case the run fails
 * and nothing is loaded or quarantined.
 *
 *-------------------------------------------------------------------------
 */
#include "pipeline.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/tupdesc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(pipeline_divert);
PG_FUNCTION_INFO_V1(pipeline_warn);
PG_FUNCTION_INFO_V1(pipeline_fail);
PG_FUNCTION_INFO_V1(pipeline_diverted);

typedef struct RuleCount
{
	char	   *rule;
	int64		count;
} RuleCount;

typedef struct RouteState
{
	const char *pipeline;
	MemoryContext context;
	ResourceOwner owner;		/* owns the tuplestore's temporary files */
	Tuplestorestate *diverted;	/* (violations text[], data jsonb) */
	TupleDesc	desc;
	int64		ndiverted;
	List	   *counts;			/* RuleCount, quarantined and warned */
	SubTransactionId subxact;	/* begun in this (sub)transaction */
} RouteState;

/* The route of the run in progress in this backend, if any. */
static RouteState *route = NULL;

/*
 * An error that leaves route_begin's caller (a failed replay, say) frees
 * the route's memory with the aborted (sub)transaction: forget it then.
 */
static void
route_forget_on_abort(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		route = NULL;
}

static void
route_forget_on_subabort(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && route && route->subxact == mySubid)
		route = NULL;
}

void
route_begin(const char *pipeline)
{
	static bool callbacks = false;
	MemoryContext context;
	MemoryContext old;
	RouteState *state;

	if (route != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pipeline \"%s\" cannot run inside the run of pipeline \"%s\"",
						pipeline, route->pipeline),
				 errhint("A transform or trigger must not call pipeline_run or pipeline_replay.")));
	if (!callbacks)
	{
		RegisterXactCallback(route_forget_on_abort, NULL);
		RegisterSubXactCallback(route_forget_on_subabort, NULL);
		callbacks = true;
	}
	context = AllocSetContextCreate(CurrentMemoryContext, "pipeline route",
									ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(context);
	state = palloc0(sizeof(RouteState));
	state->subxact = GetCurrentSubTransactionId();
	state->pipeline = pstrdup(pipeline);
	state->context = context;
	state->owner = CurrentResourceOwner;
	state->diverted = tuplestore_begin_heap(false, false, work_mem);
	state->desc = CreateTemplateTupleDesc(2);
	TupleDescInitEntry(state->desc, 1, "violations", TEXTARRAYOID, -1, 0);
	TupleDescInitEntry(state->desc, 2, "data", JSONBOID, -1, 0);
	MemoryContextSwitchTo(old);
	route = state;
}

/* Forget the route; its memory goes with the run's context. */
void
route_end(void)
{
	if (route && route->diverted)
		tuplestore_end(route->diverted);
	if (route)
		MemoryContextDelete(route->context);
	route = NULL;
}

int64
route_diverted(void)
{
	return route ? route->ndiverted : 0;
}

static RouteState *
current_route(const char *function)
{
	if (route == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s can only be called by a pipeline run", function)));
	return route;
}

static void
count_rule(RouteState *state, const char *rule)
{
	ListCell   *lc;
	MemoryContext old;
	RuleCount  *rc;

	foreach(lc, state->counts)
	{
		rc = lfirst(lc);
		if (strcmp(rc->rule, rule) == 0)
		{
			rc->count++;
			return;
		}
	}
	old = MemoryContextSwitchTo(state->context);
	rc = palloc(sizeof(RuleCount));
	rc->rule = pstrdup(rule);
	rc->count = 1;
	state->counts = lappend(state->counts, rc);
	MemoryContextSwitchTo(old);
}

/* pipeline_divert(violations, data): keep the row for quarantine, drop it. */
Datum
pipeline_divert(PG_FUNCTION_ARGS)
{
	RouteState *state = current_route("pipeline_divert");
	Datum		values[2] = {PG_GETARG_DATUM(0), PG_GETARG_DATUM(1)};
	bool		nulls[2] = {false, false};
	ResourceOwner oldowner = CurrentResourceOwner;
	Datum	   *names;
	bool	   *name_nulls;
	int			n;

	CurrentResourceOwner = state->owner;
	tuplestore_putvalues(state->diverted, state->desc, values, nulls);
	CurrentResourceOwner = oldowner;
	state->ndiverted++;

	deconstruct_array(PG_GETARG_ARRAYTYPE_P(0), TEXTOID, -1, false, TYPALIGN_INT,
					  &names, &name_nulls, &n);
	for (int i = 0; i < n; i++)
		count_rule(state, TextDatumGetCString(names[i]));
	PG_RETURN_BOOL(false);
}

/* pipeline_warn(rule): count a break of a warn rule; the row loads. */
Datum
pipeline_warn(PG_FUNCTION_ARGS)
{
	count_rule(current_route("pipeline_warn"), text_to_cstring(PG_GETARG_TEXT_PP(0)));
	PG_RETURN_BOOL(true);
}

/* pipeline_fail(rule, data): a break of a fail rule fails the run. */
Datum
pipeline_fail(PG_FUNCTION_ARGS)
{
	RouteState *state = current_route("pipeline_fail");

	ereport(ERROR,
			(errcode(ERRCODE_CHECK_VIOLATION),
			 errmsg("row breaks rule \"%s\" of the contract of pipeline \"%s\"",
					text_to_cstring(PG_GETARG_TEXT_PP(0)), state->pipeline),
			 errdetail("Row: %s",
					   JsonbToCString(NULL, &PG_GETARG_JSONB_P(1)->root, 0))));
	PG_RETURN_BOOL(false);
}

/* pipeline_diverted(): the diverted rows, once, for the quarantine INSERT. */
Datum
pipeline_diverted(PG_FUNCTION_ARGS)
{
	RouteState *state = current_route("pipeline_diverted");
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	if (rsinfo == NULL || !(rsinfo->allowedModes & SFRM_Materialize))
		elog(ERROR, "pipeline_diverted must be called in a FROM clause");
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = state->diverted;	/* the executor ends it */
	rsinfo->setDesc = CreateTupleDescCopy(state->desc);
	state->diverted = NULL;
	return (Datum) 0;
}

/* Counts by rule, most broken first, as a jsonb object text (NULL if none). */
char *
route_rule_counts(int limit)
{
	StringInfoData json;
	List	   *sorted = NIL;
	ListCell   *lc;
	int			shown = 0;

	if (route == NULL || route->counts == NIL)
		return NULL;
	foreach(lc, route->counts)
	{
		RuleCount  *rc = lfirst(lc);
		ListCell   *pos;
		int			at = 0;

		foreach(pos, sorted)
		{
			if (((RuleCount *) lfirst(pos))->count < rc->count)
				break;
			at++;
		}
		sorted = list_insert_nth(sorted, at, rc);
	}
	initStringInfo(&json);
	appendStringInfoChar(&json, '{');
	foreach(lc, sorted)
	{
		RuleCount  *rc = lfirst(lc);

		if (limit > 0 && shown++ >= limit)
			break;
		if (foreach_current_index(lc) > 0)
			appendStringInfoString(&json, ", ");
		escape_json(&json, rc->rule);
		appendStringInfo(&json, ": " INT64_FORMAT, rc->count);
	}
	appendStringInfoChar(&json, '}');
	return json.data;
}

/*
 * Fail the run when the batch has more bad rows than the contract allows:
 * nothing is then loaded or quarantined (the run's subtransaction rolls
 * back), and the message names the most broken rules.
 */
void
route_check_limits(const Pipeline *p, int64 rows_read)
{
	int64		bad = route_diverted();
	bool		too_many = p->max_bad_rows >= 0 && bad > p->max_bad_rows;
	bool		too_large = p->max_bad_fraction >= 0 && rows_read > 0 &&
		(double) bad / (double) rows_read > p->max_bad_fraction;

	if (!too_many && !too_large)
		return;
	/* the message is what the failed run row keeps: it names the rules */
	ereport(ERROR,
			(errcode(ERRCODE_CHECK_VIOLATION),
			 errmsg("batch of pipeline \"%s\" has " INT64_FORMAT " bad rows of " INT64_FORMAT
					", over its contract's %s; most broken rules: %s", p->name, bad, rows_read,
					too_many ? psprintf("max_bad_rows (" INT64_FORMAT ")", p->max_bad_rows)
					: psprintf("max_bad_fraction (%g)", p->max_bad_fraction),
					route_rule_counts(3)),
			 errhint("Nothing was loaded or quarantined. Fix the source or the transform, or relax the contract.")));
}

/*
 * Move the diverted rows into pipeline.quarantine, as the catalog's owner,
 * in one statement. Returns how many.
 */
int64
route_store(const Pipeline *p, int64 run_id)
{
	IdentityFrame frame;
	Oid			types[3] = {TEXTOID, OIDOID, INT8OID};
	Datum		values[3];

	if (route_diverted() == 0)
		return 0;
	values[0] = CStringGetTextDatum(p->name);
	values[1] = ObjectIdGetDatum(p->owner);
	values[2] = Int64GetDatum(run_id);
	identity_enter_catalog(&frame);
	/*
	 * A CDC change carries its LSN and table (cdc_apply.c) into columns of
	 * their own, which a catalog older than 0.3 lacks.
	 */
	if (SPI_execute_with_args(cdc_installed() ?
							  "INSERT INTO pipeline.quarantine (pipeline, owner, run_id, data, violations, "
							  "lsn, relation) "
							  "SELECT $1, $2::regrole, $3, "
							  "d.data - '{__pipeline_lsn,__pipeline_table}'::text[], d.violations, "
							  "(d.data ->> '__pipeline_lsn')::pg_lsn, d.data ->> '__pipeline_table' "
							  "FROM pg_catalog.pipeline_diverted() d" :
							  "INSERT INTO pipeline.quarantine (pipeline, owner, run_id, data, violations) "
							  "SELECT $1, $2::regrole, $3, d.data, d.violations "
							  "FROM pg_catalog.pipeline_diverted() d",
							  3, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not quarantine the rows of pipeline \"%s\"", p->name);
	identity_leave(&frame);
	return (int64) SPI_processed;
}

/* The quarantined rows of a pipeline, as the transform output them. */
static char *
replay_query(const Pipeline *p, List *output, ArrayType *ids)
{
	StringInfoData sql;
	ListCell   *lc;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT __pipeline_r.*, __pipeline_q.id AS __pipeline_qid "
						   "FROM pipeline.quarantine AS __pipeline_q, "
						   "pg_catalog.jsonb_to_record(__pipeline_q.data) AS __pipeline_r(");
	foreach(lc, output)
	{
		OutputColumn *col = lfirst(lc);

		appendStringInfo(&sql, "%s%s %s", foreach_current_index(lc) > 0 ? ", " : "",
						 quote_identifier(col->name), format_type_be_qualified(col->raw_type));
	}
	appendStringInfo(&sql, ") WHERE __pipeline_q.pipeline OPERATOR(pg_catalog.=) %s "
					 "AND __pipeline_q.owner OPERATOR(pg_catalog.=) %u::pg_catalog.oid::pg_catalog.regrole "
					 "AND __pipeline_q.replayed_at IS NULL", quote_literal_cstr(p->name), p->owner);
	if (ids)
	{
		Oid			output;
		bool		varlena;

		/* array_out caches in fn_extra: call it through a real FmgrInfo */
		getTypeOutputInfo(INT8ARRAYOID, &output, &varlena);
		appendStringInfo(&sql, " AND __pipeline_q.id OPERATOR(pg_catalog.=) ANY (%s::pg_catalog.int8[])",
						 quote_literal_cstr(OidOutputFunctionCall(output, PointerGetDatum(ids))));
	}
	return sql.data;
}

/*
 * After a replay load: rows diverted again stay quarantined with their new
 * violations; every other candidate is marked replayed. The ids come from
 * the diverted rows' data, which the owner's code (a trigger on the target,
 * a check rule) can forge through pipeline_divert(): only rows of this
 * pipeline and owner are ever updated.
 */
static void
mark_replayed(const Pipeline *p, ArrayType *ids, int64 *replayed, int64 *still_bad)
{
	IdentityFrame frame;
	Oid			types[3] = {TEXTOID, INT8ARRAYOID, OIDOID};
	Datum		values[3] = {CStringGetTextDatum(p->name), PointerGetDatum(ids),
	ObjectIdGetDatum(p->owner)};
	char		nulls[3] = {' ', ids ? ' ' : 'n', ' '};
	bool		isnull;

	identity_enter_catalog(&frame);
	if (SPI_execute_with_args("WITH d AS MATERIALIZED ("
							  "  SELECT (data ->> '__pipeline_qid')::bigint AS id, violations "
							  "  FROM pg_catalog.pipeline_diverted()), "
							  "still AS (UPDATE pipeline.quarantine q SET violations = d.violations "
							  "  FROM d WHERE q.id = d.id AND q.pipeline = $1 AND q.owner = $3::regrole "
							  "  AND q.replayed_at IS NULL RETURNING q.id), "
							  "done AS (UPDATE pipeline.quarantine q SET replayed_at = now() "
							  "  WHERE q.pipeline = $1 AND q.owner = $3::regrole AND q.replayed_at IS NULL "
							  "  AND ($2 IS NULL OR q.id = ANY ($2)) "
							  "  AND NOT EXISTS (SELECT FROM d WHERE d.id = q.id) RETURNING q.id) "
							  "SELECT (SELECT count(*) FROM done), (SELECT count(*) FROM still)",
							  3, types, values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not mark the replayed rows of pipeline \"%s\"", p->name);
	*replayed = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	*still_bad = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	identity_leave(&frame);
}

PG_FUNCTION_INFO_V1(pipeline_replay);

/*
 * pipeline_replay(name, ids): validate quarantined rows (all not yet
 * replayed, or the given ids) against the current contract, load those that
 * pass, mark them replayed. A second call loads nothing twice.
 */
Datum
pipeline_replay(PG_FUNCTION_ARGS)
{
	const char *name;
	ArrayType  *ids = PG_ARGISNULL(1) ? NULL : PG_GETARG_ARRAYTYPE_P(1);
	MemoryContext callcontext = CurrentMemoryContext;
	TupleDesc	desc;
	Pipeline   *p;
	IdentityFrame frame;
	LoadCounts	counts;
	int64		replayed;
	int64		still_bad;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	HeapTuple	result;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("name of a pipeline must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pipeline_replay must return a composite type");

	SPI_connect();
	p = open_owned_pipeline(name);
	refuse_cdc(p, "replay quarantined rows of");
	route_begin(p->name);
	identity_enter(&frame, p->owner, p->search_path);
	{
		BatchRange	range = {NULL, NULL, false};
		bool		has_watermark;
		List	   *output = transform_output(p, batch_query(p, &range), &has_watermark);

		counts = load_replay(p, replay_query(p, output, ids));
	}
	identity_leave(&frame);
	mark_replayed(p, ids, &replayed, &still_bad);
	route_end();

	MemoryContextSwitchTo(callcontext);
	values[0] = Int64GetDatum(replayed);
	values[1] = Int64GetDatum(counts.rows_loaded);
	values[2] = Int64GetDatum(still_bad);
	result = heap_form_tuple(desc, values, nulls);
	SPI_finish();
	PG_RETURN_DATUM(HeapTupleGetDatum(result));
}
