#!/usr/bin/env bash
# Adds an EF Core migration to migrations/ (compiled into the server, see docs/operations.md, "Migrations").
#   scripts/add-migration.sh <Name>
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ $# -eq 1 ] || { echo "usage: scripts/add-migration.sh <Name>" >&2; exit 2; }
dotnet tool restore >/dev/null
dotnet ef migrations add "$1" --project src/HarnessServer --output-dir ../../migrations --namespace HarnessServer.Migrations
# The tool writes the model snapshot beside the project (it only looks for an existing one inside it); keep one copy.
if [ -f src/HarnessServer/HarnessServer/Migrations/HarnessDbContextModelSnapshot.cs ]; then
  mv src/HarnessServer/HarnessServer/Migrations/HarnessDbContextModelSnapshot.cs migrations/
  rmdir -p src/HarnessServer/HarnessServer/Migrations 2>/dev/null || true
fi
