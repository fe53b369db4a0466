# Shared by the benchmark scripts: a throwaway cluster per benchmark, a
# statement timer in SQL, and the line that says where a figure came from.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
OUT="$ROOT_DIR/bench/results"

# bench_cluster NAME PORT [postgresql.conf lines]: install, build, start a
# fresh cluster; it and the work directory $WORK go away on exit.
bench_cluster() {
  BENCH_CLUSTER=$1
  BENCH_PORT=$2
  mkdir -p "$OUT"
  WORK=$(mktemp -d)
  chmod 755 "$WORK"
  trap 'rm -rf "$WORK"; remove_cluster "$BENCH_CLUSTER"' EXIT
  install_dependencies
  build_and_install
  log "starting the benchmark cluster (port $BENCH_PORT)"
  start_cluster "$BENCH_CLUSTER" "$BENCH_PORT" "${3:-}"
}

# bq [psql args]: one value or rows, unaligned, in database $BENCH_DB
bq() { cluster_psql "$BENCH_CLUSTER" "$BENCH_PORT" -d "${BENCH_DB:-postgres}" -qAt "$@"; }

# bench_ms(sql) times one statement inside the server (commit excluded);
# medians come from the timings table.
BENCH_TIMER_SQL='
CREATE FUNCTION bench_ms(sql text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
    EXECUTE sql;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END $$;
CREATE TABLE timings (bench text, variant text, ms float8);'

machine_line() {
  echo "$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(bq -c "SELECT split_part(version(), ' on ', 1)"), $(date -u +%Y-%m-%d)."
}
