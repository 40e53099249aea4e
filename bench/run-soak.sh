#!/usr/bin/env bash
# Load and fault soak (issue 20): two Release server replicas (separate processes) over one Patroni-managed
# database and one workspaces folder, behind YARP (bench/Soak); SOAK_USERS users of SOAK_TENANTS tenants for
# SOAK_SECONDS, a replica SIGKILLed and restarted every SOAK_KILL_EVERY_SECONDS, one switchover at
# SOAK_FAILOVER_AT_SECONDS; then the invariants, written to bench/results/soak.md (exit 1 if one was violated).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/provision.sh
dotnet build -c Release --nologo -v quiet src/HarnessServer
dotnet build -c Release --nologo -v quiet bench/Soak

work=$(mktemp -d /tmp/harness-soak.XXXXXX)
chmod 755 "$work"
cluster="$work/patroni"
trap 'scripts/patroni-cluster.sh stop "$cluster" >/dev/null 2>&1 || true; echo "replica logs and workspaces: $work"' EXIT
scripts/patroni-cluster.sh start "$cluster" >/dev/null
set -a
# shellcheck disable=SC1091
. "$cluster/cluster.env"
set +a

export SOAK_PATRONI_DIR=$cluster SOAK_WORK_DIR="$work/run" SOAK_REPOSITORY=$PWD \
  SOAK_SERVER_DLL=$PWD/src/HarnessServer/bin/Release/net10.0/HarnessServer.dll \
  SOAK_SECONDS=${SOAK_SECONDS:-600} SOAK_USERS=${SOAK_USERS:-50} SOAK_TENANTS=${SOAK_TENANTS:-3} \
  SOAK_KILL_EVERY_SECONDS=${SOAK_KILL_EVERY_SECONDS:-120} SOAK_OUTPUT=${SOAK_OUTPUT:-bench/results/soak.md}
export SOAK_FAILOVER_AT_SECONDS=${SOAK_FAILOVER_AT_SECONDS:-$((SOAK_SECONDS / 2))}
dotnet bench/Soak/bin/Release/net10.0/HarnessServer.SoakBench.dll
