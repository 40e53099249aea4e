#!/usr/bin/env bash
# MCP benchmark: an allowed tools/call over /mcp against the same call on the HTTP API, at 1 and 32 clients, in one
# run. A Release server in Development (its dev issuer signs the bench token) over the local PostgreSQL cluster;
# results in bench/results/mcp.md. Takes about two minutes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/provision.sh
export ConnectionStrings__Harness=${ConnectionStrings__Harness:-$(scripts/local-postgres.sh)}
export ASPNETCORE_ENVIRONMENT=Development Urls=http://127.0.0.1:5097 Harness__PoliciesPath=.data/bench-policies
export Logging__LogLevel__Default=Warning
dotnet build -c Release --nologo -v quiet src/HarnessServer
dotnet build -c Release --nologo -v quiet bench/Mcp
dotnet src/HarnessServer/bin/Release/net10.0/HarnessServer.dll &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT
for _ in $(seq 1 60); do curl -sf "$Urls/healthz" >/dev/null && break; sleep 0.5; done
dotnet bench/Mcp/bin/Release/net10.0/HarnessServer.McpBench.dll "$Urls" "${OUTPUT:-bench/results/mcp.md}" "${SECONDS_PER_SCENARIO:-8}" "${ROUNDS:-3}"
