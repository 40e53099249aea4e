#!/usr/bin/env bash
# Provision this machine if needed and run every test. Tests start their own throwaway PostgreSQL cluster
# and OIDC issuer; nothing else needs to be running.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/provision.sh
dotnet build HarnessServer.sln -c Release -warnaserror --nologo -v quiet
dotnet test HarnessServer.sln -c Release --no-build --nologo --logger "console;verbosity=normal" "$@"
