#!/usr/bin/env bash
# End-to-end pipeline benchmark: a Release server in Development (its dev issuer signs the bench token) over the
# local PostgreSQL cluster (fsync on), loaded by bench/Pipeline with 32 clients and then 1; results in bench/results/pipeline.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/provision.sh
export ConnectionStrings__Harness=${ConnectionStrings__Harness:-$(scripts/local-postgres.sh)}
export ASPNETCORE_ENVIRONMENT=Development Urls=http://127.0.0.1:5099 Harness__PoliciesPath=.data/bench-policies
dotnet build -c Release --nologo -v quiet src/HarnessServer
dotnet build -c Release --nologo -v quiet bench/Pipeline
dotnet src/HarnessServer/bin/Release/net10.0/HarnessServer.dll &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT
for _ in $(seq 1 60); do curl -sf "$Urls/healthz" >/dev/null && break; sleep 0.5; done
export BENCH_SERVER_PID=$server BENCH_POSTGRES_PID=$(head -n1 "${HARNESS_PG_DIR:-.data/postgres}/postmaster.pid")
# One run, one server: 32 clients (throughput and CPU per request), then 1 client (latency), each against its own
# baselines (the no-op, and bare bwrap started by the benchmark); CLIENTS picks one count only.
output=${OUTPUT:-bench/results/pipeline.md}
parts=()
for clients in ${CLIENTS:-32 1}; do
  part=$(mktemp); parts+=("$part")
  dotnet bench/Pipeline/bin/Release/net10.0/HarnessServer.PipelineBench.dll "$Urls" "$part" "$clients" "${SECONDS_PER_SCENARIO:-10}"
done
{ for part in "${parts[@]}"; do cat "$part"; echo; done; } > "$output"
rm -f "${parts[@]}"
echo "wrote $output"
