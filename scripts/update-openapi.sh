#!/usr/bin/env bash
# Rewrites src/HarnessServer.Client/openapi.json from the document the server serves (through the drift test, which
# runs a real host), then rebuilds so the typed client follows. Run after changing a route, a body or a status.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

dotnet build tests/HarnessServer.Tests -c Release -warnaserror --nologo -v quiet
HARNESS_UPDATE_OPENAPI=1 dotnet test tests/HarnessServer.Tests -c Release --no-build --nologo \
  --filter "FullyQualifiedName~ClientDocumentTests"
dotnet build HarnessServer.sln -c Release -warnaserror --nologo -v quiet
