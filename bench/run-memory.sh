#!/usr/bin/env bash
# Memory benchmark, in one run: a throwaway PostgreSQL 15 + pgvector cluster (default durability, fsync on;
# shared_buffers 3 GB so a 1M-row table and its HNSW index can stay cached; the cluster runs under nice);
# MEMORY_BENCH_ROWS (200,000 then 1,000,000) synthetic items in 50 tenants, the production query against exact
# search; between the sizes, quality (model vs hash double, vector vs text vs hybrid) and speed (embeddings/s, saves/s
# through the store and memory.save/s over HTTP against the real server). Writes bench/results/memory.raw.txt.
#   bench/run-memory.sh            # MEMORY_BENCH_EXACT_MAX_ROWS=<n> changes the threshold, MEMORY_BENCH_ROWS=200000 one size
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export HARNESS_PG_DIR=$(mktemp -d /tmp/harness-memory-bench-XXXXXX)
server=
cleanup() {
  [ -n "$server" ] && { kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; }
  "$REPO/scripts/local-postgres.sh" stop || true
  rm -rf "$HARNESS_PG_DIR"
}
trap cleanup EXIT
CONNECTION=$("$REPO/scripts/local-postgres.sh")
psql "postgresql://postgres@127.0.0.1:$(cat "$HARNESS_PG_DIR/harness.port")/harness" -qc "ALTER SYSTEM SET shared_buffers = '3GB'" >&2
"$REPO/scripts/local-postgres.sh" stop
CONNECTION=$("$REPO/scripts/local-postgres.sh")
# Backends fork from the postmaster and inherit its nice value.
renice -n 10 -p "$(head -1 "$HARNESS_PG_DIR/postmaster.pid")" >&2
psql "postgresql://postgres@127.0.0.1:$(cat "$HARNESS_PG_DIR/harness.port")/harness" -qc "CREATE DATABASE harness_http" >&2

dotnet build -c Release --nologo -v quiet "$REPO/src/HarnessServer" >&2
dotnet build -c Release --nologo -v quiet "$REPO/bench/Memory" >&2
URL=http://127.0.0.1:5187
(cd "$REPO" && ASPNETCORE_ENVIRONMENT=Development Urls=$URL Harness__PoliciesPath="$HARNESS_PG_DIR/policies" \
  Harness__WorkspacesPath="$HARNESS_PG_DIR/workspaces" Logging__LogLevel__Default=Warning \
  ConnectionStrings__Harness="${CONNECTION/Database=harness/Database=harness_http}" \
  exec nice -n 10 dotnet src/HarnessServer/bin/Release/net10.0/HarnessServer.dll) >&2 &
server=$!
for _ in $(seq 1 120); do curl -sf "$URL/healthz" >/dev/null && break; sleep 0.5; done
nice -n 10 dotnet "$REPO/bench/Memory/bin/Release/net10.0/HarnessServer.MemoryBench.dll" "$CONNECTION" "$URL" | tee "$REPO/bench/results/memory.raw.txt"
