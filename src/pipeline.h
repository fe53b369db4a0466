/*-------------------------------------------------------------------------
 *
 * pipeline.h
 *	  Shared definitions of the pipeline extension.
 *
 * Data flows through the files in this order: catalog.c (definitions),
 * define.c (create/alter/drop), extract.c (sources and watermarks),
 * transform.c (the user's SELECT and type conversion), load.c (targets),
 * run.c (one run, start to end). security.c switches identities.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PIPELINE_H
#define PIPELINE_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "utils/snapshot.h"

/*
 * PostgreSQL 16 folded the per-catalog ownership and ACL checks into
 * object_ownercheck/object_aclcheck and gave stringToQualifiedNameList an
 * escontext: the names of 15 keep working on 16 and later.
 */
#if PG_VERSION_NUM >= 160000
#include "catalog/pg_class_d.h"
#include "catalog/pg_database_d.h"
#include "catalog/pg_namespace_d.h"
#define pg_class_ownercheck(relid, role) object_ownercheck(RelationRelationId, (relid), (role))
#define pg_database_ownercheck(db, role) object_ownercheck(DatabaseRelationId, (db), (role))
#define pg_namespace_aclcheck(nsp, role, mode) \
	object_aclcheck(NamespaceRelationId, (nsp), (role), (mode))
#define qualified_name_list(string) stringToQualifiedNameList((string), NULL)
#else
#define qualified_name_list(string) stringToQualifiedNameList(string)
#endif

/* Alias of the source relation inside the generated batch query. */
#define BATCH_ALIAS "__pipeline_batch"
/* Alias of the transform's output inside the generated load statement. */
#define OUTPUT_ALIAS "__pipeline_out"

typedef enum LoadMode
{
	LOAD_APPEND,
	LOAD_UPSERT,
	LOAD_REPLACE,
	LOAD_CDC					/* a CDC pipeline: see cdc.c */
} LoadMode;

/* What happens to a row that breaks a contract rule. */
typedef enum RuleAction
{
	ACTION_QUARANTINE,			/* the row goes to pipeline.quarantine */
	ACTION_FAIL,				/* the run fails */
	ACTION_WARN					/* the row loads; the break is counted */
} RuleAction;

/* A contract rule: one row of pipeline.contract_rules, or an implicit one. */
typedef struct Rule
{
	char	   *name;			/* "<column>.<kind>", a check's or constraint's name */
	char	   *kind;
	char	   *column;			/* NULL for checks */
	char	   *argument;		/* as jsonb text */
	RuleAction	action;
	char	   *violation;		/* SQL: true when a row breaks the rule */
} Rule;

/* A pipeline definition: one row of pipeline.pipelines. */
typedef struct Pipeline
{
	char	   *name;
	Oid			owner;
	Oid			source;
	Oid			target;
	char	   *transform;		/* NULL: the source's columns as they are */
	char	   *watermark;		/* NULL: a full snapshot every run */
	char	   *last_watermark; /* NULL: nothing processed yet */
	LoadMode	mode;
	List	   *key;			/* column names (String), upsert only */
	int64		batch_size;		/* 0: no cap */
	char	   *lag;			/* NULL: no safety lag */
	bool		enabled;
	char	   *search_path;	/* the creator's, pinned for every run */
	double		max_bad_fraction;	/* < 0: no limit */
	int64		max_bad_rows;	/* < 0: no limit */
	List	   *rules;			/* the contract's rules (Rule), when read */
	List	   *depends_on;		/* names (String) of declared upstreams */
	int			retries;		/* retries after a failed run */
	char	   *retry_delay;	/* interval before the first retry, doubling */
	char	   *timeout;		/* interval a run may take, NULL: no limit */
	int64		timeout_ms;
	int			failures;		/* failed runs since the last success */
	bool		cascade;		/* a run that loads rows queues downstream */
	bool		queued;			/* an upstream run queued this one */
	bool		continuous;		/* background workers run it continuously */
	char	   *poll_interval;	/* how often they look for new rows */
} Pipeline;

/* security.c: who runs what, under which search_path */
typedef struct IdentityFrame
{
	Oid			saved_userid;
	int			saved_sec_context;
	int			saved_nestlevel;
} IdentityFrame;

extern void identity_enter(IdentityFrame *frame, Oid role,
						   const char *search_path);
extern void identity_pin(const char *name, const char *value);
extern void identity_leave(IdentityFrame *frame);
extern void identity_enter_catalog(IdentityFrame *frame);
extern void check_pipeline_owner(const Pipeline *p);
extern void require_read_committed(const char *action, const char *hint);
extern const char *catalog_search_path;

/* catalog.c: reading and writing pipeline.pipelines and pipeline.runs */
extern Oid	catalog_relid(void);
extern void catalog_lock_pipeline(const char *name);
extern bool catalog_try_lock_pipeline(const char *name);
extern Pipeline *catalog_read_pipeline(const char *name, bool missing_ok);
extern Pipeline *open_owned_pipeline(const char *name);
extern void catalog_refuse_existing(const char *name);

/* sql_text.c */
extern char *equality_operator_sql(Oid type);
extern char *type_marker_sql(Oid type);
extern void catalog_insert_pipeline(const Pipeline *p, Jsonb *options);
extern void catalog_update_pipeline(const Pipeline *p);
extern void catalog_delete_pipeline(const char *name);
extern void run_catalog_statement(const char *sql, int nargs, Oid *types, Datum *values,
								  char *nulls, int expected);
extern void catalog_set_watermark(const char *name, const char *watermark,
								  bool succeeded);
extern void catalog_record_failure(const char *name);
extern void catalog_dequeue(const char *name);
extern void catalog_pause(const char *name);
extern void catalog_queue_downstream(const char *name);
extern const char *load_mode_name(LoadMode mode);
extern LoadMode parse_load_mode(const char *mode);

/* define.c: validation shared by create and alter */
extern void validate_pipeline(Pipeline *p);
extern void pipeline_apply_options(Pipeline *p, Jsonb *options, bool definition);

/* depends.c: the DAG of pipelines */
extern void check_dependencies(const Pipeline *p);

/* worker.c: background workers (with shared_preload_libraries) */
extern void worker_init(void);

/* schedule.c: pg_cron jobs */
extern void unschedule_dropped(const char *name);
extern void unschedule_dropped_matview(const char *key);

/* contract.c: data contract rules */
extern List *contract_read(const Pipeline *p);
extern List *contract_rules(const Pipeline *p, List *output);
extern const char *raw_alias(const char *column);

/* quarantine.c: routing rows that break the contract */
extern void route_begin(const char *pipeline);
extern void route_end(void);
extern int64 route_diverted(void);
extern char *route_rule_counts(int limit);
extern void route_check_limits(const Pipeline *p, int64 rows_read);
extern int64 route_store(const Pipeline *p, int64 run_id);

/* extract.c: sources and watermarks */
typedef struct BatchRange
{
	char	   *from;			/* exclusive lower bound, NULL: unbounded */
	char	   *to;				/* inclusive upper bound, NULL: snapshot */
	bool		idle;			/* nothing new since the last run */
	bool		writers_open;	/* idle because writers outlasted the wait */
} BatchRange;

extern Oid	resolve_relation(const char *name, const char *what);
extern void check_source_kind(Oid relid, const char *name);
extern void check_target_kind(Oid relid, const char *name);
extern Oid	watermark_type(const Pipeline *p);
extern void check_watermark_column(Oid source, const char *column,
								   const char *source_name);
extern void check_lag(const Pipeline *p);
extern BatchRange extract_range(const Pipeline *p, bool wait_for_writers);
extern bool source_written_here(const Pipeline *p);
extern int	extract_writer_wait_ms;
extern char *batch_query(const Pipeline *p, const BatchRange *range);
extern char *watermark_lag(const Pipeline *p);

/* transform.c: the user's SELECT and conversion to the target's types */
typedef struct OutputColumn
{
	char	   *name;
	char	   *raw;			/* the transform's value, as SQL */
	char	   *expr;			/* the value converted to the target type */
	bool		checked;		/* expr is NULL where raw is not valid input */
	Oid			type;			/* the target column's type and typmod */
	int32		typmod;
	bool		not_null;		/* the target column is NOT NULL */
	Oid			raw_type;		/* the transform's type for it */
} OutputColumn;

extern void check_transform_syntax(const char *transform, const char *name);
extern List *transform_output(const Pipeline *p, const char *batch_sql,
							  bool *has_watermark);
extern char *transform_sql(const Pipeline *p);
extern OutputColumn *text_output_column(Oid target, const char *name);

/* load.c: the statements that move a batch into the target */
typedef struct LoadCounts
{
	int64		rows_read;
	int64		rows_loaded;
	int64		rows_quarantined;
} LoadCounts;

extern List *load_statements(const Pipeline *p, const BatchRange *range,
							 const char *replay);
extern char *load_rows_query(const char *transform, List *output, List *rules,
							 List *carry);
extern void append_column_list(StringInfo sql, List *output);
extern void analyze_statements(List *statements, const char *pipeline);
extern LoadCounts load_batch(const Pipeline *p, const BatchRange *range);
extern LoadCounts load_replay(const Pipeline *p, const char *replay);
extern void pin_creator_settings(const Pipeline *p);
extern List *default_key(Oid target);
extern bool output_has_column(List *output, const char *name);


/* matview_query.c, matview.c, matview_capture.c: incremental matviews */

/* How an aggregate column follows inserted rows without a recompute. */
typedef enum DeltaKind
{
	DELTA_NONE,					/* recompute the group */
	DELTA_COUNT,				/* count(*) and count(x): add */
	DELTA_SUM,					/* exact sum: add, NULL-aware */
	DELTA_MIN,					/* least */
	DELTA_MAX					/* greatest */
} DeltaKind;

typedef struct MatViewColumn
{
	char	   *name;
	bool		key;			/* a group key (or a key column of a join) */
	DeltaKind	delta;			/* non-key columns of an algebraic view */
	int			arg;			/* 1-based a<n> column of the delta, 0: none */
	char	   *range_step;		/* key is a time bucket of width: SQL interval */
} MatViewColumn;

typedef struct MatView
{
	int64		id;
	Oid			relid;
	Oid			owner;
	char	   *query;
	bool		immediate;
	bool		continuous;
	char	   *search_path;	/* the creator's: the query was analysed under it */
	char	   *timezone;
	char	   *datestyle;
	List	   *columns;		/* MatViewColumn, in the relation's order */
	int			nkeys;
	int			nargs;			/* a<n> columns of the delta */
	bool		algebraic;		/* inserted rows merge without a recompute */
	List	   *bases;			/* base tables (Oid) */
	List	   *capture;		/* per base table: SELECT of k<n>, a<n> over
								 * __pipeline_rows */
	char	   *recompute;		/* the query restricted to $params */
	char	   *full;			/* the query as deparsed */
	/* create only */
	List	   *arg_types;		/* Oid of a<n> */
	List	   *key_types;		/* Oid of k<n> */
	List	   *base_columns;	/* per base table: Bitmapset of the columns
								 * the query reads (attno - FirstLow...) */
} MatView;

/*
 * Parameters of the recompute query per key i (0-based), at KEY_PARAMS * i:
 * +1 keys (array), +2 a NULL key is among them, +3 and +4 the range of
 * time buckets [from, to), +5 that range holds exactly the buckets.
 */
#define KEY_PARAMS 5

/* Name of the transition table each capture statement reads. */
#define CAPTURE_ROWS "__pipeline_rows"

extern void matview_analyze(MatView *mv, const char *name);
extern char *matview_delta_rows(const MatView *mv, const char *source);
extern char *matview_log_name(int64 id);
extern bool matviews_installed(void);
extern MatView *matview_read(Oid relid, bool missing_ok);
extern MatView *matview_read_by_id(int64 id);
extern MatView *matview_copy(const MatView *src);
extern MatView *open_owned_matview(const char *name);
extern Oid	matview_relation(const char *name);
extern char *matview_job_key(Oid relid);
extern int64 matview_apply(const MatView *mv, const char *delta_sql,
						   bool insert_only, bool full, Snapshot snapshot);
extern char *matview_merge_sql(const MatView *mv, const char *delta, bool filtered);
extern void matview_enter(const MatView *mv, IdentityFrame *frame);
extern void refresh_matviews_of(Oid base);

/* matview_fastpath.c: one-row INSERTs into immediate views */
typedef struct FastPath FastPath;
struct Tuplestorestate;
extern bool matview_fast_insert(FastPath **cache, MemoryContext context, const MatView *mv,
								Oid base, const char *capture, struct Tuplestorestate *rows);

/* cdc.c, cdc_source.c, cdc_apply.c: change data capture */

/* A CDC pipeline's source: one row of pipeline.cdc. */
typedef struct CdcSource
{
	char	   *publication;
	char	   *target_schema;	/* NULL: only the events table */
	char	   *connection;		/* NULL: this server */
	char	   *conninfo;		/* what is used to connect */
	char	   *slot;
	XLogRecPtr	applied_lsn;	/* end of the last applied transaction */
	bool		applied_committed;	/* applied_lsn was not written by this
									 * transaction: it may be confirmed */
	Oid			events;			/* the events table, or InvalidOid */
	bool		local;			/* the source is this database */
	List	   *tables;			/* String: the tables copied at create
								 * (schema.table) */
	bool		tables_known;	/* false for pipelines made before 0.4 */
} CdcSource;

/* What one CDC run did. */
typedef struct CdcCounts
{
	int64		changes;		/* decoded changes applied or quarantined */
	int64		loaded;			/* rows written to the target tables */
	int64		transactions;
	XLogRecPtr	end_lsn;		/* applied_lsn after the run */
	List	   *touched;		/* target tables written (Oid) */
} CdcCounts;

/* A published table, as the source lists it. */
typedef struct PublishedTable
{
	char	   *nspname;
	char	   *relname;
	List	   *columns;		/* String: the published columns */
	bool		keyed_changes;	/* the source may send UPDATEs or DELETEs */
	bool		identity_full;	/* REPLICA IDENTITY FULL */
} PublishedTable;

struct WalReceiverConn;
struct LogicalRepRelation;
struct LogicalRepTupleData;
typedef struct CdcApply CdcApply;

extern CdcSource *cdc_read(const Pipeline *p);
extern CdcCounts cdc_run(const Pipeline *p);
extern void cdc_drop(const Pipeline *p, bool drop_slot);
extern bool cdc_installed(void);
extern bool cdc_error_persists(const char *sqlstate);
extern char *lsn_text(XLogRecPtr lsn);
extern void refuse_cdc(const Pipeline *p, const char *what);

extern struct WalReceiverConn *cdc_try_connect(const char *conninfo, const char *appname,
											   char **err);
extern struct WalReceiverConn *cdc_connect(const char *conninfo, const char *pipeline);
extern void cdc_disconnect(struct WalReceiverConn *conn);
extern char *cdc_local_conninfo(Oid owner);
extern void cdc_check_publication(struct WalReceiverConn *conn, const char *publication,
								  const char *pipeline);
extern List *cdc_published_tables(struct WalReceiverConn *conn, const char *publication);
extern XLogRecPtr cdc_create_slot(struct WalReceiverConn *conn, const char *slot,
								  bool use_snapshot);
extern void cdc_drop_slot(const char *conninfo, const char *slot, const char *pipeline);
extern void cdc_copy_table(struct WalReceiverConn *conn, const PublishedTable *table,
						   Oid target, const char *pipeline);
extern XLogRecPtr cdc_source_flush_lsn(struct WalReceiverConn *conn);
extern void cdc_stream(struct WalReceiverConn *conn, const CdcSource *src,
					   XLogRecPtr upto, int64 batch_size, CdcApply *apply);

extern CdcApply *cdc_apply_begin(const Pipeline *p, const CdcSource *src);
extern void cdc_apply_relation(CdcApply *a, struct LogicalRepRelation *rel);
extern bool cdc_apply_transaction(CdcApply *a, XLogRecPtr final_lsn, TimestampTz commit_time);
extern void cdc_apply_change(CdcApply *a, char op, uint32 relid, XLogRecPtr lsn,
							 struct LogicalRepTupleData *oldtup,
							 struct LogicalRepTupleData *newtup);
extern void cdc_apply_truncate(CdcApply *a, List *relids, bool restart_seqs,
							   XLogRecPtr lsn);
extern void cdc_apply_commit(CdcApply *a, XLogRecPtr end_lsn);
extern int64 cdc_apply_changes(CdcApply *a);
extern int64 cdc_apply_transactions(CdcApply *a);
extern CdcCounts cdc_apply_end(CdcApply *a);
extern Oid	cdc_target_table(const char *target_schema, const char *relname,
							 const char *source_schema, List *columns,
							 const char *pipeline);

/* helpers */

/* An SPI argument from a C string; NULL becomes SQL NULL ('n'). */
static inline Datum
text_arg(const char *value, char *null_flag)
{
	*null_flag = value ? ' ' : 'n';
	return value ? PointerGetDatum(cstring_to_text(value)) : (Datum) 0;
}

extern char *qualified_relation_name(Oid relid);
extern void sql_error_context_push(ErrorContextCallback *cb,
								   const char *sql, const char *pipeline);

#endif							/* PIPELINE_H */
