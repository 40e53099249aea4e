#!/usr/bin/env bash
# Console page times: every console page's server time (Server-Timing) and wall time, p50/p99 over 200 fetches, with
# 100,000 audit events in the tenant, against the API's GET /v1/audit/events in the same run. Runs the suite's own
# ConsolePerformanceTests (real server, real PostgreSQL, real chain writer, Debian chromium for the sign-in) in bench
# mode; writes bench/results/console.md. Takes a few minutes.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

scripts/provision.sh
nice -n 10 dotnet build HarnessServer.sln -c Release -warnaserror --nologo -v quiet
HARNESS_BENCH_CONSOLE="$REPO/bench/results/console.md" nice -n 10 dotnet test HarnessServer.sln -c Release --no-build --nologo \
  --filter "FullyQualifiedName~ConsolePerformanceTests"
cat bench/results/console.md
