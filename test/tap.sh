# TAP helpers for the shell suites in test/shell/ (run by scripts/test.sh
# through prove). Each suite sources this file.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

PORT=${PIPELINE_TEST_PORT:-55450}
TAP_COUNT=0
TAP_FAILED=0

# is GOT EXPECTED DESCRIPTION
is() {
  TAP_COUNT=$((TAP_COUNT + 1))
  if [ "$1" == "$2" ]; then
    echo "ok $TAP_COUNT - $3"
  else
    TAP_FAILED=$((TAP_FAILED + 1))
    echo "not ok $TAP_COUNT - $3"
    echo "#   got:      '$1'"
    echo "#   expected: '$2'"
  fi
}

# ok CONDITION-EXIT-CODE DESCRIPTION, e.g.: ok $([ 3 -gt 2 ]; echo $?) "..."
ok() {
  if [ "$1" -eq 0 ]; then is yes yes "$2"; else is no yes "$2"; fi
}

done_testing() {
  echo "1..$TAP_COUNT"
  [ "$TAP_FAILED" -eq 0 ]
}

# q CLUSTER PORT DB SQL: one value (or rows), unaligned
q() {
  cluster_psql "$1" "$2" -d "$3" -qAt -c "$4"
}
