#!/usr/bin/env bash
# Runs the policy decision benchmarks in Release (a short in-process job: a few minutes on 2 cores) and writes
# the BenchmarkDotNet table plus per-call latency percentiles to bench/results/policy-decisions.md.
set -euo pipefail
cd "$(dirname "$0")/.."

dotnet build bench/HarnessServer.Benchmarks -c Release -nologo -v q
binary=bench/HarnessServer.Benchmarks/bin/Release/net10.0/HarnessServer.Benchmarks.dll
artifacts=$(mktemp -d)
trap 'rm -rf "$artifacts"' EXIT

dotnet "$binary" --filter '*PolicyDecisionBenchmarks*' --artifacts "$artifacts"
latency=$(dotnet "$binary" latency)

mkdir -p bench/results
{
  echo "# Policy decision benchmarks"
  echo
  echo "Produced by \`bench/run-policy.sh\` on $(date -u +%Y-%m-%d) ($(nproc) cores, shared machine). Targets: warm p99 < 5 µs,"
  echo "0 B allocated warm, cold compile + first decision < 50 ms at 10,000 rules."
  echo
  echo "## BenchmarkDotNet (means of iterations; Ratio is against the naive scan of every rule)"
  echo
  cat "$artifacts"/results/*PolicyDecisionBenchmarks-report-github.md
  echo
  echo "## Per-call latency (1,000,000 timed warm fs.write decisions; 30 cold compiles, each after a full GC)"
  echo
  echo "$latency"
} > bench/results/policy-decisions.md
echo "wrote bench/results/policy-decisions.md"
