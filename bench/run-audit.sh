#!/usr/bin/env bash
# Audit append and verify benchmark on a durable throwaway PostgreSQL 15 cluster (fsync, synchronous_commit and
# full_page_writes on, data on disk) started by scripts/local-postgres.sh; writes bench/results/audit.md. Takes about
# three minutes.
#   AUDIT_BENCH_SECONDS        measured seconds per cell (default 5)
#   AUDIT_BENCH_VERIFY_EVENTS  events in the verify run (default 1000000)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

scripts/provision.sh
dotnet build bench/Audit -c Release -warnaserror --nologo -v quiet
HARNESS_PG_DIR=$(mktemp -d /tmp/harness-audit-bench-XXXXXX)
export HARNESS_PG_DIR
chmod 755 "$HARNESS_PG_DIR"
trap 'scripts/local-postgres.sh stop || true; rm -rf "$HARNESS_PG_DIR"' EXIT
CONNECTION=$(scripts/local-postgres.sh)
dotnet bench/Audit/bin/Release/net10.0/HarnessServer.AuditBench.dll "$CONNECTION" bench/results/audit.md \
  "${AUDIT_BENCH_SECONDS:-5}" "${AUDIT_BENCH_VERIFY_EVENTS:-1000000}"
