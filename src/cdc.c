/*-------------------------------------------------------------------------
 *
 * cdc.c
 *	  CDC pipelines: pipeline_create_cdc, one CDC run, the slot's state,
 *	  and dropping the slot with the pipeline.
 *
 * A CDC pipeline is a row of pipeline.pipelines (mode 'cdc', no single
 * source or target), so runs, retries, schedules, workers, status and
 * contracts work as for any pipeline, plus a row of pipeline.cdc with its
 * publication, target schema, connection, slot and applied LSN.
 *
 * Exactly once: a run applies the changes and stores the commit LSN it
 * reached in pipeline.cdc in the SAME transaction. Transactions at or
 * below the stored LSN are skipped when read again; the slot is confirmed
 * only up to an LSN already committed (not by the caller's own open
 * transaction: cdc_read) and flushed here (cdc_stream), so a crash or an
 * abort at any point leaves the source holding everything not yet applied.
 *
 *-------------------------------------------------------------------------
 */
#include "pipeline.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "replication/slot.h"
#include "replication/walreceiver.h"
#include "utils/acl.h"
#include "catalog/pg_class.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/pg_lsn.h"
#include "utils/regproc.h"

PG_FUNCTION_INFO_V1(pipeline_create_cdc);
PG_FUNCTION_INFO_V1(pipeline_cdc_slot);

/* An LSN as pg_lsn prints it. */
char *
lsn_text(XLogRecPtr lsn)
{
	return psprintf("%X/%X", LSN_FORMAT_ARGS(lsn));
}

/* Is the catalog of version 0.3 or later (ALTER EXTENSION UPDATE done)? */
bool
cdc_installed(void)
{
	Oid			nsp = get_namespace_oid("pipeline", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("cdc", nsp));
}

/* The pipeline.cdc row of a CDC pipeline. */
CdcSource *
cdc_read(const Pipeline *p)
{
	IdentityFrame frame;
	Oid			type = TEXTOID;
	Datum		name = CStringGetTextDatum(p->name);
	CdcSource  *src;
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;

	identity_enter_catalog(&frame);
	if (SPI_execute_with_args("SELECT publication, target_schema::text, connection, slot::text, "
							  "applied_lsn, events::oid, xmin, tables FROM pipeline.cdc "
							  "WHERE pipeline = $1",
							  1, &type, &name, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "CDC pipeline \"%s\" has no row in pipeline.cdc", p->name);
	identity_leave(&frame);
	tuple = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	src = palloc0(sizeof(CdcSource));
	src->publication = SPI_getvalue(tuple, desc, 1);
	src->target_schema = SPI_getvalue(tuple, desc, 2);
	src->connection = SPI_getvalue(tuple, desc, 3);
	src->slot = SPI_getvalue(tuple, desc, 4);
	src->applied_lsn = DatumGetLSN(SPI_getbinval(tuple, desc, 5, &isnull));
	d = SPI_getbinval(tuple, desc, 6, &isnull);
	src->events = isnull ? InvalidOid : DatumGetObjectId(d);

	/*
	 * An applied LSN this transaction wrote (an earlier run in the same
	 * transaction or statement) is not committed: it must not be confirmed
	 * to the slot, for this transaction may still abort. Any other version
	 * this snapshot sees is committed.
	 */
	d = SPI_getbinval(tuple, desc, 7, &isnull);
	src->applied_committed = !TransactionIdIsCurrentTransactionId(DatumGetTransactionId(d));
	d = SPI_getbinval(tuple, desc, 8, &isnull);
	src->tables_known = !isnull;
	if (!isnull)
	{
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &nulls, &n);
		for (int i = 0; i < n; i++)
			src->tables = lappend(src->tables, makeString(TextDatumGetCString(elems[i])));
	}
	src->local = src->connection == NULL;
	src->conninfo = src->local ? cdc_local_conninfo(p->owner) : src->connection;
	return src;
}

/* "schema.table" of each published table. */
static List *
table_names(List *tables)
{
	List	   *names = NIL;
	ListCell   *lc;

	foreach(lc, tables)
	{
		PublishedTable *t = lfirst(lc);

		names = lappend(names, makeString(psprintf("%s.%s", t->nspname, t->relname)));
	}
	return names;
}

/* A list of String as a text[] datum. */
static Datum
text_array(List *strings)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(strings), 1));
	ListCell   *lc;

	foreach(lc, strings)
		elems[foreach_current_index(lc)] = CStringGetTextDatum(strVal(lfirst(lc)));
	return PointerGetDatum(construct_array(elems, list_length(strings), TEXTOID, -1, false,
										   TYPALIGN_INT));
}

static void
store_tables(const Pipeline *p, List *tables)
{
	Oid			types[2] = {TEXTOID, TEXTARRAYOID};
	Datum		values[2] = {CStringGetTextDatum(p->name), text_array(tables)};

	run_catalog_statement("UPDATE pipeline.cdc SET tables = $2 WHERE pipeline = $1",
						  2, types, values, NULL, 1);
}

/*
 * A table added to the publication after the initial copy has rows the
 * target lacks, and only its later changes would arrive: refuse to run
 * (the pipeline pauses) until copying added tables is supported. Tables
 * removed from the publication are forgotten, so one added back is
 * noticed too. Pipelines made before 0.4 start with the tables of now.
 */
static void
check_copied_tables(const Pipeline *p, CdcSource *src, WalReceiverConn *conn)
{
	List	   *published = table_names(cdc_published_tables(conn, src->publication));
	List	   *kept = NIL;
	ListCell   *lc;

	if (!src->tables_known)
	{
		store_tables(p, published);
		src->tables = published;
		src->tables_known = true;
		return;
	}
	foreach(lc, published)
	{
		const char *name = strVal(lfirst(lc));

		if (!list_member(src->tables, lfirst(lc)))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table %s was added to publication \"%s\" of pipeline \"%s\" after its initial copy",
							name, src->publication, p->name),
					 errdetail("Its existing rows are not in the target; only its later changes would be applied."),
					 errhint("Copying added tables is not supported yet: remove the table from the publication "
							 "(ALTER PUBLICATION ... DROP TABLE), or drop the pipeline, empty its targets and create it again to copy every table.")));
		kept = lappend(kept, lfirst(lc));
	}
	if (list_length(kept) != list_length(src->tables))
	{
		store_tables(p, kept);
		src->tables = kept;
	}
}

static void
store_applied_lsn(const Pipeline *p, XLogRecPtr lsn)
{
	Oid			types[2] = {TEXTOID, LSNOID};
	Datum		values[2] = {CStringGetTextDatum(p->name), LSNGetDatum(lsn)};

	run_catalog_statement("UPDATE pipeline.cdc SET applied_lsn = $2 WHERE pipeline = $1",
						  2, types, values, NULL, 1);
}

/*
 * Apply as the owner the way the apply worker does, with lookups through
 * the key indexes. For a superuser's pipeline also in replica role (no
 * foreign key or ordinary triggers; ENABLE ALWAYS ones, such as those of
 * incremental views, still fire). Another owner's apply stays in origin
 * role: session_replication_role is a superuser's setting, and in replica
 * role the owner could write to a target while skipping the triggers and
 * foreign key checks that other roles put there (a foreign key referencing
 * the target, say), which its own writes could never skip.
 */
static void
enter_apply(IdentityFrame *frame, const Pipeline *p)
{
	identity_enter(frame, p->owner, p->search_path);
	if (superuser_arg(p->owner))
		(void) set_config_option("session_replication_role", "replica", PGC_SUSET,
								 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	identity_pin("enable_hashjoin", "off");
	identity_pin("enable_mergejoin", "off");
	identity_pin("enable_seqscan", "off");
}

/*
 * One run: read what the slot has up to the source's flush position (or
 * batch_size changes), apply it, store the new LSN. Called inside the
 * run's subtransaction (run.c), with SPI connected.
 */
CdcCounts
cdc_run(const Pipeline *p)
{
	CdcSource  *src = cdc_read(p);
	WalReceiverConn *conn;
	CdcApply   *apply = NULL;
	IdentityFrame frame;
	XLogRecPtr	upto = InvalidXLogRecPtr;
	CdcCounts	counts = {0};

	/* async commits of this server are decodable once flushed */
	if (src->local)
		XLogFlush(GetXLogInsertRecPtr());

	enter_apply(&frame, p);
	conn = cdc_connect(src->conninfo, p->name);
	PG_TRY();
	{
		cdc_check_publication(conn, src->publication, p->name);
		if (src->target_schema)
			check_copied_tables(p, src, conn);
		upto = cdc_source_flush_lsn(conn);
		if (upto > src->applied_lsn)
		{
			apply = cdc_apply_begin(p, src);
			cdc_stream(conn, src, upto, p->batch_size, apply);
		}
	}
	PG_FINALLY();
	{
		cdc_disconnect(conn);
	}
	PG_END_TRY();
	if (apply)
		counts = cdc_apply_end(apply);
	identity_leave(&frame);

	if (counts.end_lsn > src->applied_lsn)
		store_applied_lsn(p, counts.end_lsn);
	return counts;
}

/*
 * Will a failed CDC run fail the same way again? Applying is deterministic:
 * the same changes meet the same targets, so every error does, except the
 * passing ones: the connection (08), a serialization failure or deadlock
 * (40), resources (53), a cancel or shutdown (57), the system (58), a lock
 * or object busy (55P03, 55006), and internal errors (XX).
 */
bool
cdc_error_persists(const char *sqlstate)
{
	static const char *const passing[] = {"08", "40", "53", "57", "58", "XX", "55P03", "55006"};

	for (int i = 0; i < lengthof(passing); i++)
		if (strncmp(sqlstate, passing[i], strlen(passing[i])) == 0)
			return false;
	return true;
}

/* The default slot: the pipeline's name, made a valid and unique slot name. */
static char *
default_slot_name(const char *name)
{
	StringInfoData s;
	uint32		hash = DatumGetUInt32(hash_any((const unsigned char *) name, strlen(name)));

	initStringInfo(&s);
	appendStringInfoString(&s, "pipeline_");
	for (const char *c = name; *c && s.len < 40; c++)
		appendStringInfoChar(&s, (isalnum((unsigned char) *c) && isascii((unsigned char) *c)) ?
							 tolower((unsigned char) *c) : '_');
	appendStringInfo(&s, "_%u_%08x", MyDatabaseId, hash);
	return s.data;
}

static void
check_cdc_privileges(const char *connection)
{
	if (connection && !superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only superusers can create CDC pipelines with a connection string"),
				 errhint("Leave connection NULL to read a publication of this database as yourself.")));
	if (connection == NULL && !has_rolreplication(GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" cannot read replication slots",
						GetUserNameFromId(GetUserId(), false)),
				 errhint("A CDC pipeline's owner needs the REPLICATION attribute: ALTER ROLE %s REPLICATION;",
						 quote_identifier(GetUserNameFromId(GetUserId(), false)))));
}

static void
check_target_privileges(Oid relid)
{
	AclMode		needed = ACL_SELECT | ACL_INSERT | ACL_UPDATE | ACL_DELETE | ACL_TRUNCATE;

	if (pg_class_aclmask(relid, GetUserId(), needed, ACLMASK_ALL) != needed)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", get_rel_name(relid)),
				 errdetail("A CDC pipeline's owner needs SELECT, INSERT, UPDATE, DELETE and TRUNCATE on its target tables.")));
}

/* The events table: made when it does not exist, as the caller. */
static Oid
events_table(const char *name)
{
	List	   *names = qualified_name_list(name);
	RangeVar   *rv = makeRangeVarFromNameList(names);
	Oid			relid = RangeVarGetRelid(rv, NoLock, true);

	if (!OidIsValid(relid))
	{
		if (SPI_execute(psprintf("CREATE TABLE %s (id bigserial PRIMARY KEY, "
								 "lsn pg_catalog.pg_lsn NOT NULL, op pg_catalog.text NOT NULL, "
								 "relation pg_catalog.text NOT NULL, committed_at pg_catalog.timestamptz, "
								 "new pg_catalog.jsonb, old pg_catalog.jsonb)",
								 quote_qualified_identifier(rv->schemaname, rv->relname)),
						false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "could not create events table %s", name);
		CommandCounterIncrement();
		relid = RangeVarGetRelid(rv, NoLock, false);
	}
	/*
	 * The change stream is the owner's data: an existing table must be the
	 * owner's too, or its owner's triggers would run on every change (as
	 * the pipeline's owner) and its owner would read the stream.
	 */
	if (!pg_class_ownercheck(relid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("events table %s is not owned by the pipeline's owner", name),
				 errhint("Name a table of your own, or one that does not exist yet: it is created.")));
	if (pg_class_aclcheck(relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", get_rel_name(relid))));
	return relid;
}

/* The options' "events" key, and the options without it. */
static char *
take_events_option(Jsonb **options)
{
	Oid			type = JSONBOID;
	Datum		value = JsonbPGetDatum(*options);
	char	   *events;
	bool		isnull;

	if (SPI_execute_with_args("SELECT $1 OPERATOR(pg_catalog.->>) 'events', "
							  "$1 OPERATOR(pg_catalog.-) 'events'::pg_catalog.text",
							  1, &type, &value, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read options");
	events = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	*options = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2,
												&isnull));
	return events;
}

static void
catalog_insert_cdc(const Pipeline *p, const CdcSource *src)
{
	Oid			types[9] = {TEXTOID, OIDOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, LSNOID, OIDOID,
	TEXTARRAYOID};
	Datum		values[9];
	char		nulls[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

	values[0] = CStringGetTextDatum(p->name);
	values[1] = ObjectIdGetDatum(p->owner);
	values[2] = CStringGetTextDatum(src->publication);
	values[3] = text_arg(src->target_schema, &nulls[3]);
	values[4] = text_arg(src->connection, &nulls[4]);
	values[5] = CStringGetTextDatum(src->slot);
	values[6] = LSNGetDatum(src->applied_lsn);
	values[7] = ObjectIdGetDatum(src->events);
	nulls[7] = OidIsValid(src->events) ? ' ' : 'n';
	values[8] = text_array(src->tables);
	run_catalog_statement("INSERT INTO pipeline.cdc (pipeline, owner, publication, target_schema, "
						  "connection, slot, applied_lsn, events, tables) "
						  "VALUES ($1, $2::regrole, $3, $4, $5, $6, $7, $8::regclass, $9)",
						  9, types, values, nulls, 1);
}

/*
 * Check every published table against its target, and copy its rows in
 * the slot's snapshot when asked. Errors name the table.
 */
static void
prepare_targets(const Pipeline *p, const CdcSource *src, WalReceiverConn *conn,
				List *tables, bool copy_data)
{
	IdentityFrame frame;
	ListCell   *lc;

	enter_apply(&frame, p);
	foreach(lc, tables)
	{
		PublishedTable *t = lfirst(lc);
		Oid			target;

		if (strcmp(t->nspname, "pipeline") == 0)
			continue;
		if (src->local && OidIsValid(src->events) &&
			get_relname_relid(t->relname, get_namespace_oid(t->nspname, true)) == src->events)
			continue;
		if (src->target_schema == NULL)
			continue;
		if (src->local && strcmp(t->nspname, src->target_schema) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
					 errmsg("publication \"%s\" of pipeline \"%s\" publishes table %s of its own target schema",
							src->publication, p->name,
							quote_qualified_identifier(t->nspname, t->relname)),
					 errhint("Publish only the source tables (CREATE PUBLICATION ... FOR TABLE ...), or use another target schema.")));
		target = cdc_target_table(src->target_schema, t->relname, t->nspname, t->columns, p->name);
		check_target_privileges(target);
		if (t->keyed_changes && default_key(target) == NIL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
					 errmsg("target table %s of pipeline \"%s\" has no primary key",
							quote_qualified_identifier(src->target_schema, t->relname), p->name),
					 errdetail("Published table %s can send UPDATEs and DELETEs%s, which are applied by the target's primary key.",
							   quote_qualified_identifier(t->nspname, t->relname),
							   t->identity_full ? " (REPLICA IDENTITY FULL)" : ""),
					 errhint("Add a primary key to the target table, or publish only inserts (CREATE PUBLICATION ... WITH (publish = 'insert, truncate')).")));
		if (copy_data)
			cdc_copy_table(conn, t, target, p->name);
	}
	identity_leave(&frame);
}

/*
 * The slots pipeline_create_cdc made in the transaction in progress (one
 * statement may create several pipelines): a slot is not transactional,
 * so if anything aborts the transaction afterwards (in the function or
 * later in the same statement) they are dropped again. In TopMemoryContext:
 * the abort runs after the transaction's memory is gone.
 */
typedef struct PendingSlot
{
	char	   *conninfo;
	char	   *slot;
	char	   *pipeline;
} PendingSlot;

static List *pending_slots = NIL;

static void
drop_pending_slot(PendingSlot *pending)
{
	/* an error here must not disturb the abort: report it and go on */
	PG_TRY();
	{
		cdc_drop_slot(pending->conninfo, pending->slot, pending->pipeline);
	}
	PG_CATCH();
	{
		FlushErrorState();
		ereport(WARNING,
				(errmsg("could not drop replication slot \"%s\" of pipeline \"%s\" that was not created",
						pending->slot, pending->pipeline),
				 errhint("Drop it on the source: SELECT pg_drop_replication_slot('%s');",
						 pending->slot)));
	}
	PG_END_TRY();
}

static void
drop_slots_on_abort(XactEvent event, void *arg)
{
	ListCell   *lc;

	if (pending_slots == NIL)
		return;
	if (event != XACT_EVENT_ABORT && event != XACT_EVENT_PARALLEL_ABORT &&
		event != XACT_EVENT_COMMIT && event != XACT_EVENT_PARALLEL_COMMIT)
		return;
	foreach(lc, pending_slots)
	{
		PendingSlot *pending = lfirst(lc);

		if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
			drop_pending_slot(pending);
		pfree(pending->conninfo);
		pfree(pending->slot);
		pfree(pending->pipeline);
		pfree(pending);
	}
	list_free(pending_slots);
	pending_slots = NIL;
}

static void
remember_pending_slot(const CdcSource *src, const char *pipeline)
{
	static bool registered = false;
	MemoryContext old;
	PendingSlot *pending;

	if (!registered)
	{
		RegisterXactCallback(drop_slots_on_abort, NULL);
		registered = true;
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	pending = palloc(sizeof(PendingSlot));
	pending->conninfo = pstrdup(src->conninfo);
	pending->slot = pstrdup(src->slot);
	pending->pipeline = pstrdup(pipeline);
	pending_slots = lappend(pending_slots, pending);
	MemoryContextSwitchTo(old);
}

/*
 * pipeline_create_cdc(name, publication, target_schema, connection, slot,
 * copy_data, options)
 *
 * Like CREATE SUBSCRIPTION with create_slot, it makes a slot on the source
 * and so cannot run in a transaction block: a slot is not transactional.
 * If the transaction aborts after the slot exists, the slot is dropped
 * again (drop_slots_on_abort).
 */
Datum
pipeline_create_cdc(PG_FUNCTION_ARGS)
{
	Pipeline   *p;
	CdcSource  *src;
	Jsonb	   *options;
	char	   *events;
	WalReceiverConn *volatile conn;
	List	   *tables;
	bool		copy_data = PG_ARGISNULL(5) ? true : PG_GETARG_BOOL(5);
	MemoryContext context;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s of a CDC pipeline must not be null", PG_ARGISNULL(0) ? "name" : "publication")));
	p = palloc0(sizeof(Pipeline));
	p->name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (p->name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("pipeline name must not be empty")));
	src = palloc0(sizeof(CdcSource));
	src->publication = text_to_cstring(PG_GETARG_TEXT_PP(1));
	src->target_schema = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	src->connection = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	src->slot = PG_ARGISNULL(4) ? default_slot_name(p->name) : text_to_cstring(PG_GETARG_TEXT_PP(4));
	src->local = src->connection == NULL;
	p->owner = GetUserId();
	p->mode = LOAD_CDC;
	p->enabled = true;
	p->retry_delay = "5 minutes";
	p->poll_interval = "1 second";
	p->search_path = pstrdup(GetConfigOption("search_path", false, false));
	src->conninfo = src->local ? cdc_local_conninfo(p->owner) : src->connection;

	(void) ReplicationSlotValidateName(src->slot, ERROR);
	check_cdc_privileges(src->connection);
	if (src->target_schema)
	{
		Oid			nsp = get_namespace_oid(src->target_schema, false);

		if (pg_namespace_aclcheck(nsp, GetUserId(), ACL_USAGE) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for schema %s", src->target_schema)));
	}

	SPI_connect();
	options = PG_ARGISNULL(6) ? DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")))
		: PG_GETARG_JSONB_P(6);
	events = take_events_option(&options);
	if (src->target_schema == NULL && events == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("CDC pipeline \"%s\" needs a target schema or an events table", p->name),
				 errhint("Pass target_schema, or options => '{\"events\": \"schema.table\"}'.")));
	pipeline_apply_options(p, options, false);
	validate_pipeline(p);
	if (catalog_read_pipeline(p->name, true) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("pipeline \"%s\" already exists", p->name),
				 errhint("Choose another name, or drop it with pipeline_drop().")));
	PreventInTransactionBlock(true, "pipeline_create_cdc()");

	conn = cdc_connect(src->conninfo, p->name);
	context = CurrentMemoryContext;
	PG_TRY();
	{
		cdc_check_publication(conn, src->publication, p->name);
		src->applied_lsn = cdc_create_slot(conn, src->slot, copy_data);
		remember_pending_slot(src, p->name);
		tables = cdc_published_tables(conn, src->publication);
		src->tables = table_names(tables);
		if (events)
			src->events = events_table(events);
		prepare_targets(p, src, conn, tables, copy_data);
		if (copy_data)
			walrcv_clear_result(walrcv_exec(conn, "COMMIT", 0, NULL));

		/* the name's lock only now: slot creation waits for running writers */
		catalog_lock_pipeline(p->name);
		catalog_insert_pipeline(p, options);
		catalog_set_watermark(p->name, lsn_text(src->applied_lsn), false);
		catalog_insert_cdc(p, src);
		check_dependencies(p);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		FlushErrorState();
		cdc_disconnect(conn);
		conn = NULL;
		ReThrowError(edata);
	}
	PG_END_TRY();
	cdc_disconnect(conn);
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * Dropping a CDC pipeline drops its slot on the source (after the catalog
 * rows, so a failure to reach the source leaves the pipeline in place).
 */
void
cdc_drop(const Pipeline *p, bool drop_slot)
{
	CdcSource  *src = cdc_read(p);

	run_catalog_statement("DELETE FROM pipeline.cdc WHERE pipeline = $1", 1,
						  (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(p->name)}, NULL, 1);
	if (drop_slot)
	{
		PreventInTransactionBlock(true, "pipeline_drop() of a CDC pipeline");
		cdc_drop_slot(src->conninfo, src->slot, p->name);
	}
}

/* Pipeline functions that have no meaning for a CDC pipeline refuse it. */
void
refuse_cdc(const Pipeline *p, const char *what)
{
	if (p->mode == LOAD_CDC)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot %s CDC pipeline \"%s\"", what, p->name),
				 errhint("A CDC pipeline follows its replication slot; see pipeline.cdc and docs/cdc.md.")));
}

/* The slot's figures, queried on the source (SQL text, three columns). */
static const char *slot_query =
"SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), %s)::int8, "
"pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.confirmed_flush_lsn)::int8, "
"s.wal_status::text FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = %s";

/*
 * pipeline_cdc_slot(name): lag of a CDC pipeline and the state of its slot.
 * A source that cannot be reached or a missing slot is a state, not an
 * error: pipeline.status must keep working.
 */
Datum
pipeline_cdc_slot(PG_FUNCTION_ARGS)
{
	const char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	MemoryContext callcontext = CurrentMemoryContext;
	TupleDesc	desc;
	Datum		values[3] = {0};
	bool		nulls[3] = {true, true, true};
	char	   *wal_status = NULL;
	Pipeline   *p;
	HeapTuple	result;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pipeline_cdc_slot must return a composite type");
	SPI_connect();
	p = catalog_read_pipeline(name, true);
	if (p && p->mode == LOAD_CDC && has_privs_of_role(GetUserId(), p->owner))
	{
		CdcSource  *src = cdc_read(p);
		char	   *sql = psprintf(slot_query, quote_literal_cstr(lsn_text(src->applied_lsn)),
								   quote_literal_cstr(src->slot));
		int64		lag[2] = {0, 0};
		bool		found = false;

		if (src->local)
		{
			if (SPI_execute(sql, true, 1) != SPI_OK_SELECT)
				elog(ERROR, "could not read replication slots");
			if (SPI_processed == 1)
			{
				bool		isnull;

				found = true;
				lag[0] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
				lag[1] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
				wal_status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
			}
		}
		else
		{
			char	   *err = NULL;
			WalReceiverConn *conn;

			conn = cdc_try_connect(src->conninfo, "pipeline status", &err);
			if (conn == NULL)
				wal_status = "unreachable";
			else
			{
				Oid			types[3] = {INT8OID, INT8OID, TEXTOID};
				WalRcvExecResult *res = walrcv_exec(conn, sql, 3, types);
				TupleTableSlot *slot;

				if (res->status == WALRCV_OK_TUPLES)
				{
					slot = MakeSingleTupleTableSlot(res->tupledesc, &TTSOpsMinimalTuple);
					if (tuplestore_gettupleslot(res->tuplestore, true, false, slot))
					{
						bool		isnull;

						found = true;
						lag[0] = DatumGetInt64(slot_getattr(slot, 1, &isnull));
						lag[1] = DatumGetInt64(slot_getattr(slot, 2, &isnull));
						wal_status = TextDatumGetCString(slot_getattr(slot, 3, &isnull));
					}
					ExecDropSingleTupleTableSlot(slot);
				}
				else
					wal_status = "unreachable";
				walrcv_clear_result(res);
				walrcv_disconnect(conn);
			}
		}
		if (found)
		{
			values[0] = Int64GetDatum(lag[0]);
			values[1] = Int64GetDatum(lag[1]);
			nulls[0] = nulls[1] = false;
		}
		else if (wal_status == NULL)
			wal_status = "missing";
	}
	MemoryContextSwitchTo(callcontext);
	if (wal_status)
	{
		values[2] = CStringGetTextDatum(wal_status);
		nulls[2] = false;
	}
	result = heap_form_tuple(desc, values, nulls);
	SPI_finish();
	PG_RETURN_DATUM(HeapTupleGetDatum(result));
}
