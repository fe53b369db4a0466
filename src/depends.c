/*-------------------------------------------------------------------------
 *
 * depends.c
 *	  The DAG of pipelines: declared upstreams (option depends_on) and
 *	  inferred ones (a pipeline whose target is this one's source).
 *
 * The edges are the view pipeline.dependencies; pipeline_run_all() runs
 * pipelines in its topological order. A definition that would close a cycle
 * is refused when it is stored (the check runs after the catalog row is
 * written, in the same transaction, so the error undoes it).
 *
 *-------------------------------------------------------------------------
 */
#include "pipeline.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

void
check_dependencies(const Pipeline *p)
{
	IdentityFrame frame;
	Oid			type = TEXTOID;
	Datum		name = CStringGetTextDatum(p->name);
	ListCell   *lc;
	char	   *cycle = NULL;

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
