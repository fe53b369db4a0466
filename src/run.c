/*-------------------------------------------------------------------------
 *
 * run.c
 *	  One run of a pipeline, start to end: pipeline_run and pipeline_explain.
 *
 *	  1. Lock the pipeline: concurrent runs of one pipeline serialise, and
 *	     the second one sees what the first one committed.
 *	  2. Extract: the batch's watermark range, after waiting for writers.
 *	  3. Transform and load: one set-based statement, as the owner.
 *	  4. Record: the new watermark and the run row.
 *
 * All four happen in the caller's transaction, so the load, the watermark
 * and the run row commit together or not at all. Steps 2 and 3 run in a
 * subtransaction: when they fail, their work is rolled back, the watermark
 * stays, and a 'failed' run row with the error is recorded and returned.
 *
 *-------------------------------------------------------------------------
 */
#include "pipeline.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/resowner.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pipeline_run);
PG_FUNCTION_INFO_V1(pipeline_lag);
PG_FUNCTION_INFO_V1(pipeline_explain);

/* What a run did: becomes a row of pipeline.runs. */
typedef struct RunRecord
{
	int64		run_id;			/* 0: not recorded (skipped) */
	const char *status;
	LoadCounts	counts;
	BatchRange	range;
	TimestampTz started_at;
	TimestampTz finished_at;
	char	   *error;
	char	   *sqlstate;
	char	   *rule_failures;	/* jsonb text, NULL when no rule broke */
	const char *trigger;		/* manual, cron, retry, run_all */
	int			attempt;		/* 1 + failed runs since the last success */
} RunRecord;

/* Columns of pipeline.runs, in order. */
enum
{
	RUN_ID, RUN_PIPELINE, RUN_OWNER, RUN_TRIGGER, RUN_ATTEMPT, RUN_STATUS,
	RUN_ROWS_READ, RUN_ROWS_LOADED, RUN_ROWS_QUARANTINED, RUN_WATERMARK_FROM,
	RUN_WATERMARK_TO, RUN_STARTED_AT, RUN_FINISHED_AT, RUN_ERROR, RUN_SQLSTATE,
	RUN_RULE_FAILURES, RUN_NCOLUMNS
};

static void
check_isolation(const char *name)
{
	/*
	 * Under REPEATABLE READ the batch would be read with the transaction's
	 * first snapshot, blind to the writers the run waited for: rows would be
	 * skipped for good.
	 */
	require_read_committed(psprintf("pipeline \"%s\" cannot run", name),
						   "Run it in a READ COMMITTED transaction.");
}

/* The id of a run that does work, taken before its rows are quarantined. */
static int64
next_run_id(void)
{
	IdentityFrame frame;
	bool		isnull;
	int64		id;

	identity_enter_catalog(&frame);
	if (SPI_execute("SELECT pg_catalog.nextval('pipeline.runs_run_id_seq')", false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not allocate a run id");
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	identity_leave(&frame);
	return id;
}

/*
 * A CDC run: the changes from the slot, applied and recorded with the LSN
 * range as the run's watermarks. A run that found no change leaves no
 * history, as an idle run of any pipeline.
 */
static void
do_cdc_run(Pipeline *p, RunRecord *run)
{
	XLogRecPtr	from = p->last_watermark ?
		DatumGetLSN(DirectFunctionCall1(pg_lsn_in, CStringGetDatum(p->last_watermark))) : 0;
	CdcCounts	counts;
	ListCell   *lc;

	p->rules = contract_read(p);
	counts = cdc_run(p);
	run->range.from = lsn_text(from);
	run->range.to = lsn_text(Max(from, counts.end_lsn));
	run->range.idle = counts.changes == 0;
	if (run->range.idle)
		return;
	run->run_id = next_run_id();
	run->counts.rows_read = counts.changes;
	run->counts.rows_loaded = counts.loaded;
	route_check_limits(p, counts.changes);
	run->counts.rows_quarantined = route_store(p, run->run_id);
	foreach(lc, counts.touched)
		refresh_matviews_of(lfirst_oid(lc));
}

/*
 * Extract, transform and load as the owner, then check the contract's
 * limits and quarantine the rows that broke it.
 */
static void
do_run(Pipeline *p, RunRecord *run)
{
	IdentityFrame frame;

	if (p->mode == LOAD_CDC)
	{
		do_cdc_run(p, run);
		return;
	}
	run->range = extract_range(p, true);
	if (run->range.idle)
		return;
	run->run_id = next_run_id();
	p->rules = contract_read(p);

	identity_enter(&frame, p->owner, p->search_path);
	run->counts = load_batch(p, &run->range);
	identity_leave(&frame);

	route_check_limits(p, run->counts.rows_read);
	run->counts.rows_quarantined = route_store(p, run->run_id);

	/* deferred incremental views over the target catch up in the same run */
	if (run->counts.rows_loaded > 0)
		refresh_matviews_of(p->target);
}

/*
 * The pipeline's timeout: a timer of our own (statement_timeout is armed by
 * the top-level statement, not by us) that cancels the run like a query
 * cancel; run_guarded tells the two apart by this flag.
 */
static TimeoutId run_timeout_id = MAX_TIMEOUTS;
static volatile sig_atomic_t run_timed_out = false;

static void
run_timeout_handler(void)
{
	run_timed_out = true;
	QueryCancelPending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
}

static void
arm_timeout(const Pipeline *p)
{
	run_timed_out = false;
	if (p->timeout_ms <= 0)
		return;
	if (run_timeout_id == MAX_TIMEOUTS)
		run_timeout_id = RegisterTimeout(USER_TIMEOUT, run_timeout_handler);
	enable_timeout_after(run_timeout_id, (int) Min(p->timeout_ms, INT_MAX));
}

static void
disarm_timeout(void)
{
	if (run_timeout_id != MAX_TIMEOUTS)
		disable_timeout(run_timeout_id, false);
}

/*
 * Is this error a real interrupt (a cancel, statement_timeout, a shutdown)
 * rather than one the owner's code raised with that SQLSTATE? Code such as
 * RAISE ... USING ERRCODE = 'query_canceled' must fail its own run, not
 * abort the caller's pipeline_run_all() and the other owners' runs in it.
 * Real interrupts are raised by ProcessInterrupts only.
 */
static bool
is_interrupt(const ErrorData *edata)
{
	return (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN) &&
		edata->funcname != NULL && strcmp(edata->funcname, "ProcessInterrupts") == 0;
}

/*
 * Run do_run in a subtransaction, as PL/pgSQL does for a block with an
 * EXCEPTION clause; on error, roll it back and keep the error for the run
 * row.
 */
static void
run_guarded(Pipeline *p, RunRecord *run)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;

	route_begin(p->name);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		arm_timeout(p);
		do_run(p, run);
		disarm_timeout();
		/* the timer fired as the run ended: the run is done, drop the cancel */
		if (run_timed_out)
			QueryCancelPending = false;
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		run->status = run->range.idle ? "skipped" : "succeeded";
		run->rule_failures = route_rule_counts(0);
		route_end();
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		bool		timed_out;

		disarm_timeout();
		timed_out = run_timed_out;
		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		run->rule_failures = route_rule_counts(0);
		route_end();

		/* a user's cancel or a shutdown is not a failed run: let it through */
		if (is_interrupt(edata) && !timed_out)
			ReThrowError(edata);

		run->status = "failed";
		run->counts.rows_read = run->counts.rows_loaded = 0;
		run->counts.rows_quarantined = 0;
		run->error = timed_out ?
			psprintf("pipeline \"%s\" exceeded its timeout of %s", p->name, p->timeout) :
			edata->message ? pstrdup(edata->message) : pstrdup("unknown error");
		run->sqlstate = pstrdup(unpack_sql_state(edata->sqlerrcode));
		FreeErrorData(edata);
	}
	PG_END_TRY();
}

/* text_arg for heap_form_tuple's bool null flags */
static Datum
nullable_text(const char *s, bool *isnull)
{
	char		flag;
	Datum		d = text_arg(s, &flag);

	*isnull = (flag == 'n');
	return d;
}

/* The run as a row of pipeline.runs, for the caller. */
static HeapTuple
run_tuple(TupleDesc desc, const Pipeline *p, const RunRecord *run)
{
	Datum		values[RUN_NCOLUMNS];
	bool		nulls[RUN_NCOLUMNS] = {false};

	values[RUN_ID] = Int64GetDatum(run->run_id);
	nulls[RUN_ID] = run->run_id == 0;
	values[RUN_PIPELINE] = CStringGetTextDatum(p->name);
	values[RUN_OWNER] = ObjectIdGetDatum(p->owner);
	values[RUN_TRIGGER] = CStringGetTextDatum(run->trigger);
	values[RUN_ATTEMPT] = Int32GetDatum(run->attempt);
	values[RUN_STATUS] = CStringGetTextDatum(run->status);
	values[RUN_ROWS_READ] = Int64GetDatum(run->counts.rows_read);
	values[RUN_ROWS_LOADED] = Int64GetDatum(run->counts.rows_loaded);
	values[RUN_ROWS_QUARANTINED] = Int64GetDatum(run->counts.rows_quarantined);
	values[RUN_WATERMARK_FROM] = nullable_text(run->range.from, &nulls[RUN_WATERMARK_FROM]);
	values[RUN_WATERMARK_TO] = nullable_text(run->range.to, &nulls[RUN_WATERMARK_TO]);
	values[RUN_STARTED_AT] = TimestampTzGetDatum(run->started_at);
	values[RUN_FINISHED_AT] = TimestampTzGetDatum(run->finished_at);
	values[RUN_ERROR] = nullable_text(run->error, &nulls[RUN_ERROR]);
	values[RUN_SQLSTATE] = nullable_text(run->sqlstate, &nulls[RUN_SQLSTATE]);
	nulls[RUN_RULE_FAILURES] = run->rule_failures == NULL;
	if (run->rule_failures)
		values[RUN_RULE_FAILURES] = DirectFunctionCall1(jsonb_in,
														CStringGetDatum(run->rule_failures));
	return heap_form_tuple(desc, values, nulls);
}

/* Insert the run row, as the catalog's owner. */
static void
record_run(const Pipeline *p, RunRecord *run)
{
	IdentityFrame frame;
	Oid			types[15] = {TEXTOID, OIDOID, TEXTOID, INT8OID, INT8OID, TEXTOID,
	TEXTOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, INT8OID, INT8OID, TEXTOID, TEXTOID, INT4OID};
	Datum		values[15];
	char		nulls[15];

	memset(nulls, ' ', sizeof(nulls));
	values[0] = CStringGetTextDatum(p->name);
	values[1] = ObjectIdGetDatum(p->owner);
	values[2] = CStringGetTextDatum(run->status);
	values[3] = Int64GetDatum(run->counts.rows_read);
	values[4] = Int64GetDatum(run->counts.rows_loaded);
	values[5] = text_arg(run->range.from, &nulls[5]);
	values[6] = text_arg(run->range.to, &nulls[6]);
	values[7] = TimestampTzGetDatum(run->started_at);
	values[8] = text_arg(run->error, &nulls[8]);
	values[9] = text_arg(run->sqlstate, &nulls[9]);
	values[10] = Int64GetDatum(run->run_id ? run->run_id : next_run_id());
	values[11] = Int64GetDatum(run->counts.rows_quarantined);
	values[12] = text_arg(run->rule_failures, &nulls[12]);
	values[13] = CStringGetTextDatum(run->trigger);
	values[14] = Int32GetDatum(run->attempt);
	run->run_id = DatumGetInt64(values[10]);

	identity_enter_catalog(&frame);
	if (SPI_execute_with_args("INSERT INTO pipeline.runs (pipeline, owner, status, "
							  "rows_read, rows_loaded, watermark_from, watermark_to, "
							  "started_at, finished_at, error, sqlstate, run_id, "
							  "rows_quarantined, rule_failures, trigger, attempt) VALUES "
							  "($1, $2::regrole, $3, $4, $5, $6, $7, $8, "
							  "pg_catalog.clock_timestamp(), $9, $10, $11, $12, $13::pg_catalog.jsonb, "
							  "$14, $15)",
							  15, types, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record run of pipeline \"%s\"", p->name);
	identity_leave(&frame);
}

/* The status of the pipeline's last recorded run, NULL if none. */
static char *
last_status(const Pipeline *p)
{
	IdentityFrame frame;
	Oid			type = TEXTOID;
	Datum		name = CStringGetTextDatum(p->name);
	char	   *status = NULL;

	identity_enter_catalog(&frame);
	if (SPI_execute_with_args("SELECT status FROM pipeline.runs WHERE pipeline = $1 "
							  "ORDER BY run_id DESC LIMIT 1", 1, &type, &name, NULL,
							  true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the runs of pipeline \"%s\"", p->name);
	if (SPI_processed > 0)
		status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	identity_leave(&frame);
	return status;
}

/*
 * NOTIFY pipeline_events, delivered when the run commits: on every failure,
 * and on the first success after a failure (a recovery).
 *
 * Any role may LISTEN, and PostgreSQL has no privilege on channels, so the
 * payload carries nothing but the run's id and event: the pipeline's name,
 * error and SQLSTATE are read from pipeline.runs, whose row-level security
 * shows them only to the pipeline's owner (and its members).
 */
static void
alert(const RunRecord *run, const char *previous)
{
	const char *event;

	if (strcmp(run->status, "failed") == 0)
		event = "failed";
	else if (previous && strcmp(previous, "failed") == 0)
		event = "recovered";
	else
		return;
	Async_Notify("pipeline_events",
				 psprintf("{\"run_id\": " INT64_FORMAT ", \"status\": \"%s\"}",
						  run->run_id, event));
}

/*
 * A CDC pipeline whose run failed in a way that will recur (its source and
 * targets disagree, a change the target refuses: cdc_error_persists) is
 * paused rather than retried: nothing can succeed until someone fixes the
 * cause, and the changes wait in the slot meanwhile.
 */
static void
pause_on_schema_error(const Pipeline *p, RunRecord *run)
{
	if (p->mode != LOAD_CDC || strcmp(run->status, "failed") != 0 ||
		run->sqlstate == NULL || !cdc_error_persists(run->sqlstate))
		return;
	catalog_pause(p->name);
	run->error = psprintf("%s (pipeline paused: fix the cause, then pipeline_alter('%s', '{\"enabled\": true}'))",
						  run->error, p->name);
}

/*
 * A call from a person (or pipeline_run_all) waits for a run of the same
 * pipeline in another session; the automated ones (cron, workers, retries,
 * cascades) skip it, so they never pile up behind a long run.
 */
static bool
waits_for_lock(const char *trigger)
{
	return strcmp(trigger, "manual") == 0 || strcmp(trigger, "run_all") == 0;
}

Datum
pipeline_run(PG_FUNCTION_ARGS)
{
	const char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	MemoryContext callcontext = CurrentMemoryContext;
	TupleDesc	desc;
	RunRecord	run = {0};
	Pipeline   *p;
	HeapTuple	result;
	bool		busy;

	run.trigger = text_to_cstring(PG_GETARG_TEXT_PP(1));

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pipeline_run must return a composite type");
	check_isolation(name);

	SPI_connect();
	busy = !catalog_try_lock_pipeline(name);

	/*
	 * A caller waits for the run in progress, except when its own
	 * transaction has written to the source: that run waits for this
	 * transaction's writes to commit (see extract.c), and waiting for it
	 * would deadlock. It is skipped instead; the run in progress, or the
	 * next one, reads its rows once it commits.
	 */
	if (busy && waits_for_lock(run.trigger) &&
		!source_written_here(catalog_read_pipeline(name, false)))
	{
		catalog_lock_pipeline(name);
		busy = false;
	}
	p = catalog_read_pipeline(name, false);
	check_pipeline_owner(p);

	run.started_at = GetCurrentTimestamp();
	run.attempt = p->failures + 1;
	run.range.from = run.range.to = p->last_watermark;
	if (busy)
	{
		run.status = "skipped";
		run.error = psprintf("pipeline \"%s\" is already running", p->name);
	}
	else if (!p->enabled)
		run.status = "skipped";
	else
		run_guarded(p, &run);
	run.finished_at = GetCurrentTimestamp();

	/* a run that did not happen (busy, disabled, writers open) leaves the queue mark */
	if (p->queued && !busy && p->enabled && !run.range.writers_open)
		catalog_dequeue(p->name);
	if (p->cascade && strcmp(run.status, "succeeded") == 0 &&
		run.counts.rows_loaded > 0)
		catalog_queue_downstream(p->name);

	/* An idle or disabled run leaves no history: cron ticks do not grow it. */
	if (strcmp(run.status, "skipped") != 0)
	{
		char	   *previous = last_status(p);

		if (strcmp(run.status, "succeeded") == 0)
			catalog_set_watermark(p->name, run.range.to, true);
		else
			catalog_record_failure(p->name);
		pause_on_schema_error(p, &run);
		record_run(p, &run);
		alert(&run, previous);
	}

	MemoryContextSwitchTo(callcontext);
	result = run_tuple(desc, p, &run);
	SPI_finish();
	PG_RETURN_DATUM(HeapTupleGetDatum(result));
}

/*
 * The statements the next run would execute (without waiting for writers),
 * or with plan => true their EXPLAIN VERBOSE output. Nothing is changed.
 */
Datum
pipeline_explain(PG_FUNCTION_ARGS)
{
	const char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	bool		plan = PG_GETARG_BOOL(1);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Pipeline   *p;
	BatchRange	range;
	IdentityFrame frame;
	List	   *statements;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	SPI_connect();
	p = catalog_read_pipeline(name, false);
	check_pipeline_owner(p);
	refuse_cdc(p, "explain");
	range = extract_range(p, false);

	identity_enter(&frame, p->owner, p->search_path);
	p->rules = contract_read(p);
	statements = load_statements(p, &range, NULL);
	foreach(lc, statements)
	{
		const char *sql = lfirst(lc);

		if (!plan)
		{
			Datum		value = CStringGetTextDatum(sql);
			bool		isnull = false;

			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
			continue;
		}
		if (SPI_execute(psprintf("EXPLAIN (VERBOSE, COSTS OFF) %s", sql), false, 0) < 0)
			elog(ERROR, "EXPLAIN failed for pipeline \"%s\"", p->name);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			Datum		value = SPI_getbinval(SPI_tuptable->vals[i],
											  SPI_tuptable->tupdesc, 1, &isnull);

			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
		}
	}
	identity_leave(&frame);
	SPI_finish();
	return (Datum) 0;
}

/*
 * pipeline_lag(name): how far the pipeline is behind its source (see
 * watermark_lag). Visible pipelines only: NULL for one the caller does not
 * own, so pipeline.status can call it on every row.
 */
/*
 * watermark_lag in a subtransaction: it runs the owner's source (a view of
 * theirs, say), and one source that fails must not make pipeline.status
 * fail for every reader. Its lag is NULL then, with a WARNING.
 */
static char *
lag_or_warning(const Pipeline *p)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	char	   *volatile lag = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		char	   *value = watermark_lag(p);

		lag = value ? MemoryContextStrdup(oldcontext, value) : NULL;
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		if (is_interrupt(edata))
			ReThrowError(edata);
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("lag of pipeline \"%s\" is unknown: %s", p->name, edata->message)));
		FreeErrorData(edata);
		lag = NULL;
	}
	PG_END_TRY();
	return lag;
}

Datum
pipeline_lag(PG_FUNCTION_ARGS)
{
	const char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	MemoryContext callcontext = CurrentMemoryContext;
	Pipeline   *p;
	char	   *lag = NULL;

	SPI_connect();
	p = catalog_read_pipeline(name, true);
	if (p && p->mode != LOAD_CDC && has_privs_of_role(GetUserId(), p->owner))
		lag = lag_or_warning(p);
	if (lag)
		lag = MemoryContextStrdup(callcontext, lag);
	SPI_finish();
	if (lag == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(lag));
}
