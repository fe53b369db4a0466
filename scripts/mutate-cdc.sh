#!/usr/bin/env bash
# Mutation check of the CDC fixes of 0.4 (issue 12): each fix is reverted
# in a scratch copy of the tree, the copy is built and installed, and
# test/shell/cdc_fixes.sh must then fail the test named for it. Afterwards
# the real tree is built and installed again.
#
#   PG_BIN=... PIPELINE_WORK=... PORT=... bash scripts/mutate-cdc.sh [NAME...]
#
# Prints one line per mutation: "killed" (the test failed, as it must) or
# "SURVIVED". Exits non-zero if any mutation survived.
set -uo pipefail
source "$(dirname "$0")/lib.sh"

# NAME FILE OLD NEW TEST: replacing OLD by NEW in FILE undoes a fix; the
# test whose description starts with TEST must then fail.
MUTATIONS=(
  "confirm-uncommitted|src/cdc.c|src->applied_committed = !TransactionIdIsCurrentTransactionId(DatumGetTransactionId(d));|src->applied_committed = true;|the next run applies all 11 rows"
  "no-flush|src/cdc_source.c|XLogFlush(GetXLogInsertRecPtr());|(void) 0;|a crash after an asynchronous commit"
  "generated-columns|src/cdc_source.c|version >= 120000 ? \" AND a.attgenerated = ''\" : \"\"|\"\"|generated columns"
  "key-change-contract|src/cdc_apply.c|WHERE EXISTS (SELECT 1 FROM __pipeline_image) AND |WHERE |the row of the quarantined key change"
  "unordered-updates|src/cdc_apply.c|t->ordered = has_other_unique_constraints(t->target);|t->ordered = false && has_other_unique_constraints(t->target);|key changes and email swaps apply"
  "delete-after-insert|src/cdc_apply.c|WHERE (SELECT pg_catalog.count(*) FROM __pipeline_gone) OPERATOR(pg_catalog.>=) 0|WHERE true|key changes and email swaps apply"
  "truncate-one-by-one|src/cdc_apply.c|		drop_segment(t);\n		appendStringInfo(&targets,|		drop_segment(t);\n		SPI_execute(psprintf(\"TRUNCATE %s\", t->target_name), false, 0);\n		appendStringInfo(&targets,|TRUNCATE of a parent and its child"
  "null-key-not-sent|src/cdc_apply.c|if (op == 'D' && !bms_is_member(pos, t->identity))|if (op == 'D' && !present)|the DELETE of the NULL-key row"
  "retry-forever|src/cdc.c|	for (int i = 0; i < lengthof(passing); i++)|	return strncmp(sqlstate, \"42\", 2) == 0;\n	for (int i = 0; i < lengthof(passing); i++)|and pauses the pipeline"
  "keyless-target|src/cdc.c|if (t->keyed_changes && default_key(target) == NIL)|if (false && default_key(target) == NIL)|a target without a key"
  "slot-left|src/cdc.c|		remember_pending_slot(src, p->name);|		if (false) remember_pending_slot(src, p->name);|an error after create in the same statement"
  "added-table|src/cdc.c|			check_copied_tables(p, src, conn);|			if (false) check_copied_tables(p, src, conn);|a table added after the copy"
  "no-idle-confirm|src/cdc_source.c|	if (cdc_apply_transactions(st->apply) == 0 && st->source_end > src->applied_lsn)|	if (false && st->source_end > src->applied_lsn)|after a run, less than 16 MB"
  "replica-for-all|src/cdc.c|	if (superuser_arg(p->owner))\n|	if (true)\n|its apply cannot delete a row"
)

survived=0
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for m in "${MUTATIONS[@]}"; do
  IFS='|' read -r name file old new test <<<"$m"
  if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$name"; then continue; fi
  rm -rf "$scratch/tree" && mkdir -p "$scratch/tree"
  git -C "$ROOT_DIR" ls-files -z | (cd "$ROOT_DIR" && xargs -0 cp --parents -t "$scratch/tree")
  # \n in OLD and NEW are newlines; the rest is literal
  OLD=$(printf '%b' "$old") NEW=$(printf '%b' "$new") perl -0pi -e \
    '$n = () = /\Q$ENV{OLD}\E/g; die "mutation does not apply\n" if $n != 1; s/\Q$ENV{OLD}\E/$ENV{NEW}/' \
    "$scratch/tree/$file" || { echo "$name: does not apply"; survived=$((survived + 1)); continue; }
  out=$(SUITES=shell ONLY=cdc_fixes bash "$scratch/tree/scripts/test.sh" 2>&1)
  if echo "$out" | grep -q "^not ok [0-9]* - $test"; then
    echo "$name: killed ($test)"
  else
    echo "$name: SURVIVED ($test)"
    survived=$((survived + 1))
  fi
done
build_and_install
[ "$survived" -eq 0 ]
