/*-------------------------------------------------------------------------
 *
 * schedule.c
 *	  Scheduling through pg_cron: a job named "pipeline:<name>" that calls
 *	  pipeline_run, or "pipeline_view:<schema.view>" that calls
 *	  pipeline_refresh for an incremental materialized view.
 *
 * Every job belongs to the catalog's owner (the extension's owner), not to
 * the role that called pipeline_schedule: pg_cron connects as the job's
 * user, and a job whose user was dropped (DROP OWNED, DROP ROLE) stops
 * pg_cron's scheduler for the whole cluster (pg_cron 1.4). The catalog's
 * owner cannot be dropped while the extension exists, and can log in. The
 * command is fixed text that names the object (quoted), and pipeline_run
 * executes the pipeline as its owner whoever calls it. Because one role
 * owns every job, a job is found by its name alone, and the two prefixes
 * keep pipelines and views (whose names may be equal) apart.
 *
 * pg_cron is optional: without it in this database these functions fail
 * with a hint, and everything else works; a schedule left in the catalog
 * without its job (a restore into another database) is shown as such by
 * pipeline.status and pipeline_unschedule clears it.
 *
 *-------------------------------------------------------------------------
 */
#include "pipeline.h"

#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pipeline_schedule);
PG_FUNCTION_INFO_V1(pipeline_unschedule);

static bool
cron_installed(void)
{
	return OidIsValid(get_extension_oid("pg_cron", true));
}

static void
require_cron(const char *name)
{
	if (!cron_installed())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot schedule pipeline \"%s\": pg_cron is not installed in database \"%s\"",
						name, get_database_name(MyDatabaseId)),
				 errhint("Install the package postgresql-15-cron, add pg_cron to shared_preload_libraries, "
						 "set cron.database_name to this database, restart, and run CREATE EXTENSION pg_cron. "
						 "Without it, call pipeline_run() from your own scheduler.")));
}

static char *
job_name(const char *key, bool matview)
{
	return psprintf(matview ? "pipeline_view:%s" : "pipeline:%s", key);
}

/* The commands of the jobs: fixed text around the quoted name. */
static char *
pipeline_command(const char *name)
{
	return psprintf("SELECT pg_catalog.pipeline_run(%s, 'cron')", quote_literal_cstr(name));
}

static char *
matview_command(const char *key)
{
	return psprintf("SELECT pg_catalog.pipeline_refresh(%s)", quote_literal_cstr(key));
}

/*
 * What a job is for: a pipeline (runs it) or an incremental materialized
 * view (refreshes it), locked and checked for ownership. "key" is the name
 * in the job's name: the pipeline's, or the view's qualified name.
 */
typedef struct JobTarget
{
	const char *key;
	const char *job;			/* the job's name */
	const char *command;
	const char *catalog_update; /* sets the schedule column: $1 key, $2 cron */
} JobTarget;

static JobTarget
job_target(const char *name)
{
	JobTarget	t;
	Pipeline   *p;
	Oid			view = InvalidOid;

	catalog_lock_pipeline(name);
	p = catalog_read_pipeline(name, true);
	/*
	 * A name can be both a pipeline's and a view's ("s.v"): the caller's
	 * own one, the pipeline if both are; another role's pipeline of a
	 * view's name must not keep the view's owner from scheduling it.
	 */
	if (p == NULL || !has_privs_of_role(GetUserId(), p->owner))
		view = matview_relation(name);
	if (!OidIsValid(view))
	{
		if (p == NULL)
			p = catalog_read_pipeline(name, false); /* "does not exist" */
		check_pipeline_owner(p);
		t.key = name;
		t.job = job_name(name, false);
		t.command = pipeline_command(name);
		t.catalog_update = "UPDATE pipeline.pipelines SET schedule = $2 "
			"WHERE name OPERATOR(pg_catalog.=) $1";
		return t;
	}
	(void) open_owned_matview(name);
	t.key = matview_job_key(view);
	t.job = job_name(t.key, true);
	t.command = matview_command(t.key);
	t.catalog_update = "UPDATE pipeline.matviews SET schedule = $2 "
		"WHERE relation OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)";
	return t;
}

/*
 * Set the catalog's schedule column (NULL: none). Returns whether a row
 * had a schedule before a clear (a clear touches only those rows).
 */
static bool
store_schedule(const JobTarget *t, const char *cron)
{
	IdentityFrame frame;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	const char *sql = t->catalog_update;
	bool		changed;

	values[0] = CStringGetTextDatum(t->key);
	values[1] = text_arg(cron, &nulls[1]);
	if (cron == NULL)
		sql = psprintf("%s AND schedule IS NOT NULL", sql);
	identity_enter_catalog(&frame);
	changed = SPI_execute_with_args(sql, 2, types, values, nulls, false, 0) == SPI_OK_UPDATE &&
		SPI_processed > 0;
	identity_leave(&frame);
	return changed;
}

/* pipeline_schedule(name, cron): create or change the job; returns its id. */
Datum
pipeline_schedule(PG_FUNCTION_ARGS)
{
	const char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	const char *cron = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];
	bool		isnull;
	int64		jobid;
	JobTarget	t;
	IdentityFrame frame;

	SPI_connect();
	t = job_target(name);
	require_cron(name);
	/*
	 * pg_cron keeps job names as "name", cut at 63 bytes: two long names
	 * would share one job (the catalog owner's), and the later schedule
	 * would take over the earlier one's.
	 */
	if (strlen(t.job) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("cannot schedule \"%s\": its job name \"%s\" is longer than %d bytes",
						name, t.job, NAMEDATALEN - 1),
				 errhint("Use a shorter name, or call pipeline_run() or pipeline_refresh() from a job of your own.")));
	values[0] = CStringGetTextDatum(t.job);
	values[1] = CStringGetTextDatum(cron);
	values[2] = CStringGetTextDatum(t.command);
	/* the job is the catalog owner's: see the head of this file */
	identity_enter_catalog(&frame);
	if (SPI_execute_with_args("SELECT cron.schedule($1, $2, $3)", 3, types, values,
							  NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "cron.schedule failed for \"%s\"", name);
	jobid = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	identity_leave(&frame);
	(void) store_schedule(&t, cron);
	SPI_finish();
	PG_RETURN_INT64(jobid);
}

/*
 * Remove the object's job, as the catalog's owner: the job of that name
 * that the catalog's owner owns (see the head of this file), or one of any
 * user with exactly the object's command (a job of 0.3, or one whose user
 * was dropped), never another job that merely has the same name.
 */
static uint64
remove_jobs(const char *job, const char *command)
{
	IdentityFrame frame;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	uint64		removed;

	values[0] = CStringGetTextDatum(job);
	values[1] = CStringGetTextDatum(command);
	identity_enter_catalog(&frame);
	if (SPI_execute_with_args("SELECT cron.unschedule(jobid) FROM cron.job "
							  "WHERE jobname OPERATOR(pg_catalog.=) $1 "
							  "AND (username OPERATOR(pg_catalog.=) CURRENT_USER "
							  "OR command OPERATOR(pg_catalog.=) $2)",
							  2, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "cron.unschedule failed for job \"%s\"", job);
	removed = SPI_processed;
	identity_leave(&frame);
	return removed;
}

Datum
pipeline_unschedule(PG_FUNCTION_ARGS)
{
	const char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	JobTarget	t;

	bool		removed;

	SPI_connect();
	t = job_target(name);
	removed = cron_installed() && remove_jobs(t.job, t.command) > 0;
	/*
	 * A schedule without its job (restored into another database, or the
	 * job removed by hand) is cleared all the same.
	 */
	if (!store_schedule(&t, NULL) && !removed)
	{
		require_cron(name);
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("\"%s\" is not scheduled", name),
				 errhint("See SELECT * FROM cron.job WHERE jobname = '%s'.", t.job)));
	}
	SPI_finish();
	PG_RETURN_VOID();
}

/* A dropped pipeline takes its job with it. */
void
unschedule_dropped(const char *name)
{
	if (cron_installed())
		(void) remove_jobs(job_name(name, false), pipeline_command(name));
}

/* So does a dropped incremental view (key: its qualified name). */
void
unschedule_dropped_matview(const char *key)
{
	if (cron_installed())
		(void) remove_jobs(job_name(key, true), matview_command(key));
}

/*
 * pipeline_job_state(pipeline, matview): the state of the object's job, for
 * pipeline.status (see the SQL definition); NULL for what the caller does
 * not own. Read as the catalog's owner: pg_cron shows a role only its own
 * jobs, and the jobs are the catalog owner's.
 */
PG_FUNCTION_INFO_V1(pipeline_job_state);

Datum
pipeline_job_state(PG_FUNCTION_ARGS)
{
	const char *job;
	const char *command;
	IdentityFrame frame;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char	   *state = "missing";
	MemoryContext caller = CurrentMemoryContext;

	if (!PG_ARGISNULL(0))
	{
		const char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
		Pipeline   *p;

		SPI_connect();
		p = catalog_read_pipeline(name, true);
		if (p == NULL || !has_privs_of_role(GetUserId(), p->owner))
		{
			SPI_finish();
			PG_RETURN_NULL();
		}
		job = job_name(name, false);
		command = pipeline_command(name);
	}
	else if (!PG_ARGISNULL(1))
	{
		Oid			view = PG_GETARG_OID(1);

		if (!pg_class_ownercheck(view, GetUserId()))
			PG_RETURN_NULL();
		SPI_connect();
		job = job_name(matview_job_key(view), true);
		command = matview_command(matview_job_key(view));
	}
	else
		PG_RETURN_NULL();

	if (cron_installed())
	{
		values[0] = CStringGetTextDatum(job);
		values[1] = CStringGetTextDatum(command);
		identity_enter_catalog(&frame);
		if (SPI_execute_with_args("SELECT CASE "
								  "WHEN NOT EXISTS (SELECT FROM pg_catalog.pg_roles r "
								  "  WHERE r.rolname OPERATOR(pg_catalog.=) j.username) THEN 'role missing' "
								  "WHEN NOT EXISTS (SELECT FROM pg_catalog.pg_roles r "
								  "  WHERE r.rolname OPERATOR(pg_catalog.=) j.username AND r.rolcanlogin) "
								  "  THEN 'role cannot log in' "
								  "WHEN NOT j.active THEN 'inactive' "
								  "WHEN j.database OPERATOR(pg_catalog.<>) pg_catalog.current_database() "
								  "  THEN 'other database' "
								  "ELSE 'active' END "
								  "FROM cron.job j WHERE j.jobname OPERATOR(pg_catalog.=) $1 "
								  /* the object's job (see remove_jobs), not another's of that name */
								  "AND (j.username OPERATOR(pg_catalog.=) CURRENT_USER "
								  "OR j.command OPERATOR(pg_catalog.=) $2) "
								  "ORDER BY j.username OPERATOR(pg_catalog.=) CURRENT_USER DESC LIMIT 1",
								  2, types, values, NULL, true, 1) == SPI_OK_SELECT &&
			SPI_processed == 1)
			state = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		identity_leave(&frame);
	}
	state = MemoryContextStrdup(caller, state);	/* SPI's memory goes */
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(state));
}

/*
 * The next time a cron schedule fires, for pipeline.status: the five
 * fields of pg_cron (minute hour day-of-month month day-of-week, with *,
 * lists, ranges and steps), evaluated in GMT as pg_cron 1.4 does. NULL for
 * a schedule this parser does not read (pg_cron's "@daily" and the like, or
 * "N seconds").
 */
typedef struct CronField
{
	uint64		allowed;		/* bit i: value i matches */
	bool		any;			/* the field was "*" */
} CronField;

static bool
parse_cron_field(char *text, int min, int max, CronField *field)
{
	char	   *item;
	char	   *save;

	field->allowed = 0;
	field->any = strcmp(text, "*") == 0;
	for (item = strtok_r(text, ",", &save); item; item = strtok_r(NULL, ",", &save))
	{
		int			lo = min,
					hi = max,
					step = 1;
		char	   *slash = strchr(item, '/');
		char	   *end;

		if (slash)
		{
			*slash = '\0';
			step = (int) strtol(slash + 1, &end, 10);
			if (*end != '\0' || step <= 0)
				return false;
		}
		if (strcmp(item, "*") != 0)
		{
			char	   *dash = strchr(item, '-');

			lo = (int) strtol(item, &end, 10);
			if (end == item || (dash == NULL && *end != '\0'))
				return false;
			hi = slash && dash == NULL ? max : lo;
			if (dash)
			{
				hi = (int) strtol(dash + 1, &end, 10);
				if (*end != '\0')
					return false;
			}
		}
		if (lo < min || hi > max || lo > hi)
			return false;
		for (int v = lo; v <= hi; v += step)
			field->allowed |= UINT64CONST(1) << v;
	}
	return field->allowed != 0;
}

PG_FUNCTION_INFO_V1(pipeline_cron_next);

Datum
pipeline_cron_next(PG_FUNCTION_ARGS)
{
	char	   *schedule = text_to_cstring(PG_GETARG_TEXT_PP(0));
	TimestampTz after = PG_GETARG_TIMESTAMPTZ(1);
	CronField	fields[5];
	static const int bounds[5][2] = {{0, 59}, {0, 23}, {1, 31}, {1, 12}, {0, 7}};
	char	   *save;
	char	   *part = strtok_r(schedule, " \t", &save);
	pg_time_t	t;

	for (int i = 0; i < 5; i++, part = strtok_r(NULL, " \t", &save))
		if (part == NULL || !parse_cron_field(part, bounds[i][0], bounds[i][1], &fields[i]))
			PG_RETURN_NULL();
	if (part != NULL)
		PG_RETURN_NULL();
	if (fields[4].allowed & (UINT64CONST(1) << 7))
		fields[4].allowed |= 1;	/* 7 is Sunday too */

	/* minute by minute from the next whole minute, for at most four years */
	t = timestamptz_to_time_t(after);
	t = t - t % 60 + 60;
	for (int i = 0; i < 4 * 366 * 24 * 60; i++, t += 60)
	{
		struct pg_tm *tm = pg_gmtime(&t);
		bool		dom = fields[2].allowed & (UINT64CONST(1) << tm->tm_mday);
		bool		dow = fields[4].allowed & (UINT64CONST(1) << tm->tm_wday);
		bool		day;

		if (!(fields[3].allowed & (UINT64CONST(1) << (tm->tm_mon + 1))) ||
			!(fields[1].allowed & (UINT64CONST(1) << tm->tm_hour)) ||
			!(fields[0].allowed & (UINT64CONST(1) << tm->tm_min)))
			continue;
		/* cron: with both day fields restricted, either one matching will do */
		day = (fields[2].any || fields[4].any) ? (dom && dow) : (dom || dow);
		if (day)
			PG_RETURN_TIMESTAMPTZ(time_t_to_timestamptz(t));
	}
	PG_RETURN_NULL();
}
