/*-------------------------------------------------------------------------
 *
 * depends.c
 *	  The DAG of pipelines: declared upstreams (option depends_on) and
 *	  inferred ones (a pipeline whose target is this one's source).
 *
 * The edges are the view pipeline.dependencies; pipeline_run_all() runs
 * pipelines in its topological order (pipeline_run_order, linear in the
 * edges). A definition that would close a cycle is refused when it is
 * stored (the check runs after the catalog row is written, in the same
 * transaction, so the error undoes it). DAG changes are serialised by one
 * lock, so two concurrent alters cannot each close half of a cycle.
 *
 * An inferred edge needs the upstream's owner to be the downstream's owner
 * or the owner of its source (see the view): whoever can merely write into
 * another role's table does not get to run before, or block, its pipeline.
 *
 *-------------------------------------------------------------------------
 */
#include "pipeline.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "common/hashfn.h"
#include "utils/hsearch.h"

void
check_dependencies(const Pipeline *p)
{
	IdentityFrame frame;
	Oid			type = TEXTOID;
	Datum		name = CStringGetTextDatum(p->name);
	ListCell   *lc;
	char	   *cycle = NULL;

	/*
	 * One DAG change at a time, until commit: the check below then sees
	 * every change committed before (READ COMMITTED: a fresh snapshot).
	 * Sub-id 1 keeps this lock apart from the per-pipeline locks.
	 */
	LockDatabaseObject(catalog_relid(), 0, 1, ExclusiveLock);

	foreach(lc, p->depends_on)
	{
		const char *upstream = strVal(lfirst(lc));

		if (catalog_read_pipeline(upstream, true) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("pipeline \"%s\" depends on pipeline \"%s\", which does not exist",
							p->name, upstream)));
	}

	/*
	 * Every pipeline counts, not only those the caller can see. Not
	 * read-only: the query must see the row this command just wrote.
	 */
	identity_enter_catalog(&frame);
	if (SPI_execute_with_args("WITH RECURSIVE walk(node, path) AS ("
							  "  SELECT downstream, ARRAY[upstream, downstream] "
							  "  FROM pipeline.dependencies WHERE upstream = $1 "
							  "  UNION ALL "
							  "  SELECT d.downstream, w.path || d.downstream "
							  "  FROM walk w JOIN pipeline.dependencies d ON d.upstream = w.node "
							  "  WHERE w.node <> $1 AND d.downstream <> ALL (w.path[2:])) "
							  "SELECT array_to_string(path, ' -> ') FROM walk WHERE node = $1 LIMIT 1",
							  1, &type, &name, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not check the dependencies of pipeline \"%s\"", p->name);
	if (SPI_processed > 0)
		cycle = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	identity_leave(&frame);

	if (cycle)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("dependencies of pipeline \"%s\" would form a cycle: %s", p->name, cycle),
				 errhint("See pipeline.dependencies; a dependency is declared by depends_on or inferred when a source is another pipeline's target.")));
}

/* ---- pipeline_run_order(): Kahn's algorithm over the visible DAG ---- */

typedef struct DagNode
{
	const char *name;			/* hash key: the string it points to */
	int			index;
} DagNode;

static uint32
dag_hash(const void *key, Size keysize)
{
	const char *name = *(const char *const *) key;

	return hash_bytes((const unsigned char *) name, (int) strlen(name));
}

static int
dag_match(const void *a, const void *b, Size keysize)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

typedef struct DagEdge
{
	int			to;
	int			next;			/* the next edge out of the same node, -1 */
} DagEdge;

PG_FUNCTION_INFO_V1(pipeline_run_order);

/*
 * Every pipeline the caller can see, with its depth: 0 without upstream,
 * else one more than its deepest upstream. O(pipelines + edges). Nodes
 * left on a cycle (none can be stored, but a catalog edited by hand may
 * have one) come last, so they still run.
 */
Datum
pipeline_run_order(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HASHCTL		ctl;
	HTAB	   *index;
	int			n;
	char	  **names;
	int		   *first_edge,
			   *pending,
			   *depth,
			   *queue;
	DagEdge    *edges;
	int			nedges = 0,
				head = 0,
				tail = 0,
				deepest = 0;

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	if (SPI_execute("SELECT name FROM pipeline.pipelines", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the pipelines");
	n = (int) SPI_processed;
	ctl.keysize = sizeof(const char *);
	ctl.entrysize = sizeof(DagNode);
	ctl.hash = dag_hash;
	ctl.match = dag_match;
	ctl.hcxt = CurrentMemoryContext;
	index = hash_create("pipeline DAG", Max(n, 16), &ctl,
						HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	names = palloc(sizeof(char *) * Max(n, 1));
	first_edge = palloc(sizeof(int) * Max(n, 1));
	pending = palloc0(sizeof(int) * Max(n, 1));
	depth = palloc0(sizeof(int) * Max(n, 1));
	queue = palloc(sizeof(int) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		DagNode    *node;

		names[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		first_edge[i] = -1;
		node = hash_search(index, &names[i], HASH_ENTER, NULL);
		node->index = i;
	}

	if (SPI_execute("SELECT upstream, downstream FROM pipeline.dependencies", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pipeline.dependencies");
	edges = palloc(sizeof(DagEdge) * Max(SPI_processed, 1));
	for (uint64 e = 0; e < SPI_processed; e++)
	{
		char	   *from_name = SPI_getvalue(SPI_tuptable->vals[e], SPI_tuptable->tupdesc, 1);
		char	   *to_name = SPI_getvalue(SPI_tuptable->vals[e], SPI_tuptable->tupdesc, 2);
		DagNode    *from = hash_search(index, &from_name, HASH_FIND, NULL);
		DagNode    *to = hash_search(index, &to_name, HASH_FIND, NULL);

		if (from == NULL || to == NULL)
			continue;			/* an upstream the caller cannot see */
		edges[nedges].to = to->index;
		edges[nedges].next = first_edge[from->index];
		first_edge[from->index] = nedges++;
		pending[to->index]++;
	}

	for (int i = 0; i < n; i++)
		if (pending[i] == 0)
			queue[tail++] = i;
	while (head < tail)
	{
		int			u = queue[head++];

		deepest = Max(deepest, depth[u]);
		for (int e = first_edge[u]; e >= 0; e = edges[e].next)
		{
			int			v = edges[e].to;

			depth[v] = Max(depth[v], depth[u] + 1);
			if (--pending[v] == 0)
				queue[tail++] = v;
		}
	}

	for (int i = 0; i < n; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = CStringGetTextDatum(names[i]);
		values[1] = Int32GetDatum(pending[i] > 0 ? deepest + 1 : depth[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}
