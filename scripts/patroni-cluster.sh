#!/usr/bin/env bash
# A throwaway PostgreSQL HA cluster on loopback, for the failover test and the soak (bench/):
# one etcd and two Patroni nodes (the machine's PostgreSQL 15, pgvector available), a primary and a synchronous
# streaming replica, everything under <dir>, free ports, no Docker.
#
#   scripts/patroni-cluster.sh start <dir>         create (first time) and start; prints the connection strings
#   scripts/patroni-cluster.sh stop <dir>          stop every process this script started for <dir>
#   scripts/patroni-cluster.sh failover <dir>      planned switchover: the replica becomes primary, the old primary follows
#   scripts/patroni-cluster.sh kill-primary <dir>  SIGKILL the leader's Patroni and PostgreSQL (a lost node), wait for
#                                                  the replica's promotion, then start the killed node again as a replica
#   scripts/patroni-cluster.sh status <dir>        patronictl list
#
# Synchronous replication: bootstrap sets synchronous_mode (Patroni names the replica in synchronous_standby_names)
# and synchronous_commit=on, so a commit is acknowledged only once the replica has flushed it: an acknowledged
# commit is on both nodes and survives the loss of either. Patroni promotes only the synchronous standby. While the
# only replica is down, Patroni (synchronous_mode_strict off) lets the primary commit alone rather than block writes.
#
# <dir>/cluster.env (mode 600) holds the ports, passwords and connection strings; <dir>/pids/ the PIDs of the
# processes started here (etcd, patroni-node1, patroni-node2), which are the only processes stop and kill-primary
# signal (plus the postmaster and backends of a node, read from its postmaster.pid). Passwords are random per
# cluster; TCP connections need them (scram-sha-256), only the nodes' own unix sockets (in <dir>) trust local users.
# Run as root, the processes run as the unprivileged harness-pg user (scripts/provision.sh creates it; initdb
# refuses root). Timings: ttl 10 s, loop_wait 2 s, so a lost primary is replaced in about 10-15 s.
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
RUN_AS=harness-pg
SCOPE=harness

log() { echo "patroni-cluster: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() { die "usage: $0 start|stop|failover|kill-primary|status <dir>"; }
[ $# -eq 2 ] || usage
COMMAND=$1
mkdir -p "$2"
DIR=$(cd "$2" && pwd)
# Every process started below works from the cluster folder: the caller's folder may be closed to the user that
# runs the cluster (a clone under `mktemp -d` is 0700), and Patroni's worker processes change into their cwd.
cd "$DIR"
ENV_FILE=$DIR/cluster.env
PIDS=$DIR/pids

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    setpriv --reuid "$RUN_AS" --regid "$RUN_AS" --init-groups -- "$@"
  else
    "$@"
  fi
}

require_binaries() {
  local b
  for b in etcd patroni patronictl "$PG_BIN/postgres" "$PG_BIN/initdb" curl; do
    command -v "$b" >/dev/null 2>&1 || die "$b is missing; run scripts/provision.sh"
  done
  [ -f /usr/share/postgresql/15/extension/vector.control ] || die "pgvector is missing; run scripts/provision.sh"
  if [ "$(id -u)" -eq 0 ]; then id "$RUN_AS" >/dev/null 2>&1 || die "user $RUN_AS is missing; run scripts/provision.sh"; fi
}

free_ports() { # prints $1 distinct free loopback ports
  /usr/bin/python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

random_secret() { head -c 18 /dev/urandom | base64 | tr -d '/+=' ; }

# A PID from <dir> is signalled only while it is alive and, as root, runs as the cluster owner.
pid_alive() {
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
  [ "$(id -u)" -ne 0 ] || [ "$(stat -c %U "/proc/$1" 2>/dev/null)" = "$RUN_AS" ]
}
read_pid() { [ -f "$PIDS/$1.pid" ] && cat "$PIDS/$1.pid" || true; }

# Start a tracked process in a session of its own (setsid -f), as the cluster owner, logging to <dir>/<name>.log;
# the process writes its own PID (it execs into the program, so the PID is the program's).
spawn() {
  local name=$1; shift
  local pid
  pid=$(read_pid "$name")
  if pid_alive "$pid"; then
    return 0
  fi
  rm -f "$PIDS/$name.pid"
  # shellcheck disable=SC2016
  as_owner setsid -f bash -c 'echo $$ >"$1"; shift; exec "$@" >>"$0" 2>&1 </dev/null' \
    "$DIR/$name.log" "$PIDS/$name.pid" "$@"
  local waited
  for waited in $(seq 1 50); do [ -s "$PIDS/$name.pid" ] && return 0; sleep 0.1; done
  die "$name did not start"
}

write_node_config() { # node restapi_port pg_port
  local node=$1 api=$2 pg=$3
  cat >"$DIR/$node.yml" <<EOF
scope: $SCOPE
namespace: /harness-test/
name: $node
log:
  level: WARNING
restapi:
  listen: 127.0.0.1:$api
  connect_address: 127.0.0.1:$api
etcd3:
  hosts: 127.0.0.1:$ETCD_CLIENT_PORT
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 2
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    synchronous_mode_strict: false
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        max_connections: 400
        synchronous_commit: "on"
        password_encryption: scram-sha-256
  initdb:
    - encoding: UTF8
    - locale: C
postgresql:
  listen: 127.0.0.1:$pg
  connect_address: 127.0.0.1:$pg
  data_dir: $DIR/$node/data
  bin_dir: $PG_BIN
  pgpass: $DIR/$node/pgpass
  use_unix_socket: true
  authentication:
    superuser:
      username: postgres
      password: $SUPERUSER_PASSWORD
    replication:
      username: replicator
      password: $REPLICATION_PASSWORD
  parameters:
    unix_socket_directories: $DIR/$node
  pg_hba:
    - local all all trust
    - local replication all trust
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
EOF
  chmod 600 "$DIR/$node.yml"
}

create_cluster() {
  log "creating a cluster in $DIR"
  read -r ETCD_CLIENT_PORT ETCD_PEER_PORT API1 API2 PG1 PG2 <<<"$(free_ports 6)"
  SUPERUSER_PASSWORD=$(random_secret)
  REPLICATION_PASSWORD=$(random_secret)
  APP_PASSWORD=$(random_secret)
  mkdir -p "$DIR/etcd" "$DIR/node1" "$DIR/node2" "$PIDS"
  chmod 700 "$DIR/etcd" "$DIR/node1" "$DIR/node2"
  write_node_config node1 "$API1" "$PG1"
  write_node_config node2 "$API2" "$PG2"
  local hosts="127.0.0.1:$PG1,127.0.0.1:$PG2"
  umask 077
  cat >"$ENV_FILE" <<EOF
ETCD_CLIENT_PORT=$ETCD_CLIENT_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
NODE1_API_PORT=$API1
NODE2_API_PORT=$API2
NODE1_PG_PORT=$PG1
NODE2_PG_PORT=$PG2
SUPERUSER_PASSWORD=$SUPERUSER_PASSWORD
REPLICATION_PASSWORD=$REPLICATION_PASSWORD
APP_LOGIN=harness_login
APP_PASSWORD=$APP_PASSWORD
HOSTS=$hosts
HARNESS_CONNECTION='Host=$hosts;Database=harness;Username=harness_login;Password=$APP_PASSWORD;Target Session Attributes=primary'
HARNESS_MIGRATIONS_CONNECTION='Host=$hosts;Database=harness;Username=postgres;Password=$SUPERUSER_PASSWORD;Target Session Attributes=primary'
EOF
  umask 022
  if [ "$(id -u)" -eq 0 ]; then chown -R "$RUN_AS:$RUN_AS" "$DIR"; fi
}

load_env() {
  [ -f "$ENV_FILE" ] || die "$ENV_FILE is missing: run '$0 start $DIR' first"
  # shellcheck disable=SC1090
  . "$ENV_FILE"
}

api_port() { if [ "$1" = node1 ]; then echo "$NODE1_API_PORT"; else echo "$NODE2_API_PORT"; fi; }
pg_port() { if [ "$1" = node1 ]; then echo "$NODE1_PG_PORT"; else echo "$NODE2_PG_PORT"; fi; }
other() { if [ "$1" = node1 ]; then echo node2; else echo node1; fi; }

# GET a Patroni health endpoint; true on 200 (/primary: the node runs the leader; /sync: it is the synchronous standby).
probe() { curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$(api_port "$1")/$2" 2>/dev/null | grep -q '^200$'; }

leader() {
  local node
  for node in node1 node2; do
    if probe "$node" primary; then echo "$node"; return 0; fi
  done
  return 1
}

wait_until() { # seconds description command...
  local seconds=$1 what=$2; shift 2
  local deadline=$(( $(date +%s) + seconds ))
  until "$@" >/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || die "timed out after ${seconds} s waiting for $what (logs in $DIR/*.log)"
    sleep 0.2
  done
}

etcd_healthy() { curl -s -m 2 "http://127.0.0.1:$ETCD_CLIENT_PORT/health" 2>/dev/null | grep -q '"health":"true"'; }
has_sync_standby() { local l; l=$(leader) && probe "$(other "$l")" sync; }

psql_leader() { # sql
  local l; l=$(leader)
  as_owner "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR/$l" -p "$(pg_port "$l")" -U postgres -d "${PSQL_DB:-postgres}" -c "$1"
}

start_patroni() { spawn "patroni-$1" patroni "$DIR/$1.yml"; }

cmd_start() {
  require_binaries
  [ -f "$ENV_FILE" ] || create_cluster
  load_env
  mkdir -p "$PIDS"
  local started=$SECONDS
  spawn etcd etcd --name harness-etcd --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "harness-etcd=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new \
    --listen-metrics-urls "" --log-level warn
  wait_until 20 "etcd" etcd_healthy
  start_patroni node1
  wait_until 40 "a leader" leader
  start_patroni node2
  wait_until 60 "a synchronous standby" has_sync_standby

  if [ ! -f "$DIR/.harness-database" ]; then
    psql_leader "DO \$\$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'harness_app') THEN CREATE ROLE harness_app NOLOGIN; END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'harness_login') THEN CREATE ROLE harness_login LOGIN; END IF;
      END \$\$;
      ALTER ROLE harness_login PASSWORD '$APP_PASSWORD';
      GRANT harness_app TO harness_login;"
    psql_leader "CREATE DATABASE harness" 2>/dev/null || true
    PSQL_DB=harness psql_leader "CREATE EXTENSION IF NOT EXISTS vector"
    touch "$DIR/.harness-database"
  fi
  log "up in $((SECONDS - started)) s: leader $(leader), synchronous standby $(other "$(leader)")"
  echo "ConnectionStrings__Harness=Host=$HOSTS;Database=harness;Username=harness_login;Password=$APP_PASSWORD;Target Session Attributes=primary"
  echo "ConnectionStrings__HarnessMigrations=Host=$HOSTS;Database=harness;Username=postgres;Password=$SUPERUSER_PASSWORD;Target Session Attributes=primary"
}

postmaster_pid() { # node -> pid of its postmaster (from postmaster.pid), if running
  local file=$DIR/$1/data/postmaster.pid pid
  [ -f "$file" ] || return 1
  pid=$(head -n1 "$file")
  pid_alive "$pid" && echo "$pid"
}

kill_node() { # node: SIGKILL its Patroni, its postmaster and the postmaster's children (backends, walsender, ...)
  local node=$1 patroni_pid pm
  patroni_pid=$(read_pid "patroni-$node")
  pm=$(postmaster_pid "$node" || true)
  if pid_alive "$patroni_pid"; then kill -KILL "$patroni_pid" 2>/dev/null || true; fi
  if [ -n "$pm" ]; then
    pkill -KILL -P "$pm" 2>/dev/null || true
    kill -KILL "$pm" 2>/dev/null || true
  fi
}

cmd_kill_primary() {
  load_env
  local old new started
  old=$(leader) || die "no leader to kill"
  new=$(other "$old")
  started=$(date +%s.%N)
  kill_node "$old"
  log "killed $old (Patroni and PostgreSQL, SIGKILL); waiting for $new to be promoted"
  wait_until 60 "$new to become the leader" probe "$new" primary
  log "$new is primary $(/usr/bin/python3 -c "import sys; print(round($(date +%s.%N) - $started, 1))") s after the kill; restarting $old as a replica"
  start_patroni "$old"
  echo "$new"
}

cmd_failover() {
  load_env
  local old new
  old=$(leader) || die "no leader"
  new=$(other "$old")
  wait_until 60 "a synchronous standby before the switchover" probe "$new" sync
  curl -sf -m 30 -X POST "http://127.0.0.1:$(api_port "$old")/switchover" \
    -H 'Content-Type: application/json' -d "{\"leader\":\"$old\",\"candidate\":\"$new\"}" >/dev/null \
    || die "Patroni refused the switchover from $old to $new"
  wait_until 60 "$new to become the leader" probe "$new" primary
  log "switched over from $old to $new"
  echo "$new"
}

cmd_stop() {
  [ -d "$PIDS" ] || { log "nothing started in $DIR"; return 0; }
  local name pid node pm waited
  for node in node1 node2; do
    pid=$(read_pid "patroni-$node")
    if pid_alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  # Patroni stops its PostgreSQL on SIGTERM; give it a few seconds, then make sure.
  for waited in $(seq 1 25); do
    pid_alive "$(read_pid patroni-node1)" || pid_alive "$(read_pid patroni-node2)" || break
    sleep 0.2
  done
  for node in node1 node2; do
    kill_node "$node"
  done
  pid=$(read_pid etcd)
  if pid_alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
  for waited in $(seq 1 25); do pid_alive "$pid" || break; sleep 0.2; done
  if pid_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  for name in etcd patroni-node1 patroni-node2; do rm -f "$PIDS/$name.pid"; done
  log "stopped"
}

cmd_status() {
  load_env
  as_owner patronictl -c "$DIR/node1.yml" list
}

case "$COMMAND" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  failover) cmd_failover ;;
  kill-primary) cmd_kill_primary ;;
  status) cmd_status ;;
  *) usage ;;
esac
