#!/usr/bin/env bash
# Times a sandboxed `true` from start to exit: bare setpriv + bwrap (the baseline), the launcher with rlimits only,
# and the launcher with a control group per call, interleaved in one run; writes bench/results/sandbox-start.md.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/provision.sh
dotnet build bench/HarnessServer.Benchmarks -c Release -nologo -v q
table=$(dotnet bench/HarnessServer.Benchmarks/bin/Release/net10.0/HarnessServer.Benchmarks.dll sandbox-start)

mkdir -p bench/results
{
  echo "# Sandbox start"
  echo
  echo "Produced by \`bench/run-sandbox-start.sh\` on $(date -u +%Y-%m-%d) ($(nproc) cores, shared machine: other builds ran"
  echo "meanwhile, so compare the rows with each other, not with other days). The launcher adds to bare bubblewrap:"
  echo "\`--disable-userns\`, read-only remounts of \`/\` and \`/dev\`, a capped \`/dev/shm\`, the seccomp pipe, \`prlimit\`, and with"
  echo "a control group a \`/bin/sh\` that enters the group before \`setpriv\`, plus the group's mkdir, limits and rmdir."
  echo
  echo "$table"
} > bench/results/sandbox-start.md
echo "wrote bench/results/sandbox-start.md"
