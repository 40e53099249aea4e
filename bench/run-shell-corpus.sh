#!/usr/bin/env bash
# Times the decision of every line of the shell corpus (parser included, warm) in a tenant of 1,000 rules plus the
# corpus policy, against two baselines measured in the same run, and writes bench/results/shell-corpus.md.
set -euo pipefail
cd "$(dirname "$0")/.."

dotnet build bench/HarnessServer.Benchmarks -c Release -nologo -v q
binary=bench/HarnessServer.Benchmarks/bin/Release/net10.0/HarnessServer.Benchmarks.dll
table=$(dotnet "$binary" shell-corpus tests/HarnessServer.Tests/Policies)

mkdir -p bench/results
{
  echo "# Shell corpus decision time"
  echo
  echo "Produced by \`bench/run-shell-corpus.sh\` on $(date -u +%Y-%m-%d) ($(nproc) cores, shared machine). Target: p99 < 20 µs"
  echo "per line, warm, parser included, at 1,000 rules."
  echo
  echo "$table"
} > bench/results/shell-corpus.md
echo "wrote bench/results/shell-corpus.md"
