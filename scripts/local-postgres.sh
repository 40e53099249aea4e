#!/usr/bin/env bash
# Ensure a local development PostgreSQL 15 cluster (with pgvector) is running and print
# its connection string on stdout. Everything else goes to stderr.
#
#   scripts/local-postgres.sh          # init if needed, start if needed, print conn string
#   scripts/local-postgres.sh stop     # stop the cluster
#   scripts/local-postgres.sh status   # exit 0 if running
#
# Data folder: ${HARNESS_PG_DIR:-<repo>/.data/postgres}. Requires scripts/provision.sh first.
set -euo pipefail

# Keep stdout clean for the connection string: fd 3 = real stdout, everything else -> stderr.
exec 3>&1 1>&2

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGBIN=/usr/lib/postgresql/15/bin
PG_USER=harness-pg # unprivileged system user used when invoked as root
FIRST_PORT=55432
DB_NAME=harness
ACTION=${1:-start}

log() { echo "local-postgres: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ -x "$PGBIN/initdb" ] || die "PostgreSQL 15 not found in $PGBIN; run scripts/provision.sh"

IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1

# Run a command as the cluster owner. initdb/pg_ctl/postgres refuse to run as root.
# cd / first: the caller's cwd (e.g. /root) may be unreadable for the cluster owner.
as_owner() {
  if [ "$IS_ROOT" -eq 1 ]; then
    (cd / && setpriv --reuid "$PG_USER" --regid "$PG_USER" --init-groups -- "$@")
  else
    "$@"
  fi
}

ensure_pg_user() {
  id -u "$PG_USER" >/dev/null 2>&1 && return 0
  log "creating system user $PG_USER"
  useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
}

# Resolve (and when root, prepare) the data folder; sets DATA.
resolve_data_dir() {
  local requested
  requested=$(realpath -m -- "${HARNESS_PG_DIR:-$REPO/.data/postgres}")
  DATA=$requested
  if [ "$IS_ROOT" -eq 0 ]; then
    mkdir -p -- "$DATA"
    return 0
  fi

  ensure_pg_user
  mkdir -p -- "$DATA"
  if [ "$(stat -c %U -- "$DATA")" != "$PG_USER" ]; then
    chown -R "$PG_USER:$PG_USER" -- "$DATA"
  fi
  # The owner must be able to traverse every parent (e.g. a repo under /root is not).
  if ! as_owner test -w "$DATA" -a -x "$DATA"; then
    DATA=/var/lib/harness-pg/$(printf '%s' "$requested" | sha256sum | cut -c1-16)
    log "note: $requested is not reachable by user $PG_USER; using $DATA instead"
    mkdir -p -- "$DATA"
    chown "$PG_USER:$PG_USER" /var/lib/harness-pg "$DATA"
    chmod 700 /var/lib/harness-pg
  fi
}

port_in_use() {
  if command -v ss >/dev/null 2>&1; then
    [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
  else
    (exec 2>/dev/null; : <"/dev/tcp/127.0.0.1/$1")
  fi
}

pick_free_port() {
  local p=$FIRST_PORT
  while port_in_use "$p"; do
    p=$((p + 1))
    [ "$p" -lt $((FIRST_PORT + 500)) ] || die "no free TCP port in $FIRST_PORT..$p"
  done
  echo "$p"
}

# Settings we own live in harness.conf (included from postgresql.conf) so they can be
# rewritten (e.g. a new port) without editing postgresql.conf again.
write_harness_conf() {
  as_owner tee "$DATA/harness.conf" >/dev/null <<EOF
# Managed by scripts/local-postgres.sh — rewritten on start.
listen_addresses = '127.0.0.1'
port = $1
unix_socket_directories = '$DATA'
# fsync/synchronous_commit/full_page_writes intentionally left at their (safe) defaults.
EOF
  printf '%s\n' "$1" | as_owner tee "$DATA/harness.port" >/dev/null
}

init_cluster() {
  local port
  port=$(pick_free_port)
  log "initdb in $DATA (port $port)"
  # trust is acceptable only because pg_hba below allows nothing but the local socket
  # and 127.0.0.1, and the socket lives in the 0700 data folder.
  as_owner "$PGBIN/initdb" -D "$DATA" -U postgres --encoding=UTF8 --locale=C.UTF-8 \
    --auth=trust --no-instructions >&2
  as_owner tee "$DATA/pg_hba.conf" >/dev/null <<'EOF'
# Managed by scripts/local-postgres.sh: local development only, no remote access.
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  trust
host    all       all   127.0.0.1/32   trust
EOF
  printf "\n# Harness overrides (listen address, port, socket dir)\ninclude = 'harness.conf'\n" \
    | as_owner tee -a "$DATA/postgresql.conf" >/dev/null
  write_harness_conf "$port"
}

is_running() {
  as_owner "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

# Port the running postmaster actually listens on (line 4 of postmaster.pid).
running_port() {
  as_owner sed -n 4p "$DATA/postmaster.pid" 2>/dev/null
}

start_cluster() {
  local port
  port=$(cat "$DATA/harness.port")
  if port_in_use "$port"; then
    # Something else took our port while we were stopped: move to a free one.
    local new
    new=$(pick_free_port)
    log "port $port is taken by another process; switching to $new"
    port=$new
  fi
  write_harness_conf "$port"
  log "starting PostgreSQL on 127.0.0.1:$port (log: $DATA/server.log)"
  as_owner "$PGBIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 start >/dev/null 3>&- \
    || { tail -n 20 "$DATA/server.log" >&2 || true; die "pg_ctl start failed"; }
}

psql_q() {
  # Connect over TCP as superuser postgres; trust auth, no ~/.psqlrc, no "skipping" notices.
  PGOPTIONS='-c client_min_messages=warning' "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres "$@"
}

resolve_data_dir

case "$ACTION" in
  stop)
    if [ -f "$DATA/PG_VERSION" ] && is_running; then
      as_owner "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
      log "stopped ($DATA)"
    else
      log "not running ($DATA)"
    fi
    exit 0
    ;;
  status)
    if [ -f "$DATA/PG_VERSION" ] && is_running; then
      log "running on port $(running_port) ($DATA)"
      exit 0
    fi
    log "not running ($DATA)"
    exit 3
    ;;
  start) ;;
  *) die "unknown action '$ACTION' (expected: start | stop | status)" ;;
esac

[ -f "$DATA/PG_VERSION" ] || init_cluster

if is_running; then
  PORT=$(running_port)
  # Keep harness.port truthful if the instance was started on another port by hand.
  if [ "$PORT" != "$(cat "$DATA/harness.port" 2>/dev/null)" ]; then
    printf '%s\n' "$PORT" | as_owner tee "$DATA/harness.port" >/dev/null
  fi
else
  start_cluster
  PORT=$(cat "$DATA/harness.port")
fi

# Database + extension: cheap no-ops when they already exist.
psql_q -d postgres <<SQL
SELECT 'CREATE DATABASE $DB_NAME' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$DB_NAME')\gexec
SQL
psql_q -d "$DB_NAME" -c 'CREATE EXTENSION IF NOT EXISTS vector'

echo "Host=127.0.0.1;Port=$PORT;Database=$DB_NAME;Username=postgres" >&3
