/*-------------------------------------------------------------------------
 *
 * cdc_apply.c
 *	  Applying decoded changes to the target tables, set-based.
 *
 * Changes arrive in commit order. Each target table keeps an open
 * *segment*: a tuplestore of consecutive changes of one kind (inserts,
 * updates or deletes), values as the text pgoutput sent. A change of
 * another kind, a TRUNCATE or the end of the run closes the segment, which
 * is then applied by ONE statement over it (an ephemeral named relation):
 *
 *   inserts:  INSERT ... SELECT
 *   updates:  the last image of every key wins (DISTINCT ON the key, in
 *             stream order) and is upserted, so an update of a row the
 *             target lacks still lands
 *   deletes:  DELETE ... USING the distinct old keys
 *
 * Two kinds of update replay the source's history more closely, since the
 * last images alone may collide on the way: an update that changes the key
 * is applied on its own, in its place in the stream (delete the old key,
 * upsert the new row, only if the new row passes the contract); and on a
 * target with unique constraints besides the primary key, an update
 * segment holds each key at most once and is applied in stream order, the
 * way the source made the changes.
 *
 * Segments of different tables are independent: the batch commits as one
 * transaction, and for a superuser's pipeline apply runs with
 * session_replication_role = replica (as the logical replication apply
 * worker does), so foreign keys and ordinary triggers of the targets do not
 * fire (cdc.c, enter_apply). Values pass the contract's rules and
 * the targets' types like a pipeline's transform output does: bad rows go
 * to the quarantine with their LSN and table.
 *
 * An update that leaves a TOASTed value unchanged ('u' in pgoutput) has no
 * value for it: it is applied on its own by an UPDATE that sets only the
 * columns it has, and quarantined if the target lacks the row.
 *
 *-------------------------------------------------------------------------
 */
#include "pipeline.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "replication/logicalproto.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/queryenvironment.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

/* The relation every apply statement reads its changes from. */
#define CHANGES_ENR "__pipeline_changes"
#define EVENTS_ENR "__pipeline_events"

/*
 * Leading columns of a segment's rows (stream order, the change's LSN);
 * then the columns, then the old keys. A segment holds one kind of change.
 */
enum
{
	SEG_SEQ, SEG_LSN, SEG_NFIXED
};

enum
{
	STMT_INSERT, STMT_UPDATE, STMT_DELETE, STMT_COUNT
};

typedef struct CdcTable
{
	LogicalRepRelId remoteid;	/* hash key */
	bool		ignored;		/* the catalog's own tables, the events table */
	char	   *source_name;	/* as the source names it, quoted */
	char	   *relation;		/* schema.table, as in events and quarantine */
	char	   *source_literal; /* the same, as an SQL literal */
	Oid			target;
	char	   *target_name;	/* qualified and quoted */
	int			natts;
	char	  **attnames;
	Oid		   *atttyps;		/* the source's types (builtin OIDs are stable) */
	List	   *key;			/* the target's primary key columns (String) */
	int		   *key_pos;		/* each key column's position in the stream */
	Bitmapset  *identity;		/* stream positions of the source's replica
								 * identity: what a DELETE carries */
	bool		ordered;		/* other unique constraints: replay updates
								 * in stream order, a key once a segment */
	HTAB	   *segment_keys;	/* ordered: hashes of the open segment's keys */
	List	   *output;			/* OutputColumn per stream column */
	List	   *rules;			/* the contract, for this table */
	TupleDesc	desc;			/* of a segment's rows */
	int			op;				/* the open segment's STMT_*, or -1 */
	Tuplestorestate *rows;
	int64		nrows;
	char	   *sql[STMT_COUNT];	/* built once per relation message */
	char	   *key_change_sql;
	SPIPlanPtr	key_change_plan;	/* prepared at its first use in a run */
	bool		loaded;			/* rows were written to the target */
} CdcTable;

struct CdcApply
{
	const Pipeline *p;
	const CdcSource *src;
	MemoryContext context;		/* lives as long as the run */
	HTAB	   *tables;
	int64		seq;
	int64		changes;
	int64		loaded;
	int64		transactions;
	XLogRecPtr	end_lsn;
	TimestampTz commit_time;
	Tuplestorestate *events;	/* rows for the events table */
	TupleDesc	events_desc;
	int64		nevents;
};

CdcApply *
cdc_apply_begin(const Pipeline *p, const CdcSource *src)
{
	MemoryContext context = AllocSetContextCreate(CurrentMemoryContext, "pipeline cdc apply",
												  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(context);
	CdcApply   *a = palloc0(sizeof(CdcApply));
	HASHCTL		ctl = {0};

	a->p = p;
	a->src = src;
	a->context = context;
	a->end_lsn = src->applied_lsn;
	ctl.keysize = sizeof(LogicalRepRelId);
	ctl.entrysize = sizeof(CdcTable);
	ctl.hcxt = context;
	a->tables = hash_create("pipeline cdc tables", 64, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	if (OidIsValid(src->events))
	{
		a->events_desc = CreateTemplateTupleDesc(6);
		TupleDescInitEntry(a->events_desc, 1, "lsn", TEXTOID, -1, 0);
		TupleDescInitEntry(a->events_desc, 2, "op", TEXTOID, -1, 0);
		TupleDescInitEntry(a->events_desc, 3, "relation", TEXTOID, -1, 0);
		TupleDescInitEntry(a->events_desc, 4, "committed_at", TIMESTAMPTZOID, -1, 0);
		TupleDescInitEntry(a->events_desc, 5, "new", TEXTOID, -1, 0);
		TupleDescInitEntry(a->events_desc, 6, "old", TEXTOID, -1, 0);
		a->events = tuplestore_begin_heap(false, false, work_mem);
	}
	MemoryContextSwitchTo(old);
	return a;
}

/*
 * The target of a published table: target_schema.relname, which must have
 * every published column. Errors name both tables and say what to do.
 */
Oid
cdc_target_table(const char *target_schema, const char *relname, const char *source_schema,
				 List *columns, const char *pipeline)
{
	Oid			nsp = get_namespace_oid(target_schema, false);
	Oid			relid = get_relname_relid(relname, nsp);
	ListCell   *lc;

	if (!OidIsValid(relid) || get_rel_relkind(relid) != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("target table %s of pipeline \"%s\" does not exist",
						quote_qualified_identifier(target_schema, relname), pipeline),
				 errdetail("Published table %s is applied to it.",
						   quote_qualified_identifier(source_schema, relname)),
				 errhint("Create it with the columns of the published table (DDL is not replicated), then run the pipeline again.")));
	foreach(lc, columns)
	{
		const char *column = strVal(lfirst(lc));
		AttrNumber	attnum = get_attnum(relid, column);

		if (attnum == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of published table %s does not exist in target table %s of pipeline \"%s\"",
							column, quote_qualified_identifier(source_schema, relname),
							quote_qualified_identifier(target_schema, relname), pipeline),
					 errhint("Add the column to the target (DDL on the source is not replicated), then run the pipeline again.")));
		if (get_attgenerated(relid, attnum))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_COLUMN_DEFINITION),
					 errmsg("column \"%s\" of target table %s of pipeline \"%s\" is generated",
							column, quote_qualified_identifier(target_schema, relname), pipeline)));
	}
	return relid;
}

/* The contract's rules that apply to a table: checks, and its columns' rules. */
static List *
table_rules(CdcApply *a, CdcTable *t)
{
	Pipeline	copy = *a->p;
	List	   *rules = NIL;
	ListCell   *lc;

	foreach(lc, a->p->rules)
	{
		Rule	   *r = lfirst(lc);
		Rule	   *mine;

		if (r->column && !output_has_column(t->output, r->column))
			continue;
		mine = palloc(sizeof(Rule));
		*mine = *r;
		rules = lappend(rules, mine);
	}
	copy.rules = rules;
	copy.target = t->target;
	return contract_rules(&copy, t->output);
}

static char *
key_cast(CdcTable *t, const char *column_sql, const char *key)
{
	Oid			type = get_atttype(t->target, get_attnum(t->target, key));

	return psprintf("CAST(%s AS %s)", column_sql, format_type_be_qualified(type));
}

/* "=" between a key column and a value, qualified: see equality_operator_sql */
static char *
key_equals(CdcTable *t, const char *key)
{
	return equality_operator_sql(get_atttype(t->target, get_attnum(t->target, key)));
}

static char *
old_key_name(const char *key)
{
	return psprintf("__old_%s", key);
}

/* The rows of a segment through the contract: INSERT's SELECT list. */
static char *
checked_rows(CdcTable *t, const char *from)
{
	StringInfoData s;
	ListCell   *lc;
	List	   *carry = list_make2(makeString("__pipeline_lsn"), makeString("__pipeline_table"));

	initStringInfo(&s);
	appendStringInfoString(&s, "SELECT ");
	foreach(lc, t->output)
		appendStringInfo(&s, "c.%s, ", quote_identifier(((OutputColumn *) lfirst(lc))->name));
	appendStringInfo(&s, "c.__lsn AS __pipeline_lsn, %s::pg_catalog.text AS __pipeline_table FROM %s",
					 t->source_literal, from);
	return load_rows_query(s.data, t->output, t->rules, carry);
}

static char *
insert_sql(CdcTable *t)
{
	StringInfoData s;

	initStringInfo(&s);
	appendStringInfo(&s, "INSERT INTO %s AS __pipeline_target (", t->target_name);
	append_column_list(&s, t->output);
	appendStringInfoString(&s, ") SELECT ");
	append_column_list(&s, t->output);
	appendStringInfo(&s, " FROM (%s) AS __pipeline_rows",
					 checked_rows(t, CHANGES_ENR " AS c"));
	return s.data;
}

static void
append_key_match(StringInfo s, CdcTable *t, const char *alias, bool old)
{
	ListCell   *lc;

	foreach(lc, t->key)
	{
		const char *key = strVal(lfirst(lc));
		const char *column = old ? old_key_name(key) : key;

		appendStringInfo(s, "%s__pipeline_target.%s %s %s", foreach_current_index(lc) ? " AND " : "",
						 quote_identifier(key), key_equals(t, key),
						 key_cast(t, psprintf("%s.%s", alias, quote_identifier(column)), key));
	}
}

/* ON CONFLICT (key) DO UPDATE SET every other column (or DO NOTHING) */
static void
append_upsert_action(StringInfo s, CdcTable *t)
{
	ListCell   *lc;
	bool		any_set = false;

	appendStringInfoString(s, " ON CONFLICT (");
	foreach(lc, t->key)
		appendStringInfo(s, "%s%s", foreach_current_index(lc) ? ", " : "",
						 quote_identifier(strVal(lfirst(lc))));
	appendStringInfoString(s, ") DO ");
	foreach(lc, t->output)
	{
		const char *name = ((OutputColumn *) lfirst(lc))->name;

		if (list_member(t->key, makeString((char *) name)))
			continue;
		appendStringInfo(s, "%s%s = EXCLUDED.%s", any_set ? ", " : "UPDATE SET ",
						 quote_identifier(name), quote_identifier(name));
		any_set = true;
	}
	if (!any_set)
		appendStringInfoString(s, "NOTHING");
}

/*
 * Updates that keep their key: the last image of each key is upserted. An
 * ordered table's segment has each key once: its images are upserted in
 * stream order instead, so a unique value freed by one update is free
 * before the next one takes it.
 */
static char *
update_sql(CdcTable *t)
{
	StringInfoData s;
	StringInfoData keys;
	ListCell   *lc;
	char	   *from;

	initStringInfo(&keys);
	foreach(lc, t->key)
		appendStringInfo(&keys, "%s%s", foreach_current_index(lc) ? ", " : "",
						 key_cast(t, psprintf("e.%s", quote_identifier(strVal(lfirst(lc)))),
								  strVal(lfirst(lc))));
	if (t->ordered)
		from = CHANGES_ENR " AS c ORDER BY c.__seq";
	else
		from = psprintf("(SELECT DISTINCT ON (%s) * FROM " CHANGES_ENR " AS e "
						"ORDER BY %s, e.__seq DESC) AS c", keys.data, keys.data);

	initStringInfo(&s);
	appendStringInfo(&s, "INSERT INTO %s AS __pipeline_target (", t->target_name);
	append_column_list(&s, t->output);
	appendStringInfoString(&s, ") SELECT ");
	append_column_list(&s, t->output);
	appendStringInfo(&s, " FROM (%s) AS __pipeline_rows", checked_rows(t, from));
	append_upsert_action(&s, t);
	return s.data;
}

/*
 * One update that moves a row to another key: the old key is deleted
 * first (a unique value it holds is then free for the new row), then the
 * new row upserted; if the new row breaks the contract it is quarantined
 * and the old row kept, as for an update that keeps its key. The DELETE
 * runs before the INSERT because the INSERT waits for its count.
 */
static char *
key_change_sql(CdcTable *t)
{
	StringInfoData s;

	initStringInfo(&s);
	appendStringInfo(&s, "WITH __pipeline_image AS MATERIALIZED (%s), "
					 "__pipeline_gone AS (DELETE FROM %s AS __pipeline_target USING "
					 CHANGES_ENR " AS c WHERE EXISTS (SELECT 1 FROM __pipeline_image) AND ",
					 checked_rows(t, CHANGES_ENR " AS c"), t->target_name);
	append_key_match(&s, t, "c", true);
	appendStringInfo(&s, " RETURNING 1) INSERT INTO %s AS __pipeline_target (", t->target_name);
	append_column_list(&s, t->output);
	appendStringInfoString(&s, ") SELECT ");
	append_column_list(&s, t->output);
	appendStringInfoString(&s, " FROM __pipeline_image WHERE (SELECT pg_catalog.count(*) FROM __pipeline_gone) OPERATOR(pg_catalog.>=) 0");
	append_upsert_action(&s, t);
	return s.data;
}

static char *
delete_sql(CdcTable *t)
{
	StringInfoData s;
	ListCell   *lc;

	initStringInfo(&s);
	appendStringInfo(&s, "DELETE FROM %s AS __pipeline_target USING (SELECT DISTINCT ",
					 t->target_name);
	foreach(lc, t->key)
	{
		const char *key = strVal(lfirst(lc));

		appendStringInfo(&s, "%s%s AS %s", foreach_current_index(lc) ? ", " : "",
						 key_cast(t, psprintf("c.%s", quote_identifier(old_key_name(key))), key),
						 quote_identifier(key));
	}
	appendStringInfoString(&s, " FROM " CHANGES_ENR " AS c) AS d WHERE ");
	foreach(lc, t->key)
		appendStringInfo(&s, "%s__pipeline_target.%s %s d.%s", foreach_current_index(lc) ? " AND " : "",
						 quote_identifier(strVal(lfirst(lc))), key_equals(t, strVal(lfirst(lc))),
						 quote_identifier(strVal(lfirst(lc))));
	return s.data;
}

/*
 * Register a tuplestore as the relation "name" for the next statement.
 * SPI keeps its list of registered relations in the memory current at the
 * first registration: that must be the run's, not a message's.
 */
static void
register_rows(CdcApply *a, const char *name, TupleDesc desc, Tuplestorestate *rows,
			  int64 nrows)
{
	MemoryContext old = MemoryContextSwitchTo(a->context);
	EphemeralNamedRelation enr = palloc0(sizeof(EphemeralNamedRelationData));

	enr->md.name = (char *) name;
	enr->md.reliddesc = InvalidOid;
	enr->md.tupdesc = desc;
	enr->md.enrtype = ENR_NAMED_TUPLESTORE;
	enr->md.enrtuples = nrows;
	enr->reldata = rows;
	if (SPI_register_relation(enr) != SPI_OK_REL_REGISTER)
		elog(ERROR, "could not register the changes of pipeline \"%s\"", a->p->name);
	MemoryContextSwitchTo(old);
}

static void
unregister_rows(CdcApply *a, const char *name)
{
	MemoryContext old = MemoryContextSwitchTo(a->context);

	SPI_unregister_relation(name);
	MemoryContextSwitchTo(old);
}

/*
 * Run one statement over a tuplestore registered as "name". With "plan",
 * the statement is prepared once, at its first execution, and the plan
 * kept there for the rest of the run (statements run once per change).
 */
static uint64
execute_over_plan(CdcApply *a, SPIPlanPtr *plan, const char *sql, const char *name,
				  TupleDesc desc, Tuplestorestate *rows, int64 nrows)
{
	const char *pipeline = a->p->name;
	ErrorContextCallback cb;
	int			rc;

	register_rows(a, name, desc, rows, nrows);
	sql_error_context_push(&cb, sql, pipeline);
	if (plan == NULL)
		rc = SPI_execute(sql, false, 0);
	else
	{
		if (*plan == NULL && (*plan = SPI_prepare(sql, 0, NULL)) == NULL)
			elog(ERROR, "could not prepare an apply statement of pipeline \"%s\": %s", pipeline,
				 SPI_result_code_string(SPI_result));
		rc = SPI_execute_plan(*plan, NULL, NULL, false, 0);
	}
	error_context_stack = cb.previous;
	if (rc < 0)
		elog(ERROR, "apply statement of pipeline \"%s\" failed: %s", pipeline,
			 SPI_result_code_string(rc));
	unregister_rows(a, name);
	return SPI_processed;
}

static uint64
execute_over(CdcApply *a, const char *sql, const char *name, TupleDesc desc,
			 Tuplestorestate *rows, int64 nrows)
{
	return execute_over_plan(a, NULL, sql, name, desc, rows, nrows);
}

static void
drop_segment(CdcTable *t)
{
	if (t->rows)
		tuplestore_end(t->rows);
	if (t->segment_keys)
		hash_destroy(t->segment_keys);
	t->segment_keys = NULL;
	t->rows = NULL;
	t->nrows = 0;
	t->op = -1;
}

static void
close_segment(CdcApply *a, CdcTable *t)
{
	uint64		n;

	if (t->op < 0)
		return;
	if (t->sql[t->op] == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(a->context);

		t->sql[t->op] = t->op == STMT_INSERT ? insert_sql(t) :
			t->op == STMT_UPDATE ? update_sql(t) : delete_sql(t);
		MemoryContextSwitchTo(old);
	}
	n = execute_over(a, t->sql[t->op], CHANGES_ENR, t->desc, t->rows, t->nrows);
	a->loaded += n;
	t->loaded |= n > 0;
	drop_segment(t);
}

/* Tables whose changes are never applied: this extension's catalog. */
static bool
ignored_relation(CdcApply *a, const LogicalRepRelation *rel)
{
	Oid			relid;

	if (strcmp(rel->nspname, "pipeline") == 0)
		return true;

	/*
	 * A table the initial copy did not take and the publication no longer
	 * has (cdc_run refuses the ones it has): changes of the time it was in.
	 */
	if (a->src->target_schema && a->src->tables_known &&
		!list_member(a->src->tables, makeString(psprintf("%s.%s", rel->nspname, rel->relname))))
		return true;
	if (!a->src->local || !OidIsValid(a->src->events))
		return false;
	relid = get_relname_relid(rel->relname, get_namespace_oid(rel->nspname, true));
	return relid == a->src->events;
}

/* Has the table a unique index or exclusion constraint besides its primary key? */
static bool
has_other_unique_constraints(Oid relid)
{
	Relation	rel = table_open(relid, AccessShareLock);
	Oid			pk = RelationGetPrimaryKeyIndex(rel);
	List	   *indexes = RelationGetIndexList(rel);
	bool		found = false;
	ListCell   *lc;

	foreach(lc, indexes)
	{
		HeapTuple	tuple;
		Form_pg_index index;

		if (lfirst_oid(lc) == pk)
			continue;
		tuple = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		if (!HeapTupleIsValid(tuple))
			elog(ERROR, "cache lookup failed for index %u", lfirst_oid(lc));
		index = (Form_pg_index) GETSTRUCT(tuple);
		found |= index->indisunique || index->indisexclusion;
		ReleaseSysCache(tuple);
	}
	list_free(indexes);
	table_close(rel, AccessShareLock);
	return found;
}

/* A relation message: (re)describe a published table and its target. */
void
cdc_apply_relation(CdcApply *a, LogicalRepRelation *rel)
{
	MemoryContext old;
	CdcTable   *t;
	bool		found;
	List	   *columns = NIL;
	int			i;

	t = hash_search(a->tables, &rel->remoteid, HASH_ENTER, &found);
	if (found)
		close_segment(a, t);	/* the table's columns may have changed */
	old = MemoryContextSwitchTo(a->context);
	memset(((char *) t) + sizeof(LogicalRepRelId), 0, sizeof(CdcTable) - sizeof(LogicalRepRelId));
	t->op = -1;
	t->source_name = quote_qualified_identifier(rel->nspname, rel->relname);
	t->relation = psprintf("%s.%s", rel->nspname, rel->relname);
	t->source_literal = quote_literal_cstr(t->relation);
	t->natts = rel->natts;
	t->attnames = palloc(sizeof(char *) * Max(rel->natts, 1));
	t->atttyps = palloc(sizeof(Oid) * Max(rel->natts, 1));
	for (i = 0; i < rel->natts; i++)
	{
		t->attnames[i] = pstrdup(rel->attnames[i]);
		t->atttyps[i] = rel->atttyps[i];
		columns = lappend(columns, makeString(t->attnames[i]));
	}
	t->ignored = ignored_relation(a, rel);
	if (t->ignored || a->src->target_schema == NULL)
	{
		MemoryContextSwitchTo(old);
		return;
	}
	if (a->src->local && strcmp(rel->nspname, a->src->target_schema) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("publication \"%s\" of pipeline \"%s\" publishes table %s of its own target schema",
						a->src->publication, a->p->name, t->source_name),
				 errhint("Publish only the source tables (CREATE PUBLICATION ... FOR TABLE ...), or use another target schema.")));
	t->target = cdc_target_table(a->src->target_schema, rel->relname, rel->nspname, columns,
								 a->p->name);
	t->target_name = qualified_relation_name(t->target);
	t->key = default_key(t->target);
	t->key_pos = palloc(sizeof(int) * Max(list_length(t->key), 1));
	for (i = 0; i < list_length(t->key); i++)
	{
		t->key_pos[i] = -1;
		for (int j = 0; j < rel->natts; j++)
			if (strcmp(rel->attnames[j], strVal(list_nth(t->key, i))) == 0)
				t->key_pos[i] = j;
		if (t->key_pos[i] < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
					 errmsg("primary key column \"%s\" of target table %s of pipeline \"%s\" is not published",
							strVal(list_nth(t->key, i)), t->target_name, a->p->name),
					 errhint("Publish the column, or give the target a primary key on published columns.")));
	}
	t->identity = bms_copy(rel->attkeys);
	t->ordered = has_other_unique_constraints(t->target);
	for (i = 0; i < rel->natts; i++)
		t->output = lappend(t->output, text_output_column(t->target, t->attnames[i]));
	t->rules = table_rules(a, t);

	t->desc = CreateTemplateTupleDesc(SEG_NFIXED + rel->natts + list_length(t->key));
	TupleDescInitEntry(t->desc, SEG_SEQ + 1, "__seq", INT8OID, -1, 0);
	TupleDescInitEntry(t->desc, SEG_LSN + 1, "__lsn", TEXTOID, -1, 0);
	for (i = 0; i < rel->natts; i++)
		TupleDescInitEntry(t->desc, SEG_NFIXED + i + 1, t->attnames[i], TEXTOID, -1, 0);
	for (i = 0; i < list_length(t->key); i++)
		TupleDescInitEntry(t->desc, SEG_NFIXED + rel->natts + i + 1,
						   old_key_name(strVal(list_nth(t->key, i))), TEXTOID, -1, 0);
	MemoryContextSwitchTo(old);
}

/*
 * A transaction begins. False when an earlier run applied it already (its
 * commit lies before the stored LSN): its changes are skipped.
 */
bool
cdc_apply_transaction(CdcApply *a, XLogRecPtr final_lsn, TimestampTz commit_time)
{
	a->commit_time = commit_time;
	return final_lsn >= a->src->applied_lsn;
}

void
cdc_apply_commit(CdcApply *a, XLogRecPtr end_lsn)
{
	a->end_lsn = end_lsn;
	a->transactions++;
}

int64
cdc_apply_changes(CdcApply *a)
{
	return a->changes;
}

/* The transactions this run applied (not those skipped as applied before). */
int64
cdc_apply_transactions(CdcApply *a)
{
	return a->transactions;
}

static CdcTable *
table_of(CdcApply *a, LogicalRepRelId relid)
{
	CdcTable   *t = hash_search(a->tables, &relid, HASH_FIND, NULL);

	if (t == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("change of unknown relation %u in the stream of pipeline \"%s\"",
						relid, a->p->name)));
	return t;
}

/* A value as JSON: numbers and booleans of builtin types as such. */
static void
append_json_value(StringInfo s, Oid type, const char *value)
{
	switch (type)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
			if (strspn(value, "0123456789.-+eE") == strlen(value) && value[0] != 'e' &&
				value[0] != 'E' && value[0] != '\0')
			{
				appendStringInfoString(s, value);
				return;
			}
			break;
		case BOOLOID:
			appendStringInfoString(s, value[0] == 't' ? "true" : "false");
			return;
		default:
			break;
	}
	escape_json(s, value);
}

static char *
tuple_json(CdcTable *t, LogicalRepTupleData *tup)
{
	StringInfoData s;
	bool		first = true;

	if (tup == NULL)
		return NULL;
	initStringInfo(&s);
	appendStringInfoChar(&s, '{');
	for (int i = 0; i < tup->ncols && i < t->natts; i++)
	{
		if (tup->colstatus[i] == LOGICALREP_COLUMN_UNCHANGED)
			continue;
		if (!first)
			appendStringInfoString(&s, ", ");
		first = false;
		escape_json(&s, t->attnames[i]);
		appendStringInfoString(&s, ": ");
		if (tup->colstatus[i] == LOGICALREP_COLUMN_NULL)
			appendStringInfoString(&s, "null");
		else
			append_json_value(&s, t->atttyps[i], tup->colvalues[i].data);
	}
	appendStringInfoChar(&s, '}');
	return s.data;
}

static void
add_event(CdcApply *a, const char *op, const char *relation, XLogRecPtr lsn,
		  char *new_json, char *old_json)
{
	Datum		values[6];
	bool		nulls[6] = {false, false, false, false, new_json == NULL, old_json == NULL};

	values[0] = CStringGetTextDatum(lsn_text(lsn));
	values[1] = CStringGetTextDatum(op);
	values[2] = CStringGetTextDatum(relation);
	values[3] = TimestampTzGetDatum(a->commit_time);
	values[4] = new_json ? CStringGetTextDatum(new_json) : (Datum) 0;
	values[5] = old_json ? CStringGetTextDatum(old_json) : (Datum) 0;
	tuplestore_putvalues(a->events, a->events_desc, values, nulls);
	a->nevents++;
}

static bool
has_unchanged(LogicalRepTupleData *tup)
{
	for (int i = 0; i < tup->ncols; i++)
		if (tup->colstatus[i] == LOGICALREP_COLUMN_UNCHANGED)
			return true;
	return false;
}

/* A segment row of the change: its values as text, old keys at the end. */
static void
segment_values(CdcApply *a, CdcTable *t, char op, XLogRecPtr lsn, LogicalRepTupleData *oldtup,
			   LogicalRepTupleData *newtup, Datum *values, bool *nulls)
{
	int			nkeys = list_length(t->key);

	values[SEG_SEQ] = Int64GetDatum(++a->seq);
	values[SEG_LSN] = CStringGetTextDatum(lsn_text(lsn));
	nulls[SEG_SEQ] = nulls[SEG_LSN] = false;
	for (int i = 0; i < t->natts; i++)
	{
		bool		present = newtup && i < newtup->ncols &&
			newtup->colstatus[i] == LOGICALREP_COLUMN_TEXT;

		nulls[SEG_NFIXED + i] = !present;
		values[SEG_NFIXED + i] = present ?
			PointerGetDatum(cstring_to_text_with_len(newtup->colvalues[i].data,
													 newtup->colvalues[i].len)) : (Datum) 0;
	}
	for (int k = 0; k < nkeys; k++)
	{
		int			pos = t->key_pos[k];
		int			at = SEG_NFIXED + t->natts + k;
		bool		present = oldtup && pos < oldtup->ncols &&
			oldtup->colstatus[pos] == LOGICALREP_COLUMN_TEXT;

		/* a column outside the replica identity comes as a NULL too */
		if (op == 'D' && !bms_is_member(pos, t->identity))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("a DELETE on published table %s does not carry key column \"%s\" of target table %s",
							t->source_name, strVal(list_nth(t->key, k)), t->target_name),
					 errhint("Give the source table a replica identity that includes the target's primary key (ALTER TABLE ... REPLICA IDENTITY).")));
		nulls[at] = !present;
		values[at] = present ?
			PointerGetDatum(cstring_to_text_with_len(oldtup->colvalues[pos].data,
													 oldtup->colvalues[pos].len)) : (Datum) 0;
	}
}

/*
 * An update without some TOASTed values: set the columns it has, on the
 * row of its old key (or its key). A target without that row cannot be
 * completed: the change is quarantined.
 */
static void
apply_partial_update(CdcApply *a, CdcTable *t, LogicalRepTupleData *newtup,
					 Datum *values, bool *nulls)
{
	StringInfoData s;
	Tuplestorestate *rows = tuplestore_begin_heap(false, false, work_mem);
	bool		any = false;
	ListCell   *lc;

	tuplestore_putvalues(rows, t->desc, values, nulls);
	initStringInfo(&s);
	appendStringInfo(&s, "UPDATE %s AS __pipeline_target SET ", t->target_name);
	for (int i = 0; i < t->natts; i++)
	{
		OutputColumn *col = list_nth(t->output, i);

		if (i < newtup->ncols && newtup->colstatus[i] == LOGICALREP_COLUMN_UNCHANGED)
			continue;
		appendStringInfo(&s, "%s%s = CAST(" OUTPUT_ALIAS ".%s AS %s)", any ? ", " : "",
						 quote_identifier(col->name), quote_identifier(col->name),
						 format_type_extended(col->type, col->typmod,
											  FORMAT_TYPE_TYPEMOD_GIVEN | FORMAT_TYPE_FORCE_QUALIFY));
		any = true;
	}
	appendStringInfoString(&s, " FROM " CHANGES_ENR " AS " OUTPUT_ALIAS " WHERE ");
	foreach(lc, t->key)
	{
		const char *key = strVal(lfirst(lc));

		appendStringInfo(&s, "%s__pipeline_target.%s %s %s", foreach_current_index(lc) ? " AND " : "",
						 quote_identifier(key), key_equals(t, key),
						 key_cast(t, psprintf("coalesce(" OUTPUT_ALIAS ".%s, " OUTPUT_ALIAS ".%s)",
											  quote_identifier(old_key_name(key)),
											  quote_identifier(key)), key));
	}
	if (execute_over(a, s.data, CHANGES_ENR, t->desc, rows, 1) > 0)
	{
		a->loaded++;
		t->loaded = true;
		tuplestore_end(rows);
		return;
	}
	tuplestore_rescan(rows);
	(void) execute_over(a, psprintf("SELECT pg_catalog.pipeline_divert(ARRAY[%s], "
								 "(pg_catalog.to_jsonb(c) OPERATOR(pg_catalog.-) "
								 "'{__seq,__lsn}'::pg_catalog.text[]) OPERATOR(pg_catalog.||) "
								 "pg_catalog.jsonb_build_object('__pipeline_lsn', c.__lsn, "
								 "'__pipeline_table', %s::pg_catalog.text)) FROM " CHANGES_ENR " AS c",
								 quote_literal_cstr(psprintf("%s.row_missing", t->relation)),
								 t->source_literal),
						CHANGES_ENR, t->desc, rows, 1);
	tuplestore_end(rows);
}

/* Does an update carry an old key that differs from its new one? */
static bool
key_moved(CdcTable *t, LogicalRepTupleData *oldtup, LogicalRepTupleData *newtup)
{
	if (oldtup == NULL)
		return false;
	for (int k = 0; k < list_length(t->key); k++)
	{
		int			pos = t->key_pos[k];
		char		was = pos < oldtup->ncols ? oldtup->colstatus[pos] : LOGICALREP_COLUMN_NULL;
		char		is = newtup->colstatus[pos];

		if (was != is)
			return true;
		if (is == LOGICALREP_COLUMN_TEXT &&
			(oldtup->colvalues[pos].len != newtup->colvalues[pos].len ||
			 memcmp(oldtup->colvalues[pos].data, newtup->colvalues[pos].data,
					newtup->colvalues[pos].len) != 0))
			return true;
	}
	return false;
}

/*
 * Ordered tables: add the key of an update to the open segment's keys;
 * false if it has a change of this key already. Keys are remembered by a
 * hash of their text: a collision only ends a segment early.
 */
static bool
add_segment_key(CdcApply *a, CdcTable *t, LogicalRepTupleData *newtup)
{
	uint32		hash = 0;
	bool		found;

	if (t->segment_keys == NULL)
	{
		HASHCTL		ctl = {0};

		ctl.keysize = sizeof(uint32);
		ctl.entrysize = sizeof(uint32);
		ctl.hcxt = a->context;
		t->segment_keys = hash_create("pipeline cdc segment keys", 256, &ctl,
									  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	for (int k = 0; k < list_length(t->key); k++)
	{
		StringInfo	value = &newtup->colvalues[t->key_pos[k]];

		hash = hash_combine(hash, newtup->colstatus[t->key_pos[k]] == LOGICALREP_COLUMN_TEXT ?
							DatumGetUInt32(hash_any((unsigned char *) value->data, value->len)) : 0);
	}
	(void) hash_search(t->segment_keys, &hash, HASH_ENTER, &found);
	return !found;
}

/* An update that moves its row to another key, on its own (key_change_sql). */
static void
apply_key_change(CdcApply *a, CdcTable *t, Datum *values, bool *nulls)
{
	Tuplestorestate *rows = tuplestore_begin_heap(false, false, work_mem);

	if (t->key_change_sql == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(a->context);

		t->key_change_sql = key_change_sql(t);
		MemoryContextSwitchTo(old);
	}
	tuplestore_putvalues(rows, t->desc, values, nulls);
	if (execute_over_plan(a, &t->key_change_plan, t->key_change_sql, CHANGES_ENR, t->desc,
						  rows, 1) > 0)
	{
		a->loaded++;
		t->loaded = true;
	}
	tuplestore_end(rows);
}

/* An insert, update or delete, in stream order. */
void
cdc_apply_change(CdcApply *a, char op, uint32 relid, XLogRecPtr lsn,
				 LogicalRepTupleData *oldtup, LogicalRepTupleData *newtup)
{
	CdcTable   *t = table_of(a, relid);
	int			kind = op == 'I' ? STMT_INSERT : op == 'U' ? STMT_UPDATE : STMT_DELETE;
	int			natts;
	Datum	   *values;
	bool	   *nulls;
	MemoryContext old;

	if (t->ignored)
		return;
	a->changes++;
	if (a->events)
		add_event(a, op == 'I' ? "INSERT" : op == 'U' ? "UPDATE" : "DELETE",
				  t->relation, lsn, tuple_json(t, newtup), tuple_json(t, oldtup));
	if (a->src->target_schema == NULL)
		return;
	if (kind != STMT_INSERT && t->key == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("target table %s of pipeline \"%s\" has no primary key to apply %s by",
						t->target_name, a->p->name, op == 'U' ? "an UPDATE" : "a DELETE"),
				 errhint("Add a primary key to the target table.")));

	natts = SEG_NFIXED + t->natts + list_length(t->key);
	values = palloc(sizeof(Datum) * natts);
	nulls = palloc(sizeof(bool) * natts);
	segment_values(a, t, op, lsn, oldtup, newtup, values, nulls);

	if (kind == STMT_UPDATE && has_unchanged(newtup))
	{
		close_segment(a, t);
		apply_partial_update(a, t, newtup, values, nulls);
		return;
	}
	if (kind == STMT_UPDATE && key_moved(t, oldtup, newtup))
	{
		close_segment(a, t);
		apply_key_change(a, t, values, nulls);
		return;
	}
	if (t->op != kind || (kind == STMT_UPDATE && t->ordered && !add_segment_key(a, t, newtup)))
	{
		close_segment(a, t);
		if (kind == STMT_UPDATE && t->ordered)
			(void) add_segment_key(a, t, newtup);
	}
	if (t->rows == NULL)
	{
		old = MemoryContextSwitchTo(a->context);
		t->rows = tuplestore_begin_heap(false, false, work_mem);
		MemoryContextSwitchTo(old);
		t->op = kind;
	}
	tuplestore_putvalues(t->rows, t->desc, values, nulls);
	t->nrows++;
}

/*
 * A TRUNCATE: what the tables' open segments held is gone with them. The
 * targets of one TRUNCATE are truncated by one statement, so tables that
 * reference each other by foreign keys can be.
 */
void
cdc_apply_truncate(CdcApply *a, List *relids, bool restart_seqs, XLogRecPtr lsn)
{
	StringInfoData targets;
	ListCell   *lc;

	initStringInfo(&targets);
	foreach(lc, relids)
	{
		CdcTable   *t = table_of(a, lfirst_oid(lc));

		if (t->ignored)
			continue;
		a->changes++;
		if (a->events)
			add_event(a, "TRUNCATE", t->relation, lsn, NULL, NULL);
		if (a->src->target_schema == NULL)
			continue;
		drop_segment(t);
		appendStringInfo(&targets, "%s%s", targets.len > 0 ? ", " : "", t->target_name);
		t->loaded = true;
	}
	if (targets.len > 0 &&
		SPI_execute(psprintf("TRUNCATE %s%s", targets.data,
							 restart_seqs ? " RESTART IDENTITY" : ""), false, 0) < 0)
		elog(ERROR, "could not truncate %s", targets.data);
}

/* Apply what is still open, land the events; what the run did. */
CdcCounts
cdc_apply_end(CdcApply *a)
{
	HASH_SEQ_STATUS scan;
	CdcTable   *t;
	CdcCounts	counts = {0};

	hash_seq_init(&scan, a->tables);
	while ((t = hash_seq_search(&scan)) != NULL)
	{
		close_segment(a, t);
		if (t->loaded)
			counts.touched = lappend_oid(counts.touched, t->target);
	}
	if (a->nevents > 0)
		a->loaded += execute_over(a, psprintf("INSERT INTO %s (lsn, op, relation, committed_at, new, old) "
										   "SELECT e.lsn::pg_catalog.pg_lsn, e.op, e.relation, e.committed_at, "
										   "e.new::pg_catalog.jsonb, e.old::pg_catalog.jsonb FROM " EVENTS_ENR " AS e",
										   qualified_relation_name(a->src->events)),
								  EVENTS_ENR, a->events_desc, a->events, a->nevents);
	counts.changes = a->changes;
	counts.loaded = a->loaded;
	counts.transactions = a->transactions;
	counts.end_lsn = a->end_lsn;
	return counts;
}
