#!/usr/bin/env bash
# Command 1 of the README: install what is needed, build and install the
# extension, start a throwaway cluster as a non-root user, and run the
# orders ETL demo on the sample data in data/. Cleans up after itself;
# KEEP=1 leaves the cluster running for exploring.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=${PORT:-55440}
install_dependencies
build_and_install

cleanup() { [ "${KEEP:-0}" = 1 ] || remove_cluster demo; }
trap cleanup EXIT

log "starting a throwaway cluster (port $PORT)"
start_cluster demo "$PORT"
cluster_psql demo "$PORT" -q -c 'CREATE DATABASE demo'

log "running the demo (scripts/demo.sql)"
cd "$ROOT_DIR"
cluster_psql demo "$PORT" -d demo -f scripts/demo.sql

if [ "${KEEP:-0}" = 1 ]; then
  log "cluster kept: PGHOST=$WORK_BASE/demo PGPORT=$PORT PGUSER=postgres psql demo"
else
  log "done; the throwaway cluster is removed (KEEP=1 keeps it)"
fi
