/*-------------------------------------------------------------------------
 *
 * cdc_source.c
 *	  The source of a CDC pipeline: a replication connection to the server
 *	  that holds the publication (this one or another), its slot, the
 *	  initial copy, and the decoded change stream.
 *
 * Everything goes through the server's own libpqwalreceiver, as the
 * logical replication workers do: it keeps libpq interruptible (latch
 * waits, CHECK_FOR_INTERRUPTS) and speaks the replication protocol. The
 * slot uses the built-in pgoutput plugin, so the source needs nothing
 * installed; its messages are parsed with the server's logicalrep_read_*.
 *
 * A run reads the stream up to the source's flush position when the run
 * started (or batch_size changes, at a transaction's end), then closes the
 * connection. The slot is confirmed only up to the LSN that an earlier run
 * committed (and flushed) in pipeline.cdc: never past what this database
 * has applied durably.
 *
 *-------------------------------------------------------------------------
 */
#include "pipeline.h"

#include "access/table.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "fmgr.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "parser/parse_relation.h"
#include "pgstat.h"
#include "postmaster/postmaster.h"
#include "replication/logicalproto.h"
#include "replication/walreceiver.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "commands/dbcommands.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

/* How long a run waits for its source without a single message. */
#define CDC_SOURCE_TIMEOUT_MS 60000

/* A replication=database connection, or NULL with the reason in *err. */
WalReceiverConn *
cdc_try_connect(const char *conninfo, const char *appname, char **err)
{
	load_file("libpqwalreceiver", false);
	if (WalReceiverFunctions == NULL)
		elog(ERROR, "libpqwalreceiver didn't initialize correctly");
#if PG_VERSION_NUM >= 170000
	return walrcv_connect(conninfo, true, true, false, appname, err);
#elif PG_VERSION_NUM >= 160000
	return walrcv_connect(conninfo, true, false, appname, err);
#else
	return walrcv_connect(conninfo, true, appname, err);
#endif
}

WalReceiverConn *
cdc_connect(const char *conninfo, const char *pipeline)
{
	char	   *err = NULL;
	WalReceiverConn *conn = cdc_try_connect(conninfo, psprintf("pipeline %s", pipeline), &err);

	if (conn == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("pipeline \"%s\" could not connect to its source: %s",
						pipeline, err ? err : "unknown error"),
				 errhint("The source must accept replication connections from the pipeline's owner (pg_hba.conf, REPLICATION attribute, wal_level = logical).")));
	return conn;
}

void
cdc_disconnect(WalReceiverConn *conn)
{
	if (conn)
		walrcv_disconnect(conn);
}

/* keyword='value', with quotes and backslashes in the value escaped. */
static void
append_conninfo_value(StringInfo s, const char *keyword, const char *value)
{
	appendStringInfo(s, "%s%s='", s->len > 0 ? " " : "", keyword);
	for (const char *c = value; *c; c++)
	{
		if (*c == '\'' || *c == '\\')
			appendStringInfoChar(s, '\\');
		appendStringInfoChar(s, *c);
	}
	appendStringInfoChar(s, '\'');
}

/*
 * This server's own database, over its first Unix socket (or localhost),
 * as the pipeline's owner: what a CDC pipeline without a connection uses.
 */
char *
cdc_local_conninfo(Oid owner)
{
	StringInfoData s;
	char	   *sockets = pstrdup(Unix_socket_directories ? Unix_socket_directories : "");
	char	   *comma = strchr(sockets, ',');
	char	   *host;

	if (comma)
		*comma = '\0';
	host = sockets;
	while (*host == ' ')
		host++;
	initStringInfo(&s);
	append_conninfo_value(&s, "host", *host ? host : "localhost");
	append_conninfo_value(&s, "port", psprintf("%d", PostPortNumber));
	append_conninfo_value(&s, "dbname", get_database_name(MyDatabaseId));
	append_conninfo_value(&s, "user", GetUserNameFromId(owner, false));
	return s.data;
}

/* A query on the source; its rows in SPI-like form, or an error naming it. */
static WalRcvExecResult *
source_query(WalReceiverConn *conn, const char *sql, int ntypes, const Oid *types)
{
	WalRcvExecResult *res = walrcv_exec(conn, sql, ntypes, types);

	if (res->status != WALRCV_OK_TUPLES && res->status != WALRCV_OK_COMMAND &&
		res->status != WALRCV_OK_COPY_OUT)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_EXCEPTION),
				 errmsg("query on the source of a CDC pipeline failed: %s",
						res->err ? res->err : "unknown error"),
				 errdetail("Query: %s", sql)));
	return res;
}

/* The publication must exist on the source. */
void
cdc_check_publication(WalReceiverConn *conn, const char *publication,
					  const char *pipeline)
{
	Oid			type = INT4OID;
	WalRcvExecResult *res;
	TupleTableSlot *slot;
	bool		found;

	res = source_query(conn, psprintf("SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = %s",
									  quote_literal_cstr(publication)), 1, &type);
	slot = MakeSingleTupleTableSlot(res->tupledesc, &TTSOpsMinimalTuple);
	found = tuplestore_gettupleslot(res->tuplestore, true, false, slot);
	ExecDropSingleTupleTableSlot(slot);
	walrcv_clear_result(res);
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("publication \"%s\" of pipeline \"%s\" does not exist on its source",
						publication, pipeline),
				 errhint("Create it on the source: CREATE PUBLICATION %s FOR TABLE ...;",
						 quote_identifier(publication))));
}

/*
 * The tables of a publication, their published columns (generated ones
 * left out: pgoutput does not send them, so the copy must not take them
 * either), and whether the source can send UPDATEs and DELETEs of them.
 */
List *
cdc_published_tables(WalReceiverConn *conn, const char *publication)
{
	Oid			types[5] = {TEXTOID, TEXTOID, TEXTARRAYOID, BOOLOID, BOOLOID};
	int			version = walrcv_server_version(conn);
	WalRcvExecResult *res;
	TupleTableSlot *slot;
	List	   *tables = NIL;

	res = source_query(conn, psprintf("SELECT t.schemaname::text, t.tablename::text, "
									  "ARRAY(SELECT a.attname FROM pg_catalog.pg_attribute a "
									  "WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped%s%s "
									  "ORDER BY a.attnum)::text[], "
									  "(p.pubupdate OR p.pubdelete) AND (c.relreplident IN ('f', 'i') OR "
									  "(c.relreplident = 'd' AND EXISTS (SELECT 1 FROM pg_catalog.pg_index i "
									  "WHERE i.indrelid = c.oid AND i.indisprimary))), "
									  "c.relreplident = 'f' "
									  "FROM pg_catalog.pg_publication_tables t "
									  "JOIN pg_catalog.pg_publication p ON p.pubname = t.pubname "
									  "JOIN pg_catalog.pg_namespace n ON n.nspname = t.schemaname "
									  "JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.tablename "
									  "WHERE t.pubname = %s ORDER BY 1, 2",
									  version >= 150000 ? " AND a.attname = ANY (t.attnames)" : "",
									  version >= 120000 ? " AND a.attgenerated = ''" : "",
									  quote_literal_cstr(publication)),
					   5, types);
	slot = MakeSingleTupleTableSlot(res->tupledesc, &TTSOpsMinimalTuple);
	while (tuplestore_gettupleslot(res->tuplestore, true, false, slot))
	{
		PublishedTable *t = palloc0(sizeof(PublishedTable));
		bool		isnull;
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		t->nspname = TextDatumGetCString(slot_getattr(slot, 1, &isnull));
		t->relname = TextDatumGetCString(slot_getattr(slot, 2, &isnull));
		deconstruct_array(DatumGetArrayTypeP(slot_getattr(slot, 3, &isnull)), TEXTOID, -1,
						  false, TYPALIGN_INT, &elems, &nulls, &n);
		for (int i = 0; i < n; i++)
			t->columns = lappend(t->columns, makeString(TextDatumGetCString(elems[i])));
		t->keyed_changes = DatumGetBool(slot_getattr(slot, 4, &isnull));
		t->identity_full = DatumGetBool(slot_getattr(slot, 5, &isnull));
		tables = lappend(tables, t);
	}
	ExecDropSingleTupleTableSlot(slot);
	walrcv_clear_result(res);
	return tables;
}

/* The source's WAL flush position: what a run reads up to. */
XLogRecPtr
cdc_source_flush_lsn(WalReceiverConn *conn)
{
	Oid			type = TEXTOID;
	WalRcvExecResult *res;
	TupleTableSlot *slot;
	bool		isnull;
	XLogRecPtr	lsn = InvalidXLogRecPtr;

	res = source_query(conn, "SELECT pg_catalog.pg_current_wal_flush_lsn()::text", 1, &type);
	slot = MakeSingleTupleTableSlot(res->tupledesc, &TTSOpsMinimalTuple);
	if (tuplestore_gettupleslot(res->tuplestore, true, false, slot))
		lsn = DatumGetLSN(DirectFunctionCall1(pg_lsn_in,
											  CStringGetDatum(TextDatumGetCString(slot_getattr(slot, 1, &isnull)))));
	ExecDropSingleTupleTableSlot(slot);
	walrcv_clear_result(res);
	return lsn;
}

/*
 * Create the slot; with use_snapshot, inside a REPEATABLE READ transaction
 * on the connection whose snapshot is the slot's start point (the copy
 * then reads exactly what the stream will not send).
 */
XLogRecPtr
cdc_create_slot(WalReceiverConn *conn, const char *slot, bool use_snapshot)
{
	XLogRecPtr	lsn = InvalidXLogRecPtr;

	if (use_snapshot)
		walrcv_clear_result(source_query(conn, "BEGIN READ ONLY ISOLATION LEVEL REPEATABLE READ",
										 0, NULL));
#if PG_VERSION_NUM >= 170000
	walrcv_create_slot(conn, slot, false, false, false,
					   use_snapshot ? CRS_USE_SNAPSHOT : CRS_NOEXPORT_SNAPSHOT, &lsn);
#else
	walrcv_create_slot(conn, slot, false, false,
					   use_snapshot ? CRS_USE_SNAPSHOT : CRS_NOEXPORT_SNAPSHOT, &lsn);
#endif
	return lsn;
}

/*
 * Drop a pipeline's slot on its source, over a connection of its own (the
 * one that failed may be unusable). A slot already gone is fine.
 */
void
cdc_drop_slot(const char *conninfo, const char *slot, const char *pipeline)
{
	WalReceiverConn *conn = cdc_connect(conninfo, pipeline);
	Oid			type = INT4OID;
	WalRcvExecResult *res;

	PG_TRY();
	{
		res = source_query(conn, psprintf("SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = %s",
										  quote_literal_cstr(slot)), 1, &type);
		if (tuplestore_tuple_count(res->tuplestore) > 0)
			walrcv_clear_result(source_query(conn, psprintf("DROP_REPLICATION_SLOT %s WAIT",
															quote_identifier(slot)), 0, NULL));
		walrcv_clear_result(res);
	}
	PG_FINALLY();
	{
		cdc_disconnect(conn);
	}
	PG_END_TRY();
}

/* The COPY of the initial copy: data from the connection, into CopyFrom. */
static WalReceiverConn *copy_conn = NULL;
static char *copy_buffer = NULL;
static int	copy_buffer_len = 0;
static bool copy_done = false;

static void
wait_for_source(pgsocket fd, long timeout_ms)
{
	int			rc = WaitLatchOrSocket(MyLatch,
									   WL_SOCKET_READABLE | WL_LATCH_SET | WL_TIMEOUT |
									   WL_EXIT_ON_PM_DEATH,
									   fd, timeout_ms, PG_WAIT_EXTENSION);

	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

static int
copy_read_data(void *outbuf, int minread, int maxread)
{
	int			bytes = 0;

	while (maxread > 0 && !copy_done)
	{
		pgsocket	fd = PGINVALID_SOCKET;
		int			len;

		if (copy_buffer_len > 0)
		{
			int			n = Min(copy_buffer_len, maxread);

			memcpy((char *) outbuf + bytes, copy_buffer, n);
			copy_buffer += n;
			copy_buffer_len -= n;
			bytes += n;
			maxread -= n;
			if (bytes >= minread)
				return bytes;
			continue;
		}
		len = walrcv_receive(copy_conn, &copy_buffer, &fd);
		if (len > 0)
			copy_buffer_len = len;
		else if (len < 0)
			copy_done = true;
		else
			wait_for_source(fd, 1000);
	}
	return bytes;
}

/*
 * Copy one published table into its target, inside the slot's snapshot
 * transaction: COPY ... TO STDOUT on the source, CopyFrom here (triggers
 * and all, as tablesync does).
 */
void
cdc_copy_table(WalReceiverConn *conn, const PublishedTable *table, Oid target,
			   const char *pipeline)
{
	StringInfoData sql;
	ListCell   *lc;
	Relation	rel;
	ParseState *pstate;
	CopyFromState cstate;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "COPY (SELECT ");
	foreach(lc, table->columns)
		appendStringInfo(&sql, "%s%s", foreach_current_index(lc) ? ", " : "",
						 quote_identifier(strVal(lfirst(lc))));
	appendStringInfo(&sql, " FROM %s) TO STDOUT",
					 quote_qualified_identifier(table->nspname, table->relname));
	walrcv_clear_result(source_query(conn, sql.data, 0, NULL));

	copy_conn = conn;
	copy_buffer = NULL;
	copy_buffer_len = 0;
	copy_done = false;

	rel = table_open(target, RowExclusiveLock);
	pstate = make_parsestate(NULL);
	(void) addRangeTableEntryForRelation(pstate, rel, AccessShareLock, NULL, false, false);
	cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, copy_read_data,
						   table->columns, NIL);
	(void) CopyFrom(cstate);
	EndCopyFrom(cstate);
	free_parsestate(pstate);
	table_close(rel, NoLock);
	copy_conn = NULL;
}

/* A standby status update: confirm "flushed" to the slot. */
static void
send_feedback(WalReceiverConn *conn, XLogRecPtr flushed)
{
	StringInfoData reply;

	initStringInfo(&reply);
	pq_sendbyte(&reply, 'r');
	pq_sendint64(&reply, flushed);	/* write */
	pq_sendint64(&reply, flushed);	/* flush */
	pq_sendint64(&reply, flushed);	/* apply */
	pq_sendint64(&reply, GetCurrentTimestamp());
	pq_sendbyte(&reply, false);
	walrcv_send(conn, reply.data, reply.len);
	pfree(reply.data);
}

typedef struct StreamState
{
	CdcApply   *apply;
	XLogRecPtr	upto;			/* stop once the stream has passed it */
	int64		batch_size;		/* 0: no cap */
	bool		in_transaction;
	bool		skipping;		/* a transaction applied by an earlier run */
	bool		done;
	XLogRecPtr	source_end;		/* the source's position at a keepalive
								 * between transactions: all it published
								 * before has been received */
} StreamState;

/* One pgoutput message (the payload of an XLogData message). */
static void
handle_message(StreamState *st, StringInfo msg, XLogRecPtr lsn)
{
	char		action = pq_getmsgbyte(msg);

	switch (action)
	{
		case LOGICAL_REP_MSG_BEGIN:
			{
				LogicalRepBeginData begin;

				logicalrep_read_begin(msg, &begin);
				st->in_transaction = true;
				st->skipping = !cdc_apply_transaction(st->apply, begin.final_lsn,
													  begin.committime);
				break;
			}
		case LOGICAL_REP_MSG_COMMIT:
			{
				LogicalRepCommitData commit;

				logicalrep_read_commit(msg, &commit);
				if (!st->skipping)
					cdc_apply_commit(st->apply, commit.end_lsn);
				st->in_transaction = false;
				st->skipping = false;
				if (commit.end_lsn >= st->upto ||
					(st->batch_size > 0 && cdc_apply_changes(st->apply) >= st->batch_size))
					st->done = true;
				break;
			}
		case LOGICAL_REP_MSG_RELATION:
			cdc_apply_relation(st->apply, logicalrep_read_rel(msg));
			break;
		case LOGICAL_REP_MSG_INSERT:
			{
				LogicalRepTupleData newtup;
				LogicalRepRelId relid = logicalrep_read_insert(msg, &newtup);

				if (!st->skipping)
					cdc_apply_change(st->apply, 'I', relid, lsn, NULL, &newtup);
				break;
			}
		case LOGICAL_REP_MSG_UPDATE:
			{
				LogicalRepTupleData oldtup;
				LogicalRepTupleData newtup;
				bool		has_old;
				LogicalRepRelId relid = logicalrep_read_update(msg, &has_old, &oldtup, &newtup);

				if (!st->skipping)
					cdc_apply_change(st->apply, 'U', relid, lsn, has_old ? &oldtup : NULL, &newtup);
				break;
			}
		case LOGICAL_REP_MSG_DELETE:
			{
				LogicalRepTupleData oldtup;
				LogicalRepRelId relid = logicalrep_read_delete(msg, &oldtup);

				if (!st->skipping)
					cdc_apply_change(st->apply, 'D', relid, lsn, &oldtup, NULL);
				break;
			}
		case LOGICAL_REP_MSG_TRUNCATE:
			{
				bool		cascade;
				bool		restart_seqs;
				List	   *relids = logicalrep_read_truncate(msg, &cascade, &restart_seqs);

				if (!st->skipping)
					cdc_apply_truncate(st->apply, relids, restart_seqs, lsn);
				break;
			}
		case LOGICAL_REP_MSG_TYPE:
		case LOGICAL_REP_MSG_ORIGIN:
		case LOGICAL_REP_MSG_MESSAGE:
			break;				/* values come as text: types need nothing */
		default:
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("unexpected message type \"%c\" in the change stream", action)));
	}
}

/* One message of the replication protocol: XLogData or a keepalive. */
static void
handle_copy_data(StreamState *st, WalReceiverConn *conn, char *buf, int len,
				 MemoryContext message_context)
{
	StringInfoData s;
	char		kind;

	s.data = buf;
	s.len = len;
	s.cursor = 0;
	s.maxlen = -1;
	kind = pq_getmsgbyte(&s);
	if (kind == 'w')
	{
		XLogRecPtr	start = pq_getmsgint64(&s);
		MemoryContext old;

		(void) pq_getmsgint64(&s);	/* end of WAL on the source */
		(void) pq_getmsgint64(&s);	/* send time */
		old = MemoryContextSwitchTo(message_context);
		handle_message(st, &s, start);
		MemoryContextSwitchTo(old);
		MemoryContextReset(message_context);
	}
	else if (kind == 'k')
	{
		XLogRecPtr	end = pq_getmsgint64(&s);

		(void) pq_getmsgint64(&s);	/* send time */
		if (!st->in_transaction)
		{
			st->source_end = Max(st->source_end, end);
			/* past the target outside a transaction: nothing more to read */
			if (end >= st->upto)
				st->done = true;
		}
		/* a reply keeps the connection alive; it confirms nothing new */
		if (pq_getmsgbyte(&s))
			send_feedback(conn, InvalidXLogRecPtr);
	}
}

/*
 * What the slot may be told is applied: the stored LSN, if it is committed
 * (not written by this still open transaction). When this run applied no
 * transaction, also the position the source reported between transactions:
 * everything published before it was received, and nothing of it is
 * waiting to be committed here (only unpublished tables changed), as the
 * apply worker replies with its receive position when nothing is pending.
 */
static XLogRecPtr
confirmable_lsn(const CdcSource *src, const StreamState *st)
{
	if (!src->applied_committed)
		return InvalidXLogRecPtr;
	if (cdc_apply_transactions(st->apply) == 0 && st->source_end > src->applied_lsn)
		return st->source_end;
	return src->applied_lsn;
}

/*
 * A slot the source invalidated (wal_status 'lost': it removed WAL the
 * slot still needed, see max_slot_wal_keep_size) can never stream again.
 * Say so with a SQLSTATE that pauses the pipeline (55000), rather than let
 * START_REPLICATION fail with a protocol error (08P01), which passes for a
 * connection problem and is retried forever.
 */
static void
refuse_lost_slot(WalReceiverConn *conn, const CdcSource *src)
{
	Oid			type = TEXTOID;
	WalRcvExecResult *res;
	TupleTableSlot *slot;
	bool		lost = false;

	res = source_query(conn, psprintf("SELECT wal_status FROM pg_catalog.pg_replication_slots "
									  "WHERE slot_name = %s", quote_literal_cstr(src->slot)),
					   1, &type);
	slot = MakeSingleTupleTableSlot(res->tupledesc, &TTSOpsMinimalTuple);
	if (tuplestore_gettupleslot(res->tuplestore, true, false, slot))
	{
		bool		isnull;
		Datum		status = slot_getattr(slot, 1, &isnull);

		lost = !isnull && strcmp(TextDatumGetCString(status), "lost") == 0;
	}
	ExecDropSingleTupleTableSlot(slot);
	walrcv_clear_result(res);
	if (lost)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication slot \"%s\" is lost on the source", src->slot),
				 errdetail("The source removed WAL the slot still needed (max_slot_wal_keep_size); "
						   "the changes in it cannot be read any more."),
				 errhint("Drop the pipeline and create it again with copy_data to copy the tables anew.")));
}

/*
 * Read the change stream of the slot into "apply", from what is applied
 * up to "upto" (or batch_size changes, at a transaction's end). Before
 * closing, confirm to the slot what is committed here (confirmable_lsn),
 * so the source may recycle the WAL before it.
 */
void
cdc_stream(WalReceiverConn *conn, const CdcSource *src, XLogRecPtr upto,
		   int64 batch_size, CdcApply *apply)
{
	WalRcvStreamOptions options = {0};
	StreamState st = {apply, upto, batch_size, false, false, false, InvalidXLogRecPtr};
	XLogRecPtr	confirm;
	MemoryContext message_context;
	TimestampTz last_message = GetCurrentTimestamp();

	options.logical = true;
	options.slotname = src->slot;
	options.startpoint = src->applied_lsn;
	options.proto.logical.proto_version = LOGICALREP_PROTO_VERSION_NUM;
	options.proto.logical.publication_names = list_make1(makeString(src->publication));
	refuse_lost_slot(conn, src);
	if (!walrcv_startstreaming(conn, &options))
		elog(ERROR, "could not start the change stream of slot \"%s\"", src->slot);

	message_context = AllocSetContextCreate(CurrentMemoryContext, "pipeline cdc message",
											ALLOCSET_DEFAULT_SIZES);
	while (!st.done)
	{
		pgsocket	fd = PGINVALID_SOCKET;
		char	   *buf;
		int			len = walrcv_receive(conn, &buf, &fd);

		if (len > 0)
		{
			handle_copy_data(&st, conn, buf, len, message_context);
			last_message = GetCurrentTimestamp();
			continue;
		}
		if (len < 0)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("the source ended the change stream of slot \"%s\"", src->slot)));
		if (TimestampDifferenceExceeds(last_message, GetCurrentTimestamp(),
									   CDC_SOURCE_TIMEOUT_MS))
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("the source of slot \"%s\" sent nothing for %d seconds",
							src->slot, CDC_SOURCE_TIMEOUT_MS / 1000)));
		wait_for_source(fd, 1000);
	}
	confirm = confirmable_lsn(src, &st);
	if (!XLogRecPtrIsInvalid(confirm))
	{
		/*
		 * The commit that stored it may be asynchronous (synchronous_commit
		 * off): it must be on disk before the source may forget the changes.
		 */
		XLogFlush(GetXLogInsertRecPtr());
		send_feedback(conn, confirm);
	}
	MemoryContextDelete(message_context);
}
