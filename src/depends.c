/*-------------------------------------------------------------------------
 *
 * depends.c
 *	  The DAG of pipelines: declared upstreams (option depends_on) and
 *	  inferred ones (a pipeline whose target is this one's source).
 *
 * The edges are the view pipeline.dependencies; pipeline_run_all() runs
 * pipelines in its topological order (pipeline_run_order). A definition
 * that would close a cycle is refused when it is stored (the check runs
 * after the catalog row is written, in the same transaction, so the error
 * undoes it). Both read the DAG once and work in time linear in pipelines
 * and edges: a dense DAG has exponentially many paths, which must never be
 * walked one by one. DAG changes are serialised by one lock, so two
 * concurrent alters cannot each close half of a cycle.
 *
 * An inferred edge needs the upstream's owner to be the downstream's owner
 * or the owner of its source (see the view): whoever can merely write into
 * another role's table does not get to run before, or block, its pipeline.
 *
 *-------------------------------------------------------------------------
 */
#include "pipeline.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"

/* ---- the DAG in memory: nodes by name, edges as adjacency lists ---- */

typedef struct DagNode
{
	const char *name;			/* hash key: the string it points to */
	int			index;
} DagNode;

typedef struct DagEdge
{
	int			to;
	int			next;			/* the next edge out of the same node, -1 */
} DagEdge;

typedef struct Dag
{
	int			n;
	char	  **names;
	HTAB	   *index;			/* name -> DagNode */
	int		   *first_edge;		/* per node, -1: none */
	int		   *upstreams;		/* per node: edges into it */
	DagEdge    *edges;
} Dag;

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

static int
dag_find(const Dag *dag, char *name)
{
	DagNode    *node = hash_search(dag->index, &name, HASH_FIND, NULL);

	return node ? node->index : -1;
}

/*
 * Read the pipelines and pipeline.dependencies, as the current role (its
 * row-level security applies), inside SPI; not read_only to see what this
 * command wrote. Edges to pipelines not read (an upstream the role cannot
 * see) are left out.
 */
static void
dag_load(Dag *dag, bool read_only)
{
	HASHCTL		ctl;
	int			nedges = 0;

	if (SPI_execute("SELECT name FROM pipeline.pipelines", read_only, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the pipelines");
	dag->n = (int) SPI_processed;
	ctl.keysize = sizeof(const char *);
	ctl.entrysize = sizeof(DagNode);
	ctl.hash = dag_hash;
	ctl.match = dag_match;
	ctl.hcxt = CurrentMemoryContext;
	dag->index = hash_create("pipeline DAG", Max(dag->n, 16), &ctl,
							 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	dag->names = palloc(sizeof(char *) * Max(dag->n, 1));
	dag->first_edge = palloc(sizeof(int) * Max(dag->n, 1));
	dag->upstreams = palloc0(sizeof(int) * Max(dag->n, 1));
	for (int i = 0; i < dag->n; i++)
	{
		DagNode    *node;

		dag->names[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		dag->first_edge[i] = -1;
		node = hash_search(dag->index, &dag->names[i], HASH_ENTER, NULL);
		node->index = i;
	}

	if (SPI_execute("SELECT upstream, downstream FROM pipeline.dependencies", read_only, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pipeline.dependencies");
	dag->edges = palloc(sizeof(DagEdge) * Max(SPI_processed, 1));
	for (uint64 e = 0; e < SPI_processed; e++)
	{
		int			from = dag_find(dag, SPI_getvalue(SPI_tuptable->vals[e], SPI_tuptable->tupdesc, 1));
		int			to = dag_find(dag, SPI_getvalue(SPI_tuptable->vals[e], SPI_tuptable->tupdesc, 2));

		if (from < 0 || to < 0)
			continue;
		dag->edges[nedges].to = to;
		dag->edges[nedges].next = dag->first_edge[from];
		dag->first_edge[from] = nedges++;
		dag->upstreams[to]++;
	}
}

/*
 * A shortest cycle through start, as "start -> a -> ... -> start", or NULL:
 * a breadth-first search from start that visits each node once.
 */
static char *
dag_cycle_through(const Dag *dag, int start)
{
	int		   *parent = palloc(sizeof(int) * Max(dag->n, 1));
	int		   *queue = palloc(sizeof(int) * Max(dag->n, 1));
	int			head = 0,
				tail = 0;
	int			last = -1;		/* the node whose edge leads back to start */

	for (int i = 0; i < dag->n; i++)
		parent[i] = -2;			/* not reached */
	queue[tail++] = start;
	parent[start] = -1;
	while (head < tail && last < 0)
	{
		int			u = queue[head++];

		for (int e = dag->first_edge[u]; e >= 0 && last < 0; e = dag->edges[e].next)
		{
			int			v = dag->edges[e].to;

			if (v == start)
				last = u;
			else if (parent[v] == -2)
			{
				parent[v] = u;
				queue[tail++] = v;
			}
		}
	}
	if (last < 0)
		return NULL;
	{
		StringInfoData path;
		int			length = 0;
		int		   *nodes = palloc(sizeof(int) * (dag->n + 1));

		for (int v = last; v >= 0; v = parent[v])
			nodes[length++] = v;	/* last, ..., start */
		initStringInfo(&path);
		for (int i = length - 1; i >= 0; i--)
			appendStringInfo(&path, "%s -> ", dag->names[nodes[i]]);
		appendStringInfoString(&path, dag->names[start]);
		return path.data;
	}
}

void
check_dependencies(const Pipeline *p)
{
	IdentityFrame frame;
	ListCell   *lc;
	Dag			dag;
	int			self;
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
	 * read-only: the queries must see the row this command just wrote.
	 */
	identity_enter_catalog(&frame);
	dag_load(&dag, false);
	self = dag_find(&dag, p->name);
	if (self >= 0)
		cycle = dag_cycle_through(&dag, self);
	identity_leave(&frame);

	if (cycle)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("dependencies of pipeline \"%s\" would form a cycle: %s", p->name, cycle),
				 errhint("See pipeline.dependencies; a dependency is declared by depends_on or inferred when a source is another pipeline's target.")));
}

/* ---- pipeline_run_order(): Kahn's algorithm over the visible DAG ---- */

PG_FUNCTION_INFO_V1(pipeline_run_order);

/*
 * Every pipeline the caller can see, with its depth: 0 without upstream,
 * else one more than its deepest upstream. Nodes left on a cycle (none can
 * be stored, but a catalog edited by hand may have one) come last, so they
 * still run.
 */
Datum
pipeline_run_order(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Dag			dag;
	int		   *depth,
			   *queue;
	int			head = 0,
				tail = 0,
				deepest = 0;

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	dag_load(&dag, true);
	depth = palloc0(sizeof(int) * Max(dag.n, 1));
	queue = palloc(sizeof(int) * Max(dag.n, 1));
	for (int i = 0; i < dag.n; i++)
		if (dag.upstreams[i] == 0)
			queue[tail++] = i;
	while (head < tail)
	{
		int			u = queue[head++];

		deepest = Max(deepest, depth[u]);
		for (int e = dag.first_edge[u]; e >= 0; e = dag.edges[e].next)
		{
			int			v = dag.edges[e].to;

			depth[v] = Max(depth[v], depth[u] + 1);
			if (--dag.upstreams[v] == 0)
				queue[tail++] = v;
		}
	}

	for (int i = 0; i < dag.n; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = CStringGetTextDatum(dag.names[i]);
		values[1] = Int32GetDatum(dag.upstreams[i] > 0 ? deepest + 1 : depth[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}
