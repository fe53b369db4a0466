/*-------------------------------------------------------------------------
 *
 * matview_capture.c
 *	  The statement trigger on a view's base tables.
 *
 * Deferred views: the changed rows' group keys (and, for inserts into an
 * algebraic view, the aggregates' arguments) go to the change log as one
 * row of arrays per statement side, in the writer's transaction, so a
 * change and its log row commit or vanish together.
 *
 * Immediate views: the view is brought up to date inside the statement.
 * Writers of one immediate view serialise on an ExclusiveLock on it (as
 * pg_ivm does); an INSERT into an algebraic view is one prepared
 * INSERT .. ON CONFLICT, the common case kept cheap.
 *
 * Both run as the view's owner under its pinned settings, whoever writes.
 * Plans are prepared once per trigger and backend and kept.
 *
 *-------------------------------------------------------------------------
 */
#include "pipeline.h"

#include "access/xact.h"
#include "catalog/pg_class.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "utils/snapmgr.h"
#include "utils/hsearch.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(pipeline_matview_capture);

/*
 * An error of the view's maintenance, raised in a writer's statement. Its
 * context and internal query are the SQL that maintains the view, which
 * holds the view's query: row-level security hides that from roles other
 * than the owner, so such a writer gets the error without them.
 */
static void
rethrow_for_writer(const MatView *mv, Oid writer)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(TopTransactionContext);
	edata = CopyErrorData();
	if (!has_privs_of_role(writer, mv->owner))
	{
		FlushErrorState();
		edata->internalquery = NULL;
		edata->internalpos = 0;
		edata->cursorpos = 0;
		edata->context = psprintf("while maintaining incremental materialized view %s",
								  get_rel_name(mv->relid));
		ReThrowError(edata);
	}
	PG_RE_THROW();
}

typedef struct CaptureEntry
{
	Oid			trigger;		/* hash key: pg_trigger oid */
	MatView    *mv;
	char	   *capture_new;	/* this base table's capture SELECT over the
								 * new rows (transition table __pipeline_new) */
	char	   *capture_old;	/* ... over the old rows (__pipeline_old) */
	int			base_index;		/* this base table's place in mv->bases */
	SPIPlanPtr	log_new;		/* deferred: log the new rows */
	SPIPlanPtr	log_old;		/* deferred: log the old rows */
	SPIPlanPtr	merge_new;		/* immediate, algebraic: merge inserted rows */
	FastPath   *fast;			/* ... one row, without SQL (matview_fastpath.c) */
} CaptureEntry;

static HTAB *captures = NULL;
static MemoryContext capture_context = NULL;

/*
 * The statement a view's capture last ran for. One statement can fire
 * several capture triggers of a view: INSERT .. ON CONFLICT DO UPDATE and
 * MERGE fire the INSERT and the UPDATE (and DELETE) triggers of a table, a
 * writable CTE or a cascading foreign key fires those of several tables.
 * They all run after the whole statement, so each sees every change of it,
 * not only its own transition rows (see statement_kind).
 */
typedef struct StatementMark
{
	int64		view;			/* hash key: the view's id */
	LocalTransactionId lxid;	/* the statement: its transaction, */
	CommandId	cid;			/* and the command id of its snapshot */
	Oid			base;			/* the first base table it changed */
} StatementMark;

static HTAB *statements = NULL;

typedef enum StatementKind
{
	FIRST_CAPTURE,				/* the first capture of the view in this statement */
	SAME_TABLE,					/* another one, of the same base table */
	OTHER_TABLE					/* another one, of another base table */
} StatementKind;

/*
 * Which capture of the view this is in the current statement. A statement's
 * after-statement triggers (and those of the foreign key actions it causes)
 * fire under its snapshot: its transaction and command id name it. Those of
 * a statement run by a row trigger of it fire earlier, with a later
 * command id.
 */
static StatementKind
statement_kind(const MatView *mv, Oid base)
{
	StatementMark *mark;
	bool		found;
	CommandId	cid;

	if (!ActiveSnapshotSet())
		return FIRST_CAPTURE;
	cid = GetActiveSnapshot()->curcid;
	if (statements == NULL)
	{
		HASHCTL		ctl = {0};

		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(StatementMark);
		ctl.hcxt = capture_context;
		statements = hash_create("pipeline matview statements", 32, &ctl,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	mark = hash_search(statements, &mv->id, HASH_ENTER, &found);
	/*
	 * A later command id in the mark: a statement that started after this
	 * one (a trigger of this statement writing a base table) and whose
	 * captures ran first. It counts as part of this statement.
	 */
	if (!found || mark->lxid != MyProc->lxid || mark->cid < cid)
	{
		mark->lxid = MyProc->lxid;
		mark->cid = cid;
		mark->base = base;
		return FIRST_CAPTURE;
	}
	return mark->base == base ? SAME_TABLE : OTHER_TABLE;
}

/* The capture SELECT reading the transition table "rows". */
static char *
capture_of(const char *capture, const char *rows)
{
	StringInfoData s;
	const char *p = capture;
	const char *hit;

	initStringInfo(&s);
	while ((hit = strstr(p, CAPTURE_ROWS)) != NULL)
	{
		appendBinaryStringInfo(&s, p, hit - p);
		appendStringInfoString(&s, rows);
		p = hit + strlen(CAPTURE_ROWS);
	}
	appendStringInfoString(&s, p);
	return s.data;
}

static SPIPlanPtr
keep_plan(const char *sql)
{
	SPIPlanPtr	plan = SPI_prepare(sql, 0, NULL);

	if (plan == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/* INSERT INTO the log: one row of arrays for one side of a statement. */
static char *
log_sql(const CaptureEntry *e, bool new_rows)
{
	const MatView *mv = e->mv;
	StringInfoData cols,
				aggs;
	const char *distinct;

	initStringInfo(&cols);
	initStringInfo(&aggs);
	appendStringInfoString(&cols, "sign");
	appendStringInfo(&aggs, "%d", mv->nkeys == 0 ? 0 : new_rows ? 1 : -1);
	for (int i = 1; i <= mv->nkeys; i++)
	{
		appendStringInfo(&cols, ", k%d", i);
		appendStringInfo(&aggs, ", pg_catalog.array_agg(c.k%d)", i);
	}
	/* the algebraic path only reads the arguments of inserted rows */
	for (int i = 1; new_rows && i <= mv->nargs; i++)
	{
		appendStringInfo(&cols, ", a%d", i);
		appendStringInfo(&aggs, ", pg_catalog.array_agg(c.a%d)", i);
	}
	/* groups to recompute need each key once: hashing here is cheaper than the log */
	if (new_rows && mv->algebraic)
		distinct = "*";
	else
	{
		StringInfoData keys;

		initStringInfo(&keys);
		appendStringInfoString(&keys, "DISTINCT ");
		for (int i = 1; i <= mv->nkeys; i++)
			appendStringInfo(&keys, "%sc.k%d", i > 1 ? ", " : "", i);
		distinct = mv->nkeys > 0 ? keys.data : "*";
	}
	return psprintf("INSERT INTO %s (%s) SELECT %s FROM (SELECT %s FROM (%s) c) c "
					"HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0",
					matview_log_name(mv->id), cols.data, aggs.data, distinct,
					new_rows ? e->capture_new : e->capture_old);
}

/* The cached definition of the trigger that fired; plans come on first use. */
static CaptureEntry *
capture_entry(TriggerData *td)
{
	CaptureEntry *e;
	bool		found;
	MemoryContext old;
	MatView    *mv;
	Oid			base = RelationGetRelid(td->tg_relation);
	int			index = 0;
	ListCell   *lc;

	if (captures == NULL)
	{
		HASHCTL		ctl = {0};

		capture_context = AllocSetContextCreate(CacheMemoryContext, "pipeline matview capture",
												ALLOCSET_DEFAULT_SIZES);
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(CaptureEntry);
		ctl.hcxt = capture_context;
		captures = hash_create("pipeline matview captures", 32, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	e = hash_search(captures, &td->tg_trigger->tgoid, HASH_FIND, &found);
	if (found)
		return e;

	if (td->tg_trigger->tgnargs != 1)
		elog(ERROR, "pipeline_matview_capture takes the view's id");
	mv = matview_read_by_id(pg_strtoint64(td->tg_trigger->tgargs[0]));
	old = MemoryContextSwitchTo(capture_context);
	mv = matview_copy(mv);
	foreach(lc, mv->bases)
	{
		if (lfirst_oid(lc) == base)
			break;
		index++;
	}
	if (index >= list_length(mv->bases))
		elog(ERROR, "table \"%s\" is not a base table of materialized view \"%s\"",
			 RelationGetRelationName(td->tg_relation), get_rel_name(mv->relid));
	MemoryContextSwitchTo(old);

	e = hash_search(captures, &td->tg_trigger->tgoid, HASH_ENTER, &found);
	memset(e, 0, sizeof(CaptureEntry));
	e->trigger = td->tg_trigger->tgoid;
	e->mv = mv;
	e->base_index = index;
	old = MemoryContextSwitchTo(capture_context);
	e->capture_new = capture_of(list_nth(mv->capture, index), "__pipeline_new");
	e->capture_old = capture_of(list_nth(mv->capture, index), "__pipeline_old");
	MemoryContextSwitchTo(old);
	return e;
}

static bool
has_rows(Tuplestorestate *rows)
{
	return rows != NULL && tuplestore_tuple_count(rows) > 0;
}

static void
run_plan(SPIPlanPtr plan)
{
	int			rc = SPI_execute_plan(plan, NULL, NULL, false, 0);

	if (rc < 0)
		elog(ERROR, "matview capture failed: %s", SPI_result_code_string(rc));
}

/* A row sign = 0: the next refresh recomputes the whole view. */
static void
log_full_recompute(const MatView *mv)
{
	if (SPI_execute(psprintf("INSERT INTO %s (sign) VALUES (0)", matview_log_name(mv->id)),
					false, 0) < 0)
		elog(ERROR, "could not log a full recompute");
}

/*
 * Writers of different base tables of a deferred join view go one at a
 * time. A writer's capture joins its rows with the other tables as its
 * snapshot shows them: a fact inserted while another transaction moves its
 * dimension row to another group would be keyed to the old group, and the
 * dimension's capture would not see the fact. Per view and base table i,
 * a writer of i takes a ShareLock on object (view, i) and a
 * RowExclusiveLock on the others, until commit: writers of one table do
 * not wait for each other, writers of two tables do, and the capture that
 * waited takes its snapshot after the other committed. Under REPEATABLE
 * READ the snapshot is older than the wait: the log asks for a full
 * recompute instead.
 */
static bool
serialize_join_writers(const CaptureEntry *e)
{
	const MatView *mv = e->mv;

	if (list_length(mv->bases) < 2)
		return true;
	for (int i = 0; i < list_length(mv->bases); i++)
		LockDatabaseObject(RelationRelationId, mv->relid, i + 1,
						   i == e->base_index ? ShareLock : RowExclusiveLock);
	return !IsolationUsesXactSnapshot();
}

/*
 * Log one trigger's rows. After a capture of another base table in the
 * same statement (writable CTE, cascading foreign key), the captures keyed
 * old rows against the other tables as the statement left them, not as
 * they were, so a group that lost rows may be missing from the log: the
 * next refresh recomputes the whole view.
 */
static void
log_changes(CaptureEntry *e, TriggerData *td, StatementKind kind)
{
	bool		fresh = serialize_join_writers(e);

	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event) || kind == OTHER_TABLE || !fresh)
		log_full_recompute(e->mv);
	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
		return;
	if (has_rows(td->tg_oldtable))
	{
		if (e->log_old == NULL)
			e->log_old = keep_plan(log_sql(e, false));
		run_plan(e->log_old);
	}
	if (has_rows(td->tg_newtable))
	{
		if (e->log_new == NULL)
			e->log_new = keep_plan(log_sql(e, true));
		run_plan(e->log_new);
	}
}

/*
 * Writers of an immediate view go one at a time, each seeing the last
 * one's result; under a transaction snapshot they would not.
 */
static void
lock_immediate_view(const MatView *mv)
{
	if (IsolationUsesXactSnapshot())	/* no string work on the hot path */
		require_read_committed(psprintf("immediate materialized view \"%s\" cannot be maintained",
										get_rel_name(mv->relid)),
							   "Write in a READ COMMITTED transaction, or recreate the view with refresh 'deferred'.");
	LockRelationOid(mv->relid, ExclusiveLock);
}

/* A one-row INSERT into an algebraic single-table view, without SPI. */
static bool
fast_insert(CaptureEntry *e, TriggerData *td, StatementKind kind)
{
	const MatView *mv = e->mv;
	IdentityFrame frame;
	bool		done;

	if (kind != FIRST_CAPTURE || !TRIGGER_FIRED_BY_INSERT(td->tg_event) || !mv->algebraic ||
		list_length(mv->bases) != 1 || td->tg_newtable == NULL ||
		tuplestore_tuple_count(td->tg_newtable) != 1)
		return false;
	matview_enter(mv, &frame);
	lock_immediate_view(mv);
	done = matview_fast_insert(&e->fast, capture_context, mv, RelationGetRelid(td->tg_relation),
							   e->capture_new, td->tg_newtable);
	identity_leave(&frame);
	return done;
}

/*
 * Bring an immediate view up to date with one trigger's rows. Captures
 * after the first of a statement see rows the earlier ones applied: one of
 * the same table (an upsert's INSERT after its UPDATE) recomputes the
 * groups of its new rows rather than merge them a second time; one of
 * another table (writable CTE, cascading foreign key) recomputes the whole
 * view, since the earlier captures keyed old rows against the other tables
 * as the statement left them and may have missed a group that lost rows.
 */
static void
apply_changes(CaptureEntry *e, TriggerData *td, StatementKind kind)
{
	const MatView *mv = e->mv;
	StringInfoData delta;

	lock_immediate_view(mv);
	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event) || kind == OTHER_TABLE)
	{
		(void) matview_apply(mv, NULL, false, true, InvalidSnapshot);
		return;
	}
	if (mv->algebraic && kind == FIRST_CAPTURE && !has_rows(td->tg_oldtable))
	{
		if (e->merge_new == NULL)
			e->merge_new = keep_plan(matview_merge_sql(mv,
													   psprintf("SELECT 1 AS sign, c.* FROM (%s) c",
																e->capture_new),
													   false));
		run_plan(e->merge_new);
		return;
	}
	initStringInfo(&delta);
	if (has_rows(td->tg_oldtable))
		appendStringInfo(&delta, "SELECT -1 AS sign, c.* FROM (%s) c", e->capture_old);
	/* sign -1: the groups are recomputed, the rows not merged */
	if (has_rows(td->tg_newtable))
		appendStringInfo(&delta, "%sSELECT %d AS sign, c.* FROM (%s) c",
						 delta.len > 0 ? " UNION ALL " : "",
						 kind == FIRST_CAPTURE ? 1 : -1, e->capture_new);
	(void) matview_apply(mv, delta.data, false, mv->nkeys == 0, InvalidSnapshot);
}

Datum
pipeline_matview_capture(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	CaptureEntry *e;
	IdentityFrame frame;
	StatementKind kind;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_STATEMENT(td->tg_event))
		elog(ERROR, "pipeline_matview_capture must be a FOR EACH STATEMENT trigger");
	e = captures ? hash_search(captures, &td->tg_trigger->tgoid, HASH_FIND, NULL) : NULL;
	if (e == NULL)
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		e = capture_entry(td);
		SPI_finish();
	}
	/*
	 * Before the statement of an immediate view's writer: its lock on the
	 * view, taken before the statement locks rows of the base table. Taken
	 * after, by the capture, two writers could each hold a row the other
	 * wants while one holds the view (40P01 in multi-statement transactions).
	 */
	if (TRIGGER_FIRED_BEFORE(td->tg_event))
	{
		if (e->mv->immediate)
			lock_immediate_view(e->mv);
		return PointerGetDatum(NULL);
	}
	if (!TRIGGER_FIRED_BY_TRUNCATE(td->tg_event) &&
		!has_rows(td->tg_oldtable) && !has_rows(td->tg_newtable))
		return PointerGetDatum(NULL);
	kind = TRIGGER_FIRED_BY_TRUNCATE(td->tg_event) ? FIRST_CAPTURE :
		statement_kind(e->mv, RelationGetRelid(td->tg_relation));
	if (e->mv->immediate && fast_insert(e, td, kind))
		return PointerGetDatum(NULL);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_register_trigger_data(td) != SPI_OK_TD_REGISTER)
		elog(ERROR, "could not register the transition tables");
	matview_enter(e->mv, &frame);
	PG_TRY();
	{
		if (e->mv->immediate)
			apply_changes(e, td, kind);
		else
			log_changes(e, td, kind);
	}
	PG_CATCH();
	{
		rethrow_for_writer(e->mv, frame.saved_userid);
	}
	PG_END_TRY();
	identity_leave(&frame);
	SPI_finish();
	return PointerGetDatum(NULL);
}
