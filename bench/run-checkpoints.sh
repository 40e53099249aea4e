#!/usr/bin/env bash
# Checkpoint cost against workspace size: the checkpoint step alone in process, then `shell.exec true`, `fs.write` and
# a rollback end to end against a Release server in Development (its dev issuer signs the bench token) over the local
# PostgreSQL cluster; the bench writes the generated files straight into the sessions' workspaces under
# .data/bench-workspaces. Results in bench/results/checkpoints.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/provision.sh
export ConnectionStrings__Harness=${ConnectionStrings__Harness:-$(scripts/local-postgres.sh)}
export ASPNETCORE_ENVIRONMENT=Development Urls=http://127.0.0.1:5098 Harness__PoliciesPath=.data/bench-policies
export Harness__WorkspacesPath=.data/bench-workspaces
rm -rf "$Harness__WorkspacesPath"
dotnet build -c Release --nologo -v quiet src/HarnessServer
dotnet build -c Release --nologo -v quiet bench/Checkpoints
dotnet src/HarnessServer/bin/Release/net10.0/HarnessServer.dll &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$Harness__WorkspacesPath"' EXIT
for _ in $(seq 1 60); do curl -sf "$Urls/healthz" >/dev/null && break; sleep 0.5; done
dotnet bench/Checkpoints/bin/Release/net10.0/HarnessServer.CheckpointBench.dll "${OUTPUT:-bench/results/checkpoints.md}" "$Urls" "$Harness__WorkspacesPath"
