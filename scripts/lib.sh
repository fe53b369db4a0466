# Shared shell helpers: run throwaway PostgreSQL clusters as a non-root user.
#
# PostgreSQL refuses to run as root, so when we are root the server runs as
# the "postgres" system user (created by the postgresql-15 package) and we
# connect over its socket as the "postgres" database user.

# PostgreSQL 15 as Debian installs it; nothing needs to exist yet when this
# file is sourced (install_dependencies comes first).
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_CONFIG=${PG_CONFIG:-$PG_BIN/pg_config}
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK_BASE=${PIPELINE_WORK:-/tmp/pipeline-work}

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# Run a command as the cluster's OS user. runuser lives in /usr/sbin, which
# a minimal PATH may lack.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    "$(command -v runuser || echo /usr/sbin/runuser)" -u postgres -- "$@"
  else
    "$@"
  fi
}

# install_dependencies: the Debian packages the project needs (as root).
install_dependencies() {
  local pkgs="postgresql-15 postgresql-server-dev-15 postgresql-15-cron \
    postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl postgresql-contrib \
    build-essential"
  local missing=""
  for p in $pkgs; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
  done
  if [ -z "$missing" ]; then
    return 0
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "missing packages:$missing (run as root, or install them)" >&2
    return 1
  fi
  log "installing Debian packages:$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

build_and_install() {
  log "building and installing the extension"
  make -C "$ROOT_DIR" -s PG_CONFIG="$PG_CONFIG" clean >/dev/null
  make -C "$ROOT_DIR" -s PG_CONFIG="$PG_CONFIG" >/dev/null
  make -C "$ROOT_DIR" -s PG_CONFIG="$PG_CONFIG" install >/dev/null
}

# start_cluster NAME PORT [extra postgresql.conf lines]
# Sets PGDATA_<NAME> and exports nothing; use pg_env NAME PORT for psql.
start_cluster() {
  local name=$1 port=$2 extra=${3:-}
  local dir="$WORK_BASE/$name"
  stop_cluster "$name"
  mkdir -p "$WORK_BASE"
  chmod 755 "$WORK_BASE"
  rm -rf "$dir"
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
  as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
    --locale=C >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log"; return 1; }
  cat >>"$dir/data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 4GB
shared_buffers = 512MB
work_mem = 64MB
maintenance_work_mem = 256MB
wal_level = logical
max_connections = 50
$extra
CONF
  as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
}

stop_cluster() {
  local dir="$WORK_BASE/$1"
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

remove_cluster() {
  stop_cluster "$1"
  rm -rf "${WORK_BASE:?}/$1"
}

# cluster_psql NAME PORT [psql args...]
cluster_psql() {
  local name=$1 port=$2
  shift 2
  PGHOST="$WORK_BASE/$name" PGPORT=$port PGUSER=postgres \
    "$PG_BIN/psql" -X -v ON_ERROR_STOP=1 "$@"
}
