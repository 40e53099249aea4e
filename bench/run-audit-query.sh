#!/usr/bin/env bash
# Audit query benchmark: the filtered GET /v1/audit/events queries (their SQL, as EF Core sends it) on a tenant with a
# million events, run with and without the filter indexes in the same run, and the cost of the indexes on inserts.
# Uses a throwaway cluster from scripts/local-postgres.sh and the server's own migrations; writes
# bench/results/audit-query.md. Takes about three minutes.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

scripts/provision.sh
HARNESS_PG_DIR=$(mktemp -d /tmp/harness-audit-query-XXXXXX)
export HARNESS_PG_DIR
chmod 755 "$HARNESS_PG_DIR"
trap 'kill $server 2>/dev/null || true; scripts/local-postgres.sh stop || true; rm -rf "$HARNESS_PG_DIR"' EXIT
CONNECTION=$(scripts/local-postgres.sh)
PORT=$(sed -E 's/.*Port=([0-9]+).*/\1/' <<<"$CONNECTION")
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres PGDATABASE=harness
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
INDEXES=(ix_audit_events_tenant_id_actor_id_seq ix_audit_events_tenant_id_tool_seq ix_audit_events_tenant_id_type_seq)

# The schema exactly as the server migrates it.
dotnet build -c Release --nologo -v quiet src/HarnessServer
ConnectionStrings__Harness=$CONNECTION ASPNETCORE_ENVIRONMENT=Development Urls=http://127.0.0.1:5098 \
  Harness__MigrateOnStart=true dotnet src/HarnessServer/bin/Release/net10.0/HarnessServer.dll >/dev/null 2>&1 &
server=$!
for _ in $(seq 1 120); do curl -sf http://127.0.0.1:5098/healthz >/dev/null && break; sleep 0.5; done
kill $server; wait $server 2>/dev/null || true

query() { # name, where-clause: average latency of the page query over 50 runs
  printf "SELECT * FROM audit_events WHERE tenant_id = 'big' AND seq > 0 AND %s ORDER BY seq LIMIT 101;\n" "$2" >/tmp/audit-query.sql
  "$PGBIN/pgbench" -n -f /tmp/audit-query.sql -t 50 -c 1 2>/dev/null | sed -nE 's/^latency average = ([0-9.]+) ms/\1/p'
}
insert_ms() { # average ms per 1,000-event insert into a fresh tenant
  local started ended
  started=$(date +%s%N)
  for i in $(seq 1 20); do
    psql -qAt -c "INSERT INTO audit_events (tenant_id, seq, at, actor_id, actor_name, type, tool, payload, payload_hash, prev_hash, hash)
      SELECT 'ins-$1', s + ($i - 1) * 1000, now(), 'user-' || (s % 50), 'someone', 'tool_call.decided', 'fs.read', '{}'::json,
             repeat('0', 64), repeat('0', 64), repeat('0', 64) FROM generate_series(1, 1000) s" >/dev/null
  done
  ended=$(date +%s%N)
  awk -v d=$((ended - started)) 'BEGIN { printf "%.2f", d / 1000000 / 20 }'
}

psql -q -f bench/AuditQuery/generate.sql >/dev/null
declare -A with without
names=("no filter (first page)" "rare user (100 of 1M)" "busy user (20k of 1M)" "rare tool (100 of 1M)" "rare type (100 of 1M)")
wheres=("true" "actor_id = 'rare-user'" "actor_id = 'user-7'" "tool = 'rare.tool'" "type = 'policy.changed'")
for i in "${!names[@]}"; do with[$i]=$(query "${names[$i]}" "${wheres[$i]}"); done
insert_with=$(insert_ms with)
for ix in "${INDEXES[@]}"; do psql -qc "DROP INDEX IF EXISTS $ix"; done
for i in "${!names[@]}"; do without[$i]=$(query "${names[$i]}" "${wheres[$i]}"); done
insert_without=$(insert_ms without)

{
  echo "# Audit event queries: filter indexes on and off"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), 2 cores, load average $(cut -d' ' -f1-3 /proc/loadavg), PostgreSQL $(psql -qAt -c 'SHOW server_version'), fsync on."
  echo "Tenant \`big\` holds 1,000,000 events (plus 10 tenants of 10,000). Each figure is pgbench's average over 50 runs of the"
  echo "page query \`GET /v1/audit/events\` sends (\`seq > after\`, the filter, \`ORDER BY seq LIMIT 101\`), first with the server's"
  echo "indexes ($(IFS=,; echo "${INDEXES[*]}" | sed 's/,/, /g')), then in the same run after dropping them."
  echo
  echo "| query | with the indexes, ms | without, ms |"
  echo "| --- | ---: | ---: |"
  for i in "${!names[@]}"; do echo "| ${names[$i]} | ${with[$i]} | ${without[$i]} |"; done
  echo
  echo "Inserting 1,000 events in one statement (20 times, into a fresh tenant): ${insert_with} ms with the indexes, ${insert_without} ms without."
} > bench/results/audit-query.md
cat bench/results/audit-query.md
