/*-------------------------------------------------------------------------
 *
 * security.c
 *	  Identity switching: pipelines run as their owner under the search_path
 *	  pinned at create time; the catalog is written as its own owner.
 *
 * This is what REFRESH MATERIALIZED VIEW does for a view's query: switch to
 * the owner with SECURITY_RESTRICTED_OPERATION and a fresh GUC nest level,
 * so that neither the caller's identity nor its search_path leaks into the
 * run. An error unwinds both through (sub)transaction abort.
 *
 *-------------------------------------------------------------------------
 */
#include "pipeline.h"

#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_class.h"

/* search_path for the catalog's own statements: nothing user-writable. */
const char *catalog_search_path = "pg_catalog, pg_temp";

/*
 * Set a GUC at the frame's nest level, unless it already has that value
 * (statement triggers enter a frame for every statement).
 */
void
identity_pin(const char *name, const char *value)
{
	if (strcmp(GetConfigOption(name, false, false), value) != 0)
		(void) set_config_option(name, value, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
}

void
identity_enter(IdentityFrame *frame, Oid role, const char *search_path)
{
	GetUserIdAndSecContext(&frame->saved_userid, &frame->saved_sec_context);
	SetUserIdAndSecContext(role,
						   frame->saved_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	frame->saved_nestlevel = NewGUCNestLevel();
	identity_pin("search_path", search_path);
}

/*
 * Undo every setting changed inside the frame, whether pinned by us or set
 * by the code that ran there (set_config(..., false) in a user's view or
 * function included), as REFRESH MATERIALIZED VIEW does: nothing the
 * owner's code does may outlive the switch back to the caller.
 */
void
identity_leave(IdentityFrame *frame)
{
	AtEOXact_GUC(false, frame->saved_nestlevel);
	SetUserIdAndSecContext(frame->saved_userid, frame->saved_sec_context);
}

/* Act as the owner of pipeline.pipelines (the extension's owner). */
void
identity_enter_catalog(IdentityFrame *frame)
{
	Oid			relid = catalog_relid();
	HeapTuple	tuple;
	Oid			owner;

	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);

	identity_enter(frame, owner, catalog_search_path);
}

/*
 * Only members of the owning role (and superusers) may run, alter, reset or
 * drop a pipeline, as with any owned object.
 */
void
check_pipeline_owner(const Pipeline *p)
{
	if (!has_privs_of_role(GetUserId(), p->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for pipeline \"%s\"", p->name),
				 errdetail("Pipeline \"%s\" is owned by role \"%s\".",
						   p->name, GetUserNameFromId(p->owner, false)),
				 errhint("Only members of the owning role can use it.")));
}

/*
 * Refuse REPEATABLE READ and SERIALIZABLE for work that must see what
 * other transactions committed since this one began: "action" reads
 * "<what> cannot run" and gets " in a ... transaction" appended.
 */
void
require_read_committed(const char *action, const char *hint)
{
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s in a %s transaction", action,
						IsolationIsSerializable() ? "SERIALIZABLE" : "REPEATABLE READ"),
				 errhint("%s", hint)));
}
