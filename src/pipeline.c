/*-------------------------------------------------------------------------
 *
 * pipeline.c
 *	  Module entry point of the pipeline extension.
 *
 * The SQL functions live in the files of their concern: define.c
 * (create, alter, drop, reset) and run.c (run, explain).
 *
 *-------------------------------------------------------------------------
 */
#include "pipeline.h"

#include "fmgr.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	/* Every SQL function works without preloading; workers need it. */
	worker_init();
}
