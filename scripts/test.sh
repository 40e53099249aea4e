#!/usr/bin/env bash
# Provision this machine if needed and run every test. Tests start their own throwaway PostgreSQL cluster
# and OIDC issuer; nothing else needs to be running.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/provision.sh
dotnet build HarnessServer.sln -c Release -warnaserror --nologo -v quiet
# The console log of a run is long and a failure scrolls away: the failed tests are printed again at the end.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
dotnet test HarnessServer.sln -c Release --no-build --nologo --logger "console;verbosity=normal" "$@" 2>&1 | tee "$log" \
  || status=$?
if [ "$status" -ne 0 ]; then
  echo "=== failed tests (repeated from the log above) ==="
  awk '/^  Failed /{shown=1} /^  (Passed|Skipped) /{shown=0} shown' "$log" | head -n 300
  echo "=== failed: ==="
  grep -E '^  Failed ' "$log" | head -n 50
fi
exit "$status"
