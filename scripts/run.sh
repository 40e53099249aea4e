#!/usr/bin/env bash
# Provision this machine if needed, start the local PostgreSQL cluster, and run the server in Development.
#   scripts/run.sh            # then: curl -s -X POST http://127.0.0.1:5080/dev/token
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/provision.sh
if [ -z "${ConnectionStrings__Harness:-}" ]; then
  ConnectionStrings__Harness=$(scripts/local-postgres.sh)
  export ConnectionStrings__Harness
fi

export ASPNETCORE_ENVIRONMENT=${ASPNETCORE_ENVIRONMENT:-Development}
echo "run: HarnessServer on ${Urls:-http://127.0.0.1:5080} (${ASPNETCORE_ENVIRONMENT}); Ctrl+C stops it" >&2
exec dotnet run --project src/HarnessServer --no-launch-profile "$@"
