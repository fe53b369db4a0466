/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  Background workers: continuous pipelines, cascades and retries,
 *	  without an outside scheduler.
 *
 * With shared_preload_libraries = 'pipeline', a launcher starts one worker
 * per database named in pipeline.database (reread on SIGHUP) and restarts
 * a worker that exits, with a delay that doubles while the worker keeps
 * exiting soon after its start, so a broken database never becomes a
 * crash loop. A launcher that starts again (killed, crashed) first stops
 * the workers of its predecessor, which it cannot manage, and the registry
 * never admits two workers for one database. A worker, in its database:
 *
 *	- runs every continuous pipeline each poll_interval, and again at once
 *	  after a run that loaded rows (a backlog drains batch after batch);
 *	  after a failed run it waits poll_interval * 2^failures, at most
 *	  retry_delay, so a broken pipeline does not fail (and alert) every poll;
 *	- calls pipeline_run_due() for cascades and retries;
 *	- each run in its own transaction: an error is logged and the loop goes
 *	  on (pipeline_run itself records failed runs);
 *	- waits for a source's open writers a bounded time: past it the run is
 *	  idle and the next poll tries again, so one open transaction does not
 *	  stall the other pipelines;
 *	- sleeps on its latch between ticks, holding no locks, so DROP
 *	  EXTENSION does not wait for it;
 *	- runs its own statements under search_path pg_catalog, pg_temp, fully
 *	  qualified, and in READ COMMITTED whatever the database's default.
 *
 * On PostgreSQL 15 a background worker connected to a database makes DROP
 * DATABASE, ALTER DATABASE RENAME and CREATE DATABASE ... TEMPLATE fail, so
 * a ProcessUtility hook stops the database's worker first, once the caller
 * is known to be allowed (the owner, or a superuser); worker pids are kept
 * in a small shared-memory registry for that.
 * SIGTERM ends a worker through CHECK_FOR_INTERRUPTS: a run in progress is
 * rolled back whole.
 *
 *-------------------------------------------------------------------------
 */
#include "pipeline.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

PGDLLEXPORT void pipeline_launcher_main(Datum arg);
PGDLLEXPORT void pipeline_worker_main(Datum arg);

/* GUCs */
static char *worker_databases = NULL;
static int	max_workers = 8;

/* How often a worker re-reads its pipelines and runs the due ones. */
#define IDLE_TICK_MS 1000

/*
 * The longest a run of the worker waits for its source's open writers
 * (see extract_writer_wait_ms); a continuous run waits at most its
 * poll_interval.
 */
#define WRITER_WAIT_MS 1000

/* ---- the registry of running workers, in shared memory ---- */

#define WORKER_ERROR_LEN 256

typedef struct WorkerSlot
{
	Oid			database;
	pid_t		pid;
	TimestampTz started_at;
	/* the last error outside a run's own handling, for pipeline.workers */
	TimestampTz error_at;		/* 0: none */
	int64		errors;
	char		error[WORKER_ERROR_LEN];
} WorkerSlot;

typedef struct WorkerRegistry
{
	slock_t		mutex;
	pid_t		launcher;		/* the launcher now running */
	WorkerSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} WorkerRegistry;

static WorkerRegistry *registry = NULL;
static int	my_slot = -1;		/* in a worker: its slot */
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ProcessUtility_hook_type prev_utility_hook = NULL;

static Size
registry_size(void)
{
	return add_size(offsetof(WorkerRegistry, slots),
					mul_size(max_workers, sizeof(WorkerSlot)));
}

static void
registry_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(registry_size());
}

static void
registry_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	registry = ShmemInitStruct("pipeline workers", registry_size(), &found);
	if (!found)
	{
		SpinLockInit(&registry->mutex);
		registry->launcher = 0;
		memset(registry->slots, 0, mul_size(max_workers, sizeof(WorkerSlot)));
	}
	LWLockRelease(AddinShmemInitLock);
}

static void
registry_leave(int code, Datum arg)
{
	int			slot = DatumGetInt32(arg);

	SpinLockAcquire(&registry->mutex);
	registry->slots[slot].pid = 0;
	registry->slots[slot].database = InvalidOid;
	SpinLockRelease(&registry->mutex);
}

static void
registry_enter(void)
{
	int			slot = -1;
	bool		duplicate = false;

	SpinLockAcquire(&registry->mutex);
	for (int i = 0; i < max_workers; i++)
	{
		if (registry->slots[i].pid == 0 && slot < 0)
			slot = i;
		duplicate |= registry->slots[i].pid != 0 &&
			registry->slots[i].database == MyDatabaseId;
	}
	if (slot >= 0 && !duplicate)
	{
		memset(&registry->slots[slot], 0, sizeof(WorkerSlot));
		registry->slots[slot].pid = MyProcPid;
		registry->slots[slot].database = MyDatabaseId;
		registry->slots[slot].started_at = GetCurrentTimestamp();
		my_slot = slot;
	}
	SpinLockRelease(&registry->mutex);
	if (duplicate)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("a pipeline worker for this database is already running"),
				 errhint("The launcher starts again once it has stopped.")));
	if (slot < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many pipeline workers"),
				 errhint("Raise pipeline.max_workers.")));
	on_shmem_exit(registry_leave, Int32GetDatum(slot));
}

/*
 * Keep an error of the worker's own (a statement that failed as a whole,
 * not a failed run: those are in pipeline.runs) for pipeline.workers.
 */
static void
registry_note_error(const char *message)
{
	if (my_slot < 0)
		return;
	SpinLockAcquire(&registry->mutex);
	registry->slots[my_slot].error_at = GetCurrentTimestamp();
	registry->slots[my_slot].errors++;
	strlcpy(registry->slots[my_slot].error, message, WORKER_ERROR_LEN);
	SpinLockRelease(&registry->mutex);
}

/* The pid of the worker connected to a database, 0 if none. */
static pid_t
registry_find(Oid database)
{
	pid_t		pid = 0;

	SpinLockAcquire(&registry->mutex);
	for (int i = 0; i < max_workers; i++)
		if (registry->slots[i].pid != 0 && registry->slots[i].database == database)
			pid = registry->slots[i].pid;
	SpinLockRelease(&registry->mutex);
	return pid;
}

/*
 * A launcher starting: it is the launcher now, and every worker of its
 * predecessor (which it has no handle for) is stopped. A worker that was
 * still starting stops by itself (see worker_orphaned).
 */
static void
registry_become_launcher(void)
{
	pid_t	   *pids = palloc(sizeof(pid_t) * max_workers);
	int			n = 0;

	SpinLockAcquire(&registry->mutex);
	registry->launcher = MyProcPid;
	for (int i = 0; i < max_workers; i++)
		if (registry->slots[i].pid != 0)
			pids[n++] = registry->slots[i].pid;
	SpinLockRelease(&registry->mutex);
	for (int i = 0; i < n; i++)
		kill(pids[i], SIGTERM);
	pfree(pids);
}

/* Was this worker started by a launcher that is gone? */
static bool
worker_orphaned(void)
{
	pid_t		launcher;

	SpinLockAcquire(&registry->mutex);
	launcher = registry->launcher;
	SpinLockRelease(&registry->mutex);
	return launcher != MyBgworkerEntry->bgw_notify_pid;
}

/*
 * DROP DATABASE, ALTER DATABASE RENAME and CREATE DATABASE ... TEMPLATE
 * refuse while another process is connected: stop our worker there first
 * (the launcher waits before starting it again, and does not once the
 * database is gone or renamed away). Only for a caller the command will
 * accept: its owner or a superuser (RENAME and a copy need CREATEDB too);
 * anyone else gets the command's own error, with the worker left running.
 */
static void
stop_worker_for(const char *dbname, bool needs_createdb)
{
	Oid			database = get_database_oid(dbname, true);
	pid_t		pid;

	if (!OidIsValid(database) || (pid = registry_find(database)) == 0)
		return;
	if (!superuser() &&
		(!pg_database_ownercheck(database, GetUserId()) ||
		 (needs_createdb && !have_createdb_privilege())))
		return;
	kill(pid, SIGTERM);
	for (int i = 0; i < 1000 && registry_find(database) == pid; i++)
	{
		CHECK_FOR_INTERRUPTS();
		pg_usleep(10000L);
	}
}

static void
pipeline_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				 ProcessUtilityContext context, ParamListInfo params,
				 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;

	if (registry != NULL && IsA(stmt, DropdbStmt))
		stop_worker_for(((DropdbStmt *) stmt)->dbname, false);
	else if (registry != NULL && IsA(stmt, RenameStmt) &&
			 ((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
		stop_worker_for(((RenameStmt *) stmt)->subname, true);
	else if (registry != NULL && IsA(stmt, CreatedbStmt))
	{
		ListCell   *lc;

		foreach(lc, ((CreatedbStmt *) stmt)->options)
		{
			DefElem    *option = lfirst(lc);

			if (strcmp(option->defname, "template") == 0 && option->arg != NULL)
				stop_worker_for(defGetString(option), true);
		}
	}
	if (prev_utility_hook)
		prev_utility_hook(pstmt, queryString, readOnlyTree, context, params,
						  queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

/* ---- setup, from _PG_init ---- */

void
worker_init(void)
{
	BackgroundWorker launcher;

	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomStringVariable("pipeline.database",
							   "Databases whose pipelines background workers run.",
							   "A comma-separated list; empty: no workers.",
							   &worker_databases, "", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pipeline.max_workers",
							"Most pipeline background workers at once (one per database).",
							NULL, &max_workers, 8, 1, 1024, PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	MarkGUCPrefixReserved("pipeline");

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = registry_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = registry_startup;
	prev_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = pipeline_utility;

	memset(&launcher, 0, sizeof(launcher));
	launcher.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	launcher.bgw_start_time = BgWorkerStart_RecoveryFinished;
	launcher.bgw_restart_time = 10;
	snprintf(launcher.bgw_library_name, BGW_MAXLEN, "pipeline");
	snprintf(launcher.bgw_function_name, BGW_MAXLEN, "pipeline_launcher_main");
	snprintf(launcher.bgw_name, BGW_MAXLEN, "pipeline launcher");
	snprintf(launcher.bgw_type, BGW_MAXLEN, "pipeline launcher");
	RegisterBackgroundWorker(&launcher);
}

/* ---- the launcher ---- */

typedef struct Managed
{
	char		database[NAMEDATALEN];
	BackgroundWorkerHandle *handle;
	TimestampTz started_at;
	TimestampTz not_before;		/* restart backoff */
	int			restarts;		/* quick exits in a row */
} Managed;

/* A worker that ran this long before it exited starts again at once. */
#define HEALTHY_RUN_MS 60000

static void
start_worker(Managed *m)
{
	BackgroundWorker worker;
	MemoryContext old;
	bool		registered;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;	/* the launcher decides */
	worker.bgw_notify_pid = MyProcPid;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pipeline");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "pipeline_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pipeline worker %s", m->database);
	snprintf(worker.bgw_type, BGW_MAXLEN, "pipeline worker");
	strlcpy(worker.bgw_extra, m->database, BGW_EXTRALEN);
	/* the handle is allocated in the current context: it must outlive the tick */
	old = MemoryContextSwitchTo(TopMemoryContext);
	registered = RegisterDynamicBackgroundWorker(&worker, &m->handle);
	MemoryContextSwitchTo(old);
	m->started_at = GetCurrentTimestamp();
	if (!registered)
	{
		m->handle = NULL;
		ereport(WARNING,
				(errmsg("could not start the pipeline worker for database \"%s\"", m->database),
				 errhint("Raise max_worker_processes.")));
	}
}

/*
 * Does the database exist and accept connections? A heap scan of the shared
 * catalog, as the autovacuum launcher does: without a database of its own,
 * the launcher cannot use catalog indexes.
 */
static bool
database_exists(const char *name)
{
	bool		exists = false;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;

	StartTransactionCommand();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (!exists && HeapTupleIsValid(tuple = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tuple);

		exists = strcmp(NameStr(db->datname), name) == 0 && db->datallowconn;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return exists;
}

/* One pass: start what should run, stop what should not. Returns ms to sleep. */
static long
launcher_tick(List **managed)
{
	char	   *copy = pstrdup(worker_databases);
	List	   *wanted = NIL;
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();
	long		sleep_ms = 10000;

	if (!SplitIdentifierString(copy, ',', &wanted))
	{
		ereport(WARNING, (errmsg("invalid list syntax in pipeline.database")));
		wanted = NIL;
	}
	foreach(lc, *managed)
	{
		Managed    *m = lfirst(lc);
		bool		still = false;
		ListCell   *w;

		foreach(w, wanted)
			still |= strcmp(lfirst(w), m->database) == 0;
		if (!still && m->handle)
		{
			TerminateBackgroundWorker(m->handle);
			pfree(m->handle);
			m->handle = NULL;
		}
	}
	foreach(lc, wanted)
	{
		const char *name = lfirst(lc);
		Managed    *m = NULL;
		ListCell   *e;
		pid_t		pid;

		foreach(e, *managed)
			if (strcmp(((Managed *) lfirst(e))->database, name) == 0)
				m = lfirst(e);
		if (m == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			m = palloc0(sizeof(Managed));
			strlcpy(m->database, name, NAMEDATALEN);
			*managed = lappend(*managed, m);
			MemoryContextSwitchTo(old);
		}
		if (m->handle && GetBackgroundWorkerPid(m->handle, &pid) != BGWH_STOPPED)
			continue;			/* running or starting */
		if (m->handle)
		{
			long		delay;

			/*
			 * It stopped. After a long healthy run, start again in a
			 * second; after a quick exit, wait twice as long as last time,
			 * up to a minute.
			 */
			if (TimestampDifferenceExceeds(m->started_at, now, HEALTHY_RUN_MS))
				m->restarts = 0;
			m->restarts = Min(m->restarts + 1, 7);
			delay = Min(1000L << (m->restarts - 1), 60000L);
			m->not_before = TimestampTzPlusMilliseconds(now, delay);
			ereport(LOG,
					(errmsg("pipeline worker for database \"%s\" stopped, starting it again in %ld ms",
							m->database, delay)));
			pfree(m->handle);
			m->handle = NULL;
		}
		if (now < m->not_before)
		{
			sleep_ms = Min(sleep_ms, TimestampDifferenceMilliseconds(now, m->not_before) + 1);
			continue;
		}
		if (!database_exists(name))
			continue;			/* listed but absent (or dropped): check again later */
		start_worker(m);
	}
	return sleep_ms;
}

void
pipeline_launcher_main(Datum arg)
{
	List	   *managed = NIL;	/* in TopMemoryContext */
	MemoryContext tick = AllocSetContextCreate(TopMemoryContext, "pipeline launcher tick",
											   ALLOCSET_SMALL_SIZES);

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	/* a predecessor's workers are not ours to watch: stop them, start ours */
	registry_become_launcher();

	for (;;)
	{
		long		sleep_ms;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		/* the parsed database list is per tick; what is managed lives on */
		MemoryContextReset(tick);
		old = MemoryContextSwitchTo(tick);
		sleep_ms = launcher_tick(&managed);
		MemoryContextSwitchTo(old);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ---- a database's worker ---- */

typedef struct Continuous
{
	char	   *name;
	long		poll_ms;
	long		retry_delay_ms;
	int			failures;		/* failed runs in a row */
	TimestampTz next_run;
} Continuous;

/*
 * In a PG_CATCH: log the error, keep it for pipeline.workers, and abort
 * the transaction, so that the worker goes on.
 */
static void
swallow_error(MemoryContext oldcontext)
{
	ErrorData  *error;

	MemoryContextSwitchTo(oldcontext);
	error = CopyErrorData();
	EmitErrorReport();
	FlushErrorState();
	AbortCurrentTransaction();
	registry_note_error(error->message);
	FreeErrorData(error);
}

/*
 * Run one statement in a transaction of its own; an error is reported and
 * swallowed, so that one broken pipeline never stops the worker. Returns
 * the first column of the first row as int8 (0 if none, -1 on error). The
 * statement (with one text parameter, possibly unused) is prepared once:
 * polls are the worker's hot path.
 */
static int64
run_in_transaction(SPIPlanPtr *plan, const char *sql, const char *arg)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	int64		result = 0;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, sql);
	PG_TRY();
	{
		Oid			type = TEXTOID;
		char		nulls;
		Datum		value = text_arg(arg, &nulls);
		bool		isnull;

		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (*plan == NULL)
		{
			SPIPlanPtr	fresh = SPI_prepare(sql, 1, &type);

			if (fresh == NULL)
				elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
			SPI_keepplan(fresh);
			*plan = fresh;
		}
		if (SPI_execute_plan(*plan, &value, &nulls, false, 1) == SPI_OK_SELECT &&
			SPI_processed > 0)
		{
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

			result = isnull ? 0 : DatumGetInt64(d);
		}
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		swallow_error(oldcontext);
		result = -1;
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
	return result;
}

/*
 * The continuous pipelines, as they are now. *installed tells whether the
 * extension is there at all.
 */
static List *
read_continuous_guarded(List *previous, MemoryContext context, bool *installed)
{
	List	   *result = NIL;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	*installed = OidIsValid(get_extension_oid("pipeline", true));
	if (*installed)
	{
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (SPI_execute("SELECT name, "
						"(EXTRACT(epoch FROM poll_interval) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8, "
						"(EXTRACT(epoch FROM retry_delay) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8 "
						"FROM pipeline.pipelines WHERE enabled AND continuous ORDER BY name",
						true, 0) == SPI_OK_SELECT)
		{
			for (uint64 i = 0; i < SPI_processed; i++)
			{
				MemoryContext old = MemoryContextSwitchTo(context);
				Continuous *c = palloc0(sizeof(Continuous));
				bool		isnull;
				ListCell   *lc;

				c->name = pstrdup(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
				c->poll_ms = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
														 SPI_tuptable->tupdesc, 2, &isnull));
				c->retry_delay_ms = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
																SPI_tuptable->tupdesc, 3, &isnull));
				/* keep the schedule of pipelines we already knew */
				foreach(lc, previous)
					if (strcmp(((Continuous *) lfirst(lc))->name, c->name) == 0)
					{
						c->next_run = ((Continuous *) lfirst(lc))->next_run;
						c->failures = ((Continuous *) lfirst(lc))->failures;
					}
				result = lappend(result, c);
				MemoryContextSwitchTo(old);
			}
		}
		SPI_finish();
		PopActiveSnapshot();
	}
	CommitTransactionCommand();
	return result;
}

/*
 * An error here (the catalog unreadable) is noted for pipeline.workers and
 * the tick does nothing; the next one reads again.
 */
static List *
read_continuous(List *previous, MemoryContext context, bool *installed)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	List	   *result = NIL;

	PG_TRY();
	{
		result = read_continuous_guarded(previous, context, installed);
	}
	PG_CATCH();
	{
		swallow_error(oldcontext);
		*installed = false;
		result = NIL;
	}
	PG_END_TRY();
	return result;
}

/* Worker state between ticks. */
typedef struct WorkerState
{
	List	   *continuous;		/* Continuous, in context */
	MemoryContext context;
	bool		installed;
	TimestampTz next_refresh;	/* re-read the pipelines, run the due ones */
	SPIPlanPtr	run_plan;
	SPIPlanPtr	due_plan;
	SPIPlanPtr	refresh_plan;
	SPIPlanPtr	has_matviews_plan;
} WorkerState;

/*
 * Once a second: re-read the continuous pipelines (new, altered, dropped)
 * and run what is due (cascades, retries, continuous matviews). Polls in between cost one
 * transaction per continuous pipeline, which keeps an idle worker cheap.
 */
static void
worker_refresh(WorkerState *state)
{
	MemoryContext fresh = AllocSetContextCreate(TopMemoryContext, "pipeline worker tick",
												ALLOCSET_DEFAULT_SIZES);

	state->continuous = read_continuous(state->continuous, fresh, &state->installed);
	MemoryContextDelete(state->context);
	state->context = fresh;
	if (state->installed)
	{
		(void) run_in_transaction(&state->due_plan,
								  "SELECT pg_catalog.count(*) FROM pg_catalog.pipeline_run_due() WHERE $1 IS NULL",
								  NULL);
		/*
		 * Deferred incremental views with option continuous (from version
		 * 0.2 of the extension's SQL on: the library may be newer).
		 */
		if (run_in_transaction(&state->has_matviews_plan,
							   "SELECT pg_catalog.count(*) FROM pg_catalog.pg_proc "
							   "WHERE proname OPERATOR(pg_catalog.=) 'pipeline_refresh_due'::pg_catalog.name "
							   "AND $1 IS NULL", NULL) > 0)
			(void) run_in_transaction(&state->refresh_plan,
									  "SELECT pg_catalog.count(*) FROM pg_catalog.pipeline_refresh_due() WHERE $1 IS NULL",
									  NULL);
	}
	state->next_refresh = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), IDLE_TICK_MS);
}

/*
 * After the n-th failed run in a row: poll_interval * 2^n, at most
 * retry_delay (and never less than poll_interval).
 */
static long
continuous_backoff_ms(const Continuous *c)
{
	long		cap = Max(c->retry_delay_ms, c->poll_ms);
	long		delay = c->poll_ms;

	for (int i = 0; i < c->failures && delay < cap; i++)
		delay *= 2;
	return Min(delay, cap);
}

/* One pass over the database; returns how long to sleep. */
static long
worker_tick(WorkerState *state)
{
	long		sleep_ms;
	ListCell   *lc;

	if (GetCurrentTimestamp() >= state->next_refresh)
		worker_refresh(state);
	sleep_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), state->next_refresh);
	if (!state->installed)
		return sleep_ms;		/* nothing to do here until CREATE EXTENSION */

	foreach(lc, state->continuous)
	{
		Continuous *c = lfirst(lc);
		TimestampTz now = GetCurrentTimestamp();

		if (now >= c->next_run)
		{
			int64		loaded;

			/* rows read, or -1 for a failed run (or an error around it) */
			extract_writer_wait_ms = Min(c->poll_ms, WRITER_WAIT_MS);
			loaded = run_in_transaction(&state->run_plan,
										"SELECT CASE WHEN status OPERATOR(pg_catalog.=) 'failed' THEN -1 "
										"ELSE rows_read END "
										"FROM pg_catalog.pipeline_run($1, 'continuous')",
										c->name);
			extract_writer_wait_ms = WRITER_WAIT_MS;

			c->failures = loaded < 0 ? c->failures + 1 : 0;
			if (loaded < 0)
				c->next_run = TimestampTzPlusMilliseconds(now, continuous_backoff_ms(c));
			else if (loaded > 0)
			{
				/* a run that read rows may have left more: look again at once */
				c->next_run = now;
				sleep_ms = 0;
			}
			else
				c->next_run = TimestampTzPlusMilliseconds(now, c->poll_ms);
		}
		sleep_ms = Min(sleep_ms, TimestampDifferenceMilliseconds(GetCurrentTimestamp(), c->next_run));
		CHECK_FOR_INTERRUPTS();
	}
	return sleep_ms;
}

void
pipeline_worker_main(Datum arg)
{
	char		database[NAMEDATALEN];
	WorkerState state = {NIL, NULL, false, 0, NULL, NULL};

	strlcpy(database, MyBgworkerEntry->bgw_extra, NAMEDATALEN);
	/* SIGTERM through CHECK_FOR_INTERRUPTS: a run in progress rolls back */
	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(database, NULL, 0);
	/*
	 * The worker's own statements resolve nothing from a schema users can
	 * write (runs pin their owner's search_path on top of this), and runs
	 * need READ COMMITTED whatever ALTER DATABASE set. Session-level, so a
	 * SET inside a run can still change them, and its frame restores them.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_SESSION);
	/* one open writer must not stall every pipeline of the database */
	extract_writer_wait_ms = WRITER_WAIT_MS;
	registry_enter();
	state.context = AllocSetContextCreate(TopMemoryContext, "pipeline worker",
										  ALLOCSET_DEFAULT_SIZES);
	ereport(LOG, (errmsg("pipeline worker started for database \"%s\"", database)));

	for (;;)
	{
		long		sleep_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (worker_orphaned())
		{
			ereport(LOG, (errmsg("pipeline worker for database \"%s\" exits: its launcher was replaced",
								 database)));
			proc_exit(0);
		}
		sleep_ms = worker_tick(&state);
		if (sleep_ms > 0)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 sleep_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
}

/*
 * pipeline_workers(): one row per running worker of the cluster, with the
 * last error of its own (outside a run's recorded failure), so an error
 * that keeps a worker from doing anything is visible without the server
 * log. The error text (it may quote anyone's data) only for superusers and
 * members of pg_read_all_stats, as pg_stat_activity does for queries.
 */
PG_FUNCTION_INFO_V1(pipeline_workers);

Datum
pipeline_workers(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		see_errors = has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);
	WorkerSlot *copy;
	int			n = 0;

	InitMaterializedSRF(fcinfo, 0);
	if (registry == NULL)
		return (Datum) 0;		/* the library is not preloaded */
	copy = palloc(sizeof(WorkerSlot) * max_workers);
	SpinLockAcquire(&registry->mutex);
	for (int i = 0; i < max_workers; i++)
		if (registry->slots[i].pid != 0)
			copy[n++] = registry->slots[i];
	SpinLockRelease(&registry->mutex);

	for (int i = 0; i < n; i++)
	{
		Datum		values[6];
		bool		nulls[6] = {false, false, false, false, false, false};
		char	   *name = get_database_name(copy[i].database);
		NameData	datname;

		nulls[0] = name == NULL;
		if (name)
		{
			namestrcpy(&datname, name);
			values[0] = NameGetDatum(&datname);
		}
		values[1] = Int32GetDatum(copy[i].pid);
		values[2] = TimestampTzGetDatum(copy[i].started_at);
		values[3] = Int64GetDatum(copy[i].errors);
		nulls[4] = copy[i].error_at == 0;
		values[4] = TimestampTzGetDatum(copy[i].error_at);
		nulls[5] = copy[i].error_at == 0 || !see_errors;
		values[5] = nulls[5] ? (Datum) 0 : CStringGetTextDatum(copy[i].error);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
