#!/usr/bin/env bash
# Memory benchmark: a throwaway PostgreSQL 15 + pgvector cluster with default durability (fsync on); MEMORY_BENCH_ROWS
# (200,000) synthetic items in 50 tenants, search plans against exact search; then quality (model vs hash double,
# vector vs text vs hybrid) and speed (embeddings/s, saves/s). Writes bench/results/memory.raw.txt.
#   bench/run-memory.sh            # MEMORY_BENCH_EXACT_MAX_ROWS=<n> changes the hybrid's threshold
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export HARNESS_PG_DIR=$(mktemp -d /tmp/harness-memory-bench-XXXXXX)
trap '"$REPO/scripts/local-postgres.sh" stop || true; rm -rf "$HARNESS_PG_DIR"' EXIT
CONNECTION=$("$REPO/scripts/local-postgres.sh")
dotnet run -c Release --project "$REPO/bench/Memory" -- "$CONNECTION" | tee "$REPO/bench/results/memory.raw.txt"
